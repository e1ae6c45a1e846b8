//! Validation Dice per output channel (paper 3.2: confidence thresholded at 0.5).

use tch::{Device, Kind, Tensor};

use super::data::LabeledSet;

/// Per-image Dice of every prediction channel: `pred` B×K×H×W bool, `mask` B×1×H×W bool →
/// B×K. An image where both are empty scores 1 (the authors' formula would give NaN).
pub fn dice_per_image(pred: &Tensor, mask: &Tensor) -> Tensor {
    let dims: &[i64] = &[2, 3];
    let tp = pred
        .logical_and(mask)
        .sum_dim_intlist(dims, false, Kind::Float);
    let fp_fn = pred
        .logical_xor(mask)
        .sum_dim_intlist(dims, false, Kind::Float);
    let denominator = &tp * 2.0 + fp_fn;
    (&tp * 2.0 / denominator.clamp_min(1.0)).where_self(&denominator.gt(0.0), &tp.ones_like())
}

/// Mean over images of each channel's Dice, full-size forward through `confidence` (images
/// B×3×H×W in [0, 1] → B×K×H×W in [0, 1], eval mode), one image at a time so that 1000×1000
/// inputs fit anywhere.
pub fn validation_dice(
    confidence: &dyn Fn(&Tensor) -> Tensor,
    set: &LabeledSet,
    device: Device,
    threshold: f64,
) -> Vec<f64> {
    if set.items.is_empty() {
        return Vec::new();
    }
    let total = tch::no_grad(|| {
        set.items
            .iter()
            .map(|item| {
                let pred = confidence(&item.image_f32(device)).gt(threshold);
                let mask = item
                    .mask
                    .to_device(device)
                    .view([1, 1, pred.size()[2], pred.size()[3]]);
                dice_per_image(&pred, &mask).squeeze_dim(0)
            })
            .reduce(|a, b| a + b)
            .expect("non-empty set")
    });
    let mean = total / set.items.len() as f64;
    Vec::<f64>::try_from(mean.to_kind(Kind::Double)).expect("1-D float tensor")
}
