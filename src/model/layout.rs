//! The memory layout the networks' convolutions run fastest in.

use tch::Tensor;

/// `x` (B×C×H×W) in the layout to feed a network: channels-last (NHWC strides, same
/// values), which every later layer keeps. On the CPU, oneDNN runs the confidence network's
/// 8-channel convolutions about 2.5× faster on it than on NCHW, forward and backward, and
/// the UNet's wider ones faster too (`cargo bench --bench train_steps`, `--bench segment`,
/// `--bench cdcl`). On an H100, cuDNN's NCHW BatchNorm+ELU backward for 8 channels is what
/// made a contrastive step slow: the layer pattern's forward+backward took 39.0 ms in NCHW
/// and 18.9 ms in NHWC, a whole step 26.6 vs 56.5 steps/s (`train_steps`, 2026-11-24).
pub fn fast_layout(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}
