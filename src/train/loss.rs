//! Patch similarities and the intra/inter-channel contrastive loss (paper eqs. 5–9).
//!
//! Pooling follows the authors' `framework.py`: for channel c, P_c and N_c are the positive
//! and negative patches of c from *all* images of the batch; anchors r are drawn uniformly
//! with replacement from P_c (so r ∈ P_c and s(r, r) is one of the summed terms); the inter
//! term contrasts r (cut from F_c) with the positives of every other channel c' (cut from
//! F_c'). Each term is divided by anchors² and by the batch size, exactly as there.
//! Variable set sizes are handled with fixed-size tensors and boolean masks.

use tch::{Kind, Tensor};

use super::config::Similarity;

/// log₂ clamped at −100, as torch's BCE does, so saturated patches stay finite.
fn log2_clamped(t: &Tensor) -> Tensor {
    t.log2().clamp_min(-100.0)
}

/// s(a_i, b_j) for all pairs: `a` N×D, `b` M×D → N×M.
pub fn similarity_matrix(kind: Similarity, a: &Tensor, b: &Tensor) -> Tensor {
    let d = a.size()[1] as f64;
    match kind {
        // −mean((a−b)²) = −(|a|² + |b|² − 2a·b)/D: one matmul instead of N·M·D differences.
        Similarity::Mse => {
            let aa = a.square().sum_dim_intlist(1, true, Kind::Float);
            let bb = b
                .square()
                .sum_dim_intlist(1, false, Kind::Float)
                .unsqueeze(0);
            -(aa + bb - a.matmul(&b.tr()) * 2.0) / d
        }
        // mean(a·log₂b + (1−a)·log₂(1−b)) = (a·(log₂b − log₂(1−b)) + Σlog₂(1−b))/D.
        Similarity::Ce => {
            let log_b = log2_clamped(b);
            let log_not_b = log2_clamped(&(1.0 - b));
            let bias = log_not_b
                .sum_dim_intlist(1, false, Kind::Float)
                .unsqueeze(0);
            (a.matmul(&(log_b - log_not_b).tr()) + bias) / d
        }
    }
}

/// Loss of one step: `total` = Σ_c intra_c + inter_c, with the parts summed over channels.
#[derive(Debug)]
pub struct LossParts {
    pub total: Tensor,
    pub intra: Tensor,
    pub inter: Tensor,
}

/// Contrastive loss of K channels.
///
/// `patches` K×M×D attended patches pooled over the batch; `positive`, `negative` K×M bool
/// roles; `anchors` K×A indices into M, each a positive of its channel; `batch` the number
/// of images. Every channel must have at least one positive and one negative (callers skip
/// the step otherwise), or the masked log-sum-exps are −∞.
pub fn contrastive_loss(
    kind: Similarity,
    patches: &Tensor,
    positive: &Tensor,
    negative: &Tensor,
    anchors: &Tensor,
    batch: i64,
) -> LossParts {
    let (k, m, d) = (patches.size()[0], patches.size()[1], patches.size()[2]);
    let a = anchors.size()[1];
    let device = patches.device();
    let anchor_patches = patches.gather(1, &anchors.unsqueeze(-1).expand([k, a, d], false), false);
    // Similarity of every anchor (of every channel) to every patch (of every channel).
    let sim = similarity_matrix(
        kind,
        &anchor_patches.view([k * a, d]),
        &patches.view([k * m, d]),
    )
    .view([k, a, k, m]);
    let own = sim.diagonal(0, 0, 2).permute([2, 0, 1]); // K×A×M: anchors vs their own channel
    let pos = positive.unsqueeze(1); // K×1×M
    let n_pos = positive.sum_dim_intlist(1, true, Kind::Float); // K×1
                                                                // Σ_{p∈P_c} s(r, p), shared by both terms.
    let pos_sum = own
        .where_self(&pos, &own.zeros_like())
        .sum_dim_intlist(2, false, Kind::Float);
    let masked_lse = |values: &Tensor, keep: &Tensor, dims: &[i64]| {
        values
            .masked_fill(&keep.logical_not(), f64::NEG_INFINITY)
            .logsumexp(dims, false)
    };
    // −Σ_p log(exp s(r,p) / Σ_q exp s(r,q)) = |P_c|·LSE_q s(r,q) − Σ_p s(r,p), per anchor.
    let scale = (a * a * batch) as f64;
    let term =
        |lse: Tensor| (&n_pos * lse - &pos_sum).sum_dim_intlist(1, false, Kind::Float) / scale;
    let intra = term(masked_lse(&own, &negative.unsqueeze(1), &[2]));
    let inter = if k > 1 {
        let other = Tensor::eye(k, (Kind::Bool, device))
            .logical_not()
            .view([k, 1, k, 1]);
        let keep = other.logical_and(&positive.view([1, 1, k, m]));
        term(masked_lse(&sim, &keep, &[2, 3]))
    } else {
        Tensor::zeros([k], (Kind::Float, device))
    };
    let (intra, inter) = (intra.sum(Kind::Float), inter.sum(Kind::Float));
    LossParts {
        total: &intra + &inter,
        intra,
        inter,
    }
}
