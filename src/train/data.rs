//! Where training crops and labeled validation images come from.

use std::path::{Path, PathBuf};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::slide::RgbRegion;
use crate::stain::hematoxylin_cut;

/// Failures reading training or validation data; each names the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: cannot list: {source}")]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: contains no .tif/.tiff/.png images")]
    Empty { path: PathBuf },
    #[error("{path}: cannot decode image: {source}")]
    Decode {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("{mask}: mask is {mask_w}×{mask_h} but its image is {image_w}×{image_h}")]
    MaskSize {
        mask: PathBuf,
        mask_w: i64,
        mask_h: i64,
        image_w: i64,
        image_h: i64,
    },
    #[error(
        "{name}: image is {width}×{height}, smaller than the {crop}×{crop} crop; lower --crop"
    )]
    TooSmall {
        name: String,
        width: i64,
        height: i64,
        crop: u32,
    },
    #[error("slide crop stream stopped: {0}")]
    CropStream(String),
    #[error("interrupted (Ctrl-C or SIGTERM)")]
    Interrupted,
    #[error("{path}: no mask for this image; put <stem>.png (0 background, 255 nuclei) under masks/ or train label-free")]
    MissingMask { path: PathBuf },
}

/// A batch of crops: `images` B×3×H×W f32 in [0, 1]; `masks` B×1×H×W f32 in {0,1} if known.
#[derive(Debug)]
pub struct Batch {
    pub images: Tensor,
    pub masks: Option<Tensor>,
    /// The hematoxylin cut ([`crate::stain::hematoxylin_cut`]) of the image or slide each
    /// crop comes from, for methods that calibrate the stain; `None` when the source does
    /// not know it.
    pub hematoxylin_cuts: Option<Vec<f64>>,
    /// Labeled sub-images drawn beside the crops, when a label-free method also learns
    /// from a few masks (`train --method self-training --labeled-fraction`).
    pub labeled: Option<LabeledCrops>,
}

/// Sub-images with their true masks: `images` B×3×S×S f32 in [0, 1], `masks` B×1×S×S f32
/// in {0,1}, and the hematoxylin cut of the image each comes from.
#[derive(Debug)]
pub struct LabeledCrops {
    pub images: Tensor,
    pub masks: Tensor,
    pub hematoxylin_cuts: Vec<f64>,
}

/// A stream of training crops. An epoch is `epoch_len` crops; the trainer asks for them in
/// shuffled batches of item numbers in `0..epoch_len` (for a folder: image indices, so an
/// epoch sees one crop of every image, as in the paper; a slide stream may ignore them).
pub trait CropSource {
    /// Crops per epoch.
    fn epoch_len(&self) -> usize;
    /// One line for `model.json`'s `data` field.
    fn describe(&self) -> String;
    /// Microns per pixel of the crops, if known.
    fn mpp(&self) -> Option<f64> {
        None
    }
    /// One random `crop`×`crop` crop for each of `items`, on `device`.
    fn crops(
        &self,
        items: &[usize],
        crop: u32,
        device: Device,
        rng: &mut ChaCha8Rng,
    ) -> Result<Batch, DataError>;
}

/// One image with its optional mask, kept as 8-bit tensors (3×H×W u8, H×W bool) to save memory.
#[derive(Debug)]
pub struct FolderImage {
    pub path: PathBuf,
    pub image: Tensor,
    pub mask: Option<Tensor>,
    /// The whole image's hematoxylin cut: its crops are calibrated by the image, as
    /// `segment` calibrates tiles by their slide.
    hematoxylin_cut: f64,
}

impl FolderImage {
    /// `image` 3×H×W u8, `mask` H×W bool.
    pub fn new(path: PathBuf, image: Tensor, mask: Option<Tensor>) -> Self {
        let hematoxylin_cut = hematoxylin_cut(&to_unit(&image.unsqueeze(0), Device::Cpu));
        Self {
            path,
            image,
            mask,
            hematoxylin_cut,
        }
    }

    /// The whole image's hematoxylin cut, which its crops are calibrated by.
    pub fn hematoxylin_cut(&self) -> f64 {
        self.hematoxylin_cut
    }

    /// The same image without its mask.
    pub fn unlabeled(&self) -> Self {
        Self {
            path: self.path.clone(),
            image: self.image.shallow_clone(),
            mask: None,
            hematoxylin_cut: self.hematoxylin_cut,
        }
    }

    fn size(&self) -> (i64, i64) {
        let s = self.image.size();
        (s[2], s[1])
    }

    fn check_crop(&self, crop: u32) -> Result<(), DataError> {
        let (width, height) = self.size();
        if width < i64::from(crop) || height < i64::from(crop) {
            return Err(DataError::TooSmall {
                name: self.path.display().to_string(),
                width,
                height,
                crop,
            });
        }
        Ok(())
    }
}

/// An image with its mask, for validation and the threshold baseline.
#[derive(Debug)]
pub struct Labeled {
    pub path: PathBuf,
    /// 3×H×W u8.
    pub image: Tensor,
    /// H×W bool.
    pub mask: Tensor,
}

impl Labeled {
    /// The image as 1×3×H×W f32 in [0, 1] on `device`.
    pub fn image_f32(&self, device: Device) -> Tensor {
        to_unit(&self.image.unsqueeze(0), device)
    }

    /// Width and height in pixels.
    pub fn size(&self) -> (u32, u32) {
        let size = self.image.size();
        (size[2] as u32, size[1] as u32)
    }

    /// The image as a region of interleaved RGB bytes, as a slide reads one.
    pub fn rgb_region(&self) -> RgbRegion {
        let pixels = Vec::<u8>::try_from(self.image.permute([1, 2, 0]).contiguous().view([-1]))
            .expect("u8 image tensor");
        let (width, height) = self.size();
        RgbRegion {
            width,
            height,
            pixels,
        }
    }
}

/// Labeled images, e.g. for per-epoch validation.
#[derive(Debug, Default)]
pub struct LabeledSet {
    pub items: Vec<Labeled>,
}

/// `DIR/images/<stem>.{tif,tiff,png}` with optional `DIR/masks/<stem>.png` (8-bit, >127 =
/// nucleus). Images without masks still serve as unlabeled training data.
#[derive(Debug)]
pub struct LabeledFolder {
    root: PathBuf,
    items: Vec<FolderImage>,
}

fn decode(path: &Path) -> Result<image::DynamicImage, DataError> {
    image::open(path).map_err(|source| DataError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

fn to_unit(u8_images: &Tensor, device: Device) -> Tensor {
    u8_images.to_device(device).to_kind(Kind::Float) / 255.0
}

impl LabeledFolder {
    /// Reads every image (and mask, where present) under `root` into memory.
    pub fn open(root: &Path) -> Result<Self, DataError> {
        let image_dir = root.join("images");
        let list_err = |source| DataError::List {
            path: image_dir.clone(),
            source,
        };
        let mut paths = std::fs::read_dir(&image_dir)
            .map_err(list_err)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(list_err)?;
        paths.retain(|p| {
            matches!(
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
                    .as_deref(),
                Some("tif" | "tiff" | "png")
            )
        });
        paths.sort();
        if paths.is_empty() {
            return Err(DataError::Empty { path: image_dir });
        }
        let items = paths
            .into_iter()
            .map(|path| {
                let rgb = decode(&path)?.to_rgb8();
                let (w, h) = (rgb.width() as i64, rgb.height() as i64);
                let image = Tensor::from_slice(rgb.as_raw())
                    .view([h, w, 3])
                    .permute([2, 0, 1])
                    .contiguous();
                let stem = path.file_stem().unwrap_or_default();
                let mask_path = root.join("masks").join(stem).with_extension("png");
                let mask = if mask_path.exists() {
                    let luma = decode(&mask_path)?.to_luma8();
                    let (mw, mh) = (luma.width() as i64, luma.height() as i64);
                    if (mw, mh) != (w, h) {
                        return Err(DataError::MaskSize {
                            mask: mask_path,
                            mask_w: mw,
                            mask_h: mh,
                            image_w: w,
                            image_h: h,
                        });
                    }
                    Some(Tensor::from_slice(luma.as_raw()).view([h, w]).gt(127))
                } else {
                    None
                };
                Ok(FolderImage::new(path, image, mask))
            })
            .collect::<Result<_, DataError>>()?;
        Ok(Self {
            root: root.to_path_buf(),
            items,
        })
    }

    /// A folder made in memory (tests, synthetic data); `root` only labels it.
    pub fn from_items(root: &Path, items: Vec<FolderImage>) -> Self {
        Self {
            root: root.to_path_buf(),
            items,
        }
    }

    /// The folder the images were read from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn items(&self) -> &[FolderImage] {
        &self.items
    }

    /// All images with their masks; fails on the first image without one.
    pub fn labeled(&self) -> Result<LabeledSet, DataError> {
        let items = self
            .items
            .iter()
            .map(|it| match &it.mask {
                Some(mask) => Ok(Labeled {
                    path: it.path.clone(),
                    image: it.image.shallow_clone(),
                    mask: mask.shallow_clone(),
                }),
                None => Err(DataError::MissingMask {
                    path: it.path.clone(),
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(LabeledSet { items })
    }

    /// Every image fits a `crop`×`crop` crop (checked before a run writes anything).
    pub fn check_crop(&self, crop: u32) -> Result<(), DataError> {
        self.items.iter().try_for_each(|item| item.check_crop(crop))
    }
}

impl CropSource for LabeledFolder {
    fn epoch_len(&self) -> usize {
        self.items.len()
    }

    fn describe(&self) -> String {
        let labeled = self.items.iter().filter(|i| i.mask.is_some()).count();
        format!(
            "{}: {} images ({} with masks)",
            self.root.display(),
            self.items.len(),
            labeled
        )
    }

    fn crops(
        &self,
        items: &[usize],
        crop: u32,
        device: Device,
        rng: &mut ChaCha8Rng,
    ) -> Result<Batch, DataError> {
        let c = i64::from(crop);
        let mut images = Vec::with_capacity(items.len());
        let mut masks = Vec::with_capacity(items.len());
        let mut cuts = Vec::with_capacity(items.len());
        for &i in items {
            let item = &self.items[i % self.items.len()];
            item.check_crop(crop)?;
            let (w, h) = item.size();
            let y = rng.random_range(0..=h - c);
            let x = rng.random_range(0..=w - c);
            images.push(item.image.narrow(1, y, c).narrow(2, x, c));
            cuts.push(item.hematoxylin_cut);
            masks.push(
                item.mask
                    .as_ref()
                    .map(|m| m.narrow(0, y, c).narrow(1, x, c).unsqueeze(0)),
            );
        }
        let masks = masks
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .map(|m| Tensor::stack(&m, 0).to_device(device).to_kind(Kind::Float));
        Ok(Batch {
            images: to_unit(&Tensor::stack(&images, 0), device),
            masks,
            hematoxylin_cuts: Some(cuts),
            labeled: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_region_interleaves_the_channels_row_by_row() {
        // 3×2×3 image whose byte names its channel, row and column: 100c + 10y + x.
        let values: Vec<u8> = (0..3u8)
            .flat_map(|c| (0..2u8).flat_map(move |y| (0..3u8).map(move |x| 100 * c + 10 * y + x)))
            .collect();
        let labeled = Labeled {
            path: PathBuf::from("a.png"),
            image: Tensor::from_slice(&values).view([3, 2, 3]),
            mask: Tensor::zeros([2, 3], (Kind::Bool, Device::Cpu)),
        };
        let region = labeled.rgb_region();
        assert_eq!(labeled.size(), (3, 2));
        assert_eq!((region.width, region.height), (3, 2));
        // Pixel (x 2, y 1): R 12, G 112, B 212.
        let at = (3 + 2) * 3;
        assert_eq!(&region.pixels[at..at + 3], &[12, 112, 212]);
        assert_eq!(region.pixels.len(), 18);
    }
}
