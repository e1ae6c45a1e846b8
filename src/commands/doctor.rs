//! `slidestream doctor`: what this binary runs on, so a user can tell why the GPU is not
//! used or which OpenSlide opened their slides.

use crate::device;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Report {
    pub slidestream: &'static str,
    pub libtorch_built_against: &'static str,
    pub libtorch_loaded_from: Option<String>,
    pub openslide: String,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn_available: bool,
    pub cudnn_version: Option<i64>,
    pub cuda_runtime_version: Option<i64>,
    pub cuda_backend: String,
    pub torch_threads: i32,
    pub torch_interop_threads: i32,
    pub rayon_threads: usize,
    pub cpu_cores: usize,
}

pub fn collect() -> Report {
    let cuda = tch::Cuda::is_available();
    Report {
        slidestream: env!("CARGO_PKG_VERSION"),
        libtorch_built_against: env!("SLIDESTREAM_LIBTORCH_VERSION"),
        libtorch_loaded_from: loaded_library("libtorch_cpu.so"),
        openslide: crate::slide::openslide_version(),
        cuda_available: cuda,
        cuda_devices: if cuda { tch::Cuda::device_count() } else { 0 },
        cudnn_available: cuda && tch::Cuda::cudnn_is_available(),
        cudnn_version: cuda.then(tch::utils::version_cudnn),
        cuda_runtime_version: cuda.then(tch::utils::version_cudart),
        cuda_backend: device::cuda_backend_status(),
        torch_threads: tch::get_num_threads(),
        torch_interop_threads: tch::get_num_interop_threads(),
        rayon_threads: rayon::current_num_threads(),
        cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// The path of a shared library mapped into this process, from /proc/self/maps.
fn loaded_library(name: &str) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.rsplit('/').next() == Some(name))
        .map(str::to_string)
}

pub fn print_text(r: &Report) {
    let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    println!("slidestream        {}", r.slidestream);
    println!(
        "libtorch           {} (built against), loaded from {}",
        r.libtorch_built_against,
        r.libtorch_loaded_from.as_deref().unwrap_or("?")
    );
    println!("openslide          {}", r.openslide);
    println!(
        "cuda               {} ({})",
        r.cuda_available, r.cuda_backend
    );
    println!("cuda devices       {}", r.cuda_devices);
    println!(
        "cudnn              {} (version {})",
        r.cudnn_available,
        opt(r.cudnn_version)
    );
    println!("cuda runtime       {}", opt(r.cuda_runtime_version));
    println!(
        "threads            torch {} (interop {}), rayon {}, cores {}",
        r.torch_threads, r.torch_interop_threads, r.rayon_threads, r.cpu_cores
    );
}
