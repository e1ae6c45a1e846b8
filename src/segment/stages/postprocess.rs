//! The post-process stage: tiles with their raw foreground in, final core masks out.
//!
//! Takes each tile's foreground over its window, applies the paper's morphology, crops the
//! halo away to the tile's core and clears foreground outside the tissue; keeps the core's
//! nucleus scores and hematoxylin as the values nuclei are measured from. A stage of its
//! own because the morphology is CPU-bound and parallel (`workers` threads), and must not
//! hold up the device.

use super::TileItem;
use crate::morphology::Postprocess;
use crate::pipeline::{Pipeline, Stream};
use crate::segment::assemble::CoreMask;
use crate::segment::pixel_values::{quantised_score, CoreValues};
use crate::slide::grid::Tile;
use crate::slide::tissue::TissueMask;
use std::sync::Arc;

/// What the post-processing workers do to a tile's raw foreground.
pub struct PostProcessing {
    /// The paper's opening/closing sequence at the model's scale.
    pub morphology: Option<Postprocess>,
    /// Clear foreground outside this tissue map (level-0 coordinates).
    pub tissue: Option<Arc<TissueMask>>,
    pub level0_per_model: f64,
}

/// Adds the stage, named "post", to `run`: `workers` threads applying `post`, at most
/// `capacity` cores waiting to be written; `None` is a core that is all background.
pub fn postprocess(
    run: &mut Pipeline,
    predicted: Stream<TileItem>,
    post: PostProcessing,
    workers: usize,
    capacity: usize,
) -> Stream<(Tile, Option<CoreMask>)> {
    run.map(
        "post",
        predicted,
        workers,
        capacity,
        move |item: TileItem| Ok((item.tile, post.core_mask(item))),
    )
}

impl PostProcessing {
    /// The final 0/255 mask of a tile's core, with the values of its foreground pixels when
    /// the tile has them; `None` when it is all background.
    fn core_mask(&self, item: TileItem) -> Option<CoreMask> {
        let foreground = item.foreground.as_ref()?;
        let window = item.window;
        let (ww, wh) = (window.width as usize, window.height as usize);
        let cleaned = match &self.morphology {
            Some(morphology) => morphology.apply(foreground, ww, wh, item.stain_density.as_deref()),
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
                // Only the nuclei's pixels are measured: keep theirs alone.
                let score = score[dy * ww..]
                    .chunks_exact(ww)
                    .take(ch)
                    .flat_map(|row| &row[dx..dx + cw])
                    .zip(&mask)
                    .filter(|&(_, &m)| m != 0)
                    .map(|(&s, _)| quantised_score(s))
                    .collect();
                let hematoxylin = hematoxylin
                    .iter()
                    .zip(&mask)
                    .filter(|&(_, &m)| m != 0)
                    .map(|(&h, _)| h)
                    .collect();
                CoreValues { score, hematoxylin }
            });
        Some(CoreMask { mask, values })
    }
}
