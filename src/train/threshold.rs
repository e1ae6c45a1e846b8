//! The intensity-threshold baseline: the global luma threshold T that maximises the mean
//! per-image Dice of "darker than T" against the masks (authors' `optimal_threshold_dice.py`,
//! which searches 100 levels; here all 257 cuts between 8-bit levels are tried exactly).

use tch::{Kind, Tensor};

use super::data::LabeledSet;
use crate::model::luma;

/// Best threshold: foreground = luma < `threshold` (luma in [0, 1], see
/// [`crate::model::InputNormalisation::Luma`]), and its mean Dice on the set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdFit {
    pub threshold: f64,
    pub dice: f64,
}

/// Fits the threshold from per-image histograms of nucleus and background luma levels.
pub fn fit_gray_threshold(set: &LabeledSet) -> ThresholdFit {
    let mut mean_dice = [0f64; 257];
    for item in &set.items {
        let level = (luma(&item.image_f32(tch::Device::Cpu)) * 255.0)
            .round()
            .to_kind(Kind::Int64)
            .view([-1]);
        let fg = item
            .mask
            .to_device(tch::Device::Cpu)
            .view([-1])
            .to_kind(Kind::Int64);
        let hist = Vec::<i64>::try_from((level + fg * 256).bincount(None::<Tensor>, 512))
            .expect("1-D int tensor");
        let (bg_hist, fg_hist) = hist.split_at(256);
        let fg_total: i64 = fg_hist.iter().sum();
        let (mut tp, mut fp) = (0i64, 0i64);
        for (t, dice) in mean_dice.iter_mut().enumerate() {
            // Levels below t are predicted foreground.
            if t > 0 {
                tp += fg_hist[t - 1];
                fp += bg_hist[t - 1];
            }
            let denominator = tp + fg_total + fp; // 2tp + fp + fn
            *dice += if denominator == 0 {
                1.0
            } else {
                2.0 * tp as f64 / denominator as f64
            };
        }
    }
    let n = set.items.len().max(1) as f64;
    let (t, dice) =
        mean_dice.iter().enumerate().fold(
            (0, f64::MIN),
            |best, (t, &d)| if d > best.1 { (t, d) } else { best },
        );
    ThresholdFit {
        // Half-way between levels t−1 and t, so float luma comparisons cannot flip.
        threshold: (t as f64 - 0.5) / 255.0,
        dice: dice / n,
    }
}
