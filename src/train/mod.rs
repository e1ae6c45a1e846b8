//! Training: patch-contrastive learning (seed 000), its two baselines, and semi-supervised
//! CDCL with its SupOnly baseline (seed 003, [`cdcl`]).

mod adam;
mod blur;
pub mod cdcl;
mod checkpoint;
mod config;
pub mod crop_stream;
mod curves;
mod data;
mod ema;
mod error;
pub mod label_free;
mod loss;
mod metrics;
mod object_cut;
mod partly_labeled;
mod patches;
mod run;
mod sampler;
mod seeds;
mod selection;
mod self_training;
pub mod sources;
pub mod stain_jitter;
pub mod stain_teacher;
mod step;
mod student;
mod threshold;
mod validate;

pub use checkpoint::{has_checkpoint, steps_done};
pub use config::{Method, SamplerKind, Similarity, Student, TrainConfig};
pub use curves::draw_curves;
pub use data::{
    Batch, CropSource, DataError, FolderImage, Labeled, LabeledCrops, LabeledFolder, LabeledSet,
};
pub use error::TrainError;
pub use loss::{contrastive_loss, similarity_matrix, LossParts};
pub use metrics::{read_metrics, EpochMetrics, MetricsCsv, RecordedEpoch};
pub use partly_labeled::PartlyLabeled;
pub use patches::attended_patches;
pub use run::{
    train, Best, LabelFreeChoice, LabelFreeRule, Progress, TrainSummary, CONFIDENCE_THRESHOLD,
    PROBE_CROPS,
};
pub use sampler::{
    bernoulli_entropy_bits, entropy_weights, sample_patches, CandidateGrid, PatchSample,
};
pub use seeds::{
    finished_mark, finished_runs, percentile, seed_dir, train_seeds, SeedJob, SeedRun, SeedsSummary,
};
pub use self_training::{stain_calibration_of, STAIN_CALIBRATION};
pub use step::{contrastive_objective, StepOutcome, Trainer};
pub use student::TrainedNet;
pub use threshold::{fit_gray_threshold, ThresholdFit};
pub use validate::{dice_per_image, validation_dice};
