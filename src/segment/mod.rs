//! Stream-segmenting a whole slide into a pyramidal TIFF mask.
//!
//! ```text
//! tiles ─► decode × N (core + halo) ─► model (batches, one device thread)
//!       ─► post × N (halo crop, threshold, morphology) ─► outputs (rows → TIFF, nuclei,
//!          GeoJSON, QC coverage)
//! ```
//!
//! [`segment_slide`] makes a plan (`plan.rs`: tissue, scale, grid, stain calibration) and
//! adds one stage per file of `stages/` (`decode.rs`, `predict.rs`, `postprocess.rs`,
//! `write.rs`), then writes the overlay and the summary.
//!
//! Every connection is a bounded channel, so memory depends on the tile size and the width
//! of the slide, never on its height. Background tiles (no tissue) pass through every
//! stage without being read or run, and are written as zeros.
//!
//! **Seam-free.** A tile is read with a halo of the network's receptive radius (83 px for the
//! confidence network, 58 for the UNet) plus the post-processing reach (16 px). The UNet's
//! poolings make it shift-equivariant by multiples of 8 px only, so its tiles must be
//! multiples of 8 (every read then has the same 8 px phase) and its halo is rounded up to
//! one (the phase of the image itself, as in training and `eval`). The model's decision
//! inside the halo-shrunk window is then exactly what it would be on the whole slide (outside the slide everything is white,
//! whether a tile or the whole image is read), and the morphology of the window, clipped to
//! the slide, equals the whole image's within the core. Tiled masks therefore equal the mask
//! of the image segmented whole, bit for bit (on deterministic kernels).

mod assemble;
pub mod components;
pub mod geojson;
mod measurements;
mod nuclei;
mod nuclei_table;
mod outputs;
mod overlay;
mod pixel_values;
mod plan;
mod predict;
mod scale;
mod stages;
mod summary;

pub use measurements::LengthUnit;
pub use overlay::{caption_height, with_caption, Caption, Coverage};
pub use pixel_values::finish_whole_region;
pub use predict::{Predictor, Window};
pub use scale::{
    finishing, method_finishing, model_mpp, parse_mpp, plan_geometry, ScaleUsed, TargetScale,
};
pub use summary::{
    peak_rss_mb, ModelUsed, NucleiSummary, SegmentSummary, Settings, TileCounts, Timings,
};

use crate::model::ModelError;
use crate::output_path::Output;
use crate::pipeline::{progress_bar, CancelToken, Pipeline, PipelineError, PipelineReport};
use crate::slide::geometry::{Geometry, GeometryError};
use crate::slide::{Slide, SlideError};
use crate::tiff::TiffWriteError;
use measurements::Scale;
use outputs::FinishedOutputs;
use plan::Plan;
use stages::decode::decode;
use stages::postprocess::{postprocess, PostProcessing};
use stages::predict::predict;
use stages::write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Failures of a segmentation run; each names the file or option at fault.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Slide(#[from] SlideError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tiff(#[from] TiffWriteError),
    #[error(transparent)]
    GeoJson(#[from] geojson::GeoJsonError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("{path}: the slide does not record its microns per pixel, so --target-mpp cannot resample it; give its scale with --mpp, or segment it natively (--target-mpp native)")]
    NoMpp { path: PathBuf },
    #[error("{0}")]
    InvalidOption(String),
    #[error("{path}: cannot write: {message}")]
    Write { path: PathBuf, message: String },
}

/// The same words whether `segment` or the slide layer refuses the scale.
impl From<GeometryError> for SegmentError {
    fn from(error: GeometryError) -> Self {
        match error {
            GeometryError::Slide(e) => Self::Slide(e),
            GeometryError::NoMpp { path } => Self::NoMpp { path },
            GeometryError::InvalidTargetMpp(message) => Self::InvalidOption(message),
        }
    }
}

/// A slide read stopped by the cancel token is the run being cancelled (exit code 130, a
/// cancelled slide in a cohort), not a bad slide.
pub fn cancelled_if_interrupted(error: SlideError) -> SegmentError {
    match error {
        SlideError::Interrupted { .. } => PipelineError::Cancelled.into(),
        other => other.into(),
    }
}

impl SegmentError {
    /// The user's input is at fault (slide, model, option), not the run.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Slide(_) | Self::Model(_) | Self::NoMpp { .. } | Self::InvalidOption(_)
        ) || matches!(self, Self::Tiff(e) if e.is_bad_input())
    }
}

/// How a slide is segmented (the model and geometry are given separately).
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    /// Side of the square a tile is responsible for, in model pixels.
    pub tile: u32,
    /// Tiles per forward pass.
    pub batch: usize,
    /// Threads decoding tiles, and threads post-processing them.
    pub workers: usize,
    /// Apply the paper's morphological post-processing.
    pub postprocess: bool,
    /// Run the model on background tiles too, and keep foreground outside detected tissue.
    pub all_tiles: bool,
    /// Nuclei smaller than this (µm²) are left out of the count.
    pub min_nucleus_area_um2: f64,
    /// Tile size of the TIFF written.
    pub tiff_tile: u32,
    pub overlay: bool,
    pub geojson: bool,
    /// Split touching nuclei (watershed on each finished component).
    pub separate: bool,
    /// Measure every nucleus and write `MASK.nuclei.csv.gz`.
    pub measure: bool,
    pub show_progress: bool,
    /// The scale asked for; the geometry already applies it, the summary explains it.
    pub target: TargetScale,
    /// `--mpp`, recorded in the summary only (the geometry already applies it).
    pub mpp: Option<f64>,
}

impl SegmentOptions {
    /// Defaults for `device`: on CPU, tiles whose activation maps stay under glibc's
    /// largest mmap threshold (see [`crate::allocator`]); on CUDA, big tiles in big batches.
    pub fn for_device(device: tch::Device) -> Self {
        if device.is_cuda() {
            Self {
                tile: 1024,
                batch: 8,
                ..Self::default()
            }
        } else {
            Self::default()
        }
    }
}

impl Default for SegmentOptions {
    /// The CPU defaults.
    fn default() -> Self {
        Self {
            tile: 768,
            batch: 1,
            workers: 2,
            postprocess: true,
            all_tiles: false,
            min_nucleus_area_um2: 0.0,
            tiff_tile: 512,
            overlay: true,
            geojson: false,
            separate: true,
            measure: true,
            show_progress: false,
            target: TargetScale::Model,
            mpp: None,
        }
    }
}

/// `MASK.tif` → `MASK<suffix>` next to it (e.g. `.json`, `.overlay.png`).
pub fn sidecar_path(mask: &Path, suffix: &str) -> PathBuf {
    let stem = mask.file_stem().unwrap_or_default().to_string_lossy();
    mask.with_file_name(format!("{stem}{suffix}"))
}

/// Every file [`segment_slide`] writes for `mask` with `options`, named for errors: what
/// must be checked before a run (see [`crate::output_path::check_outputs`]).
pub fn output_files(mask: &Path, options: &SegmentOptions) -> Vec<Output> {
    let sidecar = |suffix, what| Output {
        path: sidecar_path(mask, suffix),
        what,
    };
    let mut files = vec![
        Output {
            path: mask.to_path_buf(),
            what: "mask",
        },
        sidecar(".json", "summary"),
    ];
    files.extend(options.overlay.then(|| sidecar(".overlay.png", "overlay")));
    files.extend(options.geojson.then(|| sidecar(".geojson", "GeoJSON")));
    files.extend(
        options
            .measure
            .then(|| sidecar(".nuclei.csv.gz", "nuclei table")),
    );
    files
}

/// Segments `slide` at `geometry` with `predictor` into the pyramidal TIFF `mask`, plus
/// `MASK.json` (the summary), and optionally `MASK.overlay.png` and `MASK.geojson`. A
/// cancelled or failed run leaves none of them under their final names.
///
/// The plan, then the stages of `stages/` in the order tiles go through them, then the
/// overlay and the summary.
pub fn segment_slide(
    slide: Arc<dyn Slide>,
    geometry: &Geometry,
    predictor: Arc<Predictor>,
    mask: &Path,
    options: &SegmentOptions,
    cancel: &CancelToken,
) -> Result<SegmentSummary, SegmentError> {
    let started = Instant::now();
    check_options(options)?;
    crate::allocator::keep_freed_memory();
    let stopped = || cancel.is_cancelled();
    let mut plan = Plan::new(
        slide.as_ref(),
        geometry,
        &predictor,
        options,
        started,
        &stopped,
    )?;
    let (outputs, nuclei_scale) = write::open_outputs(
        mask,
        slide.as_ref(),
        geometry,
        &predictor,
        options,
        &plan.scale,
    )?;

    let bar = progress_bar(
        "segment tiles",
        Some(plan.grid.len() as u64),
        !options.show_progress,
    );
    tracing::info!(
        slide = %slide.path().display(),
        tiles = plan.grid.len(),
        tissue_tiles = plan.tissue_tiles,
        "segmenting"
    );
    let mut run = Pipeline::new("segment", cancel);
    let (workers, capacity) = (options.workers, options.batch.max(options.workers) * 2);
    let tiles = plan.send_tiles(&mut run, capacity);
    let decoded = decode(
        &mut run,
        tiles,
        Arc::clone(&slide),
        geometry.clone(),
        options.measure,
        plan.morphology
            .as_ref()
            .and_then(|m| m.stain_recut().cloned()),
        workers,
        capacity,
    );
    let predicted = predict(
        &mut run,
        decoded,
        Arc::clone(&predictor),
        plan.stain_gamma,
        options.batch,
        options.measure,
        capacity,
    );
    let post = PostProcessing {
        morphology: plan.morphology.clone(),
        // Nuclei live in tissue: keep foreground only there (unless every tile is wanted).
        tissue: (!options.all_tiles).then(|| Arc::clone(&plan.tissue)),
        level0_per_model: geometry.output_downsample / geometry.scale,
    };
    let cores = postprocess(&mut run, predicted, post, workers, capacity);
    let writing = write::write(
        &mut run,
        cores,
        outputs,
        &plan.grid,
        geometry,
        options.measure,
        bar.clone(),
    );
    let joined = run.join();
    bar.finish_and_clear();
    let (report, mut finished) = writing.finish(joined)?;

    // Until the summary is written, a failure (a disk that fills up at the overlay)
    // removes every output, so no mask is left without its summary.
    let mut written = std::mem::take(&mut finished.written);
    let overlay = options
        .overlay
        .then(|| {
            write::write_overlay(
                mask,
                slide.as_ref(),
                geometry,
                &predictor,
                &plan.scale,
                &finished,
                &mut written,
                &stopped,
            )
        })
        .transpose()?;
    let summary = summarise(
        plan,
        slide.as_ref(),
        geometry,
        &predictor,
        options,
        Ran {
            started,
            report,
            finished,
            overlay,
            nuclei_scale,
        },
    );
    write::write_summary(&sidecar_path(mask, ".json"), &summary)?;
    written.complete();
    Ok(summary)
}

/// What a finished run adds to its plan for the summary.
struct Ran {
    started: Instant,
    report: PipelineReport,
    finished: FinishedOutputs,
    overlay: Option<PathBuf>,
    nuclei_scale: Scale,
}

/// The summary of a run of `plan` on `slide`, timed up to now.
fn summarise(
    plan: Plan,
    slide: &dyn Slide,
    geometry: &Geometry,
    predictor: &Predictor,
    options: &SegmentOptions,
    ran: Ran,
) -> SegmentSummary {
    let Ran {
        started,
        report,
        finished,
        overlay,
        nuclei_scale,
    } = ran;
    let pipeline_s = report.wall_secs;
    let output_px = geometry.output_width as f64 * geometry.output_height as f64;
    let tissue_fraction = plan.tissue.fraction();
    let total_s = started.elapsed().as_secs_f64();
    let card = predictor.card();
    SegmentSummary {
        slide: slide.path().to_path_buf(),
        mask: finished.mask.clone(),
        overlay,
        geojson: finished.geojson.clone(),
        model: ModelUsed {
            source: predictor.source().to_owned(),
            method: card.method,
            channel: card.channel,
            threshold: card.threshold,
            train_mpp: card.train_mpp,
            device: crate::device::describe(predictor.device()),
            stain_gamma: card.stain_calibration.map(|_| plan.stain_gamma),
        },
        settings: Settings {
            tile: options.tile,
            batch: options.batch,
            postprocess: options.postprocess,
            all_tiles: options.all_tiles,
            min_nucleus_area_um2: options.min_nucleus_area_um2,
            level: geometry.output_level,
            target_mpp: options.target,
            mpp: options.mpp,
            separate: options.separate,
            measure: options.measure,
        },
        scale: plan.scale,
        geometry: geometry.clone(),
        tiles: TileCounts {
            total: plan.grid.len(),
            tissue: plan.tissue_tiles,
            segmented: plan.segmented,
            damaged_jpeg_tiles: slide.damaged_tiles(),
        },
        tissue_fraction,
        nuclei: NucleiSummary::new(
            &finished,
            options.separate,
            &nuclei_scale,
            output_px,
            tissue_fraction,
        ),
        timings: Timings {
            total_s,
            tissue_detection_s: plan.tissue_detection_s,
            pipeline_s,
            tissue_mpx: plan.tissue_mpx,
            tissue_mpx_per_s: plan.tissue_mpx / pipeline_s,
            slide_mpx_per_s: geometry.model_width as f64 * geometry.model_height as f64
                / 1e6
                / pipeline_s,
        },
        peak_rss_mb: peak_rss_mb(),
        stages: report,
        slidestream_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

fn check_options(options: &SegmentOptions) -> Result<(), SegmentError> {
    let invalid = |message: &str| Err(SegmentError::InvalidOption(message.to_owned()));
    if options.tile < 16 {
        return invalid("--tile must be at least 16 pixels (1024 is a good size)");
    }
    if options.batch == 0 {
        return invalid("--batch must be at least 1");
    }
    if options.workers == 0 {
        return invalid("--workers must be at least 1");
    }
    Ok(())
}
