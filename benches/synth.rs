//! Render throughput of the synthetic slide generator: `cargo bench --bench synth`.
//!
//! Prints Mpx/s for an 8192 x 8192 region on one thread and on the whole rayon pool, by wall
//! time and, on Linux, per core by CPU time (the build machines are shared, so wall time
//! understates what a core does).

use std::time::Instant;

use slidestream::synth::{Synth, SynthSpec};

const SIDE: u32 = 8192;

fn main() {
    let spec = SynthSpec::new(u64::from(SIDE), u64::from(SIDE), 1);
    let synth = Synth::new(&spec).expect("default spec is valid");
    let mpx = f64::from(SIDE) * f64::from(SIDE) / 1e6;
    let time = |label: &str, threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        let (start, cpu_start) = (Instant::now(), cpu_seconds());
        let region = pool.install(|| synth.render_region(0, 0, SIDE, SIDE));
        let secs = start.elapsed().as_secs_f64();
        let per_core = match (cpu_start, cpu_seconds()) {
            (Some(a), Some(b)) if b > a => format!("{:.1}", mpx / (b - a)),
            _ => "n/a".to_owned(),
        };
        let tissue = region.tissue.iter().filter(|&&t| t > 0).count() as f64;
        let nuclei = region.mask.iter().filter(|&&m| m > 0).count() as f64;
        println!(
            "{label:>10}: {SIDE}x{SIDE} in {secs:.2} s = {:.1} Mpx/s wall, \
             {per_core} Mpx/s per core of CPU time; tissue {:.0} %, nuclei {:.1} % of tissue",
            mpx / secs,
            100.0 * tissue / (mpx * 1e6),
            100.0 * nuclei / tissue.max(1.0),
        );
    };
    time("1 thread", 1);
    let all = rayon::current_num_threads();
    time(&format!("{all} threads"), all);
}

/// CPU time (user + system) of this process so far, from Linux's /proc (in 1/100 s ticks).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name start at field 3; utime and stime are 14, 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}
