//! The predict stage: tiles with pixels in, tiles with their raw foreground out.
//!
//! Gathers the tiles that have pixels into batches of `batch` and runs the model on each
//! batch (calibrated by the slide's stain gamma), keeping the foreground of each tile's
//! window (and its nucleus score when nuclei are measured) and freeing the pixels.
//! Background tiles go straight on unless tiles are waiting ahead of them, so the order is
//! kept. A stage of its own, on one thread, because the device runs one batch at a time.

use super::TileItem;
use crate::pipeline::{Pipeline, Stream};
use crate::segment::predict::{Predictor, Window};
use crate::slide::RgbRegion;
use std::sync::Arc;

/// Adds the stage, named "model", to `run`, with at most `capacity` tiles waiting for
/// post-processing; with `measure` the nucleus scores are kept too.
pub fn predict(
    run: &mut Pipeline,
    decoded: Stream<TileItem>,
    predictor: Arc<Predictor>,
    stain_gamma: f64,
    batch: usize,
    measure: bool,
    capacity: usize,
) -> Stream<TileItem> {
    run.transform("model", decoded, capacity, move |input, emit| {
        let mut pending: Vec<TileItem> = Vec::new();
        for item in input {
            let item = item?;
            // Background with nothing waiting ahead of it goes straight on.
            if item.pixels.is_none() && pending.is_empty() {
                emit.send(item)?;
                continue;
            }
            pending.push(item);
            if pending.iter().filter(|i| i.pixels.is_some()).count() == batch {
                predict_batch(&predictor, &mut pending, stain_gamma, measure);
                for item in pending.drain(..) {
                    emit.send(item)?;
                }
            }
        }
        predict_batch(&predictor, &mut pending, stain_gamma, measure);
        for item in pending {
            emit.send(item)?;
        }
        Ok(())
    })
}

/// Runs the model on the tiles of `pending` that have pixels (calibrated by the slide's
/// `stain_gamma`), freeing the pixels.
/// With `scores`, each tile's nucleus score is kept too, for the measurements.
fn predict_batch(predictor: &Predictor, pending: &mut [TileItem], stain_gamma: f64, scores: bool) {
    let (tiles, windows): (Vec<&RgbRegion>, Vec<Window>) = pending
        .iter()
        .filter_map(|item| item.pixels.as_ref().map(|p| (p, item.window)))
        .unzip();
    let predictions: Vec<(Vec<u8>, Option<Vec<f32>>)> = if scores {
        let scored = predictor.predict_scored(&tiles, &windows, stain_gamma);
        scored
            .into_iter()
            .map(|(mask, score)| (mask, Some(score)))
            .collect()
    } else {
        let masks = predictor.predict(&tiles, &windows, stain_gamma);
        masks.into_iter().map(|mask| (mask, None)).collect()
    };
    let mut predictions = predictions.into_iter();
    for item in pending.iter_mut().filter(|item| item.pixels.is_some()) {
        let (mask, score) = predictions.next().expect("one prediction per tile");
        item.pixels = None;
        item.foreground = Some(mask);
        item.score = score;
    }
}
