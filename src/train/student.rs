//! The network a run trains: seed 000's confidence network for every method, or seed 003's
//! UNet as the self-training student (`train --student unet`).
//!
//! The self-training objective only needs a nucleus probability per pixel, so either
//! network can learn from the stain teacher. The confidence network is the default: the
//! two score alike as students, and `segment` runs it through a hand-written kernel about
//! 1.2× as fast as a width-8 UNet, in half the memory (docs/benchmarks.md#student-candidates).

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::model::{Architecture, ConfidenceNet, InputNormalisation, UNet, UNET_CLASSES};

/// Which network `train` builds (`--student`, `--width`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Student {
    /// The confidence network (8 hidden channels, K outputs).
    #[default]
    ConfidenceNet,
    /// A UNet of `width` with one output that matters: the nucleus class's probability.
    Unet { width: usize },
}

/// How `model.json` describes a trained network, so that `segment` builds the same one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CardShape {
    pub architecture: Architecture,
    pub input_normalisation: InputNormalisation,
    /// Output channels of the saved network.
    pub channels: usize,
    /// The UNet's width, if it is one.
    pub width: Option<usize>,
}

impl Student {
    /// `model.json`'s description of a network with `channels` trained maps (see
    /// [`TrainedNet::channels`]) and input mapping ε.
    pub fn card_shape(self, channels: usize, epsilon: f64) -> CardShape {
        match self {
            Self::ConfidenceNet => CardShape {
                architecture: Architecture::ConfidenceNet,
                input_normalisation: InputNormalisation::Epsilon { epsilon },
                channels,
                width: None,
            },
            Self::Unet { width } => CardShape {
                architecture: Architecture::Unet,
                input_normalisation: InputNormalisation::Unit,
                channels: UNET_CLASSES as usize,
                width: Some(width),
            },
        }
    }

    /// The saved network's output channel that holds trained map `map` (the UNet's nucleus
    /// probability is its class 1).
    pub fn card_channel(self, map: usize) -> usize {
        match self {
            Self::ConfidenceNet => map,
            Self::Unet { .. } => 1,
        }
    }
}

/// A network being trained (boxed: the layers' handles are large and differ in size).
#[derive(Debug)]
pub enum TrainedNet {
    Confidence(Box<ConfidenceNet>),
    Unet(Box<UNet>),
}

impl TrainedNet {
    /// `student` under `root`, with `channels` outputs for the confidence network and
    /// input mapping ε.
    pub fn new(root: &nn::Path, student: Student, channels: i64, epsilon: f64) -> Self {
        match student {
            Student::ConfidenceNet => {
                Self::Confidence(Box::new(ConfidenceNet::new(root, channels, epsilon)))
            }
            Student::Unet { width } => Self::Unet(Box::new(UNet::new(root, width as i64))),
        }
    }

    /// Maps the network is trained to output: the confidence network's K channels, or the
    /// UNet's one nucleus probability.
    pub fn channels(&self) -> i64 {
        match self {
            Self::Confidence(net) => net.channels(),
            Self::Unet(_) => 1,
        }
    }

    /// The trained maps (B×channels×H×W in [0, 1]) of raw RGB in [0, 1] of any size.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Tensor {
        match self {
            Self::Confidence(net) => net.forward_t(images, train),
            Self::Unet(net) => net.nucleus_probability(images, train),
        }
    }

    /// [`Self::forward_t`] in eval mode, without autograd (the confidence network through
    /// its CPU kernel where it can).
    pub fn infer(&self, images: &Tensor) -> Tensor {
        match self {
            Self::Confidence(net) => net.infer(images),
            Self::Unet(net) => tch::no_grad(|| net.nucleus_probability(images, false)),
        }
    }

    /// The confidence network itself, which the contrastive objective needs: it attends
    /// the normalised image with the confidence maps.
    pub fn confidence_net(&self) -> Option<&ConfidenceNet> {
        match self {
            Self::Confidence(net) => Some(net),
            Self::Unet(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{torch_rng, uniform};
    use tch::Device;

    /// A UNet student gives one map of probabilities at any crop size (300 px is not a
    /// multiple of its alignment), and its eval-mode map equals the one `segment`'s loaded
    /// model computes for the nucleus class.
    #[test]
    fn a_unet_student_gives_the_nucleus_probability_at_any_size() {
        let _rng = torch_rng();
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let student = Student::Unet { width: 4 };
        let net = TrainedNet::new(&vs.root(), student, 1, 0.05);
        let images = uniform(&[2, 3, 30, 22], 7);
        let train = net.forward_t(&images, true);
        assert_eq!(train.size(), [2, 1, 30, 22]);
        let inferred = net.infer(&images);
        assert_eq!(inferred.size(), [2, 1, 30, 22]);
        let TrainedNet::Unet(unet) = &net else {
            unreachable!()
        };
        let class = tch::no_grad(|| unet.probabilities(&images)).narrow(1, 1, 1);
        assert!(inferred.allclose(&class, 1e-6, 1e-6, false));
        let (min, max) = (
            f64::try_from(inferred.min()).unwrap(),
            f64::try_from(inferred.max()).unwrap(),
        );
        assert!((0.0..=1.0).contains(&min) && (0.0..=1.0).contains(&max) && max > min);
        assert_eq!(net.channels(), 1);
        assert!(net.confidence_net().is_none());
        let shape = student.card_shape(1, 0.05);
        assert_eq!(
            (shape.architecture, shape.channels, shape.width),
            (Architecture::Unet, 2, Some(4))
        );
        assert_eq!(student.card_channel(0), 1);
    }
}
