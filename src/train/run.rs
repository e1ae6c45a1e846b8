//! `train`: the epoch loop, per-epoch validation, model selection and RUN_DIR outputs.

use std::path::Path;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::checkpoint::{self, run_identity, RunState};
use super::config::{Method, TrainConfig};
use super::curves::draw_curves;
use super::data::{CropSource, LabeledSet};
use super::error::TrainError;
use super::label_free::{hematoxylin_agreement, hematoxylin_masks};
use super::metrics::{EpochMetrics, MetricsCsv};
use super::selection::best_channel;
pub use super::selection::{Best, LabelFreeChoice, LabelFreeRule};
use super::self_training::stain_calibration_of;
use super::step::{StepOutcome, Trainer};
use super::threshold::fit_gray_threshold;
use super::validate::validation_dice;
use crate::model::{read_card, save_run, Architecture, InputNormalisation, ModelCard, Selection};

/// Confidence threshold for validation and segmentation (paper 3.2).
pub const CONFIDENCE_THRESHOLD: f64 = 0.5;

/// Reported to the caller's progress callback.
#[derive(Debug)]
pub enum Progress<'a> {
    Step {
        epoch: usize,
        step: usize,
        outcome: StepOutcome,
    },
    Epoch(&'a EpochMetrics),
}

/// Fixed crops (drawn once, with their own seed) on which label-free selection is scored.
pub const PROBE_CROPS: usize = 8;

/// Result of one `train` call.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub method: Method,
    pub seed: u64,
    /// By validation Dice; `None` without validation data.
    pub best: Option<Best>,
    /// By hematoxylin agreement (saved when there is no validation data).
    pub label_free: Option<LabelFreeChoice>,
    pub steps: usize,
    pub skipped_steps: usize,
    pub elapsed_s: f64,
    pub epochs: Vec<EpochMetrics>,
}

/// Arithmetic mean; `None` for no values.
pub(super) fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// What `config.json` records of a run: its trainer settings and the data it learns from
/// (the crop source's description: folder and image count, labeled sub-images, slides).
#[derive(Serialize)]
struct RunRecord<'a> {
    #[serde(flatten)]
    config: &'a TrainConfig,
    data: String,
}

/// A run continues only with the settings and data it was started with (`config.json`), on
/// any device.
fn check_same_config(run_dir: &Path, record: &RunRecord<'_>) -> Result<(), TrainError> {
    let path = run_dir.join("config.json");
    let recorded: Option<serde_json::Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    let current = serde_json::to_value(record).expect("config serialises");
    match recorded {
        Some(recorded) if run_identity(&recorded) == run_identity(&current) => Ok(()),
        _ => Err(TrainError::Config(format!(
            "{}: the interrupted run was started with other settings; resume it with the \
             same flags, or choose a new --out",
            path.display()
        ))),
    }
}

/// Creates `run_dir` and records the run's configuration in `config.json`.
pub(crate) fn create_run_dir(run_dir: &Path, config: &impl Serialize) -> Result<(), TrainError> {
    std::fs::create_dir_all(run_dir).map_err(TrainError::io(run_dir))?;
    let path = run_dir.join("config.json");
    let json = serde_json::to_string_pretty(config).expect("config serialises");
    std::fs::write(&path, json).map_err(TrainError::io(&path))
}

/// Trains per `config` on crops from `data`, validating on `val` after every epoch, and
/// writes `model.safetensors` (best epoch), `model.json`, `metrics.csv` and `curves.png` /
/// `curves.svg` (redrawn every epoch) to `run_dir`. The threshold baseline is fitted on
/// `val` (for MoNuSeg, as in the paper, the labeled training images) and writes only
/// `model.json`.
pub fn train(
    config: &TrainConfig,
    data: &dyn CropSource,
    val: Option<&LabeledSet>,
    run_dir: &Path,
    resume: bool,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<TrainSummary, TrainError> {
    config.check()?;
    let record = RunRecord {
        config,
        data: data.describe(),
    };
    if resume && checkpoint::has_checkpoint(run_dir) {
        check_same_config(run_dir, &record)?;
    }
    create_run_dir(run_dir, &record)?;
    let start = Instant::now();
    let stain_calibration = stain_calibration_of(config.method);
    // `map`: which of the network's trained maps the card names as the nucleus mask.
    let card = |channels: usize, map: usize| {
        let shape = config.student.card_shape(channels, config.epsilon);
        ModelCard {
            architecture: shape.architecture,
            method: config.method,
            channels: shape.channels,
            channel: config.student.card_channel(map),
            threshold: CONFIDENCE_THRESHOLD,
            input_normalisation: shape.input_normalisation,
            epoch: None,
            val_dice: Vec::new(),
            seed: config.seed,
            data: data.describe(),
            slidestream_version: env!("CARGO_PKG_VERSION").to_string(),
            train_mpp: data.mpp(),
            selection: None,
            hematoxylin_agreement: Vec::new(),
            width: shape.width,
            stain_calibration,
        }
    };
    let summary = |best, label_free, steps, skipped_steps, epochs| TrainSummary {
        method: config.method,
        seed: config.seed,
        best,
        label_free,
        steps,
        skipped_steps,
        elapsed_s: start.elapsed().as_secs_f64(),
        epochs,
    };

    if config.method == Method::Threshold {
        let set = val.ok_or(TrainError::NeedsLabels(Method::Threshold))?;
        let fit = fit_gray_threshold(set);
        let card = ModelCard {
            architecture: Architecture::GrayThreshold,
            channels: 1,
            threshold: fit.threshold,
            input_normalisation: InputNormalisation::Luma,
            val_dice: vec![fit.dice],
            selection: Some(Selection::ValidationDice),
            ..card(1, 0)
        };
        save_run(run_dir, None, &card)?;
        let best = Best {
            epoch: None,
            channel: 0,
            dice: fit.dice,
        };
        return Ok(summary(Some(best), None, 0, 0, Vec::new()));
    }

    tch::manual_seed(config.seed as i64);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut trainer = Trainer::new(config)?;
    let channels = trainer.net.channels() as usize;
    let probe_items: Vec<usize> = (0..data.epoch_len().min(PROBE_CROPS)).collect();
    let mut probe_rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x9e37_79b9_7f4a_7c15);
    let probe = data.crops(&probe_items, config.crop, config.device, &mut probe_rng)?;
    let probe_reference = hematoxylin_masks(&probe.images);
    let mut state = match resume
        .then(|| checkpoint::load(run_dir, &mut trainer))
        .transpose()?
    {
        Some(Some((state, crop_rng_word_pos))) => {
            rng.set_word_pos(crop_rng_word_pos);
            tracing::info!(
                run = %run_dir.display(),
                epochs_done = state.epochs_done,
                "going on from the checkpoint"
            );
            state
        }
        _ => RunState::default(),
    };
    // The log of the epochs the checkpoint holds, without rows a crash may have added since.
    let mut csv = MetricsCsv::create(run_dir, channels)?;
    for metrics in &state.history {
        csv.append(metrics)?;
    }
    let elapsed_before = state.elapsed_s;

    let rule = LabelFreeRule::of(config.method);
    for epoch in state.epochs_done..config.epochs {
        if config.max_steps.is_some_and(|max| state.steps >= max) {
            break;
        }
        // Per-epoch draws that depend only on (seed, epoch, crop generator), so that an
        // epoch after a resume draws what it would have drawn uninterrupted.
        tch::manual_seed(epoch_seed(config.seed, epoch));
        let mut items: Vec<usize> = (0..data.epoch_len()).collect();
        items.shuffle(&mut rng);
        let (mut losses, mut intras, mut inters) = (Vec::new(), Vec::new(), Vec::new());
        let (mut epoch_steps, mut epoch_skipped) = (0, 0);
        for chunk in items.chunks(config.batch) {
            if config.max_steps.is_some_and(|max| state.steps >= max) {
                break;
            }
            let batch = data.crops(chunk, config.crop, config.device, &mut rng)?;
            let outcome = trainer.step(&batch)?;
            match outcome {
                StepOutcome::Skipped => epoch_skipped += 1,
                StepOutcome::Updated { loss, intra, inter } => {
                    losses.push(loss);
                    intras.extend(intra);
                    inters.extend(inter);
                }
            }
            state.steps += 1;
            epoch_steps += 1;
            progress(Progress::Step {
                epoch,
                step: state.steps,
                outcome,
            });
        }
        trainer.end_epoch(epoch);
        state.skipped += epoch_skipped;
        let val_dice = val
            .map(|set| {
                // Whole images: each calibrated by its own cut, as `eval` does.
                let confidence = |x: &tch::Tensor| trainer.infer(x, None);
                validation_dice(&confidence, set, config.device, CONFIDENCE_THRESHOLD)
            })
            .unwrap_or_default();
        let confidence = trainer.infer(&probe.images, probe.hematoxylin_cuts.as_deref());
        let hematoxylin_agreement =
            hematoxylin_agreement(&confidence, &probe_reference, CONFIDENCE_THRESHOLD);
        let metrics = EpochMetrics {
            epoch,
            loss: mean(&losses),
            intra: mean(&intras),
            inter: mean(&inters),
            steps: epoch_steps,
            skipped_steps: epoch_skipped,
            val_dice,
            hematoxylin_agreement,
            elapsed_s: elapsed_before + start.elapsed().as_secs_f64(),
        };
        csv.append(&metrics)?;
        let previous_label_free = state.label_free;
        state.label_free = LabelFreeChoice::after_epoch(
            previous_label_free,
            epoch,
            &metrics.hematoxylin_agreement,
            &metrics.val_dice,
            rule,
        );
        // Paper 3.2: keep the (epoch, channel) with the highest validation Dice (first one
        // on ties); without validation data, the label-free choice. A method whose rule is
        // the last epoch saves every epoch: masks then only score it.
        let candidate = best_channel(&metrics.val_dice);
        let improved = candidate.is_some_and(|(_, dice)| state.best.is_none_or(|b| dice > b.dice));
        if let (true, Some((channel, dice))) = (improved, candidate) {
            state.best = Some(Best {
                epoch: Some(epoch),
                channel,
                dice,
            });
        }
        let (save, selection, channel) = match (rule, candidate) {
            (LabelFreeRule::LastEpoch, _) => (true, Selection::LastEpoch, 0),
            (_, Some((channel, _))) => (improved, Selection::ValidationDice, channel),
            (_, None) => match state.label_free {
                Some(choice) => (
                    state.label_free != previous_label_free,
                    Selection::HematoxylinAgreement,
                    choice.channel,
                ),
                None => (true, Selection::LastEpoch, 0),
            },
        };
        if save {
            let card = ModelCard {
                epoch: Some(epoch),
                val_dice: metrics.val_dice.clone(),
                selection: Some(selection),
                hematoxylin_agreement: metrics.hematoxylin_agreement.clone(),
                ..card(channels, channel)
            };
            save_run(run_dir, Some(trainer.model_weights()), &card)?;
        }
        progress(Progress::Epoch(&metrics));
        state.history.push(metrics);
        // Every epoch, so a long run can be watched; marked with what model.json now holds.
        draw_curves(&state.history, &read_card(run_dir)?, run_dir)?;
        state.epochs_done = epoch + 1;
        state.elapsed_s = elapsed_before + start.elapsed().as_secs_f64();
        checkpoint::save(run_dir, &trainer, rng.get_word_pos(), &state)?;
    }
    checkpoint::remove(run_dir)?;
    let elapsed_s = elapsed_before + start.elapsed().as_secs_f64();
    Ok(TrainSummary {
        elapsed_s,
        ..summary(
            state.best,
            state.label_free,
            state.steps,
            state.skipped,
            state.history,
        )
    })
}

/// Torch's seed for `epoch` of the run seeded `seed` (patch sampling draws from it).
fn epoch_seed(seed: u64, epoch: usize) -> i64 {
    let mixed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (epoch as u64).wrapping_add(1);
    (mixed >> 1) as i64
}
