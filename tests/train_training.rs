//! Training end to end on small synthetic data: steps, skips, RUN_DIR outputs, baselines.

mod common;

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use slidestream::model::{load_run, Architecture, LoadedModel, Method, Selection};
use slidestream::scores::Confusion;
use slidestream::segment::{Predictor, Window};
use slidestream::stain::hematoxylin_cut_of_regions;
use slidestream::train::{
    finished_mark, finished_runs, percentile, read_metrics, seed_dir, train, train_seeds, Batch,
    CropSource, FolderImage, LabelFreeRule, LabeledFolder, LabeledSet, Progress, SeedRun,
    StepOutcome, Student, TrainConfig, Trainer, STAIN_CALIBRATION,
};
use tch::{Device, Kind};

fn small(method: Method) -> TrainConfig {
    TrainConfig {
        method,
        epochs: 1,
        channels: 2,
        crop: 64,
        batch: 4,
        patches: 10,
        patch_size: 16,
        stride: 8,
        ..TrainConfig::default()
    }
}

#[test]
fn defaults_are_the_papers_and_round_trip() {
    let c = TrainConfig::default();
    assert_eq!(
        (
            c.epochs,
            c.channels,
            c.crop,
            c.batch,
            c.patches,
            c.patch_size,
            c.stride
        ),
        (300, 4, 300, 10, 10, 50, 20)
    );
    assert_eq!((c.lr, c.weight_decay, c.epsilon), (2e-4, 1e-4, 0.05));
    let json = serde_json::to_string(&TrainConfig {
        device: Device::Cuda(1),
        ..c.clone()
    })
    .unwrap();
    assert!(json.contains("\"cuda:1\""), "{json}");
    let back: TrainConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back.device, Device::Cuda(1));
    let partial: TrainConfig =
        serde_json::from_str(r#"{"method":"supervised","sampler":"topk","similarity":"ce"}"#)
            .unwrap();
    assert_eq!(partial.epochs, 300);
    assert!(serde_json::from_str::<TrainConfig>(r#"{"epoch":3}"#).is_err());
}

/// All-negative (or all-positive) confidences leave a channel without one of the roles:
/// the step is skipped and the weights stay as they were.
#[test]
fn steps_without_both_roles_are_skipped() {
    let _rng = common::torch_rng();
    let data = common::disks(4, 64, 6, 10, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let batch: Batch = data
        .crops(&[0, 1, 2, 3], 64, Device::Cpu, &mut rng)
        .unwrap();
    for bias in [-40.0, 40.0] {
        tch::manual_seed(0);
        let mut trainer = Trainer::new(&small(Method::Contrastive)).unwrap();
        let head = trainer.vs.variables()["f.7.bias"].shallow_clone();
        tch::no_grad(|| {
            let _ = head.shallow_clone().fill_(bias);
        });
        let before = trainer.vs.variables()["f.0.f.0.weight"].copy();
        assert_eq!(trainer.step(&batch).unwrap(), StepOutcome::Skipped);
        assert_eq!(trainer.vs.variables()["f.0.f.0.weight"], before);
    }
    tch::manual_seed(0);
    let mut trainer = Trainer::new(&small(Method::Contrastive)).unwrap();
    assert!(matches!(
        trainer.step(&batch).unwrap(),
        StepOutcome::Updated { intra: Some(_), .. }
    ));
}

fn mean_loss(history: &[f64]) -> f64 {
    history.iter().sum::<f64>() / history.len() as f64
}

#[test]
fn contrastive_training_learns_disks() {
    let _rng = common::torch_rng();
    let data = common::disks(8, 96, 12, 10, 2);
    let val = data.labeled().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        epochs: 40,
        lr: 3e-3,
        ..small(Method::Contrastive)
    };
    let mut losses = Vec::new();
    let summary = train(&config, &data, Some(&val), dir.path(), false, &mut |p| {
        if let Progress::Step {
            outcome: StepOutcome::Updated { loss, .. },
            ..
        } = p
        {
            losses.push(loss);
        }
    })
    .unwrap();
    let best = summary.best.unwrap();
    let chance = {
        let f = val
            .items
            .iter()
            .map(|i| f64::try_from(i.mask.to_kind(Kind::Float).mean(Kind::Float)).unwrap())
            .sum::<f64>()
            / val.items.len() as f64;
        2.0 * f / (1.0 + f)
    };
    let (first, last) = (
        mean_loss(&losses[..10]),
        mean_loss(&losses[losses.len() - 10..]),
    );
    eprintln!(
        "best {best:?}, chance {chance:.3}, loss {first:.4} → {last:.4}, skipped {}",
        summary.skipped_steps
    );
    assert!(
        best.dice > chance + 0.2 && last < first,
        "best {best:?} chance {chance}, loss {first} → {last}"
    );
}

#[test]
fn run_dir_has_all_outputs_and_loads() {
    let _rng = common::torch_rng();
    let data = common::disks(6, 64, 6, 10, 3);
    let val = data.labeled().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        epochs: 3,
        max_steps: Some(5),
        ..small(Method::Contrastive)
    };
    let mut epochs = 0;
    let summary = train(&config, &data, Some(&val), dir.path(), false, &mut |p| {
        epochs += matches!(p, Progress::Epoch(_)) as usize
    })
    .unwrap();
    // 6 images in batches of 4: 2 steps per epoch, so the third epoch stops after 1 step.
    assert_eq!((summary.steps, summary.epochs.len(), epochs), (5, 3, 3));
    assert_eq!(summary.epochs[2].steps, 1);
    let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    let lines: Vec<_> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "epoch,loss,intra,inter,skipped_steps,val_dice_c0,val_dice_c1,\
         hema_agreement_c0,hema_agreement_c1,elapsed_s"
    );
    assert_eq!(lines.len(), 4);
    let png = image::open(dir.path().join("curves.png")).unwrap();
    assert_eq!((png.width(), png.height()), (800, 600));
    let (model, card) = load_run(dir.path(), Device::Cpu).unwrap();
    let best = summary.best.unwrap();
    assert_eq!(
        (card.epoch, card.channel, card.channels),
        (best.epoch, best.channel, 2)
    );
    assert_eq!(card.val_dice[best.channel], best.dice);
    assert!(matches!(model, LoadedModel::Network { .. }));
    assert!(dir.path().join("config.json").exists());
}

#[test]
fn seeds_write_subfolders_and_summary_and_resume() {
    let _rng = common::torch_rng();
    let data = common::disks(4, 64, 6, 10, 4);
    let val = data.labeled().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        seed: 5,
        max_steps: Some(1),
        ..small(Method::Contrastive)
    };
    let settings = |seed| {
        serde_json::to_value(TrainConfig {
            seed,
            ..config.clone()
        })
        .unwrap()
    };
    let trained = std::cell::RefCell::new(Vec::new());
    let label_free_in_training = std::cell::RefCell::new(std::collections::BTreeMap::new());
    let mut run_one = |seed, run_dir: &std::path::Path| {
        trained.borrow_mut().push(seed);
        let config = TrainConfig {
            seed,
            ..config.clone()
        };
        let summary = train(&config, &data, Some(&val), run_dir, false, &mut |_| {})?;
        label_free_in_training
            .borrow_mut()
            .insert(seed, summary.label_free);
        Ok(summary)
    };
    let none = Default::default();
    let summary = train_seeds(
        config.seed,
        3,
        LabelFreeRule::HighestAgreement,
        dir.path(),
        &settings,
        &none,
        &mut run_one,
    )
    .unwrap();
    assert_eq!(
        summary.runs.iter().map(|r| r.seed).collect::<Vec<_>>(),
        [5, 6, 7]
    );
    for seed in 5..8 {
        assert!(dir.path().join(format!("seed-{seed}/model.json")).exists());
        assert!(finished_mark(dir.path(), seed).exists());
    }
    let dice: Vec<f64> = summary.runs.iter().map(|r| r.best_dice.unwrap()).collect();
    assert_eq!(summary.max, dice.iter().copied().reduce(f64::max));
    let selected = summary
        .runs
        .iter()
        .find(|r| r.best_dice == summary.max)
        .unwrap();
    assert_eq!(summary.selected_seed, Some(selected.seed));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 3);
    assert!(json["p80"].as_f64().unwrap() <= json["max"].as_f64().unwrap());
    assert_eq!(summary.median, percentile(&dice, 50.0));
    assert_eq!(summary.min, dice.iter().copied().reduce(f64::min));
    // Timings are metrics.csv's: time to the best epoch, and the whole run.
    for run in &summary.runs {
        let rows = read_metrics(&run.run_dir).unwrap();
        let best = rows
            .iter()
            .find(|row| Some(row.epoch) == run.best_epoch)
            .unwrap();
        assert_eq!(run.best_elapsed_s, Some(best.elapsed_s));
        assert_eq!(run.elapsed_s, Some(rows.last().unwrap().elapsed_s));
        assert!(best.elapsed_s > 0.0 && best.elapsed_s <= run.elapsed_s.unwrap());
        assert_eq!(
            best.val_dice[run.best_channel.unwrap()],
            run.best_dice.unwrap()
        );
    }
    // The label-free choice read back from metrics.csv is the one training made.
    for run in &summary.runs {
        let in_training = label_free_in_training.borrow()[&run.seed];
        assert!(in_training.is_some_and(|c| c.val_dice.is_some()));
        assert_eq!(run.label_free, in_training);
    }
    let gaps: Vec<f64> = summary
        .runs
        .iter()
        .map(|r| r.best_dice.unwrap() - r.label_free.unwrap().val_dice.unwrap())
        .collect();
    assert!(gaps.iter().all(|&gap| gap >= 0.0), "{gaps:?}");
    let mean_gap = gaps.iter().sum::<f64>() / gaps.len() as f64;
    assert!((summary.label_free_mean_gap.unwrap() - mean_gap).abs() < 1e-12);

    // Seed 6 was stopped before it finished: a resumed job keeps 5 and 7, trains 6 again,
    // and ends where one uninterrupted job ended.
    std::fs::remove_file(finished_mark(dir.path(), 6)).unwrap();
    // Seed 5's mark is from before marks held timings and the label-free choice: they come
    // from its metrics.csv.
    let mark = finished_mark(dir.path(), 5);
    let mut old: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mark).unwrap()).unwrap();
    for recorded in ["best_elapsed_s", "elapsed_s", "label_free"] {
        old["run"]
            .as_object_mut()
            .unwrap()
            .remove(recorded)
            .unwrap();
    }
    std::fs::write(&mark, old.to_string()).unwrap();
    let keep = finished_runs(config.seed, 3, dir.path(), &settings).unwrap();
    assert_eq!(keep.keys().copied().collect::<Vec<_>>(), [5, 7]);
    trained.borrow_mut().clear();
    let resumed = train_seeds(
        config.seed,
        3,
        LabelFreeRule::HighestAgreement,
        dir.path(),
        &settings,
        &keep,
        &mut run_one,
    )
    .unwrap();
    assert_eq!(*trained.borrow(), [6]);
    // Seed 6 trained again took its own time; the kept runs, seed 5 included, are unchanged.
    let untimed = |runs: &[SeedRun]| -> Vec<SeedRun> {
        runs.iter()
            .map(|r| SeedRun {
                best_elapsed_s: None,
                elapsed_s: None,
                ..r.clone()
            })
            .collect()
    };
    assert_eq!(untimed(&resumed.runs), untimed(&summary.runs));
    assert_eq!(resumed.runs[0], summary.runs[0]);
    assert_eq!(resumed.runs[2], summary.runs[2]);
    assert_eq!(resumed.selected_seed, summary.selected_seed);

    // Other settings are refused, naming what differs.
    let longer = |seed| {
        serde_json::to_value(TrainConfig {
            seed,
            epochs: 2,
            ..config.clone()
        })
        .unwrap()
    };
    let error = finished_runs(config.seed, 3, dir.path(), &longer).unwrap_err();
    assert!(error.is_bad_input());
    assert!(error.to_string().contains("(changed: epochs)"), "{error}");

    // A run finished on another device is the same run: a GPU job goes on on the CPU.
    let mut on_gpu: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(finished_mark(dir.path(), 5)).unwrap())
            .unwrap();
    assert_eq!(on_gpu["settings"]["device"], "cpu");
    on_gpu["settings"]["device"] = "cuda:0".into();
    std::fs::write(finished_mark(dir.path(), 5), on_gpu.to_string()).unwrap();
    let keep = finished_runs(config.seed, 3, dir.path(), &settings).unwrap();
    assert_eq!(keep.keys().copied().collect::<Vec<_>>(), [5, 6, 7]);

    // Nor does moving the job's folder change its runs: each is read where it is now, so
    // the kept runs' timings and label-free choices still come from their metrics.csv.
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join("moved");
    std::fs::rename(dir.path(), &moved).unwrap();
    let keep = finished_runs(config.seed, 3, &moved, &settings).unwrap();
    for (seed, run) in &keep {
        assert_eq!(run.run_dir, seed_dir(&moved, *seed));
    }
    trained.borrow_mut().clear();
    let after_move = train_seeds(
        config.seed,
        3,
        LabelFreeRule::HighestAgreement,
        &moved,
        &settings,
        &keep,
        &mut run_one,
    )
    .unwrap();
    assert!(trained.borrow().is_empty(), "every seed was kept");
    for (run, before) in after_move.runs.iter().zip(&resumed.runs) {
        assert_eq!(run.run_dir, seed_dir(&moved, run.seed));
        assert_eq!(run.label_free, before.label_free);
        assert_eq!(run.best_elapsed_s, before.best_elapsed_s);
    }
}

/// Trains one-channel `method` for 60 epochs on `data`, scored on the disks' masks: its
/// best validation Dice must be high and its model card must say what it is.
fn one_channel_method_finds_the_disks(method: Method, data: &LabeledFolder, val: &LabeledSet) {
    let _rng = common::torch_rng();
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        epochs: 60,
        lr: 1e-2,
        ..small(method)
    };
    let summary = train(&config, data, Some(val), dir.path(), false, &mut |_| {}).unwrap();
    let best = summary.best.unwrap();
    assert!(best.dice > 0.8, "{method:?}: {best:?}");
    let (_, card) = load_run(dir.path(), Device::Cpu).unwrap();
    assert_eq!((card.method, card.channels), (method, 1));
}

#[test]
fn supervised_baseline_fits_masks() {
    let data = common::disks(4, 64, 6, 10, 5);
    let val = data.labeled().unwrap();
    one_channel_method_finds_the_disks(Method::Supervised, &data, &val);
}

/// The same images with their masks taken away: only validation sees them.
fn without_masks(labeled: &LabeledFolder) -> LabeledFolder {
    LabeledFolder::from_items(
        Path::new("unlabeled"),
        labeled.items().iter().map(FolderImage::unlabeled).collect(),
    )
}

#[test]
fn hematoxylin_method_learns_nuclei_without_masks() {
    let labeled = common::disks(4, 64, 6, 10, 5);
    let val = labeled.labeled().unwrap();
    one_channel_method_finds_the_disks(Method::Hematoxylin, &without_masks(&labeled), &val);
}

/// Self-training learns the disks without masks, its loss falls, and it saves the last
/// epoch whatever the masks say (they only score it).
#[test]
fn self_training_learns_nuclei_and_keeps_the_last_epoch() {
    self_training_learns_the_disks(Student::ConfidenceNet);
}

/// The same with the UNet as the student: the card describes a UNet that `segment` loads,
/// and its nucleus class scores what validation scored.
#[test]
fn a_unet_student_learns_nuclei_and_segments_as_validated() {
    self_training_learns_the_disks(Student::Unet { width: 4 });
}

fn self_training_learns_the_disks(student: Student) {
    let _rng = common::torch_rng();
    let labeled = common::disks(4, 64, 6, 10, 5);
    let val = labeled.labeled().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        epochs: 60,
        lr: 1e-2,
        student,
        ..small(Method::SelfTraining)
    };
    let unlabeled = without_masks(&labeled);
    let summary = train(
        &config,
        &unlabeled,
        Some(&val),
        dir.path(),
        false,
        &mut |_| {},
    )
    .unwrap();
    let losses: Vec<f64> = summary.epochs.iter().map(|e| e.loss.unwrap()).collect();
    assert!(
        mean_loss(&losses[50..]) < 0.5 * mean_loss(&losses[..5]),
        "the loss should fall: {losses:?}"
    );
    let last = summary.epochs.last().unwrap();
    assert!(last.val_dice[0] > 0.8, "last epoch: {:?}", last.val_dice);
    let (_, card) = load_run(dir.path(), Device::Cpu).unwrap();
    let (architecture, channels, channel, width) = match student {
        Student::ConfidenceNet => (Architecture::ConfidenceNet, 1, 0, None),
        Student::Unet { width } => (Architecture::Unet, 2, 1, Some(width)),
    };
    assert_eq!(card.method, Method::SelfTraining);
    assert_eq!(
        (card.architecture, card.channels, card.channel, card.width),
        (architecture, channels, channel, width)
    );
    assert_eq!(card.epoch, Some(59));
    assert_eq!(card.selection, Some(Selection::LastEpoch));
    assert_eq!(card.val_dice, last.val_dice);
    assert_eq!(card.stain_calibration, Some(STAIN_CALIBRATION));
    // `segment` and `eval` calibrate each image by its own stain, as validation did: the
    // saved model scores the same Dice through the predictor.
    let predictor = Predictor::from_run(dir.path(), Device::Cpu, None, None).unwrap();
    let dice: Vec<f64> = val
        .items
        .iter()
        .map(|item| {
            let image = item.rgb_region();
            let (width, height) = (image.width, image.height);
            let gamma = predictor
                .stain_gamma(|| {
                    Ok::<_, std::convert::Infallible>(hematoxylin_cut_of_regions(
                        std::slice::from_ref(&image),
                    ))
                })
                .unwrap_or_else(|never| match never {});
            let whole = Window {
                x: 0,
                y: 0,
                width,
                height,
            };
            let predicted = predictor.predict(&[&image], &[whole], gamma).remove(0);
            let truth = Vec::<u8>::try_from(item.mask.to_kind(Kind::Uint8).view([-1])).unwrap();
            Confusion::of(&predicted, &truth).scores().dice
        })
        .collect();
    let mean_dice = dice.iter().sum::<f64>() / dice.len() as f64;
    assert!(
        (mean_dice - last.val_dice[0]).abs() < 1e-4,
        "{mean_dice} vs {:?}",
        last.val_dice
    );
    let choice = summary.label_free.unwrap();
    assert_eq!(
        (choice.epoch, choice.val_dice),
        (59, Some(last.val_dice[0]))
    );
}

#[test]
fn threshold_baseline_finds_the_gap() {
    let _rng = common::torch_rng();
    let data = common::disks(3, 64, 6, 0, 6);
    let val = data.labeled().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        method: Method::Threshold,
        ..TrainConfig::default()
    };
    let summary = train(&config, &data, Some(&val), dir.path(), false, &mut |_| {}).unwrap();
    assert_eq!(summary.best.unwrap().dice, 1.0);
    let (model, card) = load_run(dir.path(), Device::Cpu).unwrap();
    assert_eq!(card.architecture, Architecture::GrayThreshold);
    assert!(!dir.path().join("model.safetensors").exists());
    // Nuclei luma is 61/255, background 197/255: the first cut that separates them is 61.5.
    assert!(
        (card.threshold - 61.5 / 255.0).abs() < 1e-9,
        "{}",
        card.threshold
    );
    for item in &val.items {
        let fg = model
            .foreground(&card, &item.image_f32(Device::Cpu))
            .squeeze_dim(0);
        assert_eq!(fg, item.mask);
    }
    let err = train(&config, &data, None, dir.path(), false, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("labeled"), "{err}");
}
