//! Samplers: the entropy rule of section 2.3 and the appendix-B alternatives.

mod common;

use slidestream::train::{bernoulli_entropy_bits, sample_patches, CandidateGrid, SamplerKind};
use tch::{Device, Kind, Tensor};

/// A 1×1×8×8 map whose four non-overlapping 4×4 windows have constant confidences `c`.
fn blocks(c: [f32; 4], batch: i64) -> Tensor {
    let quad = Tensor::from_slice(&c).view([1, 1, 2, 2]);
    quad.repeat_interleave_self_int(4, Some(2), None)
        .repeat_interleave_self_int(4, Some(3), None)
        .repeat([batch, 1, 1, 1])
}

fn entropy(c: f64) -> f64 {
    -(c * c.log2() + (1.0 - c) * (1.0 - c).log2())
}

#[test]
fn entropy_is_in_bits() {
    let h = bernoulli_entropy_bits(&Tensor::from_slice(&[0.5f32, 0.0, 1.0, 0.1]));
    let h = Vec::<f64>::try_from(h.to_kind(Kind::Double)).unwrap();
    assert!((h[0] - 1.0).abs() < 1e-6);
    assert_eq!(&h[1..3], &[0.0, 0.0]);
    assert!((h[3] - entropy(0.1)).abs() < 1e-6);
}

#[test]
fn entropy_sampler_follows_the_rule() {
    let _rng = common::torch_rng();
    tch::manual_seed(42);
    let c = [0.5f32, 0.9, 0.98, 0.2];
    let batch = 4000;
    let grid = CandidateGrid::new(8, 8, 4, 4).unwrap();
    let sample = sample_patches(SamplerKind::Entropy, &grid, &blocks(c, batch), 5, 0).unwrap();
    let index = sample.index.view([-1]);
    let positive = sample.positive.view([-1]);
    assert_eq!(sample.negative.view([-1]), positive.logical_not());
    let weights: Vec<f64> = c
        .iter()
        .map(|&c| (1.0 - entropy(c as f64)).max(0.001))
        .collect();
    let total: f64 = weights.iter().sum();
    let draws = index.size()[0] as f64;
    for (l, (&w, &cl)) in weights.iter().zip(&c).enumerate() {
        let hit = index.eq(l as i64);
        let count = f64::try_from(hit.sum(Kind::Float)).unwrap();
        let p = w / total;
        // 5 standard deviations of a binomial proportion.
        let tol = 5.0 * (p * (1.0 - p) / draws).sqrt() + 1e-3;
        assert!(
            (count / draws - p).abs() < tol,
            "candidate {l}: {} vs {p}",
            count / draws
        );
        if count > 500.0 {
            let pos = f64::try_from(positive.logical_and(&hit).sum(Kind::Float)).unwrap() / count;
            // Roles are drawn once per candidate and image: count images, not draws.
            let images = (count / 5.0).min(batch as f64);
            let tol = 5.0 * (cl as f64 * (1.0 - cl as f64) / images).sqrt() + 0.02;
            assert!(
                (pos - cl as f64).abs() < tol,
                "candidate {l}: positive rate {pos} vs {cl}"
            );
        }
    }
}

#[test]
fn confidence_sampler_draws_positives_by_confidence() {
    let _rng = common::torch_rng();
    tch::manual_seed(7);
    let c = [0.1f32, 0.2, 0.3, 0.4];
    let grid = CandidateGrid::new(8, 8, 4, 4).unwrap();
    let sample = sample_patches(SamplerKind::Confidence, &grid, &blocks(c, 2000), 10, 0).unwrap();
    assert_eq!(sample.index.size(), [2000, 1, 20]);
    let pos = sample.index.masked_select(&sample.positive);
    let neg = sample.index.masked_select(&sample.negative);
    for (l, &cl) in c.iter().enumerate() {
        let p = cl as f64; // the confidences sum to 1
        let q = (1.0 - p) / 3.0;
        let fp = f64::try_from(pos.eq(l as i64).to_kind(Kind::Float).mean(Kind::Float)).unwrap();
        let fq = f64::try_from(neg.eq(l as i64).to_kind(Kind::Float).mean(Kind::Float)).unwrap();
        assert!((fp - p).abs() < 0.01, "positive {l}: {fp} vs {p}");
        assert!((fq - q).abs() < 0.01, "negative {l}: {fq} vs {q}");
    }
}

#[test]
fn topk_sampler_splits_by_rank() {
    let _rng = common::torch_rng();
    tch::manual_seed(9);
    let grid = CandidateGrid::new(8, 8, 4, 4).unwrap();
    let conf = blocks([0.9, 0.1, 0.8, 0.2], 50);
    let sample = sample_patches(SamplerKind::Topk, &grid, &conf, 10, 2).unwrap();
    let pos = sample.index.masked_select(&sample.positive);
    let neg = sample.index.masked_select(&sample.negative);
    assert!(bool::try_from(pos.eq(0).logical_or(&pos.eq(2)).all()).unwrap());
    assert!(bool::try_from(neg.eq(1).logical_or(&neg.eq(3)).all()).unwrap());
    assert!(sample_patches(SamplerKind::Topk, &grid, &conf, 10, 4).is_err());
}

#[test]
fn candidate_grid_counts_windows_like_avg_pool() {
    let grid = CandidateGrid::new(300, 300, 50, 20).unwrap();
    assert_eq!((grid.rows, grid.cols, grid.len()), (13, 13, 169));
    let means = grid.window_means(&Tensor::ones([2, 4, 300, 300], (Kind::Float, Device::Cpu)));
    assert_eq!(means.size(), [2, 4, 169]);
    assert!(CandidateGrid::new(40, 40, 50, 20).is_err());
}
