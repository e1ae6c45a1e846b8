//! Where to look at a slide to judge its stain: regions chosen from its size and tissue
//! map alone, so that everything measured on them (segment's stain calibration, the
//! training crop stream's) is one value per slide, whatever the tile grid or crop order.

use super::grid::Rect;
use super::tissue::TissueMask;

/// A slide of at most this many pixels is measured whole, as `eval` and training measure
/// an image.
pub const WHOLE_SLIDE_PX: u64 = 2048 * 2048;
/// A larger slide is measured on this many square regions of [`REGION_SIDE`] px (4 Mpx in
/// all, a fraction of a second to decode), spread evenly over its tissue.
pub const SAMPLE_REGIONS: u64 = 16;
pub const REGION_SIDE: u32 = 512;

/// Regions of a `width`×`height` image (at the scale it is read at, where one pixel of
/// `tissue`'s map is `pixels_per_map_pixel` pixels): the whole image when small, else
/// regions centred on tissue-map pixels at evenly spaced ranks among them (the middle of
/// the image when the map has no tissue).
pub fn stain_sample_regions(
    width: u64,
    height: u64,
    tissue: &TissueMask,
    pixels_per_map_pixel: f64,
) -> Vec<Rect> {
    if width * height <= WHOLE_SLIDE_PX {
        return vec![Rect {
            x: 0,
            y: 0,
            width: width as u32,
            height: height as u32,
        }];
    }
    let tissue_pixels: Vec<u64> = (0u64..)
        .zip(tissue.data())
        .filter(|(_, &v)| v != 0)
        .map(|(i, _)| i)
        .collect();
    let map_width = u64::from(tissue.width());
    let centres: Vec<(f64, f64)> = if tissue_pixels.is_empty() {
        vec![(width as f64 / 2.0, height as f64 / 2.0)]
    } else {
        let n = tissue_pixels.len() as u64;
        (0..SAMPLE_REGIONS)
            .map(|k| tissue_pixels[((2 * k + 1) * n / (2 * SAMPLE_REGIONS)) as usize])
            .map(|p| {
                let (mx, my) = ((p % map_width) as f64, (p / map_width) as f64);
                (
                    (mx + 0.5) * pixels_per_map_pixel,
                    (my + 0.5) * pixels_per_map_pixel,
                )
            })
            .collect()
    };
    let side = REGION_SIDE.min(width as u32).min(height as u32);
    let corner = |centre: f64, extent: u64| {
        ((centre - f64::from(side) / 2.0).round() as i64).clamp(0, extent as i64 - i64::from(side))
    };
    centres
        .into_iter()
        .map(|(cx, cy)| Rect {
            x: corner(cx, width),
            y: corner(cy, height),
            width: side,
            height: side,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_slide_is_measured_whole() {
        let tissue = TissueMask::new(4, 4, vec![255; 16], 16.0);
        let regions = stain_sample_regions(1000, 800, &tissue, 16.0);
        assert_eq!(
            regions,
            vec![Rect {
                x: 0,
                y: 0,
                width: 1000,
                height: 800
            }]
        );
    }

    #[test]
    fn a_large_slide_is_measured_on_its_tissue_inside_the_slide() {
        // 8×8 map at 1000 px per map pixel; tissue only in the right column (x = 7).
        let mut map = vec![0u8; 64];
        for y in 0..8 {
            map[y * 8 + 7] = 255;
        }
        let tissue = TissueMask::new(8, 8, map, 1000.0);
        let regions = stain_sample_regions(8000, 8000, &tissue, 1000.0);
        assert_eq!(regions.len(), SAMPLE_REGIONS as usize);
        for r in &regions {
            assert_eq!((r.width, r.height), (REGION_SIDE, REGION_SIDE));
            // Centred on x = 7500 (inside the slide), spread down the column.
            assert_eq!(r.x, 7500 - i64::from(REGION_SIDE) / 2, "{r:?}");
            assert!(r.y >= 0 && r.bottom() <= 8000, "{r:?}");
        }
        assert!(regions.first().unwrap().y < 1000 && regions.last().unwrap().y > 7000);
    }
}
