//! The networks (seed 000's confidence network, seed 003's UNet), their model card and their
//! on-disk form.

mod card;
mod checkpoint;
mod layout;
mod network;
mod tiny_conv;
mod unet;

pub use card::{
    Architecture, InputNormalisation, Method, ModelCard, Selection, StainCalibration,
    MODEL_CARD_FILE, WEIGHTS_FILE,
};
pub(crate) use checkpoint::{copy_weights, read_tensors};
pub use checkpoint::{load_run, load_weights, read_card, save_run, LoadedModel, ModelError};
pub use layout::fast_layout;
pub use network::{
    luma, normalise_input, ConfidenceNet, DEFAULT_EPSILON, DILATIONS, HIDDEN_CHANNELS,
    RECEPTIVE_RADIUS,
};
pub use unet::{
    UNet, UNetOutput, DEFAULT_UNET_WIDTH, PROJECTION_DIM, UNET_ALIGN, UNET_CLASSES,
    UNET_RECEPTIVE_RADIUS,
};
