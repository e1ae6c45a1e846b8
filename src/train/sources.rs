//! The trainer's data sources as `train` builds them: the scale an image folder is learned
//! at, whole slides as a [`CropStream`] behind the trainer's [`CropSource`] interface (its
//! crops are drawn by the stream's own seeded sampler, so the trainer's item numbers and RNG
//! are not used), and any source made to stop at Ctrl-C/SIGTERM.

use super::crop_stream::{
    CropSampler, CropStream, CropStreamConfig, CropStreamError, CropStreamReport,
};
use super::data::{Batch, CropSource, DataError, LabeledFolder};
use super::error::TrainError;
use crate::pipeline::CancelToken;
use crate::slide::resolution::{common_mpp, SAME_MPP_TOLERANCE};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tch::{Device, Kind, Tensor};

/// The scale an image folder's model learns at: its images' resolution tags, else `--mpp`.
/// Checked before anything is written; folders are not resampled, so tags and a different
/// `--mpp` are refused.
pub fn folder_mpp(folder: &LabeledFolder, flag: Option<f64>) -> Result<f64, TrainError> {
    let paths: Vec<PathBuf> = folder.items().iter().map(|i| i.path.clone()).collect();
    let tags = common_mpp(&paths).map_err(|e| TrainError::Config(e.to_string()))?;
    let images = folder.root().join("images");
    match (tags, flag) {
        (Some(t), Some(m)) if (t - m).abs() > SAME_MPP_TOLERANCE * t => {
            Err(TrainError::Config(format!(
                "--mpp {m}: the images of {} record {t:.4} µm/px in their resolution tags, \
                 and image folders are not resampled; drop --mpp, or correct the tags",
                images.display()
            )))
        }
        (Some(t), _) => Ok(t),
        (None, Some(m)) => Ok(m),
        (None, None) => Err(TrainError::Config(format!(
            "{}: the images record no scale (no TIFF/PNG resolution tags), so the microns per \
             pixel the model learns at is unknown and segment could not match slides to it; \
             give it with --mpp (MoNuSeg is 0.25 µm/px, 40×)",
            images.display()
        ))),
    }
}

/// The training data as the trainer sees it: at the scale the model learns at, and
/// stopping at the next batch once Ctrl-C/SIGTERM fires (the run directory then keeps what
/// was complete: the best checkpoint so far and the finished epochs' metrics).
pub struct Interruptible<'a> {
    pub data: &'a dyn CropSource,
    pub cancel: &'a CancelToken,
    /// Microns per pixel of the crops, recorded in model.json.
    pub mpp: f64,
}

impl CropSource for Interruptible<'_> {
    fn epoch_len(&self) -> usize {
        self.data.epoch_len()
    }

    fn describe(&self) -> String {
        self.data.describe()
    }

    fn mpp(&self) -> Option<f64> {
        Some(self.mpp)
    }

    fn crops(
        &self,
        items: &[usize],
        crop: u32,
        device: tch::Device,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Result<Batch, DataError> {
        if self.cancel.is_cancelled() {
            return Err(DataError::Interrupted);
        }
        self.data.crops(items, crop, device, rng)
    }
}

/// Starts the crop stream over the slides `paths` (read at `mpp`, else their common scale):
/// `count` random tissue crops as `config` asks, `epoch_crops` to an epoch.
pub fn slide_crops(
    paths: &[PathBuf],
    config: &CropStreamConfig,
    mpp: Option<f64>,
    epoch_crops: usize,
    count: usize,
    cancel: &CancelToken,
) -> Result<SlideCrops, CropStreamError> {
    let crop = config.crop;
    let sampler = CropSampler::new(paths, crop, config.min_tissue, mpp)?;
    let used = sampler.usage.iter().filter(|u| u.skipped.is_none()).count();
    let mpp = sampler.mpp();
    let stream = CropStream::start(Arc::new(sampler), count as u64, config, cancel);
    let description = format!(
        "{used} of {} slides, random {crop}px tissue crops at {mpp:.4} µm/px",
        paths.len()
    );
    Ok(SlideCrops::new(stream, epoch_crops, crop, description, mpp))
}

/// Writes the crop stream's report (queue occupancy, trainer wait) into the run directory.
pub fn write_stream_report(slides: Option<SlideCrops>, out: &Path) -> anyhow::Result<()> {
    if let Some(report) = slides.and_then(SlideCrops::finish) {
        tracing::info!(
            trainer_wait_s = report.trainer_wait_secs,
            mean_queue = report.mean_queue,
            capacity = report.queue_capacity,
            rejected = report.rejected_draws,
            "crop stream"
        );
        let file = std::fs::File::create(out.join("crop_stream.json"))?;
        serde_json::to_writer_pretty(file, &report)?;
    }
    Ok(())
}

/// Whole slides as a training data source (see [`slide_crops`]).
pub struct SlideCrops {
    stream: Mutex<CropStream>,
    epoch_len: usize,
    crop: u32,
    description: String,
    /// The scale the stream reads every slide at.
    mpp: f64,
}

impl SlideCrops {
    /// `epoch_len` crops make one epoch; `crop` must be the stream's crop size.
    pub fn new(
        stream: CropStream,
        epoch_len: usize,
        crop: u32,
        description: String,
        mpp: f64,
    ) -> Self {
        Self {
            stream: Mutex::new(stream),
            epoch_len,
            crop,
            description,
            mpp,
        }
    }

    /// Microns per pixel of the crops.
    pub fn scale(&self) -> f64 {
        self.mpp
    }

    /// Joins the stream's threads and reports how well decoding kept up with training;
    /// `None` when training stopped before using every crop (the stream is then cancelled).
    pub fn finish(self) -> Option<CropStreamReport> {
        let stream = self.stream.into_inner().ok()?;
        stream.finish().ok()
    }
}

impl CropSource for SlideCrops {
    fn epoch_len(&self) -> usize {
        self.epoch_len
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn mpp(&self) -> Option<f64> {
        Some(self.mpp)
    }

    fn crops(
        &self,
        items: &[usize],
        crop: u32,
        device: Device,
        _rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Result<Batch, DataError> {
        if crop != self.crop {
            return Err(DataError::CropStream(format!(
                "the stream cuts {0}x{0} crops but the trainer asked for {crop}x{crop}",
                self.crop
            )));
        }
        let mut stream = self
            .stream
            .lock()
            .map_err(|_| DataError::CropStream("a previous batch panicked".into()))?;
        let crops = stream
            .next_batch(items.len())
            .map_err(|e| DataError::CropStream(crate::error_text::one_line(&e.into())))?;
        if crops.len() < items.len() {
            return Err(DataError::CropStream(format!(
                "the stream ended after {} of {} crops",
                crops.len(),
                items.len()
            )));
        }
        let c = i64::from(crop);
        let images: Vec<Tensor> = crops
            .iter()
            .map(|cr| {
                Tensor::from_slice(&cr.pixels.pixels)
                    .view([c, c, 3])
                    .permute([2, 0, 1])
            })
            .collect();
        let images = Tensor::stack(&images, 0)
            .to_device(device)
            .to_kind(Kind::Float)
            / 255.0;
        Ok(Batch {
            images,
            masks: None,
            hematoxylin_cuts: crops.iter().map(|c| c.hematoxylin_cut).collect(),
            labeled: None,
        })
    }
}
