//! The model side of segmentation: a loaded run (or the threshold baseline) turned into a
//! function from a batch of equally sized RGB tiles to the foreground of a window of each.

use super::SegmentError;
use crate::model::{load_run, Architecture, InputNormalisation, LoadedModel, Method, ModelCard};
use crate::slide::RgbRegion;
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

    /// Foreground (0/1) inside `windows[i]` of `tiles[i]`. All tiles must have the same
    /// size. One host transfer per batch, however many tiles.
    pub fn predict(&self, tiles: &[&RgbRegion], windows: &[Window]) -> Vec<Vec<u8>> {
        assert_eq!(tiles.len(), windows.len(), "one window per tile");
        let Some(first) = tiles.first() else {
            return Vec::new();
        };
        let (width, height) = (first.width, first.height);
        let mut bytes = Vec::with_capacity(tiles.len() * first.pixels.len());
        for tile in tiles {
            assert!(
                tile.width == width && tile.height == height,
                "tiles of one batch must have the same size"
            );
            bytes.extend_from_slice(&tile.pixels);
        }
        let foreground = tch::no_grad(|| {
            // Contiguous NCHW: the same layout (and so the same kernels) for every batch.
            let images = Tensor::from_slice(&bytes)
                .view([tiles.len() as i64, i64::from(height), i64::from(width), 3])
                .to_device(self.device)
                .permute([0, 3, 1, 2])
                .to_kind(Kind::Float)
                .contiguous()
                / 255.0;
            let mask = self.model().foreground(&self.card, &images);
            let crops: Vec<Tensor> = windows
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    mask.get(i as i64)
                        .narrow(0, i64::from(w.y), i64::from(w.height))
                        .narrow(1, i64::from(w.x), i64::from(w.width))
                        .reshape([-1])
                })
                .collect();
            Tensor::cat(&crops, 0)
                .to_kind(Kind::Uint8)
                .to_device(Device::Cpu)
        });
        let flat = Vec::<u8>::try_from(foreground).expect("1-D uint8 tensor");
        let mut rest = flat.as_slice();
        windows
            .iter()
            .map(|w| {
                let (this, next) = rest.split_at(w.len());
                rest = next;
                this.to_vec()
            })
            .collect()
    }
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
