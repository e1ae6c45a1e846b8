//! Parallel tile decoding: the first stage of every pass over a slide.

use super::grid::Tile;
use super::{RgbRegion, Slide};
use crate::pipeline::{Pipeline, Stream};
use std::sync::Arc;

/// A tile and its pixels (the tile's `read` rectangle: core plus halo, white outside the
/// slide).
pub struct DecodedTile {
    pub tile: Tile,
    pub pixels: RgbRegion,
}

/// Adds a source of `tiles` and a `workers`-thread decode stage to `run`; decoded tiles come
/// out in the order given. `capacity` bounds each queue, so at most about
/// `2 × capacity + workers` decoded tiles are in memory whatever the slide size.
pub fn decode_tiles(
    run: &mut Pipeline,
    slide: Arc<dyn Slide>,
    level: usize,
    tiles: Vec<Tile>,
    workers: usize,
    capacity: usize,
) -> Stream<DecodedTile> {
    let queued = run.source("tiles", capacity, move |emit| {
        for tile in tiles {
            emit.send(tile)?;
        }
        Ok(())
    });
    run.map("decode", queued, workers, capacity, move |tile: Tile| {
        let r = tile.read;
        let pixels = slide.read_region(level, r.x, r.y, r.width, r.height)?;
        Ok(DecodedTile { tile, pixels })
    })
}
