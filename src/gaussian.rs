//! Gaussian smoothing of a float map on the host, separable and vectorised: the watershed
//! smooths its distance map with it, the stain re-cut its hematoxylin density.
//!
//! Every output pixel sums its kernel's taps in the same order, so a pixel whose taps all
//! lie inside the map gets the same value whatever rectangle of a larger map it is
//! smoothed in: tiles that carry [`gaussian_radius`] of context agree with the whole.

/// How far the kernel of `sigma` px reaches: `⌊4σ + 0.5⌋` px, as `skimage.filters.gaussian`
/// truncates it.
pub fn gaussian_radius(sigma: f32) -> usize {
    (4.0 * f64::from(sigma) + 0.5) as usize
}

/// `values` (row-major `width`×`height`) convolved with a Gaussian of `sigma` px, as
/// `skimage.filters.gaussian(values, sigma)`: separable, kernel truncated at
/// `⌊4σ + 0.5⌋` px, pixels beyond the border repeat the nearest one. `sigma` 0 returns
/// `values` unchanged.
///
/// # Panics
/// If `values.len()` is not `width * height` or `sigma` is negative.
pub fn gaussian_smooth(values: &[f32], width: usize, height: usize, sigma: f32) -> Vec<f32> {
    assert_eq!(
        values.len(),
        width * height,
        "values are not {width}×{height}"
    );
    assert!(sigma >= 0.0, "σ = {sigma} is negative");
    if sigma == 0.0 || values.is_empty() {
        return values.to_vec();
    }
    let radius = gaussian_radius(sigma);
    let raw: Vec<f64> = (0..=2 * radius)
        .map(|i| {
            let x = i as f64 - radius as f64;
            (-x * x / (2.0 * f64::from(sigma) * f64::from(sigma))).exp()
        })
        .collect();
    let total: f64 = raw.iter().sum();
    let kernel: Vec<f32> = raw.iter().map(|w| (w / total) as f32).collect();

    // Along columns: each output row is a weighted sum of whole input rows.
    let mut across = vec![0f32; values.len()];
    for y in 0..height {
        let out = &mut across[y * width..(y + 1) * width];
        for (k, &w) in kernel.iter().enumerate() {
            let source = (y + k).saturating_sub(radius).min(height - 1);
            let input = &values[source * width..(source + 1) * width];
            for (o, &v) in out.iter_mut().zip(input) {
                *o += w * v;
            }
        }
    }
    // Along rows: through a padded copy of the row so the inner loop has no clamping.
    let mut out = vec![0f32; values.len()];
    let mut padded = vec![0f32; width + 2 * radius];
    for y in 0..height {
        let row = &across[y * width..(y + 1) * width];
        padded[..radius].fill(row[0]);
        padded[radius..radius + width].copy_from_slice(row);
        padded[radius + width..].fill(row[width - 1]);
        let out_row = &mut out[y * width..(y + 1) * width];
        for (k, &w) in kernel.iter().enumerate() {
            for (o, &v) in out_row.iter_mut().zip(&padded[k..k + width]) {
                *o += w * v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn gaussian_smoothing_matches_a_direct_convolution() {
        let (w, h) = (23, 11);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let v: Vec<f32> = (0..w * h).map(|_| rng.random_range(0.0..10.0)).collect();
        let sigma = 1.3f32;
        let radius = (4.0 * sigma + 0.5) as i64;
        let weight = |d: i64| (-(d * d) as f64 / (2.0 * f64::from(sigma).powi(2))).exp();
        let norm: f64 = (-radius..=radius).map(weight).sum();
        let smooth = gaussian_smooth(&v, w, h, sigma);
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                let mut total = 0.0;
                for dy in -radius..=radius {
                    for dx in -radius..=radius {
                        let sy = (y + dy).clamp(0, h as i64 - 1) as usize;
                        let sx = (x + dx).clamp(0, w as i64 - 1) as usize;
                        total += weight(dx) * weight(dy) * f64::from(v[sy * w + sx]);
                    }
                }
                let want = total / (norm * norm);
                let got = f64::from(smooth[y as usize * w + x as usize]);
                assert!((got - want).abs() < 1e-4, "({x}, {y}): {got} vs {want}");
            }
        }
        assert_eq!(gaussian_smooth(&v, w, h, 0.0), v);
        assert!(gaussian_smooth(&[2.5; 12], 4, 3, 2.0)
            .iter()
            .all(|&s| (s - 2.5).abs() < 1e-5));
    }
}
