//! A hand-written CPU kernel (x86-64 with AVX2 and FMA) for the confidence network's whole
//! forward pass at inference.
//!
//! Through torch, each of the thirteen convolutions of a validation image or a slide tile is
//! a oneDNN call plus separate passes for the ELU and the residual addition, and the input
//! normalisation, layout changes, head and sigmoid are passes of their own; validation and
//! `segment` spend most of their time there. This kernel reads the raw image once, fuses each
//! 3×3 convolution (BatchNorm folded in) with its ELU and the residual addition, keeps the 8
//! output channels of 8 neighbouring pixels in vector registers, computes the 1×1 head and
//! its sigmoid straight from the last activations, and works row by row in parallel
//! (`cargo bench --bench train_steps` compares it with the torch path). Its values equal the
//! torch path's up to float rounding. Other CPUs keep the torch path.

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
/// Channels of the input image (RGB).
pub(crate) const INPUT_CHANNELS: usize = 3;
/// Zero border kept around each activation plane: the largest dilation, so every tap of
/// every pixel reads inside the plane and the inner loop needs no bounds logic.
const BORDER: usize = 20;
/// Output pixels computed together: independent accumulator chains that hide FMA latency.
const PIXEL_BLOCK: usize = 8;

/// One 3×3 convolution from `INPUTS` to 8 channels with its BatchNorm folded into weight
/// and bias.
#[derive(Debug, Clone)]
pub(crate) struct FoldedConv<const INPUTS: usize = CHANNELS> {
    /// `weight[tap][input][output]`, taps row-major over the 3×3 window.
    pub weight: [[[f32; CHANNELS]; INPUTS]; 9],
    pub bias: [f32; CHANNELS],
    pub dilation: usize,
}

/// The 1×1 output convolution (any number of channels K) before its sigmoid.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    /// `weight[output][input]`.
    pub weight: Vec<[f32; CHANNELS]>,
    pub bias: Vec<f32>,
}

/// The confidence network in the kernel's terms.
#[derive(Debug, Clone)]
pub(crate) struct FoldedNet {
    /// The input mapping x ↦ (1−ε)x + ε.
    pub epsilon: f64,
    pub stem: FoldedConv<INPUT_CHANNELS>,
    /// `h ← h + elu(b(elu(a(h))))` for every `[a, b]`.
    pub blocks: Vec<[FoldedConv; 2]>,
    pub head: Head,
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

    /// Interior rows (with their borders) and their image row numbers.
    fn interior_rows_mut(&mut self) -> impl IndexedParallelIterator<Item = (usize, &mut [f32])> {
        let row_len = self.row_len();
        let height = self.height;
        self.data[BORDER * row_len..]
            .par_chunks_exact_mut(row_len)
            .take(height)
            .enumerate()
    }

    /// Writes `image` (3×H×W planar RGB in [0, 1]) mapped to (1−ε)x + ε into the first
    /// three channels of the interior; the other channels are left as they are, since the
    /// stem reads only these three.
    fn read_image(&mut self, image: &[f32], epsilon: f64) {
        let (scale, shift) = ((1.0 - epsilon) as f32, epsilon as f32);
        let (height, width) = (self.height, self.width);
        self.interior_rows_mut().for_each(|(y, row)| {
            for c in 0..INPUT_CHANNELS {
                let source = &image[(c * height + y) * width..][..width];
                let pixels = row[BORDER * CHANNELS..].chunks_exact_mut(CHANNELS);
                for (pixel, &value) in pixels.zip(source) {
                    pixel[c] = value * scale + shift;
                }
            }
        });
    }
}

/// The network's sigmoid confidences (B×K×H×W) of `images` (B×3×H×W, raw RGB in [0, 1]).
/// Only where [`available`].
pub(crate) fn confidences(
    images: &[f32],
    height: usize,
    width: usize,
    net: &FoldedNet,
) -> Vec<f32> {
    assert!(available(), "the CPU kernel needs AVX2 and FMA");
    let image_len = INPUT_CHANNELS * height * width;
    let out_len = net.head.weight.len() * height * width;
    if image_len == 0 {
        return Vec::new();
    }
    assert_eq!(images.len() % image_len, 0, "whole images");
    assert!(
        net.blocks.iter().flatten().all(|c| c.dilation <= BORDER) && net.stem.dilation <= BORDER,
        "dilation above the plane border"
    );
    let mut out = vec![0.0; images.len() / image_len * out_len];
    let [mut h, mut inner] = SPARE_PLANES
        .take()
        .filter(|[plane, _]| (plane.height, plane.width) == (height, width))
        .unwrap_or_else(|| [(); 2].map(|_| Plane::zeros(height, width)));
    for (image, image_out) in images
        .chunks_exact(image_len)
        .zip(out.chunks_exact_mut(out_len))
    {
        inner.read_image(image, net.epsilon);
        convolve(&inner, &net.stem, &mut h, false);
        for [a, b] in &net.blocks {
            convolve(&h, a, &mut inner, false);
            convolve(&inner, b, &mut h, true);
        }
        apply_head(&h, &net.head, image_out);
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
fn convolve<const INPUTS: usize>(
    source: &Plane,
    conv: &FoldedConv<INPUTS>,
    target: &mut Plane,
    residual: bool,
) {
    let row_len = source.row_len();
    let width = source.width;
    target.interior_rows_mut().for_each(|(y, out_row)| {
        let (y, d) = (y + BORDER, conv.dilation);
        let taps = [y - d, y, y + d].map(|r| &source.data[r * row_len..(r + 1) * row_len]);
        // SAFETY: `confidences` asserted AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            convolve_row(&taps, conv, width, out_row, residual)
        }
    });
}

/// One output row: `taps` are the source rows at y−d, y, y+d.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn convolve_row<const INPUTS: usize>(
    taps: &[&[f32]; 3],
    conv: &FoldedConv<INPUTS>,
    width: usize,
    out_row: &mut [f32],
    residual: bool,
) {
    let mut x = BORDER;
    let end = BORDER + width;
    while x + PIXEL_BLOCK <= end {
        let sums = convolve_pixels::<PIXEL_BLOCK, INPUTS>(taps, conv, x);
        store(&sums, &mut out_row[x * CHANNELS..], residual);
        x += PIXEL_BLOCK;
    }
    while x < end {
        let sums = convolve_pixels::<1, INPUTS>(taps, conv, x);
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
unsafe fn convolve_pixels<const N: usize, const INPUTS: usize>(
    taps: &[&[f32]; 3],
    conv: &FoldedConv<INPUTS>,
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

/// `out` (K×H×W) ← sigmoid(head(h)) over `h`'s interior.
fn apply_head(h: &Plane, head: &Head, out: &mut [f32]) {
    let (height, width) = (h.height, h.width);
    // Row y of every output channel, so that rows can be filled in parallel.
    let mut rows: Vec<Vec<&mut [f32]>> = (0..height).map(|_| Vec::new()).collect();
    for channel in out.chunks_exact_mut(height * width) {
        for (row, channel_row) in rows.iter_mut().zip(channel.chunks_exact_mut(width)) {
            row.push(channel_row);
        }
    }
    let row_len = h.row_len();
    rows.into_par_iter().enumerate().for_each(|(y, mut outs)| {
        let start = (y + BORDER) * row_len + BORDER * CHANNELS;
        let pixels = &h.data[start..start + width * CHANNELS];
        // SAFETY: `confidences` asserted AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            head_row(pixels, head, &mut outs)
        }
    });
}

/// One row of the head: `pixels` are W×8 channels-last activations, `outs[k]` the W
/// confidences of channel k. Eight pixels at a time, one vector per input channel (a
/// strided gather), so each output channel is eight FMAs and one vector sigmoid.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn head_row(pixels: &[f32], head: &Head, outs: &mut [&mut [f32]]) {
    let width = pixels.len() / CHANNELS;
    let stride = CHANNELS as i32;
    let offsets = _mm256_setr_epi32(
        0,
        stride,
        2 * stride,
        3 * stride,
        4 * stride,
        5 * stride,
        6 * stride,
        7 * stride,
    );
    let mut x = 0;
    while x + PIXEL_BLOCK <= width {
        let block = &pixels[x * CHANNELS..(x + PIXEL_BLOCK) * CHANNELS];
        let inputs: [__m256; CHANNELS] =
            std::array::from_fn(|c| _mm256_i32gather_ps::<4>(block[c..].as_ptr(), offsets));
        for ((weight, &bias), out) in head.weight.iter().zip(&head.bias).zip(outs.iter_mut()) {
            let sum = weight
                .iter()
                .zip(&inputs)
                .fold(_mm256_set1_ps(bias), |sum, (&w, &input)| {
                    _mm256_fmadd_ps(input, _mm256_set1_ps(w), sum)
                });
            _mm256_storeu_ps(out[x..].as_mut_ptr(), sigmoid(sum));
        }
        x += PIXEL_BLOCK;
    }
    for (x, pixel) in pixels.chunks_exact(CHANNELS).enumerate().skip(x) {
        for ((weight, &bias), out) in head.weight.iter().zip(&head.bias).zip(outs.iter_mut()) {
            let sum = weight
                .iter()
                .zip(pixel)
                .fold(bias, |sum, (&w, &v)| w.mul_add(v, sum));
            out[x] = 1.0 / (1.0 + (-sum).exp());
        }
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

/// e^x of 8 lanes x ≤ 0 (clamped at [`EXP_FLOOR`]) without a branch: e^x = 2ⁿ·e^r by
/// range reduction and a Taylor polynomial for e^r (libm's exp is scalar). 2ⁿ is normal, so
/// the product is exact and e^x − 1 rounds as a fused multiply-subtract would.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn exp_nonpositive(x: __m256) -> __m256 {
    let x = _mm256_max_ps(x, _mm256_set1_ps(EXP_FLOOR));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HIGH), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LOW), r);
    let p = EXP_TAYLOR.iter().rev().fold(_mm256_setzero_ps(), |p, &c| {
        _mm256_fmadd_ps(p, r, _mm256_set1_ps(c))
    });
    let two_to_n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    _mm256_mul_ps(p, two_to_n)
}

/// ELU (α = 1) of 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn elu(x: __m256) -> __m256 {
    let zero = _mm256_setzero_ps();
    let expm1 = _mm256_sub_ps(exp_nonpositive(_mm256_min_ps(x, zero)), _mm256_set1_ps(1.0));
    _mm256_blendv_ps(expm1, x, _mm256_cmp_ps::<_CMP_GT_OQ>(x, zero))
}

/// The logistic sigmoid of 8 lanes through e^−|x|, which cannot overflow: 1/(1+e^−x) for
/// x ≥ 0 and e^x/(1+e^x) below.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn sigmoid(x: __m256) -> __m256 {
    let one = _mm256_set1_ps(1.0);
    let minus_abs = _mm256_or_ps(x, _mm256_set1_ps(-0.0));
    let small = exp_nonpositive(minus_abs);
    let positive = _mm256_div_ps(one, _mm256_add_ps(one, small));
    let negative = _mm256_mul_ps(small, positive);
    _mm256_blendv_ps(
        negative,
        positive,
        _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_setzero_ps()),
    )
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

    #[test]
    fn sigmoid_matches_the_logistic_function() {
        if !available() {
            return;
        }
        let xs: Vec<f32> = (-2000..2000)
            .map(|i| i as f32 / 20.0)
            .chain([-1000.0, 1000.0, 1e-30, -1e-30, 0.0, -0.0, 87.0, -87.0])
            .collect();
        for chunk in xs.chunks_exact(8) {
            let mut got = [0.0f32; 8];
            // SAFETY: `available` checked AVX2 and FMA.
            unsafe { _mm256_storeu_ps(got.as_mut_ptr(), sigmoid(_mm256_loadu_ps(chunk.as_ptr()))) };
            for (&x, &y) in chunk.iter().zip(&got) {
                let expected = 1.0 / (1.0 + (-f64::from(x)).exp());
                // Below e^−80 the clamp answers e^−80 ≈ 2e-35 instead of a denormal.
                assert!(
                    (f64::from(y) - expected).abs() <= 4e-7 * expected + 1e-30,
                    "sigmoid({x}) = {y}, expected {expected}"
                );
            }
        }
    }
}
