//! Pixel buffers returned by slide readers, and the clipping/padding arithmetic every
//! reader shares (requests may extend past the slide edge, e.g. tiles with a halo).

/// An RGB region read from a slide: `width * height * 3` bytes, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbRegion {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// The part of a requested rectangle that lies inside a level, in level coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visible {
    pub x: u64,
    pub y: u64,
    pub w: u32,
    pub h: u32,
}

/// Intersects the request `(x, y, w, h)` with a `width × height` level; `None` when the
/// request lies entirely outside.
pub fn clip(x: i64, y: i64, w: u32, h: u32, width: u64, height: u64) -> Option<Visible> {
    let x0 = x.max(0);
    let y0 = y.max(0);
    let x1 = (x + i64::from(w)).min(width as i64);
    let y1 = (y + i64::from(h)).min(height as i64);
    (x1 > x0 && y1 > y0).then(|| Visible {
        x: x0 as u64,
        y: y0 as u64,
        w: (x1 - x0) as u32,
        h: (y1 - y0) as u32,
    })
}

impl RgbRegion {
    /// A white region: the colour of glass, used for pixels outside the slide.
    pub fn white(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            pixels: vec![255; width as usize * height as usize * 3],
        }
    }

    /// Byte offset in `self` of the visible block's top-left pixel, for a request whose
    /// top-left corner was `(x, y)`.
    fn offset_of(&self, visible: &Visible, x: i64, y: i64) -> usize {
        let dx = (visible.x as i64 - x) as usize;
        let dy = (visible.y as i64 - y) as usize;
        (dy * self.width as usize + dx) * 3
    }

    /// Copies OpenSlide's premultiplied-alpha BGRA pixels (one little-endian ARGB `u32`
    /// each) of the visible block into place, composited over white.
    pub fn paste_premultiplied_bgra(&mut self, bgra: &[u8], visible: &Visible, x: i64, y: i64) {
        let start = self.offset_of(visible, x, y);
        let stride = self.width as usize * 3;
        for (row, src) in bgra.chunks_exact(visible.w as usize * 4).enumerate() {
            let dst = &mut self.pixels[start + row * stride..][..visible.w as usize * 3];
            for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(4)) {
                // Premultiplied over white: c + (255 - a).
                let transparent = 255 - s[3];
                d[0] = s[2].saturating_add(transparent);
                d[1] = s[1].saturating_add(transparent);
                d[2] = s[0].saturating_add(transparent);
            }
        }
    }

    /// Copies rows of an RGB image of width `source_width` into place: the visible block
    /// starts at `(visible.x, visible.y)` of the source.
    pub fn paste_rgb(
        &mut self,
        source: &[u8],
        source_width: u64,
        visible: &Visible,
        x: i64,
        y: i64,
    ) {
        let start = self.offset_of(visible, x, y);
        let stride = self.width as usize * 3;
        let row_bytes = visible.w as usize * 3;
        for row in 0..visible.h as usize {
            let src_start =
                ((visible.y as usize + row) * source_width as usize + visible.x as usize) * 3;
            self.pixels[start + row * stride..][..row_bytes]
                .copy_from_slice(&source[src_start..][..row_bytes]);
        }
    }
}
