//! `slidestream segment`: one slide in, a pyramidal TIFF nuclei mask (plus summary JSON,
//! QC overlay, a report page and optional GeoJSON) out.

use crate::cohort::{html, CohortReport, Entry, SlideRow, Status};
use crate::device::DeviceChoice;
use crate::model::{MODEL_CARD_FILE, WEIGHTS_FILE};
use crate::output_path::{check_outputs, Output};
use crate::pipeline::CancelToken;
use crate::segment::SegmentSummary;
use crate::segment::{
    output_files, parse_mpp, plan_geometry, segment_slide, sidecar_path, Predictor, SegmentError,
    SegmentOptions, TargetScale,
};
use crate::slide::{open_with, OpenOptions};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// Luma threshold of `--baseline threshold` without `:T`: the best global cut on the 30
/// MoNuSeg training images (`train --method threshold --data monuseg-train`: between
/// levels 115 and 116, mean Dice 0.607).
pub const DEFAULT_BASELINE_THRESHOLD: f64 = 115.5 / 255.0;

/// Where the mask's foreground comes from when no RUN_DIR is given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Baseline {
    /// Foreground = luma below this (in [0, 1]).
    Threshold(f64),
}

fn parse_baseline(text: &str) -> Result<Baseline, String> {
    let (name, value) = text.split_once(':').unwrap_or((text, ""));
    if name != "threshold" {
        return Err(format!(
            "unknown baseline `{name}`; use `threshold` or `threshold:T` with T in [0,1]"
        ));
    }
    if value.is_empty() {
        return Ok(Baseline::Threshold(DEFAULT_BASELINE_THRESHOLD));
    }
    parse_threshold(value)
        .map(Baseline::Threshold)
        .map_err(|_| format!("`{value}` is not a threshold; give T in [0,1], e.g. threshold:0.45"))
}

/// A threshold in [0, 1], refused when the arguments are parsed so that a pipeline's
/// `--dry-run` names the key (NaN fails the range test too).
fn parse_threshold(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(t) if (0.0..=1.0).contains(&t) => Ok(t),
        _ => Err(format!(
            "`{text}` is not a threshold; give a value between 0 and 1"
        )),
    }
}

/// How slides are segmented: the model (or baseline) and every setting that shapes the
/// mask. Shared by `segment` (one slide) and `cohort` (many).
/// How a trained run is applied: where, and which of model.json's choices to override.
/// Shared by every command that loads a RUN_DIR.
#[derive(Debug, Clone, clap::Args)]
pub struct RunOverrides {
    /// Where the network runs.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Output channel used as the nuclei mask (default: the one model.json chose).
    #[arg(long)]
    pub channel: Option<usize>,
    /// Confidence above which a pixel is nucleus, in [0, 1] (default: model.json's,
    /// normally 0.5).
    #[arg(long, value_parser = parse_threshold)]
    pub threshold: Option<f64>,
}

impl RunOverrides {
    /// Loads `run_dir` on `device` with these overrides.
    pub fn load(&self, run_dir: &Path, device: tch::Device) -> Result<Predictor, SegmentError> {
        Predictor::from_run(run_dir, device, self.channel, self.threshold)
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// RUN_DIR written by `train` (model.json + model.safetensors).
    #[arg(long, required_unless_present = "baseline")]
    pub model: Option<PathBuf>,
    /// No trained model: `threshold` (luma below 0.453, the best cut on MoNuSeg, is
    /// nucleus) or `threshold:T`. Runs anywhere in seconds; a floor to compare models against.
    #[arg(long, value_parser = parse_baseline, conflicts_with_all = ["model", "channel"])]
    pub baseline: Option<Baseline>,
    /// Side of the square each tile is responsible for, in model pixels (default: 768 on
    /// CPU, where larger activations thrash the allocator; 1024 on CUDA). Tiles are read
    /// with 99 px more context on every side (receptive field + post-processing), so larger
    /// tiles waste less.
    #[arg(long)]
    pub tile: Option<u32>,
    /// Tiles per forward pass (default: 1 on CPU, 8 on CUDA).
    #[arg(long)]
    pub batch: Option<usize>,
    #[command(flatten)]
    pub run: RunOverrides,
    /// Slide level to write the mask at (0 = full resolution); the model still runs at
    /// --target-mpp.
    #[arg(long, default_value_t = 0)]
    pub level: usize,
    /// The scale the model sees: `model` = the train_mpp in model.json, so that a model
    /// trained at 40× finds the same nuclei on 20× and 40× slides (the slide is resampled and
    /// the mask written back at --level); `native` = the level's own pixels; or microns per
    /// pixel. `model` falls back to native pixels, with a warning, when the model or the
    /// slide does not record its scale.
    #[arg(long, default_value = "model", value_parser = TargetScale::from_str)]
    pub target_mpp: TargetScale,
    /// The slide's microns per pixel at level 0, for slides that do not record it (plain
    /// images) or record it wrongly; e.g. 0.25 for 40×, 0.5 for 20×.
    #[arg(long, value_parser = parse_mpp)]
    pub mpp: Option<f64>,
    /// Decode and post-processing threads each (default: CPU cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Skip the post-processing: the paper's opening/closing with disks of 0.75 and
    /// 0.25 µm (3 and 1 px at 0.25 µm/px) and, for self-training models, before it the
    /// mask's edges re-cut by the hematoxylin and nuclear holes up to 10 µm filled.
    #[arg(long)]
    pub raw: bool,
    /// Run the model on every tile and keep all foreground (default: only tiles with
    /// detected tissue are segmented, and foreground outside tissue is cleared).
    #[arg(long)]
    pub all_tiles: bool,
    /// Leave nuclei smaller than this many µm² out of the count (they stay in the mask);
    /// converted to pixels with the slide's scale (16 px per µm² at 0.25 µm/px).
    #[arg(long, default_value_t = 0.0, value_name = "UM2")]
    pub min_nucleus_area: f64,
    /// Also write MASK.geojson: one polygon per nucleus in level-0 pixel coordinates
    /// (QuPath: File > Import objects).
    #[arg(long)]
    pub geojson: bool,
    /// Keep touching nuclei together: nuclei are the mask's connected components (default:
    /// each component is split by a watershed on its distance transform).
    #[arg(long)]
    pub no_separate: bool,
    /// Do not measure nuclei: no MASK.nuclei.csv.gz, and GeoJSON features carry only their
    /// area (default: shape, hematoxylin density and model score of every nucleus).
    #[arg(long)]
    pub no_measurements: bool,
    /// Do not write MASK.overlay.png.
    #[arg(long)]
    pub no_overlay: bool,
    /// Read every slide through OpenSlide (default: Aperio/generic-TIFF JPEG tiles are
    /// decoded directly, several times faster).
    #[arg(long)]
    pub openslide_only: bool,
    /// Fail a slide with damaged JPEG data (exit code 2, or a failed slide in a cohort):
    /// every tile is read through OpenSlide's libjpeg, which refuses damage that the fast
    /// decoder cannot see (about 2.3× slower reading). Without it, a tile the fast decoder
    /// finds damaged is decoded as far as it goes, named in a warning and counted in the
    /// summary (`tiles.damaged_jpeg_tiles`).
    #[arg(long)]
    pub strict_decoding: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SegmentArgs {
    /// Slide to segment (SVS, NDPI, MRXS, tiled TIFF, DICOM folder, PNG/JPEG/TIFF image).
    pub slide: PathBuf,
    /// Output mask: pyramidal tiled BigTIFF (0 background, 255 nucleus) with the slide's
    /// geometry and MPP. MASK.json (summary), MASK.overlay.png, MASK.report.html and
    /// MASK.geojson go next to it.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl ModelArgs {
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions {
            fast_jpeg: !self.openslide_only,
            strict_decoding: self.strict_decoding,
        }
    }

    /// Loads the model (or builds the baseline) on the chosen device.
    pub fn predictor(&self) -> Result<Predictor, anyhow::Error> {
        let device = self.run.device.resolve()?;
        Ok(match (&self.model, self.baseline) {
            (_, Some(Baseline::Threshold(t))) => Predictor::threshold_baseline(t)?,
            (Some(run_dir), None) => self.run.load(run_dir, device)?,
            (None, None) => {
                return Err(SegmentError::InvalidOption(
                    "give a model: --model RUN_DIR or --baseline threshold".to_owned(),
                )
                .into())
            }
        })
    }

    /// The segmentation options; `workers` threads each when --workers is not given.
    pub fn options(
        &self,
        predictor: &Predictor,
        workers: usize,
        show_progress: bool,
    ) -> Result<SegmentOptions, SegmentError> {
        if !(self.min_nucleus_area.is_finite() && self.min_nucleus_area >= 0.0) {
            return Err(SegmentError::InvalidOption(format!(
                "--min-nucleus-area {}: give an area in µm², 0 or more (e.g. 10)",
                self.min_nucleus_area
            )));
        }
        let defaults = SegmentOptions::for_device(predictor.device());
        Ok(SegmentOptions {
            tile: self.tile.unwrap_or(defaults.tile),
            batch: self.batch.unwrap_or(defaults.batch),
            workers: self.workers.unwrap_or(workers),
            postprocess: !self.raw,
            all_tiles: self.all_tiles,
            min_nucleus_area_um2: self.min_nucleus_area,
            overlay: !self.no_overlay,
            geojson: self.geojson,
            separate: !self.no_separate,
            measure: !self.no_measurements,
            show_progress,
            target: self.target_mpp,
            mpp: self.mpp,
            ..defaults
        })
    }
}

/// Opens the slide and model and segments; the summary is also written next to the mask.
pub fn run(
    args: &SegmentArgs,
    show_progress: bool,
    cancel: &CancelToken,
) -> anyhow::Result<SegmentSummary> {
    let model = &args.model;
    let predictor = model.predictor()?;
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let options = model.options(&predictor, cores, show_progress)?;
    // Before the slide is read: a bad --out is refused at once rather than after the run,
    // and before anything is written.
    let run_files = model
        .model
        .iter()
        .flat_map(|run_dir| [MODEL_CARD_FILE, WEIGHTS_FILE].map(|file| run_dir.join(file)));
    let inputs: Vec<PathBuf> = std::iter::once(args.slide.clone())
        .chain(run_files)
        .collect();
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let mut outputs = output_files(&args.out, &options);
    outputs.push(Output {
        path: report_page(&args.out),
        what: "report page",
    });
    check_outputs(&outputs, &inputs)?;
    let slide = open_with(&args.slide, model.open_options())?;
    let geometry = plan_geometry(
        slide.as_ref(),
        model.level,
        model.target_mpp,
        model.mpp,
        predictor.card().train_mpp,
    )?;
    let summary = segment_slide(
        slide,
        &geometry,
        Arc::new(predictor),
        &args.out,
        &options,
        cancel,
    )?;
    write_report_page(&summary)?;
    Ok(summary)
}

/// `MASK.report.html`, the slide's report page.
fn report_page(mask: &Path) -> PathBuf {
    sidecar_path(mask, ".report.html")
}

/// The slide's row of a cohort report, as the same page a cohort gets.
fn write_report_page(summary: &SegmentSummary) -> Result<(), SegmentError> {
    let stem = |path: &Path| {
        path.file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let entry = Entry {
        id: stem(&summary.slide),
        name: stem(&summary.mask),
        path: summary.slide.clone(),
    };
    let row = SlideRow::from_summary(&entry, Status::Done, summary);
    let report = CohortReport::new(
        vec![row],
        summary.model.source.clone(),
        summary.settings.clone(),
        None,
        summary.timings.total_s,
    );
    let path = report_page(&summary.mask);
    html::write(&report, &path).map_err(|e| SegmentError::Write {
        message: crate::error_text::one_line(&e),
        path,
    })
}

/// The human-readable summary.
pub fn print_text(summary: &SegmentSummary) {
    println!("mask      {}", summary.mask.display());
    if let Some(overlay) = &summary.overlay {
        println!("overlay   {}", overlay.display());
    }
    println!("report    {}", report_page(&summary.mask).display());
    if let Some(geojson) = &summary.geojson {
        println!("geojson   {}", geojson.display());
    }
    if let Some(table) = &summary.nuclei.table {
        println!("table     {}", table.display());
    }
    println!(
        "tiles     {} total, {} with tissue, {} segmented",
        summary.tiles.total, summary.tiles.tissue, summary.tiles.segmented
    );
    if summary.tiles.damaged_jpeg_tiles > 0 {
        println!(
            "damaged   {} JPEG tiles of the slide decoded as far as they went (see the warnings)",
            summary.tiles.damaged_jpeg_tiles
        );
    }
    println!("scale     {}", summary.scale.note);
    println!(
        "nuclei    {} ({:.1}% of tissue, {:.2}% of slide)",
        summary.nuclei.count,
        summary.nuclei.area_fraction_of_tissue * 100.0,
        summary.nuclei.area_fraction_of_slide * 100.0
    );
    println!(
        "speed     {:.1} Mpx/s of tissue on {} ({:.1} s; bottleneck: {})",
        summary.timings.tissue_mpx_per_s,
        summary.model.device,
        summary.timings.total_s,
        summary.stages.bottleneck.as_deref().unwrap_or("none")
    );
}
