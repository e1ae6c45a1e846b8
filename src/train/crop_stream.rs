//! The online crop stream for training: random `crop × crop` tissue crops drawn from many
//! slides, decoded by parallel workers into a bounded queue so the trainer never waits on
//! I/O in steady state.
//!
//! Every slide is read at one scale, the one the model learns at (resampled as `segment`
//! resamples, so a crop of 300 px covers the same tissue whether the slide is 20× or 40×).
//! Slides are chosen with probability proportional to their tissue area; a crop position is
//! a uniformly random tissue pixel of the slide's tissue map (jittered inside it), and a
//! crop whose tissue fraction is below `min_tissue` is rejected and redrawn. All randomness
//! is drawn on the source thread from one seeded generator, and the decode stage keeps
//! order, so the sequence of crops depends only on the seed, not on thread timing.

use crate::pipeline::{CancelToken, Pipeline, PipelineError, PipelineReport, Stream};
use crate::slide::geometry::Geometry;
use crate::slide::grid::Rect;
use crate::slide::tissue::{detect_slide_tissue, TissueMask, TissueParams};
use crate::slide::{self, RgbRegion, Slide, SlideError};
use crate::stain::slide_hematoxylin_cut;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Draws before giving up on finding a crop with enough tissue: a slide whose tissue map
/// only has slivers thinner than a crop would otherwise loop forever.
const MAX_DRAWS_PER_CROP: usize = 1000;

#[derive(Debug, Clone)]
pub struct CropStreamConfig {
    /// Side of the square crops, in pixels of the stream's scale.
    pub crop: u32,
    /// Least tissue fraction (by the tissue map) a crop must cover.
    pub min_tissue: f64,
    pub workers: usize,
    /// Decoded crops queued ahead of the trainer.
    pub capacity: usize,
    pub seed: u64,
    /// Measure each slide's stain (its hematoxylin cut, once, on first use) and attach it
    /// to its crops, for methods that calibrate the stain.
    pub measure_stain: bool,
}

impl Default for CropStreamConfig {
    fn default() -> Self {
        Self {
            crop: 300,
            min_tissue: 0.5,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            capacity: 64,
            seed: 0,
            measure_stain: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CropStreamError {
    #[error("no slide to train on: {0}")]
    NoUsableSlide(String),
    #[error(
        "{path}: no {crop}x{crop} crop with ≥{min:.0}% tissue found in {MAX_DRAWS_PER_CROP} \
         draws; lower --min-tissue or remove the slide"
    )]
    NoTissueCrop { path: PathBuf, crop: u32, min: f64 },
    #[error(
        "no slide records its microns per pixel ({0}), so the scale the model learns at is \
         unknown; give it with train --mpp (e.g. 0.25 for 40×)"
    )]
    NoScale(String),
    #[error("{path}: cannot read it at {mpp} µm/px: {reason}")]
    Resample {
        path: PathBuf,
        mpp: f64,
        reason: String,
    },
}

/// One slide ready for sampling.
struct SampledSlide {
    slide: Arc<dyn Slide>,
    mask: TissueMask,
    /// Indices into `mask` of its tissue pixels.
    tissue_pixels: Vec<u32>,
    /// Level 0 at the stream's scale: crops are rectangles of its model space.
    geometry: Geometry,
    /// The slide's hematoxylin cut at the stream's scale, measured on first use.
    hematoxylin_cut: OnceLock<f64>,
}

/// What happened to each input slide.
#[derive(Debug, Clone, Serialize)]
pub struct SlideUse {
    pub path: PathBuf,
    /// Level-0 tissue area in pixels; 0 when skipped.
    pub tissue_pixels: f64,
    /// Why the slide is not used, if it is not.
    pub skipped: Option<String>,
}

/// Chooses crop positions over a set of slides.
pub struct CropSampler {
    slides: Vec<SampledSlide>,
    /// Running sum of tissue areas: slide `i` is drawn when a uniform draw falls in
    /// `[cumulative[i-1], cumulative[i])`.
    cumulative: Vec<f64>,
    pub usage: Vec<SlideUse>,
    crop: u32,
    min_tissue: f64,
    /// Microns per pixel of every crop.
    mpp: f64,
}

/// A crop to read: slide index and top-left corner, in pixels of the stream's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropRequest {
    pub slide: usize,
    pub x: i64,
    pub y: i64,
}

/// A decoded crop.
pub struct Crop {
    pub request: CropRequest,
    pub pixels: RgbRegion,
    /// The hematoxylin cut of the crop's slide (with `measure_stain`).
    pub hematoxylin_cut: Option<f64>,
}

impl CropSampler {
    /// Opens every slide and finds its tissue. Unreadable slides and slides without tissue
    /// are skipped and recorded in `usage` (a bad slide must not stop a long training run);
    /// it is an error only when no slide is left. Crops are read at `mpp` µm per pixel, by
    /// default the finest scale among the slides (so no slide's detail is lost); slides that
    /// record no scale are taken to be at it, with a warning.
    pub fn new(
        paths: &[PathBuf],
        crop: u32,
        min_tissue: f64,
        mpp: Option<f64>,
    ) -> Result<Self, CropStreamError> {
        let mut slides = Vec::new();
        let mut usage = Vec::new();
        for path in paths {
            match prepare(path) {
                Ok(s) if !s.tissue_pixels.is_empty() => {
                    let area = s.tissue_pixels.len() as f64 * s.mask.downsample().powi(2);
                    usage.push(SlideUse {
                        path: path.clone(),
                        tissue_pixels: area,
                        skipped: None,
                    });
                    slides.push(s);
                }
                Ok(_) => usage.push(skipped(path, "no tissue found".into())),
                Err(e) => {
                    tracing::warn!("skipping slide: {e}");
                    usage.push(skipped(path, e.to_string()));
                }
            }
        }
        if slides.is_empty() {
            let reasons: Vec<String> = usage
                .iter()
                .map(|u| {
                    format!(
                        "{} ({})",
                        u.path.display(),
                        u.skipped.as_deref().unwrap_or("")
                    )
                })
                .collect();
            return Err(CropStreamError::NoUsableSlide(if reasons.is_empty() {
                "the input list is empty".into()
            } else {
                reasons.join("; ")
            }));
        }
        let known = slides
            .iter()
            .filter_map(|s| s.slide.mpp().map(|(x, y)| (x + y) / 2.0));
        let Some(mpp) = mpp.or_else(|| known.reduce(f64::min)) else {
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            return Err(CropStreamError::NoScale(names.join(", ")));
        };
        for s in &mut slides {
            if s.slide.mpp().is_none() {
                tracing::warn!(
                    slide = %s.slide.path().display(),
                    "the slide records no microns per pixel: taken to be at {mpp} µm/px, the \
                     scale the model learns at"
                );
                continue;
            }
            s.geometry = s
                .geometry
                .clone()
                .resampled_to(s.slide.as_ref(), mpp)
                .map_err(|e| CropStreamError::Resample {
                    path: s.slide.path().to_path_buf(),
                    mpp,
                    reason: e.to_string(),
                })?;
        }
        let cumulative = usage
            .iter()
            .filter(|u| u.skipped.is_none())
            .scan(0.0, |total, u| {
                *total += u.tissue_pixels;
                Some(*total)
            })
            .collect();
        Ok(Self {
            slides,
            cumulative,
            usage,
            crop,
            min_tissue,
            mpp,
        })
    }

    /// Microns per pixel every crop is read at.
    pub fn mpp(&self) -> f64 {
        self.mpp
    }

    /// The pixels of a crop.
    pub fn read(&self, request: CropRequest) -> Result<RgbRegion, SlideError> {
        let s = &self.slides[request.slide];
        let rect = Rect {
            x: request.x,
            y: request.y,
            width: self.crop,
            height: self.crop,
        };
        s.geometry.read(s.slide.as_ref(), rect)
    }

    /// The hematoxylin cut of slide `index` (see `crate::stain::slide_hematoxylin_cut`), measured the
    /// first time it is asked for: the same value `segment` calibrates that slide by.
    pub fn hematoxylin_cut(&self, index: usize) -> Result<f64, SlideError> {
        let s = &self.slides[index];
        if let Some(&cut) = s.hematoxylin_cut.get() {
            return Ok(cut);
        }
        // Two workers may measure at once; both get the same value.
        let cut = slide_hematoxylin_cut(s.slide.as_ref(), &s.geometry, &s.mask)?;
        Ok(*s.hematoxylin_cut.get_or_init(|| cut))
    }

    /// Draws the next crop position; `rejected` counts crops redrawn for lack of tissue.
    pub fn draw(
        &self,
        rng: &mut impl Rng,
        rejected: &mut u64,
    ) -> Result<CropRequest, CropStreamError> {
        let total = *self.cumulative.last().expect("at least one slide");
        let pick = rng.random::<f64>() * total;
        let index = self
            .cumulative
            .partition_point(|&c| c <= pick)
            .min(self.slides.len() - 1);
        let s = &self.slides[index];
        let (ds, half) = (s.mask.downsample(), f64::from(self.crop) / 2.0);
        // Model pixels per level-0 pixel.
        let scale = s.geometry.scale;
        for _ in 0..MAX_DRAWS_PER_CROP {
            let pixel = s.tissue_pixels[rng.random_range(0..s.tissue_pixels.len())];
            let (mx, my) = (pixel % s.mask.width(), pixel / s.mask.width());
            // A uniform level-0 point inside that map pixel becomes the crop centre.
            let cx = (f64::from(mx) + rng.random::<f64>()) * ds;
            let cy = (f64::from(my) + rng.random::<f64>()) * ds;
            let (x, y) = (
                (cx * scale - half).round() as i64,
                (cy * scale - half).round() as i64,
            );
            let rect = Rect {
                x,
                y,
                width: self.crop,
                height: self.crop,
            };
            if s.mask.fraction_in(s.geometry.to_level0(rect)) >= self.min_tissue {
                return Ok(CropRequest { slide: index, x, y });
            }
            *rejected += 1;
        }
        Err(CropStreamError::NoTissueCrop {
            path: s.slide.path().to_path_buf(),
            crop: self.crop,
            min: self.min_tissue * 100.0,
        })
    }
}

fn skipped(path: &Path, reason: String) -> SlideUse {
    SlideUse {
        path: path.to_path_buf(),
        tissue_pixels: 0.0,
        skipped: Some(reason),
    }
}

fn prepare(path: &Path) -> Result<SampledSlide, SlideError> {
    let slide = slide::open(path)?;
    // Slides are prepared before training starts, within the time of opening them.
    let (mask, _) = detect_slide_tissue(slide.as_ref(), &TissueParams::default(), &|| false)?;
    let tissue_pixels = (0u32..)
        .zip(mask.data())
        .filter(|(_, &v)| v != 0)
        .map(|(i, _)| i)
        .collect();
    let geometry = Geometry::native(slide.as_ref(), 0)?;
    Ok(SampledSlide {
        slide,
        mask,
        tissue_pixels,
        geometry,
        hematoxylin_cut: OnceLock::new(),
    })
}

/// Throughput facts about a finished crop stream.
#[derive(Debug, Clone, Serialize)]
pub struct CropStreamReport {
    pub crops: u64,
    pub rejected_draws: u64,
    /// Time the trainer spent waiting for crops: ~0 when decoding keeps up.
    pub trainer_wait_secs: f64,
    /// Mean number of decoded crops waiting in the queue (capacity = full buffer).
    pub mean_queue: f64,
    pub queue_capacity: usize,
    pub pipeline: PipelineReport,
}

/// A running crop stream: `count` crops, then it ends.
pub struct CropStream {
    pipeline: Pipeline,
    crops: Stream<Crop>,
    rejected: Arc<std::sync::atomic::AtomicU64>,
    waited: Duration,
    delivered: u64,
    capacity: usize,
}

impl CropStream {
    /// Starts sampling on a source thread and decoding on `config.workers` threads.
    pub fn start(
        sampler: Arc<CropSampler>,
        count: u64,
        config: &CropStreamConfig,
        cancel: &CancelToken,
    ) -> Self {
        let mut pipeline = Pipeline::new("crop-stream", cancel);
        let rejected = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (seed, rejected_out) = (config.seed, Arc::clone(&rejected));
        let draw_sampler = Arc::clone(&sampler);
        let requests = pipeline.source("sample", config.capacity, move |emit| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut rejections = 0;
            for _ in 0..count {
                emit.send(draw_sampler.draw(&mut rng, &mut rejections)?)?;
            }
            rejected_out.store(rejections, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        });
        let measure_stain = config.measure_stain;
        let crops = pipeline.map(
            "decode",
            requests,
            config.workers,
            config.capacity,
            move |r: CropRequest| {
                let pixels = sampler.read(r)?;
                let hematoxylin_cut = measure_stain
                    .then(|| sampler.hematoxylin_cut(r.slide))
                    .transpose()?;
                Ok(Crop {
                    request: r,
                    pixels,
                    hematoxylin_cut,
                })
            },
        );
        Self {
            pipeline,
            crops,
            rejected,
            waited: Duration::ZERO,
            delivered: 0,
            capacity: config.capacity,
        }
    }

    /// The next `n` crops (fewer only at the end of the stream).
    pub fn next_batch(&mut self, n: usize) -> Result<Vec<Crop>, PipelineError> {
        let started = Instant::now();
        let batch: Vec<Crop> = self
            .crops
            .by_ref()
            .take(n)
            .collect::<Result<_, _>>()
            .map_err(|error| match error {
                PipelineError::Cancelled => self.pipeline.take_failure().unwrap_or(error),
                other => other,
            })?;
        self.waited += started.elapsed();
        self.delivered += batch.len() as u64;
        Ok(batch)
    }

    /// Waits for the stream's threads and reports how well decoding kept up.
    pub fn finish(self) -> Result<CropStreamReport, PipelineError> {
        drop(self.crops);
        let pipeline = self.pipeline.join()?;
        let mean_queue = pipeline
            .stage("decode")
            .map_or(0.0, |s| s.mean_output_queue);
        Ok(CropStreamReport {
            crops: self.delivered,
            rejected_draws: self.rejected.load(std::sync::atomic::Ordering::Relaxed),
            trainer_wait_secs: self.waited.as_secs_f64(),
            mean_queue,
            queue_capacity: self.capacity,
            pipeline,
        })
    }
}
