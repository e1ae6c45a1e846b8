//! Cutting sampled windows out of the attended images F_k = I·C_k with one gather.

use tch::{Kind, Tensor};

use super::sampler::CandidateGrid;

/// Attended patches for sampled candidates.
///
/// `image` B×3×H×W (normalised), `confidence` B×K×H×W, `index` B×K×S into `grid`.
/// Returns K×(B·S)×(3·P) with P = size², patch j of channel k being image j / S, sample
/// j % S: the per-channel pool across the batch that the loss contrasts.
pub fn attended_patches(
    image: &Tensor,
    confidence: &Tensor,
    grid: &CandidateGrid,
    index: &Tensor,
) -> Tensor {
    let (b, k, s) = (index.size()[0], index.size()[1], index.size()[2]);
    let (h, w) = (image.size()[2], image.size()[3]);
    let device = image.device();
    let size = grid.size;
    let attended = (image.unsqueeze(1) * confidence.unsqueeze(2)).view([b, k, 3, h * w]);
    let within = Tensor::arange(size, (Kind::Int64, device));
    let offsets = (within.view([size, 1]) * w + within.view([1, size])).view([1, 1, 1, -1]);
    let top_left = index.divide_scalar_mode(grid.cols, "floor") * (grid.stride * w)
        + index.remainder(grid.cols) * grid.stride;
    let pixels = (top_left.unsqueeze(-1) + offsets).view([b, k, 1, s * size * size]);
    attended
        .gather(3, &pixels.expand([b, k, 3, s * size * size], false), false)
        .view([b, k, 3, s, size * size])
        .permute([1, 0, 3, 2, 4])
        .reshape([k, b * s, 3 * size * size])
}
