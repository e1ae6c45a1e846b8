//! Augmentation (paper 4.2: flip, crop, rotation ±15°, Gaussian blur, colour jitter,
//! grayscale), batched on the device.
//!
//! Geometry (flip, rotation, crop position) is drawn once per sub-image and applied to both
//! views of an unlabeled image, so the teacher's pixel at a position is the student's positive
//! at the same position; the strong view then adds the photometric changes.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::train::blur::gaussian_blur;

/// Largest rotation, degrees.
const MAX_ROTATION_DEG: f64 = 15.0;
/// Colour jitter factors are drawn from [1 − J, 1 + J] (brightness, contrast, saturation).
const JITTER: f64 = 0.4;
/// Probability that the colour jitter is applied at all (torchvision's RandomApply, 0.8).
const JITTER_P: f64 = 0.8;
const GRAYSCALE_P: f64 = 0.2;
const BLUR_P: f64 = 0.5;
/// Blur σ range (px); the kernel's radius covers 3σ of the largest (`blur::BLUR_RADIUS`).
const BLUR_SIGMA: (f64, f64) = (0.1, 2.0);

/// A batch of random rigid transforms: sample with [`Geometry::apply`].
#[derive(Debug)]
pub struct Geometry {
    /// B×2×3 affine maps from output to input, normalised coordinates (affine_grid's θ).
    theta: Tensor,
    crop: i64,
}

/// Draws, for each of `batch` sub-images of side `tile`, a `crop`×`crop` window rotated by up to
/// ±15°, flipped horizontally and/or vertically with probability ½ each, at a random position
/// that keeps it inside the sub-image where it fits.
pub fn geometric(
    batch: usize,
    tile: i64,
    crop: i64,
    device: Device,
    rng: &mut ChaCha8Rng,
) -> Geometry {
    let scale = crop as f64 / tile as f64;
    let mut theta = Vec::with_capacity(batch * 6);
    for _ in 0..batch {
        let angle = rng
            .random_range(-MAX_ROTATION_DEG..=MAX_ROTATION_DEG)
            .to_radians();
        let flip_x = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
        let flip_y = if rng.random_bool(0.5) { -1.0 } else { 1.0 };
        let (sin, cos) = angle.sin_cos();
        // Half the slack between the rotated window's bounding box and the sub-image, in
        // normalised units (the sub-image spans [-1, 1]).
        let extent = scale * (cos.abs() + sin.abs());
        let slack = (1.0 - extent).max(0.0);
        let shift_x = rng.random_range(-slack..=slack);
        let shift_y = rng.random_range(-slack..=slack);
        theta.extend_from_slice(&[
            (scale * cos * flip_x) as f32,
            (-scale * sin * flip_y) as f32,
            shift_x as f32,
            (scale * sin * flip_x) as f32,
            (scale * cos * flip_y) as f32,
            shift_y as f32,
        ]);
    }
    Geometry {
        theta: Tensor::from_slice(&theta)
            .view([batch as i64, 2, 3])
            .to_device(device),
        crop,
    }
}

impl Geometry {
    /// Samples the windows from `images` (B×C×T×T): bilinear for images, nearest for
    /// masks (`nearest`). Reflects at the sub-image border when a window does not fit.
    pub fn apply(&self, images: &Tensor, nearest: bool) -> Tensor {
        let size = [images.size()[0], images.size()[1], self.crop, self.crop];
        let grid = Tensor::affine_grid_generator(&self.theta, size, false);
        let (bilinear, nearest_mode, reflection) = (0, 1, 2);
        let mode = if nearest { nearest_mode } else { bilinear };
        images.grid_sampler(&grid, mode, reflection, false)
    }
}

/// Per-image coin flips with probability `p`.
fn coins(batch: usize, p: f64, rng: &mut ChaCha8Rng) -> Vec<bool> {
    (0..batch).map(|_| rng.random_bool(p)).collect()
}

fn per_image(values: &[f32], device: Device) -> Tensor {
    Tensor::from_slice(values)
        .view([values.len() as i64, 1, 1, 1])
        .to_device(device)
}

/// ITU-R 601 gray of RGB images, B×1×H×W.
fn gray(images: &Tensor) -> Tensor {
    let weights = Tensor::from_slice(&[0.299f32, 0.587, 0.114])
        .view([1, 3, 1, 1])
        .to_device(images.device());
    (images * weights).sum_dim_intlist(1, true, Kind::Float)
}

/// Strong photometric augmentation of RGB images in [0, 1] (B×3×H×W): colour jitter
/// (brightness, contrast, saturation), random grayscale and random Gaussian blur.
pub fn photometric(images: &Tensor, rng: &mut ChaCha8Rng) -> Tensor {
    let b = images.size()[0] as usize;
    let device = images.device();
    let jitter = |rng: &mut ChaCha8Rng| {
        let apply = rng.random_bool(JITTER_P);
        let mut draw = [0.0f32; 3];
        for d in &mut draw {
            *d = if apply {
                rng.random_range(1.0 - JITTER..=1.0 + JITTER) as f32
            } else {
                1.0
            };
        }
        draw
    };
    let draws: Vec<[f32; 3]> = (0..b).map(|_| jitter(rng)).collect();
    let pick = |k: usize| per_image(&draws.iter().map(|d| d[k]).collect::<Vec<_>>(), device);
    let (brightness, contrast, saturation) = (pick(0), pick(1), pick(2));
    let mut x = (images * brightness).clamp(0.0, 1.0);
    let mean = gray(&x).mean_dim(&[1i64, 2, 3][..], true, Kind::Float);
    x = ((&x - &mean) * contrast + &mean).clamp(0.0, 1.0);
    let g = gray(&x);
    x = ((&x - &g) * saturation + &g).clamp(0.0, 1.0);
    let to_gray: Vec<f32> = coins(b, GRAYSCALE_P, rng)
        .into_iter()
        .map(|gray| if gray { 0.0 } else { 1.0 })
        .collect();
    let keep_colour = per_image(&to_gray, device);
    x = &x * &keep_colour + gray(&x) * (1.0 - &keep_colour);
    let sigmas: Vec<Option<f64>> = coins(b, BLUR_P, rng)
        .into_iter()
        .map(|blur| blur.then(|| rng.random_range(BLUR_SIGMA.0..=BLUR_SIGMA.1)))
        .collect();
    gaussian_blur(&x, &sigmas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn image_and_mask_stay_aligned_and_in_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // A mask that equals the image's red channel: any misalignment would show.
        let red = crate::test_support::uniform(&[4, 1, 40, 40], 2)
            .gt(0.5)
            .to_kind(Kind::Float);
        let images = Tensor::cat(&[&red, &red.zeros_like(), &red.ones_like()], 1);
        let geometry = geometric(4, 40, 24, Device::Cpu, &mut rng);
        let (warped, mask) = (geometry.apply(&images, true), geometry.apply(&red, true));
        assert_eq!(warped.size(), [4, 3, 24, 24]);
        assert!(warped.select(1, 0).unsqueeze(1).equal(&mask));
        let strong = photometric(&geometry.apply(&images, false), &mut rng);
        assert_eq!(strong.size(), [4, 3, 24, 24]);
        assert!(f64::try_from(strong.min()).unwrap() >= 0.0);
        assert!(f64::try_from(strong.max()).unwrap() <= 1.0 + 1e-6);
    }
}
