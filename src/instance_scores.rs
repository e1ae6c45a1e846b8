//! Object-level scores of a predicted instance label map against the true one: AJI,
//! object F1 (with precision and recall) and panoptic quality, and why the unmatched
//! objects missed ([`misses`]).
//!
//! Label maps are row-major `u32` slices of one image, `0` = background and every other
//! value one object (ids need not be contiguous; an object need not be connected). All
//! scores come from one sparse contingency table ([`Contingency`]) built in a single pass
//! over the pixels, so a 1000×1000 image with ~500 objects takes a few milliseconds.
//!
//! * **AJI**, aggregated Jaccard index (Kumar et al. 2017, IEEE TMI): every true object
//!   `G_i` is paired with the predicted object `S_j` of highest IoU among those it overlaps
//!   (ties: the lowest predicted id); `C = Σ |G_i ∩ S_j|`, `U = Σ |G_i ∪ S_j|`, plus the
//!   area of every true object that overlaps nothing and of every predicted object paired
//!   with no true object; AJI = `C / U`. Convention: **the original one**, not AJI+ —
//!   a predicted object paired with several true objects (a merge) enters `U` once per
//!   pairing, with its whole area each time. This is the definition of the paper and of
//!   the MoNuSeg challenge and HoVer-Net's `get_fast_aji`.
//! * **Object F1**: a true and a predicted object match when their IoU is > 0.5; such
//!   matches are one-to-one by construction (each object has at most one partner above
//!   0.5), so no assignment step is needed. TP = matches, FP = unmatched predicted
//!   objects, FN = unmatched true objects; precision `TP / (TP + FP)`, recall
//!   `TP / (TP + FN)`, F1 `2TP / (2TP + FP + FN)`.
//! * **PQ** = SQ × RQ (Kirillov et al. 2019, panoptic segmentation) with the same
//!   matches: SQ = mean IoU of the matches, RQ = `TP / (TP + FP/2 + FN/2)` (equal to the
//!   object F1), PQ = `Σ IoU(matches) / (TP + FP/2 + FN/2)`.
//!
//! Empty cases follow [`crate::scores`]: where a denominator is empty the score is 1.0
//! when truth and prediction agree that the set it measures is empty, else 0.0. So with no
//! objects in either map every score is 1.0; with objects in only one of them AJI, F1, PQ,
//! SQ, RQ, precision and recall are all 0.0.

pub mod misses;

use crate::scores::ratio;
pub use misses::MissCauses;
use std::collections::HashMap;

/// Object scores of one image, or (from [`InstanceScores::mean`]) their mean over images.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InstanceScores {
    /// Aggregated Jaccard index (original convention, see the module docs).
    pub aji: f64,
    /// Object F1 at IoU > 0.5 (equals `rq`).
    pub f1: f64,
    /// Matched predicted objects / predicted objects.
    pub precision: f64,
    /// Matched true objects / true objects.
    pub recall: f64,
    /// Panoptic quality, `sq * rq`.
    pub pq: f64,
    /// Segmentation quality: mean IoU of the matched pairs.
    pub sq: f64,
    /// Recognition quality, `TP / (TP + FP/2 + FN/2)`.
    pub rq: f64,
    /// Objects in the truth (for a mean: the total over the images).
    pub true_objects: u64,
    /// Objects in the prediction (for a mean: the total over the images).
    pub predicted_objects: u64,
    /// Pairs matched at IoU > 0.5 (for a mean: the total over the images).
    pub matched: u64,
    /// Why the other objects went unmatched (for a mean: the totals over the images).
    /// Reports written before it was added read as all zeros.
    #[serde(default)]
    pub misses: MissCauses,
}

impl InstanceScores {
    /// Scores of `pred` against `truth` (see [`Contingency::of`]).
    ///
    /// # Panics
    /// If the two maps differ in length.
    pub fn of(truth: &[u32], pred: &[u32]) -> InstanceScores {
        Contingency::of(truth, pred).scores()
    }

    /// The arithmetic mean of each score over images (each image weighs the same) and the
    /// totals of the object counts; `None` when `scores` is empty.
    pub fn mean<'a>(scores: impl IntoIterator<Item = &'a InstanceScores>) -> Option<Self> {
        let mut sum = [0.0; 7];
        let mut counts = [0u64; 3];
        let mut misses = MissCauses::default();
        let mut images = 0usize;
        for s in scores {
            misses = misses.plus(&s.misses);
            let fields = [s.aji, s.f1, s.precision, s.recall, s.pq, s.sq, s.rq];
            for (total, value) in sum.iter_mut().zip(fields) {
                *total += value;
            }
            for (total, value) in
                counts
                    .iter_mut()
                    .zip([s.true_objects, s.predicted_objects, s.matched])
            {
                *total += value;
            }
            images += 1;
        }
        if images == 0 {
            return None;
        }
        let [aji, f1, precision, recall, pq, sq, rq] = sum.map(|t| t / images as f64);
        let [true_objects, predicted_objects, matched] = counts;
        Some(InstanceScores {
            aji,
            f1,
            precision,
            recall,
            pq,
            sq,
            rq,
            true_objects,
            predicted_objects,
            matched,
            misses,
        })
    }
}

/// Sparse contingency table of two label maps: object areas and the pixel count of every
/// overlapping (true, predicted) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contingency {
    /// `(id, area)` of every true object, by increasing id.
    pub truth: Vec<(u32, u64)>,
    /// `(id, area)` of every predicted object, by increasing id.
    pub pred: Vec<(u32, u64)>,
    /// `(index in truth, index in pred, intersection)` of every overlapping pair, sorted.
    pub overlaps: Vec<(usize, usize, u64)>,
}

impl Contingency {
    /// Counts the pixels of every (true id, predicted id) pair in one pass.
    ///
    /// # Panics
    /// If the two maps differ in length.
    pub fn of(truth: &[u32], pred: &[u32]) -> Contingency {
        assert_eq!(
            truth.len(),
            pred.len(),
            "true and predicted label maps differ in size ({} vs {} pixels)",
            truth.len(),
            pred.len()
        );
        // Labels come in runs along rows: count a run locally and touch the map once per
        // run, not once per pixel.
        let mut pairs: HashMap<(u32, u32), u64> = HashMap::new();
        let mut iter = truth.iter().zip(pred);
        if let Some((&t, &p)) = iter.next() {
            let (mut key, mut run) = ((t, p), 1u64);
            for (&t, &p) in iter {
                if (t, p) == key {
                    run += 1;
                } else {
                    *pairs.entry(key).or_default() += run;
                    (key, run) = ((t, p), 1);
                }
            }
            *pairs.entry(key).or_default() += run;
        }
        let mut pairs: Vec<((u32, u32), u64)> = pairs.into_iter().collect();
        pairs.sort_unstable();

        let mut truth_area: HashMap<u32, u64> = HashMap::new();
        let mut pred_area: HashMap<u32, u64> = HashMap::new();
        for &((t, p), n) in &pairs {
            if t != 0 {
                *truth_area.entry(t).or_default() += n;
            }
            if p != 0 {
                *pred_area.entry(p).or_default() += n;
            }
        }
        let sorted = |areas: HashMap<u32, u64>| {
            let mut v: Vec<(u32, u64)> = areas.into_iter().collect();
            v.sort_unstable();
            v
        };
        let (truth, pred) = (sorted(truth_area), sorted(pred_area));
        let index = |objects: &[(u32, u64)], id: u32| {
            objects
                .binary_search_by_key(&id, |&(i, _)| i)
                .expect("every id of the table has an area")
        };
        let overlaps = pairs
            .iter()
            .filter(|&&((t, p), _)| t != 0 && p != 0)
            .map(|&((t, p), n)| (index(&truth, t), index(&pred, p), n))
            .collect();
        Contingency {
            truth,
            pred,
            overlaps,
        }
    }

    /// Every score of the module docs.
    pub fn scores(&self) -> InstanceScores {
        let (n_true, n_pred) = (self.truth.len() as u64, self.pred.len() as u64);
        let union_of = |t: usize, p: usize, inter: u64| self.truth[t].1 + self.pred[p].1 - inter;

        // AJI. Overlaps are sorted by true index, then predicted id: the first of equal IoUs
        // is kept, i.e. the lowest predicted id.
        let mut best: Vec<Option<(usize, u64, u64)>> = vec![None; self.truth.len()];
        for &(t, p, inter) in &self.overlaps {
            let union = union_of(t, p, inter);
            let better = match best[t] {
                None => true,
                // inter / union > b_inter / b_union, exactly.
                Some((_, b_inter, b_union)) => {
                    u128::from(inter) * u128::from(b_union)
                        > u128::from(b_inter) * u128::from(union)
                }
            };
            if better {
                best[t] = Some((p, inter, union));
            }
        }
        let mut used = vec![false; self.pred.len()];
        let (mut inter_sum, mut union_sum) = (0u64, 0u64);
        for (t, pick) in best.iter().enumerate() {
            match *pick {
                Some((p, inter, union)) => {
                    inter_sum += inter;
                    union_sum += union;
                    used[p] = true;
                }
                None => union_sum += self.truth[t].1,
            }
        }
        union_sum += self
            .pred
            .iter()
            .zip(&used)
            .filter(|(_, &u)| !u)
            .map(|(&(_, area), _)| area)
            .sum::<u64>();
        let both_empty = n_true == 0 && n_pred == 0;
        let aji = if union_sum == 0 {
            1.0 // no objects at all
        } else {
            inter_sum as f64 / union_sum as f64
        };

        // Matches at IoU > 0.5, i.e. 2 · intersection > union.
        let (mut matched, mut iou_sum) = (0u64, 0.0f64);
        for &(t, p, inter) in &self.overlaps {
            let union = union_of(t, p, inter);
            if 2 * inter > union {
                matched += 1;
                iou_sum += inter as f64 / union as f64;
            }
        }
        // TP + FP/2 + FN/2 = (n_true + n_pred) / 2.
        let f1 = ratio(2.0 * matched as f64, n_true + n_pred, both_empty);
        InstanceScores {
            aji,
            f1,
            precision: ratio(matched as f64, n_pred, n_true == 0),
            recall: ratio(matched as f64, n_true, n_pred == 0),
            pq: ratio(2.0 * iou_sum, n_true + n_pred, both_empty),
            sq: ratio(iou_sum, matched, both_empty),
            rq: f1,
            true_objects: n_true,
            predicted_objects: n_pred,
            matched,
            misses: MissCauses::of(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// A label map from rows of characters: '.' is background, any other character its own
    /// object, mapped to an id by `ids`.
    fn map(rows: &[&str], ids: &[(char, u32)]) -> Vec<u32> {
        rows.iter()
            .flat_map(|row| row.chars())
            .map(|c| {
                if c == '.' {
                    0
                } else {
                    ids.iter().find(|&&(k, _)| k == c).expect("known char").1
                }
            })
            .collect()
    }

    #[test]
    fn split_merge_miss_and_false_positive_by_hand() {
        // 10×4, ids deliberately sparse and unordered.
        //            truth        pred
        //   row 0    AAAA.BBC.D   1112.333..
        //   row 1    AAAA.BBC.D   1112.333..
        //   row 2    ..........   ..........
        //   row 3    ..........   444.......
        // Areas: A 8, B 4, C 2, D 2; P1 6, P2 2, P3 6, P4 3.
        // Overlaps: A∩P1 6 (union 8, IoU 3/4), A∩P2 2 (union 8, IoU 1/4),
        //           B∩P3 4 (union 6, IoU 2/3), C∩P3 2 (union 6, IoU 1/3).
        // A is split (P1 + P2), B and C are merged (P3), D is missed, P4 is a false positive.
        //
        // AJI: A→P1 (C 6, U 8), B→P3 (C 4, U 6), C→P3 (C 2, U 6: P3 counted again, original
        //   convention), D overlaps nothing (U += 2), unpaired P2 and P4 (U += 2 + 3).
        //   C = 12, U = 8 + 6 + 6 + 2 + 5 = 27, AJI = 12/27 = 4/9.
        // F1: IoU > 0.5 for (A,P1) and (B,P3): TP 2, FP 2 (P2, P4), FN 2 (C, D);
        //   precision 1/2, recall 1/2, F1 = 4 / (4 + 2 + 2) = 1/2.
        // PQ: Σ IoU = 3/4 + 2/3 = 17/12; SQ = 17/24; RQ = 2 / (2 + 1 + 1) = 1/2;
        //   PQ = 17/12 / 4 = 17/48.
        let truth = map(
            &["AAAA.BBC.D", "AAAA.BBC.D", "..........", ".........."],
            &[('A', 7), ('B', 3), ('C', 12), ('D', 1)],
        );
        let pred = map(
            &["1112.333..", "1112.333..", "..........", "444......."],
            &[('1', 5), ('2', 40), ('3', 2), ('4', 9)],
        );
        let s = InstanceScores::of(&truth, &pred);
        assert!(close(s.aji, 4.0 / 9.0), "aji {}", s.aji);
        assert!(close(s.f1, 0.5), "f1 {}", s.f1);
        assert!(close(s.precision, 0.5));
        assert!(close(s.recall, 0.5));
        assert!(close(s.sq, 17.0 / 24.0), "sq {}", s.sq);
        assert!(close(s.rq, 0.5));
        assert!(close(s.pq, 17.0 / 48.0), "pq {}", s.pq);
        assert!(close(s.pq, s.sq * s.rq));
        assert_eq!((s.true_objects, s.predicted_objects, s.matched), (4, 4, 2));
        // P2 lies inside A, holding a quarter of it; P4 is on nothing; P3 holds most of C
        // and of B; D is not found.
        let m = s.misses;
        assert_eq!(
            (m.predicted_part, m.predicted_on_no_nucleus, m.predicted()),
            (1, 1, 2)
        );
        assert_eq!((m.true_merged, m.true_not_found, m.truth()), (1, 1, 2));
    }

    #[test]
    fn contingency_table_by_hand() {
        let truth = [0, 5, 5, 5, 0, 2];
        let pred = [1, 1, 0, 3, 3, 3];
        let c = Contingency::of(&truth, &pred);
        assert_eq!(c.truth, vec![(2, 1), (5, 3)]);
        assert_eq!(c.pred, vec![(1, 2), (3, 3)]);
        // (5,1) 1 px, (5,3) 1 px, (2,3) 1 px.
        assert_eq!(c.overlaps, vec![(0, 1, 1), (1, 0, 1), (1, 1, 1)]);
    }

    #[test]
    fn perfect_prediction_scores_one_whatever_the_ids() {
        let truth = map(&["AA.B", "AA.B", "...."], &[('A', 1), ('B', 2)]);
        let pred = map(&["AA.B", "AA.B", "...."], &[('A', 77), ('B', 3)]);
        let s = InstanceScores::of(&truth, &pred);
        for v in [s.aji, s.f1, s.precision, s.recall, s.pq, s.sq, s.rq] {
            assert_eq!(v, 1.0);
        }
        assert_eq!((s.true_objects, s.predicted_objects, s.matched), (2, 2, 2));
    }

    #[test]
    fn empty_maps() {
        let none = [0u32; 6];
        let one = [0, 4, 4, 0, 0, 0];
        let s = InstanceScores::of(&none, &none);
        for v in [s.aji, s.f1, s.precision, s.recall, s.pq, s.sq, s.rq] {
            assert_eq!(v, 1.0, "no objects anywhere: perfect");
        }
        for s in [
            InstanceScores::of(&none, &one),
            InstanceScores::of(&one, &none),
        ] {
            for v in [s.aji, s.f1, s.precision, s.recall, s.pq, s.sq, s.rq] {
                assert_eq!(v, 0.0, "objects on one side only: {s:?}");
            }
        }
        let s = InstanceScores::of(&[], &[]);
        assert_eq!(s.aji, 1.0);
        assert_eq!(s.true_objects, 0);
    }

    #[test]
    fn ties_in_iou_go_to_the_lowest_predicted_id() {
        // Truth T: 6 px. X: 2 px inside T (IoU 2/6). Y: 3 px inside T and 3 outside
        // (IoU 3/9). Equal IoUs, different pairs:
        //   T→X: C 2, U 6, Y unpaired +6 → AJI 2/12;  T→Y: C 3, U 9, X unpaired +2 → 3/11.
        let truth = [1, 1, 1, 1, 1, 1, 0, 0, 0];
        let pred = |x: u32, y: u32| [x, x, y, y, y, 0, y, y, y];
        let s = InstanceScores::of(&truth, &pred(2, 8));
        assert!(close(s.aji, 2.0 / 12.0), "aji {}", s.aji);
        let s = InstanceScores::of(&truth, &pred(8, 2));
        assert!(close(s.aji, 3.0 / 11.0), "aji {}", s.aji);
    }

    #[test]
    fn mean_averages_scores_and_sums_counts() {
        let a = InstanceScores::of(&[1, 1, 0], &[1, 1, 0]);
        let b = InstanceScores::of(&[1, 1, 0], &[0, 0, 3]);
        let m = InstanceScores::mean([&a, &b]).unwrap();
        assert_eq!(m.aji, 0.5);
        assert_eq!(m.f1, 0.5);
        assert_eq!((m.true_objects, m.predicted_objects, m.matched), (2, 2, 1));
        assert_eq!(
            (m.misses.true_not_found, m.misses.predicted_on_no_nucleus),
            (1, 1)
        );
        assert!(InstanceScores::mean([]).is_none());
    }
}
