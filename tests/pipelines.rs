//! `slidestream run pipelines/*.toml`: every shipped pipeline parses and runs at small
//! scale; unknown keys and bad values are errors naming the file and the key. And the
//! Snakemake workflow runs locally.

mod common;

use common::binary;
use std::path::{Path, PathBuf};
use std::process::Output;

fn pipeline(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines")
        .join(name)
}

fn synth(dir: &Path, name: &str, size: u32, seed: u64) -> PathBuf {
    common::synth_slide(dir, name, size, seed)
}

fn run(file: &Path, sets: &[String], extra: &[&str]) -> Output {
    let mut command = binary();
    command.arg("-q").arg("run").arg(file).args(extra);
    for set in sets {
        command.args(["--set", set]);
    }
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn every_shipped_pipeline_parses() {
    for name in ["pretrain.toml", "segment.toml", "nightly.toml"] {
        let out = run(&pipeline(name), &[], &["--dry-run"]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let commands = String::from_utf8_lossy(&out.stdout);
        assert!(commands.starts_with("slidestream "), "{name}: {commands}");
    }
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    let check = |text: &str, sets: &[String], wanted: &[&str]| {
        std::fs::write(&file, text).unwrap();
        let out = run(&file, sets, &["--dry-run"]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let message = stderr(&out);
        for w in wanted {
            assert!(message.contains(w), "{w:?} missing from: {message}");
        }
    };
    let base = "[vars]\nout = \"x\"\n[steps.seg]\ncommand = \"cohort\"\ninputs = [\"a\"]\nout-dir = \"{out}\"\nbaseline = \"threshold\"\n";
    check(
        &format!("{base}jobz = 2\n"),
        &[],
        &["p.toml", "steps.seg.jobz", "jobs"],
    );
    check(
        &format!("{base}jobs = \"many\"\n"),
        &[],
        &["p.toml", "steps.seg.jobs", "many"],
    );
    check(
        &format!("{base}baseline_ = 1\n"),
        &[],
        &["p.toml", "baseline_"],
    );
    check(
        &format!("{base}shard = \"{{nope}}\"\n"),
        &[],
        &["p.toml", "nope"],
    );
    check(
        &format!("{base}geojson = \"yes\"\n"),
        &[],
        &["p.toml", "steps.seg.geojson"],
    );
    check(&format!("junk = 1\n{base}"), &[], &["p.toml", "junk"]);
    check(
        &base.replace("cohort", "explode"),
        &[],
        &["p.toml", "steps.seg.command"],
    );
    check(base, &["nope=1".into()], &["nope", "p.toml"]);
    check(base, &["seg.jobs=-1".into()], &["p.toml", "steps.seg.jobs"]);
    // Every missing required key is named, not only the first line of the parser's error.
    check(
        "[steps.seg]\ncommand = \"cohort\"\nbaseline = \"threshold\"\n",
        &[],
        &[
            "p.toml",
            "steps.seg",
            "missing required key(s): out-dir, inputs",
        ],
    );
    // Refused by --dry-run already, not only when the step runs.
    check(
        &format!("{base}jobs = 0\n"),
        &[],
        &["p.toml", "steps.seg.jobs", "at least 1"],
    );
    check(
        &format!(
            "{}threshold = 7\n",
            base.replace("baseline = \"threshold\"", "model = \"runs/x\"")
        ),
        &[],
        &["p.toml", "steps.seg.threshold", "between 0 and 1"],
    );
    check(
        &format!("description = 5\n{base}"),
        &[],
        &["p.toml", "description", "text"],
    );
    // A variable is not expanded inside [vars]: it would reach the command literally.
    check(
        &base.replace("out = \"x\"", "out = \"{out}/x\""),
        &[],
        &["p.toml", "vars.out", "{...}"],
    );
    check(base, &["out=\"{out}/y\"".into()], &["p.toml", "vars.out"]);
}

#[test]
fn segment_pretrain_and_nightly_run_at_small_scale() {
    let dir = tempfile::tempdir().unwrap();
    let slides = dir.path().join("archive");
    synth(&slides, "s1", 600, 1);
    synth(&slides, "s2", 480, 2);
    let s = |k: &str, v: &Path| format!("{k}={}", v.display());

    // segment.toml: the cohort with the threshold baseline.
    let cohort_out = dir.path().join("cohort");
    let out = run(
        &pipeline("segment.toml"),
        &[
            s("inputs", &slides),
            s("out_dir", &cohort_out),
            "segment.tile=256".into(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(cohort_out.join("report.csv").is_file());
    assert!(cohort_out.join("slides/s1.tif").is_file());

    // pretrain.toml: the crop stream over the slides, a few tiny steps.
    let run_dir = dir.path().join("run");
    let big = synth(&dir.path().join("big"), "big", 1024, 3);
    let out = run(
        &pipeline("pretrain.toml"),
        &[
            s("slides", &big),
            s("run_dir", &run_dir),
            "epochs=1".into(),
            "train.epoch-crops=4".into(),
            "train.crop=96".into(),
            "train.patch-size=16".into(),
            "train.stride=8".into(),
            "train.batch=2".into(),
            "train.max-steps=2".into(),
            "train.device=\"cpu\"".into(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(run_dir.join("model.safetensors").is_file());

    // nightly.toml: that model over the archive; the second night skips what is done.
    let masks = dir.path().join("masks");
    let sets = [
        s("archive", &slides),
        s("model", &run_dir),
        s("out_dir", &masks),
        "timeout=600".into(),
        "segment.tile=256".into(),
        "segment.device=cpu".into(),
    ];
    let first = run(&pipeline("nightly.toml"), &sets, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    synth(&slides, "s3", 400, 4); // a new slide arrives
    let second = run(&pipeline("nightly.toml"), &sets, &[]);
    assert!(second.status.success(), "{}", stderr(&second));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(masks.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["counts"]["skipped"], 2);
    assert_eq!(report["counts"]["done"], 1);
}

/// Snakemake from the project's setup (`.deps/venv`); required in CI, optional locally.
fn snakemake() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps/venv/bin/snakemake");
    if path.is_file() {
        return Some(path);
    }
    let message = format!(
        "{} is missing: run scripts/setup.sh (it installs Snakemake)",
        path.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{message}");
    }
    eprintln!("skipping: {message}");
    None
}

#[test]
fn the_snakemake_workflow_runs_locally() {
    let Some(snakemake) = snakemake() else { return };
    let dir = tempfile::tempdir().unwrap();
    let slides = dir.path().join("slides");
    synth(&slides, "one", 600, 1);
    synth(&slides, "two", 480, 2);
    std::fs::write(slides.join("bad.svs"), b"not a slide").unwrap();
    let out = dir.path().join("out");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let result = std::process::Command::new(&snakemake)
        .arg("-s")
        .arg(pipeline("Snakefile"))
        .args(["--cores", "2", "--quiet", "all", "--directory"])
        .arg(&work)
        .arg("--config")
        .arg(format!("inputs={}", slides.display()))
        .arg(format!("out_dir={}", out.display()))
        .arg(format!("slidestream={}", env!("CARGO_BIN_EXE_slidestream")))
        .arg("model_args=--baseline threshold --tile 256")
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "snakemake failed:\n{}\n{}",
        String::from_utf8_lossy(&result.stdout),
        stderr(&result)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["counts"]["total"], 3);
    assert_eq!(report["counts"]["done"], 2);
    assert_eq!(report["counts"]["failed"], 1);
    assert!(out.join("slides/one.tif").is_file() && out.join("slides/two.tif").is_file());
    assert!(out.join("report.csv").is_file());
}
