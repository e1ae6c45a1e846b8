//! Nuclei: at most one per cell of a global jittered grid.
//!
//! Whether a cell holds a nucleus, and its shape, come from hashing the cell's coordinates,
//! so a band finds every nucleus that can reach it by visiting the cells within reach of it,
//! whatever other regions are rendered and in whatever order.

use std::f64::consts::TAU;
use std::ops::Range;

use super::hash::{hash2, nth_unit, smoothstep, stream_key, value_noise};
use super::layout::Fields;
use super::spec::SynthSpec;

/// Largest egg-shaped distortion (relative): keeps a shape within 1 / (1 - MAX_EGG) of its
/// ellipse, which bounds how far a nucleus reaches.
const MAX_EGG: f32 = 0.15;
/// Chromatin granules are about 1 / CHROMATIN_FREQ px across.
const CHROMATIN_FREQ: f32 = 0.6;
/// Share of small, round, dense (lymphocyte-like) nuclei.
const LYMPHOCYTE_SHARE: f32 = 0.15;

/// How a kind of nucleus looks; sizes and stretch are fractions of the spec's ranges.
struct Look {
    size: f32,
    stretch: f32,
    darkness: f32,
    /// Strength of the chromatin granularity.
    contrast: f32,
    /// Extra darkness at the nuclear membrane.
    rim: f32,
    may_have_nucleolus: bool,
}

struct Nucleus {
    cx: f64,
    cy: f64,
    cos: f32,
    sin: f32,
    inv_a: f32,
    inv_b: f32,
    egg: f32,
    reach: f64,
    look: Look,
    /// Offset of a dark nucleolus from the centre, in px.
    nucleolus: Option<(f32, f32)>,
}

impl Nucleus {
    /// Haematoxylin density (before chromatin texture) at offset (dx, dy) from the centre,
    /// or `None` outside the nucleus.
    #[inline]
    fn density(&self, dx: f32, dy: f32) -> Option<f32> {
        let u = (dx * self.cos + dy * self.sin) * self.inv_a;
        let v = (dy * self.cos - dx * self.sin) * self.inv_b;
        let egg_u = u * (1.0 + self.egg * v);
        let d2 = egg_u * egg_u + v * v;
        if d2 > 1.0 {
            return None;
        }
        // Chromatin condenses against the nuclear membrane.
        let mut density = self.look.darkness * (1.0 + self.look.rim * smoothstep(0.45, 1.0, d2));
        if let Some((ox, oy)) = self.nucleolus {
            if (dx - ox).powi(2) + (dy - oy).powi(2) < 2.5 {
                density *= 1.5;
            }
        }
        Some(density)
    }
}

/// Farthest a nucleus with long semi-axis `a` reaches from its centre (egg shape, pixel centres).
fn reach_of(a: f32) -> f64 {
    f64::from(a) / (1.0 - f64::from(MAX_EGG)) + 1.0
}

pub(crate) struct Nuclei {
    key: u64,
    chromatin_key: u64,
    cell: u64,
    fill: f32,
    r_min: f32,
    r_span: f32,
    max_elongation: f32,
    /// Bound on every nucleus's reach.
    reach: f64,
}

impl Nuclei {
    pub(crate) fn new(spec: &SynthSpec) -> Self {
        let [r_min, r_max] = spec.nucleus_radius_px;
        Self {
            key: stream_key(spec.seed, 10),
            chromatin_key: stream_key(spec.seed, 11),
            cell: u64::from(spec.nucleus_spacing_px),
            fill: spec.nucleus_fill,
            r_min,
            r_span: r_max - r_min,
            max_elongation: spec.nucleus_max_elongation,
            reach: reach_of(r_max * spec.nucleus_max_elongation.sqrt()),
        }
    }

    /// The nucleus of grid cell (ci, cj), if it has one.
    fn at_cell(&self, fields: &Fields, tissue_threshold: f64, ci: i64, cj: i64) -> Option<Nucleus> {
        let h = hash2(self.key, ci, cj);
        let draw = |k| nth_unit(h, k);
        let presence = draw(0);
        // Cheap early out before evaluating any field; the test after them is stricter.
        if presence >= self.fill {
            return None;
        }
        let cell = self.cell as f64;
        let cx = (ci as f64 + f64::from(draw(1))) * cell;
        let cy = (cj as f64 + f64::from(draw(2))) * cell;
        if fields.tissue(cx, cy) <= tissue_threshold {
            return None;
        }
        let cellular = fields.cellularity(cx, cy);
        if presence >= self.fill * (0.2 + 0.8 * cellular) {
            return None;
        }
        let kind = draw(3);
        let spindle = kind >= LYMPHOCYTE_SHARE && kind < LYMPHOCYTE_SHARE + 0.8 * (1.0 - cellular);
        let look = if kind < LYMPHOCYTE_SHARE {
            Look {
                size: 0.12 * draw(4),
                stretch: 0.08 * draw(5),
                darkness: 1.6 + 0.3 * draw(6),
                contrast: 0.2,
                rim: 0.1,
                may_have_nucleolus: false,
            }
        } else if spindle {
            // Fibroblast-like, lying along the stroma's fibres.
            Look {
                size: 0.1 + 0.35 * draw(4),
                stretch: 0.6 + 0.4 * draw(5),
                darkness: 1.25 + 0.3 * draw(6),
                contrast: 0.3,
                rim: 0.2,
                may_have_nucleolus: false,
            }
        } else {
            // Epithelial-like vesicular nucleus: larger, paler, coarse chromatin.
            Look {
                size: 0.2 + 0.8 * draw(4).powf(1.5),
                stretch: 0.4 * draw(5),
                darkness: 0.85 + 0.4 * draw(6),
                contrast: 0.7,
                rim: 0.45,
                may_have_nucleolus: true,
            }
        };
        let radius = self.r_min + self.r_span * look.size;
        let elongation = (1.0 + (self.max_elongation - 1.0) * look.stretch).sqrt();
        let (a, b) = (radius * elongation, radius / elongation);
        let angle = if spindle {
            fields.fibre_direction(cx, cy) + 0.3 * f64::from(draw(7) - 0.5)
        } else {
            TAU * f64::from(draw(7))
        };
        let nucleolus = (look.may_have_nucleolus && radius > 6.5 && draw(8) < 0.6)
            .then(|| ((draw(9) - 0.5) * 0.6 * b, (draw(10) - 0.5) * 0.6 * b));
        Some(Nucleus {
            cx,
            cy,
            cos: angle.cos() as f32,
            sin: angle.sin() as f32,
            inv_a: 1.0 / a,
            inv_b: 1.0 / b,
            egg: MAX_EGG * (2.0 * draw(11) - 1.0),
            reach: reach_of(a),
            look,
            nucleolus,
        })
    }

    /// Rasterises every nucleus reaching the `w` x `h` px area at (x, y).
    pub(crate) fn layer(
        &self,
        fields: &Fields,
        tissue_threshold: f64,
        (x, y): (u64, u64),
        (w, h): (usize, usize),
    ) -> NucleusLayer {
        let mut layer = NucleusLayer {
            x,
            y,
            w,
            h,
            density: vec![0.0; w * h],
            count: vec![0; w * h],
        };
        let cell = self.cell as f64;
        // Cells whose centre range [c * cell, (c + 1) * cell) comes within reach of the span.
        let cells = |start: u64, len: usize| {
            let lo = ((start as f64 - self.reach) / cell).floor() as i64;
            let hi = ((start as f64 + len as f64 + self.reach) / cell).floor() as i64;
            lo..=hi
        };
        for cj in cells(y, h) {
            for ci in cells(x, w) {
                if let Some(nucleus) = self.at_cell(fields, tissue_threshold, ci, cj) {
                    self.paint(&nucleus, &mut layer);
                }
            }
        }
        layer
    }

    fn paint(&self, n: &Nucleus, layer: &mut NucleusLayer) {
        let clip = |centre: f64, start: u64, len: usize| -> Range<u64> {
            let lo = (centre - n.reach).floor().max(start as f64) as u64;
            let hi = ((centre + n.reach).ceil().max(0.0) as u64 + 1).min(start + len as u64);
            lo..hi
        };
        let columns = clip(n.cx, layer.x, layer.w);
        for py in clip(n.cy, layer.y, layer.h) {
            let dy = (py as f64 + 0.5 - n.cy) as f32;
            let row = (py - layer.y) as usize * layer.w;
            for px in columns.clone() {
                let dx = (px as f64 + 0.5 - n.cx) as f32;
                let Some(base) = n.density(dx, dy) else {
                    continue;
                };
                let (gx, gy) = (px as f32 * CHROMATIN_FREQ, py as f32 * CHROMATIN_FREQ);
                let grain = value_noise(self.chromatin_key, gx, gy);
                let density = base * (1.0 + n.look.contrast * (grain - 0.5));
                let i = row + (px - layer.x) as usize;
                layer.density[i] = layer.density[i].max(density);
                layer.count[i] = layer.count[i].saturating_add(1);
            }
        }
    }
}

/// Nuclei over one band: for each pixel (row-major) the densest covering nucleus and how many
/// cover it. Max and count do not depend on painting order, unlike blending.
pub(crate) struct NucleusLayer {
    x: u64,
    y: u64,
    w: usize,
    h: usize,
    density: Vec<f32>,
    count: Vec<u8>,
}

impl NucleusLayer {
    /// Haematoxylin density of nuclei at pixel `i` of the band, 0 where there is none.
    #[inline]
    pub(crate) fn density(&self, i: usize) -> f32 {
        match self.count[i] {
            0 => 0.0,
            // Overlapping nuclei stack their stain.
            n => self.density[i] * (1.0 + 0.3 * f32::from(n - 1)),
        }
    }
}
