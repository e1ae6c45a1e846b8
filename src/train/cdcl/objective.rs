//! The other terms of the CDCL objective (paper eqs. 1, 2, 13–15) and the schedules.

use tch::{Kind, Tensor};

/// Eq. 15: mean over pixels of the entropy of the softmax of `logits` (B×C×H×W).
pub fn entropy_loss(logits: &Tensor) -> Tensor {
    let log_p = logits.log_softmax(1, Kind::Float);
    -(log_p.exp() * &log_p)
        .sum_dim_intlist(1, false, Kind::Float)
        .mean(Kind::Float)
}

/// Eq. 14: cross-entropy of the student's `logits` against the teacher's pseudo-labels
/// (argmax of `teacher_probabilities`, B×C×H×W), over the pixels where the teacher is at
/// least `threshold` sure; 0 (with a graph) if there are none.
pub fn consistency_loss(logits: &Tensor, teacher_probabilities: &Tensor, threshold: f64) -> Tensor {
    let (confidence, pseudo_labels) = teacher_probabilities.max_dim(1, false);
    let confident = confidence.ge(threshold).to_kind(Kind::Float);
    let per_pixel = -logits
        .log_softmax(1, Kind::Float)
        .gather(1, &pseudo_labels.unsqueeze(1), false)
        .squeeze_dim(1);
    (per_pixel * &confident).sum(Kind::Float) / confident.sum(Kind::Float).clamp_min(1.0)
}

/// The consistency weight at (fractional) `epoch` of `epochs`: `w_max · exp(−5(1 − t)²)` with
/// t = epoch / epochs clipped to [0, 1] (the Gaussian ramp-up of the authors' code).
pub fn consistency_weight(w_max: f64, epoch: f64, epochs: f64) -> f64 {
    let t = (epoch / epochs.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0);
    w_max * (-5.0 * (1.0 - t).powi(2)).exp()
}

/// Poly learning-rate decay: `lr · (1 − step/steps)^0.9`.
pub fn poly_lr(lr: f64, step: usize, steps: usize) -> f64 {
    lr * (1.0 - step as f64 / steps.max(1) as f64).max(0.0).powf(0.9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_and_consistency_by_hand() {
        // Two pixels, two classes: logits (0, 0) → p = ½, entropy ln 2; (ln 3, 0) → p = ¾, ¼.
        let logits = Tensor::from_slice(&[0.0f32, 3f32.ln(), 0.0, 0.0]).view([1, 2, 1, 2]);
        let h = |p: f64| -(p * p.ln() + (1.0 - p) * (1.0 - p).ln());
        let expected = (h(0.5) + h(0.75)) / 2.0;
        assert!((f64::try_from(entropy_loss(&logits)).unwrap() - expected).abs() < 1e-6);
        // Teacher: pixel 0 sure of class 1 (0.9), pixel 1 unsure (0.6) → only pixel 0 counts,
        // whose student probability of class 1 is ½.
        let teacher = Tensor::from_slice(&[0.1f32, 0.6, 0.9, 0.4]).view([1, 2, 1, 2]);
        let loss = f64::try_from(consistency_loss(&logits, &teacher, 0.8)).unwrap();
        assert!((loss - 2f64.ln()).abs() < 1e-6);
        assert_eq!(
            f64::try_from(consistency_loss(&logits, &teacher, 0.95)).unwrap(),
            0.0
        );
    }

    #[test]
    fn ramps() {
        assert!((consistency_weight(1.0, 0.0, 10.0) - (-5f64).exp()).abs() < 1e-12);
        assert_eq!(consistency_weight(1.0, 10.0, 10.0), 1.0);
        assert_eq!(consistency_weight(1.0, 20.0, 10.0), 1.0);
        assert_eq!(poly_lr(1e-4, 0, 100), 1e-4);
        assert_eq!(poly_lr(1e-4, 100, 100), 0.0);
        assert!(poly_lr(1e-4, 50, 100) < 1e-4 * 0.55);
    }
}
