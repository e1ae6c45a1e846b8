//! Tile read throughput (Mpx/s) on a real slide and a synthetic one:
//! `cargo bench --bench read_throughput [-- SLIDE...]`.
//!
//! For each slide and each read path (OpenSlide `read_region`; the direct JPEG tile path
//! where the slide allows it) it reads every 512×512 level-0 tile once on one thread, then
//! through the pipeline's parallel decode stage with one worker per core, and prints
//! wall-clock Mpx/s and Mpx/s per core of CPU time (the CPU-time figure is what one core
//! delivers even when the machine is shared). Each pass opens the slide afresh so no
//! cache carries over.

use slidestream::commands::synth::{self, SynthArgs};
use slidestream::pipeline::{CancelToken, Pipeline};
use slidestream::slide::grid::TileGrid;
use slidestream::slide::tile_reader::decode_tiles;
use slidestream::slide::{self, OpenOptions, Slide};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

const TILE: u32 = 512;

/// CPU seconds (user + system) used by this process so far.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we own.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

struct Measure {
    mpx_per_s: f64,
    mpx_per_cpu_s: f64,
}

fn measure(megapixels: f64, work: impl FnOnce()) -> Measure {
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    work();
    Measure {
        mpx_per_s: megapixels / wall.elapsed().as_secs_f64(),
        mpx_per_cpu_s: megapixels / (cpu_seconds() - cpu),
    }
}

fn bench(path: &Path, workers: usize, options: OpenOptions, label: &str) {
    // A fresh handle per run, so the second run does not hit OpenSlide's tile cache.
    let open = || slide::open_with(path, options).unwrap_or_else(|e| panic!("{e}"));
    let s = open();
    let (w, h) = s.dimensions();
    let grid = TileGrid::new(w, h, TILE, 0);
    let megapixels = (w * h) as f64 / 1e6;

    let single = measure(megapixels, || {
        for t in grid.tiles() {
            let r = t.read;
            s.read_region(0, r.x, r.y, r.width, r.height).unwrap();
        }
    });
    let s: Arc<dyn Slide> = open();
    let parallel = measure(megapixels, || {
        let cancel = CancelToken::new();
        let mut run = Pipeline::new("read", &cancel);
        let tiles = decode_tiles(&mut run, s, 0, grid.tiles().collect(), workers, 2 * workers);
        run.sink("drop", tiles, |_| Ok(()));
        run.join().unwrap();
    });
    println!(
        "{:<28} {label:<9} {:>6.1} Mpx | 1 thread {:>6.1} Mpx/s ({:>6.1} per CPU-s) | {} workers {:>6.1} Mpx/s ({:>6.1} per CPU-s)",
        path.file_name().unwrap().to_string_lossy(),
        megapixels,
        single.mpx_per_s,
        single.mpx_per_cpu_s,
        workers,
        parallel.mpx_per_s,
        parallel.mpx_per_cpu_s,
    );
}

fn main() {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut slides: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .collect();
    let _scratch = tempfile::tempdir().unwrap();
    if slides.is_empty() {
        let cmu = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data/slides/CMU-1-Small-Region.svs");
        if cmu.exists() {
            slides.push(cmu);
        } else {
            eprintln!("CMU-1-Small-Region.svs not found next to the checkout; skipping it");
        }
        let args = SynthArgs {
            out: _scratch.path().join("synthetic-8192.tif"),
            mask: None,
            width: 8192,
            height: 8192,
            seed: 1,
            tissue_coverage: 0.55,
            tile: TILE,
        };
        slides.push(synth::run(&args, false, &CancelToken::new()).unwrap().slide);
    }
    for path in &slides {
        bench(
            path,
            workers,
            OpenOptions {
                fast_jpeg: false,
                ..Default::default()
            },
            "openslide",
        );
        bench(path, workers, OpenOptions::default(), "default");
    }
}
