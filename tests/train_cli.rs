//! `slidestream train` end to end on small synthetic data: an image folder and slides.

mod common;

use common::{binary, interrupt_after_log, labeled_folder};
use std::path::Path;

/// Small, fast settings for the contrastive method: tiny crops and patches, two steps.
const QUICK: [&str; 18] = [
    "--crop",
    "96",
    "--patch-size",
    "16",
    "--stride",
    "8",
    "--batch",
    "2",
    "--epochs",
    "1",
    "--max-steps",
    "2",
    "--device",
    "cpu",
    // The synthetic images record no scale; they are drawn at 0.25 µm/px.
    "--mpp",
    "0.25",
    "--method",
    "contrastive",
];

/// QUICK without the flags (and their values) named in `flags`.
fn quick_without(flags: &[&str]) -> Vec<&'static str> {
    QUICK
        .chunks(2)
        .filter(|pair| !flags.contains(&pair[0]))
        .flatten()
        .copied()
        .collect()
}

/// `slidestream -q train` with `settings`, then `extra` flags, on `data`, into `out`.
fn train(settings: &[&str], data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    binary()
        .args(["-q", "train"])
        .args(settings)
        .args(extra)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// `slidestream train` with the quick settings on `data`, into `out`, plus `extra` flags
/// (which may choose another `--method`).
fn run(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let quick = if extra.contains(&"--method") {
        quick_without(&["--method"])
    } else {
        QUICK.to_vec()
    };
    train(&quick, data, out, extra)
}

#[test]
fn folder_training_writes_a_complete_run_dir() {
    let dir = tempfile::tempdir().unwrap();
    labeled_folder(dir.path(), 160, 0);
    let out = dir.path().join("run");
    let result = run(dir.path(), &out, &[]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    for file in [
        "model.safetensors",
        "model.json",
        "metrics.csv",
        "curves.png",
        "curves.svg",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    // The curves name the run and mark the checkpoint model.json holds.
    let svg = std::fs::read_to_string(out.join("curves.svg")).unwrap();
    assert!(svg.contains("Training curves: contrastive, seed 0, 1 epoch(s)"));
    assert!(svg.contains("selected checkpoint"));
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(card["channels"], 4);
    assert_eq!(card["val_dice"].as_array().unwrap().len(), 4);
    assert_eq!(card["train_mpp"], 0.25);
    // A second run into the same folder refuses to overwrite the model.
    let again = run(dir.path(), &out, &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a trained model"));
}

/// `slidestream train` without `--method` (self-training), two small steps on `data` into
/// `out`, plus `extra` flags.
fn quick_default_method(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let settings = [
        "--crop",
        "96",
        "--batch",
        "2",
        "--max-steps",
        "2",
        "--mpp",
        "0.25",
        "--device",
        "cpu",
    ];
    train(&settings, data, out, extra)
}

/// Without `--method`, `train` runs the label-free self-training method, which calibrates
/// the stain and keeps its last epoch.
#[test]
fn the_default_method_is_self_training() {
    let dir = tempfile::tempdir().unwrap();
    labeled_folder(dir.path(), 160, 0);
    let out = dir.path().join("run");
    let result = quick_default_method(dir.path(), &out, &[]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    assert!(
        String::from_utf8_lossy(&result.stdout).contains("kept the model after the last epoch (0"),
        "{}",
        String::from_utf8_lossy(&result.stdout)
    );
    assert_eq!(card["method"], "self-training");
    assert_eq!(card["selection"], "last-epoch");
    assert!(
        card["stain_calibration"]["hematoxylin_cut"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

/// `--labeled-fraction` with self-training: the card says whose masks it learned from, the
/// same seed gives the same weights, and slides (which carry no masks) are refused.
#[test]
fn self_training_learns_from_a_share_of_the_masks() {
    let dir = tempfile::tempdir().unwrap();
    labeled_folder(dir.path(), 160, 0);
    let train = |out: &Path, data: &Path| {
        quick_default_method(data, out, &["--labeled-fraction", "1/3", "--tile", "80"])
    };
    let (first, second) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&first, &second] {
        let result = train(out, dir.path());
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
    }
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.join("model.json")).unwrap()).unwrap();
    assert_eq!(card["method"], "self-training");
    // Three 160² images hold 4 sub-images of 80 px each; a third of 12 is 4.
    let data = card["data"].as_str().unwrap();
    assert!(
        data.ends_with("masks of 4 of its 12 sub-images of 80 px"),
        "{data}"
    );
    let weights = |run: &Path| std::fs::read(run.join("model.safetensors")).unwrap();
    assert_eq!(
        weights(&first),
        weights(&second),
        "same seed, other weights"
    );

    let slide = dir.path().join("slide.tif");
    let synth = binary()
        .args(["-q", "synth", "--width", "512", "--height", "512", "--out"])
        .arg(&slide)
        .status()
        .unwrap();
    assert!(synth.success());
    let refused = train(&dir.path().join("c"), &slide);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("--labeled-fraction needs a labeled image folder as --data"));
}

#[test]
fn a_multi_seed_job_resumes_only_with_the_same_flags() {
    let dir = tempfile::tempdir().unwrap();
    labeled_folder(dir.path(), 160, 0);
    let out = dir.path().join("seeds");
    let first = run(dir.path(), &out, &["--seeds", "2"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.contains("time to best (s)")
            && stdout.contains(", median ")
            && stdout.contains("label-free Dice (epoch/channel)")
            && stdout.contains("label-free selection (no masks): median Dice "),
        "{stdout}"
    );
    // summary.json without the run times, which a retrained run does not repeat.
    let untimed_summary = || {
        let mut summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        for run in summary["runs"].as_array_mut().unwrap() {
            let run = run.as_object_mut().unwrap();
            assert!(run.remove("elapsed_s").unwrap().as_f64().unwrap() > 0.0);
            run.remove("best_elapsed_s");
        }
        summary
    };
    let summary = untimed_summary();
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).to_string();
    // Without --resume, finished runs are not overwritten.
    let again = run(dir.path(), &out, &["--seeds", "2"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("add --resume"),
        "{}",
        stderr(&again)
    );
    // Seed 1 was "interrupted": --resume keeps seed 0 and retrains seed 1 to the same result.
    std::fs::remove_file(out.join("seed-1/seed.json")).unwrap();
    let resumed = run(dir.path(), &out, &["--seeds", "2", "--resume"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(
        String::from_utf8_lossy(&resumed.stdout).contains("2 runs (1 kept from an earlier job)"),
        "{}",
        String::from_utf8_lossy(&resumed.stdout)
    );
    assert_eq!(untimed_summary(), summary);
    // Other flags are refused, naming the one that changed.
    let other = run(
        dir.path(),
        &out,
        &["--seeds", "2", "--resume", "--lr", "0.001"],
    );
    assert_eq!(other.status.code(), Some(2), "{}", stderr(&other));
    assert!(
        stderr(&other).contains("(changed: config.lr)"),
        "{}",
        stderr(&other)
    );
    // A cdcl run cannot go on from a checkpoint: --resume needs --seeds there.
    let cdcl = run(
        dir.path(),
        &dir.path().join("cdcl"),
        &["--method", "cdcl", "--resume"],
    );
    assert_eq!(cdcl.status.code(), Some(2), "{}", stderr(&cdcl));
    assert!(stderr(&cdcl).contains("runs restart"), "{}", stderr(&cdcl));
}

/// The guards around one run's checkpoint (how a run goes on from it is tested in
/// `train_determinism`): a finished run is not retrained, an interrupted one is not
/// overwritten without --resume, and a broken checkpoint is named.
#[test]
fn one_run_resumes_only_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    labeled_folder(dir.path(), 160, 0);
    let out = dir.path().join("one");
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).to_string();
    let first = run(dir.path(), &out, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(!out.join("checkpoint.json").exists());
    let finished = run(dir.path(), &out, &["--resume"]);
    assert!(!finished.status.success());
    assert!(
        stderr(&finished).contains("already holds a trained model"),
        "{}",
        stderr(&finished)
    );
    std::fs::write(out.join("checkpoint.json"), "{}").unwrap();
    let fresh = run(dir.path(), &out, &[]);
    assert!(!fresh.status.success());
    assert!(
        stderr(&fresh).contains("add --resume"),
        "{}",
        stderr(&fresh)
    );
    let broken = run(dir.path(), &out, &["--resume"]);
    assert_eq!(broken.status.code(), Some(2), "{}", stderr(&broken));
    assert!(
        stderr(&broken).contains("checkpoint.json: not a checkpoint"),
        "{}",
        stderr(&broken)
    );
}

#[test]
fn slide_training_streams_tissue_crops_and_reports_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let slide = dir.path().join("slide.tif");
    let synth = binary()
        .args([
            "-q", "synth", "--width", "1024", "--height", "1024", "--out",
        ])
        .arg(&slide)
        .status()
        .unwrap();
    assert!(synth.success());
    let out = dir.path().join("run");
    let result = run(&slide, &out, &["--epoch-crops", "4"]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("crop_stream.json")).unwrap()).unwrap();
    // Four for the epoch, four for the fixed label-free probe batch.
    assert_eq!(report["crops"], 8);
    assert!(out.join("model.safetensors").exists());
    // No masks: channel and epoch were chosen by hematoxylin agreement.
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(card["selection"], "hematoxylin-agreement");
    let agreement = card["hematoxylin_agreement"].as_array().unwrap();
    assert_eq!(agreement.len(), 4);
    let chosen = card["channel"].as_u64().unwrap() as usize;
    let best = agreement
        .iter()
        .map(|a| a.as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(agreement[chosen].as_f64().unwrap(), best);
}

#[test]
fn no_usable_slide_is_a_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.svs");
    std::fs::write(&text, "not a slide").unwrap();
    let out = dir.path().join("run");
    let result = run(&text, &out, &[]);
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("notes.svs"), "{stderr}");
    assert!(
        !out.exists(),
        "nothing is created for a run that cannot start"
    );
}

/// A model must know the scale it learns at: an image folder whose images record none is
/// refused without --mpp, naming the folder and MoNuSeg's scale, before --out is created.
#[test]
fn an_image_folder_without_a_scale_needs_mpp() {
    let dir = tempfile::tempdir().unwrap();
    labeled_folder(dir.path(), 160, 0);
    let out = dir.path().join("run");
    let without = quick_without(&["--mpp", "--method"]);
    for method in ["threshold", "contrastive"] {
        let result = binary()
            .args(["-q", "train", "--method", method])
            .args(&without)
            .arg("--data")
            .arg(dir.path())
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{method}: {stderr}");
        assert!(
            stderr.contains("images: the images record no scale"),
            "{stderr}"
        );
        assert!(stderr.contains("--mpp (MoNuSeg is 0.25 µm/px"), "{stderr}");
        assert!(!out.exists());
    }
}

#[test]
fn settings_no_run_can_use_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    labeled_folder(dir.path(), 160, 0);
    let out = dir.path().join("run");
    let missing_val = dir.path().join("no-such-folder");
    let missing_val = missing_val.to_str().unwrap();
    let cases: [(&[&str], &str); 10] = [
        (&["--stride", "0"], "--stride must be at least 1"),
        (
            &["--patch-size", "120", "--crop", "100"],
            "lower it or raise --crop",
        ),
        // A 100² crop holds 3 × 3 candidates at the default 50 px patches, stride 20.
        (
            &["--sampler", "topk", "--crop", "100"],
            "--topk 50 must be between 1 and 8",
        ),
        (&["--topk", "5"], "--topk is read by --sampler topk only"),
        (
            &["--student", "unet"],
            "--student unet is the self-training method's",
        ),
        (&["--width", "8"], "--width is the UNet's"),
        (&["--epoch-crops", "0"], "--epoch-crops must be at least 1"),
        (
            &["--min-tissue", "1.5"],
            "--min-tissue 1.5 must be between 0 and 1",
        ),
        (
            &["--crop", "200"],
            "smaller than the 200×200 crop; lower --crop",
        ),
        (
            &["--val", missing_val, "--crop", "96", "--patch-size", "16"],
            "no-such-folder/images: cannot list",
        ),
    ];
    for (flags, message) in cases {
        let result = binary()
            .args(["-q", "train", "--method", "contrastive", "--device", "cpu"])
            .args(["--mpp", "0.25", "--data"])
            .arg(dir.path())
            .arg("--out")
            .arg(&out)
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
        assert!(!out.exists(), "{flags:?} left {}", out.display());
        // Each cause once: the data error already quotes the operating system's reason.
        assert!(stderr.matches("(os error").count() <= 1, "{stderr}");
    }
}

#[test]
fn ctrl_c_stops_training_and_keeps_the_best_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    labeled_folder(dir.path(), 160, 0);
    let out = dir.path().join("run");
    let code = interrupt_after_log(
        binary()
            .args(["--log-format", "json", "train"])
            .args(&QUICK[..8]) // tiny crops and batches, but no step limit
            .args([
                "--epochs", "100000", "--device", "cpu", "--mpp", "0.25", "--data",
            ])
            .arg(dir.path())
            .arg("--out")
            .arg(&out),
        "epoch done",
    );
    assert_eq!(code, Some(130));
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    assert!(card["epoch"].is_number(), "the best epoch so far is kept");
    assert!(out.join("model.safetensors").exists());
}

#[test]
fn eval_scores_match_the_validation_dice_recorded_by_train() {
    let dir = tempfile::tempdir().unwrap();
    labeled_folder(dir.path(), 160, 0);
    let out = dir.path().join("run");
    assert!(run(dir.path(), &out, &[]).status.success());
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    let channel = card["channel"].as_u64().unwrap() as usize;
    let recorded = card["val_dice"][channel].as_f64().unwrap();

    let report = common::json_output(
        binary()
            .args(["-q", "eval", "--json", "--device", "cpu", "--model"])
            .arg(&out)
            .arg("--data")
            .arg(dir.path()),
    );
    assert_eq!(report["images"].as_array().unwrap().len(), 3);
    let raw = report["mean_raw"]["dice"].as_f64().unwrap();
    assert!(
        (raw - recorded).abs() < 1e-5,
        "eval {raw} vs model.json {recorded}"
    );
    for scores in ["mean_raw", "mean_postprocessed"] {
        for metric in [
            "dice",
            "iou",
            "precision",
            "recall",
            "accuracy",
            "specificity",
        ] {
            let value = report[scores][metric].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&value), "{scores}.{metric} = {value}");
        }
    }
    // Every other channel scores differently: the chosen one is what eval measured.
    let other = (channel + 1) % 4;
    let other_report = common::json_output(
        binary()
            .args(["-q", "eval", "--json", "--device", "cpu", "--channel"])
            .arg(other.to_string())
            .arg("--model")
            .arg(&out)
            .arg("--data")
            .arg(dir.path()),
    );
    let other_raw = other_report["mean_raw"]["dice"].as_f64().unwrap();
    let other_recorded = card["val_dice"][other].as_f64().unwrap();
    assert!((other_raw - other_recorded).abs() < 1e-5);
}
