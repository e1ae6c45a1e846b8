//! The per-slide report: printed by `--json` and written next to the mask, where its
//! presence also marks the slide's outputs as complete.

use super::components::ComponentStats;
use super::geometry::Geometry;
use crate::pipeline::PipelineReport;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize)]
pub struct SegmentSummary {
    pub slide: PathBuf,
    pub mask: PathBuf,
    pub overlay: Option<PathBuf>,
    pub geojson: Option<PathBuf>,
    pub model: ModelUsed,
    pub settings: Settings,
    pub geometry: Geometry,
    pub tiles: TileCounts,
    /// Fraction of the slide detected as tissue.
    pub tissue_fraction: f64,
    pub nuclei: NucleiSummary,
    pub timings: Timings,
    /// Highest resident memory of the process so far (MB), when the OS says.
    pub peak_rss_mb: Option<f64>,
    pub stages: PipelineReport,
    pub slidestream_version: String,
}

/// Everything besides the slide that determines the mask: a rerun with equal settings
/// would write the same file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub tile: u32,
    pub halo: u32,
    pub batch: usize,
    pub postprocess: bool,
    pub all_tiles: bool,
    pub min_nucleus_area: u64,
    pub level: usize,
    pub target_mpp: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelUsed {
    /// RUN_DIR, or "baseline threshold:T".
    pub source: String,
    pub method: crate::model::Method,
    pub channel: usize,
    pub threshold: f64,
    pub train_mpp: Option<f64>,
    pub device: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct TileCounts {
    pub total: usize,
    /// Tiles with tissue under them.
    pub tissue: usize,
    /// Tiles the model ran on (all of them with `--all-tiles`).
    pub segmented: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct NucleiSummary {
    /// Connected components (8-connectivity) of at least `min_nucleus_area` pixels.
    pub count: u64,
    pub area_px: u64,
    pub area_fraction_of_slide: f64,
    /// Nuclei area over detected tissue area.
    pub area_fraction_of_tissue: f64,
    pub components: ComponentStats,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timings {
    pub total_s: f64,
    pub tissue_detection_s: f64,
    pub pipeline_s: f64,
    /// Model-space megapixels under tissue tiles' cores.
    pub tissue_mpx: f64,
    pub tissue_mpx_per_s: f64,
    pub slide_mpx_per_s: f64,
}

/// The process's peak resident set size in MB (Linux `VmHWM`); `None` elsewhere.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
