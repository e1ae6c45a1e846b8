//! Gaussian blur of image batches with a σ per image: the CDCL strong view's blur and the
//! stain teacher's smoothing share it.

use tch::Tensor;

/// Kernel radius (px): 3σ of the largest σ either user asks for (2 px).
pub const BLUR_RADIUS: i64 = 6;

/// Separable Gaussian blur with a per-image σ (`None`: unchanged), reflecting at borders.
pub fn gaussian_blur(images: &Tensor, sigmas: &[Option<f64>]) -> Tensor {
    let (b, c, h, w) = images.size4().expect("B×C×H×W images");
    let taps = 2 * BLUR_RADIUS + 1;
    let mut kernels = Vec::with_capacity(sigmas.len() * taps as usize);
    for sigma in sigmas {
        let row: Vec<f64> = (-BLUR_RADIUS..=BLUR_RADIUS)
            .map(|i| match sigma {
                Some(s) => (-(i * i) as f64 / (2.0 * s * s)).exp(),
                None => f64::from(i == 0),
            })
            .collect();
        let total: f64 = row.iter().sum();
        kernels.extend(row.iter().map(|v| (v / total) as f32));
    }
    // One kernel per image, repeated for its channels: a grouped convolution does all.
    let kernel = Tensor::from_slice(&kernels)
        .view([b, 1, 1, taps])
        .repeat_interleave_self_int(c, 0, None)
        .to_device(images.device());
    let flat = images.reshape([1, b * c, h, w]);
    let pad = BLUR_RADIUS;
    let across = flat.reflection_pad2d([pad, pad, 0, 0]).conv2d(
        &kernel,
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        b * c,
    );
    let down = across.reflection_pad2d([0, 0, pad, pad]).conv2d(
        &kernel.transpose(2, 3),
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        b * c,
    );
    down.view([b, c, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn blur_keeps_flat_images_and_smooths_edges() {
        let flat = Tensor::full([1, 3, 16, 16], 0.4, (Kind::Float, Device::Cpu));
        let blurred = gaussian_blur(&flat, &[Some(2.0)]);
        assert!(f64::try_from((&blurred - 0.4).abs().max()).unwrap() < 1e-5);
        let step = Tensor::zeros([2, 1, 8, 16], (Kind::Float, Device::Cpu));
        let _ = step.narrow(3, 8, 8).fill_(1.0);
        let out = gaussian_blur(&step, &[Some(1.5), None]);
        assert!(
            out.get(1).equal(&step.get(1)),
            "σ = None leaves the image as is"
        );
        let edge = f64::try_from(out.get(0).get(0).get(4).get(7)).unwrap();
        assert!(edge > 0.05 && edge < 0.5, "blurred edge value {edge}");
    }
}
