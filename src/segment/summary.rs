//! The per-slide report: printed by `--json` and written next to the mask, where its
//! presence also marks the slide's outputs as complete.

use super::components::ComponentStats;
use super::measurements::{LengthUnit, Scale};
use super::nuclei::SplitStats;
use super::outputs::FinishedOutputs;
use super::scale::{ScaleUsed, TargetScale};
use crate::pipeline::PipelineReport;
use crate::slide::geometry::Geometry;
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
    /// The scale the model ran at, why, and the pixel sizes that follow.
    pub scale: ScaleUsed,
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
    pub batch: usize,
    pub postprocess: bool,
    pub all_tiles: bool,
    /// Nuclei smaller than this many µm² are not counted.
    pub min_nucleus_area_um2: f64,
    pub level: usize,
    /// `--target-mpp`: `model`, `native` or microns per pixel.
    pub target_mpp: TargetScale,
    /// `--mpp`: the slide's level-0 microns per pixel, over its metadata.
    pub mpp: Option<f64>,
    /// Touching nuclei split (not `--no-separate`).
    pub separate: bool,
    /// Nuclei measured and tabled (not `--no-measurements`).
    pub measure: bool,
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
    /// The gamma this slide's tiles were calibrated by (see `crate::stain`), for models
    /// trained with stain calibration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stain_gamma: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct TileCounts {
    pub total: usize,
    /// Tiles with tissue under them.
    pub tissue: usize,
    /// Tiles the model ran on (all of them with `--all-tiles`).
    pub segmented: usize,
    /// The slide file's own JPEG tiles found damaged and decoded as far as they went
    /// (each named in a warning); 0 when undamaged or not readable this way.
    pub damaged_jpeg_tiles: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NucleiSummary {
    /// Nuclei: the connected components (8-connectivity) of at least
    /// `scale.min_nucleus_area_px` pixels, split into touching nuclei by the watershed
    /// unless `separated` is false (specks under its minimum area dropped).
    pub count: u64,
    /// Foreground pixels of the mask (output level).
    pub area_px: u64,
    pub area_fraction_of_slide: f64,
    /// Nuclei area over detected tissue area.
    pub area_fraction_of_tissue: f64,
    /// Touching nuclei were split; `false`: nuclei are connected components.
    pub separated: bool,
    /// Unit of the sizes here and in the nuclei table and GeoJSON: `µm`, or `level-0 px`
    /// when the slide records no microns per pixel (and `--mpp` does not give it).
    pub unit: LengthUnit,
    /// Nuclei per mm² of detected tissue; `None` without microns per pixel or tissue.
    pub per_mm2_of_tissue: Option<f64>,
    /// Median nucleus area in `unit`²; `None` without nuclei.
    pub median_area: Option<f64>,
    /// `MASK.nuclei.csv.gz`, one row per nucleus; `None` with `--no-measurements`.
    pub table: Option<PathBuf>,
    pub components: ComponentStats,
    pub split: SplitStats,
}

impl NucleiSummary {
    /// The nuclei of `finished` outputs measured at `scale`, on a slide of `output_px`
    /// output pixels of which `tissue_fraction` is tissue.
    pub(super) fn new(
        finished: &FinishedOutputs,
        separated: bool,
        scale: &Scale,
        output_px: f64,
        tissue_fraction: f64,
    ) -> Self {
        let area_px = finished.components.foreground_pixels;
        let nuclei = &finished.nuclei;
        let pixel_area = scale.per_pixel * scale.per_pixel;
        let tissue_mm2 = output_px * tissue_fraction * pixel_area / 1e6;
        let fraction_of_tissue = if tissue_fraction > 0.0 {
            area_px as f64 / (output_px * tissue_fraction)
        } else {
            0.0
        };
        Self {
            count: nuclei.count,
            area_px,
            area_fraction_of_slide: area_px as f64 / output_px,
            area_fraction_of_tissue: fraction_of_tissue,
            separated,
            unit: scale.unit,
            per_mm2_of_tissue: (scale.unit == LengthUnit::Micron && tissue_mm2 > 0.0)
                .then(|| nuclei.count as f64 / tissue_mm2),
            median_area: nuclei.median_area().map(|a| a * pixel_area),
            table: finished.table.clone(),
            components: finished.components.clone(),
            split: nuclei.clone(),
        }
    }
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
