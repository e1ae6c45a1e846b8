//! slidestream: label-free nuclei segmentation of whole-slide images, streamed end to end.
//!
//! Data flows one way through modules with one job each: [`slide`] reads pixels and finds
//! tissue, [`pipeline`] connects stages with bounded channels, [`synth`] makes H&E-like test
//! slides with known nuclei, [`tiff`] writes pyramidal masks, [`picture`]
//! draws text and plots on the pictures people look at, and [`commands`] are the CLI's
//! subcommands on top.

pub mod allocator;
pub mod atomic_file;
pub mod bit_rows;
pub mod cohort;
pub mod commands;
pub mod convex_hull;
pub mod device;
pub mod error_text;
pub mod gaussian;
pub mod instance_scores;
pub mod instances;
pub mod logging;
pub mod model;
pub mod morphology;
pub mod output_path;
pub mod picture;
pub mod pipeline;
pub mod scores;
pub mod segment;
pub mod slide;
pub mod stain;
pub mod stain_recut;
pub mod synth;
#[cfg(test)]
mod test_support;
pub mod tiff;
pub mod train;
pub mod watershed;
