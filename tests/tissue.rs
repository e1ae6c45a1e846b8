//! Tissue detection on synthetic slides with known tissue.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slidestream::slide::grid::Rect;
use slidestream::slide::tissue::{detect_tissue, TissueMask, TissueParams};

const GLASS: [u8; 3] = [243, 243, 243];
const EOSIN: [u8; 3] = [220, 140, 190];
const HAEMATOXYLIN: [u8; 3] = [120, 70, 160];
const PALE_STROMA: [u8; 3] = [235, 190, 215];
/// Bluish-black marker: dark but not grey, so saturated by HSV arithmetic.
const BLACK_PEN: [u8; 3] = [32, 36, 48];

/// A synthetic RGB thumbnail and the truth of where tissue is.
struct Thumbnail {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
    tissue: Vec<bool>,
    rng: ChaCha8Rng,
}

impl Thumbnail {
    /// `width × height` pixels of `colour` ± `noise`.
    fn filled(width: usize, height: usize, colour: [u8; 3], noise: i16, seed: u64) -> Self {
        let mut thumbnail = Self {
            width,
            height,
            rgb: vec![0; width * height * 3],
            tissue: vec![false; width * height],
            rng: ChaCha8Rng::seed_from_u64(seed),
        };
        thumbnail.paint(|_, _| true, colour, noise, false);
        thumbnail
    }

    /// Paints the pixels where `inside(x, y)` holds, marking them tissue or not.
    fn paint(
        &mut self,
        inside: impl Fn(usize, usize) -> bool,
        colour: [u8; 3],
        noise: i16,
        is_tissue: bool,
    ) {
        for y in 0..self.height {
            for x in 0..self.width {
                if !inside(x, y) {
                    continue;
                }
                let i = y * self.width + x;
                for (channel, &base) in colour.iter().enumerate() {
                    let jitter = self.rng.random_range(-noise..=noise);
                    self.rgb[i * 3 + channel] = (i16::from(base) + jitter).clamp(0, 255) as u8;
                }
                self.tissue[i] = is_tissue;
            }
        }
    }

    fn ellipse(&mut self, (cx, cy): (f64, f64), (rx, ry): (f64, f64), colour: [u8; 3]) {
        let inside = move |x: usize, y: usize| {
            let dx = (x as f64 - cx) / rx;
            let dy = (y as f64 - cy) / ry;
            dx * dx + dy * dy <= 1.0
        };
        self.paint(inside, colour, 10, true);
    }

    fn true_fraction(&self) -> f64 {
        self.tissue.iter().filter(|&&t| t).count() as f64 / self.tissue.len() as f64
    }

    fn detect(&self, downsample: f64) -> TissueMask {
        let params = TissueParams {
            min_area: 64,
            smoothing_radius: 1,
        };
        detect_tissue(
            &self.rgb,
            self.width as u32,
            self.height as u32,
            downsample,
            &params,
        )
    }
}

/// Pink and purple blobs on noisy glass, with specks, a hole and a pen line.
fn slide_with_blobs() -> Thumbnail {
    let mut slide = Thumbnail::filled(320, 240, GLASS, 6, 7);
    slide.ellipse((90.0, 100.0), (60.0, 45.0), EOSIN);
    slide.ellipse((80.0, 95.0), (15.0, 10.0), HAEMATOXYLIN);
    slide.ellipse((230.0, 150.0), (55.0, 70.0), EOSIN);
    slide.ellipse((250.0, 40.0), (25.0, 20.0), PALE_STROMA);
    slide
}

#[test]
fn the_detected_fraction_matches_the_painted_tissue() {
    let slide = slide_with_blobs();
    let mask = slide.detect(1.0);
    let truth = slide.true_fraction();
    assert!(
        (mask.fraction() - truth).abs() < 0.05,
        "detected {} vs true {truth}",
        mask.fraction()
    );
    let agreeing = (0..slide.tissue.len())
        .filter(|&i| (mask.data()[i] == 255) == slide.tissue[i])
        .count();
    assert!(agreeing as f64 / slide.tissue.len() as f64 > 0.97);
    // Pale stroma is a third population between glass and eosin; it is tissue too.
    assert!(mask.is_tissue_at(250, 40), "pale tissue missed");
    assert!(mask.data().iter().all(|&v| v == 0 || v == 255));
}

#[test]
fn specks_pen_and_small_holes_are_cleaned_up() {
    let mut slide = slide_with_blobs();
    let specks = [(20_usize, 210_usize), (160, 20), (300, 225)];
    for (sx, sy) in specks {
        slide.paint(
            |x, y| (sx..sx + 3).contains(&x) && (sy..sy + 3).contains(&y),
            EOSIN,
            5,
            false,
        );
    }
    // A black marker line across glass and tissue.
    slide.paint(|x, y| (x + 200).abs_diff(y * 2) < 8, BLACK_PEN, 2, false);
    // A 4 × 4 hole (a bubble, a tear) inside the large blob stays tissue.
    slide.paint(
        |x, y| (228..232).contains(&x) && (148..152).contains(&y),
        GLASS,
        6,
        true,
    );
    let mask = slide.detect(1.0);

    for (sx, sy) in specks {
        assert!(
            !mask.is_tissue_at(sx as i64 + 1, sy as i64 + 1),
            "speck at ({sx}, {sy}) kept"
        );
    }
    assert!(mask.is_tissue_at(230, 150), "hole not filled");
    // Pen pixels on glass (x ≈ 2y − 200, here y = 150..170, x = 100..140, off the blobs).
    for y in [150_i64, 160, 170] {
        let x = 2 * y - 200;
        assert!(
            !mask.is_tissue_at(x, y),
            "pen at ({x}, {y}) taken for tissue"
        );
    }
}

#[test]
fn glass_only_gives_an_empty_mask() {
    let white = Thumbnail::filled(200, 150, GLASS, 6, 1);
    assert_eq!(white.detect(1.0).fraction(), 0.0);
    // Glass yellowing from left to right (saturation 0 to ~25): Otsu alone would cut it
    // in two halves, but it is one unstained population.
    let mut tinted = Thumbnail::filled(200, 150, GLASS, 0, 2);
    for x in 0..200 {
        let yellow = [245, 242, 245 - (x / 8) as u8];
        tinted.paint(|px, _| px == x, yellow, 2, false);
    }
    assert_eq!(tinted.detect(1.0).fraction(), 0.0);
    let empty = detect_tissue(&[], 0, 0, 1.0, &TissueParams::default());
    assert_eq!(empty.fraction(), 0.0);
}

#[test]
fn tissue_only_gives_a_full_mask() {
    let pink = Thumbnail::filled(200, 150, EOSIN, 10, 3);
    assert_eq!(pink.detect(1.0).fraction(), 1.0);
    // Stroma and nuclei are two populations, but both are tissue: Otsu's split between
    // them must not be taken for the tissue/glass boundary.
    let mut mixed = Thumbnail::filled(200, 150, PALE_STROMA, 8, 4);
    for (cx, cy) in [(40.0, 40.0), (120.0, 70.0), (160.0, 120.0), (60.0, 120.0)] {
        mixed.ellipse((cx, cy), (25.0, 18.0), HAEMATOXYLIN);
    }
    assert!(mixed.detect(1.0).fraction() > 0.99);
}

#[test]
fn fractions_under_rectangles_match_a_direct_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (width, height) = (40_usize, 30_usize);
    let data: Vec<u8> = (0..width * height)
        .map(|_| if rng.random_bool(0.3) { 255 } else { 0 })
        .collect();
    let mask = TissueMask::new(width as u32, height as u32, data.clone(), 1.0);
    for _ in 0..500 {
        let rect = Rect {
            x: rng.random_range(-10..45),
            y: rng.random_range(-10..35),
            width: rng.random_range(1..30),
            height: rng.random_range(1..30),
        };
        let (mut tissue, mut inside) = (0, 0);
        for y in rect.y.max(0)..rect.bottom().min(height as i64) {
            for x in rect.x.max(0)..rect.right().min(width as i64) {
                inside += 1;
                tissue += usize::from(data[y as usize * width + x as usize] != 0);
            }
        }
        let expected = if inside == 0 {
            0.0
        } else {
            tissue as f64 / inside as f64
        };
        assert!(
            (mask.fraction_in(rect) - expected).abs() < 1e-12,
            "{rect:?}"
        );
    }
}

#[test]
fn level0_queries_use_the_mask_downsample() {
    // 4 × 3 mask at downsample 4: only mask pixel (2, 1), level-0 [8, 12) × [4, 8).
    let mut data = vec![0; 12];
    data[4 + 2] = 255;
    let mask = TissueMask::new(4, 3, data, 4.0);
    assert!(mask.is_tissue_at(8, 4) && mask.is_tissue_at(11, 7));
    assert!(!mask.is_tissue_at(12, 4) && !mask.is_tissue_at(7, 4));
    assert!(!mask.is_tissue_at(-1, 5) && !mask.is_tissue_at(100, 5));
    let around = Rect {
        x: 6,
        y: 4,
        width: 8,
        height: 4,
    };
    // Touches mask columns 1..4 of row 1: one of three pixels.
    assert!((mask.fraction_in(around) - 1.0 / 3.0).abs() < 1e-12);
    assert!((mask.fraction() - 1.0 / 12.0).abs() < 1e-12);
}

#[test]
fn the_mask_round_trips_through_png() {
    let slide = slide_with_blobs();
    let mask = slide.detect(16.0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tissue.png");
    mask.write_png(&path).unwrap();
    let read = image::open(&path).unwrap().into_luma8();
    assert_eq!(read.dimensions(), (mask.width(), mask.height()));
    assert_eq!(read.as_raw().as_slice(), mask.data());
    assert_eq!(mask.downsample(), 16.0);
}
