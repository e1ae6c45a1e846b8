//! A slide's stain gamma, measured once before its tiles are segmented: the hematoxylin
//! cut ([`crate::stain::slide_hematoxylin_cut`], shared with training's crop stream) moved
//! to the model's reference, for models trained with stain calibration.
//!
//! **Seam-free.** The cut is one number per slide, measured on regions chosen from the
//! slide's size and tissue map alone (`slide::stain_sample`), never from the tile grid, so
//! every tile size gets the same calibration and hence the same mask.

use super::predict::Predictor;
use crate::slide::geometry::Geometry;
use crate::slide::tissue::TissueMask;
use crate::slide::{Slide, SlideError};
use crate::stain::slide_hematoxylin_cut;

/// The stain gamma of `slide` for `predictor`: 1, without reading anything, for a model
/// without calibration.
pub fn stain_gamma(
    predictor: &Predictor,
    slide: &dyn Slide,
    geometry: &Geometry,
    tissue: &TissueMask,
) -> Result<f64, SlideError> {
    if predictor.card().stain_calibration.is_none() {
        return Ok(1.0);
    }
    Ok(predictor.stain_gamma(slide_hematoxylin_cut(slide, geometry, tissue)?))
}
