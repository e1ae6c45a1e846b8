//! Semi-supervised training with few labels: cross-patch dense contrastive learning with a
//! mean teacher (seed 003, "CDCL"), and its SupOnly baseline (the same network, schedule and
//! augmentation, labeled data only).
//!
//! One step: a labeled batch (student, cross-entropy on masks) and, once the unsupervised
//! branch has started, an unlabeled batch seen weakly augmented by the teacher and strongly
//! augmented by the student. The student's loss adds the cross-patch dense contrastive loss
//! (`contrast`), consistency with the teacher's confident pseudo-labels and entropy
//! minimisation (`objective`); the teacher is an EMA of the student. Everything runs on the
//! device; the host sees only a few random numbers for augmentation and the loss values.

pub(crate) mod augment;
mod contrast;
mod objective;
mod run;
mod split;

use serde::{Deserialize, Serialize};

pub use augment::{geometric, photometric, Geometry};
pub use contrast::{classify_patches, dense_contrastive_loss, FeatureBank, PatchKind, Queries};
pub use objective::{consistency_loss, consistency_weight, entropy_loss, poly_lr};
pub use run::{train_semi, Schedule, SemiStep};
pub use split::{parse_fraction, LabeledTiles};

/// All knobs of semi-supervised training. `Default` is the paper's configuration (section
/// 4.2) scaled to our backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SemiConfig {
    /// Train the unsupervised branch (CDCL); `false` is the SupOnly baseline.
    pub unsupervised: bool,
    /// Share of the labeled sub-images whose masks are used (paper: 1/32, 1/16, 1/8).
    pub labeled_fraction: f64,
    /// Seed of the choice of labeled sub-images (fixed across training seeds, as a dataset
    /// split is).
    pub split_seed: u64,
    /// Side of the sub-images training images are cut into (paper: 250 on MoNuSeg).
    pub tile: u32,
    /// Side of the network input cut from a sub-image (rotated, flipped, shifted); a
    /// multiple of 64 so that the 8×8 patch grid falls on whole stride-8 feature pixels.
    pub crop: u32,
    pub labeled_batch: usize,
    pub unlabeled_batch: usize,
    /// UNet width w (see [`crate::model::UNet`]).
    pub width: usize,
    pub epochs: usize,
    /// Optimizer steps per epoch; default: one pass over the sub-images as unlabeled data.
    pub epoch_steps: Option<usize>,
    /// Stop after this many steps, whatever `epochs` says.
    pub max_steps: Option<usize>,
    /// Epochs of labeled-only training before the unsupervised branch starts (paper: 5).
    pub semi_start: usize,
    /// EMA decay α of the teacher.
    pub ema: f64,
    /// Patch grid of the contrastive loss (paper: 8×8 patches per image).
    pub grid: i64,
    /// Foreground score from which a patch is foreground-dominated (FDP).
    pub fdp: f64,
    /// Foreground score up to which a patch is background-dominated (BDP).
    pub bdp: f64,
    /// InfoNCE temperature τ.
    pub temperature: f64,
    pub w_sup: f64,
    pub w_contr: f64,
    pub w_ent: f64,
    /// Final consistency weight, reached by a Gaussian ramp over training.
    pub w_cons: f64,
    /// Teacher probability a pixel's pseudo-label needs to count in the consistency loss.
    pub cons_threshold: f64,
    /// Initial Adam learning rate, decayed by (1 − step/steps)^0.9.
    pub lr: f64,
    pub seed: u64,
    #[serde(with = "super::config::device_name")]
    pub device: tch::Device,
    /// Microns per pixel of the labeled images, recorded in model.json.
    pub train_mpp: Option<f64>,
}

impl Default for SemiConfig {
    fn default() -> Self {
        Self {
            unsupervised: true,
            labeled_fraction: 1.0 / 8.0,
            split_seed: 0,
            tile: 250,
            crop: 192,
            labeled_batch: 8,
            unlabeled_batch: 8,
            width: crate::model::DEFAULT_UNET_WIDTH as usize,
            epochs: 80,
            epoch_steps: None,
            max_steps: None,
            semi_start: 5,
            ema: 0.999,
            grid: 8,
            fdp: 0.7,
            bdp: 0.3,
            temperature: 0.1,
            w_sup: 1.0,
            w_contr: 0.1,
            w_ent: 0.01,
            w_cons: 1.0,
            cons_threshold: 0.8,
            lr: 1e-4,
            seed: 0,
            device: tch::Device::Cpu,
            train_mpp: None,
        }
    }
}
