//! Saving and loading a run directory (`model.safetensors` + `model.json`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::nn;
use tch::{Device, Tensor};

use super::card::{Architecture, InputNormalisation, ModelCard, MODEL_CARD_FILE, WEIGHTS_FILE};
use super::network::{luma, ConfidenceNet, RECEPTIVE_RADIUS};
use super::unet::{UNet, DEFAULT_UNET_WIDTH, UNET_ALIGN, UNET_RECEPTIVE_RADIUS};

/// Failures reading or writing a run directory; each names the offending file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: cannot read or write: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid model card: {source}")]
    Card {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{run_dir}: not a run directory (no model.json); pass the --out of a finished `slidestream train`")]
    NotARun { run_dir: PathBuf },
    #[error("{path}: missing; the run directory has no trained weights (re-run `train`, or point at a RUN_DIR that finished)")]
    MissingWeights { path: PathBuf },
    #[error("{path}: not a readable safetensors file: {source}")]
    Weights {
        path: PathBuf,
        source: tch::TchError,
    },
    #[error("{path}: tensor `{name}` is missing; the file was not written for this architecture")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?} (model.json says K={channels}; do the card and weights belong together?)")]
    Shape {
        path: PathBuf,
        name: String,
        found: Vec<i64>,
        expected: Vec<i64>,
        channels: usize,
    },
    #[error("{path}: channel {channel} is out of range for a model with {channels} channels; fix `channel` in model.json")]
    ChannelOutOfRange {
        path: PathBuf,
        channel: usize,
        channels: usize,
    },
    #[error("{path}: stain_calibration.hematoxylin_cut is {cut}; it must be a positive number (the cut the model was trained at; retrain or remove the stain_calibration entry)")]
    StainCalibration { path: PathBuf, cut: f64 },
    #[error("{path}: `{field}` is {value}; {fix}")]
    CardValue {
        path: PathBuf,
        field: &'static str,
        value: String,
        fix: &'static str,
    },
    #[error("{path}: tensor `{name}` holds NaN or infinite values; the training that wrote it diverged (retrain, or use an earlier checkpoint)")]
    NonFiniteWeights { path: PathBuf, name: String },
    #[error("{path}: model.json describes a {architecture:?} model with input normalisation {normalisation:?}, which it cannot use")]
    Normalisation {
        path: PathBuf,
        architecture: Architecture,
        normalisation: InputNormalisation,
    },
}

/// A loaded run, ready to segment.
#[derive(Debug)]
pub enum LoadedModel {
    Network {
        /// Owns the weights of `net`.
        vs: nn::VarStore,
        /// Boxed: the layers are large next to the weightless variant.
        net: Box<ConfidenceNet>,
    },
    Unet {
        /// Owns the weights of `net`.
        vs: nn::VarStore,
        net: Box<UNet>,
    },
    GrayThreshold,
}

impl LoadedModel {
    /// Context (px) the foreground decision of a pixel depends on: see [`RECEPTIVE_RADIUS`].
    pub fn receptive_radius(&self) -> u32 {
        match self {
            Self::Network { .. } => RECEPTIVE_RADIUS,
            Self::Unet { .. } => UNET_RECEPTIVE_RADIUS,
            Self::GrayThreshold => 0,
        }
    }

    /// The network is shift-equivariant by multiples of this only: tiled predictions equal
    /// whole-image ones when every tile's read starts at the same offset modulo it.
    pub fn alignment(&self) -> u32 {
        match self {
            Self::Unet { .. } => UNET_ALIGN,
            Self::Network { .. } | Self::GrayThreshold => 1,
        }
    }

    /// Foreground mask (B×H×W bool) for raw RGB in [0, 1] (B×3×H×W) per the card's rule.
    pub fn foreground(&self, card: &ModelCard, images: &Tensor) -> Tensor {
        match self {
            // Without the score the baseline is one pass less.
            Self::GrayThreshold => luma(images).lt(card.threshold),
            _ => self.score_and_foreground(card, images).1,
        }
    }

    /// The nucleus score (B×H×W in [0, 1], higher = more nucleus-like) of the card's channel
    /// and the foreground decided from it, from one forward pass: the network's confidence
    /// or probability; for the threshold baseline, 1 − luma.
    pub fn score_and_foreground(&self, card: &ModelCard, images: &Tensor) -> (Tensor, Tensor) {
        let channel = card.channel as i64;
        match self {
            Self::Network { net, .. } => {
                let score = net.infer(images).select(1, channel);
                let foreground = score.gt(card.threshold);
                (score, foreground)
            }
            Self::Unet { net, .. } => tch::no_grad(|| {
                let score = net.probabilities(images).select(1, channel);
                let foreground = score.gt(card.threshold);
                (score, foreground)
            }),
            Self::GrayThreshold => {
                let luma = luma(images);
                let foreground = luma.lt(card.threshold);
                ((-&luma) + 1.0, foreground)
            }
        }
    }
}

fn write_card(run_dir: &Path, card: &ModelCard) -> Result<(), ModelError> {
    let path = run_dir.join(MODEL_CARD_FILE);
    let json = serde_json::to_string_pretty(card).map_err(|source| ModelError::Card {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, json).map_err(|source| ModelError::Io { path, source })
}

/// Writes `model.json` and, if given, the weights to `model.safetensors` in `run_dir`.
pub fn save_run(
    run_dir: &Path,
    vs: Option<&nn::VarStore>,
    card: &ModelCard,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(run_dir).map_err(|source| ModelError::Io {
        path: run_dir.to_path_buf(),
        source,
    })?;
    if let Some(vs) = vs {
        let path = run_dir.join(WEIGHTS_FILE);
        vs.save(&path)
            .map_err(|source| ModelError::Weights { path, source })?;
    }
    write_card(run_dir, card)
}

/// Copies weights from a safetensors file into `vs`, checking that every variable is present
/// with the right shape (tch's own `load` would broadcast mismatched shapes silently).
pub fn load_weights(vs: &mut nn::VarStore, path: &Path, channels: usize) -> Result<(), ModelError> {
    copy_weights(vs, &read_tensors(path)?, path, channels)
}

/// Every tensor of the safetensors file at `path`, by name.
pub(crate) fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>, ModelError> {
    if !path.exists() {
        return Err(ModelError::MissingWeights {
            path: path.to_path_buf(),
        });
    }
    Ok(Tensor::read_safetensors(path)
        .map_err(|source| ModelError::Weights {
            path: path.to_path_buf(),
            source,
        })?
        .into_iter()
        .collect())
}

/// [`load_weights`] from tensors already read from `path` (named in errors); tensors that
/// are not variables of `vs` are ignored.
pub(crate) fn copy_weights(
    vs: &mut nn::VarStore,
    stored: &HashMap<String, Tensor>,
    path: &Path,
    channels: usize,
) -> Result<(), ModelError> {
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            let src = stored.get(&name).ok_or_else(|| ModelError::MissingTensor {
                path: path.to_path_buf(),
                name: name.clone(),
            })?;
            if src.isfinite().all().int64_value(&[]) == 0 {
                return Err(ModelError::NonFiniteWeights {
                    path: path.to_path_buf(),
                    name,
                });
            }
            if src.size() != var.size() {
                return Err(ModelError::Shape {
                    path: path.to_path_buf(),
                    name,
                    found: src.size(),
                    expected: var.size(),
                    channels,
                });
            }
            var.copy_(src);
        }
        Ok(())
    })
}

/// More output channels or UNet width than any run trains (K is 2 to 8, width 16 to 64),
/// and far fewer than would exhaust memory when the network is built (a card with
/// `"channels": 1099511627776` made the allocation panic).
const MAX_CARD_SIZE: usize = 1024;

/// Refuses model cards that no run can use, naming the field and the fix, before the
/// network is built from them; every bound on `model.json` is here.
fn check_card(card: &ModelCard, path: &Path) -> Result<(), ModelError> {
    let bad = |field, value: String, fix| {
        Err(ModelError::CardValue {
            path: path.to_path_buf(),
            field,
            value,
            fix,
        })
    };
    if !(1..=MAX_CARD_SIZE).contains(&card.channels) {
        return bad(
            "channels",
            card.channels.to_string(),
            "give the output channels K the run was trained with, 1 to 1024 (the shape of the last layer in model.safetensors)",
        );
    }
    if card
        .width
        .is_some_and(|w| !(1..=MAX_CARD_SIZE).contains(&w))
    {
        return bad(
            "width",
            format!("{:?}", card.width),
            "give the UNet width the run was trained with, 1 to 1024 (16 by default)",
        );
    }
    // NaN fails the range test too.
    if !(0.0..=1.0).contains(&card.threshold) {
        return bad(
            "threshold",
            card.threshold.to_string(),
            "give a confidence between 0 and 1 (normally 0.5), or override it with --threshold",
        );
    }
    if let InputNormalisation::Epsilon { epsilon } = card.input_normalisation {
        // (1-ε)x+ε exists so that no attended pixel is exactly zero: ε = 0 lets black
        // pixels through as 0, and ε ≥ 1 maps every pixel to the same value.
        if !(epsilon > 0.0 && epsilon < 1.0) {
            return bad(
                "input_normalisation.epsilon",
                epsilon.to_string(),
                "give the epsilon the run was trained with, above 0 and below 1 (0.05 by default)",
            );
        }
    }
    if card.channel >= card.channels {
        return Err(ModelError::ChannelOutOfRange {
            path: path.to_path_buf(),
            channel: card.channel,
            channels: card.channels,
        });
    }
    if let Some(calibration) = card.stain_calibration {
        let cut = calibration.hematoxylin_cut;
        if !(cut.is_finite() && cut > 0.0) {
            return Err(ModelError::StainCalibration {
                path: path.to_path_buf(),
                cut,
            });
        }
    }
    Ok(())
}

/// Reads and checks `run_dir/model.json` alone (no weights).
pub fn read_card(run_dir: &Path) -> Result<ModelCard, ModelError> {
    let card_path = run_dir.join(MODEL_CARD_FILE);
    let text = std::fs::read_to_string(&card_path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ModelError::NotARun {
            run_dir: run_dir.to_path_buf(),
        },
        _ => ModelError::Io {
            path: card_path.clone(),
            source,
        },
    })?;
    let card: ModelCard = serde_json::from_str(&text).map_err(|source| ModelError::Card {
        path: card_path.clone(),
        source,
    })?;
    check_card(&card, &card_path)?;
    Ok(card)
}

/// Reads a run directory written by `train`: the model card and, for networks, the weights
/// on `device`.
pub fn load_run(run_dir: &Path, device: Device) -> Result<(LoadedModel, ModelCard), ModelError> {
    let card = read_card(run_dir)?;
    let card_path = run_dir.join(MODEL_CARD_FILE);
    let model = match (card.architecture, card.input_normalisation) {
        (Architecture::ConfidenceNet, InputNormalisation::Epsilon { epsilon }) => {
            let mut vs = nn::VarStore::new(device);
            let net = ConfidenceNet::new(&vs.root(), card.channels as i64, epsilon);
            load_weights(&mut vs, &run_dir.join(WEIGHTS_FILE), card.channels)?;
            LoadedModel::Network {
                vs,
                net: Box::new(net),
            }
        }
        (Architecture::Unet, InputNormalisation::Unit) => {
            let mut vs = nn::VarStore::new(device);
            let width = card.width.map_or(DEFAULT_UNET_WIDTH, |w| w as i64);
            let net = UNet::new(&vs.root(), width);
            load_weights(&mut vs, &run_dir.join(WEIGHTS_FILE), card.channels)?;
            LoadedModel::Unet {
                vs,
                net: Box::new(net),
            }
        }
        (Architecture::GrayThreshold, InputNormalisation::Luma) => LoadedModel::GrayThreshold,
        (architecture, normalisation) => {
            return Err(ModelError::Normalisation {
                path: card_path,
                architecture,
                normalisation,
            })
        }
    };
    Ok((model, card))
}
