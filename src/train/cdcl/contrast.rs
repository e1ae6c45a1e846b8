//! Cross-patch dense contrastive loss (paper 3.1, eqs. 5–12).
//!
//! Projected feature maps are cut into a G×G grid of patches. A patch's foreground score FS
//! is the share of its pixels whose pseudo-label is nucleus; FS ≥ `fdp` makes it
//! foreground-dominated (FDP), FS ≤ `bdp` background-dominated (BDP), anything between mixed.
//! Every pixel of a student FDP/BDP patch is a query: its positive is the teacher's pixel at
//! the same position, its negatives every pixel of the opposite kind of patch in the feature
//! bank, except those with the same pseudo-label (false negatives). InfoNCE with cosine
//! similarity at temperature τ, averaged over the pixels of FDP/BDP patches (all patches have
//! the same number of pixels, so this is eq. 11's mean over patches of eq. 10's per-patch
//! mean).
//!
//! The bank holds the teacher's (detached) patch features of the current and the previous
//! batch, as the paper's memory-saving setting does; the authors also bank the student's
//! features with gradients, which needs gradient checkpointing and buys little here.

use tch::{Kind, Tensor};

/// Kind of patch, by foreground score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum PatchKind {
    Background = -1,
    Mixed = 0,
    Foreground = 1,
}

/// Pixels flattened patch by patch: `features` N×D (L2-normalised), `labels` N (0/1 pseudo-
/// labels), `kinds` N (the [`PatchKind`] of each pixel's patch, as i64).
#[derive(Debug)]
pub struct Queries {
    pub features: Tensor,
    pub labels: Tensor,
    pub kinds: Tensor,
}

/// Cuts `features` (B×D×h×w, h and w multiples of `grid`) and their pseudo-labels (B×h×w,
/// 0/1) into a `grid`×`grid` patch grid per image and classifies the patches. Pixels come
/// out patch by patch (image, patch row, patch column, then pixels in the patch).
pub fn classify_patches(
    features: &Tensor,
    labels: &Tensor,
    grid: i64,
    fdp: f64,
    bdp: f64,
) -> Queries {
    let (b, d, h, w) = features.size4().expect("B×D×h×w features");
    let (ph, pw) = (h / grid, w / grid);
    assert!(
        ph * grid == h && pw * grid == w,
        "feature map {h}×{w} is not a multiple of the {grid}×{grid} grid"
    );
    let features = features
        .view([b, d, grid, ph, grid, pw])
        .permute([0, 2, 4, 3, 5, 1])
        .reshape([-1, d]);
    let labels = labels
        .view([b, grid, ph, grid, pw])
        .permute([0, 1, 3, 2, 4])
        .reshape([-1]);
    let per_patch = labels.view([-1, ph * pw]).to_kind(Kind::Float);
    let score = per_patch.mean_dim(1, false, Kind::Float);
    let kind = score.ge(fdp).to_kind(Kind::Int64) - score.le(bdp).to_kind(Kind::Int64);
    Queries {
        features,
        labels,
        kinds: kind.repeat_interleave_self_int(ph * pw, 0, None),
    }
}

/// The teacher's patch features of the last two batches.
#[derive(Debug, Default)]
pub struct FeatureBank {
    previous: Option<Queries>,
    current: Option<Queries>,
}

impl FeatureBank {
    /// Pushes a batch (detached); the one before the previous is dropped.
    pub fn push(&mut self, batch: Queries) {
        let detached = Queries {
            features: batch.features.detach(),
            labels: batch.labels,
            kinds: batch.kinds,
        };
        self.previous = self.current.replace(detached);
    }

    /// All banked pixels as one [`Queries`].
    pub fn contents(&self) -> Option<Queries> {
        let parts: Vec<&Queries> = [&self.previous, &self.current]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| {
            let cat = |f: fn(&Queries) -> &Tensor| {
                Tensor::cat(&parts.iter().map(|q| f(q)).collect::<Vec<_>>(), 0)
            };
            Queries {
                features: cat(|q| &q.features),
                labels: cat(|q| &q.labels),
                kinds: cat(|q| &q.kinds),
            }
        })
    }
}

/// Eq. 7–12: `student` are the queries (with gradients), `positives` N×D the teacher's
/// features at the same pixels, `bank` the negatives' pool. 0 (with a graph) when no pixel
/// lies in an FDP or BDP patch.
///
/// FDP queries only meet BDP bank pixels and vice versa, so each group is scored against its
/// own slice of the bank: half the similarity matrix at most, none of it for mixed patches.
pub fn dense_contrastive_loss(
    student: &Queries,
    positives: &Tensor,
    bank: &Queries,
    temperature: f64,
) -> Tensor {
    let per_pixel: Vec<Tensor> = [PatchKind::Foreground, PatchKind::Background]
        .into_iter()
        .filter_map(|kind| {
            let rows = student.kinds.eq(kind as i64).nonzero().squeeze_dim(1);
            (rows.numel() > 0).then(|| {
                let opposite = bank.kinds.eq(-(kind as i64)).nonzero().squeeze_dim(1);
                let q = student.features.index_select(0, &rows);
                let positive =
                    (&q * positives.index_select(0, &rows)).sum_dim_intlist(1, true, Kind::Float)
                        / temperature;
                let negative =
                    q.mm(&bank.features.index_select(0, &opposite).transpose(0, 1)) / temperature;
                // A bank pixel with the query's own pseudo-label is a false negative.
                let same_label = student
                    .labels
                    .index_select(0, &rows)
                    .unsqueeze(1)
                    .eq_tensor(&bank.labels.index_select(0, &opposite).unsqueeze(0));
                let logits = Tensor::cat(
                    &[
                        &positive,
                        &negative.masked_fill(&same_label, f64::NEG_INFINITY),
                    ],
                    1,
                );
                logits.logsumexp([1], false) - positive.squeeze_dim(1)
            })
        })
        .collect();
    if per_pixel.is_empty() {
        return student.features.sum(Kind::Float) * 0.0;
    }
    Tensor::cat(&per_pixel, 0).mean(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t(values: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(values).view(shape)
    }

    #[test]
    fn patches_are_classified_by_foreground_score() {
        // One image, 4×4 pseudo-labels, 2×2 grid: patch scores 1, 0.75, 0.25, 0.5.
        let labels = t(
            &[
                1., 1., 1., 0., 1., 1., 1., 1., 0., 0., 1., 0., 1., 0., 0., 1.,
            ],
            &[1, 4, 4],
        )
        .to_kind(Kind::Int64);
        let features = Tensor::arange(16, (Kind::Float, Device::Cpu)).view([1, 1, 4, 4]);
        let q = classify_patches(&features, &labels, 2, 0.7, 0.3);
        let kinds = Vec::<i64>::try_from(&q.kinds).unwrap();
        assert_eq!(kinds, [[1; 4], [1; 4], [-1; 4], [0; 4]].concat());
        // Pixels are grouped patch by patch: the top-right patch holds pixels 2, 3, 6, 7.
        let order = Vec::<f32>::try_from(q.features.view([-1])).unwrap();
        assert_eq!(order[4..8], [2., 3., 6., 7.]);
    }

    #[test]
    fn bank_keeps_the_last_two_batches() {
        let batch = |v: i64| Queries {
            features: Tensor::full([1, 2], v as f64, (Kind::Float, Device::Cpu)),
            labels: Tensor::from_slice(&[v]),
            kinds: Tensor::from_slice(&[1i64]),
        };
        let mut bank = FeatureBank::default();
        assert!(bank.contents().is_none());
        for v in 1..=3 {
            bank.push(batch(v));
        }
        assert_eq!(
            Vec::<i64>::try_from(&bank.contents().unwrap().labels).unwrap(),
            [2, 3]
        );
    }

    /// Two query pixels against a bank of four, by hand:
    /// q0 (FDP, label 1) = (1,0), positive (0.6,0.8): negatives are bank pixels in BDPs with
    /// label 0 → only b0 = (0,1) (b1 is a BDP pixel labeled 1: a false negative; b2 is in an
    /// FDP; b3 in a mixed patch). loss0 = −log(e^{0.6/τ} / (e^{0.6/τ} + e^{0/τ})).
    /// q1 (BDP, label 0) = (0,1), positive (0,1): negatives are FDP pixels labeled 1 → b2 =
    /// (1,0). loss1 = −log(e^{1/τ} / (e^{1/τ} + e^{0})).
    #[test]
    fn loss_matches_a_hand_computed_case() {
        let tau = 0.5;
        let student = Queries {
            features: t(&[1., 0., 0., 1.], &[2, 2]),
            labels: Tensor::from_slice(&[1i64, 0]),
            kinds: Tensor::from_slice(&[1i64, -1]),
        };
        let positives = t(&[0.6, 0.8, 0., 1.], &[2, 2]);
        let bank = Queries {
            features: t(&[0., 1., 1., 0., 1., 0., 0.6, 0.8], &[4, 2]),
            labels: Tensor::from_slice(&[0i64, 1, 1, 0]),
            kinds: Tensor::from_slice(&[-1i64, -1, 1, 0]),
        };
        let loss = f64::try_from(dense_contrastive_loss(&student, &positives, &bank, tau)).unwrap();
        let info_nce = |pos: f64, negs: &[f64]| {
            let denominator: f64 =
                (pos / tau).exp() + negs.iter().map(|n| (n / tau).exp()).sum::<f64>();
            -((pos / tau).exp() / denominator).ln()
        };
        let expected = (info_nce(0.6, &[0.0]) + info_nce(1.0, &[0.0])) / 2.0;
        assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
    }

    #[test]
    fn mixed_patches_give_no_queries_and_a_zero_loss() {
        let student = Queries {
            features: Tensor::ones([3, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true),
            labels: Tensor::from_slice(&[1i64, 0, 1]),
            kinds: Tensor::zeros([3], (Kind::Int64, Device::Cpu)),
        };
        let loss = dense_contrastive_loss(&student, &student.features.detach(), &student, 0.1);
        assert_eq!(f64::try_from(&loss).unwrap(), 0.0);
        loss.backward();
    }
}
