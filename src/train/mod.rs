//! Training: data streams, trainers and model selection.

pub mod crop_stream;
