//! Cohort soak: many small synthetic slides with corrupt ones interleaved, `--jobs 2`.
//! Checks that every good slide is done and every corrupt one reported, and prints the
//! throughput and the process's resident memory after each slide (it must stay flat).
//!
//! ```sh
//! cargo bench --bench cohort_soak                 # 50 slides, 5 corrupt, 1024×768 each
//! cargo bench --bench cohort_soak -- 200 20 2048  # slides, corrupt, width
//! ```

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_slidestream"))
}

/// Resident memory of `pid` in MB (`VmRSS`).
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let slides = args.first().copied().unwrap_or(50);
    let corrupt = args.get(1).copied().unwrap_or(5);
    let width = args.get(2).copied().unwrap_or(1024);
    let height = width * 3 / 4;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("slides");
    std::fs::create_dir_all(&input).unwrap();

    // One synthetic slide per seed; every (slides / corrupt)-th one truncated.
    let made = Instant::now();
    let every = slides / corrupt.max(1);
    let mut bad = Vec::new();
    for i in 0..slides {
        let path = input.join(format!("slide{i:03}.tif"));
        let ok = binary()
            .args([
                "-q",
                "synth",
                "--tile",
                "256",
                "--width",
                &width.to_string(),
            ])
            .args(["--height", &height.to_string(), "--seed", &i.to_string()])
            .arg("--out")
            .arg(&path)
            .arg("--mask")
            .arg(dir.path().join("mask.tif"))
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        if corrupt > 0 && i % every == every / 2 && bad.len() < corrupt {
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() * 2 / 3]).unwrap();
            bad.push(path);
        }
    }
    eprintln!(
        "made {slides} slides of {width}×{height} ({} corrupt) in {:.1} s",
        bad.len(),
        made.elapsed().as_secs_f64()
    );

    let out = dir.path().join("out");
    let started = Instant::now();
    let mut child = binary()
        .args(["cohort", "--baseline", "threshold", "--jobs", "2", "--json"])
        .arg(&input)
        .arg("--out-dir")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The report (stdout) is read on its own thread: a full pipe must not stall the run.
    let mut stdout = child.stdout.take().unwrap();
    let report_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut bytes).unwrap();
        bytes
    });
    let stderr = BufReader::new(child.stderr.take().unwrap());
    // RSS sampled each time a slide finishes (read from the log: no timers).
    let mut samples: Vec<f64> = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains("slide finished") {
            if let Some(rss) = rss_mb(pid) {
                samples.push(rss);
            }
        }
    }
    let status = child.wait().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(status.code(), Some(3), "corrupt slides make exit code 3");
    let report: serde_json::Value = serde_json::from_slice(&report_reader.join().unwrap()).unwrap();
    let counts = &report["counts"];
    assert_eq!(
        counts["done"],
        slides - bad.len(),
        "every good slide is done"
    );
    assert_eq!(
        counts["failed"],
        bad.len(),
        "every corrupt slide is reported"
    );
    let failed: Vec<PathBuf> = report["slides"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "failed")
        .map(|r| PathBuf::from(r["slide"].as_str().unwrap()))
        .collect();
    assert_eq!(failed, bad);

    let tenth = (samples.len() / 10).max(1);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    let early = mean(&samples[..tenth.min(samples.len())]);
    let late = mean(&samples[samples.len().saturating_sub(tenth)..]);
    let peak = samples.iter().copied().fold(0.0, f64::max);
    println!(
        "cohort soak: {slides} slides ({} corrupt), {width}×{height}, --jobs 2",
        bad.len()
    );
    println!(
        "  wall {seconds:.1} s: {:.2} slides/s ({:.0} slides/h), {:.1} Mpx segmented at {:.1} Mpx/s",
        slides as f64 / seconds,
        slides as f64 / seconds * 3600.0,
        report["mpx"].as_f64().unwrap(),
        report["mpx"].as_f64().unwrap() / seconds
    );
    println!(
        "  RSS after each slide: first tenth {early:.0} MB, last tenth {late:.0} MB, peak {peak:.0} MB ({} samples)",
        samples.len()
    );
    let step = (samples.len() / 10).max(1);
    let series: Vec<String> = samples
        .iter()
        .step_by(step)
        .map(|r| format!("{r:.0}"))
        .collect();
    println!("  RSS (MB) every {step} slides: {}", series.join(" "));
    println!(
        "  growth first→last tenth: {:+.1} MB ({:+.1}%)",
        late - early,
        (late - early) / early * 100.0
    );
}
