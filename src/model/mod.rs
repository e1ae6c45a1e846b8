//! The confidence network of the paper (appendix E.3), its model card and its on-disk form.

mod card;
mod checkpoint;
mod network;

pub use card::{
    Architecture, InputNormalisation, Method, ModelCard, Selection, MODEL_CARD_FILE, WEIGHTS_FILE,
};
pub use checkpoint::{load_run, load_weights, save_run, LoadedModel, ModelError};
pub use network::{
    luma, normalise_input, ConfidenceNet, DEFAULT_EPSILON, DILATIONS, HIDDEN_CHANNELS,
    RECEPTIVE_RADIUS,
};
