//! Colour: Beer–Lambert mixing of haematoxylin and eosin optical densities over the glass,
//! fibre and cytoplasm texture, and sensor noise.

use super::hash::{floor, hash2, lerp, smoothstep, stream_key, unit};
use super::layout::coarse::{CELLULAR, EOSIN, FIBRE_BASE, HEMA, LOOSENESS};
use super::layout::fine::{FIBRE_WAVE, MOTTLE};
use super::layout::{coarse, fine};
use super::spec::SynthSpec;

/// Optical density (R, G, B) per unit stain: the reference H&E vectors of Macenko et al.
const HEMATOXYLIN_OD: [f32; 3] = [0.5626, 0.7201, 0.4062];
const EOSIN_OD: [f32; 3] = [0.2159, 0.8012, 0.5581];
/// Eosin in dense stroma.
const EOSIN_STRENGTH: f32 = 0.75;
/// Faint haematoxylin everywhere in tissue, and extra in cellular areas (cytoplasmic RNA).
const HEMA_BACKGROUND: f32 = 0.05;
const HEMA_CELLULAR: f32 = 0.12;
/// Nuclei displace most of the cytoplasm's eosin.
const EOSIN_UNDER_NUCLEUS: f32 = 0.3;
/// Width, in tissue-field units (about px / 2) above the threshold, over which sections thin
/// towards their edge.
const EDGE_FADE: f32 = 16.0;
/// exp() is replaced by a table: 256 steps per unit OD (under one grey level), up to OD 4.
const OD_STEPS: f32 = 256.0;
const OD_TABLE_LEN: usize = 1024;
/// Standard deviation of the sum of two uniform bytes, the cheap near-Gaussian noise used.
const BYTE_PAIR_SIGMA: f32 = 104.5;

pub(crate) struct Stainer {
    /// Per channel, the glass colour attenuated by each tabulated OD.
    transmission: Box<[[f32; OD_TABLE_LEN]; 3]>,
    noise_key: u64,
    noise_scale: f32,
    /// Per-slide stain strength, so slides of different seeds differ like different labs.
    hema_gain: f32,
    eosin_gain: f32,
}

impl Stainer {
    pub(crate) fn new(spec: &SynthSpec) -> Self {
        let gain =
            |salt| 1.0 + 0.8 * spec.stain_variation * (unit(stream_key(spec.seed, salt)) - 0.5);
        let mut transmission = Box::new([[0.0; OD_TABLE_LEN]; 3]);
        for (table, &glass) in transmission.iter_mut().zip(&spec.background_rgb) {
            for (step, t) in table.iter_mut().enumerate() {
                *t = f32::from(glass) * (-(step as f32) / OD_STEPS).exp();
            }
        }
        Self {
            transmission,
            noise_key: stream_key(spec.seed, 20),
            noise_scale: spec.noise_sigma / BYTE_PAIR_SIGMA,
            hema_gain: gain(21),
            eosin_gain: gain(22),
        }
    }

    /// Bare glass at pixel (x, y).
    #[inline]
    pub(crate) fn glass(&self, (x, y): (u64, u64), out: &mut [u8]) {
        self.expose([0.0; 3], (x, y), out);
    }

    /// Tissue at pixel (x, y) from its interpolated fields, how far its tissue field lies
    /// above the threshold, and the density of the nucleus covering it (0 where none).
    #[inline]
    pub(crate) fn tissue(
        &self,
        (coarse, fine): (&coarse::Node, &fine::Node),
        tissue_excess: f32,
        nucleus: f32,
        (x, y): (u64, u64),
        out: &mut [u8],
    ) {
        let thickness = 0.5 + 0.5 * smoothstep(0.0, EDGE_FADE, tissue_excess);
        let (cellular, mottle) = (coarse[CELLULAR], fine[MOTTLE]);
        // 0 on a fibre's axis, 1 halfway to the next: fibres are densest along their axis,
        // and loose stroma opens pale clefts between them, broken up along their length.
        let phase = coarse[FIBRE_BASE] + fine[FIBRE_WAVE];
        let across = (2.0 * (phase - floor(f64::from(phase)) as f32) - 1.0).abs();
        let cleft =
            smoothstep(0.6, 1.0, across) * coarse[LOOSENESS] * smoothstep(0.35, 0.65, mottle);
        let stroma = (1.0 - 0.25 * across) * (1.0 - 0.85 * cleft) * (0.8 + 0.4 * mottle);
        let cytoplasm = 0.75 + 0.35 * mottle;
        let mut eosin = EOSIN_STRENGTH * lerp(stroma, cytoplasm, cellular);
        let mut hema = HEMA_BACKGROUND + HEMA_CELLULAR * cellular;
        if nucleus > 0.0 {
            hema = nucleus;
            eosin *= EOSIN_UNDER_NUCLEUS;
        }
        let hema = hema * thickness * self.hema_gain * coarse[HEMA];
        let eosin = eosin * thickness * self.eosin_gain * coarse[EOSIN];
        let od = std::array::from_fn(|c| hema * HEMATOXYLIN_OD[c] + eosin * EOSIN_OD[c]);
        self.expose(od, (x, y), out);
    }

    /// Light through optical densities `od`, plus per-channel sensor noise.
    #[inline]
    fn expose(&self, od: [f32; 3], (x, y): (u64, u64), out: &mut [u8]) {
        let bits = hash2(self.noise_key, x as i64, y as i64);
        for (c, px) in out.iter_mut().enumerate() {
            // Negative or huge ODs clamp to the table: float-to-int casts saturate.
            let step = ((od[c] * OD_STEPS) as usize).min(OD_TABLE_LEN - 1);
            let pair = ((bits >> (16 * c)) & 0xFF) + ((bits >> (16 * c + 8)) & 0xFF);
            let noise = (pair as f32 - 255.0) * self.noise_scale;
            *px = (self.transmission[c][step] + noise + 0.5) as u8;
        }
    }
}
