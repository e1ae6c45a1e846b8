//! The stain teacher of the self-training method: a label-free nuclei target for every
//! training crop, with the pixels it is unsure of left out.
//!
//! The raw hematoxylin cut (`label_free::hematoxylin_masks`) is noisy at the pixel level:
//! chromatin texture splits nuclei into specks and pale nuclear centres fall below the cut.
//! A network trained on it learns that noise and stays below it. The teacher therefore
//! smooths the density over about half a micrometre first (σ = 2 px at 40×, less than a
//! tenth of a nucleus's diameter), cuts it at the crop's own Otsu threshold, and fills the
//! holes that the cut leaves inside nuclei. Each object of that cut is then cut again at its
//! own level, half-way between its density and its surroundings' (`object_cut`): one cut
//! per crop draws dark nuclei too wide and pale ones too narrow. Holes are filled again.
//! Pixels whose smoothed density lies within `band` (a fraction of the pixel's cut) of that
//! cut are neither nucleus nor background to the teacher: their loss weight is 0 and the
//! student decides them from context. Filled holes keep their weight: they are inside a
//! closed contour, whatever their density.

use tch::{Device, Tensor};

use super::blur::gaussian_blur;
use super::object_cut::object_cuts;
use crate::morphology;
use crate::stain::{hematoxylin, otsu_thresholds};

/// Smoothing of the hematoxylin density before the cut, px at the training resolution.
pub const TEACHER_SIGMA_PX: f64 = 2.0;
/// Half-width of the ignore band around the cut, as a fraction of the cut.
pub const IGNORE_BAND: f64 = 0.2;

/// What the teacher says about a batch of crops.
#[derive(Debug)]
pub struct TeacherTargets {
    /// 1 = nucleus, 0 = background (B×1×H×W float).
    pub target: Tensor,
    /// 1 where the target counts, 0 in the ignore band (B×1×H×W float).
    pub weight: Tensor,
}

/// Targets for RGB crops in [0, 1] (B×3×H×W) on their device. The smoothing and the Otsu
/// cuts run there; the objects' own cuts and the hole filling run on the host, crop by
/// crop (flood fills, cheap next to a training step).
pub fn stain_targets(images: &Tensor, sigma_px: f64, band: f64) -> TeacherTargets {
    let (b, _, h, w) = images.size4().expect("B×3×H×W crops");
    let density = gaussian_blur(
        &hematoxylin(images).unsqueeze(1),
        &vec![Some(sigma_px); b as usize],
    );
    let crop_cuts =
        Vec::<f32>::try_from(otsu_thresholds(&density.flatten(1, -1)).to_device(Device::Cpu))
            .expect("one cut per crop");
    let density = Vec::<f32>::try_from(density.to_device(Device::Cpu).reshape([-1]))
        .expect("a float density");
    let (width, height) = (w as usize, h as usize);
    let mut target = Vec::with_capacity(density.len());
    let mut weight = Vec::with_capacity(density.len());
    for (crop, &cut) in density.chunks(width * height).zip(&crop_cuts) {
        let (t, wt) = crop_targets(crop, cut, width, height, band as f32);
        target.extend(t);
        weight.extend(wt);
    }
    let as_tensor = |v: &[f32]| {
        Tensor::from_slice(v)
            .view([b, 1, h, w])
            .to_device(images.device())
    };
    TeacherTargets {
        target: as_tensor(&target),
        weight: as_tensor(&weight),
    }
}

/// One crop's target and weight (1/0 per pixel) from its smoothed density and Otsu cut.
fn crop_targets(
    density: &[f32],
    crop_cut: f32,
    width: usize,
    height: usize,
    band: f32,
) -> (Vec<f32>, Vec<f32>) {
    let mut objects: Vec<u8> = density
        .iter()
        .map(|&d| if d > crop_cut { 255 } else { 0 })
        .collect();
    morphology::fill_holes(&mut objects, width, height);
    let cuts = object_cuts(density, &objects, width, height, crop_cut);
    let mut mask: Vec<u8> = density
        .iter()
        .zip(&cuts)
        .map(|(&d, &cut)| if d > cut { 255 } else { 0 })
        .collect();
    morphology::fill_holes(&mut mask, width, height);
    let weight = density
        .iter()
        .zip(&cuts)
        .zip(&mask)
        .map(|((&d, &cut), &m)| {
            let uncertain = (d - cut).abs() < cut * band;
            let hole = m != 0 && d <= cut;
            if !uncertain || hole {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let target = mask
        .iter()
        .map(|&m| if m != 0 { 1.0 } else { 0.0 })
        .collect();
    (target, weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made crop: a dark purple ring (radii 5–11) with a pale centre on pink. The
    /// teacher marks the whole disk (centre filled) and the background, and ignores only
    /// pixels where the smoothed density crosses the cut: near the ring's two edges.
    #[test]
    fn teacher_fills_the_pale_centre_and_ignores_the_rim() {
        let side = 40i64;
        // RGB of the nucleus's dark rim, its pale centre and the eosin background.
        let (nucleus, pale, pink) = (
            [0.35f32, 0.2, 0.55],
            [0.9f32, 0.7, 0.8],
            [0.9f32, 0.85, 0.85],
        );
        let mut pixels = Vec::new();
        for c in 0..3 {
            for y in 0..side {
                for x in 0..side {
                    let r = (((y - 20) * (y - 20) + (x - 20) * (x - 20)) as f64).sqrt();
                    let colour = match r {
                        r if r < 5.0 => pale,
                        r if r < 11.0 => nucleus,
                        _ => pink,
                    };
                    pixels.push(colour[c]);
                }
            }
        }
        let images = Tensor::from_slice(&pixels).view([1, 3, side, side]);
        let t = stain_targets(&images, TEACHER_SIGMA_PX, IGNORE_BAND);
        let at = |m: &Tensor, y: i64, x: i64| m.double_value(&[0, 0, y, x]);
        // Centre (pale, filled) and ring: nucleus, counted.
        for (y, x) in [(20, 20), (20, 27), (13, 20)] {
            assert_eq!(at(&t.target, y, x), 1.0, "({y},{x})");
            assert_eq!(at(&t.weight, y, x), 1.0, "({y},{x})");
        }
        // Far background: not nucleus, counted.
        assert_eq!(at(&t.target, 2, 2), 0.0);
        assert_eq!(at(&t.weight, 2, 2), 1.0);
        // Some pixels are ignored, and only near an edge of the ring.
        let ignored = t.weight.eq(0.0).nonzero();
        assert!(ignored.size()[0] > 0, "the rim must hold uncertain pixels");
        for row in 0..ignored.size()[0] {
            let (y, x) = (
                ignored.int64_value(&[row, 2]),
                ignored.int64_value(&[row, 3]),
            );
            let r = (((y - 20) * (y - 20) + (x - 20) * (x - 20)) as f64).sqrt();
            let near_edge = (r - 5.0).abs() < 3.0 || (r - 11.0).abs() < 3.0;
            assert!(near_edge, "ignored at r = {r}");
        }
    }
}
