//! The model side of segmentation: a loaded run (or the threshold baseline) turned into a
//! function from a batch of equally sized RGB tiles to the foreground of a window of each.

use super::SegmentError;
use crate::model::{load_run, Architecture, InputNormalisation, LoadedModel, Method, ModelCard};
use crate::slide::RgbRegion;
use crate::stain::{calibrate, calibration_gamma};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tch::{Device, Kind, Tensor};

/// A rectangle inside a tile's read region, in that region's pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Window {
    pub fn len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What decides foreground, on which device. Shareable between threads (and slides): the
/// model is used by one batch at a time.
#[derive(Debug)]
pub struct Predictor {
    // libtorch tensors may move between threads but not be shared; the lock also keeps
    // concurrent slides from interleaving batches on one device.
    model: Mutex<LoadedModel>,
    /// The run's card with `--channel` / `--threshold` applied.
    card: ModelCard,
    device: Device,
    /// "RUN_DIR" or "baseline threshold:T", for reports.
    source: String,
}

impl Predictor {
    /// Loads a run directory; `channel` and `threshold` override the card's choices.
    pub fn from_run(
        run_dir: &Path,
        device: Device,
        channel: Option<usize>,
        threshold: Option<f64>,
    ) -> Result<Self, SegmentError> {
        let (model, mut card) = load_run(run_dir, device)?;
        if let Some(channel) = channel {
            if channel >= card.channels {
                return Err(SegmentError::InvalidOption(format!(
                    "--channel {channel}: the model in {} has {} channel(s), numbered 0 to {}",
                    run_dir.display(),
                    card.channels,
                    card.channels - 1
                )));
            }
            card.channel = channel;
        }
        if let Some(threshold) = threshold {
            card.threshold = checked_threshold(threshold)?;
        }
        Ok(Self {
            model: Mutex::new(model),
            card,
            device,
            source: run_dir.display().to_string(),
        })
    }

    /// The grayscale baseline: foreground = luma < `threshold` (luma in [0, 1]). Needs no
    /// weights and runs anywhere.
    pub fn threshold_baseline(threshold: f64) -> Result<Self, SegmentError> {
        let threshold = checked_threshold(threshold)?;
        Ok(Self {
            model: Mutex::new(LoadedModel::GrayThreshold),
            card: ModelCard {
                architecture: Architecture::GrayThreshold,
                method: Method::Threshold,
                channels: 1,
                channel: 0,
                threshold,
                input_normalisation: InputNormalisation::Luma,
                epoch: None,
                val_dice: Vec::new(),
                seed: 0,
                data: "none (baseline)".into(),
                slidestream_version: env!("CARGO_PKG_VERSION").into(),
                train_mpp: None,
                selection: None,
                hematoxylin_agreement: Vec::new(),
                width: None,
                stain_calibration: None,
            },
            device: Device::Cpu,
            source: format!("baseline threshold:{threshold}"),
        })
    }

    fn model(&self) -> MutexGuard<'_, LoadedModel> {
        // A panic mid-forward leaves the weights untouched: the model stays usable.
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Context a tile needs around the pixels it is responsible for (see
    /// [`crate::model::RECEPTIVE_RADIUS`]).
    pub fn receptive_radius(&self) -> u32 {
        self.model().receptive_radius()
    }

    /// Tile sides must be multiples of this (see [`LoadedModel::alignment`]).
    pub fn alignment(&self) -> u32 {
        self.model().alignment()
    }

    /// Context read around each tile: the receptive radius plus `reach` (post-processing),
    /// rounded up to the alignment so that reads keep the image's own phase.
    pub fn halo(&self, reach: u32) -> u32 {
        (self.receptive_radius() + reach).next_multiple_of(self.alignment())
    }

    /// The stain-calibration gamma for a slide (or image) whose hematoxylin cut
    /// `measure_cut` measures (see `crate::stain`): 1, without measuring anything, when the
    /// model was trained without calibration. One value per slide, so tiles stay seam-free.
    pub fn stain_gamma<E>(&self, measure_cut: impl FnOnce() -> Result<f64, E>) -> Result<f64, E> {
        match self.card.stain_calibration {
            None => Ok(1.0),
            Some(calibration) => Ok(calibration_gamma(
                calibration.hematoxylin_cut,
                measure_cut()?,
            )),
        }
    }

    /// Foreground (0/1) inside `windows[i]` of `tiles[i]`, the tiles calibrated by
    /// `stain_gamma` (see [`Self::stain_gamma`]). All tiles must have the same size. One
    /// host transfer per batch, however many tiles.
    pub fn predict(
        &self,
        tiles: &[&RgbRegion],
        windows: &[Window],
        stain_gamma: f64,
    ) -> Vec<Vec<u8>> {
        self.predict_planes(tiles, windows, stain_gamma, false).0
    }

    /// [`Self::predict`] with each window's nucleus score (see
    /// [`LoadedModel::score_and_foreground`]): `(foreground, score)`.
    pub fn predict_scored(
        &self,
        tiles: &[&RgbRegion],
        windows: &[Window],
        stain_gamma: f64,
    ) -> Vec<(Vec<u8>, Vec<f32>)> {
        let (masks, scores) = self.predict_planes(tiles, windows, stain_gamma, true);
        masks.into_iter().zip(scores).collect()
    }

    /// The foreground of each window and, when `scores`, its score (empty otherwise).
    fn predict_planes(
        &self,
        tiles: &[&RgbRegion],
        windows: &[Window],
        stain_gamma: f64,
        scores: bool,
    ) -> (Vec<Vec<u8>>, Vec<Vec<f32>>) {
        assert_eq!(tiles.len(), windows.len(), "one window per tile");
        if tiles.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let (foreground, score) = tch::no_grad(|| {
            let images = unit_images(tiles, self.device);
            let images = if stain_gamma == 1.0 {
                images
            } else {
                calibrate(&images, &[stain_gamma]).contiguous()
            };
            let (score, mask) = self.model().score_and_foreground(&self.card, &images);
            let crops = |plane: &Tensor| -> Tensor {
                let crops: Vec<Tensor> = windows
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        plane
                            .get(i as i64)
                            .narrow(0, i64::from(w.y), i64::from(w.height))
                            .narrow(1, i64::from(w.x), i64::from(w.width))
                            .reshape([-1])
                    })
                    .collect();
                Tensor::cat(&crops, 0)
            };
            // One host transfer per plane and batch; the score goes as it is, so that the
            // model's thread, the one every tile waits on, does nothing more with it.
            let foreground = crops(&mask).to_kind(Kind::Uint8).to_device(Device::Cpu);
            let score = scores.then(|| crops(&score).to_device(Device::Cpu));
            (foreground, score)
        });
        let foreground = Vec::<u8>::try_from(foreground).expect("1-D uint8 tensor");
        let score = score.map(|s| Vec::<f32>::try_from(s).expect("1-D float tensor"));
        (
            split_windows(&foreground, windows),
            score.map_or_else(Vec::new, |s| split_windows(&s, windows)),
        )
    }
}

/// `flat`, the windows' pixels one window after the other, cut into one vector per window.
fn split_windows<T: Copy>(flat: &[T], windows: &[Window]) -> Vec<Vec<T>> {
    let mut rest = flat;
    windows
        .iter()
        .map(|w| {
            let (this, next) = rest.split_at(w.len());
            rest = next;
            this.to_vec()
        })
        .collect()
}

/// Tiles of one size as contiguous NCHW f32 in [0, 1] on `device` (moved as bytes): the
/// same layout (and so the same kernels) for every batch.
fn unit_images(tiles: &[&RgbRegion], device: Device) -> Tensor {
    let (width, height) = (tiles[0].width, tiles[0].height);
    let mut bytes = Vec::with_capacity(tiles.len() * tiles[0].pixels.len());
    for tile in tiles {
        assert!(
            tile.width == width && tile.height == height,
            "tiles of one batch must have the same size"
        );
        bytes.extend_from_slice(&tile.pixels);
    }
    Tensor::from_slice(&bytes)
        .view([tiles.len() as i64, i64::from(height), i64::from(width), 3])
        .to_device(device)
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        .contiguous()
        / 255.0
}

fn checked_threshold(threshold: f64) -> Result<f64, SegmentError> {
    if (0.0..=1.0).contains(&threshold) {
        Ok(threshold)
    } else {
        Err(SegmentError::InvalidOption(format!(
            "threshold {threshold}: give a value between 0 and 1"
        )))
    }
}
