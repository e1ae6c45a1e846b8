//! `model.json`: everything `segment` needs to apply a trained run, plus its provenance.

use serde::{Deserialize, Serialize};

/// Weights file inside a run directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Model card file inside a run directory.
pub const MODEL_CARD_FILE: &str = "model.json";

/// How a run was trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Label-free patch contrastive learning (the paper's method).
    Contrastive,
    /// Same network, K=1, trained with BCE on masks (the paper's CNN baseline).
    Supervised,
    /// Optimal global grayscale threshold (the paper's simplest baseline).
    Threshold,
    /// Semi-supervised cross-patch dense contrastive learning with a mean teacher (seed 003).
    Cdcl,
    /// Label-free: same network, K=1, trained with BCE on each crop's hematoxylin map
    /// (colour deconvolution cut at the crop's Otsu threshold) instead of masks.
    Hematoxylin,
    /// Label-free: same network, K=1, a student on stain-jittered crops learning the stain
    /// teacher of `train::stain_teacher` (smoothed cut, holes filled, uncertain rim ignored).
    #[serde(rename = "self-training")]
    SelfTraining,
}

impl Method {
    /// Whether the method's models were taught by the stain teacher, whose nuclei are re-cut
    /// at their own stain level and hole-filled, so that their masks are finished the same
    /// way: the network leaves some pale nuclear centres open that its teacher closed, and
    /// its edges lie at one confidence where the teacher's lie at each nucleus's own level.
    pub fn finishes_like_the_stain_teacher(self) -> bool {
        self == Self::SelfTraining
    }
}

impl std::fmt::Display for Method {
    /// The name `--method` takes (`self-training`, …).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = clap::ValueEnum::to_possible_value(self).expect("no method is hidden");
        f.write_str(value.get_name())
    }
}

/// What model `model.json` describes and hence how foreground is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// [`crate::model::ConfidenceNet`]; foreground = confidence of `channel` > `threshold`.
    ConfidenceNet,
    /// No weights; foreground = luma < `threshold`.
    GrayThreshold,
    /// [`crate::model::UNet`] of `width`; foreground = softmax probability of `channel`
    /// (1 = nucleus) > `threshold`.
    Unet,
}

/// Mapping from RGB in [0, 1] to what the model sees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum InputNormalisation {
    /// x ↦ (1-ε)x+ε per RGB channel.
    Epsilon { epsilon: f64 },
    /// ITU-R 601 luma 0.299R+0.587G+0.114B, rounded to 8 bits and divided by 255 (as PIL's "L").
    Luma,
    /// RGB in [0, 1] as is (the network's first BatchNorm does the scaling).
    Unit,
}

/// Per-slide stain calibration of a model's input (see [`crate::stain::calibrate`]): the
/// intensities of every slide (or image) are raised to the power `hematoxylin_cut` / the
/// slide's own hematoxylin cut, so that its nuclei look as dark to the model as they did
/// in training, however strongly the lab stained it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StainCalibration {
    /// The hematoxylin cut every slide is moved to.
    pub hematoxylin_cut: f64,
}

/// How the saved (epoch, channel) was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// Highest Dice on labeled validation images (paper 3.2).
    ValidationDice,
    /// No labels: highest agreement with the hematoxylin stain (see
    /// `train::label_free`).
    HematoxylinAgreement,
    /// Neither: the last epoch, channel 0.
    LastEpoch,
}

/// Contents of `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub architecture: Architecture,
    pub method: Method,
    /// Output channels K of the network (1 for the threshold model).
    pub channels: usize,
    /// The channel used as the nuclei mask (chosen by validation Dice).
    pub channel: usize,
    /// Decision threshold, see [`Architecture`].
    pub threshold: f64,
    pub input_normalisation: InputNormalisation,
    /// Epoch (0-based) of the saved checkpoint, if trained by epochs.
    pub epoch: Option<usize>,
    /// Validation Dice per channel at that epoch (empty without validation data).
    pub val_dice: Vec<f64>,
    pub seed: u64,
    /// Human-readable description of the training data.
    pub data: String,
    pub slidestream_version: String,
    /// Microns per pixel the model learned at: `segment`, `eval` and `cohort` show it slides
    /// at this scale. `train` always records it (from the slides, the images' resolution
    /// tags or `--mpp`); `None` in runs of older versions and the threshold baseline, which
    /// are applied to native pixels (with a warning for a network, see
    /// `crate::segment::ScaleUsed`).
    pub train_mpp: Option<f64>,
    /// How `epoch` and `channel` were chosen (absent in cards of older versions).
    #[serde(default)]
    pub selection: Option<Selection>,
    /// Label-free hematoxylin agreement per channel at that epoch (empty if not measured).
    #[serde(default)]
    pub hematoxylin_agreement: Vec<f64>,
    /// Width w of a [`Architecture::Unet`] (absent for other architectures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    /// The stain calibration the model was trained with (absent: inputs as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stain_calibration: Option<StainCalibration>,
}
