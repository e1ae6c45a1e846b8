//! Whole slides as a training data source: the [`CropStream`] behind the trainer's
//! [`CropSource`] interface. Crops are drawn by the stream's own seeded sampler, so the
//! trainer's item numbers and RNG are not used.

use super::crop_stream::{CropStream, CropStreamReport};
use super::data::{Batch, CropSource, DataError};
use std::sync::Mutex;
use tch::{Device, Kind, Tensor};

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
        })
    }
}
