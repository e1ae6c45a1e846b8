//! The self-training method's objective: a student network learns the stain teacher's
//! confident pixels from jittered views of each crop.
//!
//! The stain teacher (`stain_teacher`) is sure of most pixels but abstains on a band around
//! its cut (nuclear rims, faint nuclei): those pixels carry no loss, and the student decides
//! them from what it learned elsewhere. The student sees a turned, flipped and
//! stain-jittered view (`stain_jitter`), the teacher the crop as it is, so the student cannot
//! copy the teacher's per-crop arithmetic and must find nuclei by shape and context. The run
//! saves the average of the student's late weights (`step::WeightAverage`).
//!
//! Both see the crop stain-calibrated by its image or slide (`crate::stain::calibrate`):
//! labs stain with up to 5× different hematoxylin strength (MoNuSeg's per-image cuts span
//! 0.020–0.093), which a per-crop cut absorbs and a network's fixed weights cannot. The
//! teacher's cut is scale-free, so calibration changes what the student sees, not what it
//! is taught.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Reduction, Tensor};

use super::cdcl::geometric;
use super::stain_jitter::stain_jitter;
use super::stain_teacher::{stain_targets, IGNORE_BAND, TEACHER_SIGMA_PX};
use super::student::TrainedNet;
use crate::model::{Method, StainCalibration};

/// The hematoxylin cut every training image and segmented slide is calibrated to: about
/// the median of MoNuSeg's 30 training images (0.052), so gammas stay near 1 on typical
/// H&E and the inputs keep their usual range.
pub const STAIN_CALIBRATION: StainCalibration = StainCalibration {
    hematoxylin_cut: 0.05,
};

/// The share of a run's epochs after which the saved model becomes the average of the
/// student's weights (see `step::WeightAverage`): validation Dice levels off by about
/// half-way, and what remains is step-to-step noise that averaging removes.
pub const AVERAGE_FROM: f64 = 0.5;

/// The stain calibration `method` trains (and so segments) with: only this method's; the
/// seed methods stay as their papers describe them.
pub fn stain_calibration_of(method: Method) -> Option<StainCalibration> {
    (method == Method::SelfTraining).then_some(STAIN_CALIBRATION)
}

/// The student's loss on a batch of calibrated crops (B×3×H×W in [0, 1]) at optimizer step
/// `step` of the run seeded `seed`: binary cross-entropy against the teacher's targets,
/// averaged over the pixels the teacher is sure of.
///
/// The teacher sees each crop as it is; the student sees it rotated by up to ±15°, flipped
/// and stain-jittered, and is scored against the teacher's targets moved with the same
/// geometry (nearest neighbour, so targets stay 0 or 1).
pub fn self_training_loss(student: &TrainedNet, images: &Tensor, seed: u64, step: u64) -> Tensor {
    let teacher = tch::no_grad(|| stain_targets(images, TEACHER_SIGMA_PX, IGNORE_BAND));
    view_loss(
        student,
        images,
        &teacher.target,
        &teacher.weight,
        &mut step_rng(seed, step, 0),
    )
}

/// The student's loss on calibrated labeled sub-images (B×3×S×S) and their true masks
/// (B×1×S×S in {0,1}): binary cross-entropy over every pixel, the student seeing the same
/// kind of view as of the crops (drawn from a stream of its own).
pub fn labeled_loss(
    student: &TrainedNet,
    images: &Tensor,
    masks: &Tensor,
    seed: u64,
    step: u64,
) -> Tensor {
    view_loss(
        student,
        images,
        masks,
        &masks.ones_like(),
        &mut step_rng(seed, step, 1),
    )
}

/// One generator per step and `stream`: the same run draws the same views, also after a
/// resume, and the labeled views do not shift the crops' draws.
fn step_rng(seed: u64, step: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(stream);
    rng
}

/// Weighted binary cross-entropy of the student on a turned, flipped, stain-jittered view
/// of square `images` against `target` and `weight` moved with the same geometry, per unit
/// of weight.
fn view_loss(
    student: &TrainedNet,
    images: &Tensor,
    target: &Tensor,
    weight: &Tensor,
    rng: &mut ChaCha8Rng,
) -> Tensor {
    let (b, _, side, _) = images.size4().expect("B×3×H×W crops");
    // Crops and sub-images are square; the window is the whole of each, turned.
    let geometry = geometric(b as usize, side, side, images.device(), rng);
    let view = stain_jitter(&geometry.apply(images, false), rng);
    let (target, weight) = (geometry.apply(target, true), geometry.apply(weight, true));
    let per_pixel =
        student
            .forward_t(&view, true)
            .binary_cross_entropy(&target, Some(&weight), Reduction::Sum);
    per_pixel / weight.sum(Kind::Float).clamp_min(1.0)
}
