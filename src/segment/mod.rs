//! Stream-segmenting a whole slide into a pyramidal TIFF mask.
//!
//! ```text
//! tiles ─► decode × N (core + halo) ─► model (batches, one device thread)
//!       ─► post × N (halo crop, threshold, morphology) ─► outputs (rows → TIFF, nuclei,
//!          GeoJSON, QC coverage)
//! ```
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
mod calibration;
pub mod components;
pub mod geojson;
mod measurements;
mod nuclei;
mod nuclei_table;
mod outputs;
mod overlay;
mod pixel_values;
mod predict;
mod scale;
mod summary;

pub use measurements::LengthUnit;
pub use overlay::{caption_height, with_caption, Caption, Coverage};
pub use predict::{Predictor, Window};
pub use scale::{model_mpp, parse_mpp, plan_geometry, ScaleUsed, TargetScale};
pub use summary::{
    peak_rss_mb, ModelUsed, NucleiSummary, SegmentSummary, Settings, TileCounts, Timings,
};

use crate::model::ModelError;
use crate::morphology::Postprocess;
use crate::output_path::Output;
use crate::pipeline::{progress_bar, CancelToken, Pipeline, PipelineError};
use crate::slide::geometry::{Geometry, GeometryError, MppSource};
use crate::slide::grid::{Rect, Tile, TileGrid};
use crate::slide::tissue::{detect_slide_tissue, TissueMask, TissueParams};
use crate::slide::{read_overview, RgbRegion, Slide, SlideError};
use crate::tiff::{Channels, Downsample, PyramidOptions, PyramidWriter, TiffWriteError};
use assemble::{BandAssembler, CoreMask, OutputRows};
use nuclei_table::NucleiTable;
use outputs::{MaskOutputs, NucleiSetup};
use pixel_values::{quantised_score, CoreValues, HematoxylinDensity};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
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

/// A tile on its way through the pipeline; `pixels` is `None` for background tiles.
struct TileItem {
    tile: Tile,
    /// Where the post-processed region lies in the read rectangle.
    window: predict::Window,
    pixels: Option<RgbRegion>,
    /// Quantised hematoxylin density of the core, when nuclei are measured.
    hematoxylin: Option<Vec<u16>>,
    foreground: Option<Vec<u8>>,
    /// Nucleus score of the window, when nuclei are measured.
    score: Option<Vec<f32>>,
}

/// Segments `slide` at `geometry` with `predictor` into the pyramidal TIFF `mask`, plus
/// `MASK.json` (the summary), and optionally `MASK.overlay.png` and `MASK.geojson`. A
/// cancelled or failed run leaves none of them under their final names.
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
    let (tissue, _) = detect_slide_tissue(slide.as_ref(), &TissueParams::default(), &stopped)
        .map_err(cancelled_if_interrupted)?;
    let tissue = Arc::new(tissue);
    let tissue_detection_s = started.elapsed().as_secs_f64();

    let scale = ScaleUsed::new(geometry, options, &predictor);
    scale.log(slide.path());
    let morphology = scale.postprocess();
    let reach = morphology.as_ref().map_or(0, Postprocess::reach);
    let halo = scale.halo_px;
    let alignment = predictor.alignment();
    if options.tile % alignment != 0 {
        return Err(SegmentError::InvalidOption(format!(
            "--tile {}: the model in {} needs tiles whose side is a multiple of {alignment} px \
             (e.g. {})",
            options.tile,
            predictor.source(),
            options.tile.next_multiple_of(alignment)
        )));
    }
    let grid = TileGrid::new(
        geometry.model_width,
        geometry.model_height,
        options.tile,
        halo,
    );
    let model_bounds = Rect {
        x: 0,
        y: 0,
        width: geometry.model_width as u32,
        height: geometry.model_height as u32,
    };
    let mut tissue_tiles = 0;
    let mut tissue_mpx = 0.0;
    let items: Vec<(Tile, bool, predict::Window)> = grid
        .tiles()
        .map(|tile| {
            let has_tissue = tissue.fraction_in(geometry.to_level0(tile.core)) > 0.0;
            if has_tissue {
                tissue_tiles += 1;
                tissue_mpx += tile.core.area() as f64 / 1e6;
            }
            let run = has_tissue || options.all_tiles;
            (tile, run, window_of(&tile, reach, &model_bounds))
        })
        .collect();
    let segmented = items.iter().filter(|(_, run, _)| *run).count();
    let stain_gamma =
        calibration::stain_gamma(&predictor, slide.as_ref(), geometry, tissue.as_ref())?;

    let writer = PyramidWriter::create(
        mask,
        geometry.output_width as u32,
        geometry.output_height as u32,
        PyramidOptions {
            tile_size: options.tiff_tile,
            channels: Channels::Gray,
            downsample: Downsample::Max,
            mpp: geometry.output_mpp,
            description: format!(
                "slidestream nuclei mask of {} (model {}, channel {}, threshold {})",
                slide.path().display(),
                predictor.source(),
                predictor.card().channel,
                predictor.card().threshold
            ),
            // The slide's time, not the clock's: the same slide and settings then give the
            // same bytes, which resumable cohorts and caches can rely on.
            date_time: std::fs::metadata(slide.path())
                .and_then(|m| m.modified())
                .ok(),
            ..PyramidOptions::default()
        },
    )?;
    let geojson = options
        .geojson
        .then(|| geojson::GeoJsonWriter::create(&sidecar_path(mask, ".geojson")))
        .transpose()?;
    let nuclei_setup = NucleiSetup::new(options, geometry, &scale);
    let nuclei_scale = nuclei_setup.scale;
    let table = options
        .measure
        .then(|| {
            NucleiTable::create(
                &sidecar_path(mask, ".nuclei.csv.gz"),
                nuclei_setup.scale.unit,
            )
        })
        .transpose()?;
    let coverage = Coverage::new(geometry.output_width, geometry.output_height);
    let outputs = MaskOutputs::new(writer, geometry, geojson, table, nuclei_setup, coverage);

    let bar = progress_bar(
        "segment tiles",
        Some(grid.len() as u64),
        !options.show_progress,
    );
    tracing::info!(
        slide = %slide.path().display(),
        tiles = grid.len(),
        tissue_tiles,
        "segmenting"
    );
    let mut run = Pipeline::new("segment", cancel);
    let capacity = options.batch.max(options.workers) * 2;
    let queued = run.source("tiles", capacity, move |emit| {
        for (tile, run_model, window) in items {
            emit.send((tile, run_model, window))?;
        }
        Ok(())
    });
    let reader_slide = Arc::clone(&slide);
    let reader_geometry = geometry.clone();
    let density = options.measure.then(HematoxylinDensity::default);
    let decoded = run.map(
        "decode",
        queued,
        options.workers,
        capacity,
        move |(tile, run_model, window): (Tile, bool, predict::Window)| {
            let pixels = if run_model {
                Some(reader_geometry.read(reader_slide.as_ref(), tile.read)?)
            } else {
                None
            };
            let hematoxylin = density.as_ref().zip(pixels.as_ref()).map(|(d, p)| {
                d.quantised(p, tile.core_offset(), (tile.core.width, tile.core.height))
            });
            Ok(TileItem {
                tile,
                window,
                pixels,
                hematoxylin,
                foreground: None,
                score: None,
            })
        },
    );
    let (batch, measure) = (options.batch, options.measure);
    let model_predictor = Arc::clone(&predictor);
    let predicted = run.transform("model", decoded, capacity, move |input, emit| {
        let mut pending: Vec<TileItem> = Vec::new();
        for item in input {
            let item = item?;
            // Background with nothing waiting ahead of it goes straight on.
            if item.pixels.is_none() && pending.is_empty() {
                emit.send(item)?;
                continue;
            }
            pending.push(item);
            if pending.iter().filter(|i| i.pixels.is_some()).count() == batch {
                predict_batch(&model_predictor, &mut pending, stain_gamma, measure);
                for item in pending.drain(..) {
                    emit.send(item)?;
                }
            }
        }
        predict_batch(&model_predictor, &mut pending, stain_gamma, measure);
        for item in pending {
            emit.send(item)?;
        }
        Ok(())
    });
    let post = PostProcessing {
        morphology,
        // Nuclei live in tissue: keep foreground only there (unless every tile is wanted).
        tissue: (!options.all_tiles).then(|| Arc::clone(&tissue)),
        level0_per_model: geometry.output_downsample / geometry.scale,
    };
    let cores = run.map(
        "post",
        predicted,
        options.workers,
        capacity,
        move |item: TileItem| Ok((item.tile, post.core_mask(item))),
    );
    let mut assembler = BandAssembler::new(&grid, geometry.model_width, options.measure);
    let mut rows = OutputRows::new(geometry);
    // Shared with the sink only to be taken back after the join; a failed run drops it,
    // which removes the partial files.
    let outputs = Arc::new(Mutex::new(Some(outputs)));
    let sink_outputs = Arc::clone(&outputs);
    let sink_bar = bar.clone();
    run.sink(
        "write",
        cores,
        move |(tile, core): (Tile, Option<CoreMask>)| {
            if let Some(band) = assembler.place(&tile, core.as_ref()) {
                let mut guard = sink_outputs.lock().unwrap_or_else(PoisonError::into_inner);
                let outputs = guard
                    .as_mut()
                    .expect("outputs are taken only after the run");
                rows.push(&band, |chunk, values| outputs.push_rows(chunk, values))?;
            }
            sink_bar.inc(1);
            Ok(())
        },
    );
    let joined = run.join();
    bar.finish_and_clear();
    let taken = outputs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .expect("outputs are taken once");
    let report = match joined {
        Ok(report) => report,
        Err(error) => {
            drop(taken);
            return Err(error.into());
        }
    };
    let mut finished = taken.finish()?;
    // Until the summary is written, a failure (a disk that fills up at the overlay)
    // removes every output, so no mask is left without its summary.
    let mut written = std::mem::take(&mut finished.written);
    let pipeline_s = report.wall_secs;

    let overlay = if options.overlay {
        let path = sidecar_path(mask, ".overlay.png");
        let thumbnail = read_overview(
            slide.as_ref(),
            finished.coverage.factor() as f64 * geometry.output_downsample,
            &stopped,
        )
        .map_err(cancelled_if_interrupted)?;
        let caption = Caption {
            slide: slide.path().file_name().map_or_else(
                || slide.path().display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            model: format!("{} ({})", predictor.source(), predictor.card().method),
            nuclei: finished.nuclei.count,
            // An assumed scale would make the bar a guess: better none.
            microns_per_pixel: (scale.slide_mpp_source != MppSource::Assumed)
                .then_some(scale.slide_mpp * thumbnail.downsample),
        };
        let picture = with_caption(&finished.coverage.draw_over(&thumbnail.image), &caption)
            .map_err(|message| SegmentError::Write {
                path: path.clone(),
                message,
            })?;
        write_png(&path, &picture)?;
        written.add(&path);
        Some(path)
    } else {
        None
    };

    let output_px = geometry.output_width as f64 * geometry.output_height as f64;
    let tissue_fraction = tissue.fraction();
    let total_s = started.elapsed().as_secs_f64();
    let card = predictor.card();
    let summary = SegmentSummary {
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
            stain_gamma: card.stain_calibration.map(|_| stain_gamma),
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
        scale,
        geometry: geometry.clone(),
        tiles: TileCounts {
            total: grid.len(),
            tissue: tissue_tiles,
            segmented,
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
            tissue_detection_s,
            pipeline_s,
            tissue_mpx,
            tissue_mpx_per_s: tissue_mpx / pipeline_s,
            slide_mpx_per_s: geometry.model_width as f64 * geometry.model_height as f64
                / 1e6
                / pipeline_s,
        },
        peak_rss_mb: peak_rss_mb(),
        stages: report,
        slidestream_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    write_summary(&sidecar_path(mask, ".json"), &summary)?;
    written.complete();
    Ok(summary)
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

/// The tile's core grown by the post-processing reach and clipped to the model image, in
/// the coordinates of the tile's read rectangle.
fn window_of(tile: &Tile, reach: u32, bounds: &Rect) -> predict::Window {
    let reach = i64::from(reach);
    let x0 = (tile.core.x - reach).max(bounds.x);
    let y0 = (tile.core.y - reach).max(bounds.y);
    let x1 = (tile.core.right() + reach).min(bounds.right());
    let y1 = (tile.core.bottom() + reach).min(bounds.bottom());
    predict::Window {
        x: (x0 - tile.read.x) as u32,
        y: (y0 - tile.read.y) as u32,
        width: (x1 - x0) as u32,
        height: (y1 - y0) as u32,
    }
}

/// Runs the model on the tiles of `pending` that have pixels (calibrated by the slide's
/// `stain_gamma`), freeing the pixels.
/// With `scores`, each tile's nucleus score is kept too, for the measurements.
fn predict_batch(predictor: &Predictor, pending: &mut [TileItem], stain_gamma: f64, scores: bool) {
    let (tiles, windows): (Vec<&RgbRegion>, Vec<predict::Window>) = pending
        .iter()
        .filter_map(|item| item.pixels.as_ref().map(|p| (p, item.window)))
        .unzip();
    let predictions: Vec<(Vec<u8>, Option<Vec<f32>>)> = if scores {
        let scored = predictor.predict_scored(&tiles, &windows, stain_gamma);
        scored
            .into_iter()
            .map(|(mask, score)| (mask, Some(score)))
            .collect()
    } else {
        let masks = predictor.predict(&tiles, &windows, stain_gamma);
        masks.into_iter().map(|mask| (mask, None)).collect()
    };
    let mut predictions = predictions.into_iter();
    for item in pending.iter_mut().filter(|item| item.pixels.is_some()) {
        let (mask, score) = predictions.next().expect("one prediction per tile");
        item.pixels = None;
        item.foreground = Some(mask);
        item.score = score;
    }
}

/// What the post-processing workers do to a tile's raw foreground.
struct PostProcessing {
    /// The paper's opening/closing sequence at the model's scale.
    morphology: Option<Postprocess>,
    /// Clear foreground outside this tissue map (level-0 coordinates).
    tissue: Option<Arc<TissueMask>>,
    level0_per_model: f64,
}

impl PostProcessing {
    /// The final 0/255 mask of a tile's core, with the core's values when the tile has
    /// them; `None` when it is all background.
    fn core_mask(&self, item: TileItem) -> Option<CoreMask> {
        let foreground = item.foreground.as_ref()?;
        let window = item.window;
        let (ww, wh) = (window.width as usize, window.height as usize);
        let cleaned = match &self.morphology {
            Some(morphology) => morphology.apply(foreground, ww, wh),
            None => foreground.clone(),
        };
        let (core_x, core_y) = item.tile.core_offset();
        let (dx, dy) = ((core_x - window.x) as usize, (core_y - window.y) as usize);
        let core = item.tile.core;
        let (cw, ch) = (core.width as usize, core.height as usize);
        let mut mask = Vec::with_capacity(cw * ch);
        for (y, row) in cleaned[dy * ww..].chunks_exact(ww).take(ch).enumerate() {
            for (x, &value) in row[dx..dx + cw].iter().enumerate() {
                let keep = value != 0
                    && self.tissue.as_ref().is_none_or(|tissue| {
                        // Pixel centres, so that the test is the same from any tile.
                        let at = |p: i64| ((p as f64 + 0.5) * self.level0_per_model) as i64;
                        tissue.is_tissue_at(at(core.x + x as i64), at(core.y + y as i64))
                    });
                mask.push(if keep { 255 } else { 0 });
            }
        }
        if mask.iter().all(|&v| v == 0) {
            return None;
        }
        let values = item
            .score
            .zip(item.hematoxylin)
            .map(|(score, hematoxylin)| {
                let score = score[dy * ww..]
                    .chunks_exact(ww)
                    .take(ch)
                    .flat_map(|row| &row[dx..dx + cw])
                    .map(|&s| quantised_score(s))
                    .collect();
                CoreValues { score, hematoxylin }
            });
        Some(CoreMask { mask, values })
    }
}

fn write_png(path: &Path, picture: &RgbRegion) -> Result<(), SegmentError> {
    write_sidecar(path, |partial| {
        image::save_buffer_with_format(
            partial,
            &picture.pixels,
            picture.width,
            picture.height,
            image::ExtendedColorType::Rgb8,
            image::ImageFormat::Png,
        )?;
        Ok(())
    })
}

fn write_summary(path: &Path, summary: &SegmentSummary) -> Result<(), SegmentError> {
    write_sidecar(path, |partial| {
        std::fs::write(partial, serde_json::to_vec_pretty(summary)?)?;
        Ok(())
    })
}

/// Writes a file next to the mask atomically, naming it in the error.
fn write_sidecar(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> Result<(), SegmentError> {
    crate::atomic_file::write_atomically(path, write).map_err(|error| SegmentError::Write {
        path: path.to_path_buf(),
        message: crate::error_text::one_line(&error),
    })
}
