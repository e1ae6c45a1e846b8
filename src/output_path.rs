//! Checking output paths before any work, so that a run never replaces what it must not.
//!
//! Outputs are written as `NAME.partial` and renamed onto `NAME` (see [`crate::atomic_file`]).
//! A rename replaces whatever directory entry `NAME` is: the input slide, a device node such
//! as `/dev/full`, a FIFO. A folder makes the rename fail, but only after the whole run. So
//! every output is checked up front: it must be a new name or a regular file, in an
//! existing folder, and no input nor another output of the same run.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why an output path is refused; each names the path and what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum OutputPathError {
    #[error("{path}: is a folder (or ends with `/`); give a file name, e.g. {path}/mask.tif")]
    Folder { path: PathBuf },
    #[error("{path}: is not a regular file (a device, FIFO or socket) and would be replaced; give a new file name")]
    NotAFile { path: PathBuf },
    #[error("{output}: is the input {input}; writing it would destroy the input, give another output name")]
    IsAnInput { output: PathBuf, input: PathBuf },
    #[error("{path}: would be written twice ({first} and {second} of this run); give the mask a name ending in .tif")]
    Collision {
        path: PathBuf,
        first: &'static str,
        second: &'static str,
    },
    #[error("{folder}: the output folder does not exist or is not a folder; create it first")]
    NoFolder { folder: PathBuf },
    #[error("{path}: cannot check the output path: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An output a command is about to write: its path and what it is (named in errors).
#[derive(Debug, Clone)]
pub struct Output {
    pub path: PathBuf,
    pub what: &'static str,
}

/// Refuses `outputs` that would replace something other than an earlier output: a folder,
/// a non-regular file, one of `inputs` (however spelled: symlinks and hard links are
/// compared by device and inode), or another of `outputs`; and outputs whose folder is
/// missing. Writes nothing.
pub fn check_outputs(outputs: &[Output], inputs: &[&Path]) -> Result<(), OutputPathError> {
    // Inputs that do not exist cannot be destroyed; their own errors come later.
    let input_ids: Vec<(&Path, (u64, u64))> = inputs
        .iter()
        .filter_map(|&input| std::fs::metadata(input).ok().map(|m| (input, file_id(&m))))
        .collect();
    for (i, output) in outputs.iter().enumerate() {
        let path = output.path.as_path();
        if let Some(earlier) = outputs[..i].iter().find(|o| o.path == path) {
            return Err(OutputPathError::Collision {
                path: path.to_path_buf(),
                first: earlier.what,
                second: output.what,
            });
        }
        if path.as_os_str().as_encoded_bytes().ends_with(b"/") || path.file_name().is_none() {
            return Err(OutputPathError::Folder {
                path: path.to_path_buf(),
            });
        }
        check_folder(path)?;
        // Follows symlinks: what matters is what the rename would make unreachable through
        // this name, and a link to a device or the slide is refused like the thing itself.
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            // New (or a dangling link, which the rename replaces harmlessly).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(OutputPathError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        if metadata.is_dir() {
            return Err(OutputPathError::Folder {
                path: path.to_path_buf(),
            });
        }
        if !metadata.is_file() {
            return Err(OutputPathError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        if let Some((input, _)) = input_ids.iter().find(|(_, id)| *id == file_id(&metadata)) {
            return Err(OutputPathError::IsAnInput {
                output: path.to_path_buf(),
                input: input.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// The folder `path` goes into must exist (an empty parent is the working directory).
fn check_folder(path: &Path) -> Result<(), OutputPathError> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if std::fs::metadata(folder).is_ok_and(|m| m.is_dir()) {
        Ok(())
    } else {
        Err(OutputPathError::NoFolder {
            folder: folder.to_path_buf(),
        })
    }
}

/// Identifies a file whatever name reaches it.
fn file_id(metadata: &std::fs::Metadata) -> (u64, u64) {
    (metadata.dev(), metadata.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(path: &Path) -> [Output; 1] {
        [Output {
            path: path.to_path_buf(),
            what: "mask",
        }]
    }

    #[test]
    fn new_files_and_regular_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("m.tif");
        check_outputs(&mask(&new), &[]).unwrap();
        std::fs::write(&new, b"old mask").unwrap();
        check_outputs(&mask(&new), &[]).unwrap();
    }

    #[test]
    fn devices_folders_inputs_and_collisions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Only metadata is read: the check never opens or writes the device.
        assert!(matches!(
            check_outputs(&mask(Path::new("/dev/null")), &[]),
            Err(OutputPathError::NotAFile { .. })
        ));
        assert!(matches!(
            check_outputs(&mask(dir.path()), &[]),
            Err(OutputPathError::Folder { .. })
        ));
        let slash = PathBuf::from(format!("{}/new/", dir.path().display()));
        assert!(matches!(
            check_outputs(&mask(&slash), &[]),
            Err(OutputPathError::Folder { .. })
        ));
        assert!(matches!(
            check_outputs(&mask(&dir.path().join("missing/m.tif")), &[]),
            Err(OutputPathError::NoFolder { .. })
        ));

        let slide = dir.path().join("s.tif");
        std::fs::write(&slide, b"slide").unwrap();
        let other_spelling = dir.path().join(".").join("s.tif");
        let link = dir.path().join("link.tif");
        std::os::unix::fs::symlink(&slide, &link).unwrap();
        let hard = dir.path().join("hard.tif");
        std::fs::hard_link(&slide, &hard).unwrap();
        for out in [&slide, &other_spelling, &link, &hard] {
            assert!(
                matches!(
                    check_outputs(&mask(out), &[&slide]),
                    Err(OutputPathError::IsAnInput { .. })
                ),
                "{}",
                out.display()
            );
        }

        let json = dir.path().join("m.json");
        let outputs = [
            Output {
                path: json.clone(),
                what: "mask",
            },
            Output {
                path: json,
                what: "summary",
            },
        ];
        assert!(matches!(
            check_outputs(&outputs, &[]),
            Err(OutputPathError::Collision { .. })
        ));
    }
}
