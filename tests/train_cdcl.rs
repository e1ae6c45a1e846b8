//! Semi-supervised training (`--method cdcl`, SupOnly) on tiny synthetic data: the CLI, the
//! RUN_DIR that `segment` and `eval` use unchanged, determinism, learning, interruption.

mod common;

use common::{binary, json_output, labeled_folder, synthetic_png};
use slidestream::train::cdcl::{train_semi, SemiConfig};
use slidestream::train::{DataError, TrainError};
use std::path::Path;

/// Tiny, fast settings: 64 px sub-images and crops, a width-4 UNet, 2 epochs of 3 steps with
/// the unlabeled branch on from the start.
const QUICK: [&str; 22] = [
    "--mpp",
    "0.25",
    "--tile",
    "64",
    "--crop",
    "64",
    "--width",
    "4",
    "--batch",
    "2",
    "--unlabeled-batch",
    "2",
    "--epoch-steps",
    "3",
    "--epochs",
    "2",
    "--semi-start",
    "0",
    "--device",
    "cpu",
    "--labeled-fraction",
    "1/4",
];

fn train(data: &Path, out: &Path, method: &str, extra: &[&str]) -> std::process::Output {
    binary()
        .args(["-q", "train", "--method", method])
        .args(QUICK)
        .args(extra)
        .arg("--data")
        .arg(data)
        .arg("--val")
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn card(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("model.json")).unwrap()).unwrap()
}

#[test]
fn cdcl_writes_a_run_dir_that_eval_and_segment_use_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    labeled_folder(&data, 128, 20);
    let run = dir.path().join("run");
    let out = train(&data, &run, "cdcl", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let card = card(&run);
    assert_eq!(card["architecture"], "unet");
    assert_eq!(card["method"], "cdcl");
    assert_eq!(card["width"], 4);
    assert_eq!(card["channel"], 1);
    assert!(card["data"]
        .as_str()
        .unwrap()
        .starts_with("3 labeled of 12 sub-images"));
    for file in ["model.safetensors", "curves.png", "config.json"] {
        assert!(run.join(file).exists(), "{file} missing");
    }
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let rows: Vec<&str> = metrics.lines().collect();
    assert_eq!(
        rows[0],
        "epoch,loss,sup,contr,cons,ent,w_cons,lr,val_dice_c0,val_dice_c1,elapsed_s"
    );
    assert_eq!(rows.len(), 3);
    for row in &rows[1..] {
        let fields: Vec<&str> = row.split(',').collect();
        assert!(
            fields[1..6].iter().all(|f| f.parse::<f64>().is_ok()),
            "every loss term is logged: {row}"
        );
    }

    // eval scores the saved network exactly as validation did.
    let report = json_output(
        binary()
            .args(["-q", "eval", "--json", "--model"])
            .arg(&run)
            .arg("--data")
            .arg(&data),
    );
    let recorded = card["val_dice"][1].as_f64().unwrap();
    assert_eq!(card["train_mpp"], 0.25, "--mpp is recorded");
    let raw = report["mean_raw"]["dice"].as_f64().unwrap();
    assert!(
        (raw - recorded).abs() < 1e-5,
        "eval {raw} vs train {recorded}"
    );

    // segment reads it like any other model.
    let slide = synthetic_png(dir.path(), 200, 150, 3);
    let mask = dir.path().join("slide.nuclei.tif");
    let summary = json_output(
        binary()
            .args([
                "-q",
                "segment",
                "--json",
                "--all-tiles",
                "--tile",
                "64",
                "--model",
            ])
            .arg(&run)
            .arg(&slide)
            .arg("--out")
            .arg(&mask),
    );
    assert!(mask.exists());
    assert_eq!(
        summary["scale"]["halo_px"], 80,
        "58 px receptive radius + 16 px reach, rounded up to 8"
    );
}

#[test]
fn suponly_is_the_same_network_without_the_unlabeled_branch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    labeled_folder(&data, 128, 20);
    let run = dir.path().join("run");
    let out = train(&data, &run, "supervised", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let card = card(&run);
    assert_eq!(
        (card["architecture"].as_str(), card["method"].as_str()),
        (Some("unet"), Some("supervised"))
    );
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let row: Vec<&str> = metrics.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(
        &row[3..6],
        ["", "", ""],
        "no contrastive, consistency or entropy term"
    );
}

#[test]
fn whole_slides_can_be_the_unlabeled_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    labeled_folder(&data, 128, 20);
    let slide = common::synth_slide(&dir.path().join("slides"), "unlabeled", 768, 4);
    let run = dir.path().join("run");
    let out = train(
        &data,
        &run,
        "cdcl",
        &["--unlabeled", slide.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let card = card(&run);
    let described = card["data"].as_str().unwrap();
    assert!(
        described.contains(" + 1 of 1 slides, random 64px tissue crops"),
        "{described}"
    );
    let stream: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("crop_stream.json")).unwrap())
            .unwrap();
    assert_eq!(
        stream["crops"], 6,
        "6 steps × 1 of 2 unlabeled crops: {stream}"
    );
}

#[test]
fn wrong_semi_supervised_options_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    labeled_folder(&data, 128, 20);
    let cases: [(&str, &[&str], &str); 2] = [
        (
            "contrastive",
            &[],
            "--labeled-fraction is for --method self-training, cdcl or supervised",
        ),
        (
            "supervised",
            &["--unlabeled", "x.svs"],
            "--unlabeled adds unlabeled slides to --method cdcl only",
        ),
    ];
    for (i, (method, extra, message)) in cases.into_iter().enumerate() {
        let run = dir.path().join(format!("run-{i}"));
        let out = train(&data, &run, method, extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{method} {extra:?}: {stderr}");
        assert!(stderr.contains(message), "{method} {extra:?}: {stderr}");
        assert!(
            !run.exists(),
            "{method} {extra:?} created {}",
            run.display()
        );
    }
    // A batch too small to share with slides is refused before the slide is opened or
    // --out is created.
    let run = dir.path().join("run-batch");
    let out = binary()
        .args(["-q", "train", "--method", "cdcl", "--unlabeled-batch", "1"])
        .args(["--unlabeled", "x.svs", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("(--unlabeled-batch) of at least 2"),
        "{stderr}"
    );
    assert!(!run.exists());
    let folder = slidestream::train::LabeledFolder::open(&data).unwrap();
    let _rng = common::torch_rng();
    let odd_crop = SemiConfig {
        crop: 96,
        ..quick_config(true)
    };
    let error = train_semi(
        &odd_crop,
        &folder,
        None,
        None,
        dir.path(),
        &|| false,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("crop 96 must be a multiple of 8 × grid = 64 px"),
        "{error}"
    );
}

fn quick_config(unsupervised: bool) -> SemiConfig {
    SemiConfig {
        unsupervised,
        labeled_fraction: 0.5,
        tile: 64,
        crop: 64,
        width: 4,
        labeled_batch: 2,
        unlabeled_batch: 2,
        epoch_steps: Some(4),
        epochs: 2,
        semi_start: 0,
        ..SemiConfig::default()
    }
}

#[test]
fn same_seed_same_model_and_the_supervised_loss_falls() {
    let _rng = common::torch_rng();
    let data = common::disks(4, 64, 6, 10, 8);
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, config: &SemiConfig| {
        let out = dir.path().join(name);
        let summary = train_semi(config, &data, None, None, &out, &|| false, &mut |_| {}).unwrap();
        (
            summary,
            std::fs::read(out.join("model.safetensors")).unwrap(),
        )
    };
    let (a, weights_a) = run("a", &quick_config(true));
    let (_, weights_b) = run("b", &quick_config(true));
    assert_eq!(weights_a, weights_b, "same seed, same bytes");
    let (_, weights_c) = run(
        "c",
        &SemiConfig {
            seed: 1,
            ..quick_config(true)
        },
    );
    assert_ne!(weights_a, weights_c);
    assert_eq!(a.steps, 8);

    let long = SemiConfig {
        epochs: 6,
        lr: 3e-3,
        ..quick_config(false)
    };
    let (summary, _) = run("sup", &long);
    let losses: Vec<f64> = summary.epochs.iter().map(|e| e.loss.unwrap()).collect();
    assert!(
        losses[5] < 0.8 * losses[0],
        "the loss should fall: {losses:?}"
    );
}

#[test]
fn a_cancelled_run_stops_before_the_next_step() {
    let _rng = common::torch_rng();
    let data = common::disks(2, 64, 4, 0, 1);
    let dir = tempfile::tempdir().unwrap();
    let error = train_semi(
        &quick_config(true),
        &data,
        None,
        None,
        dir.path(),
        &|| true,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(error, TrainError::Data(DataError::Interrupted)),
        "{error}"
    );
    assert!(!dir.path().join("model.json").exists());
}
