//! Procedural synthetic H&E slides with exact nuclei masks, for tests and benchmarks.
//!
//! Every pixel is a pure function of the [`SynthSpec`] and its slide coordinates, so any
//! region renders identically whether alone, as part of a larger region or in parallel: a
//! gigapixel slide can be streamed in row bands with memory proportional to one band.
//!
//! * `layout`: smooth fields (tissue blobs, stain drift, cellularity, collagen fibres).
//! * `nuclei`: nucleus placement on a jittered grid and rasterisation.
//! * `render`: H&E colour, textures and noise.

mod hash;
mod layout;
mod nuclei;
mod png;
mod render;
mod spec;

use rayon::prelude::*;

pub use png::write_png_pair;
pub use spec::{SynthError, SynthSpec};

use layout::{coarse, fine, Fields, LatticeRows};
use nuclei::Nuclei;
use render::Stainer;

/// Rows rendered together by one task share lattice rows and the nucleus search, so bands are
/// as tall as possible, but short regions (streamed row bands) still get split among threads.
const MAX_BAND_ROWS: usize = 64;
const MIN_BAND_ROWS: usize = 16;
/// Fine-scale roughening of tissue edges, in tissue-field units (about px / 2); tissue
/// edges would otherwise be as smooth as the coarse lattice's interpolation.
const RAGGED_EDGE: f32 = 10.0;
/// Tissue-field samples per side used to place the coverage threshold.
const COVERAGE_SAMPLES: usize = 64;

/// One rendered region, row-major.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynthRegion {
    pub width: u32,
    pub height: u32,
    /// Interleaved RGB, 3 bytes per pixel.
    pub rgb: Vec<u8>,
    /// 255 where a nucleus was painted (always inside tissue), else 0.
    pub mask: Vec<u8>,
    /// 255 where the pixel is tissue, else 0 (glass): ground truth for tissue detection.
    pub tissue: Vec<u8>,
}

/// A validated spec with its derived state, ready to render any number of regions.
///
/// Construction samples the tissue field to place the coverage threshold (under a
/// millisecond); streaming renderers should build one `Synth` and reuse it.
pub struct Synth {
    spec: SynthSpec,
    fields: Fields,
    nuclei: Nuclei,
    stainer: Stainer,
    tissue_threshold: f64,
}

impl Synth {
    pub fn new(spec: &SynthSpec) -> Result<Self, SynthError> {
        spec.validate()?;
        let fields = Fields::new(spec);
        Ok(Self {
            tissue_threshold: coverage_threshold(spec, &fields),
            spec: spec.clone(),
            fields,
            nuclei: Nuclei::new(spec),
            stainer: Stainer::new(spec),
        })
    }

    pub fn spec(&self) -> &SynthSpec {
        &self.spec
    }

    /// Renders the `w` x `h` px region whose top-left pixel is (x, y). Pixels outside the
    /// slide render as bare glass, so padded edge tiles need no special case.
    pub fn render_region(&self, x: u64, y: u64, w: u32, h: u32) -> SynthRegion {
        let mut region = SynthRegion::default();
        self.render_into(x, y, w, h, &mut region);
        region
    }

    /// Like [`Synth::render_region`] but reuses `out`'s buffers, for streaming row bands
    /// without reallocating. Bands of rows render in parallel on the rayon pool.
    pub fn render_into(&self, x: u64, y: u64, w: u32, h: u32, out: &mut SynthRegion) {
        let (wu, hu) = (w as usize, h as usize);
        out.width = w;
        out.height = h;
        for (buf, bytes_per_px) in [(&mut out.rgb, 3), (&mut out.mask, 1), (&mut out.tissue, 1)] {
            buf.clear();
            buf.resize(wu * hu * bytes_per_px, 0);
        }
        if wu == 0 || hu == 0 {
            return;
        }
        let band_rows = hu
            .div_ceil(4 * rayon::current_num_threads())
            .clamp(MIN_BAND_ROWS, MAX_BAND_ROWS);
        let band_px = wu * band_rows;
        out.rgb
            .par_chunks_mut(band_px * 3)
            .zip(out.mask.par_chunks_mut(band_px))
            .zip(out.tissue.par_chunks_mut(band_px))
            .enumerate()
            .for_each(|(b, ((rgb, mask), tissue))| {
                let band = Band {
                    x,
                    y: y + (b * band_rows) as u64,
                    w: wu,
                    rgb,
                    mask,
                    tissue,
                };
                self.render_band(band);
            });
    }

    fn render_band(&self, band: Band<'_>) {
        let Band {
            x,
            y,
            w,
            rgb,
            mask,
            tissue,
        } = band;
        let rows = mask.len() / w;
        let threshold = self.tissue_threshold as f32;
        let nuclei = self
            .nuclei
            .layer(&self.fields, self.tissue_threshold, (x, y), (w, rows));
        let mut coarse_rows = LatticeRows::new(coarse::SPACING_LOG2, Fields::coarse_node, x, w);
        let mut fine_rows = LatticeRows::new(fine::SPACING_LOG2, Fields::fine_node, x, w);
        let pixel_rows = rgb
            .chunks_exact_mut(w * 3)
            .zip(mask.chunks_exact_mut(w))
            .zip(tissue.chunks_exact_mut(w));
        for (r, ((rgb_row, mask_row), tissue_row)) in pixel_rows.enumerate() {
            let py = y + r as u64;
            let on_slide = py < self.spec.height;
            let coarse_row = coarse_rows.row(&self.fields, py);
            let fine_row = fine_rows.row(&self.fields, py);
            let pixels = rgb_row.chunks_exact_mut(3).zip(mask_row).zip(tissue_row);
            for (k, ((px_rgb, px_mask), px_tissue)) in pixels.enumerate() {
                let px = x + k as u64;
                // Decide glass from two channels before interpolating the rest.
                let mottle = fine_row.channel(px, fine::MOTTLE);
                let field = coarse_row.channel(px, coarse::TISSUE) + RAGGED_EDGE * (mottle - 0.5);
                if !(on_slide && px < self.spec.width && field > threshold) {
                    self.stainer.glass((px, py), px_rgb);
                    *px_mask = 0;
                    *px_tissue = 0;
                    continue;
                }
                let nodes = (&coarse_row.at(px), &fine_row.at(px));
                let nucleus = nuclei.density(r * w + k);
                self.stainer
                    .tissue(nodes, field - threshold, nucleus, (px, py), px_rgb);
                *px_mask = if nucleus > 0.0 { 255 } else { 0 };
                *px_tissue = 255;
            }
        }
    }
}

/// Output slices of one band of rows starting at pixel (x, y), `w` px wide.
struct Band<'a> {
    x: u64,
    y: u64,
    w: usize,
    rgb: &'a mut [u8],
    mask: &'a mut [u8],
    tissue: &'a mut [u8],
}

/// Tissue-field level above which the requested fraction of the slide is tissue, estimated
/// from a fixed grid of samples (so it depends on the spec alone, never on the region).
fn coverage_threshold(spec: &SynthSpec, fields: &Fields) -> f64 {
    if spec.tissue_coverage <= 0.0 {
        return f64::INFINITY;
    }
    if spec.tissue_coverage >= 1.0 {
        return f64::NEG_INFINITY;
    }
    let n = COVERAGE_SAMPLES;
    let step = |extent: u64| extent as f64 / n as f64;
    let (sx, sy) = (step(spec.width), step(spec.height));
    let mut samples: Vec<f64> = (0..n * n)
        .map(|k| {
            let (i, j) = ((k % n) as f64 + 0.5, (k / n) as f64 + 0.5);
            fields.tissue(i * sx, j * sy)
        })
        .collect();
    samples.sort_unstable_by(f64::total_cmp);
    let below = ((1.0 - f64::from(spec.tissue_coverage)) * samples.len() as f64) as usize;
    samples[below.min(samples.len() - 1)]
}

/// Renders one region of the slide described by `spec`; see [`Synth::render_region`].
///
/// Builds a [`Synth`] per call: to render many regions of one slide, build it once.
///
/// # Panics
/// If `spec` is invalid (see [`SynthSpec::validate`]).
pub fn render_region(spec: &SynthSpec, x: u64, y: u64, w: u32, h: u32) -> SynthRegion {
    Synth::new(spec)
        .unwrap_or_else(|e| panic!("{e}"))
        .render_region(x, y, w, h)
}
