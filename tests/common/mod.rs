//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slidestream::train::{FolderImage, LabeledFolder};
use std::path::Path;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tch::{Kind, Tensor};

/// Exclusive use of libtorch's generator, which is process-wide while the harness runs tests
/// on parallel threads: every test that seeds it, draws from it or builds layers (their
/// initialisation draws) holds this for its whole body.
pub fn torch_rng() -> MutexGuard<'static, ()> {
    static TORCH_RNG: Mutex<()> = Mutex::new(());
    TORCH_RNG.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A float tensor of `shape`, uniform in [0, 1), from a local generator no other test can
/// advance.
pub fn uniform(shape: &[i64], seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let count: i64 = shape.iter().product();
    let values: Vec<f32> = (0..count).map(|_| rng.random::<f32>()).collect();
    Tensor::from_slice(&values).view(shape)
}

/// A file or folder under `../shared/data`, or `None` (with a message saying the test is
/// skipped) when the shared data is not next to the checkout.
pub fn shared_data(relative: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(relative);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} is not present", path.display());
        None
    }
}

/// A synthetic H&E image as a PNG (opened as a one-level slide), its truth in `dir/truth.png`.
pub fn synthetic_png(dir: &Path, width: u64, height: u64, seed: u64) -> PathBuf {
    let image = dir.join(format!("synth-{width}x{height}-{seed}.png"));
    let spec = slidestream::synth::SynthSpec {
        tissue_coverage: 1.0,
        ..slidestream::synth::SynthSpec::new(width, height, seed)
    };
    slidestream::synth::write_png_pair(&spec, &image, dir.join("truth.png")).unwrap();
    image
}

/// A labeled folder on disk: three `size`×`size` synthetic H&E images `root/images/tile<i>.png`
/// with masks `root/masks/tile<i>.png`, seeds `first_seed`, `first_seed + 1`, ….
pub fn labeled_folder(root: &Path, size: u64, first_seed: u64) {
    for i in 0..3 {
        let spec = slidestream::synth::SynthSpec {
            tissue_coverage: 1.0,
            ..slidestream::synth::SynthSpec::new(size, size, first_seed + i)
        };
        let name = format!("tile{i}.png");
        slidestream::synth::write_png_pair(
            &spec,
            root.join("images").join(&name),
            root.join("masks").join(&name),
        )
        .unwrap();
    }
}

/// The built `slidestream` binary.
pub fn binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_slidestream"))
}

/// The built `slidestream` binary under coreutils' `timeout`: killed after `seconds`, so a
/// regression that hangs fails its test (exit 124) instead of stalling the suite.
pub fn binary_with_deadline(seconds: u32) -> std::process::Command {
    let mut command = std::process::Command::new("timeout");
    command
        .arg(seconds.to_string())
        .arg(env!("CARGO_BIN_EXE_slidestream"));
    command
}

/// Every file under `dir` whose name ends in `.partial`.
pub fn partial_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(partial_files(&path));
        } else if path.to_string_lossy().ends_with(".partial") {
            found.push(path);
        }
    }
    found
}

/// A named pipe (FIFO) at `path`.
pub fn mkfifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
}

/// Limits every file `command`'s process writes to `bytes`, as a full disk would: a write
/// past it fails with EFBIG (SIGXFSZ, which would kill the process, is ignored).
pub fn limit_file_size(command: &mut std::process::Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: between fork and exec only async-signal-safe calls (setrlimit, signal).
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs a command that must succeed (stderr shown otherwise) and parses its stdout as JSON.
pub fn json_output(command: &mut std::process::Command) -> serde_json::Value {
    let out = command.output().expect("the command starts");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

// Synthetic H&E-like training data: dark purple disks ("nuclei") on pink, with masks.
pub const BACKGROUND: [u8; 3] = [230, 180, 200];
pub const NUCLEUS: [u8; 3] = [80, 40, 120];

/// `count` images of `size`×`size` with `disks` disks each; pixel noise of ±`noise`.
pub fn disks(count: usize, size: i64, disks: usize, noise: u8, seed: u64) -> LabeledFolder {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let items = (0..count)
        .map(|i| {
            let mut rgb = vec![0u8; (size * size * 3) as usize];
            let mut mask = vec![0u8; (size * size) as usize];
            let centres: Vec<(f64, f64, f64)> = (0..disks)
                .map(|_| {
                    let r = rng.random_range(3.0..7.0);
                    (
                        rng.random_range(0.0..size as f64),
                        rng.random_range(0.0..size as f64),
                        r,
                    )
                })
                .collect();
            for y in 0..size {
                for x in 0..size {
                    let inside = centres.iter().any(|&(cy, cx, r)| {
                        (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2) <= r * r
                    });
                    let p = (y * size + x) as usize;
                    mask[p] = inside as u8;
                    let base = if inside { NUCLEUS } else { BACKGROUND };
                    for c in 0..3 {
                        let jitter = if noise > 0 {
                            rng.random_range(0..=2 * noise) as i16 - noise as i16
                        } else {
                            0
                        };
                        rgb[p * 3 + c] = (base[c] as i16 + jitter).clamp(0, 255) as u8;
                    }
                }
            }
            FolderImage::new(
                format!("synthetic-{i}.png").into(),
                Tensor::from_slice(&rgb)
                    .view([size, size, 3])
                    .permute([2, 0, 1])
                    .contiguous(),
                Some(
                    Tensor::from_slice(&mask)
                        .view([size, size])
                        .to_kind(Kind::Bool),
                ),
            )
        })
        .collect();
    LabeledFolder::from_items(Path::new("synthetic"), items)
}

/// Starts `command`, waits (blocking on its log stream, no timers) until a stderr line
/// contains `marker`, sends it SIGINT and returns its exit code.
pub fn interrupt_after_log(command: &mut std::process::Command, marker: &str) -> Option<i32> {
    let (mut child, _stderr) = start_and_wait_for_log(command, marker);
    interrupt(&child);
    child.wait().unwrap().code()
}

/// Like [`interrupt_after_log`], then a second SIGINT as soon as the first is acknowledged
/// ("received" logged), while the clean stop is still under way. Returns the exit status.
pub fn interrupt_twice_after_log(
    command: &mut std::process::Command,
    marker: &str,
) -> std::process::ExitStatus {
    let (mut child, mut stderr) = start_and_wait_for_log(command, marker);
    interrupt(&child);
    wait_for_log(&mut stderr, "received", command);
    interrupt(&child);
    child.wait().unwrap()
}

type LogReader = std::io::BufReader<std::process::ChildStderr>;

fn start_and_wait_for_log(
    command: &mut std::process::Command,
    marker: &str,
) -> (std::process::Child, LogReader) {
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the command starts");
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    wait_for_log(&mut stderr, marker, command);
    (child, stderr)
}

/// Reads `stderr` line by line until one contains `marker`.
fn wait_for_log(stderr: &mut LogReader, marker: &str, command: &std::process::Command) {
    use std::io::BufRead;
    let mut line = String::new();
    while !line.contains(marker) {
        line.clear();
        let read = stderr.read_line(&mut line).unwrap();
        assert!(read > 0, "{command:?} ended before logging {marker:?}");
    }
}

fn interrupt(child: &std::process::Child) {
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

/// A small synthetic slide `dir/NAME.tif` of `width × width·2/3` pixels (its truth mask
/// goes to `dir/../truth`, out of the way of folder inputs).
pub fn synth_slide(dir: &Path, name: &str, width: u32, seed: u64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let slide = dir.join(format!("{name}.tif"));
    let truth = dir.parent().unwrap().join("truth");
    std::fs::create_dir_all(&truth).unwrap();
    let status = binary()
        .args(["-q", "synth", "--width", &width.to_string(), "--height"])
        .arg((width * 2 / 3).to_string())
        .args(["--tile", "256", "--seed", &seed.to_string(), "--out"])
        .arg(&slide)
        .arg("--mask")
        .arg(truth.join(format!("{name}.mask.tif")))
        .status()
        .unwrap();
    assert!(status.success());
    slide
}

/// `bytes` mutated once: bits flipped, a byte set to an edge value, a 32-bit word set to an
/// edge value, truncated, or a run duplicated. Half of the mutations hit `hot` (the
/// structure: header and directories), the rest anywhere.
pub fn mutate(bytes: &mut Vec<u8>, hot: std::ops::Range<usize>, rng: &mut ChaCha8Rng) {
    let len = bytes.len();
    // An earlier truncation may have cut the structure off.
    let hot = hot.start..hot.end.min(len);
    let at = if rng.random_bool(0.5) && !hot.is_empty() {
        rng.random_range(hot)
    } else {
        rng.random_range(0..len)
    };
    match rng.random_range(0..5) {
        0 => bytes[at] ^= 1 << rng.random_range(0..8),
        1 => bytes[at] = [0, 1, 0x7F, 0x80, 0xFF][rng.random_range(0..5)],
        2 => {
            let word: u32 =
                [0, 1, u32::MAX, 0x7FFF_FFFF, 1 << 16, rng.random()][rng.random_range(0..6)];
            let end = (at + 4).min(len);
            bytes[at..end].copy_from_slice(&word.to_le_bytes()[..end - at]);
        }
        3 => bytes.truncate(at.max(1)),
        _ => {
            let run: Vec<u8> = bytes[at..(at + rng.random_range(1..64)).min(len)].to_vec();
            let to = rng.random_range(0..len);
            bytes.splice(to..to, run);
        }
    }
}

/// The byte range of a little-endian classic TIFF's first directory (entries and next
/// offset), or the header alone.
pub fn first_directory(bytes: &[u8]) -> std::ops::Range<usize> {
    let offset = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let entries = u16::from_le_bytes(bytes[offset..offset + 2].try_into().unwrap()) as usize;
    offset..offset + 2 + 12 * entries + 4
}
