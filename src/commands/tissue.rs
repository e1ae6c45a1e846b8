//! `slidestream tissue`: where the tissue is, as a PNG map plus summary numbers.

use crate::pipeline::CancelToken;
use crate::segment::cancelled_if_interrupted;
use crate::slide::tissue::{detect_slide_tissue, TissueParams};
use crate::slide::{self};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize)]
pub struct TissueReport {
    pub slide: PathBuf,
    pub out: PathBuf,
    pub tissue_fraction: f64,
    /// Slide level the map was computed from.
    pub level: usize,
    /// Level-0 pixels per map pixel.
    pub downsample: f64,
    pub map_width: u32,
    pub map_height: u32,
}

pub fn run(
    slide_path: &Path,
    out: &Path,
    params: &TissueParams,
    cancel: &CancelToken,
) -> anyhow::Result<TissueReport> {
    let slide = slide::open(slide_path)?;
    let (mask, level) = detect_slide_tissue(slide.as_ref(), params, &|| cancel.is_cancelled())
        .map_err(cancelled_if_interrupted)?;
    crate::atomic_file::write_atomically(out, |partial| Ok(mask.write_png(partial)?))?;
    Ok(TissueReport {
        slide: slide_path.to_path_buf(),
        out: out.to_path_buf(),
        tissue_fraction: mask.fraction(),
        level,
        downsample: mask.downsample(),
        map_width: mask.width(),
        map_height: mask.height(),
    })
}

pub fn print_text(r: &TissueReport) {
    println!(
        "{}: {:.1}% tissue; map {}x{} (level {}, downsample {:.2}) written to {}",
        r.slide.display(),
        r.tissue_fraction * 100.0,
        r.map_width,
        r.map_height,
        r.level,
        r.downsample,
        r.out.display()
    );
}
