//! The decode stage: planned tiles in, tiles with their pixels out.
//!
//! Takes each planned tile and, when the model runs on it, reads its rectangle (core and
//! halo) from the slide at the model's scale, the hematoxylin density of its core when
//! nuclei are measured and the smoothed density of its window when the mask is re-cut by
//! stain; background tiles pass with no pixels. A stage of its own because
//! reading and decoding the slide's JPEG tiles is slow and parallel (`workers` threads),
//! unlike the device behind it.

use super::TileItem;
use crate::pipeline::{Pipeline, Stream};
use crate::segment::pixel_values::{recut_density, HematoxylinDensity};
use crate::segment::plan::PlannedTile;
use crate::slide::geometry::Geometry;
use crate::slide::Slide;
use crate::stain_recut::StainRecut;
use std::sync::Arc;

/// Adds the stage, named "decode", to `run`: `workers` threads reading `slide` at
/// `geometry`, at most `capacity` tiles waiting for the model; `recut` is the
/// post-processing's stain re-cut, if any.
#[allow(clippy::too_many_arguments)]
pub fn decode(
    run: &mut Pipeline,
    tiles: Stream<PlannedTile>,
    slide: Arc<dyn Slide>,
    geometry: Geometry,
    measure: bool,
    recut: Option<StainRecut>,
    workers: usize,
    capacity: usize,
) -> Stream<TileItem> {
    let density = measure.then(HematoxylinDensity::default);
    run.map(
        "decode",
        tiles,
        workers,
        capacity,
        move |(tile, run_model, window): PlannedTile| {
            let pixels = if run_model {
                Some(geometry.read(slide.as_ref(), tile.read)?)
            } else {
                None
            };
            let hematoxylin = density.as_ref().zip(pixels.as_ref()).map(|(d, p)| {
                d.quantised(p, tile.core_offset(), (tile.core.width, tile.core.height))
            });
            let stain_density = recut
                .as_ref()
                .zip(pixels.as_ref())
                .map(|(recut, p)| recut_density(recut, p, window));
            Ok(TileItem {
                tile,
                window,
                pixels,
                hematoxylin,
                stain_density,
                foreground: None,
                score: None,
            })
        },
    )
}
