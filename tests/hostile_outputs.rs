//! `segment --out` never replaces what it must not (issue 26, item 4): the input slide, a
//! folder, a device or FIFO, or one of its own outputs. Before the fix the slide was
//! overwritten with exit 0, a FIFO or device node was replaced by the mask, and a folder
//! failed only after the whole run.

mod common;

use common::{binary, limit_file_size, mkfifo, synth_slide, synthetic_png};
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

/// A disk that fills up after the mask is written (here: no file may exceed 300 kB, and the
/// full-resolution overlay is larger) leaves no mask without its summary: before the fix
/// the complete mask.tif stayed under its final name without mask.json (exit 1).
#[test]
fn a_disk_full_at_the_overlay_leaves_no_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let slide = synth_slide(&dir.path().join("slides"), "s", 1024, 3);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut command = binary();
    command
        .args(["-q", "segment", "--baseline", "threshold", "--out"])
        .arg(out.join("mask.tif"))
        .arg(&slide);
    limit_file_size(&mut command, 300_000);
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("mask.overlay.png"), "{stderr}");
    assert_eq!(listing(&out), Vec::<PathBuf>::new(), "{stderr}");
}

/// A cohort whose output folder cannot take a file says so (exit 2, "free space") and
/// leaves no write-test file behind; before, it advised fixing permissions and left
/// `.slidestream-write-test-<pid>`.
#[test]
fn a_cohort_into_a_full_disk_says_so_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let slides = dir.path().join("slides");
    synth_slide(&slides, "s", 512, 4);
    let out = dir.path().join("out");
    let mut command = binary();
    command
        .args(["-q", "cohort", "--baseline", "threshold", "--out-dir"])
        .arg(&out)
        .arg(&slides);
    limit_file_size(&mut command, 1);
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("free space"), "{stderr}");
    assert_eq!(listing(&out), Vec::<PathBuf>::new(), "{stderr}");
}
