//! Errors of `train`.

use std::path::PathBuf;

use super::data::DataError;
use crate::model::Method;
use crate::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid training configuration: {0}")]
    Config(String),
    #[error("the {0:?} method needs labeled images (images/ with masks/); pass a validation set")]
    NeedsLabels(Method),
    #[error("{0}")]
    NeedsMasks(String),
    #[error("{path}: cannot write: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {why}; delete the run directory to start over")]
    Checkpoint { path: PathBuf, why: String },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl TrainError {
    /// The user's input is at fault (options, data, a model file), not the machine.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Config(_)
                | Self::NeedsLabels(_)
                | Self::NeedsMasks(_)
                | Self::Checkpoint { .. }
                | Self::Data(_)
                | Self::Model(_)
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
