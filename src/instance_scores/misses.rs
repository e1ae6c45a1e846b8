//! Why objects go unmatched: every predicted and every true object without a partner at
//! IoU > 0.5 (see [`crate::instance_scores`]) gets one cause, read off the contingency
//! table, so that a low object F1 says what to fix (spurious objects, merges, splits or
//! outlines) instead of only how much is wrong.
//!
//! "Holds most of X" means more than half of X's area; "mostly inside" the same seen from
//! the other side. The first rule that applies gives the cause.
//!
//! Unmatched predicted objects:
//! 1. **on no nucleus**: less than 20 % of its area lies in true objects;
//! 2. **merging**: it holds most of two or more true objects;
//! 3. **part of a nucleus**: it lies mostly inside one true object and holds at most half
//!    of it;
//! 4. **outline off**: anything else (one nucleus, drawn too wide or shifted).
//!
//! Unmatched true objects:
//! 1. **not found**: less than 20 % of its area lies in predicted objects;
//! 2. **merged**: a predicted object that holds most of it holds most of another true
//!    object too;
//! 3. **split**: two or more predicted objects lie mostly inside it;
//! 4. **too small**: one predicted object lies mostly inside it, holding at most half of it;
//! 5. **outline off**: anything else.

use super::Contingency;

/// Share of an object's area in the other map's objects below which it counts as on
/// nothing (a predicted object) or not found (a true one).
const ALMOST_NONE: f64 = 0.2;

/// The count of unmatched objects by cause (module docs), for one image or summed over
/// images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MissCauses {
    /// Predicted objects less than 20 % inside true objects.
    pub predicted_on_no_nucleus: u64,
    /// Predicted objects holding most of two or more true objects.
    pub predicted_merging: u64,
    /// Predicted objects mostly inside one true object, holding at most half of it.
    pub predicted_part: u64,
    /// Other unmatched predicted objects.
    pub predicted_outline_off: u64,
    /// True objects less than 20 % inside predicted objects.
    pub true_not_found: u64,
    /// True objects held mostly by a predicted object that merges them with another.
    pub true_merged: u64,
    /// True objects with two or more predicted objects mostly inside them.
    pub true_split: u64,
    /// True objects with one predicted object mostly inside, holding at most half of them.
    pub true_too_small: u64,
    /// Other unmatched true objects.
    pub true_outline_off: u64,
}

impl MissCauses {
    /// The cause of every unmatched object of `table`.
    pub fn of(table: &Contingency) -> MissCauses {
        let true_area = |t: usize| table.truth[t].1;
        let pred_area = |p: usize| table.pred[p].1;
        let holds_most = |inter: u64, area: u64| 2 * inter > area;

        let mut true_matched = vec![false; table.truth.len()];
        let mut pred_matched = vec![false; table.pred.len()];
        let mut inside_truth = vec![0u64; table.pred.len()];
        let mut inside_pred = vec![0u64; table.truth.len()];
        let mut true_held = vec![0u32; table.pred.len()];
        let mut part_of_one = vec![false; table.pred.len()];
        for &(t, p, inter) in &table.overlaps {
            if holds_most(inter, true_area(t) + pred_area(p) - inter) {
                true_matched[t] = true;
                pred_matched[p] = true;
            }
            inside_truth[p] += inter;
            inside_pred[t] += inter;
            let holds_most_of_t = holds_most(inter, true_area(t));
            true_held[p] += u32::from(holds_most_of_t);
            part_of_one[p] |= holds_most(inter, pred_area(p)) && !holds_most_of_t;
        }
        let merging = |p: usize| true_held[p] >= 2;
        let almost_none = |inside: u64, area: u64| (inside as f64) < ALMOST_NONE * area as f64;

        let mut causes = MissCauses::default();
        for p in (0..table.pred.len()).filter(|&p| !pred_matched[p]) {
            let count = if almost_none(inside_truth[p], pred_area(p)) {
                &mut causes.predicted_on_no_nucleus
            } else if merging(p) {
                &mut causes.predicted_merging
            } else if part_of_one[p] {
                &mut causes.predicted_part
            } else {
                &mut causes.predicted_outline_off
            };
            *count += 1;
        }
        // Overlaps are sorted by true index: each true object's pairs are one run.
        let mut start = 0;
        for t in 0..table.truth.len() {
            let end = start
                + table.overlaps[start..]
                    .iter()
                    .take_while(|&&(u, _, _)| u == t)
                    .count();
            let pairs = &table.overlaps[start..end];
            start = end;
            if true_matched[t] {
                continue;
            }
            let area = true_area(t);
            let parts: Vec<u64> = pairs
                .iter()
                .filter(|&&(_, p, inter)| holds_most(inter, pred_area(p)))
                .map(|&(_, _, inter)| inter)
                .collect();
            let count = if almost_none(inside_pred[t], area) {
                &mut causes.true_not_found
            } else if pairs
                .iter()
                .any(|&(_, p, inter)| holds_most(inter, area) && merging(p))
            {
                &mut causes.true_merged
            } else if parts.len() >= 2 {
                &mut causes.true_split
            } else if parts.len() == 1 && !holds_most(parts[0], area) {
                &mut causes.true_too_small
            } else {
                &mut causes.true_outline_off
            };
            *count += 1;
        }
        causes
    }

    /// Unmatched predicted objects, all causes.
    pub fn predicted(&self) -> u64 {
        self.predicted_on_no_nucleus
            + self.predicted_merging
            + self.predicted_part
            + self.predicted_outline_off
    }

    /// Unmatched true objects, all causes.
    pub fn truth(&self) -> u64 {
        self.true_not_found
            + self.true_merged
            + self.true_split
            + self.true_too_small
            + self.true_outline_off
    }

    /// The counts of `self` and `other` added, cause by cause.
    pub fn plus(&self, other: &MissCauses) -> MissCauses {
        MissCauses {
            predicted_on_no_nucleus: self.predicted_on_no_nucleus + other.predicted_on_no_nucleus,
            predicted_merging: self.predicted_merging + other.predicted_merging,
            predicted_part: self.predicted_part + other.predicted_part,
            predicted_outline_off: self.predicted_outline_off + other.predicted_outline_off,
            true_not_found: self.true_not_found + other.true_not_found,
            true_merged: self.true_merged + other.true_merged,
            true_split: self.true_split + other.true_split,
            true_too_small: self.true_too_small + other.true_too_small,
            true_outline_off: self.true_outline_off + other.true_outline_off,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A label map from rows of characters: '.' is background, any other character the
    /// object whose id is its code point.
    fn map(rows: &[&str]) -> Vec<u32> {
        rows.iter()
            .flat_map(|row| row.chars())
            .map(|c| if c == '.' { 0 } else { c as u32 })
            .collect()
    }

    #[test]
    fn every_cause_by_hand() {
        // Each band of rows holds one case (the same rows of the truth and the prediction):
        //   A, split into 1 and 2 (4 px each of its 12): A split, 1 and 2 parts;
        //   B, 12 px, with 3 (4 px) inside: B too small, 3 a part;
        //   C (4 px) and 4 shifted by two (overlap 2, IoU 1/3): both outline off;
        //   D and E (2 px each) in 5 (5 px, IoU 2/5 each): 5 merging, D and E merged;
        //   F matched by 6 exactly; 7 on nothing; H (6 px) with 9 (1 px, under 20 % of H)
        //   inside: H not found, 9 a part.
        let truth = map(&[
            "AAAAAA......",
            "AAAAAA......",
            "............",
            "BBBBBB......",
            "BBBBBB......",
            "............",
            "CCCC........",
            "............",
            "DD.EE.......",
            "............",
            "FF...HHHHHH.",
        ]);
        let pred = map(&[
            "11..22......",
            "11..22......",
            "............",
            "33..........",
            "33..........",
            "............",
            "..4444......",
            "............",
            "55555.......",
            "............",
            "66.7.9......",
        ]);
        let c = MissCauses::of(&Contingency::of(&truth, &pred));
        assert_eq!(
            c,
            MissCauses {
                predicted_on_no_nucleus: 1,
                predicted_merging: 1,
                predicted_part: 4,
                predicted_outline_off: 1,
                true_not_found: 1,
                true_merged: 2,
                true_split: 1,
                true_too_small: 1,
                true_outline_off: 1,
            },
            "{c:#?}"
        );
        // Every unmatched object has exactly one cause: 8 predicted objects and 7 true
        // ones, one pair matched.
        assert_eq!((c.predicted(), c.truth()), (7, 6));
    }

    #[test]
    fn perfect_prediction_has_no_misses() {
        let labels = map(&["AA.B", "AA.B"]);
        assert_eq!(
            MissCauses::of(&Contingency::of(&labels, &labels)),
            MissCauses::default()
        );
    }

    #[test]
    fn plus_adds_every_cause() {
        let one = MissCauses {
            predicted_on_no_nucleus: 1,
            predicted_merging: 2,
            predicted_part: 3,
            predicted_outline_off: 4,
            true_not_found: 5,
            true_merged: 6,
            true_split: 7,
            true_too_small: 8,
            true_outline_off: 9,
        };
        let two = one.plus(&one);
        assert_eq!((two.predicted(), two.truth()), (20, 70));
        assert_eq!(two.true_split, 14);
    }
}
