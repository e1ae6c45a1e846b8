//! Optimizer steps per second for the paper's configuration (batch 10 of 300×300 crops,
//! K=4, entropy sampler, MSE), and the time of one full-size 1000×1000 validation forward, the
//! plain eval-mode one next to `ConfidenceNet::infer` (BatchNorm folded; on x86-64 CPUs with
//! AVX2 the hand-written whole-forward kernel).
//! `cargo bench --bench train_steps [-- STEPS]`; runs on CUDA when available.

use std::time::Instant;

use slidestream::train::{Batch, TrainConfig, Trainer};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

/// Seconds `f` takes, its result forced to the host (CUDA kernels run asynchronously).
fn seconds(f: impl Fn() -> Tensor) -> f64 {
    let start = Instant::now();
    let _ = f().sum(Kind::Float).double_value(&[]);
    start.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
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
    println!(
        "1000×1000 eval-mode forward_t {eval_s:.3} s, infer {infer_s:.3} s: \
         {:.2}× faster, max |difference| {difference:.1e}",
        eval_s / infer_s
    );
    Ok(())
}
