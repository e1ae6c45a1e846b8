//! Patch samplers: which candidate windows become positive / negative patches per channel.
//!
//! Candidates are all `size`×`size` windows at `stride` (no padding); their mean confidence
//! and mean entropy come from one `avg_pool2d` each (paper appendix E.1), and all draws use
//! torch's RNG on the confidences' device, so nothing per patch crosses to the host.

use tch::{Kind, Tensor};

use super::error::TrainError;
use serde::{Deserialize, Serialize};

/// How positive and negative patches are drawn from the candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    /// Section 2.3: draw ∝ 1 − mean entropy, then positive ~ Bernoulli(mean confidence).
    #[default]
    Entropy,
    /// Appendix B.1: positives ∝ mean confidence, negatives ∝ 1 − that probability.
    Confidence,
    /// Appendix B.2: uniform among the --topk most confident candidates / among the rest.
    Topk,
}

/// The grid of candidate windows over an H×W map; candidate `l` is at row `l / cols`,
/// column `l % cols` of the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidateGrid {
    pub rows: i64,
    pub cols: i64,
    pub size: i64,
    pub stride: i64,
}

impl CandidateGrid {
    pub fn new(height: i64, width: i64, size: i64, stride: i64) -> Result<Self, TrainError> {
        if size < 1 || stride < 1 || size > height || size > width {
            return Err(TrainError::Config(format!(
                "patch size {size} and stride {stride} do not fit a {width}×{height} crop"
            )));
        }
        Ok(Self {
            rows: (height - size) / stride + 1,
            cols: (width - size) / stride + 1,
            size,
            stride,
        })
    }

    /// Number of candidates L.
    pub fn len(&self) -> i64 {
        self.rows * self.cols
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Mean of `maps` (B×K×H×W) over every candidate window: B×K×L.
    pub fn window_means(&self, maps: &Tensor) -> Tensor {
        maps.avg_pool2d(
            [self.size, self.size],
            [self.stride, self.stride],
            [0, 0],
            false,
            true,
            None,
        )
        .flatten(2, 3)
    }
}

/// Sampled patches: `index` (B×K×S) into the candidate grid, with boolean roles of the same
/// shape. Every sampler here gives each patch exactly one role; the loss only needs masks.
#[derive(Debug)]
pub struct PatchSample {
    pub index: Tensor,
    pub positive: Tensor,
    pub negative: Tensor,
}

/// Bernoulli entropy in bits, log₂ clamped at −100 as in the authors' `EntropySampler`
/// (and torch's BCE) so that saturated confidences give 0, not NaN.
pub fn bernoulli_entropy_bits(c: &Tensor) -> Tensor {
    let log2 = |t: &Tensor| t.log2().clamp_min(-100.0);
    let not_c: Tensor = 1.0 - c;
    -(c * log2(c) + &not_c * log2(&not_c))
}

/// Sampling weight of each candidate for the entropy sampler: max(1 − mean entropy, 0.001).
/// The entropy is averaged per pixel first, then over the window (authors' order).
pub fn entropy_weights(grid: &CandidateGrid, confidence: &Tensor) -> Tensor {
    let certainty: Tensor = 1.0 - grid.window_means(&bernoulli_entropy_bits(confidence));
    certainty.clamp_min(0.001)
}

/// Draws `n` samples with replacement per row of `weights` (B×K×L): B×K×n.
fn multinomial(weights: &Tensor, n: i64) -> Tensor {
    let s = weights.size();
    weights
        .reshape([-1, s[2]])
        .multinomial(n, true)
        .view([s[0], s[1], n])
}

/// Samples `n` patches per image and channel (entropy sampler) or `n` positives and `n`
/// negatives (confidence, top-k) from `confidence` (B×K×H×W, detached).
pub fn sample_patches(
    kind: SamplerKind,
    grid: &CandidateGrid,
    confidence: &Tensor,
    n: i64,
    topk: i64,
) -> Result<PatchSample, TrainError> {
    let means = grid.window_means(confidence);
    let (b, k) = (means.size()[0], means.size()[1]);
    let opts = (Kind::Int64, confidence.device());
    match kind {
        SamplerKind::Entropy => {
            let index = multinomial(&entropy_weights(grid, confidence), n);
            // The authors draw one Bernoulli per candidate, so repeated draws of a candidate
            // share their role; marginally each is positive with its mean confidence.
            let positive = means.bernoulli().gather(2, &index, false).gt(0.5);
            let negative = positive.logical_not();
            Ok(PatchSample {
                index,
                positive,
                negative,
            })
        }
        SamplerKind::Confidence => {
            let p = &means / means.sum_dim_intlist(2, true, Kind::Float);
            let q = (1.0 - &p) / (grid.len() - 1).max(1) as f64;
            let index = Tensor::cat(&[multinomial(&p, n), multinomial(&q, n)], 2);
            Ok(split_roles(index, b, k, n))
        }
        SamplerKind::Topk => {
            if topk < 1 || topk >= grid.len() {
                return Err(TrainError::Config(format!(
                    "top-k sampler needs 0 < topk < {} candidates, got {topk}",
                    grid.len()
                )));
            }
            let order = means.argsort(2, true);
            let top = Tensor::randint_low(0, topk, [b, k, n], opts);
            let rest = Tensor::randint_low(topk, grid.len(), [b, k, n], opts);
            let index = order.gather(2, &Tensor::cat(&[top, rest], 2), false);
            Ok(split_roles(index, b, k, n))
        }
    }
}

/// Roles for samplers that draw `n` positives followed by `n` negatives.
fn split_roles(index: Tensor, b: i64, k: i64, n: i64) -> PatchSample {
    let device = index.device();
    let positive = Tensor::cat(
        &[
            Tensor::ones([b, k, n], (Kind::Bool, device)),
            Tensor::zeros([b, k, n], (Kind::Bool, device)),
        ],
        2,
    );
    let negative = positive.logical_not();
    PatchSample {
        index,
        positive,
        negative,
    }
}
