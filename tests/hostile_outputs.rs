//! `segment --out` never replaces what it must not (issue 26, item 4): the input slide, a
//! folder, a device or FIFO, or one of its own outputs. Before the fix the slide was
//! overwritten with exit 0, a FIFO or device node was replaced by the mask, and a folder
//! failed only after the whole run.

mod common;

use common::{binary, synthetic_png};
use std::ffi::OsStr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Every name in `dir`, sorted.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    names.sort();
    names
}

/// Runs `segment` with the threshold baseline into `out` and asserts exit 2 with one line
/// that names every one of `named`, and that `dir` is left as it was.
fn refused(dir: &Path, slide: &Path, out: impl AsRef<OsStr>, extra: &[&str], named: &[&str]) {
    let before = listing(dir);
    let output = binary()
        .args(["-q", "segment", "--baseline", "threshold", "--out"])
        .arg(out.as_ref())
        .arg(slide)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{:?}: {stderr}",
        out.as_ref()
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for name in named {
        assert!(stderr.contains(name), "{name} not in {stderr}");
    }
    assert_eq!(listing(dir), before, "{stderr}");
}

fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
}

#[test]
fn the_input_slide_is_never_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let slide = synthetic_png(dir.path(), 96, 64, 1);
    let bytes = std::fs::read(&slide).unwrap();
    let name = slide.file_name().unwrap().to_str().unwrap();
    refused(dir.path(), &slide, &slide, &[], &[name, "is the input"]);
    // Other spellings of the same file: a `./` path, a symlink, a hard link.
    let dotted = dir.path().join(".").join(name);
    refused(dir.path(), &slide, &dotted, &[], &["is the input"]);
    let link = dir.path().join("link.png");
    std::os::unix::fs::symlink(&slide, &link).unwrap();
    refused(dir.path(), &slide, &link, &[], &["link.png", name]);
    let hard = dir.path().join("hard.png");
    std::fs::hard_link(&slide, &hard).unwrap();
    refused(dir.path(), &slide, &hard, &[], &["hard.png", name]);
    assert_eq!(std::fs::read(&slide).unwrap(), bytes);
}

#[test]
fn folders_and_special_files_are_refused_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let slide = synthetic_png(dir.path(), 96, 64, 2);
    let folder = dir.path().join("masks");
    std::fs::create_dir(&folder).unwrap();
    refused(dir.path(), &slide, &folder, &[], &["masks", "is a folder"]);
    refused(
        dir.path(),
        &slide,
        format!("{}/", folder.display()),
        &[],
        &["masks/"],
    );
    refused(dir.path(), &slide, folder.join("new/"), &[], &["new/"]);

    let fifo = dir.path().join("m.tif");
    mkfifo(&fifo);
    refused(
        dir.path(),
        &slide,
        &fifo,
        &[],
        &["m.tif", "not a regular file"],
    );
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());

    // A derived output is checked like the mask: here the summary's name is a FIFO.
    let mask = dir.path().join("n.tif");
    mkfifo(&dir.path().join("n.json"));
    refused(
        dir.path(),
        &slide,
        &mask,
        &[],
        &["n.json", "not a regular file"],
    );
    // The GeoJSON is only checked when it is written.
    std::fs::create_dir(dir.path().join("g.geojson")).unwrap();
    refused(
        dir.path(),
        &slide,
        dir.path().join("g.tif"),
        &["--geojson"],
        &["g.geojson"],
    );
}

#[test]
fn a_mask_named_like_its_summary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let slide = synthetic_png(dir.path(), 96, 64, 3);
    refused(
        dir.path(),
        &slide,
        dir.path().join("m.json"),
        &[],
        &["m.json", "twice"],
    );
}

#[test]
fn an_existing_mask_is_replaced_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let slide = synthetic_png(dir.path(), 96, 64, 4);
    let out = dir.path().join("g.tif");
    std::fs::write(&out, b"an old mask").unwrap();
    let output = binary()
        .args(["-q", "segment", "--baseline", "threshold", "--out"])
        .arg(&out)
        .arg(&slide)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_ne!(std::fs::read(&out).unwrap(), b"an old mask");
}
