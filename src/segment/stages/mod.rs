//! The stages of the segmentation pipeline, one file each, in the order tiles go through
//! them:
//!
//! ```text
//! plan ─► decode × N ─► predict (one device thread) ─► postprocess × N ─► write
//! ```
//!
//! Each takes the stream of the stage before it and gives the stream of the next one
//! (`write` takes the last and gives the finished outputs), so [`super::segment_slide`]
//! reads like the pipeline. They are separate because each owns a different resource:
//! `decode` the slide reader, `predict` the device, `postprocess` the CPU-bound
//! morphology, and `write` the output files, which only one thread may touch.

pub mod decode;
pub mod postprocess;
pub mod predict;
pub mod write;

use super::predict::Window;
use crate::slide::grid::Tile;
use crate::slide::RgbRegion;

/// A tile on its way through the pipeline; `pixels` is `None` for background tiles.
pub struct TileItem {
    tile: Tile,
    /// Where the post-processed region lies in the read rectangle.
    window: Window,
    pixels: Option<RgbRegion>,
    /// Quantised hematoxylin density of the core, when nuclei are measured.
    hematoxylin: Option<Vec<u16>>,
    /// Smoothed hematoxylin density of the window, when the mask is re-cut by stain.
    stain_density: Option<Vec<u16>>,
    foreground: Option<Vec<u8>>,
    /// Nucleus score of the window, when nuclei are measured.
    score: Option<Vec<f32>>,
}
