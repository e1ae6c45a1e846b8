//! Confidence network f_θ: a tiny dilated residual FCNN (paper appendix E.3).
//!
//! Variable names mirror the authors' PyTorch module (`src/modules.py`,
//! `ConfidenceNetwork(3, 8, K)`), so `model.safetensors` loads into it with
//! `load_state_dict(..., strict=False)` (only BatchNorm's `num_batches_tracked` is absent).

use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use super::layout::fast_layout;
use super::tiny_conv::{
    self, FoldedConv, FoldedNet, CHANNELS as KERNEL_CHANNELS, INPUT_CHANNELS as KERNEL_INPUTS,
};

/// Channel width of every hidden layer.
pub const HIDDEN_CHANNELS: i64 = 8;
// `infer` runs through a kernel built for this width and RGB input.
const _: () = assert!(HIDDEN_CHANNELS as usize == KERNEL_CHANNELS && KERNEL_INPUTS == 3);
/// Padding = dilation of the six residual blocks.
pub const DILATIONS: [i64; 6] = [1, 2, 3, 5, 10, 20];
/// How far (in pixels, Chebyshev) an output confidence looks into the input: the stem's
/// 3×3 reaches 1 px and each residual block's two dilated 3×3 convolutions 2d px, so
/// 1 + 2·(1+2+3+5+10+20) = 83 (a 167 px receptive field). Tiles read with at least this
/// much context give exactly the confidences of the whole image.
pub const RECEPTIVE_RADIUS: u32 = {
    let mut radius = 1;
    let mut i = 0;
    while i < DILATIONS.len() {
        radius += 2 * DILATIONS[i] as u32;
        i += 1;
    }
    radius
};
/// Inputs are mapped to (1-ε)x+ε so that no attended pixel I·C is exactly zero (paper code).
pub const DEFAULT_EPSILON: f64 = 0.05;

/// Maps raw [0, 1] intensities to [ε, 1].
pub fn normalise_input(x: &Tensor, epsilon: f64) -> Tensor {
    x * (1.0 - epsilon) + epsilon
}

/// 8-bit-rounded ITU-R 601 luma in [0, 1] (B×H×W) of RGB in [0, 1] (B×3×H×W).
pub fn luma(images: &Tensor) -> Tensor {
    let weights = Tensor::from_slice(&[0.299f32, 0.587, 0.114])
        .to_device(images.device())
        .view([1, 3, 1, 1]);
    (images * weights * 255.0)
        .sum_dim_intlist(1, false, tch::Kind::Float)
        .round()
        / 255.0
}

/// PyTorch's default conv init, U(±1/sqrt(fan_in)); tch's default uses the ReLU gain.
fn torch_default_init(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// BatchNorm's ε (PyTorch's and tch's default, which every block is built with).
const BATCH_NORM_EPS: f64 = 1e-5;

/// conv 3×3 (no bias) → BatchNorm → ELU; named `<p>.f.0` and `<p>.f.1` like nn.Sequential.
#[derive(Debug)]
struct Conv2dBlock {
    conv: nn::Conv2D,
    norm: nn::BatchNorm,
    dilation: i64,
}

impl Conv2dBlock {
    fn new(p: nn::Path, c_in: i64, c_out: i64, dilation: i64) -> Self {
        let f = p / "f";
        let conv = nn::conv2d(
            &f / "0",
            c_in,
            c_out,
            3,
            nn::ConvConfig {
                padding: dilation,
                dilation,
                bias: false,
                ws_init: torch_default_init(c_in * 9),
                ..Default::default()
            },
        );
        // PyTorch initialises BatchNorm to the identity; tch draws weights from U(0,1).
        let norm = nn::batch_norm2d(
            &f / "1",
            c_out,
            nn::BatchNormConfig {
                ws_init: nn::Init::Const(1.0),
                ..Default::default()
            },
        );
        Self {
            conv,
            norm,
            dilation,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.conv).apply_t(&self.norm, train).elu()
    }

    /// Eval-mode forward (call under `no_grad`) with the BatchNorm folded into the
    /// convolution's weights and bias and the ELU in place: two fewer passes over the
    /// activations than [`Self::forward_t`], the same values up to float rounding.
    fn infer(&self, x: &Tensor) -> Tensor {
        let (weight, bias) = self.folded();
        let d = self.dilation;
        x.conv2d(&weight, Some(&bias), [1, 1], [d, d], [d, d], 1)
            .elu_()
    }

    /// The convolution's weight and bias with the eval-mode BatchNorm folded in.
    fn folded(&self) -> (Tensor, Tensor) {
        let gamma = self.norm.ws.as_ref().expect("affine BatchNorm");
        let beta = self.norm.bs.as_ref().expect("affine BatchNorm");
        let scale = gamma / (&self.norm.running_var + BATCH_NORM_EPS).sqrt();
        let weight = &self.conv.ws * scale.view([-1, 1, 1, 1]);
        let bias = beta - &self.norm.running_mean * &scale;
        (weight, bias)
    }

    /// [`Self::folded`] as the CPU kernel takes it (`INPUTS`→8 channels only).
    fn folded_for_kernel<const INPUTS: usize>(&self) -> FoldedConv<INPUTS> {
        let (weight, bias) = self.folded();
        // out×in×ky×kx → ky×kx×in×out: a tap's weights for one input channel are contiguous.
        let weight = Vec::<f32>::try_from(weight.permute([2, 3, 1, 0]).contiguous().view(-1))
            .expect("f32 weights");
        let bias = Vec::<f32>::try_from(bias.contiguous()).expect("f32 bias");
        assert_eq!(
            weight.len(),
            9 * INPUTS * KERNEL_CHANNELS,
            "an {INPUTS}→8 convolution"
        );
        let mut folded = FoldedConv {
            weight: [[[0.0; KERNEL_CHANNELS]; INPUTS]; 9],
            bias: bias.try_into().expect("8 output channels"),
            dilation: usize::try_from(self.dilation).expect("positive dilation"),
        };
        for (target, source) in folded
            .weight
            .iter_mut()
            .flatten()
            .zip(weight.chunks_exact(KERNEL_CHANNELS))
        {
            target.copy_from_slice(source);
        }
        folded
    }
}

/// Confidence network with K sigmoid output channels. Takes raw RGB in [0, 1] (B×3×H×W)
/// through [`ModuleT::forward_t`] and returns confidences in (0,1) (B×K×H×W).
#[derive(Debug)]
pub struct ConfidenceNet {
    stem: Conv2dBlock,
    residual: Vec<[Conv2dBlock; 2]>,
    head: nn::Conv2D,
    channels: i64,
    epsilon: f64,
}

impl ConfidenceNet {
    /// Builds the network under `root` (use `vs.root()` for PyTorch-compatible names).
    pub fn new(root: &nn::Path, channels: i64, epsilon: f64) -> Self {
        let f = root / "f";
        let stem = Conv2dBlock::new(&f / "0", 3, HIDDEN_CHANNELS, 1);
        let residual = DILATIONS
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let block = &f / (i + 1) / "block";
                [0, 1].map(|j| Conv2dBlock::new(&block / j, HIDDEN_CHANNELS, HIDDEN_CHANNELS, d))
            })
            .collect();
        let head = nn::conv2d(
            &f / (DILATIONS.len() + 1),
            HIDDEN_CHANNELS,
            channels,
            1,
            nn::ConvConfig {
                ws_init: torch_default_init(HIDDEN_CHANNELS),
                bs_init: torch_default_init(HIDDEN_CHANNELS),
                ..Default::default()
            },
        );
        Self {
            stem,
            residual,
            head,
            channels,
            epsilon,
        }
    }

    /// Number of output channels K.
    pub fn channels(&self) -> i64 {
        self.channels
    }

    /// The ε of the input mapping (1-ε)x+ε.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Raw [0, 1] image → the network's input (also the image that patches are cut from).
    pub fn normalise(&self, x: &Tensor) -> Tensor {
        normalise_input(x, self.epsilon)
    }

    /// Confidence maps (contiguous B×K×H×W) for an already normalised input.
    pub fn confidence(&self, normalised: &Tensor, train: bool) -> Tensor {
        let mut h = self.stem.forward_t(&fast_layout(normalised), train);
        for [a, b] in &self.residual {
            h = &h + b.forward_t(&a.forward_t(&h, train), train);
        }
        h.apply(&self.head).sigmoid().contiguous()
    }

    /// Eval-mode confidences (B×K×H×W) of raw RGB in [0, 1] for validation and segmentation:
    /// [`ModuleT::forward_t`] with `train = false`, minus the autograd bookkeeping and the
    /// separate BatchNorm and ELU passes, which are most of a CPU forward's memory traffic;
    /// on CPUs with AVX2 and FMA, one hand-written kernel (`cargo bench --bench train_steps`
    /// measures both side by side).
    pub fn infer(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| {
            if x.device() == Device::Cpu && x.kind() == Kind::Float && tiny_conv::available() {
                self.infer_with_kernel(x)
            } else {
                self.infer_with_torch(x)
            }
        })
    }
}

impl ConfidenceNet {
    /// [`Self::infer`] through torch (any device).
    fn infer_with_torch(&self, x: &Tensor) -> Tensor {
        let mut h = self.stem.infer(&fast_layout(&self.normalise(x)));
        for [a, b] in &self.residual {
            h += b.infer(&a.infer(&h));
        }
        h.apply(&self.head).sigmoid_().contiguous()
    }

    /// [`Self::infer`] through the hand-written CPU kernel.
    fn infer_with_kernel(&self, x: &Tensor) -> Tensor {
        let [batch, 3, height, width] = x.size()[..] else {
            panic!("B×3×H×W images, got {:?}", x.size())
        };
        let images = Vec::<f32>::try_from(x.contiguous().view(-1)).expect("f32 images");
        let out = tiny_conv::confidences(&images, height as usize, width as usize, &self.folded());
        Tensor::from_slice(&out).view([batch, self.channels, height, width])
    }

    /// The network with every BatchNorm folded, as the kernel takes it.
    fn folded(&self) -> FoldedNet {
        let head_weight = Vec::<f32>::try_from(self.head.ws.contiguous().view(-1)).expect("f32");
        let head_bias = self.head.bs.as_ref().expect("head bias");
        FoldedNet {
            epsilon: self.epsilon,
            stem: self.stem.folded_for_kernel(),
            blocks: self
                .residual
                .iter()
                .map(|pair| pair.each_ref().map(Conv2dBlock::folded_for_kernel))
                .collect(),
            head: tiny_conv::Head {
                weight: head_weight
                    .chunks_exact(KERNEL_CHANNELS)
                    .map(|row| row.try_into().expect("8 inputs"))
                    .collect(),
                bias: Vec::<f32>::try_from(head_bias.contiguous()).expect("f32 bias"),
            },
        }
    }
}

impl ModuleT for ConfidenceNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.confidence(&self.normalise(x), train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{torch_rng, uniform};

    /// The kernel and torch compute the same confidences (the torch path is the one CUDA and
    /// CPUs without AVX2 take, so it stays tested where the kernel runs).
    #[test]
    fn kernel_and_torch_inference_agree() {
        if !tiny_conv::available() {
            return;
        }
        // Layer initialisation draws from the generator.
        let _rng = torch_rng();
        // Fewer and more output channels than a vector holds.
        for channels in [2, 9] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = ConfidenceNet::new(&vs.root(), channels, DEFAULT_EPSILON);
            tch::no_grad(|| {
                for (name, mut var) in vs.variables() {
                    // BatchNorm scales, shifts and statistics away from the identity.
                    if name.contains(".f.1.") {
                        var.copy_(&(uniform(&var.size(), channels as u64) + 0.5));
                    }
                }
            });
            // The repeated shape reuses the planes of the call before (see `tiny_conv`); 50
            // columns end in a partial block of pixels, 3×7 is narrower than a block.
            for (seed, shape) in [[2, 3, 45, 50], [2, 3, 45, 50], [1, 3, 3, 7]]
                .into_iter()
                .enumerate()
            {
                let x = uniform(&shape, seed as u64);
                let kernel = tch::no_grad(|| net.infer_with_kernel(&x));
                let torch = tch::no_grad(|| net.infer_with_torch(&x));
                assert_eq!(kernel.size(), torch.size());
                let gap = (&kernel - &torch).abs().max().double_value(&[]);
                assert!(gap < 1e-6, "{channels} channels, {shape:?}: gap {gap}");
                let spread = torch.std(false).double_value(&[]);
                assert!(spread > 1e-3, "a flat output proves nothing: sd {spread}");
            }
        }
    }
}
