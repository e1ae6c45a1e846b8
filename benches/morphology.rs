//! Throughput of the nuclei mask post-processing: `cargo bench --bench morphology`.
//!
//! Times `morphology::postprocess` on a 4096 x 4096 mask of random blobs on one thread, against
//! a brute-force reference that visits every disk offset of every pixel, and checks that the
//! two agree. Prints Mpx/s by wall time and, on Linux, per core by CPU time (the build machines
//! are shared, so wall time understates what a core does).

use std::time::Instant;

use slidestream::morphology::{disk, postprocess};

const SIDE: usize = 4096;
const RUNS: usize = 20;

fn main() {
    let mask = blobs(SIDE, SIDE, 0x5eed);
    let mpx = (SIDE * SIDE) as f64 / 1e6;
    let foreground = mask.iter().filter(|&&m| m != 0).count() as f64 / (mpx * 1e6);
    println!("{SIDE}x{SIDE} mask, {:.1} % foreground", 100.0 * foreground);

    // Best wall time of several runs; CPU time over all of them, as its clock ticks coarsely.
    let mut fast = Vec::new();
    let mut best = f64::INFINITY;
    let cpu_start = cpu_seconds();
    for _ in 0..RUNS {
        let start = Instant::now();
        fast = postprocess(&mask, SIDE, SIDE);
        best = best.min(start.elapsed().as_secs_f64());
    }
    let cpu = cpu_start
        .zip(cpu_seconds())
        .map(|(a, b)| (b - a) / RUNS as f64);
    let fast_rate = report("postprocess", mpx, best, cpu);

    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    let slow = naive_postprocess(&mask, SIDE, SIDE);
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_start.zip(cpu_seconds()).map(|(a, b)| b - a);
    let slow_rate = report("naive", mpx, secs, cpu);

    assert!(
        fast == slow,
        "postprocess disagrees with the brute-force reference"
    );
    println!(
        "speed-up: {:.1}x (wall), outputs identical",
        fast_rate / slow_rate
    );
}

/// Prints one line and returns the wall-time rate in Mpx/s.
fn report(label: &str, mpx: f64, secs: f64, cpu: Option<f64>) -> f64 {
    let per_core = match cpu {
        Some(c) if c > 0.0 => format!("{:.1}", mpx / c),
        _ => "n/a".to_owned(),
    };
    println!(
        "{label:>12}: {:.1} ms = {:.1} Mpx/s wall, {per_core} Mpx/s per core of CPU time (1 thread)",
        secs * 1e3,
        mpx / secs
    );
    mpx / secs
}

/// The post-processing steps done the obvious way: for each pixel, test the disk's offsets,
/// pixels outside the image counting as foreground for erosion and background for dilation.
fn naive_postprocess(mask: &[u8], width: usize, height: usize) -> Vec<u8> {
    let steps = [
        (true, 3),
        (false, 3),
        (false, 3),
        (true, 3),
        (true, 1),
        (false, 1),
        (false, 1),
        (true, 1),
    ];
    steps.iter().fold(mask.to_vec(), |m, &(erode, radius)| {
        let fp = disk(radius);
        let r = radius as isize;
        let offsets: Vec<(isize, isize)> = (-r..=r)
            .flat_map(|dy| (-r..=r).map(move |dx| (dy, dx)))
            .filter(|&(dy, dx)| fp.contains(dy, dx))
            .collect();
        let at = |y: isize, x: isize| {
            if (0..height as isize).contains(&y) && (0..width as isize).contains(&x) {
                m[y as usize * width + x as usize] != 0
            } else {
                erode
            }
        };
        let mut out = vec![0; m.len()];
        for y in 0..height as isize {
            for x in 0..width as isize {
                let mut hits = offsets.iter().map(|&(dy, dx)| at(y + dy, x + dx));
                let on = if erode {
                    hits.all(|h| h)
                } else {
                    hits.any(|h| h)
                };
                out[y as usize * width + x as usize] = u8::from(on);
            }
        }
        out
    })
}

/// Nuclei-like test mask: filled circles of radius 3..12 plus 3 % salt-and-pepper noise, from
/// a small seeded generator so the bench needs no dependency.
fn blobs(width: usize, height: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    // SplitMix64.
    let mut next = move |bound: usize| {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % bound as u64) as usize
    };
    let mut mask = vec![0u8; width * height];
    for _ in 0..width * height / 400 {
        let (cx, cy, r) = (next(width), next(height), 3 + next(10));
        for y in cy.saturating_sub(r)..(cy + r + 1).min(height) {
            for x in cx.saturating_sub(r)..(cx + r + 1).min(width) {
                if x.abs_diff(cx).pow(2) + y.abs_diff(cy).pow(2) <= r * r {
                    mask[y * width + x] = 255;
                }
            }
        }
    }
    for m in &mut mask {
        if next(100) < 3 {
            *m ^= 255;
        }
    }
    mask
}

/// CPU time (user + system) of this process so far, from Linux's /proc (in 1/100 s ticks).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name start at field 3; utime and stime are 14, 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}
