//! Counter-based randomness and hashed-lattice noise.
//!
//! Every random value is a pure function of a key and integer coordinates, never of how many
//! values were drawn before; that is what lets any pixel render identically whichever region,
//! band or thread asks for it.

use std::ops::{Add, Mul, Sub};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const ODD: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// splitmix64's finaliser: a bijective mix in which every input bit reaches every output bit.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Key of an independent stream, one per purpose (`salt`) and slide (`seed`).
pub(crate) fn stream_key(seed: u64, salt: u64) -> u64 {
    mix64(seed ^ mix64(salt.wrapping_mul(GOLDEN)))
}

/// Hash of a 2-D integer coordinate within one stream.
#[inline]
pub(crate) fn hash2(key: u64, a: i64, b: i64) -> u64 {
    mix64(key ^ (a as u64).wrapping_mul(GOLDEN) ^ (b as u64).wrapping_mul(ODD).rotate_left(32))
}

/// Uniform in [0, 1) from the top 24 bits (exact in f32).
#[inline]
pub(crate) fn unit(h: u64) -> f32 {
    (h >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// The `k`-th of several independent uniforms drawn from one coordinate hash.
#[inline]
pub(crate) fn nth_unit(h: u64, k: u64) -> f32 {
    unit(mix64(h ^ k.wrapping_mul(GOLDEN)))
}

#[inline]
pub(crate) fn lerp<T>(a: T, b: T, t: T) -> T
where
    T: Copy + Add<Output = T> + Sub<Output = T> + Mul<Output = T>,
{
    a + (b - a) * t
}

/// `x.floor()` as an integer without a libm call (baseline x86-64 has no rounding
/// instruction, and this sits in the per-pixel paths). Exact for |x| < 2^52.
#[inline]
pub(crate) fn floor(x: f64) -> i64 {
    let i = x as i64;
    i - i64::from((i as f64) > x)
}

#[inline]
pub(crate) fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Unit gradients at 16 evenly spaced angles, none axis-aligned (avoids visible grid lines).
const GRADIENTS: [(f64, f64); 16] = [
    (0.980_785, 0.195_090),
    (0.831_470, 0.555_570),
    (0.555_570, 0.831_470),
    (0.195_090, 0.980_785),
    (-0.195_090, 0.980_785),
    (-0.555_570, 0.831_470),
    (-0.831_470, 0.555_570),
    (-0.980_785, 0.195_090),
    (-0.980_785, -0.195_090),
    (-0.831_470, -0.555_570),
    (-0.555_570, -0.831_470),
    (-0.195_090, -0.980_785),
    (0.195_090, -0.980_785),
    (0.555_570, -0.831_470),
    (0.831_470, -0.555_570),
    (0.980_785, -0.195_090),
];

/// 2-D Perlin gradient noise with hashed gradients, roughly in [-1, 1].
///
/// Gradient rather than value noise: its gradient does not vanish at lattice points, so
/// contour lines of it (tissue edges, fibres) show no lattice-aligned kinks.
pub(crate) fn gradient_noise(key: u64, x: f64, y: f64) -> f64 {
    let (ix, iy) = (floor(x), floor(y));
    let (fx, fy) = (x - ix as f64, y - iy as f64);
    let corner = |dx: i64, dy: i64| {
        let (gx, gy) = GRADIENTS[(hash2(key, ix + dx, iy + dy) >> 60) as usize];
        gx * (fx - dx as f64) + gy * (fy - dy as f64)
    };
    let quintic = |t: f64| t * t * t * (t * (t * 6.0 - 15.0) + 10.0);
    let (u, v) = (quintic(fx), quintic(fy));
    let top = lerp(corner(0, 0), corner(1, 0), u);
    let bottom = lerp(corner(0, 1), corner(1, 1), u);
    // Unit-gradient 2-D Perlin noise stays within about ±0.71.
    lerp(top, bottom, v) * 1.4
}

/// Fractal sum of `octaves` gradient-noise layers, each twice the frequency and half the
/// amplitude of the last, normalised to roughly [-1, 1].
pub(crate) fn fbm(key: u64, x: f64, y: f64, octaves: u32) -> f64 {
    let (mut sum, mut norm, mut amp, mut freq) = (0.0, 0.0, 1.0, 1.0);
    for octave in 0..octaves {
        let k = mix64(key ^ u64::from(octave).wrapping_mul(GOLDEN));
        // Shift each octave so their lattices (where Perlin noise is zero) do not coincide.
        let shift = f64::from(octave) * 0.618;
        sum += amp * gradient_noise(k, x * freq + shift, y * freq + shift);
        norm += amp;
        amp *= 0.5;
        freq *= 2.0;
    }
    sum / norm
}

/// Smooth value noise in [0, 1) on the integer lattice; cheap enough for per-pixel texture.
#[inline]
pub(crate) fn value_noise(key: u64, x: f32, y: f32) -> f32 {
    let (ix, iy) = (floor(f64::from(x)), floor(f64::from(y)));
    let corner = |dx: i64, dy: i64| unit(hash2(key, ix + dx, iy + dy));
    let cubic = |t: f32| t * t * (3.0 - 2.0 * t);
    let (u, v) = (cubic(x - ix as f32), cubic(y - iy as f32));
    let top = lerp(corner(0, 0), corner(1, 0), u);
    let bottom = lerp(corner(0, 1), corner(1, 1), u);
    lerp(top, bottom, v)
}
