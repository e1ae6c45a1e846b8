//! The cohort report (`report.csv`, `report.json`, and `report.html` through
//! [`super::html`]) and the per-slide files it is built from: `NAME.json` (complete) and
//! `NAME.error.json` (failed).

use super::{CohortError, Entry, Layout, Segmenter, Shard};
use crate::segment::{peak_rss_mb, sidecar_path, LengthUnit, SegmentSummary, Settings};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Segmented by this run.
    Done,
    /// Already complete for the same model and settings; not redone.
    Skipped,
    /// Failed; `error` says why. Rerunning retries it.
    Failed,
    /// Stopped by Ctrl-C/SIGTERM before finishing; rerunning does it.
    Cancelled,
    /// Not run yet (`--report-only`).
    Pending,
}

impl Status {
    pub fn is_complete(self) -> bool {
        matches!(self, Status::Done | Status::Skipped)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Done => "done",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
            Status::Pending => "pending",
        })
    }
}

/// One slide's line in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlideRow {
    /// Output name (`slides/NAME.tif`).
    pub name: String,
    pub id: String,
    pub slide: PathBuf,
    pub status: Status,
    pub error: Option<String>,
    pub mask: Option<PathBuf>,
    /// The QC overlay, when written (`report.html` shows it).
    #[serde(default)]
    pub overlay: Option<PathBuf>,
    /// Fraction of the slide detected as tissue.
    #[serde(default)]
    pub tissue_fraction: Option<f64>,
    pub tiles: Option<usize>,
    pub nuclei: Option<u64>,
    /// Nuclei per mm² of detected tissue (needs the slide's microns per pixel).
    pub nuclei_per_mm2: Option<f64>,
    /// Median nucleus area in µm² (needs the slide's microns per pixel).
    pub median_area_um2: Option<f64>,
    /// Nuclei area over detected tissue area.
    pub area_fraction: Option<f64>,
    /// Wall-clock seconds the slide took (this run, or the run that made it).
    pub seconds: Option<f64>,
    /// Model-space megapixels of the slide.
    pub mpx: Option<f64>,
    /// Slide megapixels per second of the segment pipeline.
    pub mpx_per_s: Option<f64>,
}

impl SlideRow {
    pub fn new(entry: &Entry, status: Status) -> Self {
        Self {
            name: entry.name.clone(),
            id: entry.id.clone(),
            slide: entry.path.clone(),
            status,
            error: None,
            mask: None,
            overlay: None,
            tissue_fraction: None,
            tiles: None,
            nuclei: None,
            nuclei_per_mm2: None,
            median_area_um2: None,
            area_fraction: None,
            seconds: None,
            mpx: None,
            mpx_per_s: None,
        }
    }

    pub fn from_summary(entry: &Entry, status: Status, summary: &SegmentSummary) -> Self {
        Self {
            mask: Some(summary.mask.clone()),
            overlay: summary.overlay.clone(),
            tissue_fraction: Some(summary.tissue_fraction),
            tiles: Some(summary.tiles.total),
            nuclei: Some(summary.nuclei.count),
            nuclei_per_mm2: summary.nuclei.per_mm2_of_tissue,
            median_area_um2: in_microns(summary.nuclei.unit, summary.nuclei.median_area),
            area_fraction: Some(summary.nuclei.area_fraction_of_tissue),
            seconds: Some(summary.timings.total_s),
            mpx: Some(
                summary.geometry.model_width as f64 * summary.geometry.model_height as f64 / 1e6,
            ),
            mpx_per_s: Some(summary.timings.slide_mpx_per_s),
            ..Self::new(entry, status)
        }
    }
}

/// The parts of a `NAME.json` the cohort reads back.
#[derive(Deserialize)]
struct StoredSummary {
    slide: PathBuf,
    mask: PathBuf,
    overlay: Option<PathBuf>,
    geojson: Option<PathBuf>,
    model: StoredModel,
    settings: Settings,
    geometry: StoredGeometry,
    tissue_fraction: f64,
    tiles: StoredTiles,
    nuclei: StoredNuclei,
    timings: StoredTimings,
}

#[derive(Deserialize, PartialEq)]
struct StoredModel {
    source: String,
    method: crate::model::Method,
    channel: usize,
    threshold: f64,
}

#[derive(Deserialize)]
struct StoredGeometry {
    model_width: u64,
    model_height: u64,
}

#[derive(Deserialize)]
struct StoredTiles {
    total: usize,
}

#[derive(Deserialize)]
struct StoredNuclei {
    count: u64,
    area_fraction_of_tissue: f64,
    unit: LengthUnit,
    per_mm2_of_tissue: Option<f64>,
    median_area: Option<f64>,
    table: Option<PathBuf>,
}

/// An area in `unit`² as µm², `None` unless the unit is µm.
fn in_microns(unit: LengthUnit, area: Option<f64>) -> Option<f64> {
    area.filter(|_| unit == LengthUnit::Micron)
}

#[derive(Deserialize)]
struct StoredTimings {
    total_s: f64,
    slide_mpx_per_s: f64,
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// The row of a slide whose outputs are complete for this model and these settings, or
/// `None` when it must be (re)done.
pub(super) fn completed(
    entry: &Entry,
    layout: &Layout,
    segmenter: &Segmenter,
    settings: &Settings,
) -> Option<SlideRow> {
    let mask = layout.mask(entry);
    let json = std::fs::read(sidecar_path(&mask, ".json")).ok()?;
    let stored: StoredSummary = serde_json::from_slice(&json).ok()?;
    let card = segmenter.predictor.card();
    let model = StoredModel {
        source: segmenter.predictor.source().to_owned(),
        method: card.method,
        channel: card.channel,
        threshold: card.threshold,
    };
    let options = &segmenter.options;
    let complete = same_file(&stored.slide, &entry.path)
        && stored.model == model
        && stored.settings == *settings
        && same_file(&stored.mask, &mask)
        && mask.is_file()
        && stored.overlay.is_some() == options.overlay
        && stored.geojson.is_some() == options.geojson
        && stored.nuclei.table.is_some() == options.measure
        && stored
            .overlay
            .iter()
            .chain(&stored.geojson)
            .chain(&stored.nuclei.table)
            .all(|p| p.is_file());
    complete.then(|| SlideRow {
        mask: Some(stored.mask),
        overlay: stored.overlay,
        tissue_fraction: Some(stored.tissue_fraction),
        tiles: Some(stored.tiles.total),
        nuclei: Some(stored.nuclei.count),
        nuclei_per_mm2: stored.nuclei.per_mm2_of_tissue,
        median_area_um2: in_microns(stored.nuclei.unit, stored.nuclei.median_area),
        area_fraction: Some(stored.nuclei.area_fraction_of_tissue),
        seconds: Some(stored.timings.total_s),
        mpx: Some(stored.geometry.model_width as f64 * stored.geometry.model_height as f64 / 1e6),
        mpx_per_s: Some(stored.timings.slide_mpx_per_s),
        ..SlideRow::new(entry, Status::Skipped)
    })
}

/// `NAME.error.json`: the failed row plus the model and settings it failed with.
#[derive(Serialize, Deserialize)]
struct ErrorFile {
    row: SlideRow,
    model: String,
    settings: Settings,
}

pub(super) fn write_error_file(layout: &Layout, entry: &Entry, row: &SlideRow, seg: &Segmenter) {
    let path = layout.error_file(entry);
    let record = ErrorFile {
        row: row.clone(),
        model: seg.predictor.source().to_owned(),
        settings: seg.settings(),
    };
    let written = crate::atomic_file::write_atomically(&path, |partial| {
        std::fs::write(partial, serde_json::to_vec_pretty(&record)?)?;
        Ok(())
    });
    if let Err(error) = written {
        tracing::warn!("cannot record the failure of {}: {error:#}", entry.name);
    }
}

pub(super) fn read_error_file(entry: &Entry, layout: &Layout) -> Option<SlideRow> {
    let bytes = std::fs::read(layout.error_file(entry)).ok()?;
    let record: ErrorFile = serde_json::from_slice(&bytes).ok()?;
    Some(SlideRow {
        status: Status::Failed,
        ..record.row
    })
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    pub total: usize,
    pub done: usize,
    pub skipped: usize,
    pub failed: usize,
    pub cancelled: usize,
    pub pending: usize,
}

/// `report.json`: the rows plus totals.
#[derive(Debug, Clone, Serialize)]
pub struct CohortReport {
    pub model: String,
    pub settings: Settings,
    pub shard: Option<String>,
    pub counts: Counts,
    /// Wall-clock seconds of this run.
    pub seconds: f64,
    /// Megapixels segmented by this run, and per second of wall clock.
    pub mpx: f64,
    pub mpx_per_s: f64,
    pub slides_per_hour: f64,
    pub peak_rss_mb: Option<f64>,
    pub slides: Vec<SlideRow>,
}

impl CohortReport {
    /// How fast the run went, in one line: time, pixels, throughput and peak memory.
    pub fn throughput(&self) -> String {
        format!(
            "{:.1} s, {:.1} Mpx at {:.1} Mpx/s, {:.0} slides/h, peak RSS {}",
            self.seconds,
            self.mpx,
            self.mpx_per_s,
            self.slides_per_hour,
            self.peak_rss_mb
                .map_or("n/a".to_owned(), |m| format!("{m:.0} MB"))
        )
    }

    /// The report of `slides` segmented by `model` (`RUN_DIR` or the baseline) with
    /// `settings`, in `seconds` of wall clock.
    pub fn new(
        slides: Vec<SlideRow>,
        model: String,
        settings: Settings,
        shard: Option<Shard>,
        seconds: f64,
    ) -> Self {
        let mut counts = Counts {
            total: slides.len(),
            ..Counts::default()
        };
        let mut mpx = 0.0;
        for row in &slides {
            match row.status {
                Status::Done => {
                    counts.done += 1;
                    mpx += row.mpx.unwrap_or(0.0);
                }
                Status::Skipped => counts.skipped += 1,
                Status::Failed => counts.failed += 1,
                Status::Cancelled => counts.cancelled += 1,
                Status::Pending => counts.pending += 1,
            }
        }
        let per_s = |x: f64| if seconds > 0.0 { x / seconds } else { 0.0 };
        Self {
            model,
            settings,
            shard: shard.map(|s| s.to_string()),
            counts,
            seconds,
            mpx,
            mpx_per_s: per_s(mpx),
            slides_per_hour: per_s(counts.done as f64) * 3600.0,
            peak_rss_mb: peak_rss_mb(),
            slides,
        }
    }

    /// `report` or `report-shard-I-of-N`.
    pub fn stem(shard: Option<Shard>) -> String {
        match shard {
            None => "report".to_owned(),
            Some(s) => format!("report-shard-{}-of-{}", s.index, s.count),
        }
    }

    /// Writes `STEM.json`, `STEM.csv` and `STEM.html` atomically into the report folder.
    pub(super) fn write(&self, layout: &Layout, shard: Option<Shard>) -> Result<(), CohortError> {
        let stem = Self::stem(shard);
        let json = layout.report_dir.join(format!("{stem}.json"));
        let csv = layout.report_dir.join(format!("{stem}.csv"));
        let fail = |path: &Path, e: anyhow::Error| CohortError::Report {
            path: path.to_path_buf(),
            message: crate::error_text::one_line(&e),
        };
        crate::atomic_file::write_atomically(&json, |partial| {
            std::fs::write(partial, serde_json::to_vec_pretty(self)?)?;
            Ok(())
        })
        .map_err(|e| fail(&json, e))?;
        crate::atomic_file::write_atomically(&csv, |partial| {
            let mut out = csv::Writer::from_path(partial)?;
            out.write_record([
                "name",
                "id",
                "slide",
                "status",
                "error",
                "tiles",
                "nuclei",
                "area_fraction",
                "nuclei_per_mm2",
                "median_area_um2",
                "seconds",
                "mpx",
                "mpx_per_s",
            ])?;
            let opt = |v: Option<String>| v.unwrap_or_default();
            for row in &self.slides {
                out.write_record([
                    row.name.clone(),
                    row.id.clone(),
                    row.slide.display().to_string(),
                    row.status.to_string(),
                    opt(row.error.clone()),
                    opt(row.tiles.map(|t| t.to_string())),
                    opt(row.nuclei.map(|n| n.to_string())),
                    opt(row.area_fraction.map(|a| format!("{a:.6}"))),
                    opt(row.nuclei_per_mm2.map(|d| format!("{d:.2}"))),
                    opt(row.median_area_um2.map(|a| format!("{a:.3}"))),
                    opt(row.seconds.map(|s| format!("{s:.3}"))),
                    opt(row.mpx.map(|m| format!("{m:.3}"))),
                    opt(row.mpx_per_s.map(|m| format!("{m:.2}"))),
                ])?;
            }
            out.flush()?;
            Ok(())
        })
        .map_err(|e| fail(&csv, e))?;
        let html = layout.report_dir.join(format!("{stem}.html"));
        super::html::write(self, &html).map_err(|e| fail(&html, e))
    }

    /// Where the report was written.
    pub fn json_path(layout: &Layout, shard: Option<Shard>) -> PathBuf {
        layout
            .report_dir
            .join(format!("{}.json", Self::stem(shard)))
    }
}
