//! Nuclei as objects: instance label maps from a binary mask, and true instance maps read
//! from disk.
//!
//! A label map is a row-major `u32` slice, `0` = background and one id per object.
//! [`instances_of`] is the one place that turns a predicted mask into objects: touching
//! nuclei are split by a marker-controlled watershed ([`crate::watershed::separate`]) and
//! specks dropped. [`crate::watershed::label_components`] gives the plain 8-connected
//! components, where touching nuclei stay one object.

use crate::watershed::{separate, SeparationParams};
use std::path::{Path, PathBuf};

/// The predicted objects of a binary `mask` (nonzero = nucleus), as a label map: touching
/// nuclei separated with `params` ([`crate::watershed`]), objects numbered in the raster
/// order of their first pixel. `SeparationParams::default()` is tuned for 0.25 µm/px;
/// [`SeparationParams::at_mpp`] converts it for other resolutions.
///
/// # Panics
/// If `mask.len()` is not `width * height`.
pub fn instances_of(
    mask: &[u8],
    width: usize,
    height: usize,
    params: &SeparationParams,
) -> Vec<u32> {
    separate(mask, width, height, params).0
}

/// Why a true instance map cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum InstanceMapError {
    #[error("{path}: cannot read instance map: {source}")]
    Decode {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error(
        "{path}: instance map is {width}×{height} but its image is {image_width}×{image_height}"
    )]
    Size {
        path: PathBuf,
        width: u32,
        height: u32,
        image_width: u32,
        image_height: u32,
    },
    #[error("{path}: instance map is {color:?}; expected a grayscale PNG (8 or 16 bit, 0 = background, one id per nucleus)")]
    NotGray {
        path: PathBuf,
        color: image::ColorType,
    },
}

/// `DIR/instances/<stem>.png` for the image `image_path`, when it exists.
pub fn instance_map_path(dir: &Path, image_path: &Path) -> Option<PathBuf> {
    let stem = image_path.file_stem()?;
    let path = dir.join("instances").join(stem).with_extension("png");
    path.is_file().then_some(path)
}

/// Checks from the PNG header alone that `path` is `width`×`height` (cheap: run it on every
/// map before spending time on predictions).
pub fn check_instance_map_size(
    path: &Path,
    width: u32,
    height: u32,
) -> Result<(), InstanceMapError> {
    let (w, h) = image::image_dimensions(path).map_err(|source| InstanceMapError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    size_matches(path, (w, h), (width, height))
}

/// Reads a true instance map: an 8- or 16-bit grayscale PNG of `width`×`height`, 0 =
/// background, every other value one nucleus.
pub fn read_instance_map(
    path: &Path,
    width: u32,
    height: u32,
) -> Result<Vec<u32>, InstanceMapError> {
    let decoded = image::open(path).map_err(|source| InstanceMapError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    size_matches(path, (decoded.width(), decoded.height()), (width, height))?;
    match decoded {
        image::DynamicImage::ImageLuma8(buffer) => {
            Ok(buffer.into_raw().into_iter().map(u32::from).collect())
        }
        image::DynamicImage::ImageLuma16(buffer) => {
            Ok(buffer.into_raw().into_iter().map(u32::from).collect())
        }
        other => Err(InstanceMapError::NotGray {
            path: path.to_path_buf(),
            color: other.color(),
        }),
    }
}

fn size_matches(path: &Path, map: (u32, u32), image: (u32, u32)) -> Result<(), InstanceMapError> {
    if map == image {
        Ok(())
    } else {
        Err(InstanceMapError::Size {
            path: path.to_path_buf(),
            width: map.0,
            height: map.1,
            image_width: image.0,
            image_height: image.1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::components::{ComponentTracker, TrackerOptions};
    use crate::watershed::label_components;
    use rand::{Rng, SeedableRng};

    fn mask(rows: &[&str]) -> (Vec<u8>, usize, usize) {
        let width = rows[0].len();
        let m = rows
            .iter()
            .flat_map(|r| r.bytes())
            .map(|b| u8::from(b == b'#'))
            .collect();
        (m, width, rows.len())
    }

    #[test]
    fn components_by_hand() {
        // A U shape whose arms meet only at the bottom, a diagonal chain (8-connected),
        // and a lone pixel.
        let (m, w, h) = mask(&[
            "#.#..#..", //
            "#.#...#.", //
            "###....#", //
            "........", //
            "...#....", //
        ]);
        let (labels, count) = label_components(&m, w, h);
        assert_eq!(count, 3);
        #[rustfmt::skip]
        let expected = vec![
            1, 0, 1, 0, 0, 2, 0, 0,
            1, 0, 1, 0, 0, 0, 2, 0,
            1, 1, 1, 0, 0, 0, 0, 2,
            0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 3, 0, 0, 0, 0,
        ];
        assert_eq!(labels, expected);
    }

    #[test]
    fn merges_late_and_leftwards() {
        // (0,1) starts a second provisional label; (1,2) touches it and, through its
        // north-east neighbour (2,1), the first one: the two merge into one object.
        let (m, w, h) = mask(&[
            "...#", //
            "#.#.", //
            "##..", //
        ]);
        let (labels, count) = label_components(&m, w, h);
        assert_eq!(count, 1);
        assert_eq!(labels, vec![0, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0]);
        let (m, w, h) = mask(&["#.#", ".#.", "#.#"]);
        assert_eq!(
            label_components(&m, w, h).1,
            1,
            "an X is one 8-connected object"
        );
        assert_eq!(label_components(&[], 0, 0), (vec![], 0));
    }

    #[test]
    fn agrees_with_the_streaming_tracker_on_random_masks() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for density in [0.2, 0.45, 0.6] {
            let (w, h) = (97usize, 61usize);
            let m: Vec<u8> = (0..w * h)
                .map(|_| u8::from(rng.random_bool(density)))
                .collect();
            let (labels, count) = label_components(&m, w, h);
            let mut areas = vec![0u64; count as usize];
            for &l in &labels {
                if l != 0 {
                    areas[l as usize - 1] += 1;
                }
            }
            let mut tracker = ComponentTracker::new(
                w as u32,
                TrackerOptions {
                    pixels: false,
                    values: false,
                    max_kept_area: 0,
                    min_area: 0,
                },
            );
            tracker.push_rows(&m, None);
            let (stats, components) = tracker.finish();
            assert_eq!(u64::from(count), stats.count);
            let mut theirs: Vec<u64> = components.iter().map(|c| c.area).collect();
            theirs.sort_unstable();
            areas.sort_unstable();
            assert_eq!(areas, theirs, "density {density}");
        }
    }

    #[test]
    fn reads_8_and_16_bit_maps_and_names_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p16 = dir.path().join("a.png");
        image::ImageBuffer::<image::Luma<u16>, _>::from_raw(
            3,
            2,
            vec![0u16, 300, 300, 0, 1, 65535],
        )
        .unwrap()
        .save(&p16)
        .unwrap();
        assert_eq!(
            read_instance_map(&p16, 3, 2).unwrap(),
            vec![0, 300, 300, 0, 1, 65535]
        );
        check_instance_map_size(&p16, 3, 2).unwrap();
        let p8 = dir.path().join("b.png");
        image::GrayImage::from_raw(2, 2, vec![0, 7, 7, 255])
            .unwrap()
            .save(&p8)
            .unwrap();
        assert_eq!(read_instance_map(&p8, 2, 2).unwrap(), vec![0, 7, 7, 255]);

        let err = read_instance_map(&p16, 2, 3).unwrap_err().to_string();
        assert!(
            err.contains("a.png") && err.contains("3×2") && err.contains("2×3"),
            "{err}"
        );
        let err = check_instance_map_size(&p8, 4, 4).unwrap_err().to_string();
        assert!(err.contains("b.png"), "{err}");
        let rgb = dir.path().join("c.png");
        image::RgbImage::new(2, 2).save(&rgb).unwrap();
        let err = read_instance_map(&rgb, 2, 2).unwrap_err().to_string();
        assert!(err.contains("c.png") && err.contains("grayscale"), "{err}");
    }

    #[test]
    fn finds_the_map_of_an_image_by_stem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("instances")).unwrap();
        std::fs::write(dir.path().join("instances/x.png"), b"").unwrap();
        let image = dir.path().join("images/x.tif");
        assert_eq!(
            instance_map_path(dir.path(), &image),
            Some(dir.path().join("instances/x.png"))
        );
        assert_eq!(
            instance_map_path(dir.path(), Path::new("images/y.tif")),
            None
        );
    }
}
