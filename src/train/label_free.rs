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

/// Stain optical-density vectors (rows: hematoxylin, eosin, DAB) in RGB.
pub(super) const RGB_FROM_HED: [[f64; 3]; 3] =
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]];

/// Smallest intensity before the logarithm, as skimage (so white maps to 0 density).
pub(super) const MIN_INTENSITY: f64 = 1e-6;

/// Bins of the Otsu histogram of hematoxylin density.
const OTSU_BINS: usize = 256;

pub(super) fn inverse(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let cofactor = |r: usize, c: usize| {
        let (r0, r1) = ((r + 1) % 3, (r + 2) % 3);
        let (c0, c1) = ((c + 1) % 3, (c + 2) % 3);
        m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]
    };
    let mut inv = [[0.0; 3]; 3];
    for (r, row) in inv.iter_mut().enumerate() {
        for (c, value) in row.iter_mut().enumerate() {
            // Transposed cofactors: the adjugate.
            *value = cofactor(c, r) / det;
        }
    }
    inv
}

/// Per-channel optical density of RGB images in [0, 1] in `rgb2hed`'s units: white is 0,
/// the darkest representable intensity 1.
pub(super) fn optical_density(images: &Tensor) -> Tensor {
    images.clamp_min(MIN_INTENSITY).log() / MIN_INTENSITY.ln()
}

/// Hematoxylin density (B×H×W, ≥ 0) of RGB images in [0, 1] (B×3×H×W), as the first
/// channel of `skimage.color.rgb2hed`.
pub fn hematoxylin(images: &Tensor) -> Tensor {
    let hed_from_rgb = inverse(RGB_FROM_HED);
    // Column 0 of hed_from_rgb maps each RGB log-density to hematoxylin.
    let weights: Vec<f32> = (0..3).map(|i| hed_from_rgb[i][0] as f32).collect();
    let weights = Tensor::from_slice(&weights)
        .to_device(images.device())
        .view([1, 3, 1, 1]);
    (optical_density(images) * weights)
        .sum_dim_intlist(1, false, Kind::Float)
        .clamp_min(0.0)
}

/// Otsu threshold of every row of `values` (B×N → B, on `values`' device): the cut of a
/// 256-bin histogram over the row's range that maximises the between-class variance. Rows
/// are independent, so a batch of crops gets one threshold per crop without a host round
/// trip. A constant row's threshold is its value.
pub fn otsu_thresholds(values: &Tensor) -> Tensor {
    let values = values.to_kind(Kind::Float);
    let (rows, device) = (values.size()[0], values.device());
    let lo = values.amin(1, true);
    let hi = values.amax(1, true);
    let width = (&hi - &lo) / OTSU_BINS as f64;
    let bins = ((&values - &lo) / width.clamp_min(f64::from(f32::MIN_POSITIVE)))
        .floor()
        .clamp(0.0, (OTSU_BINS - 1) as f64)
        .to_kind(Kind::Int64);
    let histogram = Tensor::zeros([rows, OTSU_BINS as i64], (Kind::Double, device)).scatter_add(
        1,
        &bins,
        &bins.ones_like().to_kind(Kind::Double),
    );
    let level = Tensor::arange(OTSU_BINS as i64, (Kind::Double, device));
    let weighted = &histogram * &level;
    let below = histogram.cumsum(1, Kind::Double);
    let sum_below = weighted.cumsum(1, Kind::Double);
    let total = below.select(1, OTSU_BINS as i64 - 1).unsqueeze(1);
    let sum_all = sum_below.select(1, OTSU_BINS as i64 - 1).unsqueeze(1);
    let above = &total - &below;
    let mean_gap =
        &sum_below / below.clamp_min(1.0) - (&sum_all - &sum_below) / above.clamp_min(1.0);
    // Cuts with an empty class are not splits.
    let variance = (&below * &above * mean_gap.square())
        .where_self(&below.gt(0.0).logical_and(&above.gt(0.0)), &(-1.0).into());
    let best_bin = variance.argmax(1, true).to_kind(Kind::Float);
    let threshold = &lo + &width * (best_bin + 1.0);
    threshold.where_self(&hi.gt_tensor(&lo), &lo).squeeze_dim(1)
}

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
    fn the_inverse_undoes_the_stain_matrix() {
        let inv = inverse(RGB_FROM_HED);
        for (r, row) in RGB_FROM_HED.iter().enumerate() {
            for c in 0..3 {
                let product: f64 = row
                    .iter()
                    .zip(&inv)
                    .map(|(a, inv_row)| a * inv_row[c])
                    .sum();
                let expected = if r == c { 1.0 } else { 0.0 };
                assert!((product - expected).abs() < 1e-12, "{r},{c}: {product}");
            }
        }
    }

    #[test]
    fn hematoxylin_is_high_on_purple_and_zero_on_white() {
        // White, pink (eosin), dark purple (hematoxylin).
        let pixels = [[1.0f32, 1.0, 1.0], [0.9, 0.6, 0.75], [0.3, 0.15, 0.5]];
        let images = Tensor::from_slice(&pixels.concat())
            .view([1, 3, 3])
            .permute([2, 0, 1])
            .unsqueeze(0)
            .reshape([1, 3, 1, 3]);
        let h = Vec::<f32>::try_from(hematoxylin(&images).reshape([-1])).unwrap();
        assert_eq!(h[0], 0.0);
        assert!(h[2] > 2.0 * h[1], "{h:?}");
    }

    #[test]
    fn otsu_splits_each_row_between_its_own_clusters() {
        // Row 0: 100 × 0.1 and 50 × 0.9; row 1: the same scaled by 10; row 2: constant.
        let mut rows = vec![0.1f32; 100];
        rows.extend(vec![0.9f32; 50]);
        rows.extend(rows.clone().iter().map(|v| v * 10.0).collect::<Vec<_>>());
        rows.extend(vec![0.5f32; 150]);
        let values = Tensor::from_slice(&rows).view([3, 150]);
        let t = Vec::<f32>::try_from(otsu_thresholds(&values)).unwrap();
        assert!(t[0] > 0.1 && t[0] <= 0.9, "{t:?}");
        assert!(t[1] > 1.0 && t[1] <= 9.0, "{t:?}");
        assert_eq!(t[2], 0.5);
    }

    #[test]
    fn otsu_matches_an_exhaustive_search_of_the_best_cut() {
        // Three overlapping populations; the Otsu cut maximises between-class variance.
        let values: Vec<f32> = (0..3000)
            .map(|i| {
                let centre = [0.2f32, 0.5, 0.7][i % 3];
                centre + ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.3
            })
            .collect();
        let t = Vec::<f32>::try_from(otsu_thresholds(&Tensor::from_slice(&values).view([1, -1])))
            .unwrap()[0];
        let variance = |cut: f32| {
            let (low, high): (Vec<f32>, Vec<f32>) = values.iter().partition(|&&v| v < cut);
            let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
            low.len() as f32 * high.len() as f32 * (mean(&high) - mean(&low)).powi(2)
        };
        let (lo, hi) = (-0.05f32, 0.95f32);
        let best = (1..1000)
            .map(|i| lo + (hi - lo) * i as f32 / 1000.0)
            .map(variance)
            .fold(0.0f32, f32::max);
        assert!(variance(t) >= 0.999 * best, "{} < {best}", variance(t));
    }

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
