//! The semi-supervised backbone (seed 003, CDCL): a small UNet with a 2-class classifier and
//! a contrastive projector.
//!
//! The paper uses an ImageNet DenseNet-161 DenseUNet, which we can neither download nor train
//! on a 2-core CPU. This is a plain UNet of depth 3 (three 2×2 poolings, stride 8) whose width
//! `w` scales every layer: encoder w, 2w, 4w, bottleneck 8w, mirrored decoder with skip
//! connections. Blocks are two 3×3 conv (no bias) → BatchNorm → ReLU.
//!
//! - **Extractor**: everything but the classifier. Its features for contrastive learning are
//!   a hypercolumn at stride 8 (the paper's patch features are at 1/8 of the image: a patch of
//!   h/8 image pixels is h/64 feature pixels): the decoder outputs of every level, average-pooled
//!   to stride 8, and the bottleneck, 15w channels.
//! - **Classifier**: 1×1 conv w → 2 (background, nucleus) at full resolution.
//! - **Projector**: 1×1 conv 15w → 128 → ReLU → 1×1 conv 128 → 128 (FC → ReLU → FC per pixel),
//!   L2-normalised by the loss.
//!
//! Parameters at w = 8: 121,186 (extractor + classifier, what segmentation runs) + 32,000
//! (projector); at w = 16: about four times as many.

use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use super::layout::fast_layout;

/// Poolings in the encoder; the output is translation-equivariant for shifts by `UNET_ALIGN`.
pub const UNET_DEPTH: usize = 3;
/// Input sides must be multiples of this (2^depth): windows cut at other offsets see the
/// poolings' 2×2 blocks differently.
pub const UNET_ALIGN: u32 = 1 << UNET_DEPTH;
/// Output channels of the projector (paper 4.2).
pub const PROJECTION_DIM: i64 = 128;
/// Classes of the classifier: 0 background, 1 nucleus.
pub const UNET_CLASSES: i64 = 2;
/// Width used when none is given.
pub const DEFAULT_UNET_WIDTH: i64 = 16;

/// Chebyshev radius (input px) an output pixel depends on. Walking from the output back to
/// the input: each 3×3 conv at stride s reaches s px, each 2×2 pooling or 2×2 transposed conv
/// between strides s and 2s reaches s px more (the far side of its block). Decoder level l:
/// 2 convs; then the up-convolution; then the bottleneck's 2 convs at stride 2^depth; then back
/// down through the encoder (pool, 2 convs per level). For depth 3: 58 px.
pub const UNET_RECEPTIVE_RADIUS: u32 = {
    let mut radius = 0;
    let mut level = 0;
    while level < UNET_DEPTH {
        let stride = 1u32 << level;
        // Decoder convs + up-convolution, and encoder convs + pooling, at this level.
        radius += 2 * (2 * stride + stride);
        level += 1;
    }
    radius + 2 * (1 << UNET_DEPTH)
};

/// conv 3×3 (no bias) → BN → ReLU, twice.
#[derive(Debug)]
struct DoubleConv {
    layers: [(nn::Conv2D, nn::BatchNorm); 2],
}

impl DoubleConv {
    fn new(p: nn::Path, c_in: i64, c_out: i64) -> Self {
        let layer = |i: usize, c_in: i64| {
            let conv = nn::conv2d(
                &p / format!("conv{i}"),
                c_in,
                c_out,
                3,
                nn::ConvConfig {
                    padding: 1,
                    bias: false,
                    ..Default::default()
                },
            );
            let norm = nn::batch_norm2d(
                &p / format!("norm{i}"),
                c_out,
                nn::BatchNormConfig {
                    ws_init: nn::Init::Const(1.0),
                    ..Default::default()
                },
            );
            (conv, norm)
        };
        Self {
            layers: [layer(0, c_in), layer(1, c_out)],
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.layers
            .iter()
            .fold(x.shallow_clone(), |h, (conv, norm)| {
                h.apply(conv).apply_t(norm, train).relu()
            })
    }
}

/// One decoder level: 2×2 transposed conv (stride 2) up, concatenate the skip, double conv.
#[derive(Debug)]
struct UpLevel {
    up: nn::ConvTranspose2D,
    block: DoubleConv,
}

/// What one forward pass yields.
#[derive(Debug)]
pub struct UNetOutput {
    /// B×2×H×W class logits.
    pub logits: Tensor,
    /// B×15w×H/8×W/8 hypercolumn features (input to the projector).
    pub features: Tensor,
}

/// The backbone. Takes RGB in [0, 1] (B×3×H×W, H and W multiples of [`UNET_ALIGN`]).
#[derive(Debug)]
pub struct UNet {
    down: Vec<DoubleConv>,
    bottom: DoubleConv,
    /// Deepest level first.
    up: Vec<UpLevel>,
    classifier: nn::Conv2D,
    projector: [nn::Conv2D; 2],
}

impl UNet {
    /// Builds the network under `root` with width `width` (see the module docs).
    pub fn new(root: &nn::Path, width: i64) -> Self {
        let extractor = root / "extractor";
        let level_width = |level: usize| width << level;
        let down = (0..UNET_DEPTH)
            .map(|l| {
                let c_in = if l == 0 { 3 } else { level_width(l - 1) };
                DoubleConv::new(&extractor / "down" / l, c_in, level_width(l))
            })
            .collect();
        let bottom = DoubleConv::new(
            &extractor / "bottom",
            level_width(UNET_DEPTH - 1),
            level_width(UNET_DEPTH),
        );
        let up = (0..UNET_DEPTH)
            .rev()
            .map(|l| {
                let p = &extractor / "up" / l;
                let up = nn::conv_transpose2d(
                    &p / "up",
                    level_width(l + 1),
                    level_width(l),
                    2,
                    nn::ConvTransposeConfig {
                        stride: 2,
                        ..Default::default()
                    },
                );
                let block = DoubleConv::new(&p / "block", 2 * level_width(l), level_width(l));
                UpLevel { up, block }
            })
            .collect();
        let classifier = nn::conv2d(
            root / "classifier",
            width,
            UNET_CLASSES,
            1,
            Default::default(),
        );
        let hypercolumn = (0..=UNET_DEPTH).map(level_width).sum::<i64>();
        let projector = [
            nn::conv2d(
                root / "projector" / 0,
                hypercolumn,
                PROJECTION_DIM,
                1,
                Default::default(),
            ),
            nn::conv2d(
                root / "projector" / 2,
                PROJECTION_DIM,
                PROJECTION_DIM,
                1,
                Default::default(),
            ),
        ];
        Self {
            down,
            bottom,
            up,
            classifier,
            projector,
        }
    }

    /// Logits and stride-8 features of `images` (RGB in [0, 1]).
    pub fn forward_features(&self, images: &Tensor, train: bool) -> UNetOutput {
        let mut skips = Vec::with_capacity(UNET_DEPTH);
        let mut h = fast_layout(images);
        for block in &self.down {
            let features = block.forward_t(&h, train);
            h = features.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            skips.push(features);
        }
        h = self.bottom.forward_t(&h, train);
        let mut pooled = vec![h.shallow_clone()];
        for (level, skip) in self.up.iter().zip(skips.iter().rev()) {
            let up = h.apply(&level.up);
            h = level.block.forward_t(&Tensor::cat(&[skip, &up], 1), train);
            // Pool this level's output down to the bottleneck's stride.
            let to_bottom = h.size()[2] / pooled[0].size()[2];
            pooled.push(h.avg_pool2d(
                [to_bottom, to_bottom],
                [to_bottom, to_bottom],
                [0, 0],
                false,
                true,
                None,
            ));
        }
        UNetOutput {
            logits: h.apply(&self.classifier).contiguous(),
            features: Tensor::cat(&pooled, 1).contiguous(),
        }
    }

    /// Projected features (B×128×H/8×W/8), not yet normalised.
    pub fn project(&self, features: &Tensor) -> Tensor {
        self.projector[1].forward(&self.projector[0].forward(features).relu())
    }

    /// Class probabilities (B×2×H×W, eval mode) of images of any size: they are padded
    /// right and bottom with white up to the alignment (what a tiled reader sees past a
    /// slide's edge) and the prediction cropped back.
    pub fn probabilities(&self, images: &Tensor) -> Tensor {
        self.padded_forward(images, false)
    }

    /// The nucleus probability (B×1×H×W) of images of any size, padded as in
    /// [`Self::probabilities`]; in training mode when `train` (the self-training student's
    /// crops are 300 px, not a multiple of the alignment).
    pub fn nucleus_probability(&self, images: &Tensor, train: bool) -> Tensor {
        self.padded_forward(images, train).narrow(1, 1, 1)
    }

    fn padded_forward(&self, images: &Tensor, train: bool) -> Tensor {
        let (h, w) = (images.size()[2], images.size()[3]);
        let align = i64::from(UNET_ALIGN);
        let (pad_h, pad_w) = ((align - h % align) % align, (align - w % align) % align);
        let padded = images.constant_pad_nd([0, pad_w, 0, pad_h]);
        let _ = padded.narrow(2, h, pad_h).fill_(1.0);
        let _ = padded.narrow(3, w, pad_w).fill_(1.0);
        self.forward_t(&padded, train)
            .narrow(2, 0, h)
            .narrow(3, 0, w)
    }
}

impl ModuleT for UNet {
    /// Class probabilities (softmax of the logits), B×2×H×W.
    fn forward_t(&self, images: &Tensor, train: bool) -> Tensor {
        self.forward_features(images, train)
            .logits
            .softmax(1, tch::Kind::Float)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{torch_rng, uniform};
    use tch::Device;

    /// A seeded network (the caller holds [`torch_rng`]: initialisation draws from it).
    fn net(width: i64) -> (nn::VarStore, UNet) {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = UNet::new(&vs.root(), width);
        (vs, net)
    }

    #[test]
    fn shapes_and_parameter_count() {
        let _rng = torch_rng();
        let (vs, net) = net(8);
        let out = net.forward_features(&uniform(&[2, 3, 64, 48], 1), true);
        assert_eq!(out.logits.size(), [2, 2, 64, 48]);
        assert_eq!(out.features.size(), [2, 15 * 8, 8, 6]);
        assert_eq!(net.project(&out.features).size(), [2, PROJECTION_DIM, 8, 6]);
        let trainable: i64 = vs
            .trainable_variables()
            .iter()
            .map(Tensor::numel)
            .sum::<usize>() as i64;
        assert_eq!(trainable, 121_186 + 32_000);
    }

    /// A pixel just outside the receptive radius cannot change the output at the centre; a
    /// block well inside it does (so the radius is neither too small nor vacuous).
    #[test]
    fn receptive_radius_bounds_the_context() {
        let _rng = torch_rng();
        let (_vs, net) = net(4);
        let side = 2 * 64 + 8;
        let centre = 64;
        let base = uniform(&[1, 3, side, side], 2);
        let at_centre = |x: &Tensor| {
            tch::no_grad(|| {
                net.forward_features(x, false)
                    .logits
                    .get(0)
                    .get(1)
                    .get(centre)
                    .get(centre)
            })
        };
        let reference = at_centre(&base);
        let far = base.copy();
        let r = centre + UNET_RECEPTIVE_RADIUS as i64 + 1;
        let _ = far.get(0).get(0).get(r).get(r).fill_(5.0);
        assert!(at_centre(&far).equal(&reference));
        // One pixel of one channel can vanish behind a ReLU or a max-pool; an 8×8 block in
        // every channel cannot, whatever the weights.
        let near = base.copy();
        let _ = near
            .narrow(2, centre + 16, 8)
            .narrow(3, centre + 16, 8)
            .fill_(5.0);
        assert!(!at_centre(&near).equal(&reference));
    }
}
