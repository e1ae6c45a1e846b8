//! Label-free model selection: which (epoch, channel) segments nuclei, judged without
//! masks by agreement with the hematoxylin stain.
//!
//! Hematoxylin stains nuclei. Colour deconvolution (Ruifrok & Johnston 2001, the H&E-DAB
//! stain vectors of `skimage.color.rgb2hed`) turns RGB into per-stain optical densities;
//! the hematoxylin density, cut at its per-image Otsu threshold, is a crude but label-free
//! nuclei map. A confidence channel that agrees with it (Dice) is the nuclei channel; the
//! paper's own alternative, patch-confidence bimodality (appendix D), does not tell nuclei
//! from background channels, which are just as bimodal.

use tch::{Device, Kind, Tensor};

/// Stain optical-density vectors (rows: hematoxylin, eosin, DAB) in RGB.
const RGB_FROM_HED: [[f64; 3]; 3] = [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]];

/// Smallest intensity before the logarithm, as skimage (so white maps to 0 density).
const MIN_INTENSITY: f64 = 1e-6;

/// Bins of the Otsu histogram of hematoxylin density.
const OTSU_BINS: usize = 256;

fn inverse(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
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

/// Hematoxylin density (B×H×W, ≥ 0) of RGB images in [0,1] (B×3×H×W), as the first
/// channel of `skimage.color.rgb2hed`.
pub fn hematoxylin(images: &Tensor) -> Tensor {
    let hed_from_rgb = inverse(RGB_FROM_HED);
    // Column 0 of hed_from_rgb maps each RGB log-density to hematoxylin.
    let weights: Vec<f32> = (0..3).map(|i| hed_from_rgb[i][0] as f32).collect();
    let weights = Tensor::from_slice(&weights)
        .to_device(images.device())
        .view([1, 3, 1, 1]);
    let density = images.clamp_min(MIN_INTENSITY).log() / MIN_INTENSITY.ln();
    (density * weights)
        .sum_dim_intlist(1, false, Kind::Float)
        .clamp_min(0.0)
}

/// The Otsu threshold of `values` (between-class variance over a 256-bin histogram).
pub fn otsu(values: &[f32]) -> f32 {
    let (lo, hi) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if hi <= lo || hi.is_nan() {
        return lo;
    }
    let width = (hi - lo) / OTSU_BINS as f32;
    let mut histogram = [0u64; OTSU_BINS];
    for &v in values {
        histogram[(((v - lo) / width) as usize).min(OTSU_BINS - 1)] += 1;
    }
    let total = values.len() as f64;
    let sum_all: f64 = histogram
        .iter()
        .enumerate()
        .map(|(i, &n)| i as f64 * n as f64)
        .sum();
    let (mut below, mut sum_below) = (0.0, 0.0);
    let (mut best, mut best_bin) = (f64::MIN, 0);
    for (i, &n) in histogram.iter().enumerate() {
        below += n as f64;
        sum_below += i as f64 * n as f64;
        let above = total - below;
        if below == 0.0 || above == 0.0 {
            continue;
        }
        let mean_gap = sum_below / below - (sum_all - sum_below) / above;
        let variance = below * above * mean_gap * mean_gap;
        if variance > best {
            best = variance;
            best_bin = i;
        }
    }
    lo + width * (best_bin + 1) as f32
}

/// Per-image hematoxylin nuclei maps (B×H×W bool) of RGB images in [0,1].
pub fn hematoxylin_masks(images: &Tensor) -> Tensor {
    let density = hematoxylin(images);
    let masks: Vec<Tensor> = (0..density.size()[0])
        .map(|i| {
            let image = density.get(i);
            let values =
                Vec::<f32>::try_from(image.to_device(Device::Cpu).reshape([-1])).expect("floats");
            image.gt(f64::from(otsu(&values)))
        })
        .collect();
    Tensor::stack(&masks, 0)
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
    fn otsu_splits_two_clusters() {
        let mut values = vec![0.1f32; 100];
        values.extend(vec![0.9f32; 50]);
        let t = otsu(&values);
        assert!(t > 0.1 && t <= 0.9, "{t}");
        assert_eq!(otsu(&[0.5; 10]), 0.5);
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
