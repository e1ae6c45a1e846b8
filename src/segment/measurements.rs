//! Shape and intensity measurements of one nucleus, from its pixels, in pixels of the mask
//! (the caller converts to µm).
//!
//! * **Area**: the number of pixels (holes are not nucleus).
//! * **Centroid**: the mean of the pixel centres.
//! * **Perimeter**: Crofton's formula over four directions (as
//!   `skimage.measure.perimeter_crofton(…, directions=4)`): π/8 times the boundary
//!   crossings along rows and columns plus those along both diagonals over √2. The
//!   pixel-edge ring itself zigzags, measuring a disk 4/π times too long; Crofton's count
//!   is exact on average over orientations: within 2 % of 2πr for digitised disks from
//!   r = 8 px, and within 8 % for straight edges at any angle (see the tests).
//! * **Equivalent diameter**: the diameter of the disk of the same area.
//! * **Eccentricity**: of the ellipse with the same second central moments (as
//!   `skimage.measure.regionprops`): √(1 − λ₂/λ₁) for the eigenvalues λ₁ ≥ λ₂ of the
//!   moments' covariance; 0 for a disk, towards 1 for a line.
//! * **Solidity**: the pixels over the pixels of the convex hull, i.e. the lattice points
//!   inside the convex hull of the pixel centres, counted exactly with Pick's theorem
//!   (area + boundary points / 2 + 1). Exactly 1 for every digitally convex shape (any
//!   digitised disk or ellipse), where a hull of pixel corners would call a small disk a
//!   few % concave; less for dented ones.
//! * **Means** of the per-pixel values (model score, hematoxylin density) the tracker kept.

use super::components::{Pixels, Run};
use super::pixel_values::{hematoxylin_of, score_of};
use crate::convex_hull::convex_hull;

/// Measurements of one nucleus in mask pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Pixels.
    pub area: u64,
    /// Pixel-corner coordinates (a pixel's centre is its index + 0.5).
    pub centroid: (f64, f64),
    pub perimeter: f64,
    pub eccentricity: f64,
    pub solidity: f64,
    /// Mean model score; `None` when values were not kept.
    pub score_mean: Option<f64>,
    /// Mean hematoxylin optical density; `None` when values were not kept.
    pub hematoxylin_mean: Option<f64>,
}

/// Measures the nucleus made of `pixels` (runs sorted by row).
///
/// # Panics
/// If `pixels` has no runs.
pub fn measure(pixels: &Pixels) -> Shape {
    let runs = &pixels.runs;
    // Moments about the first run's start keep the sums small (exact in f64 for any
    // nucleus), whatever the slide coordinates.
    let (ox, oy) = (f64::from(runs[0].x0), runs[0].y as f64);
    let (mut n, mut sx, mut sy, mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    // Σ i² for i in 0..k.
    let squares_below = |k: f64| (k - 1.0) * k * (2.0 * k - 1.0) / 6.0;
    for run in runs {
        let len = run.len() as f64;
        let (a, y) = (f64::from(run.x0) - ox, run.y as f64 - oy);
        let b = a + len;
        let row_sx = (a + b - 1.0) * len / 2.0;
        n += len;
        sx += row_sx;
        sy += y * len;
        sxx += squares_below(b) - squares_below(a);
        syy += y * y * len;
        sxy += y * row_sx;
    }
    let (cx, cy) = (sx / n, sy / n);
    let (mu20, mu02, mu11) = (sxx / n - cx * cx, syy / n - cy * cy, sxy / n - cx * cy);
    let half_trace = (mu20 + mu02) / 2.0;
    let spread = ((mu20 - mu02).powi(2) / 4.0 + mu11 * mu11).sqrt();
    let (major, minor) = (half_trace + spread, (half_trace - spread).max(0.0));
    let eccentricity = if major > 0.0 {
        (1.0 - minor / major).sqrt()
    } else {
        0.0
    };

    let perimeter = crofton_perimeter(runs);
    let hull_pixels = lattice_points_in_hull(runs);
    let solidity = (n / hull_pixels as f64).min(1.0);
    let mean = |values: &mut dyn Iterator<Item = f64>| values.sum::<f64>() / n;
    let has_values = pixels.has_values();
    Shape {
        area: n as u64,
        centroid: (ox + cx + 0.5, oy + cy + 0.5),
        perimeter,
        eccentricity,
        solidity,
        score_mean: has_values
            .then(|| score_of(mean(&mut pixels.score.iter().map(|&q| f64::from(q))))),
        hematoxylin_mean: has_values
            .then(|| hematoxylin_of(mean(&mut pixels.hematoxylin.iter().map(|&q| f64::from(q))))),
    }
}

/// The unit sizes are reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LengthUnit {
    /// The slide records its microns per pixel.
    #[serde(rename = "µm")]
    Micron,
    /// It does not: sizes are in level-0 pixels.
    #[serde(rename = "level-0 px")]
    Level0Pixel,
}

impl LengthUnit {
    /// Suffix of CSV column names: `um` or `px`.
    pub fn ascii(self) -> &'static str {
        match self {
            Self::Micron => "um",
            Self::Level0Pixel => "px",
        }
    }

    /// As QuPath writes units in measurement names: `µm` or `px`.
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Micron => "µm",
            Self::Level0Pixel => "px",
        }
    }
}

/// How mask pixels convert to the units reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub unit: LengthUnit,
    /// Units per mask pixel.
    pub per_pixel: f64,
    /// Level-0 pixels per mask pixel (coordinates are always level-0 pixels).
    pub level0_per_pixel: f64,
}

impl Scale {
    /// Microns when the mask's `mpp` is known, level-0 pixels otherwise.
    pub fn new(mpp: Option<f64>, level0_per_pixel: f64) -> Self {
        match mpp {
            Some(mpp) => Self {
                unit: LengthUnit::Micron,
                per_pixel: mpp,
                level0_per_pixel,
            },
            None => Self {
                unit: LengthUnit::Level0Pixel,
                per_pixel: level0_per_pixel,
                level0_per_pixel,
            },
        }
    }
}

/// One nucleus as reported: the centroid in level-0 pixels, sizes in [`Scale::unit`]s.
/// Everything but area, centroid and equivalent diameter is `None` for a nucleus that was
/// not measured (too large to keep its pixels, or measurements off); the means also when
/// no values were kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurements {
    pub centroid: (f64, f64),
    pub area: f64,
    pub equivalent_diameter: f64,
    pub perimeter: Option<f64>,
    pub eccentricity: Option<f64>,
    pub solidity: Option<f64>,
    pub hematoxylin_mean: Option<f64>,
    pub score_mean: Option<f64>,
}

impl Measurements {
    /// A nucleus of `area` pixels centred at `centroid` (mask pixels), with its `shape`
    /// when it was measured.
    pub fn new(area: u64, centroid: (f64, f64), shape: Option<&Shape>, scale: &Scale) -> Self {
        let area_px = area as f64;
        Self {
            centroid: (
                centroid.0 * scale.level0_per_pixel,
                centroid.1 * scale.level0_per_pixel,
            ),
            area: area_px * scale.per_pixel * scale.per_pixel,
            equivalent_diameter: (4.0 * area_px / std::f64::consts::PI).sqrt() * scale.per_pixel,
            perimeter: shape.map(|s| s.perimeter * scale.per_pixel),
            eccentricity: shape.map(|s| s.eccentricity),
            solidity: shape.map(|s| s.solidity),
            hematoxylin_mean: shape.and_then(|s| s.hematoxylin_mean),
            score_mean: shape.and_then(|s| s.score_mean),
        }
    }
}

/// Crofton's perimeter of `runs` (sorted by row; see the module docs): boundary crossings
/// counted between each row and the one above it (empty rows around the object), with the
/// row above unshifted (columns) and shifted by one pixel either way (diagonals), plus two
/// per run along the rows.
fn crofton_perimeter(runs: &[Run]) -> f64 {
    let mut rows: Vec<&[Run]> = Vec::new();
    let mut start = 0;
    for k in 1..=runs.len() {
        if k == runs.len() || runs[k].y != runs[start].y {
            rows.push(&runs[start..k]);
            start = k;
        }
    }
    let along_rows = 2.0 * runs.len() as f64;
    let (mut columns, mut diagonals) = (0u64, 0u64);
    let mut above: &[Run] = &[];
    for (i, row) in rows.iter().enumerate() {
        if i > 0 && rows[i - 1][0].y + 1 != row[0].y {
            // A gap: the previous row meets background below, and this one above.
            let previous = rows[i - 1];
            columns += crossings(previous, &[], 0);
            diagonals += 2 * crossings(previous, &[], 0);
            above = &[];
        }
        columns += crossings(row, above, 0);
        diagonals += crossings(row, above, 1) + crossings(row, above, -1);
        above = row;
    }
    columns += crossings(above, &[], 0);
    diagonals += 2 * crossings(above, &[], 0);
    std::f64::consts::PI / 8.0
        * (along_rows + columns as f64 + diagonals as f64 * std::f64::consts::FRAC_1_SQRT_2)
}

/// Pixels where `row` and `other` shifted right by `shift` differ: the size of their
/// symmetric difference.
fn crossings(row: &[Run], other: &[Run], shift: i64) -> u64 {
    let total = |runs: &[Run]| runs.iter().map(|r| r.len() as u64).sum::<u64>();
    let (mut i, mut j, mut common) = (0, 0, 0u64);
    while i < row.len() && j < other.len() {
        let (a0, a1) = (i64::from(row[i].x0), i64::from(row[i].x1));
        let (b0, b1) = (
            i64::from(other[j].x0) + shift,
            i64::from(other[j].x1) + shift,
        );
        common += (a1.min(b1) - a0.max(b0)).max(0) as u64;
        if a1 < b1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    total(row) + total(other) - 2 * common
}

/// Lattice points (pixel centres, at integer coordinates here) inside or on the convex
/// hull of the pixels of `runs`, by Pick's theorem: twice the area plus the boundary points,
/// halved, plus one. Only the ends of each run can be hull vertices.
fn lattice_points_in_hull(runs: &[Run]) -> u64 {
    let points: Vec<(i64, i64)> = runs
        .iter()
        .flat_map(|r| {
            let y = r.y as i64;
            [(i64::from(r.x0), y), (i64::from(r.x1) - 1, y)]
        })
        .collect();
    let hull: Vec<(i64, i64)> = convex_hull(&points)
        .into_iter()
        .map(|i| points[i])
        .collect();
    let n = hull.len();
    if n < 3 {
        // A point or a segment: every lattice point on it.
        let (a, b) = (hull[0], hull[n - 1]);
        return gcd((b.0 - a.0).unsigned_abs(), (b.1 - a.1).unsigned_abs()) + 1;
    }
    let (mut twice_area, mut boundary) = (0i128, 0u64);
    for i in 0..n {
        let (p, q) = (hull[i], hull[(i + 1) % n]);
        twice_area += i128::from(p.0) * i128::from(q.1) - i128::from(q.0) * i128::from(p.1);
        boundary += gcd((q.0 - p.0).unsigned_abs(), (q.1 - p.1).unsigned_abs());
    }
    (twice_area.unsigned_abs() as u64 + boundary) / 2 + 1
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::components::Run;
    use std::f64::consts::PI;

    /// The pixels (as sorted runs) of `inside(x, y)` over a `size`² grid.
    fn shape(size: u32, inside: impl Fn(f64, f64) -> bool) -> Pixels {
        let mut runs = Vec::new();
        for y in 0..u64::from(size) {
            let mut x = 0;
            while x < size {
                if !inside(f64::from(x), y as f64) {
                    x += 1;
                    continue;
                }
                let x0 = x;
                while x < size && inside(f64::from(x), y as f64) {
                    x += 1;
                }
                runs.push(Run {
                    y,
                    x0,
                    x1: x,
                    at: 0,
                });
            }
        }
        Pixels {
            runs,
            ..Pixels::default()
        }
    }

    fn measured(pixels: &Pixels) -> Shape {
        measure(pixels)
    }

    #[test]
    fn a_disk() {
        // Crofton perimeters of these digitised disks from skimage 0.26
        // (`measure.perimeter_crofton(disk, 4)`), and the disks' 2πr.
        for (r, crofton) in [(8.0f64, 52.250114), (20.0, 127.713731), (40.0, 252.745945)] {
            let c = r + 3.0;
            let disk = shape((2.0 * c) as u32, |x, y| {
                (x - c).powi(2) + (y - c).powi(2) <= r * r
            });
            let m = measured(&disk);
            let area = m.area as f64;
            assert!(
                (area / (PI * r * r) - 1.0).abs() < 0.03,
                "r {r}: area {area}"
            );
            assert_eq!(m.centroid, (c + 0.5, c + 0.5), "r {r}");
            assert!(
                (m.perimeter - crofton).abs() < 1e-5,
                "r {r}: {}",
                m.perimeter
            );
            // Pixels reach half a pixel beyond r: 2π(r + ½) bounds it from above.
            let circle = 2.0 * PI * r;
            assert!(m.perimeter > circle && m.perimeter < circle + PI, "r {r}");
            assert!(
                m.eccentricity < 1e-6,
                "r {r}: eccentricity {}",
                m.eccentricity
            );
            assert_eq!(
                m.solidity, 1.0,
                "r {r}: a digitised disk is digitally convex"
            );
            assert_eq!((m.score_mean, m.hematoxylin_mean), (None, None));
            let scale = Scale::new(Some(0.5), 2.0);
            let reported = Measurements::new(m.area, m.centroid, Some(&m), &scale);
            assert!((reported.equivalent_diameter - (area / PI).sqrt()).abs() < 1e-12);
            assert_eq!(reported.area, area * 0.25);
            assert_eq!(reported.centroid, (2.0 * c + 1.0, 2.0 * c + 1.0));
            assert_eq!(reported.perimeter, Some(m.perimeter * 0.5));
        }
    }

    #[test]
    fn an_ellipse() {
        // Semi-axes 30 and 15 along x and y: eccentricity √(1 − (15/30)²) = 0.866 (skimage's
        // regionprops: 0.868820 for this digitisation).
        let (a, b, c) = (30.0f64, 15.0f64, 34.0f64);
        let ellipse = shape(68, |x, y| {
            ((x - c) / a).powi(2) + ((y - c) / b).powi(2) <= 1.0
        });
        let m = measured(&ellipse);
        assert_eq!(m.area, 1407);
        assert!(
            (m.eccentricity - 0.868820).abs() < 1e-6,
            "{}",
            m.eccentricity
        );
        // skimage's Crofton perimeter, 1 % above Ramanujan's 145.33 for the true ellipse.
        assert!((m.perimeter - 146.674920).abs() < 1e-5, "{}", m.perimeter);
        assert_eq!(m.solidity, 1.0);
    }

    #[test]
    fn an_l_shape_is_not_solid() {
        // A 40×10 bar with a 10×30 leg under its left end: 700 pixels in a hull that cuts
        // the corner between the bar's right end and the leg's foot.
        let l = shape(50, |x, y| (x < 40.0 && y < 10.0) || (x < 10.0 && y < 40.0));
        let m = measured(&l);
        assert_eq!(m.area, 700);
        // The hull of the pixel centres: (0, 0), (39, 0), (39, 9), (9, 39), (0, 39), of
        // area 39² − 30²/2 = 1071 with 39 + 9 + 30 + 9 + 39 = 126 lattice points on its
        // boundary: 1071 + 63 + 1 = 1135 pixels by Pick's theorem (the continuous L: 0.609).
        assert_eq!(m.solidity, 700.0 / 1135.0);
        // A rectangle is convex however it is digitised.
        let rect = shape(20, |x, y| {
            (2.0..17.0).contains(&x) && (5.0..9.0).contains(&y)
        });
        let r = measured(&rect);
        assert_eq!(r.solidity, 1.0);
        // Crofton on a 15×4 rectangle: 8 crossings along rows, 30 along columns, 36 along
        // each diagonal (18 diagonals): π/8 (38 + 72/√2), 8 % short of 38.
        let crofton = PI / 8.0 * (38.0 + 72.0 * std::f64::consts::FRAC_1_SQRT_2);
        assert!((r.perimeter - crofton).abs() < 1e-9, "{}", r.perimeter);
        // skimage: 34.915538.
        assert!((r.perimeter - 34.915538).abs() < 1e-5);
        assert!((r.perimeter / 38.0 - 1.0).abs() < 0.085);
    }

    #[test]
    fn values_are_averaged_over_the_pixels() {
        let mut pixels = shape(4, |x, y| x < 2.0 && y < 2.0);
        pixels.score = vec![255, 255, 0, 0];
        pixels.hematoxylin = vec![100, 200, 300, 400];
        let m = measured(&pixels);
        assert_eq!(m.score_mean, Some(0.5));
        assert!((m.hematoxylin_mean.unwrap() - 0.25).abs() < 1e-12);
        // A single pixel: two crossings in each of the four directions.
        let dot = shape(3, |x, y| x == 1.0 && y == 1.0);
        let d = measured(&dot);
        assert_eq!((d.area, d.eccentricity, d.solidity), (1, 0.0, 1.0));
        let crofton = PI / 8.0 * (4.0 + 4.0 * std::f64::consts::FRAC_1_SQRT_2);
        assert!((d.perimeter - crofton).abs() < 1e-12, "{}", d.perimeter);
    }
}
