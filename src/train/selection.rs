//! How a run's checkpoint is chosen: by validation Dice where masks exist, otherwise by a
//! label-free rule. Shared by the training loop, its checkpoints and the seed runs, below
//! all three.

use serde::{Deserialize, Serialize};

use crate::model::Method;

/// How a method's checkpoint is chosen without masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelFreeRule {
    /// The (epoch, channel) that agrees best with the hematoxylin cut: right for methods
    /// that find nuclei by other means (contrastive) or learn the cut itself.
    HighestAgreement,
    /// The last epoch (for self-training, the average of the late epochs' weights it ends
    /// with): for a student meant to beat its stain teacher, agreeing with the teacher is
    /// no merit.
    LastEpoch,
}

impl LabelFreeRule {
    pub fn of(method: Method) -> Self {
        match method {
            Method::SelfTraining => Self::LastEpoch,
            _ => Self::HighestAgreement,
        }
    }
}

/// The checkpoint label-free selection would pick (by [`LabelFreeRule`]), and what it
/// scores on validation when labels exist.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelFreeChoice {
    pub epoch: usize,
    pub channel: usize,
    pub agreement: f64,
    pub val_dice: Option<f64>,
}

impl LabelFreeChoice {
    /// The choice after one more epoch with per-channel `agreement` and `val_dice`: by
    /// `rule`, this epoch, or its best channel if that beats `current` (the earlier one wins
    /// ties). One rule for training and for runs read back from `metrics.csv`.
    pub fn after_epoch(
        current: Option<Self>,
        epoch: usize,
        agreement: &[f64],
        val_dice: &[f64],
        rule: LabelFreeRule,
    ) -> Option<Self> {
        let last_wins = rule == LabelFreeRule::LastEpoch;
        match best_channel(agreement) {
            Some((channel, agreement))
                if last_wins || current.is_none_or(|c| agreement > c.agreement) =>
            {
                Some(Self {
                    epoch,
                    channel,
                    agreement,
                    val_dice: val_dice.get(channel).copied(),
                })
            }
            _ => current,
        }
    }
}

/// The selected checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub epoch: Option<usize>,
    pub channel: usize,
    pub dice: f64,
}

/// The channel with the highest score (the first on ties), if any.
pub(super) fn best_channel(scores: &[f64]) -> Option<(usize, f64)> {
    scores
        .iter()
        .copied()
        .enumerate()
        .fold(None, |best, (c, score)| match best {
            Some((_, top)) if top >= score => best,
            _ => Some((c, score)),
        })
}
