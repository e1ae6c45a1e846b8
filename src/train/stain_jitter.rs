//! Stain jitter: the same tissue as if stained a little stronger or weaker.
//!
//! Each crop is taken apart into hematoxylin, eosin and residual (DAB) densities by colour
//! deconvolution, each density is scaled and shifted by a small random amount, and the crop
//! is put back together. Staining strength differs between labs and batches in just this way,
//! and an Otsu cut scales with it, so the stain teacher's target for a crop does not change:
//! a student that sees jittered crops must find nuclei by what stays, shape and contrast.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::stain::{inverse, optical_density, MIN_INTENSITY, RGB_FROM_HED};

/// Largest relative change of a stain's density (scale drawn from [1 − S, 1 + S]).
const SCALE: f64 = 0.25;
/// Largest absolute shift of a stain's density, in the normalised units of `rgb2hed`.
const SHIFT: f64 = 0.02;

/// A 3×3 stain matrix as a tensor on `device`.
fn matrix(m: [[f64; 3]; 3], device: Device) -> Tensor {
    let flat: Vec<f32> = m.iter().flatten().map(|&v| v as f32).collect();
    Tensor::from_slice(&flat).view([3, 3]).to_device(device)
}

/// RGB crops in [0, 1] (B×3×H×W) with every crop's three stain densities jittered.
pub fn stain_jitter(images: &Tensor, rng: &mut ChaCha8Rng) -> Tensor {
    let (b, _, h, w) = images.size4().expect("B×3×H×W crops");
    let device = images.device();
    let (to_stains, to_rgb) = (
        matrix(inverse(RGB_FROM_HED), device),
        matrix(RGB_FROM_HED, device),
    );
    let mut draw = |spread: f64, centre: f64| {
        let values: Vec<f32> = (0..b * 3)
            .map(|_| (centre + rng.random_range(-spread..=spread)) as f32)
            .collect();
        Tensor::from_slice(&values)
            .view([b, 1, 3])
            .to_device(device)
    };
    let (scale, shift) = (draw(SCALE, 1.0), draw(SHIFT, 0.0));
    // Pixels as rows: B×(H·W)×3 optical densities.
    let rows = optical_density(images).flatten(2, 3).transpose(1, 2);
    let stains = rows.matmul(&to_stains) * scale + shift;
    let back = stains.matmul(&to_rgb).clamp_min(0.0);
    (back * MIN_INTENSITY.ln())
        .exp()
        .transpose(1, 2)
        .view([b, 3, h, w])
        .to_kind(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn no_jitter_is_the_identity_and_jitter_keeps_white_and_range() {
        let images = crate::test_support::uniform(&[2, 3, 8, 8], 1) * 0.9 + 0.05;
        // Taking the crops apart and putting them back together changes nothing.
        let rows = optical_density(&images).flatten(2, 3).transpose(1, 2);
        let round_trip = rows
            .matmul(&matrix(inverse(RGB_FROM_HED), Device::Cpu))
            .matmul(&matrix(RGB_FROM_HED, Device::Cpu));
        let gap = (&round_trip - &rows).abs().max().double_value(&[]);
        assert!(gap < 1e-5, "round trip off by {gap}");

        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let jittered = stain_jitter(&images, &mut rng);
        assert_eq!(jittered.size(), images.size());
        assert!(jittered.min().double_value(&[]) >= 0.0);
        assert!(jittered.max().double_value(&[]) <= 1.0 + 1e-6);
        let change = (&jittered - &images)
            .abs()
            .mean(Kind::Float)
            .double_value(&[]);
        assert!(change > 1e-3, "a jitter that changes nothing: {change}");
        // The same generator state gives the same views.
        let again = stain_jitter(&images, &mut ChaCha8Rng::seed_from_u64(3));
        assert!(again.equal(&jittered));
    }
}
