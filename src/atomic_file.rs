//! Writing a file so that its final name only ever holds complete contents.
//!
//! Every output is built as `NAME.partial` in the same folder and renamed onto `NAME` once
//! complete; an error, or dropping the [`PartialFile`] guard before [`PartialFile::commit`],
//! removes the partial file. A [`Durability::Synced`] commit also fsyncs the partial file
//! before the rename and the folder after it, so the result survives a power loss too; the
//! others rely on the rename alone, which is atomic but may be lost with the page cache.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Every partial file a guard owns right now, so that a process told to exit at once (a
/// second Ctrl-C) can remove them without running the guards' destructors.
static LIVE_PARTIALS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live_partials() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    // A panic elsewhere while the list was locked leaves it usable.
    LIVE_PARTIALS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes every partial file that is still being written (ignoring errors), for an
/// immediate exit that skips destructors.
pub fn remove_live_partials() {
    for partial in live_partials().drain(..) {
        let _ = std::fs::remove_file(partial);
    }
}

/// The guard for `partial` has let go of it: committed or discarded.
fn forget_partial(partial: &Path) {
    let mut live = live_partials();
    if let Some(at) = live.iter().position(|p| p == partial) {
        live.swap_remove(at);
    }
}

/// `NAME.partial` next to `path`, or `None` when `path` has no file name.
pub fn partial_path(path: &Path) -> Option<PathBuf> {
    let mut name: OsString = path.file_name()?.to_os_string();
    name.push(".partial");
    Some(path.with_file_name(name))
}

/// Owns `NAME.partial` while it is written: removes it on drop unless committed.
///
/// The guard does not create or open the file; the caller writes [`PartialFile::partial`]
/// however it likes (streaming over time is fine), then calls [`PartialFile::commit`].
#[derive(Debug)]
pub struct PartialFile {
    path: PathBuf,
    /// Empty once committed or discarded: nothing is left for Drop to remove.
    partial: PathBuf,
}

/// Files already under their final names that are only valid together with files still
/// to be written (a mask without its summary looks finished to a rerun but is not): all of
/// them are removed on drop unless [`IncompleteSet::complete`] is called.
#[derive(Debug, Default)]
pub struct IncompleteSet {
    paths: Vec<PathBuf>,
}

impl IncompleteSet {
    /// Adds a file written under its final name.
    pub fn add(&mut self, path: &Path) {
        self.paths.push(path.to_path_buf());
    }

    /// Every file of the set is written: keep them all.
    pub fn complete(mut self) {
        self.paths.clear();
    }
}

impl Drop for IncompleteSet {
    fn drop(&mut self) {
        for path in self.paths.drain(..) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// How hard [`PartialFile::commit`] works to make the result survive a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Rename only: atomic for readers, cheap for large files (masks, checkpoints, sidecars).
    RenameOnly,
    /// Fsync the file, rename, fsync the folder.
    Synced,
}

/// Which step of [`PartialFile::commit`] failed. On `Sync` and `Rename` the partial file
/// has been removed and nothing is under the final name; on `SyncFolder` the file is
/// already in place under its final name.
#[derive(Debug)]
pub enum CommitError {
    /// Flushing the partial file to disk failed.
    Sync(io::Error),
    /// Renaming the partial file onto the final name failed.
    Rename(io::Error),
    /// Flushing the folder (making the rename durable) failed.
    SyncFolder(io::Error),
}

impl CommitError {
    /// The underlying I/O error, whichever step it came from.
    pub fn into_io(self) -> io::Error {
        match self {
            Self::Sync(e) | Self::Rename(e) | Self::SyncFolder(e) => e,
        }
    }
}

impl PartialFile {
    /// The guard for `path`; `None` when `path` has no file name.
    pub fn new(path: &Path) -> Option<Self> {
        let partial = partial_path(path)?;
        live_partials().push(partial.clone());
        Some(Self {
            partial,
            path: path.to_path_buf(),
        })
    }

    /// The final name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `NAME.partial`, where the contents are written before [`commit`](Self::commit).
    pub fn partial(&self) -> &Path {
        &self.partial
    }

    /// Removes the partial file now (ignoring errors); the guard has nothing left to do.
    pub fn discard(&mut self) {
        if !self.partial.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.partial);
            forget_partial(&self.partial);
            self.partial = PathBuf::new();
        }
    }

    /// Renames the partial file onto the final name (with `Synced`, fsyncing the file
    /// before and the folder after). Returns the final name. The partial file must be
    /// closed by then.
    pub fn commit(mut self, durability: Durability) -> Result<PathBuf, CommitError> {
        let synced = durability == Durability::Synced;
        if synced {
            sync_file(&self.partial).map_err(CommitError::Sync)?;
        }
        std::fs::rename(&self.partial, &self.path).map_err(CommitError::Rename)?;
        // Renamed: nothing is left for Drop to remove.
        forget_partial(&self.partial);
        self.partial = PathBuf::new();
        if synced {
            sync_parent(&self.path).map_err(CommitError::SyncFolder)?;
        }
        Ok(std::mem::take(&mut self.path))
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        self.discard();
    }
}

/// Writes `path` through `path.partial` with `write` (which gets the partial path) and
/// commits it; on any error the partial file is removed and the error says
/// "writing PATH".
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let file = PartialFile::new(path).context("output path has no file name")?;
    write(file.partial())
        .and_then(|()| {
            file.commit(Durability::RenameOnly)
                .map_err(|e| e.into_io().into())
        })
        .map(drop)
        .with_context(|| format!("writing {}", path.display()))
}

fn sync_file(path: &Path) -> io::Result<()> {
    // Write access: some platforms refuse to flush a file opened read-only.
    OpenOptions::new().write(true).open(path)?.sync_all()
}

/// Makes a rename in `path`'s folder durable.
#[cfg(unix)]
fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => std::fs::File::open(".")?.sync_all(),
    }
}

/// Directories cannot be opened for syncing here; the rename is as durable as it gets.
#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_path_appends_to_the_file_name() {
        assert_eq!(
            partial_path(Path::new("out/mask.tif")).unwrap(),
            Path::new("out/mask.tif.partial")
        );
        assert_eq!(partial_path(Path::new("/")), None);
    }

    /// A guard for `path` whose partial file holds `contents`.
    fn started(path: &Path, contents: &[u8]) -> PartialFile {
        let file = PartialFile::new(path).unwrap();
        std::fs::write(file.partial(), contents).unwrap();
        file
    }

    /// Neither `path` nor its partial file exists.
    fn assert_nothing_at(path: &Path) {
        assert!(!path.exists(), "{} exists", path.display());
        assert!(!partial_path(path).unwrap().exists(), "partial file exists");
    }

    #[test]
    fn commit_renames_and_leaves_no_partial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        let file = started(&path, b"done");
        assert!(!path.exists());
        assert_eq!(file.commit(Durability::Synced).unwrap(), path);
        assert_eq!(std::fs::read(&path).unwrap(), b"done");
        assert!(!dir.path().join("a.json.partial").exists());
    }

    #[test]
    fn an_incomplete_set_is_removed_and_a_complete_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.tif"), dir.path().join("b.tif"));
        for (path, complete) in [(&a, false), (&b, true)] {
            std::fs::write(path, b"done").unwrap();
            let mut set = IncompleteSet::default();
            set.add(path);
            if complete {
                set.complete();
            }
        }
        assert!(!a.exists());
        assert_eq!(std::fs::read(&b).unwrap(), b"done");
    }

    #[test]
    fn drop_before_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        let file = started(&path, b"half");
        assert!(dir.path().join("a.json.partial").exists());
        drop(file);
        assert_nothing_at(&path);
    }

    #[test]
    fn write_atomically_replaces_only_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomically(&path, |partial| Ok(std::fs::write(partial, b"one")?)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");

        let error = write_atomically(&path, |partial| {
            std::fs::write(partial, b"two")?;
            anyhow::bail!("boom")
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains(&path.display().to_string()));
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert!(!dir.path().join("a.txt.partial").exists());

        let fresh = dir.path().join("b.txt");
        write_atomically(&fresh, |_| anyhow::bail!("boom")).unwrap_err();
        assert_nothing_at(&fresh);
    }

    #[test]
    fn failed_rename_leaves_no_partial() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty folder under the final name makes the rename fail.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("x"), b"").unwrap();
        let file = started(&path, b"data");
        assert!(matches!(
            file.commit(Durability::RenameOnly),
            Err(CommitError::Rename(_))
        ));
        assert!(!dir.path().join("taken.partial").exists());
    }
}
