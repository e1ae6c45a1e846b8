//! Why a pipeline run stopped.

use std::error::Error;

/// The error type stage closures return. `?` converts any `std::error::Error + Send + Sync`
/// (and `anyhow::Error`, strings) into it, so closures need no error annotations.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// The first reason a run stopped; later errors caused by the shutdown itself are dropped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Stopped on request (Ctrl-C, a cancelled parent token), not by a failing stage.
    #[error("cancelled")]
    Cancelled,

    /// A stage closure returned an error; `source` is that error, unchanged.
    #[error("stage `{stage}` failed")]
    Stage {
        stage: String,
        #[source]
        source: BoxError,
    },

    /// A stage closure panicked; the panic was caught so the other stages could stop.
    #[error("stage `{stage}` panicked: {message}")]
    Panicked { stage: String, message: String },
}

impl PipelineError {
    /// True when a boxed stage error is only the echo of a cancellation (e.g. `emit.send(x)?`
    /// after the run was stopped), which must not be reported as the stage's own failure.
    pub(crate) fn is_cancellation(error: &BoxError) -> bool {
        matches!(error.downcast_ref(), Some(PipelineError::Cancelled))
    }
}
