//! What a cohort is made of: slide files, folders searched recursively, and manifests
//! (CSV with a `path` column and an optional `id` column), turned into a sorted list of
//! entries with safe, unique output names, and split into shards.

use super::CohortError;
use crate::slide::discover::{self, is_glob, is_slide_folder, DiscoverError};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// One slide of the cohort.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// The manifest's `id`, else the file name without extension.
    pub id: String,
    /// Output base name: `id` made safe for a file name, unique within the cohort.
    pub name: String,
    pub path: PathBuf,
}

/// Expands `inputs` into entries sorted by path (then id), with unique output names.
/// Paths inside `exclude` (the output folder) are never collected from folders. A named
/// file that does not exist stays in the cohort (it is reported as failed: one missing
/// slide must not stop a nightly run); a missing path without an extension is taken for a
/// mistyped folder, and it, a manifest that cannot be read, or one that lacks a `path`
/// column, is a bad invocation.
pub fn collect(inputs: &[PathBuf], exclude: &Path) -> Result<Vec<Entry>, CohortError> {
    let mut raw: Vec<(Option<String>, PathBuf)> = Vec::new();
    let exclude = exclude.canonicalize().ok();
    for input in inputs {
        if is_manifest(input) {
            raw.extend(read_manifest(input)?);
        } else if is_glob(input) || is_slide_folder(input) {
            let found = discover::expand_input(input, exclude.as_deref()).map_err(input_error)?;
            if found.is_empty() {
                tracing::warn!("{}: no slides in this folder", input.display());
            }
            raw.extend(found.into_iter().map(|path| (None, path)));
        } else if input.extension().is_none() && !input.exists() {
            return Err(CohortError::Input {
                path: input.clone(),
                message: "no such folder (a slide file would have an extension such as .svs); \
                          check the path"
                    .into(),
            });
        } else {
            raw.push((None, input.clone()));
        }
    }
    raw.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    raw.dedup();
    Ok(name_entries(raw))
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// The folder or pattern at fault, in the words cohort has always used.
fn input_error(error: DiscoverError) -> CohortError {
    match error {
        DiscoverError::List { path, source } => CohortError::Input {
            path,
            message: format!("cannot list the folder: {source}"),
        },
        DiscoverError::NoMatch { pattern } => CohortError::Input {
            path: pattern.into(),
            message: "the pattern matches no file".into(),
        },
        DiscoverError::BadPattern { pattern, message } => CohortError::Input {
            path: pattern.into(),
            message: format!("bad glob pattern: {message}"),
        },
    }
}

/// Reads a manifest: a header row with `path` (required) and `id` (optional) columns;
/// relative paths are relative to the manifest's folder.
fn read_manifest(manifest: &Path) -> Result<Vec<(Option<String>, PathBuf)>, CohortError> {
    let bad = |message: String| CohortError::Manifest {
        path: manifest.to_path_buf(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(manifest)
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    let headers = reader
        .headers()
        .map_err(|e| bad(format!("cannot read the header row: {e}")))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let path_col = column("path").ok_or_else(|| {
        bad(format!(
            "no `path` column (header row: {}); the first row must name the columns, \
             e.g. `id,path`",
            headers.iter().collect::<Vec<_>>().join(",")
        ))
    })?;
    let id_col = column("id");
    let base = manifest.parent().unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(format!("row {}: {e}", i + 2)))?;
        let path = record.get(path_col).unwrap_or("");
        if path.is_empty() {
            return Err(bad(format!("row {}: empty `path`", i + 2)));
        }
        let id = id_col
            .and_then(|c| record.get(c))
            .filter(|id| !id.is_empty())
            .map(str::to_owned);
        rows.push((id, base.join(path)));
    }
    Ok(rows)
}

/// The id of a slide named by path only: its file name without the extension.
fn default_id(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() && !path.is_dir() => stem.to_owned(),
        _ => name.into_owned(),
    }
}

/// `id` as a file name: letters, digits, `.`, `-`, `_` kept, anything else (path separators
/// included) replaced by `_`; no leading dot; at most 100 bytes; never empty.
pub fn safe_name(id: &str) -> String {
    let mut name: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    while name.starts_with('.') {
        name.replace_range(0..1, "_");
    }
    name.truncate(100);
    if name.is_empty() {
        name.push_str("slide");
    }
    name
}

/// FNV-1a: a hash that never changes between builds or platforms.
fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Names that would clash with the cohort's own files.
const RESERVED: [&str; 1] = ["report"];

/// Gives each entry a unique safe name. The first entry (in path order) with a given safe
/// name keeps it; later ones get `-` and 8 hex digits of a hash of their path and id, so a
/// slide's name does not depend on which shard runs it. Names are compared without case
/// (case-insensitive file systems).
fn name_entries(raw: Vec<(Option<String>, PathBuf)>) -> Vec<Entry> {
    let mut taken: HashSet<String> = RESERVED.iter().map(|r| r.to_string()).collect();
    let mut entries = Vec::with_capacity(raw.len());
    for (id, path) in raw {
        let id = id.unwrap_or_else(|| default_id(&path));
        let base = safe_name(&id);
        let mut name = base.clone();
        let mut salt = 0u32;
        while taken.contains(&name.to_ascii_lowercase()) {
            let key = format!("{}\0{id}\0{salt}", path.display());
            name = format!("{base}-{:08x}", stable_hash(key.as_bytes()) as u32);
            salt += 1;
        }
        taken.insert(name.to_ascii_lowercase());
        entries.push(Entry { id, name, path });
    }
    entries
}

/// `I/N` (1-based): shard I of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parsed = text
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if count >= 1 && (1..=count).contains(&index) => {
                Ok(Shard { index, count })
            }
            _ => Err(format!(
                "`{text}` is not a shard; give I/N with 1 <= I <= N, e.g. 2/8 \
                 (Slurm: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
            )),
        }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether shard `self` takes the slide named `name`: by a stable hash of the name, so
    /// a slide stays in its shard when others are added or removed.
    pub fn takes(&self, name: &str) -> bool {
        stable_hash(name.as_bytes()) % self.count as u64 == (self.index - 1) as u64
    }
}

/// The entries of `shard` (all of them without one).
pub fn shard(entries: Vec<Entry>, shard: Option<Shard>) -> Vec<Entry> {
    match shard {
        None => entries,
        Some(s) => entries.into_iter().filter(|e| s.takes(&e.name)).collect(),
    }
}

/// Slides per output name, to tell a user which names were changed to stay unique.
pub fn renamed(entries: &[Entry]) -> BTreeMap<&str, &str> {
    entries
        .iter()
        .filter(|e| e.name != safe_name(&e.id))
        .map(|e| (e.id.as_str(), e.name.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_and_unique() {
        assert_eq!(safe_name("../../etc/passwd"), "_._.._etc_passwd");
        assert_eq!(safe_name(".hidden"), "_hidden");
        assert_eq!(safe_name(""), "slide");
        assert_eq!(safe_name("TCGA 01/A"), "TCGA_01_A");
        let entries = name_entries(vec![
            (Some("a".into()), "x/1.svs".into()),
            (Some("A".into()), "x/2.svs".into()),
            (Some("a".into()), "x/3.svs".into()),
            (Some("report".into()), "x/4.svs".into()),
        ]);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names[0], "a");
        let unique: HashSet<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        assert_eq!(unique.len(), 4, "{names:?}");
        assert!(names[3].starts_with("report-"), "{names:?}");
    }

    #[test]
    fn shards_partition() {
        let names: Vec<String> = (0..200).map(|i| format!("slide-{i}")).collect();
        let count = 7;
        let mut seen = vec![0; names.len()];
        for index in 1..=count {
            let shard = Shard { index, count };
            for (i, n) in names.iter().enumerate() {
                seen[i] += usize::from(shard.takes(n));
            }
        }
        assert!(seen.iter().all(|&s| s == 1));
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, count: 3 }));
    }
}
