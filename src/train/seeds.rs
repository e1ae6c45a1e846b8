//! `--seeds N`: independent runs and their spread (paper Table 2: max, mean ± sd, 80th
//! percentile over 10 initialisations). Each finished run leaves `seed.json`, so a long
//! multi-seed job that was stopped can be resumed: runs finished with the same settings are
//! kept, the others trained.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::checkpoint::run_identity;
use super::checkpoint::steps_done;
use super::error::TrainError;
use super::metrics::read_metrics;
use super::run::{mean, LabelFreeChoice, LabelFreeRule, TrainSummary};

/// One of the runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedRun {
    pub seed: u64,
    pub run_dir: PathBuf,
    /// Best validation Dice of the run (`None` without validation data).
    pub best_dice: Option<f64>,
    pub best_epoch: Option<usize>,
    pub best_channel: Option<usize>,
    /// Wall seconds when the best epoch (validation included) had ended: time to best.
    #[serde(default)]
    pub best_elapsed_s: Option<f64>,
    /// Wall seconds of the whole run, validation included.
    #[serde(default)]
    pub elapsed_s: Option<f64>,
    /// What label-free selection picks in this run, and its validation Dice: how close
    /// choosing without masks comes to `best_dice`.
    #[serde(default)]
    pub label_free: Option<LabelFreeChoice>,
}

impl SeedRun {
    /// Fills the timings and the label-free choice from the run's `metrics.csv` (one source
    /// for runs trained now and runs kept from a job whose `seed.json` predates them).
    fn with_recorded(self, rule: LabelFreeRule) -> Self {
        let rows = read_metrics(&self.run_dir).unwrap_or_default();
        Self {
            best_elapsed_s: self
                .best_epoch
                .and_then(|best| rows.iter().find(|row| row.epoch == best))
                .map(|row| row.elapsed_s),
            elapsed_s: rows.last().map(|row| row.elapsed_s),
            label_free: rows.iter().fold(None, |choice, row| {
                LabelFreeChoice::after_epoch(
                    choice,
                    row.epoch,
                    &row.hematoxylin_agreement,
                    &row.val_dice,
                    rule,
                )
            }),
            ..self
        }
    }
}

/// Contents of `summary.json`. Statistics are over runs with a best Dice.
#[derive(Debug, Clone, Serialize)]
pub struct SeedsSummary {
    pub runs: Vec<SeedRun>,
    pub max: Option<f64>,
    pub min: Option<f64>,
    pub median: Option<f64>,
    /// Linear-interpolated 80th percentile (numpy's default).
    pub p80: Option<f64>,
    pub mean: Option<f64>,
    /// Sample standard deviation (n − 1); 0 for a single run.
    pub sd: Option<f64>,
    /// Seed of the run with the highest validation Dice (what `segment` should use).
    pub selected_seed: Option<u64>,
    pub selected_run_dir: Option<PathBuf>,
    /// Median validation Dice of the label-free choices.
    pub label_free_median: Option<f64>,
    /// Mean of `best_dice` − the label-free choice's Dice over the runs that have both:
    /// what selecting without masks costs.
    pub label_free_mean_gap: Option<f64>,
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
    let mean_dice = mean(&dice);
    let sd = mean_dice.map(|m| {
        let ss: f64 = dice.iter().map(|d| (d - m).powi(2)).sum();
        if dice.len() > 1 {
            (ss / (dice.len() - 1) as f64).sqrt()
        } else {
            0.0
        }
    });
    let label_free_dice: Vec<f64> = runs.iter().filter_map(|r| r.label_free?.val_dice).collect();
    let label_free_gaps: Vec<f64> = runs
        .iter()
        .filter_map(|r| Some(r.best_dice? - r.label_free?.val_dice?))
        .collect();
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
        min: dice.iter().copied().reduce(f64::min),
        median: percentile(&dice, 50.0),
        p80: percentile(&dice, 80.0),
        mean: mean_dice,
        sd,
        selected_seed: selected.map(|r| r.seed),
        selected_run_dir: selected.map(|r| r.run_dir.clone()),
        label_free_median: percentile(&label_free_dice, 50.0),
        label_free_mean_gap: mean(&label_free_gaps),
        runs,
    }
}

/// `seed.json`: written into a run's folder once it has finished, with the settings it was
/// trained with (what a resumed job compares).
#[derive(Serialize, Deserialize)]
struct FinishedRun {
    run: SeedRun,
    settings: Value,
}

const FINISHED: &str = "seed.json";

/// Where seed `seed`'s run of a multi-seed job in `run_dir` lives.
pub fn seed_dir(run_dir: &Path, seed: u64) -> PathBuf {
    run_dir.join(format!("seed-{seed}"))
}

/// The file that marks seed `seed`'s run under `run_dir` as finished.
pub fn finished_mark(run_dir: &Path, seed: u64) -> PathBuf {
    seed_dir(run_dir, seed).join(FINISHED)
}

/// What a (multi-seed) job needs to resume: the settings that identify a run, and the runs
/// an earlier job finished with them.
pub struct SeedJob<'a> {
    settings: &'a dyn Fn(u64) -> Value,
    keep: BTreeMap<u64, SeedRun>,
    first_seed: u64,
    seeds: usize,
    resume: bool,
    out: PathBuf,
}

impl<'a> SeedJob<'a> {
    /// Checks `resume` (--resume) against what `out` (--out) holds for the `seeds` runs from
    /// `first_seed`; `settings(seed)` identifies a seed's run.
    pub fn new(
        first_seed: u64,
        seeds: usize,
        resume: bool,
        out: &Path,
        settings: &'a dyn Fn(u64) -> Value,
    ) -> Result<Self, TrainError> {
        let multi = seeds > 1;
        let keep = if resume {
            finished_runs(first_seed, seeds, out, settings)?
        } else {
            // A single run writes no marks; its own guard is the existing model.json.
            let earlier = (first_seed..)
                .take(if multi { seeds } else { 0 })
                .map(|seed| finished_mark(out, seed))
                .find(|mark| mark.exists());
            if let Some(mark) = earlier {
                return Err(TrainError::Config(format!(
                    "{}: --out already holds finished runs; add --resume to keep them and \
                     train the rest, or choose a new --out",
                    mark.display()
                )));
            }
            BTreeMap::new()
        };
        Ok(Self {
            settings,
            keep,
            first_seed,
            seeds,
            resume,
            out: out.to_path_buf(),
        })
    }

    /// The settings that identify the run of `seed`.
    pub fn settings(&self) -> &'a dyn Fn(u64) -> Value {
        self.settings
    }

    /// Runs an earlier job finished with the same settings, kept by seed.
    pub fn kept(&self) -> &BTreeMap<u64, SeedRun> {
        &self.keep
    }

    /// Runs this job still has to train.
    pub fn to_train(&self) -> usize {
        self.seeds - self.keep.len()
    }

    /// Optimizer steps still to take, `steps_per_run` per run less what the checkpoints of
    /// interrupted runs already hold.
    pub fn steps_left(&self, steps_per_run: usize) -> usize {
        (self.first_seed..self.first_seed + self.seeds as u64)
            .filter(|seed| !self.keep.contains_key(seed))
            .map(|seed| {
                let dir = if self.seeds > 1 {
                    seed_dir(&self.out, seed)
                } else {
                    self.out.clone()
                };
                let done = if self.resume { steps_done(&dir) } else { 0 };
                steps_per_run.saturating_sub(done)
            })
            .sum()
    }
}

/// The runs of seeds `first_seed`, `first_seed + 1`, … under `run_dir` that an earlier job
/// finished with the same `settings(seed)`, by seed. A run stopped half-way has no
/// `seed.json` and is not among them; a finished run with other settings is an error that
/// names the settings that differ. Kept runs are read from where `run_dir` is now.
pub fn finished_runs(
    first_seed: u64,
    seeds: usize,
    run_dir: &Path,
    settings: &dyn Fn(u64) -> Value,
) -> Result<BTreeMap<u64, SeedRun>, TrainError> {
    let mut finished = BTreeMap::new();
    for seed in (first_seed..).take(seeds) {
        let path = finished_mark(run_dir, seed);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(earlier) = serde_json::from_str::<FinishedRun>(&text) else {
            tracing::warn!(file = %path.display(), "unreadable; the seed is trained again");
            continue;
        };
        let (earlier_identity, expected) = (
            run_identity(&earlier.settings),
            run_identity(&settings(seed)),
        );
        if earlier_identity != expected {
            return Err(TrainError::Config(format!(
                "{}: seed {seed} was trained with other settings (changed: {}); resume with the \
                 same flags, or use another --out",
                path.display(),
                differing_fields(&earlier_identity, &expected).join(", ")
            )));
        }
        // The run is where its mark is now: the job's folder may have moved since (copied
        // off a GPU node, or a relative --out resumed from another directory).
        let run = SeedRun {
            run_dir: seed_dir(run_dir, seed),
            ..earlier.run
        };
        finished.insert(seed, run);
    }
    Ok(finished)
}

/// Names of the fields (dotted paths) where two JSON objects differ.
fn differing_fields(a: &Value, b: &Value) -> Vec<String> {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .flat_map(|key| match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) if x == y => Vec::new(),
                    (Some(x), Some(y)) if x.is_object() && y.is_object() => differing_fields(x, y)
                        .into_iter()
                        .map(|inner| format!("{key}.{inner}"))
                        .collect(),
                    _ => vec![key.clone()],
                })
                .collect()
        }
        _ => vec!["the settings".into()],
    }
}

/// Trains `seeds` runs with seeds `first_seed`, `first_seed + 1`, … into
/// `run_dir/seed-<s>/` with `run_one(seed, dir)`, except those in `keep` (see
/// [`finished_runs`]), marks each finished run with its `settings(seed)`, and writes
/// `run_dir/summary.json` over all of them; label-free choices by `rule`.
pub fn train_seeds(
    first_seed: u64,
    seeds: usize,
    rule: LabelFreeRule,
    run_dir: &Path,
    settings: &dyn Fn(u64) -> Value,
    keep: &BTreeMap<u64, SeedRun>,
    run_one: &mut dyn FnMut(u64, &Path) -> Result<TrainSummary, TrainError>,
) -> Result<SeedsSummary, TrainError> {
    let runs = (first_seed..)
        .take(seeds)
        .map(|seed| {
            if let Some(run) = keep.get(&seed) {
                tracing::info!(seed, "finished earlier; kept");
                return Ok(run.clone().with_recorded(rule));
            }
            let dir = seed_dir(run_dir, seed);
            // A mark left by an earlier job would vouch for the run about to replace it.
            let _ = std::fs::remove_file(finished_mark(run_dir, seed));
            let s = run_one(seed, &dir)?;
            let run = SeedRun {
                seed,
                run_dir: dir,
                best_dice: s.best.map(|b| b.dice),
                best_epoch: s.best.and_then(|b| b.epoch),
                best_channel: s.best.map(|b| b.channel),
                best_elapsed_s: None,
                elapsed_s: None,
                label_free: None,
            }
            .with_recorded(rule);
            // Written last: a run killed before this point is trained again on resume.
            let path = finished_mark(run_dir, seed);
            let finished = FinishedRun {
                run: run.clone(),
                settings: settings(seed),
            };
            let json = serde_json::to_string_pretty(&finished).expect("seed.json serialises");
            std::fs::write(&path, json).map_err(TrainError::io(&path))?;
            Ok(run)
        })
        .collect::<Result<Vec<_>, TrainError>>()?;
    let summary = summarise(runs);
    let path = run_dir.join("summary.json");
    let json = serde_json::to_string_pretty(&summary).expect("summary serialises");
    std::fs::write(&path, json).map_err(TrainError::io(&path))?;
    Ok(summary)
}
