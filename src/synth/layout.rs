//! Slide layout: where tissue lies, how strongly it stains, where it is cellular and how its
//! collagen fibres run.
//!
//! These are smooth fields. Evaluating them per pixel would cost dozens of noise lookups, so
//! they are sampled on global lattices and interpolated bilinearly: a few multiply-adds per
//! pixel, and still a pure function of the pixel's coordinates because the lattices are
//! anchored at the slide origin, not at the region being rendered. Slow fields live on a
//! coarse lattice, fibre-scale ones on a fine lattice.

use super::hash::{fbm, lerp, smoothstep, stream_key, unit};
use super::spec::SynthSpec;

/// Channels of the coarse lattice (every 16 px).
pub(crate) mod coarse {
    pub(crate) const SPACING_LOG2: u32 = 4;
    pub(crate) const TISSUE: usize = 0;
    pub(crate) const HEMA: usize = 1;
    pub(crate) const EOSIN: usize = 2;
    pub(crate) const CELLULAR: usize = 3;
    pub(crate) const LOOSENESS: usize = 4;
    /// Fibre phase without its fine waviness.
    pub(crate) const FIBRE_BASE: usize = 5;
    pub(crate) type Node = [f32; 6];
}

/// Channels of the fine lattice (every 4 px).
pub(crate) mod fine {
    pub(crate) const SPACING_LOG2: u32 = 2;
    /// Fine waviness added to the coarse fibre phase.
    pub(crate) const FIBRE_WAVE: usize = 0;
    pub(crate) const MOTTLE: usize = 1;
    pub(crate) type Node = [f32; 2];
}

/// Size of epithelium-like cellular nests versus stroma (~100 µm).
const CELLULAR_SCALE_PX: f64 = 400.0;
/// Spacing of collagen fibres.
const FIBRE_PERIOD_PX: f64 = 11.0;
/// Scales of the two warps that make fibres wavy and slowly turn them.
const FIBRE_WAVE_PX: f64 = 90.0;
const FIBRE_SWIRL_PX: f64 = 700.0;
/// Patches of loose (gappy) versus dense stroma.
const LOOSENESS_SCALE_PX: f64 = 45.0;
/// Fine blotchiness of cytoplasm, fibre brightness and tissue edges.
const MOTTLE_SCALE_PX: f64 = 12.0;

pub(crate) struct Fields {
    width: f64,
    height: f64,
    short_side: f64,
    tissue_scale: f64,
    stain_variation: f64,
    /// Unit vector across the fibres, per slide.
    fibre_normal: (f64, f64),
    tissue_key: u64,
    hema_key: u64,
    eosin_key: u64,
    cellular_key: u64,
    fibre_key: u64,
    swirl_key: u64,
    loose_key: u64,
    mottle_key: u64,
}

impl Fields {
    pub(crate) fn new(spec: &SynthSpec) -> Self {
        let (width, height) = (spec.width as f64, spec.height as f64);
        let short_side = width.min(height);
        let angle = std::f64::consts::TAU * f64::from(unit(stream_key(spec.seed, 1)));
        Self {
            width,
            height,
            short_side,
            tissue_scale: spec
                .tissue_scale_px
                .map_or((short_side / 3.0).clamp(256.0, 8192.0), f64::from),
            stain_variation: f64::from(spec.stain_variation),
            fibre_normal: (angle.cos(), angle.sin()),
            tissue_key: stream_key(spec.seed, 2),
            hema_key: stream_key(spec.seed, 3),
            eosin_key: stream_key(spec.seed, 4),
            cellular_key: stream_key(spec.seed, 5),
            fibre_key: stream_key(spec.seed, 6),
            swirl_key: stream_key(spec.seed, 9),
            loose_key: stream_key(spec.seed, 7),
            mottle_key: stream_key(spec.seed, 8),
        }
    }

    /// Tissue field: tissue wherever it exceeds the slide's coverage threshold. Scaled by the
    /// blob size so that it changes by roughly one unit per pixel near an edge at any scale.
    pub(crate) fn tissue(&self, x: f64, y: f64) -> f64 {
        let s = self.tissue_scale;
        let blobs = fbm(self.tissue_key, x / s, y / s, 5);
        // Sections sit inside the coverslip: push tissue away from the slide edges.
        let edge = x.min(self.width - x).min(y).min(self.height - y) / self.short_side;
        let margin = 0.6 * f64::from(1.0 - smoothstep(0.0, 0.12, edge as f32));
        (blobs - margin) * s
    }

    /// 0 for stroma to 1 for densely cellular tissue, with fairly sharp borders.
    pub(crate) fn cellularity(&self, x: f64, y: f64) -> f32 {
        let s = CELLULAR_SCALE_PX;
        smoothstep(-0.1, 0.3, fbm(self.cellular_key, x / s, y / s, 3) as f32)
    }

    /// Phase whose integer crossings are the fibres: a per-slide linear ramp (parallel
    /// fibres) warped at two scales (waviness, slow turning).
    pub(crate) fn fibre_phase(&self, x: f64, y: f64) -> f64 {
        self.fibre_base(x, y) + self.fibre_wave(x, y)
    }

    fn fibre_base(&self, x: f64, y: f64) -> f64 {
        let (nx, ny) = self.fibre_normal;
        let s = FIBRE_SWIRL_PX;
        (x * nx + y * ny) / FIBRE_PERIOD_PX + 40.0 * fbm(self.swirl_key, x / s, y / s, 1)
    }

    fn fibre_wave(&self, x: f64, y: f64) -> f64 {
        let w = FIBRE_WAVE_PX;
        6.0 * fbm(self.fibre_key, x / w, y / w, 2)
    }

    /// Direction (radians) along the fibres at a point: normal to the phase gradient.
    pub(crate) fn fibre_direction(&self, x: f64, y: f64) -> f64 {
        let gx = self.fibre_phase(x + 1.0, y) - self.fibre_phase(x - 1.0, y);
        let gy = self.fibre_phase(x, y + 1.0) - self.fibre_phase(x, y - 1.0);
        gy.atan2(gx) + std::f64::consts::FRAC_PI_2
    }

    /// Multiplicative stain strength, drifting slowly around 1.
    fn stain(&self, key: u64, x: f64, y: f64) -> f32 {
        let s = 3.0 * self.tissue_scale;
        (1.0 + 1.5 * self.stain_variation * fbm(key, x / s, y / s, 2)) as f32
    }

    pub(crate) fn coarse_node(&self, x: f64, y: f64) -> coarse::Node {
        let l = LOOSENESS_SCALE_PX;
        let mut node = [0.0; 6];
        node[coarse::TISSUE] = self.tissue(x, y) as f32;
        node[coarse::HEMA] = self.stain(self.hema_key, x, y);
        node[coarse::EOSIN] = self.stain(self.eosin_key, x, y);
        node[coarse::CELLULAR] = self.cellularity(x, y);
        node[coarse::LOOSENESS] =
            smoothstep(-0.2, 0.5, fbm(self.loose_key, x / l, y / l, 2) as f32);
        node[coarse::FIBRE_BASE] = self.fibre_base(x, y) as f32;
        node
    }

    pub(crate) fn fine_node(&self, x: f64, y: f64) -> fine::Node {
        let m = MOTTLE_SCALE_PX;
        let mut node = [0.0; 2];
        node[fine::FIBRE_WAVE] = self.fibre_wave(x, y) as f32;
        node[fine::MOTTLE] = (0.5 + 0.5 * fbm(self.mottle_key, x / m, y / m, 1)) as f32;
        node
    }
}

/// Lattice rows around the current pixel row of a band, interpolated to that row.
///
/// Consecutive pixel rows share lattice rows, so each lattice row is evaluated once per band.
pub(crate) struct LatticeRows<const N: usize> {
    spacing: Spacing,
    eval: fn(&Fields, f64, f64) -> [f32; N],
    first_col: u64,
    /// Lattice row index held in `upper` (`lower` holds the next one).
    upper_row: Option<u64>,
    upper: Vec<[f32; N]>,
    lower: Vec<[f32; N]>,
    row: Vec<[f32; N]>,
}

impl<const N: usize> LatticeRows<N> {
    /// Lattice of spacing `1 << shift` px, nodes from `eval`, covering pixel columns
    /// `x .. x + w` (`w >= 1`).
    pub(crate) fn new(
        shift: u32,
        eval: fn(&Fields, f64, f64) -> [f32; N],
        x: u64,
        w: usize,
    ) -> Self {
        let spacing = Spacing::new(shift);
        let first_col = spacing.line(x);
        let cols = (spacing.line(x + w as u64 - 1) + 2 - first_col) as usize;
        Self {
            spacing,
            eval,
            first_col,
            upper_row: None,
            upper: vec![[0.0; N]; cols],
            lower: vec![[0.0; N]; cols],
            row: vec![[0.0; N]; cols],
        }
    }

    /// The fields along pixel row `y`.
    pub(crate) fn row(&mut self, fields: &Fields, y: u64) -> LatticeRow<'_, N> {
        let Self {
            spacing,
            eval,
            first_col,
            upper_row,
            upper,
            lower,
            row,
        } = self;
        let fill = |nodes: &mut [[f32; N]], j: u64| {
            let y = spacing.position(j);
            for (k, node) in nodes.iter_mut().enumerate() {
                *node = eval(fields, spacing.position(*first_col + k as u64), y);
            }
        };
        let j = spacing.line(y);
        if *upper_row != Some(j) {
            if upper_row.map(|u| u + 1) == Some(j) {
                std::mem::swap(upper, lower);
            } else {
                fill(upper, j);
            }
            fill(lower, j + 1);
            *upper_row = Some(j);
        }
        let t = spacing.weight(y);
        for ((out, a), b) in row.iter_mut().zip(upper.iter()).zip(lower.iter()) {
            *out = lerp_node(a, b, t);
        }
        LatticeRow {
            nodes: row,
            first_col: *first_col,
            spacing: *spacing,
        }
    }
}

/// One pixel row's worth of interpolated lattice nodes.
pub(crate) struct LatticeRow<'a, const N: usize> {
    nodes: &'a [[f32; N]],
    first_col: u64,
    spacing: Spacing,
}

impl<const N: usize> LatticeRow<'_, N> {
    /// The lattice columns either side of pixel column `x` and the weight of the right one.
    #[inline]
    fn bracket(&self, x: u64) -> (&[f32; N], &[f32; N], f32) {
        let col = (self.spacing.line(x) - self.first_col) as usize;
        (
            &self.nodes[col],
            &self.nodes[col + 1],
            self.spacing.weight(x),
        )
    }

    /// All channels at pixel column `x`.
    #[inline]
    pub(crate) fn at(&self, x: u64) -> [f32; N] {
        let (left, right, s) = self.bracket(x);
        lerp_node(left, right, s)
    }

    /// One channel at pixel column `x` (the same value `at` gives for it).
    #[inline]
    pub(crate) fn channel(&self, x: u64, c: usize) -> f32 {
        let (left, right, s) = self.bracket(x);
        lerp(left[c], right[c], s)
    }
}

/// A lattice spacing of `1 << shift` px, anchored at pixel 0.
#[derive(Clone, Copy)]
struct Spacing {
    shift: u32,
    /// Exact reciprocal of the spacing, so the per-pixel path multiplies, not divides.
    inverse: f32,
}

impl Spacing {
    fn new(shift: u32) -> Self {
        Self {
            shift,
            inverse: 1.0 / (1u64 << shift) as f32,
        }
    }

    /// Index of the lattice line at or before pixel coordinate `p`.
    #[inline]
    fn line(self, p: u64) -> u64 {
        p >> self.shift
    }

    /// Pixel coordinate of lattice line `i`.
    fn position(self, i: u64) -> f64 {
        (i << self.shift) as f64
    }

    /// Interpolation weight of pixel coordinate `p` towards the next lattice line.
    #[inline]
    fn weight(self, p: u64) -> f32 {
        (p & ((1 << self.shift) - 1)) as f32 * self.inverse
    }
}

#[inline]
fn lerp_node<const N: usize>(a: &[f32; N], b: &[f32; N], t: f32) -> [f32; N] {
    std::array::from_fn(|c| lerp(a[c], b[c], t))
}
