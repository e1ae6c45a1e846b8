//! `slidestream synth`: writes a synthetic H&E slide and its ground-truth nuclei mask as
//! pyramidal tiled TIFFs, streamed one tile row at a time (memory ∝ width × tile).

use crate::pipeline::{progress_bar, CancelToken, PipelineError};
use crate::synth::{Synth, SynthRegion, SynthSpec};
use crate::tiff::{Channels, Downsample, PyramidOptions, PyramidWriter};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Pixel size written into synthetic slides: 40× scanning, like the MoNuSeg tiles.
pub const SYNTH_MPP: f64 = 0.25;

#[derive(Debug, Clone, clap::Args)]
pub struct SynthArgs {
    /// Output slide (pyramidal tiled BigTIFF, RGB, Deflate); OpenSlide opens it as generic-tiff.
    #[arg(long)]
    pub out: PathBuf,
    /// Output nuclei mask (0/255); default: next to --out as NAME.mask.tif.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Slide width in pixels.
    #[arg(long, default_value_t = 4096)]
    pub width: u32,
    /// Slide height in pixels.
    #[arg(long, default_value_t = 4096)]
    pub height: u32,
    /// Random seed: the same seed gives the same slide, bit for bit.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of the slide covered by tissue (0 = bare glass).
    #[arg(long, default_value_t = 0.55)]
    pub tissue_coverage: f32,
    /// TIFF tile size in pixels (multiple of 16; 256 or 512 are usual).
    #[arg(long, default_value_t = 512)]
    pub tile: u32,
}

#[derive(Debug, Serialize)]
pub struct SynthReport {
    pub slide: PathBuf,
    pub mask: PathBuf,
    pub spec: SynthSpec,
    pub mpp: f64,
    pub nuclei_fraction: f64,
    pub tissue_fraction: f64,
    pub seconds: f64,
}

/// `NAME.tif` → `NAME.mask.tif` in the same folder.
pub fn default_mask_path(slide: &Path) -> PathBuf {
    let stem = slide.file_stem().unwrap_or_default().to_string_lossy();
    slide.with_file_name(format!("{stem}.mask.tif"))
}

/// Stops between tile rows when `cancel` fires; the writers then remove their partial files.
pub fn run(
    args: &SynthArgs,
    show_progress: bool,
    cancel: &CancelToken,
) -> anyhow::Result<SynthReport> {
    let start = std::time::Instant::now();
    let mask_path = args
        .mask
        .clone()
        .unwrap_or_else(|| default_mask_path(&args.out));
    let spec = SynthSpec {
        tissue_coverage: args.tissue_coverage,
        ..SynthSpec::new(u64::from(args.width), u64::from(args.height), args.seed)
    };
    let synth = Synth::new(&spec)?;
    let options = |channels, downsample, what: &str| PyramidOptions {
        tile_size: args.tile,
        channels,
        downsample,
        mpp: Some((SYNTH_MPP, SYNTH_MPP)),
        description: format!("slidestream synthetic H&E {what}, seed {}", args.seed),
        ..PyramidOptions::default()
    };
    let mut slide = PyramidWriter::create(
        &args.out,
        args.width,
        args.height,
        options(Channels::Rgb, Downsample::Mean, "slide"),
    )?;
    let mut mask = PyramidWriter::create(
        &mask_path,
        args.width,
        args.height,
        options(Channels::Gray, Downsample::Max, "nuclei mask"),
    )?;
    let rows = args.height.div_ceil(args.tile);
    tracing::debug!(rows, slide = %args.out.display(), "writing tile rows");
    let bar = progress_bar("synth tile rows", Some(u64::from(rows)), !show_progress);
    let mut region = SynthRegion::default();
    let (mut nuclei, mut tissue) = (0u64, 0u64);
    for row in 0..rows {
        if cancel.is_cancelled() {
            return Err(PipelineError::Cancelled.into());
        }
        let y = row * args.tile;
        let h = args.tile.min(args.height - y);
        synth.render_into(0, u64::from(y), args.width, h, &mut region);
        slide.write_tile_row(&region.rgb)?;
        mask.write_tile_row(&region.mask)?;
        nuclei += region.mask.iter().filter(|&&v| v != 0).count() as u64;
        tissue += region.tissue.iter().filter(|&&v| v != 0).count() as u64;
        bar.inc(1);
    }
    // Mask first: the slide's appearance is the signal that both are complete.
    mask.finish()?;
    slide.finish()?;
    bar.finish_and_clear();
    let pixels = f64::from(args.width) * f64::from(args.height);
    Ok(SynthReport {
        slide: args.out.clone(),
        mask: mask_path,
        spec,
        mpp: SYNTH_MPP,
        nuclei_fraction: nuclei as f64 / pixels,
        tissue_fraction: tissue as f64 / pixels,
        seconds: start.elapsed().as_secs_f64(),
    })
}
