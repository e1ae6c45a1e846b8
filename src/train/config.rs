//! Training options, with the paper's defaults (section 3.2, appendix E).

use serde::{Deserialize, Serialize};

use super::error::TrainError;
use super::sampler::CandidateGrid;
pub use super::sampler::SamplerKind;
pub use super::student::Student;
pub use crate::model::Method;

/// Patch similarity s(a, b) on attended images (paper appendix C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Similarity {
    /// s = −mean((a − b)²), eq. 8.
    #[default]
    Mse,
    /// s = mean(a·log₂b + (1−a)·log₂(1−b)), eq. 9.
    Ce,
}

/// All knobs of `train`. `Default` gives the paper's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub method: Method,
    /// Epochs; one epoch draws one crop from each training image.
    pub epochs: usize,
    /// Stop after this many optimizer steps (counting skipped ones), whatever `epochs` says.
    pub max_steps: Option<usize>,
    pub seed: u64,
    #[serde(with = "device_name")]
    pub device: tch::Device,
    pub similarity: Similarity,
    pub sampler: SamplerKind,
    /// Candidates per class kept as positives by the top-k sampler (authors' default 50).
    pub topk: usize,
    /// Output channels K.
    pub channels: usize,
    /// Side of the square random crops.
    pub crop: u32,
    pub batch: usize,
    /// Patches sampled per image and channel (n).
    pub patches: usize,
    /// Anchors drawn per channel from its positives (the authors' fixed `n := 10`).
    pub anchors: usize,
    pub patch_size: u32,
    /// Stride between candidate patches.
    pub stride: u32,
    pub lr: f64,
    pub weight_decay: f64,
    /// ε of the input mapping (1−ε)x+ε.
    pub epsilon: f64,
    /// The network trained (the UNet for self-training only); left out of `config.json`
    /// when it is the confidence network, as in runs from before it could be chosen.
    #[serde(skip_serializing_if = "is_confidence_net")]
    pub student: Student,
}

fn is_confidence_net(student: &Student) -> bool {
    *student == Student::ConfidenceNet
}

/// Widths a UNet student may have: one channel up to far more than two CPU cores train.
const UNET_WIDTHS: std::ops::RangeInclusive<usize> = 1..=256;

/// Default epochs of the self-training method: with stain calibration its validation Dice
/// levels off by about epoch 30 (docs/benchmarks.md#self-training).
pub const SELF_TRAINING_EPOCHS: usize = 40;
/// Default Adam learning rate of the self-training method.
pub const SELF_TRAINING_LR: f64 = 1e-3;

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            method: Method::Contrastive,
            epochs: 300,
            max_steps: None,
            seed: 0,
            device: tch::Device::Cpu,
            similarity: Similarity::Mse,
            sampler: SamplerKind::Entropy,
            topk: 50,
            channels: 4,
            crop: 300,
            batch: 10,
            patches: 10,
            anchors: 10,
            patch_size: 50,
            stride: 20,
            lr: 2e-4,
            weight_decay: 1e-4,
            epsilon: crate::model::DEFAULT_EPSILON,
            student: Student::ConfidenceNet,
        }
    }
}

impl TrainConfig {
    /// The defaults of `method`: the paper's for the seed methods; self-training takes
    /// fewer, larger steps (it learns a dense target, not a contrastive one, and must fit
    /// 30 minutes on two CPU cores).
    pub fn defaults_for(method: Method) -> Self {
        let paper = Self {
            method,
            ..Self::default()
        };
        match method {
            Method::SelfTraining => Self {
                epochs: SELF_TRAINING_EPOCHS,
                lr: SELF_TRAINING_LR,
                ..paper
            },
            _ => paper,
        }
    }

    /// Refuses settings no run can use, naming the `train` flag to change, before anything
    /// is written.
    pub fn check(&self) -> Result<(), TrainError> {
        let bad = |what: String| Err(TrainError::Config(what));
        if self.epochs == 0 || self.max_steps == Some(0) {
            return bad("--epochs and --max-steps must be at least 1".into());
        }
        if self.batch == 0 || self.patches == 0 || self.anchors == 0 || self.channels == 0 {
            return bad("--batch, --patches and --channels must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.epsilon) {
            return bad(format!("epsilon {} must be in [0, 1)", self.epsilon));
        }
        if self.method == Method::Contrastive {
            self.check_patches()?;
        }
        if self.crop == 0 {
            return bad("--crop must be at least 1".into());
        }
        if let Student::Unet { width } = self.student {
            if self.method != Method::SelfTraining {
                return bad(format!(
                    "--student unet is the self-training method's; --method {} trains the \
                     confidence network (cdcl trains its own UNet: use --method cdcl --width)",
                    self.method
                ));
            }
            if !UNET_WIDTHS.contains(&width) {
                return bad(format!(
                    "--width {width} must be between {} and {} (8 costs `segment` about 1.2× \
                     the confidence network, 16 about 3×)",
                    UNET_WIDTHS.start(),
                    UNET_WIDTHS.end()
                ));
            }
        }
        Ok(())
    }

    /// The contrastive loss's patch settings fit a crop and leave the sampler candidates.
    fn check_patches(&self) -> Result<(), TrainError> {
        let bad = |what: String| Err(TrainError::Config(what));
        if self.patch_size == 0 || self.stride == 0 {
            return bad("--patch-size and --stride must be at least 1".into());
        }
        if self.patch_size > self.crop {
            return bad(format!(
                "--patch-size {} does not fit the {}×{} crop; lower it or raise --crop",
                self.patch_size, self.crop, self.crop
            ));
        }
        let crop = i64::from(self.crop);
        let grid = CandidateGrid::new(
            crop,
            crop,
            i64::from(self.patch_size),
            i64::from(self.stride),
        )?;
        if self.sampler == SamplerKind::Topk && !(1..grid.len()).contains(&(self.topk as i64)) {
            return bad(format!(
                "--topk {} must be between 1 and {}: a {crop}×{crop} crop holds {} candidate \
                 patches at --patch-size {} --stride {}, and the rest are the negatives",
                self.topk,
                grid.len() - 1,
                grid.len(),
                self.patch_size,
                self.stride
            ));
        }
        Ok(())
    }
}

/// Serialises a device as "cpu", "cuda:N", "mps" or "vulkan".
pub(crate) mod device_name {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use tch::Device;

    pub fn serialize<S: Serializer>(device: &Device, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::device::describe(*device))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Device, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            "mps" => Ok(Device::Mps),
            "vulkan" => Ok(Device::Vulkan),
            _ => name
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| {
                    D::Error::custom(format!("unknown device `{name}`; use cpu or cuda:N"))
                }),
        }
    }
}
