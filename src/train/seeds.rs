//! `--seeds N`: independent runs and their spread (paper Table 2: max, mean ± sd, 80th
//! percentile over 10 initialisations).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::TrainError;
use super::run::TrainSummary;

/// One of the runs.
#[derive(Debug, Clone, Serialize)]
pub struct SeedRun {
    pub seed: u64,
    pub run_dir: PathBuf,
    /// Best validation Dice of the run (`None` without validation data).
    pub best_dice: Option<f64>,
    pub best_epoch: Option<usize>,
    pub best_channel: Option<usize>,
}

/// Contents of `summary.json`. Statistics are over runs with a best Dice.
#[derive(Debug, Clone, Serialize)]
pub struct SeedsSummary {
    pub runs: Vec<SeedRun>,
    pub max: Option<f64>,
    /// Linear-interpolated 80th percentile (numpy's default).
    pub p80: Option<f64>,
    pub mean: Option<f64>,
    /// Sample standard deviation (n − 1); 0 for a single run.
    pub sd: Option<f64>,
    /// Seed of the run with the highest validation Dice (what `segment` should use).
    pub selected_seed: Option<u64>,
    pub selected_run_dir: Option<PathBuf>,
}

/// Linear-interpolated percentile `q` ∈ [0, 100] of `values`.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len().checked_sub(1)?;
    let pos = q / 100.0 * last as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

fn summarise(runs: Vec<SeedRun>) -> SeedsSummary {
    let dice: Vec<f64> = runs.iter().filter_map(|r| r.best_dice).collect();
    let n = dice.len() as f64;
    let mean = (!dice.is_empty()).then(|| dice.iter().sum::<f64>() / n);
    let sd = mean.map(|m| {
        let ss: f64 = dice.iter().map(|d| (d - m).powi(2)).sum();
        if dice.len() > 1 {
            (ss / (n - 1.0)).sqrt()
        } else {
            0.0
        }
    });
    let selected = runs
        .iter()
        .filter(|r| r.best_dice.is_some())
        .max_by(|a, b| {
            a.best_dice
                .partial_cmp(&b.best_dice)
                .expect("Dice is never NaN")
        });
    SeedsSummary {
        max: dice.iter().copied().reduce(f64::max),
        p80: percentile(&dice, 80.0),
        mean,
        sd,
        selected_seed: selected.map(|r| r.seed),
        selected_run_dir: selected.map(|r| r.run_dir.clone()),
        runs,
    }
}

/// Trains `seeds` runs with seeds `first_seed`, `first_seed + 1`, … into
/// `run_dir/seed-<s>/` with `run_one(seed, dir)` and writes `run_dir/summary.json`.
pub fn train_seeds(
    first_seed: u64,
    seeds: usize,
    run_dir: &Path,
    run_one: &mut dyn FnMut(u64, &Path) -> Result<TrainSummary, TrainError>,
) -> Result<SeedsSummary, TrainError> {
    let runs = (0..seeds as u64)
        .map(|i| {
            let seed = first_seed + i;
            let dir = run_dir.join(format!("seed-{seed}"));
            let s = run_one(seed, &dir)?;
            Ok(SeedRun {
                seed,
                run_dir: dir,
                best_dice: s.best.map(|b| b.dice),
                best_epoch: s.best.and_then(|b| b.epoch),
                best_channel: s.best.map(|b| b.channel),
            })
        })
        .collect::<Result<Vec<_>, TrainError>>()?;
    let summary = summarise(runs);
    let path = run_dir.join("summary.json");
    let json = serde_json::to_string_pretty(&summary).expect("summary serialises");
    std::fs::write(&path, json).map_err(TrainError::io(&path))?;
    Ok(summary)
}
