//! Helpers for the unit tests: libtorch's random generator, and hand-made shapes.
//!
//! libtorch has one generator per process and the test harness runs tests on parallel
//! threads, so a test that seeds it (or builds layers, whose initialisation draws from it)
//! holds [`torch_rng`] for its whole body; inputs come from [`uniform`], a local generator
//! that no other test can advance.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::{Mutex, MutexGuard};
use tch::Tensor;

static TORCH_RNG: Mutex<()> = Mutex::new(());

/// Exclusive use of libtorch's process-wide generator (a test that failed while holding it
/// does not poison the others).
pub fn torch_rng() -> MutexGuard<'static, ()> {
    TORCH_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A float tensor of `shape` with values uniform in [0, 1), the same for the same seed.
pub fn uniform(shape: &[i64], seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let count: i64 = shape.iter().product();
    let values: Vec<f32> = (0..count).map(|_| rng.random::<f32>()).collect();
    Tensor::from_slice(&values).view(shape)
}

/// A `side`² raster (row-major) of a disk of radius `r` centred on the raster: `inside` at
/// the pixels whose centre lies within it, `outside` elsewhere.
pub fn disk_raster<T: Copy>(side: usize, r: f64, inside: T, outside: T) -> Vec<T> {
    let centre = side as f64 / 2.0;
    (0..side * side)
        .map(|i| {
            let (x, y) = ((i % side) as f64 + 0.5, (i / side) as f64 + 0.5);
            if (x - centre).hypot(y - centre) < r {
                inside
            } else {
                outside
            }
        })
        .collect()
}
