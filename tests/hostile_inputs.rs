//! Hostile inputs and unlucky timing (issue 26): no hang, no crash, nothing half-written.
//! Before the fixes a FIFO named like a slide blocked `info` and `cohort` forever in
//! `open()`, and a second Ctrl-C during a clean stop crashed `segment` in libopenslide
//! (exit 139) and left `mask.tif.partial`.

mod common;

use common::{binary, binary_with_deadline, interrupt_twice_after_log, mkfifo, synth_slide};
use std::path::Path;

#[test]
fn a_fifo_is_refused_as_a_slide_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.svs");
    mkfifo(&fifo);
    // Were the FIFO opened, the command would block until the deadline: no writer comes.
    let output = binary_with_deadline(60)
        .args(["info", "--json"])
        .arg(&fifo)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("pipe.svs") && stderr.contains("FIFO"),
        "{stderr}"
    );
}

#[test]
fn a_cohort_with_a_fifo_fails_that_slide_and_finishes_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let slides = dir.path().join("slides");
    synth_slide(&slides, "real", 512, 1);
    mkfifo(&slides.join("pipe.svs"));
    let out = dir.path().join("out");
    let output = binary_with_deadline(60)
        .args(["-q", "cohort", "--baseline", "threshold", "--out-dir"])
        .arg(&out)
        .arg(&slides)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Exit 3: a slide failed; the run itself finished and reported.
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let text = report.to_string();
    assert!(text.contains("not a regular file"), "{text}");
    assert!(text.contains("\"done\""), "the real slide is done: {text}");
}

/// Files left in `dir` (recursively) whose names end in `.partial`.
fn partial_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(partial_files(&path));
        } else if path.to_string_lossy().ends_with(".partial") {
            found.push(path);
        }
    }
    found
}

/// The second Ctrl-C arrives while the first one's clean stop is still joining the decode
/// threads: the process must exit 130 at once, without a crash and without leaving the
/// partial mask. Twenty times in a row, since a race shows only now and then.
#[test]
fn a_second_interrupt_exits_130_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let slide = synth_slide(&dir.path().join("slides"), "big", 8192, 7);
    for round in 0..20 {
        let out = dir.path().join(format!("out{round}"));
        std::fs::create_dir(&out).unwrap();
        let status = interrupt_twice_after_log(
            binary()
                .args(["segment", "--baseline", "threshold", "--out"])
                .arg(out.join("mask.tif"))
                .arg(&slide),
            "segmenting",
        );
        assert_eq!(status.code(), Some(130), "round {round}: {status:?}");
        assert!(!out.join("mask.tif").exists(), "round {round}");
        assert_eq!(partial_files(&out), Vec::<std::path::PathBuf>::new());
    }
}
