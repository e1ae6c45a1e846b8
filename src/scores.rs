//! Pixel-level scores of a predicted binary segmentation mask against the ground truth.
//!
//! Masks are `u8` slices, nonzero meaning foreground. [`Confusion`] counts pixels; counts add
//! up over tiles or images (micro-averaging), while [`Scores::mean`] averages per-image scores
//! (the "mean over images" reporting).
//!
//! Where a score's denominator is empty, it is 1.0 when prediction and truth agree that the
//! set it measures is empty, and 0.0 otherwise; each method says which set that is.

use std::iter::Sum;
use std::ops::{Add, AddAssign};

/// Pixel counts of a prediction against the truth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confusion {
    /// Foreground in both.
    pub true_positive: u64,
    /// Foreground in the prediction only.
    pub false_positive: u64,
    /// Foreground in the truth only.
    pub false_negative: u64,
    /// Background in both.
    pub true_negative: u64,
}

impl Confusion {
    /// Counts the pixels of `pred` against `truth`.
    ///
    /// # Panics
    /// If the two masks differ in length.
    pub fn of(pred: &[u8], truth: &[u8]) -> Confusion {
        assert_eq!(
            pred.len(),
            truth.len(),
            "prediction and truth masks differ in size ({} vs {} pixels)",
            pred.len(),
            truth.len()
        );
        // Three branch-free sums, which vectorise, rather than four counters picked per pixel.
        let (mut both, mut predicted, mut actual) = (0u64, 0u64, 0u64);
        for (&p, &t) in pred.iter().zip(truth) {
            let (p, t) = (u64::from(p != 0), u64::from(t != 0));
            both += p & t;
            predicted += p;
            actual += t;
        }
        Confusion {
            true_positive: both,
            false_positive: predicted - both,
            false_negative: actual - both,
            true_negative: pred.len() as u64 - predicted - actual + both,
        }
    }

    /// All pixels counted.
    pub fn total(&self) -> u64 {
        self.true_positive + self.false_positive + self.false_negative + self.true_negative
    }

    /// Dice coefficient (F1), `2tp / (2tp + fp + fn)`; 1.0 when neither mask has foreground.
    pub fn dice(&self) -> f64 {
        let (tp, fp, fn_) = self.positives();
        ratio((2 * tp) as f64, 2 * tp + fp + fn_, true)
    }

    /// Intersection over union (Jaccard), `tp / (tp + fp + fn)`; 1.0 when neither mask has
    /// foreground.
    pub fn iou(&self) -> f64 {
        let (tp, fp, fn_) = self.positives();
        ratio(tp as f64, tp + fp + fn_, true)
    }

    /// Precision, `tp / (tp + fp)`. With no predicted foreground: 1.0 if the truth has none
    /// either, else 0.0.
    pub fn precision(&self) -> f64 {
        let (tp, fp, fn_) = self.positives();
        ratio(tp as f64, tp + fp, fn_ == 0)
    }

    /// Recall (sensitivity), `tp / (tp + fn)`. With no true foreground: 1.0 if the prediction
    /// has none either, else 0.0.
    pub fn recall(&self) -> f64 {
        let (tp, fp, fn_) = self.positives();
        ratio(tp as f64, tp + fn_, fp == 0)
    }

    /// Accuracy, `(tp + tn) / total`; 1.0 for an empty image.
    pub fn accuracy(&self) -> f64 {
        ratio(
            (self.true_positive + self.true_negative) as f64,
            self.total(),
            true,
        )
    }

    /// Specificity, `tn / (tn + fp)`. With no true background: 1.0 if the prediction has none
    /// either, else 0.0.
    pub fn specificity(&self) -> f64 {
        let (tn, fp) = (self.true_negative, self.false_positive);
        ratio(tn as f64, tn + fp, self.false_negative == 0)
    }

    /// Every score at once.
    pub fn scores(&self) -> Scores {
        Scores {
            dice: self.dice(),
            iou: self.iou(),
            precision: self.precision(),
            recall: self.recall(),
            accuracy: self.accuracy(),
            specificity: self.specificity(),
        }
    }

    fn positives(&self) -> (u64, u64, u64) {
        (self.true_positive, self.false_positive, self.false_negative)
    }
}

/// `num / den`, or 1.0 / 0.0 by `agree` when `den` is zero (nothing to find and nothing
/// found agrees perfectly).
pub(crate) fn ratio(num: f64, den: u64, agree: bool) -> f64 {
    if den == 0 {
        f64::from(u8::from(agree))
    } else {
        num / den as f64
    }
}

impl Add for Confusion {
    type Output = Confusion;

    fn add(mut self, other: Confusion) -> Confusion {
        self += other;
        self
    }
}

impl AddAssign for Confusion {
    fn add_assign(&mut self, other: Confusion) {
        self.true_positive += other.true_positive;
        self.false_positive += other.false_positive;
        self.false_negative += other.false_negative;
        self.true_negative += other.true_negative;
    }
}

impl Sum for Confusion {
    fn sum<I: Iterator<Item = Confusion>>(iter: I) -> Confusion {
        iter.fold(Confusion::default(), Add::add)
    }
}

/// The scores of one [`Confusion`], or their mean over several images.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scores {
    pub dice: f64,
    pub iou: f64,
    pub precision: f64,
    pub recall: f64,
    pub accuracy: f64,
    pub specificity: f64,
}

impl Scores {
    /// The arithmetic mean of each score; every field is NaN when `scores` is empty.
    pub fn mean<'a>(scores: impl IntoIterator<Item = &'a Scores>) -> Scores {
        let mut sum = [0.0; 6];
        let mut count = 0usize;
        for s in scores {
            let fields = [
                s.dice,
                s.iou,
                s.precision,
                s.recall,
                s.accuracy,
                s.specificity,
            ];
            for (total, value) in sum.iter_mut().zip(fields) {
                *total += value;
            }
            count += 1;
        }
        let [dice, iou, precision, recall, accuracy, specificity] = sum.map(|t| t / count as f64);
        Scores {
            dice,
            iou,
            precision,
            recall,
            accuracy,
            specificity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn counts_and_scores_by_hand() {
        // pred:  1 1 1 0 0 0 0 0 1 0
        // truth: 1 1 0 1 1 0 0 0 1 0   -> tp 3, fp 1, fn 2, tn 4
        let pred = [1, 9, 1, 0, 0, 0, 0, 0, 255, 0];
        let truth = [1, 1, 0, 1, 3, 0, 0, 0, 1, 0];
        let c = Confusion::of(&pred, &truth);
        assert_eq!(
            c,
            Confusion {
                true_positive: 3,
                false_positive: 1,
                false_negative: 2,
                true_negative: 4,
            }
        );
        assert_eq!(c.total(), 10);
        let s = c.scores();
        assert!(close(s.dice, 6.0 / 9.0));
        assert!(close(s.iou, 3.0 / 6.0));
        assert!(close(s.precision, 3.0 / 4.0));
        assert!(close(s.recall, 3.0 / 5.0));
        assert!(close(s.accuracy, 7.0 / 10.0));
        assert!(close(s.specificity, 4.0 / 5.0));
        // Dice = 2 IoU / (1 + IoU).
        assert!(close(s.dice, 2.0 * s.iou / (1.0 + s.iou)));
    }

    #[test]
    fn empty_denominators() {
        let all = |v: f64| Scores {
            dice: v,
            iou: v,
            precision: v,
            recall: v,
            accuracy: v,
            specificity: v,
        };
        // Nothing at all.
        assert_eq!(Confusion::default().scores(), all(1.0));
        // Both all background: perfect, specificity 1.
        assert_eq!(Confusion::of(&[0; 4], &[0; 4]).scores(), all(1.0));
        // Both all foreground: perfect, specificity has no negatives on either side.
        assert_eq!(Confusion::of(&[1; 4], &[5; 4]).scores(), all(1.0));

        // Empty prediction, truth with foreground: precision undefined, counted as 0.
        let missed = Confusion::of(&[0, 0, 0, 0], &[1, 0, 0, 0]).scores();
        assert_eq!(
            missed,
            Scores {
                dice: 0.0,
                iou: 0.0,
                precision: 0.0,
                recall: 0.0,
                accuracy: 0.75,
                specificity: 1.0,
            }
        );
        // Foreground predicted where the truth has none: recall undefined, counted as 0.
        let spurious = Confusion::of(&[1, 0, 0, 0], &[0, 0, 0, 0]).scores();
        assert_eq!(
            spurious,
            Scores {
                dice: 0.0,
                iou: 0.0,
                precision: 0.0,
                recall: 0.0,
                accuracy: 0.75,
                specificity: 0.75,
            }
        );
        // Truth all foreground but prediction has background: specificity counted as 0.
        let s = Confusion::of(&[1, 0], &[1, 1]).scores();
        assert_eq!(s.specificity, 0.0);
        assert!(close(s.recall, 0.5));
    }

    #[test]
    fn addition_sums_counts() {
        let a = Confusion::of(&[1, 1, 0], &[1, 0, 0]);
        let b = Confusion::of(&[0, 1], &[1, 1]);
        let whole = Confusion::of(&[1, 1, 0, 0, 1], &[1, 0, 0, 1, 1]);
        assert_eq!(a + b, whole);
        let mut c = a;
        c += b;
        assert_eq!(c, whole);
        assert_eq!([a, b].into_iter().sum::<Confusion>(), whole);
    }

    #[test]
    fn mean_is_per_field() {
        let a = Confusion::of(&[1, 1, 0, 0], &[1, 0, 0, 0]).scores();
        let b = Confusion::of(&[1, 1, 0, 0], &[1, 1, 0, 0]).scores();
        let m = Scores::mean([&a, &b]);
        assert!(close(m.dice, (2.0 / 3.0 + 1.0) / 2.0));
        assert!(close(m.iou, 0.75));
        assert!(close(m.precision, 0.75));
        assert!(close(m.recall, 1.0));
        assert!(close(m.accuracy, 0.875));
        assert!(close(m.specificity, (2.0 / 3.0 + 1.0) / 2.0));
        assert_eq!(Scores::mean(std::iter::once(&a)), a);
        assert!(Scores::mean(&[]).dice.is_nan());
    }

    #[test]
    #[should_panic(expected = "differ in size")]
    fn mismatched_lengths_panic() {
        Confusion::of(&[0; 3], &[0; 4]);
    }
}
