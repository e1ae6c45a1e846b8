//! Which sub-images are labeled: the paper cuts every 1000×1000 MoNuSeg image into 250×250
//! sub-images and labels a fraction of them (1/32 of 24 images' 384 sub-images is 12).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

use crate::train::data::{DataError, LabeledCrops, LabeledFolder};
use crate::train::error::TrainError;

/// Parses a label fraction written as `1/8`, `0.125` or `12.5%`.
pub fn parse_fraction(text: &str) -> Result<f64, String> {
    let bad = || format!("`{text}`: write the labeled fraction as 1/8, 0.125 or 12.5%");
    let value = if let Some((num, den)) = text.split_once('/') {
        let num: f64 = num.trim().parse().map_err(|_| bad())?;
        let den: f64 = den.trim().parse().map_err(|_| bad())?;
        num / den
    } else if let Some(percent) = text.strip_suffix('%') {
        percent.trim().parse::<f64>().map_err(|_| bad())? / 100.0
    } else {
        text.trim().parse().map_err(|_| bad())?
    };
    if value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        Err(format!("`{text}`: the labeled fraction must be in (0, 1]"))
    }
}

/// One sub-image: the image it is cut from and its top-left corner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tile {
    image: usize,
    x: i64,
    y: i64,
}

/// The labeled sub-images of a folder.
#[derive(Debug)]
pub struct LabeledTiles<'a> {
    folder: &'a LabeledFolder,
    tiles: Vec<Tile>,
    side: i64,
    /// Sub-images of all images with masks (the pool the fraction is taken of).
    pub pool: usize,
}

impl<'a> LabeledTiles<'a> {
    /// Cuts every image with a mask into a grid of `side`×`side` sub-images (remainders at
    /// the right and bottom are dropped) and keeps `round(fraction × count)` of them, at
    /// least one, chosen by `split_seed`.
    pub fn choose(
        folder: &'a LabeledFolder,
        side: u32,
        fraction: f64,
        split_seed: u64,
    ) -> Result<Self, TrainError> {
        let side = i64::from(side);
        let mut tiles = Vec::new();
        for (image, item) in folder.items().iter().enumerate() {
            if item.mask.is_none() {
                continue;
            }
            let (h, w) = (item.image.size()[1], item.image.size()[2]);
            if h < side || w < side {
                return Err(DataError::TooSmall {
                    name: item.path.display().to_string(),
                    width: w,
                    height: h,
                    crop: side as u32,
                }
                .into());
            }
            for y in (0..=h - side).step_by(side as usize) {
                for x in (0..=w - side).step_by(side as usize) {
                    tiles.push(Tile { image, x, y });
                }
            }
        }
        if tiles.is_empty() {
            return Err(TrainError::NeedsMasks(format!(
                "{}: no image has a mask under masks/ (<stem>.png, 0 background, 255 nuclei); \
                 --labeled-fraction needs a few",
                folder.root().display()
            )));
        }
        let pool = tiles.len();
        let keep = ((fraction * pool as f64).round() as usize).clamp(1, pool);
        tiles.shuffle(&mut ChaCha8Rng::seed_from_u64(split_seed));
        tiles.truncate(keep);
        Ok(Self {
            folder,
            tiles,
            side,
            pool,
        })
    }

    /// Number of labeled sub-images.
    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    /// Side of the sub-images, px.
    pub fn side(&self) -> u32 {
        self.side as u32
    }

    /// Sub-images `indices` (taken modulo the count) as B×3×S×S f32 in [0, 1], their masks
    /// as B×1×S×S f32 in {0,1}, on `device`, and the hematoxylin cut of the image each is
    /// cut from (what a stain-calibrating method calibrates them by).
    pub fn batch(&self, indices: &[usize], device: Device) -> LabeledCrops {
        let mut hematoxylin_cuts = Vec::with_capacity(indices.len());
        let (images, masks): (Vec<Tensor>, Vec<Tensor>) = indices
            .iter()
            .map(|&i| {
                let tile = self.tiles[i % self.tiles.len()];
                let item = &self.folder.items()[tile.image];
                let mask = item.mask.as_ref().expect("only masked images are tiled");
                hematoxylin_cuts.push(item.hematoxylin_cut());
                (
                    item.image
                        .narrow(1, tile.y, self.side)
                        .narrow(2, tile.x, self.side),
                    mask.narrow(0, tile.y, self.side)
                        .narrow(1, tile.x, self.side)
                        .unsqueeze(0),
                )
            })
            .unzip();
        let float = |t: Vec<Tensor>| Tensor::stack(&t, 0).to_device(device).to_kind(Kind::Float);
        LabeledCrops {
            images: float(images) / 255.0,
            masks: float(masks),
            hematoxylin_cuts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_parse_in_three_spellings() {
        assert_eq!(parse_fraction("1/8"), Ok(0.125));
        assert_eq!(parse_fraction("0.125"), Ok(0.125));
        assert_eq!(parse_fraction("12.5%"), Ok(0.125));
        assert!(parse_fraction("0").is_err());
        assert!(parse_fraction("3/2").is_err());
        assert!(parse_fraction("an eighth").unwrap_err().contains("1/8"));
    }
}
