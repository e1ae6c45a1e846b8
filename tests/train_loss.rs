//! Similarities, the contrastive loss on a hand-sized case, and patch gathering.

mod common;

use slidestream::train::{
    attended_patches, contrastive_loss, similarity_matrix, CandidateGrid, Similarity,
};
use tch::{Kind, Tensor};

fn t(values: &[f32], shape: &[i64]) -> Tensor {
    Tensor::from_slice(values).view(shape)
}

fn mse(a: &[f64], b: &[f64]) -> f64 {
    -a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len() as f64
}

fn ce(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x * y.log2() + (1.0 - x) * (1.0 - y).log2())
        .sum::<f64>()
        / a.len() as f64
}

fn rows(x: &Tensor) -> Vec<Vec<f64>> {
    Vec::<Vec<f64>>::try_from(x.to_kind(Kind::Double)).unwrap()
}

#[test]
fn similarity_matrices_match_their_definitions() {
    let a = common::uniform(&[3, 5], 1) * 0.9 + 0.05;
    let b = common::uniform(&[4, 5], 2) * 0.9 + 0.05;
    let (ra, rb) = (rows(&a), rows(&b));
    for (kind, f) in [
        (Similarity::Mse, mse as fn(&[f64], &[f64]) -> f64),
        (Similarity::Ce, ce),
    ] {
        let s = rows(&similarity_matrix(kind, &a, &b));
        for i in 0..3 {
            for j in 0..4 {
                assert!(
                    (s[i][j] - f(&ra[i], &rb[j])).abs() < 1e-5,
                    "{kind:?} {i},{j}"
                );
            }
        }
    }
}

/// K=2 channels, M=3 patches each of D=2 values, 2 anchors, batch of 2: every term of
/// eqs. 5–6 as in the authors' code, evaluated directly.
#[test]
fn loss_matches_direct_evaluation() {
    let patches = [
        [[0.1, 0.2], [0.8, 0.9], [0.15, 0.25]], // channel 0
        [[0.5, 0.4], [0.45, 0.5], [0.9, 0.1]],  // channel 1
    ];
    let positive = [[true, false, true], [true, true, false]];
    let anchors = [[2usize, 0], [1, 1]];
    let batch = 2.0;
    let flat: Vec<f32> = patches
        .iter()
        .flatten()
        .flatten()
        .map(|&v| v as f32)
        .collect();
    let pos_t = Tensor::from_slice(&positive.concat()).view([2, 3]);
    let neg_t = pos_t.logical_not();
    let anchors_t = Tensor::from_slice(
        &anchors
            .concat()
            .iter()
            .map(|&a| a as i64)
            .collect::<Vec<_>>(),
    )
    .view([2, 2]);

    for (kind, s) in [
        (Similarity::Mse, mse as fn(&[f64], &[f64]) -> f64),
        (Similarity::Ce, ce),
    ] {
        let parts = contrastive_loss(kind, &t(&flat, &[2, 3, 2]), &pos_t, &neg_t, &anchors_t, 2);
        let (mut intra, mut inter) = (0.0, 0.0);
        for c in 0..2 {
            let other = 1 - c;
            for &r in &anchors[c] {
                let anchor = &patches[c][r];
                let ps: Vec<_> = (0..3).filter(|&m| positive[c][m]).collect();
                let neg_sum: f64 = (0..3)
                    .filter(|&m| !positive[c][m])
                    .map(|m| s(anchor, &patches[c][m]).exp())
                    .sum();
                let other_sum: f64 = (0..3)
                    .filter(|&m| positive[other][m])
                    .map(|m| s(anchor, &patches[other][m]).exp())
                    .sum();
                for &p in &ps {
                    let sp = s(anchor, &patches[c][p]).exp();
                    intra -= (sp / neg_sum).ln() / 4.0 / batch;
                    inter -= (sp / other_sum).ln() / 4.0 / batch;
                }
            }
        }
        let got = |x: &Tensor| f64::try_from(x).unwrap();
        assert!(
            (got(&parts.intra) - intra).abs() < 1e-5,
            "{kind:?} intra {} vs {intra}",
            got(&parts.intra)
        );
        assert!(
            (got(&parts.inter) - inter).abs() < 1e-5,
            "{kind:?} inter {} vs {inter}",
            got(&parts.inter)
        );
        assert!((got(&parts.total) - intra - inter).abs() < 1e-5);
    }
}

#[test]
fn loss_has_gradients_only_through_used_patches() {
    let patches = common::uniform(&[2, 4, 3], 3).set_requires_grad(true);
    let positive =
        Tensor::from_slice(&[true, true, false, false, true, false, true, false]).view([2, 4]);
    // Patch 3 of channel 1 is neither positive nor negative here.
    let negative =
        Tensor::from_slice(&[false, false, true, true, false, true, false, false]).view([2, 4]);
    let anchors = Tensor::from_slice(&[0i64, 1, 2, 0]).view([2, 2]);
    let parts = contrastive_loss(Similarity::Mse, &patches, &positive, &negative, &anchors, 1);
    parts.total.backward();
    let grad = patches.grad();
    assert!(bool::try_from(grad.isfinite().all()).unwrap());
    assert_eq!(
        f64::try_from(grad.get(1).get(3).abs().sum(Kind::Float)).unwrap(),
        0.0
    );
}

#[test]
fn attended_patches_cut_the_right_windows() {
    let (b, k, h, w) = (2, 3, 20, 24);
    let image = common::uniform(&[b, 3, h, w], 4);
    let conf = common::uniform(&[b, k, h, w], 5);
    let grid = CandidateGrid::new(h, w, 6, 4).unwrap();
    assert_eq!((grid.rows, grid.cols), (4, 5));
    let index = (common::uniform(&[b, k, 4], 6) * grid.len() as f64)
        .floor()
        .to_kind(Kind::Int64);
    let got = attended_patches(&image, &conf, &grid, &index);
    assert_eq!(got.size(), [k, b * 4, 3 * 36]);
    for bi in 0..b {
        for ki in 0..k {
            for si in 0..4 {
                let l = index.int64_value(&[bi, ki, si]);
                let (y, x) = ((l / grid.cols) * 4, (l % grid.cols) * 4);
                let expected = (image.get(bi) * conf.get(bi).get(ki))
                    .narrow(1, y, 6)
                    .narrow(2, x, 6)
                    .reshape([-1]);
                assert_eq!(got.get(ki).get(bi * 4 + si), expected);
            }
        }
    }
}
