//! One optimizer step: the network, its optimizer and the per-method objective.

use tch::nn;
use tch::{Kind, Reduction, Tensor};

use super::adam::Adam;
use super::config::{Method, TrainConfig};
use super::data::Batch;
use super::ema::ema_update;
use super::error::TrainError;
use super::label_free::hematoxylin_masks;
use super::loss::{contrastive_loss, LossParts};
use super::patches::attended_patches;
use super::sampler::{sample_patches, CandidateGrid};
use super::self_training::{labeled_loss, self_training_loss, stain_calibration_of, AVERAGE_FROM};
use super::student::TrainedNet;
use crate::model::{ConfidenceNet, StainCalibration};
use crate::stain::calibrate_to;

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepOutcome {
    /// Some channel had no positive or no negative patch: no update (as the authors do).
    Skipped,
    /// Loss values after the forward pass; `intra`/`inter` only for the contrastive method.
    Updated {
        loss: f64,
        intra: Option<f64>,
        inter: Option<f64>,
    },
}

/// The contrastive loss of a batch of raw [0, 1] images, or `None` when the step must be
/// skipped. `net` runs in training mode (batch statistics), as in the authors' code.
pub fn contrastive_objective(
    net: &ConfidenceNet,
    config: &TrainConfig,
    images: &Tensor,
) -> Result<Option<LossParts>, TrainError> {
    let (b, h, w) = (images.size()[0], images.size()[2], images.size()[3]);
    let grid = CandidateGrid::new(h, w, config.patch_size.into(), config.stride.into())?;
    let normalised = net.normalise(images);
    let confidence = net.confidence(&normalised, true);
    let sample = tch::no_grad(|| {
        sample_patches(
            config.sampler,
            &grid,
            &confidence.detach(),
            config.patches as i64,
            config.topk as i64,
        )
    })?;
    let k = confidence.size()[1];
    let pool = |roles: &Tensor| roles.permute([1, 0, 2]).reshape([k, -1]); // K×(B·S)
    let (positive, negative) = (pool(&sample.positive), pool(&sample.negative));
    // The only host round trip of the step: whether every channel has both roles.
    let usable = positive
        .any_dim(1, false)
        .all()
        .logical_and(&negative.any_dim(1, false).all());
    if !bool::try_from(usable)? {
        return Ok(None);
    }
    let anchors = positive
        .to_kind(Kind::Float)
        .multinomial(config.anchors as i64, true);
    let patches = attended_patches(&normalised, &confidence, &grid, &sample.index);
    Ok(Some(contrastive_loss(
        config.similarity,
        &patches,
        &positive,
        &negative,
        &anchors,
        b,
    )))
}

/// The average of the network's weights (BatchNorm statistics included) at the ends of
/// the epochs from a run's [`AVERAGE_FROM`] on, a copy of the network's before. Later
/// epochs of self-training move the weights about a plateau; their average scores at
/// least as well as the last epoch and varies less between seeds
/// (docs/benchmarks.md#self-training).
#[derive(Debug)]
pub struct WeightAverage {
    pub vs: nn::VarStore,
    pub net: TrainedNet,
}

/// Network + Adam, stepping on batches.
#[derive(Debug)]
pub struct Trainer {
    pub vs: nn::VarStore,
    pub net: TrainedNet,
    /// What the self-training method saves; `None` for the other methods.
    pub average: Option<WeightAverage>,
    pub(super) optimizer: Adam,
    config: TrainConfig,
}

impl Trainer {
    /// A freshly initialised network (from torch's global RNG: call `tch::manual_seed`
    /// first for reproducibility). The methods trained on a target map (masks or
    /// hematoxylin) have one channel.
    pub fn new(config: &TrainConfig) -> Result<Self, TrainError> {
        let vs = nn::VarStore::new(config.device);
        let channels = match config.method {
            Method::Supervised | Method::Hematoxylin | Method::SelfTraining => 1,
            _ => config.channels as i64,
        };
        let build = |vs: &nn::VarStore| {
            TrainedNet::new(&vs.root(), config.student, channels, config.epsilon)
        };
        let net = build(&vs);
        let optimizer = Adam::new(&vs, config.lr, config.weight_decay);
        let average = (config.method == Method::SelfTraining).then(|| {
            let mut average_vs = nn::VarStore::new(config.device);
            let net = build(&average_vs);
            ema_update(&mut average_vs, &vs, 1.0, 0);
            WeightAverage {
                vs: average_vs,
                net,
            }
        });
        Ok(Self {
            vs,
            net,
            average,
            optimizer,
            config: config.clone(),
        })
    }

    /// Folds the network's weights after `epoch` into the average: a copy before the
    /// averaging epochs, then the running mean of one snapshot per epoch.
    pub fn end_epoch(&mut self, epoch: usize) {
        // Epochs are few and equal in steps, so one snapshot per epoch weighs every part
        // of the plateau alike.
        let first = (self.config.epochs as f64 * AVERAGE_FROM) as usize;
        if let Some(average) = &mut self.average {
            // ema_update with no cap on α: step k of the average is the mean of k+1 snapshots.
            ema_update(&mut average.vs, &self.vs, 1.0, epoch.saturating_sub(first));
        }
    }

    /// The weights a run saves as its model: the average where there is one, else the
    /// network's.
    pub fn model_weights(&self) -> &nn::VarStore {
        self.average.as_ref().map_or(&self.vs, |a| &a.vs)
    }

    /// The stain calibration this run's method trains with, if any.
    pub fn stain_calibration(&self) -> Option<StainCalibration> {
        stain_calibration_of(self.config.method)
    }

    /// `images` (B×3×H×W) as the network sees them: calibrated by `cuts` (each image's own
    /// when `None`) if the method calibrates, else as they are.
    fn calibrated(&self, images: &Tensor, cuts: Option<&[f64]>) -> Tensor {
        match self.stain_calibration() {
            Some(c) => calibrate_to(images, cuts, c.hematoxylin_cut),
            None => images.shallow_clone(),
        }
    }

    /// Eval-mode confidences of `images` as the saved model computes them (see
    /// [`Self::calibrated`] and [`Self::model_weights`]).
    pub fn infer(&self, images: &Tensor, cuts: Option<&[f64]>) -> Tensor {
        let net = self.average.as_ref().map_or(&self.net, |a| &a.net);
        net.infer(&self.calibrated(images, cuts))
    }

    /// One optimizer step on `batch`.
    pub fn step(&mut self, batch: &Batch) -> Result<StepOutcome, TrainError> {
        let (loss, intra, inter) = match self.config.method {
            Method::Contrastive => {
                let net = self.net.confidence_net().ok_or_else(|| {
                    TrainError::Config(
                        "the contrastive method trains the confidence network".into(),
                    )
                })?;
                match contrastive_objective(net, &self.config, &batch.images)? {
                    None => return Ok(StepOutcome::Skipped),
                    Some(p) => {
                        let intra = f64::try_from(&p.intra)?;
                        let inter = f64::try_from(&p.inter)?;
                        (p.total, Some(intra), Some(inter))
                    }
                }
            }
            Method::Supervised => {
                let masks = batch.masks.as_ref().ok_or_else(|| {
                    TrainError::NeedsMasks(
                        "the supervised baseline needs a mask for every training crop; the crop \
                         source returned crops without masks"
                            .into(),
                    )
                })?;
                (self.cross_entropy(&batch.images, masks), None, None)
            }
            Method::Hematoxylin => {
                // Per crop, so that each slide's (or image's) stain strength sets its own cut.
                let target = hematoxylin_masks(&batch.images)
                    .unsqueeze(1)
                    .to_kind(Kind::Float);
                (self.cross_entropy(&batch.images, &target), None, None)
            }
            Method::SelfTraining => {
                let images = self.calibrated(&batch.images, batch.hematoxylin_cuts.as_deref());
                let (seed, step) = (self.config.seed, self.optimizer.steps);
                let teacher = self_training_loss(&self.net, &images, seed, step);
                let loss = match &batch.labeled {
                    // A separate forward pass: sub-images and crops differ in size.
                    Some(labeled) => {
                        let cuts = Some(&labeled.hematoxylin_cuts[..]);
                        let images = self.calibrated(&labeled.images, cuts);
                        teacher + labeled_loss(&self.net, &images, &labeled.masks, seed, step)
                    }
                    None => teacher,
                };
                (loss, None, None)
            }
            Method::Threshold | Method::Cdcl => {
                return Err(TrainError::Config(format!(
                    "the {:?} method does not train the confidence network",
                    self.config.method
                )))
            }
        };
        self.optimizer.backward_step(&loss);
        Ok(StepOutcome::Updated {
            loss: f64::try_from(&loss)?,
            intra,
            inter,
        })
    }

    /// Mean binary cross-entropy of the confidence map against `target` (B×1×H×W in [0, 1]).
    fn cross_entropy(&self, images: &Tensor, target: &Tensor) -> Tensor {
        self.net.forward_t(images, true).binary_cross_entropy(
            target,
            None::<Tensor>,
            Reduction::Mean,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets every floating-point variable of `vs` to `value`.
    fn fill(vs: &nn::VarStore, value: f64) {
        tch::no_grad(|| {
            for (_, mut t) in vs.variables() {
                if t.is_floating_point() {
                    let _ = t.fill_(value);
                }
            }
        });
    }

    /// Every floating-point value of `vs`, which [`fill`] made all alike.
    fn values(vs: &nn::VarStore) -> Vec<f64> {
        vs.variables()
            .values()
            .filter(|t| t.is_floating_point())
            .flat_map(|t| Vec::<f64>::try_from(t.to_kind(Kind::Double).view([-1])).unwrap())
            .collect()
    }

    /// With labeled sub-images beside the crops, the self-training step adds their loss to
    /// the teacher's: the same network on the same crops reports a larger loss.
    #[test]
    fn self_training_adds_the_loss_of_labeled_sub_images() {
        let _rng = crate::test_support::torch_rng();
        let config = TrainConfig::defaults_for(Method::SelfTraining);
        let images = Tensor::rand([2, 3, 32, 32], (Kind::Float, tch::Device::Cpu));
        let batch = |labeled| Batch {
            images: images.shallow_clone(),
            masks: None,
            hematoxylin_cuts: Some(vec![0.05, 0.05]),
            labeled,
        };
        let loss_of = |batch: &Batch| {
            tch::manual_seed(1);
            match Trainer::new(&config).unwrap().step(batch).unwrap() {
                StepOutcome::Updated { loss, .. } => loss,
                StepOutcome::Skipped => panic!("self-training never skips"),
            }
        };
        let without = loss_of(&batch(None));
        let with = loss_of(&batch(Some(crate::train::data::LabeledCrops {
            images: Tensor::rand([2, 3, 24, 24], (Kind::Float, tch::Device::Cpu)),
            masks: Tensor::ones([2, 1, 24, 24], (Kind::Float, tch::Device::Cpu)),
            hematoxylin_cuts: vec![0.05, 0.05],
        })));
        assert!(without.is_finite() && without > 0.0);
        assert!(
            with > without + 1e-3,
            "with labels {with}, without {without}"
        );
    }

    /// Four epochs average from epoch 2: the average copies the network after epochs 0
    /// and 1, then holds the mean of the snapshots after epochs 2 and 3.
    #[test]
    fn self_training_saves_the_mean_of_the_late_epochs() {
        let _rng = crate::test_support::torch_rng();
        let config = TrainConfig {
            epochs: 4,
            ..TrainConfig::defaults_for(Method::SelfTraining)
        };
        let mut trainer = Trainer::new(&config).unwrap();
        for (epoch, value, expected) in [(0, 1.0, 1.0), (1, 3.0, 3.0), (2, 5.0, 5.0), (3, 7.0, 6.0)]
        {
            fill(&trainer.vs, value);
            trainer.end_epoch(epoch);
            let average = values(trainer.model_weights());
            assert!(!average.is_empty());
            assert!(
                average.iter().all(|&v| (v - expected).abs() < 1e-6),
                "after epoch {epoch}: {:?}",
                &average[..3]
            );
        }
        // The other methods save the network itself.
        let contrastive = Trainer::new(&TrainConfig::default()).unwrap();
        assert!(contrastive.average.is_none());
        fill(&contrastive.vs, 2.0);
        assert!(values(contrastive.model_weights())
            .iter()
            .all(|&v| v == 2.0));
    }
}
