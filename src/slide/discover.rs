//! Finding slides: the one walk that `train --data` and `cohort` share, so that the same
//! inputs name the same slides in both. Folders are searched recursively for files with a
//! slide extension (plain images are taken only when named); a folder of DICOM files is one
//! slide (OpenSlide opens the folder); a quoted glob pattern (`'cohort/*.svs'`) names its
//! matches, each taken as if named.

use std::path::{Path, PathBuf};

/// File extensions collected from folders (compared without case).
pub const SLIDE_EXTENSIONS: [&str; 9] = [
    "svs", "ndpi", "tif", "tiff", "mrxs", "scn", "bif", "vms", "dcm",
];

/// Why an input names no slides; each names the folder or pattern.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("{}: cannot list the folder: {source}", path.display())]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{pattern}: bad glob pattern: {message}")]
    BadPattern { pattern: String, message: String },
    #[error("{pattern}: the pattern matches no file")]
    NoMatch { pattern: String },
}

/// `input` is a glob pattern rather than a path (a file that exists under a name with `*`,
/// `?` or `[` is still that file).
pub fn is_glob(input: &Path) -> bool {
    input.to_string_lossy().contains(['*', '?', '[']) && !input.exists()
}

/// A folder of DICOM files is one slide (OpenSlide opens the folder).
pub fn is_dicom_folder(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("dcm"))
        })
    })
}

/// A folder that is searched for slides (not a slide itself).
pub fn is_slide_folder(path: &Path) -> bool {
    path.is_dir() && !is_dicom_folder(path)
}

/// The slides `input` names, sorted: a glob pattern's matches, a folder's slides (see
/// [`slides_in_folder`]), anything else (a file, a DICOM folder, a path that does not exist
/// and fails when opened) as itself.
pub fn expand_input(input: &Path, exclude: Option<&Path>) -> Result<Vec<PathBuf>, DiscoverError> {
    if !is_glob(input) {
        return expand_path(input, exclude);
    }
    let pattern = input.to_string_lossy().into_owned();
    let matches: Vec<PathBuf> = glob::glob(&pattern)
        .map_err(|e| DiscoverError::BadPattern {
            pattern: pattern.clone(),
            message: e.to_string(),
        })?
        .filter_map(Result::ok)
        .collect();
    if matches.is_empty() {
        return Err(DiscoverError::NoMatch { pattern });
    }
    let mut slides = Vec::new();
    for path in matches {
        slides.extend(expand_path(&path, exclude)?);
    }
    slides.sort();
    slides.dedup();
    Ok(slides)
}

fn expand_path(path: &Path, exclude: Option<&Path>) -> Result<Vec<PathBuf>, DiscoverError> {
    if is_slide_folder(path) {
        slides_in_folder(path, exclude)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

/// The slides under `dir`, searched recursively, in path order: files with one of
/// [`SLIDE_EXTENSIONS`], and DICOM folders as one slide each. `exclude` (a canonical path,
/// e.g. the output folder) is never entered.
pub fn slides_in_folder(dir: &Path, exclude: Option<&Path>) -> Result<Vec<PathBuf>, DiscoverError> {
    let mut out = Vec::new();
    walk(dir, exclude, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, exclude: Option<&Path>, out: &mut Vec<PathBuf>) -> Result<(), DiscoverError> {
    if exclude.is_some_and(|ex| dir.canonicalize().is_ok_and(|d| d == ex)) {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| DiscoverError::List {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            if is_dicom_folder(&path) {
                out.push(path);
            } else {
                walk(&path, exclude, out)?;
            }
        } else if has_slide_extension(&path) {
            out.push(path);
        }
    }
    Ok(())
}

fn has_slide_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| SLIDE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }

    #[test]
    fn folders_globs_and_dicom_folders_name_the_same_slides() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in [
            "a.svs",
            "b.TIFF",
            "notes.txt",
            "picture.png",
            "nested/c.ndpi",
            "dicom/level0.dcm",
            "dicom/level1.dcm",
            "out/old.svs",
        ] {
            touch(&root.join(name));
        }
        let exclude = root.join("out").canonicalize().unwrap();
        let expected: Vec<PathBuf> = ["a.svs", "b.TIFF", "dicom", "nested/c.ndpi"]
            .iter()
            .map(|n| root.join(n))
            .collect();
        // A folder: slide extensions in any case, recursively, the DICOM folder as one
        // slide, the excluded folder never entered.
        assert_eq!(expand_input(root, Some(&exclude)).unwrap(), expected);
        // A glob: its matches, each as if named (a matched folder is searched).
        let glob = expand_input(&root.join("*"), Some(&exclude)).unwrap();
        let mut with_named = expected.clone();
        with_named.extend(["notes.txt", "picture.png"].map(|n| root.join(n)));
        with_named.sort();
        assert_eq!(glob, with_named);
        assert_eq!(
            expand_input(&root.join("*.svs"), None).unwrap(),
            [root.join("a.svs")]
        );
        // A DICOM folder named directly is one slide, as are files and missing paths.
        assert_eq!(
            expand_input(&root.join("dicom"), None).unwrap(),
            [root.join("dicom")]
        );
        let missing = root.join("missing.svs");
        assert_eq!(expand_input(&missing, None).unwrap(), [missing]);
        // A pattern that matches nothing is an error, not an empty cohort.
        let none = expand_input(&root.join("*.mrxs"), None).unwrap_err();
        assert!(matches!(none, DiscoverError::NoMatch { .. }), "{none}");
    }
}
