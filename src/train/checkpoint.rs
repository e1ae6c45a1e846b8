//! Going on with a run after a crash or Ctrl-C. After every epoch the run directory gets
//! what training needs to continue from there: the network, Adam's moments, the crop
//! generator's position and the run's bookkeeping. `checkpoint.json` is the commit point:
//! it names the weights file it belongs to and is replaced by a rename, so a crash at any
//! moment leaves the previous epoch's pair intact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tch::Tensor;

use super::error::TrainError;
use super::metrics::EpochMetrics;
use super::selection::{Best, LabelFreeChoice};
use super::step::Trainer;
use crate::atomic_file::{CommitError, Durability, PartialFile};
use crate::model::{copy_weights, read_tensors, ModelError};

const CHECKPOINT_FILE: &str = "checkpoint.json";
/// Prefix of the weight average's variables in a checkpoint's weights file.
const AVERAGE_PREFIX: &str = "average.";

/// Where an interrupted run stands after its last finished epoch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    /// Epochs finished: training goes on with this one.
    pub epochs_done: usize,
    pub steps: usize,
    pub skipped: usize,
    pub best: Option<Best>,
    pub label_free: Option<LabelFreeChoice>,
    /// Training seconds so far, validation included (downtime between runs excluded).
    pub elapsed_s: f64,
    pub history: Vec<EpochMetrics>,
}

/// `checkpoint.json`.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    state: RunState,
    optimizer_steps: u64,
    /// The crop generator's word position; a string because it is a u128.
    crop_rng_word_pos: String,
    /// The weights file of the same epoch, in the run directory.
    weights: String,
}

fn weights_name(epochs_done: usize) -> String {
    format!("checkpoint-{epochs_done}.safetensors")
}

/// Whether `run_dir` holds an interrupted run that `load` can continue.
pub fn has_checkpoint(run_dir: &Path) -> bool {
    run_dir.join(CHECKPOINT_FILE).is_file()
}

/// Optimizer steps an interrupted run in `run_dir` has already taken (0 without a readable
/// checkpoint), so that progress is reported against what is left.
pub fn steps_done(run_dir: &Path) -> usize {
    std::fs::read_to_string(run_dir.join(CHECKPOINT_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<Checkpoint>(&text).ok())
        .map_or(0, |checkpoint| checkpoint.state.steps)
}

/// Records `state` (after `state.epochs_done` epochs) with the trainer's weights and
/// optimizer, and the crop generator at `crop_rng_word_pos`.
pub fn save(
    run_dir: &Path,
    trainer: &Trainer,
    crop_rng_word_pos: u128,
    state: &RunState,
) -> Result<(), TrainError> {
    let weights = weights_name(state.epochs_done);
    let weights_path = run_dir.join(&weights);
    let mut tensors: Vec<(String, Tensor)> = trainer.vs.variables().into_iter().collect();
    if let Some(average) = &trainer.average {
        tensors.extend(
            average
                .vs
                .variables()
                .into_iter()
                .map(|(name, t)| (format!("{AVERAGE_PREFIX}{name}"), t)),
        );
    }
    tensors.extend(trainer.optimizer.state());
    Tensor::write_safetensors(&tensors, &weights_path).map_err(|source| {
        TrainError::Model(ModelError::Weights {
            path: weights_path.clone(),
            source,
        })
    })?;
    let checkpoint = Checkpoint {
        state: state.clone(),
        optimizer_steps: trainer.optimizer.steps,
        crop_rng_word_pos: crop_rng_word_pos.to_string(),
        weights,
    };
    let path = run_dir.join(CHECKPOINT_FILE);
    let file = PartialFile::new(&path).expect("the checkpoint has a file name");
    let json = serde_json::to_string(&checkpoint).expect("checkpoint serialises");
    std::fs::write(file.partial(), json).map_err(TrainError::io(file.partial()))?;
    let partial = file.partial().to_path_buf();
    file.commit(Durability::RenameOnly).map_err(|e| match e {
        CommitError::Sync(source) => TrainError::io(&partial)(source),
        CommitError::Rename(source) | CommitError::SyncFolder(source) => {
            TrainError::io(&path)(source)
        }
    })?;
    remove_stale_weights(run_dir, Some(&checkpoint.weights))
}

/// Restores the trainer from `run_dir`'s checkpoint; returns the run's state and the crop
/// generator's word position, or `None` when there is no checkpoint.
pub fn load(run_dir: &Path, trainer: &mut Trainer) -> Result<Option<(RunState, u128)>, TrainError> {
    let path = run_dir.join(CHECKPOINT_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let broken = |why: String| TrainError::Checkpoint {
        path: path.clone(),
        why,
    };
    let text = std::fs::read_to_string(&path).map_err(TrainError::io(&path))?;
    let checkpoint: Checkpoint =
        serde_json::from_str(&text).map_err(|e| broken(format!("not a checkpoint ({e})")))?;
    let crop_rng_word_pos: u128 = checkpoint
        .crop_rng_word_pos
        .parse()
        .map_err(|_| broken("crop_rng_word_pos is not a number".into()))?;
    let weights_path = run_dir.join(&checkpoint.weights);
    let channels = trainer.net.channels() as usize;
    // One read for all: the network's and the weight average's variables and Adam's moments
    // share the file.
    let stored = read_tensors(&weights_path)?;
    copy_weights(&mut trainer.vs, &stored, &weights_path, channels)?;
    if let Some(average) = &mut trainer.average {
        let average_stored: HashMap<String, Tensor> = stored
            .iter()
            .filter_map(|(name, t)| {
                let name = name.strip_prefix(AVERAGE_PREFIX)?;
                Some((name.to_string(), t.shallow_clone()))
            })
            .collect();
        copy_weights(&mut average.vs, &average_stored, &weights_path, channels)?;
    }
    trainer
        .optimizer
        .load_state(checkpoint.optimizer_steps, &stored)
        .map_err(|name| {
            broken(format!(
                "{} lacks the optimizer tensor `{name}`",
                weights_path.display()
            ))
        })?;
    Ok(Some((checkpoint.state, crop_rng_word_pos)))
}

/// Deletes the checkpoint of a run that finished.
pub fn remove(run_dir: &Path) -> Result<(), TrainError> {
    let path = run_dir.join(CHECKPOINT_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(TrainError::io(&path)(e)),
    }
    remove_stale_weights(run_dir, None)
}

/// Removes checkpoint weights other than `keep` (earlier epochs', or all of them).
fn remove_stale_weights(run_dir: &Path, keep: Option<&str>) -> Result<(), TrainError> {
    let entries = std::fs::read_dir(run_dir).map_err(TrainError::io(run_dir))?;
    let stale: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("checkpoint-") && name.ends_with(".safetensors") && Some(name) != keep
        })
        .collect();
    for path in stale {
        std::fs::remove_file(&path).map_err(TrainError::io(&path))?;
    }
    Ok(())
}

/// What makes two runs the same run for `--resume`: their settings without the device, at
/// any depth. A job may go on elsewhere (a GPU job continued on the CPU); its numbers then
/// differ from an uninterrupted run's only as the devices' kernels differ.
pub fn run_identity(settings: &Value) -> Value {
    match settings {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(key, _)| key.as_str() != "device")
                .map(|(key, value)| (key.clone(), run_identity(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}
