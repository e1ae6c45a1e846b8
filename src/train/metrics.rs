//! Per-epoch metrics and `metrics.csv`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::TrainError;

const METRICS_FILE: &str = "metrics.csv";
/// Header prefixes of the per-channel columns (`val_dice_c0`, …).
const DICE_PREFIX: &str = "val_dice_c";
const HEMA_PREFIX: &str = "hema_agreement_c";

/// What one epoch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// One row of a `metrics.csv` read back: what a summary of finished runs needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEpoch {
    pub epoch: usize,
    /// Empty when the run had no validation data.
    pub val_dice: Vec<f64>,
    pub hematoxylin_agreement: Vec<f64>,
    pub elapsed_s: f64,
}

/// The rows of `run_dir/metrics.csv`, for a run that finished earlier; `None` if the file
/// is missing or not one this module wrote.
pub fn read_metrics(run_dir: &Path) -> Option<Vec<RecordedEpoch>> {
    let mut reader = csv::Reader::from_path(run_dir.join(METRICS_FILE)).ok()?;
    let header = reader.headers().ok()?.clone();
    let column = |name: &str| header.iter().position(|h| h == name);
    let columns_starting = |prefix: &str| -> Vec<usize> {
        (0..header.len())
            .filter(|&i| header[i].starts_with(prefix))
            .collect()
    };
    let (epoch, elapsed) = (column("epoch")?, column("elapsed_s")?);
    let (dice, hema) = (columns_starting(DICE_PREFIX), columns_starting(HEMA_PREFIX));
    let mut rows = Vec::new();
    for record in reader.records() {
        let fields = record.ok()?;
        // Per-channel values; fields left empty (no validation data) are absent.
        let values = |columns: &[usize]| -> Option<Vec<f64>> {
            columns
                .iter()
                .map(|&i| fields.get(i))
                .filter(|field| field.is_none_or(|f| !f.is_empty()))
                .map(|field| field?.parse().ok())
                .collect()
        };
        rows.push(RecordedEpoch {
            epoch: fields.get(epoch)?.parse().ok()?,
            val_dice: values(&dice)?,
            hematoxylin_agreement: values(&hema)?,
            elapsed_s: fields.get(elapsed)?.parse().ok()?,
        });
    }
    Some(rows)
}

/// Appends one row per epoch to `metrics.csv`, flushing each so a crashed run keeps its log.
#[derive(Debug)]
pub struct MetricsCsv {
    path: PathBuf,
    writer: csv::Writer<std::fs::File>,
    channels: usize,
}

/// `channels` fields, empty where `values` has none (e.g. no validation). Numbers are
/// written with Rust's shortest round-trip formatting, so they read back bit for bit.
fn per_channel(values: &[f64], channels: usize) -> impl Iterator<Item = String> + '_ {
    (0..channels).map(|c| values.get(c).map(f64::to_string).unwrap_or_default())
}

impl MetricsCsv {
    /// Creates `run_dir/metrics.csv` with a header for `channels` Dice columns.
    pub fn create(run_dir: &Path, channels: usize) -> Result<Self, TrainError> {
        let path = run_dir.join(METRICS_FILE);
        let mut writer = csv::Writer::from_path(&path).map_err(csv_error(&path))?;
        let header = ["epoch", "loss", "intra", "inter", "skipped_steps"]
            .map(str::to_owned)
            .into_iter()
            .chain((0..channels).map(|c| format!("{DICE_PREFIX}{c}")))
            .chain((0..channels).map(|c| format!("{HEMA_PREFIX}{c}")))
            .chain(["elapsed_s".to_owned()]);
        writer
            .write_record(header)
            .and_then(|()| Ok(writer.flush()?))
            .map_err(csv_error(&path))?;
        Ok(Self {
            path,
            writer,
            channels,
        })
    }

    pub fn append(&mut self, m: &EpochMetrics) -> Result<(), TrainError> {
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let record = [
            m.epoch.to_string(),
            opt(m.loss),
            opt(m.intra),
            opt(m.inter),
            m.skipped_steps.to_string(),
        ]
        .into_iter()
        .chain(per_channel(&m.val_dice, self.channels))
        .chain(per_channel(&m.hematoxylin_agreement, self.channels))
        .chain([format!("{:.3}", m.elapsed_s)]);
        self.writer
            .write_record(record)
            .and_then(|()| Ok(self.writer.flush()?))
            .map_err(csv_error(&self.path))
    }
}

/// A csv error as the I/O error it is (the fields are plain numbers: nothing else fails).
fn csv_error(path: &Path) -> impl Fn(csv::Error) -> TrainError + '_ {
    move |error| TrainError::io(path)(std::io::Error::other(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: usize, val_dice: Vec<f64>, elapsed_s: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            loss: (epoch > 0).then_some(1.25),
            intra: None,
            inter: None,
            steps: 3,
            skipped_steps: 0,
            val_dice,
            hematoxylin_agreement: vec![0.1 + epoch as f64, 1.0 / 3.0],
            elapsed_s,
        }
    }

    #[test]
    fn metrics_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let written = [
            epoch(0, vec![0.3, 2.0 / 7.0], 1.5),
            epoch(1, Vec::new(), 2.25),
        ];
        let mut csv = MetricsCsv::create(dir.path(), 2).unwrap();
        for m in &written {
            csv.append(m).unwrap();
        }
        let read = read_metrics(dir.path()).unwrap();
        let expected: Vec<RecordedEpoch> = written
            .iter()
            .map(|m| RecordedEpoch {
                epoch: m.epoch,
                val_dice: m.val_dice.clone(),
                hematoxylin_agreement: m.hematoxylin_agreement.clone(),
                elapsed_s: m.elapsed_s,
            })
            .collect();
        // Bit for bit: a choice recomputed from the file is the one training made.
        assert_eq!(read, expected);
    }

    #[test]
    fn foreign_metrics_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_metrics(dir.path()), None);
        std::fs::write(dir.path().join(METRICS_FILE), "epoch,elapsed_s\n0,abc\n").unwrap();
        assert_eq!(read_metrics(dir.path()), None);
    }
}
