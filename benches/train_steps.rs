//! Optimizer steps per second for the paper's configuration (batch 10 of 300×300 crops,
//! K=4, entropy sampler, MSE), and the time of one full-size 1000×1000 validation forward, the
//! plain eval-mode one next to `ConfidenceNet::infer` (BatchNorm folded; on x86-64 CPUs with
//! AVX2 the hand-written whole-forward kernel). Also where a step's time goes (forward,
//! backward, sampler+loss, optimizer) and the network's layer pattern forward+backward in
//! NCHW against NHWC, with and without BatchNorm+ELU: why the networks run channels-last.
//! `cargo bench --bench train_steps [-- STEPS]`; runs on CUDA when available.

use std::time::Instant;

use slidestream::model::{fast_layout, DILATIONS, HIDDEN_CHANNELS};
use slidestream::train::{contrastive_objective, Batch, TrainConfig, Trainer};
use tch::{Device, Kind, Tensor};

/// Seconds `f` takes, its result forced to the host (CUDA kernels run asynchronously).
fn seconds(f: impl Fn() -> Tensor) -> f64 {
    let start = Instant::now();
    let _ = f().sum(Kind::Float).double_value(&[]);
    start.elapsed().as_secs_f64()
}

/// Mean milliseconds of `f` over `repeats` calls, the device drained before and after.
fn phase_ms(
    device: Device,
    repeats: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let drain = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    drain();
    let start = Instant::now();
    for _ in 0..repeats {
        f()?;
    }
    drain();
    Ok(start.elapsed().as_secs_f64() * 1e3 / repeats as f64)
}

/// Cumulative prefixes of a contrastive step: the network forward alone, forward+backward,
/// the objective (forward, sampler, patches, loss) and objective+backward; differences of
/// consecutive ones are the sampler+loss and the optimizer's share.
fn phase_breakdown(
    trainer: &Trainer,
    config: &TrainConfig,
    batch: &impl Fn() -> Batch,
    repeats: usize,
) -> anyhow::Result<String> {
    let net = trainer
        .net
        .confidence_net()
        .expect("the contrastive method trains the confidence network");
    let forward = |x: &Tensor| net.confidence(&net.normalise(x), true);
    let device = config.device;
    let fwd = phase_ms(device, repeats, || {
        let _ = forward(&batch().images);
        Ok(())
    })?;
    let fwd_bwd = phase_ms(device, repeats, || {
        forward(&batch().images).mean(Kind::Float).backward();
        Ok(())
    })?;
    let objective = phase_ms(device, repeats, || {
        let _ = contrastive_objective(net, config, &batch().images)?;
        Ok(())
    })?;
    let objective_bwd = phase_ms(device, repeats, || {
        if let Some(parts) = contrastive_objective(net, config, &batch().images)? {
            parts.total.backward();
        }
        Ok(())
    })?;
    Ok(format!(
        "forward {fwd:.2}, forward+backward {fwd_bwd:.2}, objective {objective:.2}, \
         objective+backward {objective_bwd:.2}"
    ))
}

/// Milliseconds of forward+backward of the network's layer pattern (3→8 stem, then per
/// dilation of `DILATIONS` a residual pair of 8→8 3×3 convolutions) on `x`, with `conv2d`,
/// with or without BatchNorm (the backend's, e.g. cuDNN, or torch's own) + ELU, in `x`'s
/// memory layout: which part of the backward pass is slow, and what the layout gives.
fn layer_pattern_ms(x: &Tensor, norm: Option<bool>, repeats: usize) -> anyhow::Result<f64> {
    let device = x.device();
    let weight = |inputs: i64| {
        (Tensor::randn([HIDDEN_CHANNELS, inputs, 3, 3], (Kind::Float, device)) * 0.2)
            .set_requires_grad(true)
    };
    let stem = weight(3);
    let pairs: Vec<(i64, Tensor, Tensor)> = DILATIONS
        .iter()
        .map(|&d| (d, weight(HIDDEN_CHANNELS), weight(HIDDEN_CHANNELS)))
        .collect();
    let block = |x: &Tensor, w: &Tensor, d: i64| {
        let y = x.conv2d(w, None::<Tensor>, [1, 1], [d, d], [d, d], 1);
        match norm {
            Some(cudnn) => y
                .batch_norm(
                    None::<Tensor>,
                    None::<Tensor>,
                    None::<Tensor>,
                    None::<Tensor>,
                    true,
                    0.1,
                    1e-5,
                    cudnn,
                )
                .elu(),
            None => y,
        }
    };
    phase_ms(device, repeats, || {
        let mut h = block(x, &stem, 1);
        for (d, first, second) in &pairs {
            h = &h + block(&block(&h, first, *d), second, *d);
        }
        h.mean(Kind::Float).backward();
        Ok(())
    })
}

fn main() -> anyhow::Result<()> {
    // Without this the binary never links libtorch_cuda.so and CUDA stays invisible.
    slidestream::device::load_cuda_backend();
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let device = Device::cuda_if_available();
    let config = TrainConfig {
        device,
        ..TrainConfig::default()
    };
    tch::manual_seed(0);
    let mut trainer = Trainer::new(&config)?;
    let crop = i64::from(config.crop);
    let batch = || Batch {
        images: Tensor::rand([config.batch as i64, 3, crop, crop], (Kind::Float, device)),
        masks: None,
        hematoxylin_cuts: None,
        labeled: None,
    };
    trainer.step(&batch())?; // warm-up: allocator, kernel selection
    let start = Instant::now();
    let mut skipped = 0;
    for _ in 0..steps {
        skipped += matches!(
            trainer.step(&batch())?,
            slidestream::train::StepOutcome::Skipped
        ) as usize;
    }
    let step_s = start.elapsed().as_secs_f64();
    let breakdown = phase_breakdown(&trainer, &config, &batch, steps)?;
    // A trained network's BatchNorms are no identity: move the running statistics first so
    // that folding them into the convolutions is really exercised.
    let image = Tensor::rand([1, 3, 1000, 1000], (Kind::Float, device));
    let _ = tch::no_grad(|| trainer.net.forward_t(&image, true));
    let eval_forward = || tch::no_grad(|| trainer.net.forward_t(&image, false));
    let infer = || trainer.net.infer(&image);
    let difference = (eval_forward() - infer()).abs().max().double_value(&[]);
    // Interleaved repetitions: the two are compared within one run on the same machine.
    let (mut eval_s, mut infer_s) = (0.0, 0.0);
    const REPEATS: usize = 3;
    for _ in 0..REPEATS {
        eval_s += seconds(eval_forward);
        infer_s += seconds(infer);
    }
    let (eval_s, infer_s) = (eval_s / REPEATS as f64, infer_s / REPEATS as f64);
    println!(
        "device {device:?}, torch threads {}: {steps} steps ({skipped} skipped) in {step_s:.2} s = {:.3} steps/s",
        tch::get_num_threads(),
        steps as f64 / step_s
    );
    println!("where a step's time goes (ms, each phase alone, synchronised): {breakdown}");
    let x = Tensor::rand([config.batch as i64, 3, crop, crop], (Kind::Float, device));
    let nhwc = fast_layout(&x);
    let experiment = [
        ("conv2d+BN+ELU NCHW", &x, Some(true)),
        (
            "conv2d+BN+ELU NHWC (what the networks run)",
            &nhwc,
            Some(true),
        ),
        ("conv2d alone NCHW", &x, None),
        ("conv2d+torch's BN+ELU NCHW", &x, Some(false)),
    ];
    for (name, input, norm) in experiment {
        layer_pattern_ms(input, norm, 2)?; // warm-up
        println!(
            "layer pattern fwd+bwd, {name}: {:.2} ms",
            layer_pattern_ms(input, norm, steps.min(50))?
        );
    }
    println!(
        "1000×1000 eval-mode forward_t {eval_s:.3} s, infer {infer_s:.3} s: \
         {:.2}× faster, max |difference| {difference:.1e}",
        eval_s / infer_s
    );
    Ok(())
}
