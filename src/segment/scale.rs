//! The scale a slide is segmented at. By default the model sees the slide at the microns per
//! pixel it was trained at (`train_mpp`), whatever the scanner's magnification, so a model
//! trained on 40× MoNuSeg finds the same nuclei on 20× and 40× slides. Every size defined in
//! microns (the post-processing disks, the minimum nucleus area) is converted with the scale
//! actually used. What was decided, and why, goes into the summary (`scale`) and the log.

use super::{Predictor, SegmentError, SegmentOptions};
use crate::model::{Architecture, Method, ModelCard};
use crate::morphology::{Postprocess, POSTPROCESS_TUNED_MPP};
use crate::slide::geometry::{Geometry, MppSource};
use crate::slide::Slide;
use crate::stain_recut::StainRecut;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What `--target-mpp` asks the model to see.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum TargetScale {
    /// The model's `train_mpp`, when both it and the slide's MPP are known (the default).
    #[default]
    Model,
    /// The pixels of the output level as they are.
    Native,
    /// This many microns per pixel.
    Microns(f64),
}

impl FromStr for TargetScale {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "model" => Ok(Self::Model),
            "native" => Ok(Self::Native),
            _ => match text.parse::<f64>() {
                Ok(m) if m.is_finite() && m > 0.0 => Ok(Self::Microns(m)),
                _ => Err(format!(
                    "`{text}` is not a scale; give microns per pixel (e.g. 0.25), `model` (the \
                     model's train_mpp) or `native` (the slide's own pixels)"
                )),
            },
        }
    }
}

impl fmt::Display for TargetScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Model => f.write_str("model"),
            Self::Native => f.write_str("native"),
            Self::Microns(m) => write!(f, "{m}"),
        }
    }
}

impl From<TargetScale> for String {
    fn from(target: TargetScale) -> String {
        target.to_string()
    }
}

impl TryFrom<String> for TargetScale {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

/// Checks a `--mpp` value: the slide's microns per pixel at level 0.
pub fn parse_mpp(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(m) if m.is_finite() && m > 0.0 => Ok(m),
        _ => Err(format!(
            "`{text}` is not a scale; give microns per pixel, e.g. 0.25 (40×) or 0.5 (20×)"
        )),
    }
}

/// The geometry `slide` is segmented with: the mask at `level`, the model at `target`.
/// `mpp` (`--mpp`) gives the slide's level-0 scale, over its metadata. Refused only when an
/// explicit `--target-mpp M` meets a slide of unknown scale; the default falls back to
/// native pixels, which [`ScaleUsed`] reports.
pub fn plan_geometry(
    slide: &dyn Slide,
    level: usize,
    target: TargetScale,
    mpp: Option<f64>,
    train_mpp: Option<f64>,
) -> Result<Geometry, SegmentError> {
    let native = Geometry::native(slide, level)?;
    let native = match mpp {
        Some(m) => native.with_level0_mpp(m),
        None => native,
    };
    let wanted = match target {
        TargetScale::Native => None,
        TargetScale::Microns(m) => Some(m),
        TargetScale::Model => train_mpp.filter(|_| native.output_mpp.is_some()),
    };
    match wanted {
        None => Ok(native),
        Some(m) => Ok(native.resampled_to(slide, m)?),
    }
}

/// How a slide was put at the model's scale, and the pixel sizes that follow; part of the
/// summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleUsed {
    /// Level-0 microns per pixel used for conversions.
    pub slide_mpp: f64,
    pub slide_mpp_source: MppSource,
    /// The model's training scale; `None` when its model.json does not record one.
    pub train_mpp: Option<f64>,
    /// Microns per pixel of what the model saw (and the post-processing cleaned).
    pub model_mpp: f64,
    /// The slide was resampled for the model (and the mask back).
    pub resampled: bool,
    /// Radii of the post-processing disks in model pixels (0.75 and 0.25 µm); `None` with
    /// `--raw`.
    pub postprocess_radii_px: Option<[usize; 2]>,
    /// The largest hole the post-processing fills, in model pixels, for models taught
    /// hole-filled nuclei; `None` otherwise and with `--raw`.
    pub holes_filled_up_to_px: Option<usize>,
    /// How far, in model pixels, the stain re-cut of the mask's edges reads around a pixel
    /// (models taught by the stain teacher); `None` otherwise and with `--raw`.
    pub stain_recut_reach_px: Option<u32>,
    #[serde(skip)]
    postprocess: Option<Postprocess>,
    /// Context read around each tile: the model's receptive radius plus the
    /// post-processing's reach, in model pixels.
    pub halo_px: u32,
    /// `--min-nucleus-area` in output pixels.
    pub min_nucleus_area_px: u64,
    /// The run rests on an assumption the note names (the slide's scale or the model's is
    /// unknown); the note is then logged as a warning.
    pub assumption: bool,
    /// What was done and why, in a sentence (also logged).
    pub note: String,
}

impl ScaleUsed {
    /// The scale facts of segmenting with `geometry` (from [`plan_geometry`]), `options` and
    /// `predictor`.
    pub fn new(geometry: &Geometry, options: &SegmentOptions, predictor: &Predictor) -> Self {
        Self::for_card(geometry, options, predictor.card(), |reach| {
            predictor.halo(reach)
        })
    }

    /// [`ScaleUsed::new`] from the model's card, with `halo` giving the tile halo for a
    /// post-processing reach.
    fn for_card(
        geometry: &Geometry,
        options: &SegmentOptions,
        card: &ModelCard,
        halo: impl Fn(u32) -> u32,
    ) -> Self {
        let train_mpp = card.train_mpp;
        // A luma threshold decides each pixel alone: it has no scale to be run at.
        let scale_free = card.architecture == Architecture::GrayThreshold;
        let model_mpp = model_mpp(geometry, train_mpp);
        let (slide_mpp, source) = match geometry.output_mpp {
            Some((x, y)) => (
                (x + y) / 2.0 / geometry.output_downsample,
                geometry.mpp_source,
            ),
            None => (model_mpp / geometry.output_downsample, MppSource::Assumed),
        };
        let postprocess = options.postprocess.then(|| finishing(card, model_mpp));
        let output_pixel_um2 = (slide_mpp * geometry.output_downsample).powi(2);
        Self {
            slide_mpp,
            slide_mpp_source: source,
            train_mpp,
            model_mpp,
            resampled: !geometry.is_native(),
            postprocess_radii_px: postprocess.as_ref().map(Postprocess::radii_px),
            holes_filled_up_to_px: postprocess.as_ref().and_then(Postprocess::hole_extent_px),
            stain_recut_reach_px: postprocess
                .as_ref()
                .and_then(|p| p.stain_recut().map(StainRecut::reach)),
            halo_px: halo(postprocess.as_ref().map_or(0, Postprocess::reach)),
            min_nucleus_area_px: area_px(options.min_nucleus_area_um2, output_pixel_um2),
            // A missing train_mpp matters only where the model's scale was to be used.
            assumption: source == MppSource::Assumed
                || (train_mpp.is_none() && !scale_free && options.target == TargetScale::Model),
            note: note(
                geometry,
                options.target,
                train_mpp,
                scale_free,
                source,
                model_mpp,
            ),
            postprocess,
        }
    }

    /// The post-processing at the model's scale, `None` with `--raw`.
    pub fn postprocess(&self) -> Option<Postprocess> {
        self.postprocess.clone()
    }

    /// Logs the note: a warning when it names an assumption.
    pub fn log(&self, slide: &std::path::Path) {
        if self.assumption {
            tracing::warn!(slide = %slide.display(), "{}", self.note);
        } else {
            tracing::info!(slide = %slide.display(), "{}", self.note);
        }
    }
}

/// Holes this small (µm, either side) are filled in the masks of models taught
/// hole-filled nuclei: a large nucleus is about 10 µm across, so every hole inside one
/// fits, while a gap between cells rarely closes all round within that span.
pub const NUCLEUS_HOLE_EXTENT_UM: f64 = 10.0;

/// The post-processing of `card`'s masks on pixels of `mpp` µm: the paper's opening and
/// closing; for models taught by the stain teacher, after re-cutting the edges by the
/// hematoxylin ([`crate::stain_recut`]) and filling nuclear holes, as the teacher does.
pub fn finishing(card: &ModelCard, mpp: f64) -> Postprocess {
    method_finishing(card.method, mpp)
}

/// [`finishing`] of the masks of any model trained by `method`.
pub fn method_finishing(method: Method, mpp: f64) -> Postprocess {
    let paper = Postprocess::at_mpp(mpp);
    if method.finishes_like_the_stain_teacher() {
        paper
            .filling_holes_up_to(NUCLEUS_HOLE_EXTENT_UM, mpp)
            .recutting_by_stain(mpp)
    } else {
        paper
    }
}

/// Microns per model pixel of `geometry`; when the slide's scale is unknown, the model's
/// pixels are taken to be at its training scale (0.25 µm/px, MoNuSeg's, without one).
pub fn model_mpp(geometry: &Geometry, train_mpp: Option<f64>) -> f64 {
    geometry
        .model_mpp()
        .unwrap_or(train_mpp.unwrap_or(POSTPROCESS_TUNED_MPP))
}

/// The least whole number of pixels of `pixel_um2` each that covers `area_um2`.
pub fn area_px(area_um2: f64, pixel_um2: f64) -> u64 {
    // The epsilon keeps a quotient that is whole but for rounding from gaining a pixel.
    (area_um2 / pixel_um2 - 1e-9).ceil().max(0.0) as u64
}

fn note(
    geometry: &Geometry,
    target: TargetScale,
    train_mpp: Option<f64>,
    scale_free: bool,
    source: MppSource,
    model_mpp: f64,
) -> String {
    let at = |mpp: f64| format!("{mpp:.4} µm/px");
    let slide_scale = match source {
        MppSource::Slide => "the slide's",
        MppSource::Flag => "--mpp's",
        MppSource::Assumed => "assumed",
    };
    if !geometry.is_native() {
        let from = geometry.output_mpp.map_or(0.0, |(x, y)| (x + y) / 2.0);
        let why = match target {
            TargetScale::Microns(_) => "as --target-mpp asks",
            _ => "the model's training scale",
        };
        return format!(
            "resampled from {} ({slide_scale}) to {} for the model ({why}); the mask is written \
             at the slide's level {}",
            at(from),
            at(model_mpp),
            geometry.output_level
        );
    }
    match (target, source, train_mpp) {
        (_, MppSource::Assumed, _) => format!(
            "the slide records no microns per pixel: it is assumed to be at {} and segmented \
             at native resolution; give --mpp to say its scale",
            at(model_mpp)
        ),
        (TargetScale::Native, ..) => format!(
            "segmented at native resolution ({} from {slide_scale} scale) as --target-mpp \
             native asks",
            at(model_mpp)
        ),
        (_, _, None) if scale_free => format!(
            "segmented at native resolution ({} from {slide_scale} scale): a luma threshold \
             decides each pixel alone and has no training scale",
            at(model_mpp)
        ),
        (_, _, None) => format!(
            "the model's model.json records no train_mpp: the slide is segmented at native \
             resolution ({}); retrain with train --mpp, or give --target-mpp",
            at(model_mpp)
        ),
        _ => format!(
            "segmented at native resolution: {} ({slide_scale}) is the model's training scale",
            at(model_mpp)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slide::ImageSlide;
    use std::path::Path;

    fn slide(mpp: Option<f64>) -> ImageSlide {
        let mpp = mpp.map(|m| (m, m));
        ImageSlide::from_rgb(Path::new("x.png"), vec![255; 64 * 48 * 3], 64, 48, mpp)
    }

    #[test]
    fn only_stain_taught_masks_are_recut_and_hole_filled() {
        let taught = method_finishing(Method::SelfTraining, 0.25);
        assert!(taught.stain_recut().is_some());
        assert_eq!(taught.hole_extent_px(), Some(40)); // 10 µm at 0.25 µm/px
        for method in [Method::Contrastive, Method::Cdcl, Method::Hematoxylin] {
            let paper = method_finishing(method, 0.25);
            assert_eq!(paper, Postprocess::at_mpp(0.25), "{method:?}");
        }
    }

    #[test]
    fn areas_convert_at_40x_and_20x() {
        let (at_40x, at_20x) = (0.25_f64.powi(2), 0.5_f64.powi(2));
        assert_eq!(area_px(1.0, at_40x), 16);
        assert_eq!(area_px(10.0, at_40x), 160);
        assert_eq!(area_px(10.0, at_20x), 40);
        // Partial pixels round up: a nucleus must cover the whole area to count.
        assert_eq!(area_px(10.1, at_20x), 41);
        assert_eq!(area_px(0.0, at_20x), 0);
    }

    #[test]
    fn a_model_without_a_scale_runs_at_native_pixels_with_a_warning() {
        let baseline = Predictor::threshold_baseline(0.5).unwrap();
        let network = ModelCard {
            architecture: Architecture::ConfidenceNet,
            ..baseline.card().clone()
        };
        let at_20x = slide(Some(0.5));
        let geometry = plan_geometry(&at_20x, 0, TargetScale::Model, None, None).unwrap();
        assert!(geometry.is_native());
        let options = SegmentOptions {
            min_nucleus_area_um2: 10.0,
            ..SegmentOptions::default()
        };
        let used = ScaleUsed::for_card(&geometry, &options, &network, |reach| reach);
        assert!(used.assumption);
        assert!(used.note.contains("records no train_mpp"), "{}", used.note);
        assert_eq!(used.model_mpp, 0.5);
        // The disks and the area follow the slide's scale.
        assert_eq!(used.postprocess_radii_px, Some([1, 0]));
        assert_eq!(used.min_nucleus_area_px, 40);
        // The luma threshold has no scale to miss: no warning, and the note says why.
        let used = ScaleUsed::new(&geometry, &options, &baseline);
        assert!(!used.assumption);
        assert!(used.note.contains("no training scale"), "{}", used.note);
        assert_eq!(used.postprocess_radii_px, Some([1, 0]));
    }

    #[test]
    fn the_model_runs_at_its_training_scale_when_the_slide_says_its_own() {
        let trained_at_40x = Some(0.25);
        let at_20x = slide(Some(0.5));
        let geometry = plan_geometry(&at_20x, 0, TargetScale::Model, None, trained_at_40x);
        let geometry = geometry.unwrap();
        assert_eq!((geometry.model_width, geometry.model_height), (128, 96));
        assert_eq!(model_mpp(&geometry, trained_at_40x), 0.25);
        let native = plan_geometry(&at_20x, 0, TargetScale::Native, None, trained_at_40x);
        assert!(native.unwrap().is_native());
        // A slide without a scale: --mpp gives it, else it is taken to be at the model's.
        let unknown = slide(None);
        let given = plan_geometry(&unknown, 0, TargetScale::Model, Some(0.5), trained_at_40x);
        let given = given.unwrap();
        assert_eq!((given.scale, given.mpp_source), (2.0, MppSource::Flag));
        let assumed = plan_geometry(&unknown, 0, TargetScale::Model, None, trained_at_40x);
        let assumed = assumed.unwrap();
        assert!(assumed.is_native());
        assert_eq!(model_mpp(&assumed, trained_at_40x), 0.25);
        // An explicit scale cannot be honoured without the slide's.
        let explicit = plan_geometry(&unknown, 0, TargetScale::Microns(0.25), None, None);
        assert!(matches!(explicit, Err(SegmentError::NoMpp { .. })));
    }

    #[test]
    fn target_scales_read_and_print_alike() {
        for text in ["model", "native", "0.5"] {
            assert_eq!(text.parse::<TargetScale>().unwrap().to_string(), text);
        }
        for bad in ["x", "-1", "0", "inf"] {
            assert!(bad.parse::<TargetScale>().is_err(), "{bad}");
        }
    }
}
