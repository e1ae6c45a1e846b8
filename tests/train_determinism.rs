//! Same seed, same weights, also across an interruption (own test binary: torch's RNG is
//! process-global).

mod common;

use std::cell::Cell;
use std::path::Path;

use rand_chacha::ChaCha8Rng;
use slidestream::model::{LoadedModel, Method};
use slidestream::train::{
    has_checkpoint, steps_done, train, Batch, CropSource, DataError, LabeledFolder, Student,
    TrainConfig, TrainError,
};
use tch::Device;

fn config(seed: u64, epochs: usize) -> TrainConfig {
    TrainConfig {
        seed,
        epochs,
        channels: 2,
        crop: 48,
        batch: 3,
        patch_size: 16,
        stride: 8,
        ..TrainConfig::default()
    }
}

fn weights(run_dir: &Path) -> Vec<(String, tch::Tensor)> {
    let (model, _) = slidestream::model::load_run(run_dir, Device::Cpu).unwrap();
    let vs = match model {
        LoadedModel::Network { vs, .. } | LoadedModel::Unet { vs, .. } => vs,
        LoadedModel::GrayThreshold => panic!("{} holds no weights", run_dir.display()),
    };
    let mut vars: Vec<_> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

fn weights_after(seed: u64) -> Vec<(String, tch::Tensor)> {
    let data = common::disks(6, 64, 6, 10, 11);
    let dir = tempfile::tempdir().unwrap();
    train(
        &config(seed, 2),
        &data,
        None,
        dir.path(),
        false,
        &mut |_| {},
    )
    .unwrap();
    weights(dir.path())
}

/// Serves `batches` batches of `data`, then fails like a crashed crop stream.
struct DiesAfter<'a> {
    data: &'a LabeledFolder,
    batches: Cell<usize>,
}

impl CropSource for DiesAfter<'_> {
    fn epoch_len(&self) -> usize {
        self.data.epoch_len()
    }
    fn describe(&self) -> String {
        self.data.describe()
    }
    fn crops(
        &self,
        items: &[usize],
        crop: u32,
        device: Device,
        rng: &mut ChaCha8Rng,
    ) -> Result<Batch, DataError> {
        let left = self.batches.get();
        if left == 0 {
            return Err(DataError::CropStream("simulated crash".into()));
        }
        self.batches.set(left - 1);
        self.data.crops(items, crop, device, rng)
    }
}

/// `metrics.csv` without its wall-clock column.
fn metrics_without_time(run_dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    text.lines()
        .map(|line| line.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

#[test]
fn an_interrupted_run_resumes_to_the_uninterrupted_result() {
    resumes_to_the_uninterrupted_result(&config(5, 5));
}

/// Also the student's jittered views go on where they were.
#[test]
fn an_interrupted_self_training_run_resumes_to_the_uninterrupted_result() {
    resumes_to_the_uninterrupted_result(&TrainConfig {
        method: Method::SelfTraining,
        ..config(5, 5)
    });
}

/// And a UNet student's weights, weight average and Adam moments.
#[test]
fn an_interrupted_unet_student_resumes_to_the_uninterrupted_result() {
    resumes_to_the_uninterrupted_result(&TrainConfig {
        method: Method::SelfTraining,
        student: Student::Unet { width: 4 },
        ..config(5, 5)
    });
}

fn resumes_to_the_uninterrupted_result(config: &TrainConfig) {
    let _rng = common::torch_rng();
    let data = common::disks(6, 64, 6, 10, 12);
    let whole = tempfile::tempdir().unwrap();
    let summary = train(config, &data, None, whole.path(), false, &mut |_| {}).unwrap();
    assert_eq!(summary.epochs.len(), 5);
    assert!(
        !has_checkpoint(whole.path()),
        "a finished run keeps no checkpoint"
    );

    // 6 crops per epoch in batches of 3, plus the probe batch: dies in the 4th epoch.
    let broken = tempfile::tempdir().unwrap();
    let dying = DiesAfter {
        data: &data,
        batches: Cell::new(1 + 3 * 2 + 1),
    };
    let err = train(config, &dying, None, broken.path(), false, &mut |_| {}).unwrap_err();
    assert!(matches!(err, TrainError::Data(_)), "{err}");
    assert!(has_checkpoint(broken.path()));
    assert_eq!(metrics_without_time(broken.path()).len(), 1 + 3);
    assert_eq!(
        steps_done(broken.path()),
        3 * 2,
        "progress counts the steps left"
    );

    // As if the run had started on a GPU: a run goes on on any device.
    let recorded = broken.path().join("config.json");
    let mut started: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&recorded).unwrap()).unwrap();
    assert_eq!(started["device"], "cpu");
    started["device"] = "cuda:0".into();
    std::fs::write(&recorded, started.to_string()).unwrap();

    let mut resumed_epochs = Vec::new();
    let summary = train(config, &data, None, broken.path(), true, &mut |p| {
        if let slidestream::train::Progress::Epoch(m) = p {
            resumed_epochs.push(m.epoch);
        }
    })
    .unwrap();
    assert_eq!(
        resumed_epochs,
        [3, 4],
        "only the missing epochs are trained"
    );
    assert_eq!(summary.epochs.len(), 5);
    assert!(!has_checkpoint(broken.path()));
    assert_eq!(
        metrics_without_time(broken.path()),
        metrics_without_time(whole.path())
    );
    for ((name, a), (_, b)) in weights(whole.path()).iter().zip(&weights(broken.path())) {
        assert_eq!(a, b, "{name} differs after the resume");
    }
    let card = |dir: &Path| std::fs::read_to_string(dir.join("model.json")).unwrap();
    assert_eq!(card(whole.path()), card(broken.path()));
}

#[test]
fn a_run_resumes_only_with_its_own_settings() {
    let _rng = common::torch_rng();
    let data = common::disks(6, 64, 6, 10, 12);
    let dir = tempfile::tempdir().unwrap();
    let dying = DiesAfter {
        data: &data,
        batches: Cell::new(1 + 2 + 1),
    };
    train(&config(5, 3), &dying, None, dir.path(), false, &mut |_| {}).unwrap_err();
    let err = train(&config(6, 3), &data, None, dir.path(), true, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("config.json") && err.to_string().contains("same flags"),
        "{err}"
    );
    // The same settings on other data (here more images) are another run too.
    let more = common::disks(8, 64, 6, 10, 12);
    let err = train(&config(5, 3), &more, None, dir.path(), true, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("same flags"), "{err}");
}

#[test]
fn same_seed_same_weights() {
    let _rng = common::torch_rng();
    let (a, b, c) = (weights_after(3), weights_after(3), weights_after(4));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert_eq!(ta, tb, "{na} differs between runs with the same seed");
    }
    assert!(a.iter().zip(&c).any(|((_, ta), (_, tc))| ta != tc));
}
