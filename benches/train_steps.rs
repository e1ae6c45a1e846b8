//! Optimizer steps per second for the paper's configuration (batch 10 of 300×300 crops,
//! K=4, entropy sampler, MSE), and the time of one full-size 1000×1000 validation forward.
//! `cargo bench --bench train_steps [-- STEPS]`; runs on CUDA when available.

use std::time::Instant;

use slidestream::train::{Batch, TrainConfig, Trainer};
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

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
    let image = Tensor::rand([1, 3, 1000, 1000], (Kind::Float, device));
    let start = Instant::now();
    let _ = tch::no_grad(|| {
        trainer
            .net
            .forward_t(&image, false)
            .sum(Kind::Float)
            .double_value(&[])
    });
    let val_s = start.elapsed().as_secs_f64();
    println!(
        "device {device:?}, torch threads {}: {steps} steps ({skipped} skipped) in {step_s:.2} s = {:.3} steps/s; \
         1000×1000 eval forward {val_s:.2} s",
        tch::get_num_threads(),
        steps as f64 / step_s
    );
    Ok(())
}
