//! The plan of a slide's segmentation, made before any tile is read: where the tissue is,
//! the scale, the tile grid, which tiles the model runs on and the window of each that is
//! kept, and the slide's stain calibration.

use super::predict::{Predictor, Window};
use super::{cancelled_if_interrupted, ScaleUsed, SegmentError, SegmentOptions};
use crate::morphology::Postprocess;
use crate::pipeline::{Pipeline, Stream};
use crate::slide::geometry::Geometry;
use crate::slide::grid::{Rect, Tile, TileGrid};
use crate::slide::tissue::{detect_slide_tissue, TissueMask, TissueParams};
use crate::slide::Slide;
use crate::stain::slide_hematoxylin_cut;
use std::sync::Arc;
use std::time::Instant;

/// A tile as planned: the tile, whether the model runs on it (it has tissue, or every tile
/// is wanted), and the window of its read rectangle that post-processing keeps.
pub type PlannedTile = (Tile, bool, Window);

/// Everything decided about a slide before the pipeline starts.
pub struct Plan {
    pub tissue: Arc<TissueMask>,
    /// Seconds from the start of the run to the end of tissue detection.
    pub tissue_detection_s: f64,
    pub scale: ScaleUsed,
    /// The post-processing at the model's scale (`None`: off).
    pub morphology: Option<Postprocess>,
    pub grid: TileGrid,
    /// Every tile of the grid, in row-major order.
    pub tiles: Vec<PlannedTile>,
    /// Tiles with tissue under them, and their cores' area in megapixels.
    pub tissue_tiles: usize,
    pub tissue_mpx: f64,
    /// Tiles the model runs on.
    pub segmented: usize,
    /// The slide's stain calibration (1 when the model has none).
    pub stain_gamma: f64,
}

impl Plan {
    /// Detects the tissue of `slide` (stopping when `stopped`), fixes the scale and the grid
    /// of `options.tile` tiles, and calibrates the stain; `started` is the run's start.
    pub fn new(
        slide: &dyn Slide,
        geometry: &Geometry,
        predictor: &Predictor,
        options: &SegmentOptions,
        started: Instant,
        stopped: &dyn Fn() -> bool,
    ) -> Result<Self, SegmentError> {
        let (tissue, _) = detect_slide_tissue(slide, &TissueParams::default(), stopped)
            .map_err(cancelled_if_interrupted)?;
        let tissue = Arc::new(tissue);
        let tissue_detection_s = started.elapsed().as_secs_f64();

        let scale = ScaleUsed::new(geometry, options, predictor);
        scale.log(slide.path());
        let morphology = scale.postprocess();
        let reach = morphology.as_ref().map_or(0, Postprocess::reach);
        let halo = scale.halo_px;
        let alignment = predictor.alignment();
        if options.tile % alignment != 0 {
            return Err(SegmentError::InvalidOption(format!(
                "--tile {}: the model in {} needs tiles whose side is a multiple of \
                 {alignment} px (e.g. {})",
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
        let tiles: Vec<PlannedTile> = grid
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
        let segmented = tiles.iter().filter(|(_, run, _)| *run).count();
        // Seam-free: the cut is one number per slide, measured on regions chosen from the
        // slide's size and tissue map alone (`slide::stain_sample`), never from the tile
        // grid, so every tile size gets the same calibration and hence the same mask.
        let stain_gamma =
            predictor.stain_gamma(|| slide_hematoxylin_cut(slide, geometry, tissue.as_ref()))?;
        Ok(Self {
            tissue,
            tissue_detection_s,
            scale,
            morphology,
            grid,
            tiles,
            tissue_tiles,
            tissue_mpx,
            segmented,
            stain_gamma,
        })
    }

    /// Adds the pipeline's source, named "tiles", to `run`: the planned tiles in row-major
    /// order, at most `capacity` waiting to be decoded. They leave the plan; its counts stay
    /// for the summary.
    pub fn send_tiles(&mut self, run: &mut Pipeline, capacity: usize) -> Stream<PlannedTile> {
        let tiles = std::mem::take(&mut self.tiles);
        run.source("tiles", capacity, move |emit| {
            for tile in tiles {
                emit.send(tile)?;
            }
            Ok(())
        })
    }
}

/// The tile's core grown by the post-processing reach and clipped to the model image, in
/// the coordinates of the tile's read rectangle.
fn window_of(tile: &Tile, reach: u32, bounds: &Rect) -> Window {
    let reach = i64::from(reach);
    let x0 = (tile.core.x - reach).max(bounds.x);
    let y0 = (tile.core.y - reach).max(bounds.y);
    let x1 = (tile.core.right() + reach).min(bounds.right());
    let y1 = (tile.core.bottom() + reach).min(bounds.bottom());
    Window {
        x: (x0 - tile.read.x) as u32,
        y: (y0 - tile.read.y) as u32,
        width: (x1 - x0) as u32,
        height: (y1 - y0) as u32,
    }
}
