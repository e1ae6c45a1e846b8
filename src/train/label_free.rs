//! Label-free model selection: which (epoch, channel) segments nuclei, judged without
//! masks by agreement with the hematoxylin stain.
//!
//! Hematoxylin stains nuclei. Colour deconvolution (Ruifrok & Johnston 2001, the H&E-DAB
//! stain vectors of `skimage.color.rgb2hed`) turns RGB into per-stain optical densities;
//! the hematoxylin density, cut at its per-image Otsu threshold, is a crude but label-free
//! nuclei map. A confidence channel that agrees with it (Dice) is the nuclei channel; the
//! paper's own alternative, patch-confidence bimodality (appendix D), does not tell nuclei
//! from background channels, which are just as bimodal.

use tch::{Kind, Tensor};

use crate::stain::{hematoxylin, otsu_thresholds};

/// Per-image hematoxylin nuclei maps (B×H×W bool) of RGB images in [0, 1]: hematoxylin
/// density above the image's own Otsu threshold, so stain strength may differ per image.
pub fn hematoxylin_masks(images: &Tensor) -> Tensor {
    let density = hematoxylin(images);
    let thresholds = otsu_thresholds(&density.flatten(1, -1));
    density.gt_tensor(&thresholds.view([-1, 1, 1]))
}

/// Mean over images of the Dice between each channel's foreground (`confidence` B×K×H×W
/// above `threshold`) and the hematoxylin map (`reference`, B×H×W bool): one score per
/// channel, higher = more nucleus-like.
pub fn hematoxylin_agreement(confidence: &Tensor, reference: &Tensor, threshold: f64) -> Vec<f64> {
    let predicted = confidence.gt(threshold);
    let dice = super::validate::dice_per_image(&predicted, &reference.unsqueeze(1));
    Vec::<f64>::try_from(dice.mean_dim(0, false, Kind::Float).to_kind(Kind::Double))
        .expect("one score per channel")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_that_follows_hematoxylin_scores_highest() {
        let reference = Tensor::from_slice(&[true, true, false, false]).view([1, 2, 2]);
        // Channel 0 matches, channel 1 is inverted, channel 2 says everything.
        let confidence = Tensor::from_slice(&[
            0.9f32, 0.8, 0.1, 0.2, // c0
            0.1, 0.2, 0.9, 0.8, // c1
            0.9, 0.9, 0.9, 0.9, // c2
        ])
        .view([1, 3, 2, 2]);
        let scores = hematoxylin_agreement(&confidence, &reference, 0.5);
        assert_eq!(scores[0], 1.0);
        assert_eq!(scores[1], 0.0);
        assert!((scores[2] - 2.0 / 3.0).abs() < 1e-6);
    }
}
