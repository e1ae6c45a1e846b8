//! A label-free crop stream with a few masks beside it: how the self-training method also
//! learns from labels when a lab has some (`train --method self-training --labeled-fraction
//! 1/8`).
//!
//! Every batch of crops comes with as many labeled sub-images, drawn at random from the
//! chosen share of the folder's sub-images (the same choice CDCL makes, [`LabeledTiles`]),
//! so the few masks weigh on every step however rare they are among the crops.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::Device;

use super::cdcl::LabeledTiles;
use super::data::{Batch, CropSource, DataError};

/// `crops` with labeled sub-images from `tiles` added to every batch.
pub struct PartlyLabeled<'a> {
    pub crops: &'a dyn CropSource,
    pub tiles: LabeledTiles<'a>,
}

impl CropSource for PartlyLabeled<'_> {
    fn epoch_len(&self) -> usize {
        self.crops.epoch_len()
    }

    fn describe(&self) -> String {
        format!(
            "{}; masks of {} of its {} sub-images of {} px",
            self.crops.describe(),
            self.tiles.len(),
            self.tiles.pool,
            self.tiles.side()
        )
    }

    fn mpp(&self) -> Option<f64> {
        self.crops.mpp()
    }

    /// The crops of `items`, then one labeled sub-image per crop, drawn with the same
    /// generator (so a resumed run draws what an uninterrupted one would).
    fn crops(
        &self,
        items: &[usize],
        crop: u32,
        device: Device,
        rng: &mut ChaCha8Rng,
    ) -> Result<Batch, DataError> {
        let mut batch = self.crops.crops(items, crop, device, rng)?;
        let picks: Vec<usize> = items
            .iter()
            .map(|_| rng.random_range(0..self.tiles.len()))
            .collect();
        batch.labeled = Some(self.tiles.batch(&picks, device));
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::data::{FolderImage, LabeledFolder};
    use rand::SeedableRng;
    use std::path::{Path, PathBuf};
    use tch::{Kind, Tensor};

    /// Two 20×20 images: the first with a mask whose left half is nucleus, the second
    /// without one.
    fn folder() -> LabeledFolder {
        let image = |value: i64| Tensor::full([3, 20, 20], value, (Kind::Uint8, Device::Cpu));
        let mask = Tensor::zeros([20, 20], (Kind::Bool, Device::Cpu));
        let _ = mask.narrow(1, 0, 10).fill_(1);
        LabeledFolder::from_items(
            Path::new("tiny"),
            vec![
                FolderImage::new(PathBuf::from("a.png"), image(100), Some(mask)),
                FolderImage::new(PathBuf::from("b.png"), image(200), None),
            ],
        )
    }

    #[test]
    fn every_batch_brings_one_labeled_sub_image_per_crop() {
        let folder = folder();
        // 10 px sub-images: four in the masked image, half of them labeled.
        let tiles = LabeledTiles::choose(&folder, 10, 0.5, 0).unwrap();
        let source = PartlyLabeled {
            crops: &folder,
            tiles,
        };
        assert_eq!(source.epoch_len(), 2);
        assert!(source
            .describe()
            .ends_with("masks of 2 of its 4 sub-images of 10 px"));
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            source.crops(&[0, 1, 1], 8, Device::Cpu, &mut rng).unwrap()
        };
        let batch = draw(3);
        assert_eq!(batch.images.size(), [3, 3, 8, 8]);
        let labeled = batch.labeled.as_ref().expect("labeled sub-images");
        assert_eq!(labeled.images.size(), [3, 3, 10, 10]);
        assert_eq!(labeled.masks.size(), [3, 1, 10, 10]);
        // Only the masked image is cut into labeled sub-images: its pixels, its cut.
        assert!(labeled.images.eq(100.0 / 255.0).all().int64_value(&[]) == 1);
        let first_cut = folder.items()[0].hematoxylin_cut();
        assert!(labeled.hematoxylin_cuts.iter().all(|&c| c == first_cut));
        // A sub-image is all nucleus (left column) or all background (right column).
        for i in 0..3 {
            let mean = labeled.masks.get(i).mean(Kind::Float).double_value(&[]);
            assert!(
                mean == 0.0 || mean == 1.0,
                "sub-image {i}: mask mean {mean}"
            );
        }
        // The same generator draws the same sub-images.
        let again = draw(3);
        assert!(again.labeled.unwrap().masks.equal(&labeled.masks));
    }
}
