//! Colour deconvolution of H&E: stain optical densities, the hematoxylin density that
//! marks nuclei, and the per-image Otsu cut of it. Low-level and model-free: training (the
//! stain teacher, stain jitter, label-free selection), the stain calibration of inputs and
//! the baselines all build on it.

use tch::{Kind, Tensor};

use crate::slide::geometry::Geometry;
use crate::slide::stain_sample::stain_sample_regions;
use crate::slide::tissue::TissueMask;
use crate::slide::{RgbRegion, Slide, SlideError};

/// Stain optical-density vectors (rows: hematoxylin, eosin, DAB) in RGB.
pub const RGB_FROM_HED: [[f64; 3]; 3] =
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]];

/// Smallest intensity before the logarithm, as skimage (so white maps to 0 density).
pub const MIN_INTENSITY: f64 = 1e-6;

/// Bins of the Otsu histogram of hematoxylin density.
const OTSU_BINS: usize = 256;

pub fn inverse(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
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
pub fn optical_density(images: &Tensor) -> Tensor {
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

/// Bounds of the calibration gamma: a sample without nuclei (blank glass, a pen mark) has
/// a meaningless cut, and beyond these the picture would be bleached or blackened.
pub const GAMMA_RANGE: (f64, f64) = (0.25, 4.0);

/// The Otsu cut of the hematoxylin density over all pixels of `images` (B×3×H×W RGB in
/// [0, 1]): how strongly this image's (or slide's) nuclei are stained.
pub fn hematoxylin_cut(images: &Tensor) -> f64 {
    pooled_hematoxylin_cut(std::slice::from_ref(images))
}

/// [`hematoxylin_cut`] over the pixels of several images of any sizes together (e.g. the
/// regions sampled from one slide).
pub fn pooled_hematoxylin_cut(images: &[Tensor]) -> f64 {
    let densities: Vec<Tensor> = images
        .iter()
        .map(|i| hematoxylin(i).reshape([-1]))
        .collect();
    otsu_thresholds(&Tensor::cat(&densities, 0).unsqueeze(0)).double_value(&[0])
}

/// [`pooled_hematoxylin_cut`] of decoded regions (e.g. `slide::stain_sample`'s).
pub fn hematoxylin_cut_of_regions(regions: &[RgbRegion]) -> f64 {
    let images: Vec<Tensor> = regions
        .iter()
        .map(|r| {
            Tensor::from_slice(&r.pixels)
                .view([i64::from(r.height), i64::from(r.width), 3])
                .permute([2, 0, 1])
                .unsqueeze(0)
                .to_kind(Kind::Float)
                / 255.0
        })
        .collect();
    pooled_hematoxylin_cut(&images)
}

/// The hematoxylin cut of `slide` read at `geometry`'s model scale: one number per slide,
/// measured on regions chosen from the slide's size and tissue map alone
/// (`slide::stain_sample`), never from a tile grid, so that every tile size (segment) and
/// every crop (train) is calibrated alike. Here, below both, so neither depends on the other.
pub fn slide_hematoxylin_cut(
    slide: &dyn Slide,
    geometry: &Geometry,
    tissue: &TissueMask,
) -> Result<f64, SlideError> {
    let model_per_map = tissue.downsample() * geometry.scale / geometry.output_downsample;
    let sample = stain_sample_regions(
        geometry.model_width,
        geometry.model_height,
        tissue,
        model_per_map,
    )
    .into_iter()
    .map(|rect| geometry.read(slide, rect))
    .collect::<Result<Vec<_>, _>>()?;
    Ok(hematoxylin_cut_of_regions(&sample))
}

/// The gamma that moves a hematoxylin cut of `cut` to `reference` ([`calibrate`]), within
/// [`GAMMA_RANGE`]; 1 when the cut says nothing (no stain at all).
pub fn calibration_gamma(reference: f64, cut: f64) -> f64 {
    if cut > 0.0 && cut.is_finite() {
        (reference / cut).clamp(GAMMA_RANGE.0, GAMMA_RANGE.1)
    } else {
        1.0
    }
}

/// `images` (B×3×H×W RGB in [0, 1]) with image i's intensities raised to `gammas[i]`.
/// Intensity is exp(−density), so this multiplies every stain's optical density by the
/// gamma: a pale slide becomes as dark as the reference and white stays white, without
/// moving any pixel or mixing neighbours.
pub fn calibrate(images: &Tensor, gammas: &[f64]) -> Tensor {
    let gammas = Tensor::from_slice(gammas)
        .to_kind(Kind::Float)
        .to_device(images.device())
        .view([-1, 1, 1, 1]);
    images.clamp_min(MIN_INTENSITY).pow(&gammas)
}

/// [`calibrate`] each image by its own hematoxylin cut (`cuts[i]`, or the image's own when
/// `None`) towards `reference`.
pub fn calibrate_to(images: &Tensor, cuts: Option<&[f64]>, reference: f64) -> Tensor {
    let own: Vec<f64>;
    let cuts = match cuts {
        Some(cuts) => cuts,
        None => {
            own = (0..images.size()[0])
                .map(|i| hematoxylin_cut(&images.narrow(0, i, 1)))
                .collect();
            &own
        }
    };
    let gammas: Vec<f64> = cuts
        .iter()
        .map(|&cut| calibration_gamma(reference, cut))
        .collect();
    calibrate(images, &gammas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_moves_the_cut_to_the_reference() {
        // Pale purple blobs on pink, as a 1×3×16×16 image: calibrating with the gamma of
        // its own cut puts its cut at the reference (up to the histogram's bin width).
        let mut pixels = Vec::new();
        for channel in [[0.75f32, 0.92], [0.6, 0.75], [0.85, 0.88]] {
            for i in 0..256 {
                let inside = (i / 16) % 8 < 3 && (i % 16) % 8 < 3;
                pixels.push(if inside { channel[0] } else { channel[1] });
            }
        }
        let image = Tensor::from_slice(&pixels).view([1, 3, 16, 16]);
        let cut = hematoxylin_cut(&image);
        let reference = 2.5 * cut;
        let gamma = calibration_gamma(reference, cut);
        assert!((gamma - 2.5).abs() < 1e-9, "{gamma}");
        let calibrated = calibrate(&image, &[gamma]);
        assert_eq!(calibrate_to(&image, None, reference), calibrated);
        let moved = hematoxylin_cut(&calibrated);
        assert!(
            (moved - reference).abs() < 0.05 * reference,
            "{moved} vs {reference}"
        );
        // White stays white.
        let white = calibrate(&Tensor::ones([1, 3, 2, 2], tch::kind::FLOAT_CPU), &[gamma]);
        assert_eq!(white.min().double_value(&[]), 1.0);
    }

    #[test]
    fn the_gamma_is_bounded_and_neutral_without_stain() {
        assert_eq!(calibration_gamma(0.1, 0.0), 1.0);
        assert_eq!(calibration_gamma(0.1, f64::NAN), 1.0);
        assert_eq!(calibration_gamma(0.1, 1e-6), GAMMA_RANGE.1);
        assert_eq!(calibration_gamma(0.1, 10.0), GAMMA_RANGE.0);
    }

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
}
