//! Binary morphology with disk footprints, and the nuclei mask post-processing built on it;
//! removing small regions and filling holes.
//!
//! Semantics follow scikit-image: [`disk`] is `skimage.morphology.disk`, and [`erode`] /
//! [`dilate`] are `binary_erosion` / `binary_dilation`, where pixels outside the image are
//! ignored (they count as foreground for erosion and as background for dilation). Masks are
//! row-major `u8` slices, nonzero meaning foreground; results hold 0 and 1.
//!
//! This runs on every pixel of gigapixel slides, so masks are bit-packed into `u64` words (64
//! pixels a word). A disk is a stack of horizontal runs symmetric about its centre column, so
//! erosion is the AND, over the disk's rows, of each input row eroded horizontally by that
//! row's run half-width (dilation is the same with OR). Horizontal erosions of every half-width
//! are built by repeatedly eroding by one pixel on each side, and kept in a small ring of rows,
//! so one pass touches each input row once and allocates nothing per row.

use crate::stain_recut::StainRecut;

/// The scale the post-processing was tuned at (MoNuSeg's 0.25 µm/px), where its disks have
/// radii 3 and 1 px.
pub const POSTPROCESS_TUNED_MPP: f64 = 0.25;

/// Radius of the first opening and closing disk: 3 px at [`POSTPROCESS_TUNED_MPP`].
pub const LARGE_DISK_UM: f64 = 0.75;

/// Radius of the second opening and closing disk: 1 px at [`POSTPROCESS_TUNED_MPP`].
pub const SMALL_DISK_UM: f64 = 0.25;

/// [`Postprocess::reach`] at [`POSTPROCESS_TUNED_MPP`]: 3+3+3+3 + 1+1+1+1 = 16 px.
pub const POSTPROCESS_REACH: u32 = 16;

/// A symmetric, convex structuring element made of one horizontal run per row, such as
/// [`disk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    /// For each row offset `dy` in `-r..=r` (at index `dy + r`), the run covers `dx` in
    /// `-half_width..=half_width`.
    half_widths: Vec<usize>,
}

impl Footprint {
    /// Half the height of the footprint: it spans row offsets `-radius..=radius`.
    pub fn radius(&self) -> usize {
        self.half_widths.len() / 2
    }

    /// The half-width of the run of each row offset `dy` in `-radius..=radius`, at index
    /// `dy + radius`.
    pub fn half_widths(&self) -> &[usize] {
        &self.half_widths
    }

    /// Whether the offset (`dy` rows, `dx` columns) from the centre is in the footprint.
    pub fn contains(&self, dy: isize, dx: isize) -> bool {
        let row = dy.checked_add_unsigned(self.radius()).map(usize::try_from);
        match row {
            Some(Ok(row)) => self
                .half_widths
                .get(row)
                .is_some_and(|&half| dx.unsigned_abs() <= half),
            _ => false,
        }
    }
}

/// The disk of the given radius, exactly `skimage.morphology.disk(radius)`: every offset with
/// `dx² + dy² <= radius²` (`disk(0)` is the single centre pixel, `disk(1)` the 3×3 cross).
pub fn disk(radius: usize) -> Footprint {
    disk_of_half_pixels(2 * radius)
}

/// The disk of `radius_um` microns on pixels of `mpp` µm: every offset within the radius in
/// pixels, rounded to the nearest half pixel. Half pixels matter (1.5 px is the 3×3 square,
/// 1 px the cross), and the rounding absorbs scanners' approximate scales: 0.75 µm is
/// `disk(3)` at 0.25 and at 0.2527 µm/px alike.
///
/// # Panics
/// If `mpp` or `radius_um` is not positive and finite.
pub fn disk_in_microns(radius_um: f64, mpp: f64) -> Footprint {
    assert!(
        mpp > 0.0 && mpp.is_finite() && radius_um >= 0.0 && radius_um.is_finite(),
        "disk of {radius_um} µm at {mpp} µm/px"
    );
    disk_of_half_pixels((2.0 * radius_um / mpp).round() as usize)
}

/// Every offset with `dx² + dy² <= (twice_radius / 2)²`.
fn disk_of_half_pixels(twice_radius: usize) -> Footprint {
    // u128 so that squaring cannot overflow whatever the radius.
    let r2 = (twice_radius as u128).pow(2);
    let inside = |dx: usize, dy: usize| 4 * ((dx as u128).pow(2) + (dy as u128).pow(2)) <= r2;
    let radius = twice_radius / 2;
    let mut half = radius;
    // Runs shrink as |dy| grows, so the half-width only ever steps down.
    let upper: Vec<usize> = (0..=radius)
        .map(|dy| {
            while !inside(half, dy) {
                half -= 1;
            }
            half
        })
        .collect();
    let half_widths = upper.iter().rev().chain(&upper[1..]).copied().collect();
    Footprint { half_widths }
}

/// Binary erosion by `footprint`; pixels outside the image count as foreground.
///
/// # Panics
/// If `mask.len()` is not `width * height`.
pub fn erode(mask: &[u8], width: usize, height: usize, footprint: &Footprint) -> Vec<u8> {
    run(mask, width, height, &[(Op::Erode, footprint)])
}

/// Binary dilation by `footprint`; pixels outside the image count as background.
///
/// # Panics
/// If `mask.len()` is not `width * height`.
pub fn dilate(mask: &[u8], width: usize, height: usize, footprint: &Footprint) -> Vec<u8> {
    run(mask, width, height, &[(Op::Dilate, footprint)])
}

/// Binary opening: [`dilate`] of [`erode`]. Removes foreground the footprint does not fit in.
///
/// # Panics
/// If `mask.len()` is not `width * height`.
pub fn open(mask: &[u8], width: usize, height: usize, footprint: &Footprint) -> Vec<u8> {
    run(
        mask,
        width,
        height,
        &[(Op::Erode, footprint), (Op::Dilate, footprint)],
    )
}

/// Binary closing: [`erode`] of [`dilate`]. Fills background the footprint does not fit in.
///
/// # Panics
/// If `mask.len()` is not `width * height`.
pub fn close(mask: &[u8], width: usize, height: usize, footprint: &Footprint) -> Vec<u8> {
    run(
        mask,
        width,
        height,
        &[(Op::Dilate, footprint), (Op::Erode, footprint)],
    )
}

/// The nuclei mask post-processing at one scale: opening with the disk of [`LARGE_DISK_UM`],
/// closing with it, opening with the disk of [`SMALL_DISK_UM`], then closing with it (the
/// paper's `disk(3)` and `disk(1)` at 0.25 µm/px). The radii are in microns so that a 20×
/// mask is cleaned like a 40× one: at 0.5 µm/px they are 1.5 px (the 3×3 square) and 0.5 px
/// (the pixel itself, so the second pair does nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct Postprocess {
    large: Footprint,
    small: Footprint,
    /// Fill holes up to this extent in pixels before the opening (see
    /// [`Postprocess::filling_holes_up_to`]).
    hole_extent: Option<usize>,
    /// Re-cut the mask's edges by the hematoxylin before anything else (see
    /// [`Postprocess::recutting_by_stain`]).
    recut: Option<StainRecut>,
}

impl Postprocess {
    /// The disks on pixels of `mpp` µm.
    ///
    /// # Panics
    /// If `mpp` is not positive and finite.
    pub fn at_mpp(mpp: f64) -> Self {
        Self {
            large: disk_in_microns(LARGE_DISK_UM, mpp),
            small: disk_in_microns(SMALL_DISK_UM, mpp),
            hole_extent: None,
            recut: None,
        }
    }

    /// The same, first re-cutting the mask's edges by the hematoxylin density around them
    /// ([`StainRecut`]) on pixels of `mpp` µm; [`Postprocess::apply`] then needs the
    /// density.
    pub fn recutting_by_stain(self, mpp: f64) -> Self {
        Self {
            recut: Some(StainRecut::at_mpp(mpp)),
            ..self
        }
    }

    /// The stain re-cut, if the mask is re-cut.
    pub fn stain_recut(&self) -> Option<&StainRecut> {
        self.recut.as_ref()
    }

    /// The same, first filling every hole of the mask that fits in a square of `extent_um`
    /// on pixels of `mpp` µm (for masks of models taught hole-filled nuclei).
    pub fn filling_holes_up_to(self, extent_um: f64, mpp: f64) -> Self {
        Self {
            hole_extent: Some((extent_um / mpp).round() as usize),
            ..self
        }
    }

    /// The largest hole filled, in pixels, if holes are filled.
    pub fn hole_extent_px(&self) -> Option<usize> {
        self.hole_extent
    }

    /// The two disks' radii in pixels (rounded down to whole rows).
    pub fn radii_px(&self) -> [usize; 2] {
        [self.large.radius(), self.small.radius()]
    }

    /// How far (Chebyshev distance, in pixels) the input can influence one output pixel.
    ///
    /// Each of the 8 erode/dilate passes reads within its disk's radius, which fits in the
    /// square of that half-size: 4 × large + 4 × small (16 px at 0.25 µm/px); hole filling
    /// before them reads up to its extent + 1, and the stain re-cut before that its own
    /// [`StainRecut::reach`]. So tiles post-processed with a margin of at least this many
    /// pixels on every side that is not the slide's edge give exactly the same pixels as
    /// post-processing the whole slide.
    pub fn reach(&self) -> u32 {
        let filling = self.hole_extent.map_or(0, |extent| extent + 1);
        let recut = self.recut.as_ref().map_or(0, StainRecut::reach);
        (4 * (self.large.radius() + self.small.radius()) + filling) as u32 + recut
    }

    /// The cleaned mask (0/1). `density` is the mask's [`StainRecut::smoothed_density`],
    /// read only when the mask is re-cut by stain.
    ///
    /// # Panics
    /// If `mask.len()` is not `width * height`, or the mask is re-cut and `density` is
    /// `None`.
    pub fn apply(
        &self,
        mask: &[u8],
        width: usize,
        height: usize,
        density: Option<&[u16]>,
    ) -> Vec<u8> {
        let recut = self.recut.as_ref().map(|recut| {
            let density = density.expect("the stain re-cut needs the mask's density");
            recut.apply(mask, density, width, height)
        });
        let mask = recut.as_deref().unwrap_or(mask);
        let filled = self.hole_extent.map(|extent| {
            let mut filled: Vec<u8> = mask.iter().map(|&v| if v != 0 { 255 } else { 0 }).collect();
            fill_holes_within(&mut filled, width, height, extent);
            filled
        });
        let (big, small) = (&self.large, &self.small);
        run(
            filled.as_deref().unwrap_or(mask),
            width,
            height,
            &[
                (Op::Erode, big),
                (Op::Dilate, big),
                (Op::Dilate, big),
                (Op::Erode, big),
                (Op::Erode, small),
                (Op::Dilate, small),
                (Op::Dilate, small),
                (Op::Erode, small),
            ],
        )
    }
}

/// [`Postprocess`] at [`POSTPROCESS_TUNED_MPP`]: opening and closing with `disk(3)`, then
/// with `disk(1)`.
///
/// # Panics
/// If `mask.len()` is not `width * height`.
pub fn postprocess(mask: &[u8], width: usize, height: usize) -> Vec<u8> {
    Postprocess::at_mpp(POSTPROCESS_TUNED_MPP).apply(mask, width, height, None)
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Erode,
    Dilate,
}

/// Applies `steps` in order, packing the mask once and unpacking it once.
fn run(mask: &[u8], width: usize, height: usize, steps: &[(Op, &Footprint)]) -> Vec<u8> {
    assert!(
        width.checked_mul(height) == Some(mask.len()),
        "mask of {} pixels is not {width}x{height}",
        mask.len()
    );
    if mask.is_empty() {
        return Vec::new();
    }
    let mut src = Packed::pack(mask, width, height);
    let mut dst = Packed {
        width,
        height,
        words: src.words,
        bits: vec![0; src.bits.len()],
    };
    let mut ring = Vec::new();
    for &(op, footprint) in steps {
        match op {
            Op::Erode => pass::<true>(&src, &mut dst, footprint, &mut ring),
            Op::Dilate => pass::<false>(&src, &mut dst, footprint, &mut ring),
        }
        std::mem::swap(&mut src, &mut dst);
    }
    src.unpack()
}

/// A bit-packed mask: row `y` is `bits[y * words..(y + 1) * words]`, pixel `x` is bit `x % 64`
/// of word `x / 64`. Bits past `width` in a row's last word are unspecified.
struct Packed {
    width: usize,
    height: usize,
    words: usize,
    bits: Vec<u64>,
}

impl Packed {
    fn pack(mask: &[u8], width: usize, height: usize) -> Packed {
        let words = width.div_ceil(64);
        let mut bits = vec![0; words * height];
        for (row, out) in mask.chunks_exact(width).zip(bits.chunks_exact_mut(words)) {
            for (pixels, word) in row.chunks(64).zip(out) {
                *word = pack_word(pixels);
            }
        }
        Packed {
            width,
            height,
            words,
            bits,
        }
    }

    fn unpack(&self) -> Vec<u8> {
        let mut mask = vec![0; self.width * self.height];
        for (row, packed) in mask
            .chunks_exact_mut(self.width)
            .zip(self.bits.chunks_exact(self.words))
        {
            for (pixels, word) in row.chunks_mut(64).zip(packed) {
                for (out, byte) in pixels.chunks_mut(8).zip(word.to_le_bytes()) {
                    let spread = SPREAD[usize::from(byte)].to_le_bytes();
                    out.copy_from_slice(&spread[..out.len()]);
                }
            }
        }
        mask
    }
}

/// Packs up to 64 pixels into the low bits of a word.
fn pack_word(pixels: &[u8]) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut word = 0;
    let mut octets = pixels.chunks_exact(8);
    for (i, octet) in octets.by_ref().enumerate() {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(octet);
        let v = u64::from_le_bytes(bytes);
        // Top bit of each byte set iff the byte is nonzero (the low 7 bits cannot carry out).
        let nonzero = (((v & LOW7) + LOW7) | v) & !LOW7;
        // The multiply gathers bit 8i of the shifted flags into bit 56 + i, with no carries.
        let flags = (nonzero >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        word |= flags << (8 * i);
    }
    let done = pixels.len() - octets.remainder().len();
    for (i, &p) in octets.remainder().iter().enumerate() {
        word |= u64::from(p != 0) << (done + i);
    }
    word
}

/// `SPREAD[b]` has byte `i` equal to bit `i` of `b`: unpacks 8 pixels with one lookup.
const SPREAD: [u64; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 256 {
        let mut i = 0;
        while i < 8 {
            table[b] |= ((b as u64 >> i) & 1) << (8 * i);
            i += 1;
        }
        b += 1;
    }
    table
};

/// AND for erosion, OR for dilation.
#[inline(always)]
fn combine<const ERODE: bool>(a: u64, b: u64) -> u64 {
    if ERODE {
        a & b
    } else {
        a | b
    }
}

/// The value pixels outside the image take: foreground for erosion, background for dilation.
/// It is also the identity of [`combine`], so rows outside the image can simply be skipped.
#[inline(always)]
fn outside<const ERODE: bool>() -> u64 {
    if ERODE {
        !0
    } else {
        0
    }
}

/// One erosion (`ERODE`) or dilation of `src` by `footprint` into `dst`, of the same size.
///
/// `ring` is scratch: for the last `2r + 1` input rows it holds each row eroded (dilated)
/// horizontally by every half-width `0..=r`.
fn pass<const ERODE: bool>(
    src: &Packed,
    dst: &mut Packed,
    footprint: &Footprint,
    ring: &mut Vec<u64>,
) {
    let n = src.words;
    let r = footprint.radius();
    let slots = 2 * r + 1;
    let levels = r + 1;
    let row_len = levels * n;
    ring.clear();
    ring.resize(slots * row_len, 0);
    // Bits past the width must read as outside pixels before the horizontal passes. Beyond
    // the last word, `widen` shifts in outside pixels itself.
    let tail = src.width % 64;
    let padding = if tail == 0 { 0 } else { !0u64 << tail };

    let mut next_row = 0;
    for y in 0..src.height {
        // Bring in input rows up to y + r; the slot reused last held row y - r - 1.
        while next_row < src.height && next_row <= y + r {
            let slot = &mut ring[(next_row % slots) * row_len..][..row_len];
            let (first, wider) = slot.split_at_mut(n);
            first.copy_from_slice(&src.bits[next_row * n..][..n]);
            if let Some(last) = first.last_mut() {
                *last = if ERODE {
                    *last | padding
                } else {
                    *last & !padding
                };
            }
            let mut narrower: &[u64] = first;
            for level in wider.chunks_exact_mut(n) {
                widen::<ERODE>(narrower, level);
                narrower = level;
            }
            next_row += 1;
        }
        let out = &mut dst.bits[y * n..][..n];
        out.fill(outside::<ERODE>());
        let top = y.saturating_sub(r);
        let bottom = (y + r).min(src.height - 1);
        for row in top..=bottom {
            // |row - y| <= r, so this indexes the footprint's run for that row offset.
            let half = footprint.half_widths[row + r - y];
            let level = &ring[(row % slots) * row_len + half * n..][..n];
            for (o, &v) in out.iter_mut().zip(level) {
                *o = combine::<ERODE>(*o, v);
            }
        }
    }
}

/// Erodes (dilates) a packed row horizontally by one pixel on each side: each pixel combines
/// itself with its left and right neighbours, pixels beyond the row reading as outside.
///
/// Applied to a row already eroded by half-width `h`, this gives half-width `h + 1`. Bits past
/// the image width may come out wrong, but only ever towards the outside value, which the
/// in-image pixel next to them already accounts for, so in-image pixels stay exact.
fn widen<const ERODE: bool>(row: &[u64], out: &mut [u64]) {
    let mut previous = outside::<ERODE>();
    for (j, (o, &word)) in out.iter_mut().zip(row).enumerate() {
        let next = row.get(j + 1).copied().unwrap_or(outside::<ERODE>());
        let left = (word << 1) | (previous >> 63);
        let right = (word >> 1) | (next << 63);
        *o = combine::<ERODE>(word, combine::<ERODE>(left, right));
        previous = word;
    }
}

/// What the flood fill knows of one 4-connected region.
struct Region {
    area: usize,
    /// Width and height of its bounding box.
    extent: (usize, usize),
    touches_border: bool,
}

/// Flips every 4-connected region of `value` for which `flip` says so to the other value
/// (255 ↔ 0; unlike the rest of this module, the mask holds exactly 0 and 255).
fn flip_regions(data: &mut [u8], w: usize, h: usize, value: u8, flip: impl Fn(&Region) -> bool) {
    let mut seen = vec![false; w * h];
    let mut stack = Vec::new();
    let mut members = Vec::new();
    for start in 0..w * h {
        if seen[start] || data[start] != value {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        members.clear();
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        while let Some(i) = stack.pop() {
            members.push(i);
            let (x, y) = (i % w, i / w);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            let neighbours = [
                (x > 0).then(|| i - 1),
                (x + 1 < w).then(|| i + 1),
                (y > 0).then(|| i - w),
                (y + 1 < h).then(|| i + w),
            ];
            for j in neighbours.into_iter().flatten() {
                if !seen[j] && data[j] == value {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        let region = Region {
            area: members.len(),
            extent: (x1 - x0 + 1, y1 - y0 + 1),
            touches_border: x0 == 0 || y0 == 0 || x1 == w - 1 || y1 == h - 1,
        };
        if flip(&region) {
            for &i in &members {
                data[i] = 255 - value;
            }
        }
    }
}

/// Flips every 4-connected region of `value` smaller than `min_area` pixels to the other
/// value (255 ↔ 0; the mask holds exactly 0 and 255). With `spare_border`, regions touching
/// the image edge are kept: a background region there is glass around the tissue, not a
/// hole in it.
pub fn remove_small_regions(
    data: &mut [u8],
    w: usize,
    h: usize,
    value: u8,
    min_area: usize,
    spare_border: bool,
) {
    flip_regions(data, w, h, value, |region| {
        region.area < min_area && !(spare_border && region.touches_border)
    });
}

/// Fills every hole of a 0/255 `mask`: 4-connected background regions that do not touch the
/// image edge become foreground (as `scipy.ndimage.binary_fill_holes`).
pub fn fill_holes(mask: &mut [u8], width: usize, height: usize) {
    remove_small_regions(mask, width, height, 0, usize::MAX, true);
}

/// Fills the holes of a 0/255 `mask` that fit in a `max_extent`-pixel square: a decision
/// that reads no further than `max_extent + 1` pixels from a hole, so tiles with that much
/// margin fill exactly what the whole image would.
pub fn fill_holes_within(mask: &mut [u8], width: usize, height: usize, max_extent: usize) {
    flip_regions(mask, width, height, 0, |region| {
        !region.touches_border && region.extent.0 <= max_extent && region.extent.1 <= max_extent
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn grid(rows: &[&str]) -> Vec<u8> {
        rows.iter()
            .flat_map(|r| r.chars().map(|c| if c == '#' { 255 } else { 0 }))
            .collect()
    }

    #[test]
    fn holes_are_filled_but_bays_open_to_the_border_are_not() {
        let mut mask = grid(&[
            "......", //
            ".###..", //
            ".#.#..", //
            ".###.#", //
            ".....#", //
            "....#.", //
        ]);
        let expected = grid(&[
            "......", //
            ".###..", //
            ".###..", //
            ".###.#", //
            ".....#", //
            "....#.", //
        ]);
        fill_holes(&mut mask, 6, 6);
        assert_eq!(mask, expected);
        // A diagonal gap does not connect background (4-connected): the hole is closed.
        let mut diagonal = grid(&["###", "#.#", "##."]);
        fill_holes(&mut diagonal, 3, 3);
        assert_eq!(diagonal, grid(&["###", "###", "##."]));
    }

    /// Brute force over the disk's offsets, straight from the definition.
    fn naive(mask: &[u8], width: usize, height: usize, radius: usize, op: Op) -> Vec<u8> {
        let r = radius as isize;
        let at = |y: isize, x: isize| -> bool {
            if (0..height as isize).contains(&y) && (0..width as isize).contains(&x) {
                mask[y as usize * width + x as usize] != 0
            } else {
                matches!(op, Op::Erode)
            }
        };
        let mut out = vec![0; mask.len()];
        for y in 0..height as isize {
            for x in 0..width as isize {
                let mut offsets = (-r..=r)
                    .flat_map(|dy| (-r..=r).map(move |dx| (dy, dx)))
                    .filter(|&(dy, dx)| dy * dy + dx * dx <= r * r);
                let hit = match op {
                    Op::Erode => offsets.all(|(dy, dx)| at(y + dy, x + dx)),
                    Op::Dilate => offsets.any(|(dy, dx)| at(y + dy, x + dx)),
                };
                out[y as usize * width + x as usize] = u8::from(hit);
            }
        }
        out
    }

    fn naive_steps(mask: &[u8], width: usize, height: usize, steps: &[(Op, usize)]) -> Vec<u8> {
        steps.iter().fold(mask.to_vec(), |m, &(op, radius)| {
            naive(&m, width, height, radius, op)
        })
    }

    /// Noise of the given density, with arbitrary nonzero byte values for foreground.
    fn noise(rng: &mut ChaCha8Rng, len: usize, density: f64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                if rng.random_bool(density) {
                    rng.random_range(1..=255)
                } else {
                    0
                }
            })
            .collect()
    }

    /// Filled circles of radius 2..12 plus 5 % salt-and-pepper noise: nuclei-like masks that
    /// post-processing changes but does not wipe out.
    fn blobs(rng: &mut ChaCha8Rng, width: usize, height: usize) -> Vec<u8> {
        let mut mask = vec![0u8; width * height];
        for _ in 0..(width * height / 300).max(1) {
            let (cx, cy) = (rng.random_range(0..width), rng.random_range(0..height));
            let r = rng.random_range(2..12usize);
            for y in cy.saturating_sub(r)..(cy + r + 1).min(height) {
                for x in cx.saturating_sub(r)..(cx + r + 1).min(width) {
                    if x.abs_diff(cx).pow(2) + y.abs_diff(cy).pow(2) <= r * r {
                        mask[y * width + x] = 1;
                    }
                }
            }
        }
        for m in &mut mask {
            if rng.random_bool(0.05) {
                *m ^= 1;
            }
        }
        mask
    }

    const SIZES: [(usize, usize); 14] = [
        (1, 1),
        (1, 17),
        (17, 1),
        (7, 13),
        (13, 7),
        (64, 64),
        (65, 130),
        (130, 65),
        (200, 3),
        (3, 200),
        (128, 9),
        (63, 5),
        (129, 11),
        (2, 2),
    ];

    #[test]
    fn disk_matches_formula() {
        for radius in 0..=12usize {
            let fp = disk(radius);
            assert_eq!(fp.radius(), radius);
            assert_eq!(fp.half_widths().len(), 2 * radius + 1);
            let r = radius as isize;
            for dy in -r - 2..=r + 2 {
                for dx in -r - 2..=r + 2 {
                    assert_eq!(
                        fp.contains(dy, dx),
                        dy * dy + dx * dx <= r * r,
                        "disk({radius}) at ({dy}, {dx})"
                    );
                }
            }
        }
        assert_eq!(disk(0).half_widths(), &[0]);
        assert_eq!(disk(1).half_widths(), &[0, 1, 0]);
        assert_eq!(disk(3).half_widths(), &[0, 2, 2, 3, 2, 2, 0]);
        assert!(!disk(2).contains(isize::MIN, 0));
        assert!(!disk(2).contains(isize::MAX, 0));
        assert!(!disk(2).contains(0, isize::MIN));
    }

    #[test]
    fn single_operations_match_brute_force() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (width, height) in SIZES {
            for density in [0.0, 0.1, 0.5, 0.8, 0.97, 1.0] {
                let mask = noise(&mut rng, width * height, density);
                for radius in 0..=5 {
                    let fp = disk(radius);
                    let case = format!("{width}x{height}, density {density}, radius {radius}");
                    let (e, d) = ((Op::Erode, radius), (Op::Dilate, radius));
                    assert_eq!(
                        erode(&mask, width, height, &fp),
                        naive_steps(&mask, width, height, &[e]),
                        "erode {case}"
                    );
                    assert_eq!(
                        dilate(&mask, width, height, &fp),
                        naive_steps(&mask, width, height, &[d]),
                        "dilate {case}"
                    );
                    assert_eq!(
                        open(&mask, width, height, &fp),
                        naive_steps(&mask, width, height, &[e, d]),
                        "open {case}"
                    );
                    assert_eq!(
                        close(&mask, width, height, &fp),
                        naive_steps(&mask, width, height, &[d, e]),
                        "close {case}"
                    );
                }
            }
        }
    }

    /// A 2×2 hole and a 5×5 one: with an extent of 3 only the first is filled; a bay open
    /// to the border never is. Tiles of a blob mask with `reach` margin give the whole
    /// mask's pixels.
    #[test]
    fn bounded_hole_filling_fills_small_holes_only_and_is_local() {
        let mut mask = grid(&[
            "##########", //
            "#..######.", //
            "#..#.....#", //
            "####.....#", //
            "#...#....#", //
            "#...#....#", //
            "#...######", //
        ]);
        fill_holes_within(&mut mask, 10, 7, 3);
        let expected = grid(&[
            "##########", //
            "#########.", //
            "####.....#", //
            "####.....#", //
            "#...#....#", //
            "#...#....#", //
            "#...######", //
        ]);
        assert_eq!(mask, expected);

        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (width, height) = (160, 120);
        let blobs = blobs(&mut rng, width, height);
        let post = Postprocess::at_mpp(0.25).filling_holes_up_to(2.0, 0.25);
        assert_eq!(post.hole_extent_px(), Some(8));
        let whole = post.apply(&blobs, width, height, None);
        assert_ne!(
            whole,
            Postprocess::at_mpp(0.25).apply(&blobs, width, height, None)
        );
        let reach = post.reach() as usize;
        for (x0, y0, w, h) in [
            (40usize, 30usize, 50, 40),
            (0, 0, 70, 60),
            (100, 70, 60, 50),
        ] {
            // The tile's window: its core plus `reach` on every side inside the image.
            let (wx0, wy0) = (x0.saturating_sub(reach), y0.saturating_sub(reach));
            let (wx1, wy1) = ((x0 + w + reach).min(width), (y0 + h + reach).min(height));
            let window: Vec<u8> = (wy0..wy1)
                .flat_map(|y| blobs[y * width + wx0..y * width + wx1].to_vec())
                .collect();
            let tiled = post.apply(&window, wx1 - wx0, wy1 - wy0, None);
            for y in y0..y0 + h {
                for x in x0..x0 + w {
                    let at_window = (y - wy0) * (wx1 - wx0) + (x - wx0);
                    assert_eq!(tiled[at_window], whole[y * width + x], "({x},{y})");
                }
            }
        }
    }

    #[test]
    fn postprocess_matches_brute_force() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let steps = [
            (Op::Erode, 3),
            (Op::Dilate, 3),
            (Op::Dilate, 3),
            (Op::Erode, 3),
            (Op::Erode, 1),
            (Op::Dilate, 1),
            (Op::Dilate, 1),
            (Op::Erode, 1),
        ];
        for (width, height) in SIZES.into_iter().chain([(150, 97)]) {
            let mask = blobs(&mut rng, width, height);
            assert_eq!(
                postprocess(&mask, width, height),
                naive_steps(&mask, width, height, &steps),
                "{width}x{height}"
            );
        }
    }

    #[test]
    fn postprocess_reach_bounds_dependence() {
        let (width, height) = (190, 170);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mask = blobs(&mut rng, width, height);
        let whole = postprocess(&mask, width, height);
        let foreground = whole.iter().filter(|&&v| v != 0).count();
        assert!(foreground > 1000 && foreground < width * height - 1000);

        let reach = POSTPROCESS_REACH as usize;
        // Windows (x0, y0, x1, y1): interior, on each edge, in each corner, and the whole.
        let mut windows = vec![
            (60, 50, 130, 120),
            (0, 40, 50, 90),
            (150, 40, width, 90),
            (40, 0, 90, 30),
            (40, 140, 90, height),
            (0, 0, 40, 40),
            (150, 0, width, 40),
            (0, 130, 40, height),
            (150, 130, width, height),
            (0, 0, width, height),
            (16, 16, width - 16, height - 16),
            (17, 17, 18, 18),
        ];
        for _ in 0..40 {
            let (x0, y0) = (rng.random_range(0..width), rng.random_range(0..height));
            let (x1, y1) = (
                rng.random_range(x0 + 1..=width),
                rng.random_range(y0 + 1..=height),
            );
            windows.push((x0, y0, x1, y1));
        }
        for (x0, y0, x1, y1) in windows {
            // The crop extends `reach` px around the window, or to the image edge if nearer.
            let (cx0, cy0) = (x0.saturating_sub(reach), y0.saturating_sub(reach));
            let (cx1, cy1) = ((x1 + reach).min(width), (y1 + reach).min(height));
            let cw = cx1 - cx0;
            let crop: Vec<u8> = (cy0..cy1)
                .flat_map(|y| &mask[y * width + cx0..y * width + cx1])
                .copied()
                .collect();
            let tile = postprocess(&crop, cw, cy1 - cy0);
            for y in y0..y1 {
                let got = &tile[(y - cy0) * cw + x0 - cx0..][..x1 - x0];
                let want = &whole[y * width + x0..][..x1 - x0];
                assert_eq!(got, want, "window {:?} row {y}", (x0, y0, x1, y1));
            }
        }
    }

    #[test]
    fn reach_is_at_least_twelve() {
        // Identical rows make this 1-D. The 6 px gap at 10..16 is closed by disk(3) only if
        // the run right of it survives the opening, i.e. is 7 px long, which pixel 22 decides.
        // 16 is a bound; 12 is the longest dependence found by random search.
        let (width, height) = (40, 5);
        let row = |last_on: bool| {
            (0..width)
                .map(move |x| u8::from(x < 10 || (16..22).contains(&x) || (x == 22 && last_on)))
        };
        let with: Vec<u8> = (0..height).flat_map(|_| row(true)).collect();
        let without: Vec<u8> = (0..height).flat_map(|_| row(false)).collect();
        let (on, off) = (
            postprocess(&with, width, height),
            postprocess(&without, width, height),
        );
        for y in 0..height {
            assert_eq!((on[y * width + 10], off[y * width + 10]), (1, 0));
        }
    }

    #[test]
    fn opening_and_closing_are_idempotent_and_ordered() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (width, height) in [(97, 61), (64, 64), (1, 40), (150, 97)] {
            let mask = blobs(&mut rng, width, height);
            for radius in 0..=4 {
                let fp = disk(radius);
                let opened = open(&mask, width, height, &fp);
                let closed = close(&mask, width, height, &fp);
                assert_eq!(open(&opened, width, height, &fp), opened);
                assert_eq!(close(&closed, width, height, &fp), closed);
                for ((&o, &m), &c) in opened.iter().zip(&mask).zip(&closed) {
                    assert!(o <= m && m <= c, "opening <= mask <= closing");
                }
            }
        }
    }

    #[test]
    fn hand_checked_cases() {
        let cross = disk(1);
        for dy in -1..=1isize {
            for dx in -1..=1isize {
                assert_eq!(cross.contains(dy, dx), dy == 0 || dx == 0);
            }
        }

        // A 3x3 block of ones in a 5x5 image erodes to its centre.
        #[rustfmt::skip]
        let block = [
            0, 0, 0, 0, 0,
            0, 1, 1, 1, 0,
            0, 1, 1, 1, 0,
            0, 1, 1, 1, 0,
            0, 0, 0, 0, 0,
        ];
        let mut centre = [0; 25];
        centre[12] = 1;
        assert_eq!(erode(&block, 5, 5, &cross), centre);

        // A single pixel dilates to the cross.
        #[rustfmt::skip]
        let plus = [
            0, 0, 0, 0, 0,
            0, 0, 1, 0, 0,
            0, 1, 1, 1, 0,
            0, 0, 1, 0, 0,
            0, 0, 0, 0, 0,
        ];
        assert_eq!(dilate(&centre, 5, 5, &cross), plus);

        // Outside the image is ignored: a corner pixel survives when its in-image neighbours
        // are foreground, and dies when one is not.
        #[rustfmt::skip]
        let corner = [
            1, 1, 0,
            1, 0, 0,
            0, 0, 0,
        ];
        let mut only_corner = [0; 9];
        only_corner[0] = 1;
        assert_eq!(erode(&corner, 3, 3, &cross), only_corner);
        let mut broken = corner;
        broken[1] = 0;
        assert_eq!(erode(&broken, 3, 3, &cross), [0; 9]);
        // And dilation does not grow foreground in from outside.
        assert_eq!(dilate(&[0; 9], 3, 3, &cross), [0; 9]);
        assert_eq!(erode(&[7; 9], 3, 3, &disk(5)), [1; 9]);
    }

    #[test]
    fn radii_in_microns_convert_at_40x_and_20x() {
        let at_40x = Postprocess::at_mpp(0.25);
        assert_eq!(
            at_40x,
            Postprocess {
                large: disk(3),
                small: disk(1),
                hole_extent: None,
                recut: None,
            }
        );
        // The stain re-cut adds its own reach (21 px at 40×).
        let recutting = Postprocess::at_mpp(0.25).recutting_by_stain(0.25);
        assert_eq!(recutting.reach(), POSTPROCESS_REACH + 21);
        // 10 µm holes: 40 px at 40×, 20 px at 20×; the reach grows by the extent + 1.
        let filling = Postprocess::at_mpp(0.25).filling_holes_up_to(10.0, 0.25);
        assert_eq!(filling.reach(), POSTPROCESS_REACH + 41);
        let at_20x_filling = Postprocess::at_mpp(0.5).filling_holes_up_to(10.0, 0.5);
        assert_eq!(at_20x_filling.hole_extent_px(), Some(20));
        assert_eq!(at_40x.reach(), POSTPROCESS_REACH);
        // A scanner's 0.2527 µm/px is 40× too.
        assert_eq!(Postprocess::at_mpp(0.2527), at_40x);
        // 0.75 µm at 0.5 µm/px is 1.5 px: the 3×3 square; 0.25 µm is half a pixel: itself.
        let at_20x = Postprocess::at_mpp(0.5);
        assert_eq!(at_20x.large.half_widths(), &[1, 1, 1]);
        assert_eq!(at_20x.small, disk(0));
        assert_eq!(at_20x.radii_px(), [1, 0]);
        assert_eq!(at_20x.reach(), 4);
        assert_eq!(Postprocess::at_mpp(0.499), at_20x);
        // The same physical object is kept or erased at both scales: a 1 µm wide bar
        // (4 px at 40×, 2 px at 20×) is narrower than the 1.5 µm opening, a 2 µm one is not.
        for (width_um, survives) in [(1.0, false), (2.0, true)] {
            for mpp in [0.25, 0.5] {
                let (side, bar) = (40, (width_um / mpp) as usize);
                let mask: Vec<u8> = (0..side * side)
                    .map(|i| u8::from((10..10 + bar).contains(&(i % side))))
                    .collect();
                let kept = Postprocess::at_mpp(mpp).apply(&mask, side, side, None);
                assert_eq!(kept.contains(&1), survives, "{width_um} µm at {mpp} µm/px");
            }
        }
    }

    #[test]
    fn empty_images() {
        assert!(postprocess(&[], 0, 0).is_empty());
        assert!(erode(&[], 0, 5, &disk(2)).is_empty());
        assert!(dilate(&[], 5, 0, &disk(2)).is_empty());
    }

    #[test]
    #[should_panic(expected = "is not 3x3")]
    fn wrong_length_panics() {
        erode(&[0; 8], 3, 3, &disk(1));
    }
}
