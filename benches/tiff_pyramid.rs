//! Pyramid writer against `vips tiffsave`, and the writer's peak memory.
//!
//! ```text
//! cargo bench --bench tiff_pyramid -- [--size 32768] [--mem-size 40000]
//!     [--mode all|compare|memory] [--repeat 1] [--data DIR]
//! ```
//!
//! `compare` makes a `size`² binary nuclei-like mask (a few tissue areas dotted with disks,
//! mostly background), stores it once as raw bytes and, untimed, as a vips `.v` file, then
//! times our writer streaming the raw file (as grey bytes, and as a binary mask held in
//! bits) against `vips tiffsave ... --pyramid` for Deflate and LZW. `memory` writes a
//! `mem-size`² mask generated on the fly in a child process, grey and binary, and reports
//! the child's peak RSS (VmHWM).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slidestream::tiff::{Channels, Compression, Downsample, PyramidOptions, PyramidWriter};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const TILE: u32 = 512;
/// Rows per `write_rows` call in memory mode.
const CHUNK_ROWS: u32 = 32;

struct Args {
    size: u32,
    mem_size: u32,
    mode: String,
    repeat: u32,
    data: PathBuf,
    child: Option<(u32, String, String)>,
}

fn parse_args() -> Args {
    let mut args = Args {
        size: 32_768,
        mem_size: 40_000,
        mode: "all".into(),
        repeat: 1,
        data: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tiff-bench"),
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--size" => args.size = value().parse().expect("--size N"),
            "--mem-size" => args.mem_size = value().parse().expect("--mem-size N"),
            "--mode" => args.mode = value(),
            "--repeat" => args.repeat = value().parse().expect("--repeat N"),
            "--data" => args.data = value().into(),
            "--child-memory" => {
                let size = value()
                    .parse()
                    .expect("--child-memory N COMPRESSION CHANNELS");
                args.child = Some((size, value(), value()));
            }
            // `cargo bench` passes --bench; filters and other harness flags mean nothing here.
            _ => {}
        }
    }
    args
}

fn main() {
    let args = parse_args();
    fs::create_dir_all(&args.data).expect("create bench data directory");
    if let Some((size, compression, channels)) = &args.child {
        memory_child(&args.data, *size, compression, channels);
        return;
    }
    println!(
        "rayon threads: {}, cores: {}",
        rayon::current_num_threads(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if matches!(args.mode.as_str(), "all" | "compare") {
        compare(&args);
    }
    if matches!(args.mode.as_str(), "all" | "memory") {
        memory(&args);
    }
}

/// Nuclei-like disks in a few round tissue areas: about 10% foreground.
struct Mask {
    size: u32,
    /// (centre y, centre x, radius), sorted by centre y.
    disks: Vec<(i64, i64, i64)>,
}

const MAX_RADIUS: i64 = 16;

impl Mask {
    fn new(size: u32) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let s = f64::from(size);
        let tissue: Vec<(f64, f64, f64)> = (0..5)
            .map(|_| {
                let r = s * rng.random_range(0.12..0.22);
                (rng.random_range(r..s - r), rng.random_range(r..s - r), r)
            })
            .collect();
        let tissue_area: f64 = tissue
            .iter()
            .map(|t| std::f64::consts::PI * t.2 * t.2)
            .sum();
        // Nuclei cover about a third of the tissue; mean disk area is about 400 px.
        let count = (tissue_area * 0.33 / 400.0) as usize;
        let mut disks = Vec::with_capacity(count);
        while disks.len() < count {
            let (ty, tx, tr) = tissue[rng.random_range(0..tissue.len())];
            let (dy, dx) = (rng.random_range(-tr..tr), rng.random_range(-tr..tr));
            if dy * dy + dx * dx < tr * tr {
                let r = rng.random_range(6..=MAX_RADIUS);
                disks.push(((ty + dy) as i64, (tx + dx) as i64, r));
            }
        }
        disks.sort_unstable();
        Self { size, disks }
    }

    /// Fills `buf` with rows `y0..y0 + rows` (0 background, 255 nuclei).
    fn rows(&self, y0: u32, rows: u32, buf: &mut [u8]) {
        let (y0, y1, w) = (i64::from(y0), i64::from(y0 + rows), self.size as usize);
        buf.fill(0);
        let first = self.disks.partition_point(|d| d.0 < y0 - MAX_RADIUS);
        for &(cy, cx, r) in self.disks[first..]
            .iter()
            .take_while(|d| d.0 < y1 + MAX_RADIUS)
        {
            for y in (cy - r).max(y0)..(cy + r + 1).min(y1) {
                let dy = y - cy;
                let dx = ((r * r - dy * dy) as f64).sqrt() as i64;
                let (a, b) = ((cx - dx).max(0) as usize, ((cx + dx + 1) as usize).min(w));
                if a < b {
                    let row = (y - y0) as usize * w;
                    buf[row + a..row + b].fill(255);
                }
            }
        }
    }
}

fn compare(args: &Args) {
    let size = args.size;
    let raw = args.data.join(format!("mask-{size}.raw"));
    let vips_in = args.data.join(format!("mask-{size}.v"));
    let bytes = u64::from(size) * u64::from(size);
    if fs::metadata(&raw).map_or(true, |m| m.len() != bytes) {
        let start = Instant::now();
        let mask = Mask::new(size);
        let mut out = BufWriter::with_capacity(1 << 22, File::create(&raw).unwrap());
        let mut buf = vec![0u8; size as usize * TILE as usize];
        let mut foreground = 0u64;
        for y0 in (0..size).step_by(TILE as usize) {
            let rows = TILE.min(size - y0);
            let strip = &mut buf[..size as usize * rows as usize];
            mask.rows(y0, rows, strip);
            foreground += strip.iter().filter(|&&v| v != 0).count() as u64;
            out.write_all(strip).unwrap();
        }
        out.flush().unwrap();
        println!(
            "generated {} ({} disks, {:.1}% foreground) in {:.1} s",
            raw.display(),
            mask.disks.len(),
            100.0 * foreground as f64 / bytes as f64,
            start.elapsed().as_secs_f64()
        );
    }
    if fs::metadata(&vips_in).map_or(true, |m| m.len() < bytes) {
        run_vips(&[
            "rawload".as_ref(),
            raw.as_os_str(),
            vips_in.as_os_str(),
            size.to_string().as_ref(),
            size.to_string().as_ref(),
            "1".as_ref(),
        ]);
    }
    // Warm the page cache for both inputs so neither side pays for the first read.
    for path in [&raw, &vips_in] {
        let mut f = File::open(path).unwrap();
        let mut chunk = vec![0u8; 1 << 22];
        while f.read(&mut chunk).unwrap() > 0 {}
    }

    let mpx = f64::from(size) * f64::from(size) / 1e6;
    println!(
        "\n{size}×{size} mask ({mpx:.0} Mpx), tile {TILE}, best of {}:",
        args.repeat
    );
    println!(
        "{:<8} {:>9} {:>9} {:>9} {:>7} {:>10} {:>10} {:>12} {:>12} {:>6}",
        "codec",
        "ours s",
        "bits s",
        "vips s",
        "ratio",
        "ours Mpx/s",
        "vips Mpx/s",
        "ours bytes",
        "vips bytes",
        "pages"
    );
    for (compression, vips_name) in [(Compression::Deflate, "deflate"), (Compression::Lzw, "lzw")] {
        let ours_out = args.data.join(format!("ours-{size}-{vips_name}.tif"));
        let vips_out = args.data.join(format!("vips-{size}-{vips_name}.tif"));
        let bits_out = args.data.join(format!("bits-{size}-{vips_name}.tif"));
        let mut ours_best = f64::INFINITY;
        let mut bits_best = f64::INFINITY;
        let mut vips_best = f64::INFINITY;
        for _ in 0..args.repeat {
            let start = Instant::now();
            write_from_raw(&raw, size, compression, Channels::Gray, &ours_out);
            ours_best = ours_best.min(start.elapsed().as_secs_f64());

            let start = Instant::now();
            write_from_raw(&raw, size, compression, Channels::Binary, &bits_out);
            bits_best = bits_best.min(start.elapsed().as_secs_f64());

            let start = Instant::now();
            run_vips(&[
                "tiffsave".as_ref(),
                vips_in.as_os_str(),
                vips_out.as_os_str(),
                "--tile".as_ref(),
                "--tile-width".as_ref(),
                "512".as_ref(),
                "--tile-height".as_ref(),
                "512".as_ref(),
                "--pyramid".as_ref(),
                "--bigtiff".as_ref(),
                "--compression".as_ref(),
                vips_name.as_ref(),
                "--predictor".as_ref(),
                "horizontal".as_ref(),
                "--region-shrink".as_ref(),
                "max".as_ref(),
            ]);
            vips_best = vips_best.min(start.elapsed().as_secs_f64());
        }
        let len = |p: &Path| fs::metadata(p).unwrap().len();
        assert!(
            fs::read(&ours_out).unwrap() == fs::read(&bits_out).unwrap(),
            "the binary mask's file differs from the grey one's"
        );
        println!(
            "{:<8} {:>9.2} {:>9.2} {:>9.2} {:>7.2} {:>10.0} {:>10.0} {:>12} {:>12} {:>3}/{:<2}",
            vips_name,
            ours_best,
            bits_best,
            vips_best,
            ours_best / vips_best,
            mpx / ours_best,
            mpx / vips_best,
            len(&ours_out),
            len(&vips_out),
            pages(&ours_out),
            pages(&vips_out),
        );
    }
}

fn write_from_raw(raw: &Path, size: u32, compression: Compression, channels: Channels, out: &Path) {
    let options = PyramidOptions {
        compression,
        channels,
        downsample: Downsample::Max,
        // Fixed, so that the grey and binary files can be compared byte for byte.
        date_time: Some(std::time::UNIX_EPOCH),
        mpp: Some((0.25, 0.25)),
        description: "slidestream benchmark mask".into(),
        ..PyramidOptions::default()
    };
    let mut writer = PyramidWriter::create(out, size, size, options).unwrap();
    let mut input = File::open(raw).unwrap();
    let mut buf = vec![0u8; size as usize * TILE as usize];
    while writer.rows_expected() > 0 {
        let strip = &mut buf[..size as usize * writer.rows_expected() as usize];
        input.read_exact(strip).unwrap();
        writer.write_tile_row(strip).unwrap();
    }
    writer.finish().unwrap();
}

fn run_vips(args: &[&std::ffi::OsStr]) {
    let status = Command::new("vips")
        .args(args)
        .status()
        .expect("run vips (libvips-tools)");
    assert!(status.success(), "vips {args:?} failed");
}

fn pages(path: &Path) -> String {
    Command::new("vipsheader")
        .args(["-f", "n-pages"])
        .arg(path)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or("?".into(), |s| s.trim().to_string())
}

fn memory(args: &Args) {
    for (compression, channels) in [("deflate", "gray"), ("deflate", "binary"), ("lzw", "gray")] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--child-memory",
                &args.mem_size.to_string(),
                compression,
                channels,
            ])
            .arg("--data")
            .arg(&args.data)
            .output()
            .expect("run memory child");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// Streams a generated mask (never held whole) and prints its own peak RSS.
fn memory_child(data: &Path, size: u32, compression: &str, channels: &str) {
    // The process already holds the mapped libraries (libtorch alone is ~100 MB resident)
    // before the writer allocates anything; report it so the writer's share is visible.
    let baseline_kb = proc_status_kb("VmRSS:");
    let start = Instant::now();
    let mask = Mask::new(size);
    let options = PyramidOptions {
        compression: match compression {
            "lzw" => Compression::Lzw,
            _ => Compression::Deflate,
        },
        channels: match channels {
            "binary" => Channels::Binary,
            _ => Channels::Gray,
        },
        ..PyramidOptions::default()
    };
    let path = data.join(format!("mem-{size}-{compression}-{channels}.tif"));
    let mut writer = PyramidWriter::create(&path, size, size, options).unwrap();
    // Rows come in small chunks, as `segment` hands them on: the writer buffers the tile
    // row itself.
    let mut buf = vec![0u8; size as usize * CHUNK_ROWS as usize];
    for y0 in (0..size).step_by(CHUNK_ROWS as usize) {
        let rows = CHUNK_ROWS.min(size - y0);
        let chunk = &mut buf[..size as usize * rows as usize];
        mask.rows(y0, rows, chunk);
        writer.write_rows(chunk).unwrap();
    }
    writer.finish().unwrap();
    let peak_kb = proc_status_kb("VmHWM:");
    println!(
        "memory mode {size}×{size} {compression} {channels}: peak RSS {} MB (process baseline before \
         writing {} MB, so the writer and its input rows add {} MB), {:.1} s, {} bytes (mask \
         generated on the fly, {CHUNK_ROWS} rows at a time: {} MB included)",
        peak_kb / 1024,
        baseline_kb / 1024,
        peak_kb.saturating_sub(baseline_kb) / 1024,
        start.elapsed().as_secs_f64(),
        fs::metadata(&path).unwrap().len(),
        size as usize * CHUNK_ROWS as usize / 1_000_000
    );
    fs::remove_file(path).unwrap();
}

/// A `kB` field of /proc/self/status (0 where unavailable).
fn proc_status_kb(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
