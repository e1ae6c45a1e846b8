//! `slidestream info`: what a slide is (size, pyramid, resolution, vendor).

use crate::slide::{self, Level, Slide, SlideError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct SlideInfo {
    pub path: String,
    pub vendor: String,
    pub width: u64,
    pub height: u64,
    pub levels: Vec<Level>,
    /// Microns per pixel at level 0; `null` when the file does not record it.
    pub mpp_x: Option<f64>,
    pub mpp_y: Option<f64>,
    pub properties: BTreeMap<String, String>,
}

impl SlideInfo {
    pub fn of(slide: &dyn Slide) -> Self {
        let (width, height) = slide.dimensions();
        let mpp = slide.mpp();
        Self {
            path: slide.path().display().to_string(),
            vendor: slide.vendor().to_string(),
            width,
            height,
            levels: slide.levels().to_vec(),
            mpp_x: mpp.map(|m| m.0),
            mpp_y: mpp.map(|m| m.1),
            properties: slide.properties().clone(),
        }
    }
}

/// Opens the slide and decodes its smallest level once, so a truncated or damaged file is
/// reported here rather than hours into a run.
pub fn inspect(path: &Path) -> Result<SlideInfo, SlideError> {
    let slide = slide::open(path)?;
    let smallest = slide.levels().len() - 1;
    let level = slide.levels()[smallest];
    // Bounded: a single-level slide is checked on a window, not decoded whole.
    let (w, h) = (level.width.min(4096) as u32, level.height.min(4096) as u32);
    slide.read_region(smallest, 0, 0, w, h)?;
    Ok(SlideInfo::of(slide.as_ref()))
}

pub fn print_text(info: &SlideInfo) {
    println!("{}", info.path);
    println!("  vendor      {}", info.vendor);
    println!("  dimensions  {} x {}", info.width, info.height);
    match (info.mpp_x, info.mpp_y) {
        (Some(x), Some(y)) => println!("  mpp         {x:.4} x {y:.4} µm/px"),
        _ => println!("  mpp         unknown (the file records no resolution)"),
    }
    println!("  levels      {}", info.levels.len());
    for (i, l) in info.levels.iter().enumerate() {
        println!(
            "    {i:>2}  {:>7} x {:<7} downsample {:.3}",
            l.width, l.height, l.downsample
        );
    }
}
