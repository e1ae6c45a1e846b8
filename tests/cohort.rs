//! `slidestream cohort`: failures isolated and reported, resuming after kill -9, safe
//! output names, shards, the clean error for an unwritable output folder.

mod common;

use common::{binary, partial_files, shared_data};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn synth(dir: &Path, name: &str, seed: u64) -> PathBuf {
    common::synth_slide(dir, name, 600, seed)
}

/// `slidestream cohort INPUTS --baseline threshold --out-dir OUT EXTRA...`.
fn cohort(inputs: &[&Path], out: &Path, extra: &[&str]) -> Command {
    let mut command = binary();
    command
        .arg("cohort")
        .args(inputs)
        .args([
            "--baseline",
            "threshold",
            "--tile",
            "256",
            "--geojson",
            "--out-dir",
        ])
        .arg(out)
        .args(extra);
    command
}

fn report(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

fn status_of<'a>(report: &'a serde_json::Value, name: &str) -> &'a str {
    report["slides"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the report"))["status"]
        .as_str()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A missing folder is a mistyped invocation (exit 2, nothing written), not a failed slide.
#[test]
fn a_missing_input_folder_is_a_bad_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder");
    let out = dir.path().join("out");
    let run = cohort(&[&missing], &out, &[]).output().unwrap();
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("no-such-folder: no such folder"),
        "{}",
        stderr(&run)
    );
    assert!(!out.join("report.json").exists());
}

/// A slide that sits where the cohort would write its own mask (an --out-dir holding the
/// inputs) fails with the reason and stays as it was; the other slides go on.
#[test]
fn a_mask_that_would_overwrite_its_slide_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let in_place = synth(&out.join("slides"), "x", 1);
    let other = synth(&dir.path().join("inputs"), "y", 2);
    let before = std::fs::read(&in_place).unwrap();
    let run = cohort(&[&in_place, &other], &out, &[]).output().unwrap();
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    let r = report(&out);
    assert_eq!(status_of(&r, "x"), "failed");
    assert_eq!(status_of(&r, "y"), "done");
    let row = r["slides"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["name"] == "x")
        .unwrap();
    assert!(row.to_string().contains("is the input"), "{row}");
    assert_eq!(
        std::fs::read(&in_place).unwrap(),
        before,
        "the slide was changed"
    );
}

#[test]
fn bad_slides_are_reported_and_the_cohort_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let slides = dir.path().join("slides");
    let good = synth(&slides, "good", 1);
    synth(&slides, "good2", 2);
    // Not a slide at all: the shared broken.svs, else a stand-in.
    let broken = match shared_data("slides/broken.svs") {
        Some(p) => p,
        None => {
            let p = slides.join("broken.svs");
            std::fs::write(&p, b"this is not a slide").unwrap();
            p
        }
    };
    // A slide cut short: the shared CMU SVS (else a synthetic TIFF) truncated.
    let whole = shared_data("slides/CMU-1-Small-Region.svs").unwrap_or_else(|| good.clone());
    let bytes = std::fs::read(&whole).unwrap();
    let truncated = slides.join("truncated.svs");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let missing = slides.join("missing.svs");
    let out = dir.path().join("out");

    let run = cohort(&[&slides, &broken, &missing], &out, &["--jobs", "2"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    let table = String::from_utf8_lossy(&run.stdout);
    assert!(
        table.contains("2 done") && table.contains("3 failed"),
        "{table}"
    );
    let r = report(&out);
    assert_eq!(r["counts"]["done"], 2);
    assert_eq!(r["counts"]["failed"], 3);
    for name in ["good", "good2"] {
        assert_eq!(status_of(&r, name), "done");
        for suffix in [".tif", ".json", ".overlay.png", ".geojson"] {
            assert!(out.join("slides").join(format!("{name}{suffix}")).is_file());
        }
    }
    for name in ["broken", "truncated", "missing"] {
        assert_eq!(status_of(&r, name), "failed");
        assert!(out.join(format!("slides/{name}.error.json")).is_file());
        assert!(!out.join(format!("slides/{name}.json")).exists());
    }
    let rows = r["slides"].as_array().unwrap();
    let error = |name: &str| {
        rows.iter().find(|row| row["name"] == name).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        error("missing").contains("missing.svs"),
        "{}",
        error("missing")
    );
    assert!(
        error("truncated").contains("truncated.svs"),
        "{}",
        error("truncated")
    );
    let csv = std::fs::read_to_string(out.join("report.csv")).unwrap();
    assert!(csv.starts_with("name,id,slide,status,error,tiles,nuclei,area_fraction"));
    assert_eq!(csv.lines().count(), 6);
    // report.html: every slide, failures first, thumbnails linking to the overlays; and
    // `--report-only` rebuilds the same page from the files on disk.
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert_page_rows(&page);
    std::fs::remove_file(out.join("report.html")).unwrap();
    let rebuilt = cohort(&[&slides, &broken, &missing], &out, &["--report-only"])
        .output()
        .unwrap();
    assert_eq!(rebuilt.status.code(), Some(3), "{}", stderr(&rebuilt));
    assert_page_rows(&std::fs::read_to_string(out.join("report.html")).unwrap());

    // A rerun skips the done slides and retries the failed ones.
    let again = cohort(&[&slides, &broken, &missing], &out, &["--json"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(3), "{}", stderr(&again));
    let r: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(r["counts"]["skipped"], 2);
    assert_eq!(r["counts"]["failed"], 3);

    // Other settings are not "done": the good slides are redone, as with --force.
    let other = cohort(&[&good], &out, &["--min-nucleus-area", "5", "--json"])
        .output()
        .unwrap();
    assert!(other.status.success(), "{}", stderr(&other));
    let r: serde_json::Value = serde_json::from_slice(&other.stdout).unwrap();
    assert_eq!(r["counts"]["done"], 1);
    let forced = cohort(
        &[&good],
        &out,
        &["--min-nucleus-area", "5", "--force", "--json"],
    )
    .output()
    .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&forced.stdout).unwrap();
    assert_eq!(r["counts"]["done"], 1);

    // A per-slide time limit fails the slide, not the cohort.
    let timed = cohort(
        &[&good],
        &out,
        &["--timeout", "0.000001", "--force", "--json"],
    )
    .output()
    .unwrap();
    assert_eq!(timed.status.code(), Some(3), "{}", stderr(&timed));
    let r: serde_json::Value = serde_json::from_slice(&timed.stdout).unwrap();
    let error = r["slides"][0]["error"].as_str().unwrap();
    assert!(error.starts_with("timed out after"), "{error}");
    assert!(partial_files(&out).is_empty());
}

/// The rows of the page of `bad_slides_are_reported_and_the_cohort_goes_on`.
fn assert_page_rows(page: &str) {
    let statuses: Vec<&str> = page
        .lines()
        .filter_map(|line| line.strip_prefix("<tr class=\""))
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect();
    assert_eq!(statuses, ["failed", "failed", "failed", "done", "done"]);
    for name in ["good", "good2"] {
        let link = format!("<a href=\"slides/{name}.overlay.png\"><img src=\"data:image/jpeg");
        assert!(page.contains(&link), "no thumbnail for {name}");
    }
}

/// A file name is text on the page, never markup.
#[test]
fn a_hostile_slide_name_is_text_in_the_report_page() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("<img src=x onerror=alert(1)>.svs");
    std::fs::write(&hostile, b"not a slide").unwrap();
    let out = dir.path().join("out");
    let run = cohort(&[&hostile], &out, &[]).output().unwrap();
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(
        !page.contains("<img src=x"),
        "the name went into the page as markup"
    );
}

/// `bytes` with every TIFF DateTime value ("YYYY:MM:DD HH:MM:SS") blanked: the mask writer
/// stamps the time of writing, the only bytes two runs may differ in.
fn without_timestamps(mut bytes: Vec<u8>) -> Vec<u8> {
    const SHAPE: &[u8; 19] = b"0000:00:00 00:00:00";
    let matches = |w: &[u8]| {
        w.iter().zip(SHAPE).all(|(&b, &s)| {
            if s == b'0' {
                b.is_ascii_digit()
            } else {
                b == s
            }
        })
    };
    let mut i = 0;
    while i + SHAPE.len() <= bytes.len() {
        if matches(&bytes[i..i + SHAPE.len()]) {
            bytes[i..i + SHAPE.len()].fill(0);
            i += SHAPE.len();
        } else {
            i += 1;
        }
    }
    bytes
}

#[test]
fn a_killed_cohort_resumes_to_identical_outputs() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let slides = dir.path().join("slides");
    let names = ["a", "b", "c", "d"];
    for (seed, name) in names.iter().enumerate() {
        synth(&slides, name, seed as u64 + 10);
    }
    let killed = dir.path().join("killed");
    let clean = dir.path().join("clean");

    // kill -9 once a slide has finished (read from the log, no timers).
    let mut child = cohort(&[&slides], &killed, &["--jobs", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("slide finished") {
        line.clear();
        assert!(
            log.read_line(&mut line).unwrap() > 0,
            "ended before a slide finished"
        );
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Whatever the kill interrupted, plant the leftovers a kill can leave behind.
    let stale = [
        killed.join("slides/d.tif.partial"),
        killed.join("slides/d.geojson.partial"),
        killed.join("report.json.partial"),
    ];
    for path in &stale {
        std::fs::write(path, b"half-written").unwrap();
    }
    let done_before: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| killed.join(format!("slides/{n}.json")).exists())
        .collect();
    assert!(!done_before.is_empty());

    let rerun = cohort(&[&slides], &killed, &["--jobs", "1", "--json"])
        .output()
        .unwrap();
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    let r: serde_json::Value = serde_json::from_slice(&rerun.stdout).unwrap();
    for name in &done_before {
        assert_eq!(
            status_of(&r, name),
            "skipped",
            "{name} was done before the kill"
        );
    }
    for path in &stale[..2] {
        assert!(!path.exists(), "{} was left behind", path.display());
    }
    // report.json.partial is the next report's temp file: replaced, then renamed away.
    assert!(
        partial_files(&killed).is_empty(),
        "{:?}",
        partial_files(&killed)
    );

    let fresh = cohort(&[&slides], &clean, &["--jobs", "2"])
        .output()
        .unwrap();
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    for name in names {
        for suffix in [".tif", ".geojson", ".overlay.png"] {
            let read = |dir: &Path| {
                without_timestamps(
                    std::fs::read(dir.join(format!("slides/{name}{suffix}"))).unwrap(),
                )
            };
            let (a, b) = (read(&killed), read(&clean));
            assert!(
                a == b,
                "{name}{suffix} differs between the resumed and the clean run"
            );
        }
        assert!(status_of(&report(&clean), name) == "done");
    }
}

#[test]
fn an_unwritable_output_folder_fails_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let slide = synth(&dir.path().join("slides"), "s", 1);
    // A folder below a regular file can never be created, even by root.
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let run = cohort(&[&slide], &file.join("out"), &[]).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
    let message = stderr(&run);
    assert!(
        message.contains("--out-dir") && message.contains("file/out"),
        "{message}"
    );
    assert!(!message.contains("slide starting"), "{message}");
}

#[test]
fn manifest_names_are_safe_and_unique() {
    let dir = tempfile::tempdir().unwrap();
    let slides = dir.path().join("slides");
    synth(&slides, "one", 1);
    synth(&slides, "two", 2);
    let manifest = dir.path().join("cohort.csv");
    std::fs::write(
        &manifest,
        "id,path\ncase,slides/one.tif\ncase,slides/two.tif\n../../escape,slides/one.tif\nCASE,slides/two.tif\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let listed = binary()
        .args([
            "cohort",
            "--baseline",
            "threshold",
            "--list",
            "--json",
            "--out-dir",
        ])
        .arg(&out)
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", stderr(&listed));
    let entries: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let names: Vec<String> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 4);
    let lower: std::collections::HashSet<String> =
        names.iter().map(|n| n.to_ascii_lowercase()).collect();
    assert_eq!(lower.len(), 4, "names collide: {names:?}");
    assert!(
        names
            .iter()
            .all(|n| !n.contains('/') && !n.starts_with('.')),
        "{names:?}"
    );

    let run = cohort(&[&manifest], &out, &["--no-overlay"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    for name in &names {
        assert!(out.join(format!("slides/{name}.tif")).is_file(), "{name}");
    }
    // Nothing escaped the output folder.
    assert!(!dir.path().join("escape.tif").exists());
    assert!(!out.join("escape.tif").exists());
}

#[test]
fn shards_cover_every_slide_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let slides = dir.path().join("archive");
    for i in 0..23 {
        let sub = slides.join(format!("batch{}", i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("slide{i:02}.svs")), b"").unwrap();
    }
    // Not slides: skipped by folder search.
    std::fs::write(slides.join("notes.txt"), b"").unwrap();
    let list = |shard: Option<&str>| -> Vec<String> {
        let mut command = binary();
        command
            .args([
                "cohort",
                "--baseline",
                "threshold",
                "--list",
                "--json",
                "--out-dir",
            ])
            .arg(dir.path().join("out"))
            .arg(&slides);
        if let Some(s) = shard {
            command.args(["--shard", s]);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = list(None);
    assert_eq!(all.len(), 23);
    let mut union: Vec<String> = (1..=4)
        .flat_map(|i| list(Some(&format!("{i}/4"))))
        .collect();
    union.sort();
    let mut expected = all.clone();
    expected.sort();
    assert_eq!(union, expected, "every slide in exactly one shard");
    let bad = binary()
        .args([
            "cohort",
            "--baseline",
            "threshold",
            "--shard",
            "5/4",
            "--out-dir",
            "x",
        ])
        .arg(&slides)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("5/4"));
}

#[test]
fn ctrl_c_stops_the_cohort_cleanly_and_writes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let slides = dir.path().join("slides");
    for (seed, name) in ["a", "b", "c", "d"].iter().enumerate() {
        synth(&slides, name, seed as u64 + 20);
    }
    let out = dir.path().join("out");
    let code = common::interrupt_after_log(
        cohort(&[&slides], &out, &["--jobs", "1"]).stdout(std::process::Stdio::null()),
        "slide finished",
    );
    let r = report(&out);
    let counts = &r["counts"];
    // 130 unless every slide had already finished when the signal arrived.
    if counts["done"] != 4 {
        assert_eq!(code, Some(130), "{counts}");
    }
    assert!(counts["done"].as_u64().unwrap() >= 1, "{counts}");
    assert_eq!(
        counts["done"].as_u64().unwrap() + counts["cancelled"].as_u64().unwrap(),
        4,
        "{counts}"
    );
    assert!(partial_files(&out).is_empty(), "{:?}", partial_files(&out));
    // Cancelled slides have no outputs under final names.
    for row in r["slides"].as_array().unwrap() {
        let name = row["name"].as_str().unwrap();
        let done = row["status"] == "done";
        assert_eq!(
            out.join(format!("slides/{name}.json")).exists(),
            done,
            "{name}"
        );
    }
}
