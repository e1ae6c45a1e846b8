//! A hand-written CPU kernel (x86-64 with AVX2 and FMA) for the confidence network's residual
//! stack at inference.
//!
//! Through torch, each of the twelve 8-channel dilated convolutions of a validation image or a
//! slide tile is a oneDNN call plus separate passes for the ELU and the residual addition;
//! validation and `segment` spend most of their time there. This kernel fuses each
//! convolution (BatchNorm folded in) with its ELU and the residual addition, keeps the 8
//! output channels of 8 neighbouring pixels in vector registers and works row by row in
//! parallel (`cargo bench --bench train_steps` compares it with the torch path). Its values
//! equal the torch path's up to float rounding. Other CPUs keep the torch path.

use rayon::prelude::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::cell::Cell;

/// Whether this CPU can run the kernel.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Channels of every convolution in the stack (the network's hidden width).
pub(crate) const CHANNELS: usize = 8;
/// Zero border kept around each activation plane: the largest dilation, so every tap of
/// every pixel reads inside the plane and the inner loop needs no bounds logic.
const BORDER: usize = 20;
/// Output pixels computed together: independent accumulator chains that hide FMA latency.
const PIXEL_BLOCK: usize = 8;

/// One 8→8 3×3 convolution with its BatchNorm folded into weight and bias.
#[derive(Debug, Clone)]
pub(crate) struct FoldedConv {
    /// `weight[tap][input][output]`, taps row-major over the 3×3 window.
    pub weight: [[[f32; CHANNELS]; CHANNELS]; 9],
    pub bias: [f32; CHANNELS],
    pub dilation: usize,
}

/// The activations of one image: channels-last with a zero border of [`BORDER`] px.
struct Plane {
    data: Vec<f32>,
    height: usize,
    width: usize,
}

impl Plane {
    fn zeros(height: usize, width: usize) -> Self {
        Self {
            data: vec![0.0; (height + 2 * BORDER) * (width + 2 * BORDER) * CHANNELS],
            height,
            width,
        }
    }

    fn row_len(&self) -> usize {
        (self.width + 2 * BORDER) * CHANNELS
    }

    /// Copies `pixels` (H×W×8 channels-last) into the interior.
    fn read_pixels(&mut self, pixels: &[f32]) {
        let row_len = self.row_len();
        for (y, source) in pixels.chunks_exact(self.width * CHANNELS).enumerate() {
            let start = (y + BORDER) * row_len + BORDER * CHANNELS;
            self.data[start..start + source.len()].copy_from_slice(source);
        }
    }

    fn write_pixels(&self, out: &mut Vec<f32>) {
        let row_len = self.row_len();
        for y in 0..self.height {
            let start = (y + BORDER) * row_len + BORDER * CHANNELS;
            out.extend_from_slice(&self.data[start..start + self.width * CHANNELS]);
        }
    }
}

/// Runs `h ← h + elu(b(elu(a(h))))` for every `[a, b]` of `blocks` over `images`
/// (B×H×W×8 channels-last) and returns the result in the same layout. Only where
/// [`available`].
pub(crate) fn residual_stack(
    images: &[f32],
    height: usize,
    width: usize,
    blocks: &[[FoldedConv; 2]],
) -> Vec<f32> {
    let image_len = height * width * CHANNELS;
    assert_eq!(images.len() % image_len.max(1), 0, "whole images");
    assert!(
        blocks.iter().flatten().all(|c| c.dilation <= BORDER),
        "dilation above the plane border"
    );
    let mut out = Vec::with_capacity(images.len());
    let [mut h, mut inner] = SPARE_PLANES
        .take()
        .filter(|[plane, _]| (plane.height, plane.width) == (height, width))
        .unwrap_or_else(|| [(); 2].map(|_| Plane::zeros(height, width)));
    for image in images.chunks_exact(image_len.max(1)) {
        h.read_pixels(image);
        for [a, b] in blocks {
            convolve(&h, a, &mut inner, false);
            convolve(&inner, b, &mut h, true);
        }
        h.write_pixels(&mut out);
    }
    SPARE_PLANES.set(Some([h, inner]));
    out
}

thread_local! {
    /// The planes of this thread's last call, reused by the next call of the same size (one
    /// model thread sees the same tile or image size over and over). Only interiors are
    /// ever written, so borders stay zero; and a fresh plane of a 1000×1000 image is larger
    /// than glibc's mmap threshold, so allocating it every call means faulting in and
    /// zeroing 70 MB per image.
    static SPARE_PLANES: Cell<Option<[Plane; 2]>> = const { Cell::new(None) };
}

/// `target ← elu(conv(source))`, or `target ← target + elu(conv(source))` when `residual`,
/// over the interior; `target`'s border stays zero.
fn convolve(source: &Plane, conv: &FoldedConv, target: &mut Plane, residual: bool) {
    assert!(available(), "the CPU kernel needs AVX2 and FMA");
    let row_len = source.row_len();
    let width = source.width;
    let rows = BORDER..BORDER + source.height;
    target
        .data
        .par_chunks_exact_mut(row_len)
        .enumerate()
        .filter(|(y, _)| rows.contains(y))
        .for_each(|(y, out_row)| {
            let d = conv.dilation;
            let taps = [y - d, y, y + d].map(|r| &source.data[r * row_len..(r + 1) * row_len]);
            // SAFETY: the CPU supports AVX2 and FMA (asserted above).
            #[cfg(target_arch = "x86_64")]
            unsafe {
                convolve_row(&taps, conv, width, out_row, residual)
            }
        });
}

/// One output row: `taps` are the source rows at y−d, y, y+d.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn convolve_row(
    taps: &[&[f32]; 3],
    conv: &FoldedConv,
    width: usize,
    out_row: &mut [f32],
    residual: bool,
) {
    let mut x = BORDER;
    let end = BORDER + width;
    while x + PIXEL_BLOCK <= end {
        let sums = convolve_pixels::<PIXEL_BLOCK>(taps, conv, x);
        store(&sums, &mut out_row[x * CHANNELS..], residual);
        x += PIXEL_BLOCK;
    }
    while x < end {
        let sums = convolve_pixels::<1>(taps, conv, x);
        store(&sums, &mut out_row[x * CHANNELS..], residual);
        x += 1;
    }
}

/// Pre-activation sums of the `N` pixels from column `x`, one vector of 8 output channels
/// per pixel: each FMA adds one input channel (broadcast) times its weights. The `N` sums
/// are independent chains, which hides the FMA latency.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn convolve_pixels<const N: usize>(
    taps: &[&[f32]; 3],
    conv: &FoldedConv,
    x: usize,
) -> [__m256; N] {
    let d = conv.dilation;
    let mut sums = [_mm256_loadu_ps(conv.bias.as_ptr()); N];
    for (ky, row) in taps.iter().enumerate() {
        for kx in 0..3 {
            let weight = &conv.weight[ky * 3 + kx];
            let start = (x + kx * d - d) * CHANNELS;
            let inputs = &row[start..start + N * CHANNELS];
            for (i, weight_row) in weight.iter().enumerate() {
                let w = _mm256_loadu_ps(weight_row.as_ptr());
                for (p, sum) in sums.iter_mut().enumerate() {
                    let input = _mm256_broadcast_ss(&inputs[p * CHANNELS + i]);
                    *sum = _mm256_fmadd_ps(input, w, *sum);
                }
            }
        }
    }
    sums
}

/// Writes `elu(sum)` (or adds it, when `residual`) for consecutive pixels from `out`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store(sums: &[__m256], out: &mut [f32], residual: bool) {
    for (sum, target) in sums.iter().zip(out.chunks_exact_mut(CHANNELS)) {
        let mut activated = elu(*sum);
        if residual {
            activated = _mm256_add_ps(activated, _mm256_loadu_ps(target.as_ptr()));
        }
        _mm256_storeu_ps(target.as_mut_ptr(), activated);
    }
}

/// exp's argument is clamped here: e^−80 − 1 is −1 in f32, and the clamp keeps 2ⁿ and the
/// result normal (denormals would slow every operation on them).
const EXP_FLOOR: f32 = -80.0;
/// ln 2 split so that n·LN2_HIGH is exact for the n that occur.
const LN2_HIGH: f32 = 0.693_145_75;
const LN2_LOW: f32 = 1.428_606_8e-6;
/// 1/k! for k = 0..=6: e^r on [−ln2/2, ln2/2] to a relative 1e-7.
const EXP_TAYLOR: [f32; 7] = [
    1.0,
    1.0,
    0.5,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
];

/// ELU (α = 1) of 8 lanes without a branch: e^x = 2ⁿ·e^r by range reduction and a Taylor
/// polynomial for e^r (libm's expm1 is scalar).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn elu(x: __m256) -> __m256 {
    let zero = _mm256_setzero_ps();
    let negative = _mm256_max_ps(_mm256_min_ps(x, zero), _mm256_set1_ps(EXP_FLOOR));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        negative,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HIGH), negative);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LOW), r);
    let p = EXP_TAYLOR
        .iter()
        .rev()
        .fold(zero, |p, &c| _mm256_fmadd_ps(p, r, _mm256_set1_ps(c)));
    let two_to_n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    let expm1 = _mm256_fmsub_ps(p, two_to_n, _mm256_set1_ps(1.0));
    _mm256_blendv_ps(expm1, x, _mm256_cmp_ps::<_CMP_GT_OQ>(x, zero))
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn elu_matches_the_exponential() {
        if !available() {
            return;
        }
        let xs: Vec<f32> = (-2000..=2000)
            .map(|i| i as f32 / 100.0)
            .chain([-1000.0, -80.5, -79.9, 1e-30, -1e-30, 0.0, -0.0])
            .collect();
        for chunk in xs.chunks_exact(8) {
            let mut got = [0.0f32; 8];
            // SAFETY: `available` checked AVX2 and FMA.
            unsafe { _mm256_storeu_ps(got.as_mut_ptr(), elu(_mm256_loadu_ps(chunk.as_ptr()))) };
            for (&x, &y) in chunk.iter().zip(&got) {
                let expected = if x > 0.0 { x } else { x.exp_m1() };
                assert!(
                    (y - expected).abs() <= 2e-7 * expected.abs().max(1.0),
                    "elu({x}) = {y}, expected {expected}"
                );
            }
        }
    }
}
