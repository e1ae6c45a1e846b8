//! Per-epoch metrics and `metrics.csv`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::TrainError;

const METRICS_FILE: &str = "metrics.csv";

/// What one epoch did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochMetrics {
    /// 0-based.
    pub epoch: usize,
    /// Mean over the epoch's non-skipped steps (`None` if all were skipped).
    pub loss: Option<f64>,
    pub intra: Option<f64>,
    pub inter: Option<f64>,
    pub steps: usize,
    pub skipped_steps: usize,
    /// Validation Dice per channel (empty without validation data).
    pub val_dice: Vec<f64>,
    /// Label-free agreement of each channel with the hematoxylin stain on a fixed probe
    /// batch of training crops (see [`super::label_free`]).
    pub hematoxylin_agreement: Vec<f64>,
    /// Seconds since training started.
    pub elapsed_s: f64,
}

/// `metrics.csv`'s (epoch, elapsed_s) pairs, for timings of a run that finished earlier;
/// `None` if the file is missing or not one this module wrote.
pub fn read_elapsed(run_dir: &Path) -> Option<Vec<(usize, f64)>> {
    let text = std::fs::read_to_string(run_dir.join(METRICS_FILE)).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(',').collect();
    let column = |name: &str| header.iter().position(|&h| h == name);
    let (epoch, elapsed) = (column("epoch")?, column("elapsed_s")?);
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            Some((
                fields.get(epoch)?.parse().ok()?,
                fields.get(elapsed)?.parse().ok()?,
            ))
        })
        .collect()
}

/// Appends one row per epoch to `metrics.csv`, flushing each so a crashed run keeps its log.
#[derive(Debug)]
pub struct MetricsCsv {
    path: PathBuf,
    file: std::fs::File,
    channels: usize,
}

/// `channels` comma-prefixed fields, empty where `values` has none (e.g. no validation).
fn per_channel(values: &[f64], channels: usize) -> String {
    (0..channels)
        .map(|c| values.get(c).map_or(",".to_owned(), |v| format!(",{v}")))
        .collect()
}

impl MetricsCsv {
    /// Creates `run_dir/metrics.csv` with a header for `channels` Dice columns.
    pub fn create(run_dir: &Path, channels: usize) -> Result<Self, TrainError> {
        let path = run_dir.join(METRICS_FILE);
        let mut file = std::fs::File::create(&path).map_err(TrainError::io(&path))?;
        let dice: String = (0..channels).map(|c| format!(",val_dice_c{c}")).collect();
        let hema: String = (0..channels)
            .map(|c| format!(",hema_agreement_c{c}"))
            .collect();
        writeln!(
            file,
            "epoch,loss,intra,inter,skipped_steps{dice}{hema},elapsed_s"
        )
        .map_err(TrainError::io(&path))?;
        Ok(Self {
            path,
            file,
            channels,
        })
    }

    pub fn append(&mut self, m: &EpochMetrics) -> Result<(), TrainError> {
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let dice = per_channel(&m.val_dice, self.channels);
        let hema = per_channel(&m.hematoxylin_agreement, self.channels);
        writeln!(
            self.file,
            "{},{},{},{},{}{dice}{hema},{:.3}",
            m.epoch,
            opt(m.loss),
            opt(m.intra),
            opt(m.inter),
            m.skipped_steps,
            m.elapsed_s
        )
        .and_then(|()| self.file.flush())
        .map_err(TrainError::io(&self.path))
    }
}
