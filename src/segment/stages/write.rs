//! The write stage: final core masks in, finished output files out.
//!
//! Opens the outputs before the run (the pyramidal TIFF, the GeoJSON and the nuclei table);
//! during it, pastes the cores of each grid row into a band, maps bands to output rows and
//! pushes the rows through [`MaskOutputs`] (TIFF tiles, nuclei, coverage); after it, closes
//! the files, then draws the QC overlay and writes the summary. A stage of its own, on one
//! thread, because rows must reach the files in order, and the files are one writer's.
//!
//! Every file is removed again unless the summary is written too: a failed run drops the
//! outputs (partial files), and the finished files are held in an
//! [`IncompleteSet`] until [`IncompleteSet::complete`].

use crate::atomic_file::IncompleteSet;
use crate::pipeline::{Pipeline, PipelineError, PipelineReport, Stream};
use crate::segment::assemble::{BandAssembler, CoreMask, OutputRows};
use crate::segment::geojson::GeoJsonWriter;
use crate::segment::measurements::Scale;
use crate::segment::nuclei_table::NucleiTable;
use crate::segment::outputs::{FinishedOutputs, MaskOutputs, NucleiSetup};
use crate::segment::overlay::{with_caption, Caption, Coverage};
use crate::segment::predict::Predictor;
use crate::segment::{
    cancelled_if_interrupted, sidecar_path, ScaleUsed, SegmentError, SegmentOptions, SegmentSummary,
};
use crate::slide::geometry::{Geometry, MppSource};
use crate::slide::grid::{Tile, TileGrid};
use crate::slide::{read_overview, RgbRegion, Slide};
use crate::tiff::{Channels, Downsample, PyramidOptions, PyramidWriter};
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Creates the outputs `options` ask for next to `mask` (under temporary names until they
/// are finished); gives them with the scale nuclei are reported in.
pub fn open_outputs(
    mask: &Path,
    slide: &dyn Slide,
    geometry: &Geometry,
    predictor: &Predictor,
    options: &SegmentOptions,
    scale: &ScaleUsed,
) -> Result<(MaskOutputs, Scale), SegmentError> {
    let writer = PyramidWriter::create(
        mask,
        geometry.output_width as u32,
        geometry.output_height as u32,
        PyramidOptions {
            tile_size: options.tiff_tile,
            channels: Channels::Binary,
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
        .then(|| GeoJsonWriter::create(&sidecar_path(mask, ".geojson")))
        .transpose()?;
    let nuclei_setup = NucleiSetup::new(options, geometry, scale);
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
    Ok((outputs, nuclei_scale))
}

/// The outputs while the run has them; taken back with [`Writing::finish`] after the join.
pub struct Writing {
    // Shared with the sink only to be taken back after the join; a failed run drops it,
    // which removes the partial files.
    outputs: Arc<Mutex<Option<MaskOutputs>>>,
}

/// Adds the stage, named "write", to `run`: the cores of `grid`'s tiles, in row-major
/// order, become output rows at `geometry` pushed into `outputs`, with their values when
/// `measure`; `bar` counts the tiles written.
pub fn write(
    run: &mut Pipeline,
    cores: Stream<(Tile, Option<CoreMask>)>,
    outputs: MaskOutputs,
    grid: &TileGrid,
    geometry: &Geometry,
    measure: bool,
    bar: ProgressBar,
) -> Writing {
    let mut assembler = BandAssembler::new(grid, geometry.model_width, measure);
    let mut rows = OutputRows::new(geometry);
    let outputs = Arc::new(Mutex::new(Some(outputs)));
    let sink_outputs = Arc::clone(&outputs);
    run.sink(
        "write",
        cores,
        move |(tile, core): (Tile, Option<CoreMask>)| {
            if let Some(band) = assembler.place(&tile, core) {
                let mut guard = sink_outputs.lock().unwrap_or_else(PoisonError::into_inner);
                let outputs = guard
                    .as_mut()
                    .expect("outputs are taken only after the run");
                rows.push(&band, |chunk, values| outputs.push_rows(chunk, values))?;
            }
            bar.inc(1);
            Ok(())
        },
    );
    Writing { outputs }
}

impl Writing {
    /// Given the run's result: its report and the closed files, or its error with every
    /// partial file removed.
    pub fn finish(
        self,
        joined: Result<PipelineReport, PipelineError>,
    ) -> Result<(PipelineReport, FinishedOutputs), SegmentError> {
        let taken = self
            .outputs
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
        Ok((report, taken.finish()?))
    }
}

/// Draws the coverage of `finished` over a thumbnail of `slide`, captioned, into
/// `MASK.overlay.png`, and adds it to `written`. A read stopped by `stopped` is the run
/// being cancelled.
#[allow(clippy::too_many_arguments)]
pub fn write_overlay(
    mask: &Path,
    slide: &dyn Slide,
    geometry: &Geometry,
    predictor: &Predictor,
    scale: &ScaleUsed,
    finished: &FinishedOutputs,
    written: &mut IncompleteSet,
    stopped: &dyn Fn() -> bool,
) -> Result<PathBuf, SegmentError> {
    let path = sidecar_path(mask, ".overlay.png");
    let thumbnail = read_overview(
        slide,
        finished.coverage.factor() as f64 * geometry.output_downsample,
        stopped,
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
    let picture = with_caption(&finished.coverage.draw_over(&thumbnail.image), &caption).map_err(
        |message| SegmentError::Write {
            path: path.clone(),
            message,
        },
    )?;
    write_png(&path, &picture)?;
    written.add(&path);
    Ok(path)
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

/// Writes `MASK.json`, the summary: the last file of a run, whose presence says the others
/// are complete.
pub fn write_summary(path: &Path, summary: &SegmentSummary) -> Result<(), SegmentError> {
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
