//! A slide's stain, measured once before its tiles are segmented (or its crops trained
//! on): the hematoxylin cut that calibrates every tile (see `crate::stain`) for models
//! trained with stain calibration.
//!
//! **Seam-free.** The cut is one number per slide, measured on regions chosen from the
//! slide's size and tissue map alone (`slide::stain_sample`), never from the tile grid, so
//! every tile size gets the same calibration and hence the same mask.

use super::geometry::Geometry;
use super::predict::Predictor;
use crate::slide::stain_sample::stain_sample_regions;
use crate::slide::tissue::TissueMask;
use crate::slide::{Slide, SlideError};
use crate::stain::hematoxylin_cut_of_regions;

/// The hematoxylin cut of `slide` read at `geometry`'s model scale.
pub fn slide_hematoxylin_cut(
    slide: &dyn Slide,
    geometry: &Geometry,
    tissue: &TissueMask,
) -> Result<f64, SlideError> {
    let model_per_map = tissue.downsample() * geometry.scale / geometry.output_downsample;
    let sample = stain_sample_regions(
        geometry.model_width,
        geometry.model_height,
        tissue,
        model_per_map,
    )
    .into_iter()
    .map(|rect| geometry.read(slide, rect))
    .collect::<Result<Vec<_>, _>>()?;
    Ok(hematoxylin_cut_of_regions(&sample))
}

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
