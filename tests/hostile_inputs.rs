//! Hostile inputs and unlucky timing (issue 26): no hang, no crash, nothing half-written.
//! Before the fixes a FIFO named like a slide blocked `info` and `cohort` forever in
//! `open()`, and a second Ctrl-C during a clean stop crashed `segment` in libopenslide
//! (exit 139) and left `mask.tif.partial`.

mod common;

use common::{
    binary, binary_with_deadline, interrupt_after_log, interrupt_twice_after_log, mkfifo,
    partial_files, synth_slide,
};
use std::path::Path;

#[test]
fn a_fifo_is_refused_as_a_slide_instead_of_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.svs");
    mkfifo(&fifo);
    // Were the FIFO opened, the command would block until the deadline: no writer comes.
    let output = binary_with_deadline(60)
        .args(["info", "--json"])
        .arg(&fifo)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("pipe.svs") && stderr.contains("FIFO"),
        "{stderr}"
    );
}

#[test]
fn a_cohort_with_a_fifo_fails_that_slide_and_finishes_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let slides = dir.path().join("slides");
    synth_slide(&slides, "real", 512, 1);
    mkfifo(&slides.join("pipe.svs"));
    let out = dir.path().join("out");
    let output = binary_with_deadline(60)
        .args(["-q", "cohort", "--baseline", "threshold", "--out-dir"])
        .arg(&out)
        .arg(&slides)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Exit 3: a slide failed; the run itself finished and reported.
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let text = report.to_string();
    assert!(text.contains("not a regular file"), "{text}");
    assert!(text.contains("\"done\""), "the real slide is done: {text}");
}

/// The second Ctrl-C arrives while the first one's clean stop is still joining the decode
/// threads: the process must exit 130 at once, without a crash and without leaving the
/// partial mask. Twenty times in a row, since a race shows only now and then.
#[test]
fn a_second_interrupt_exits_130_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let slide = synth_slide(&dir.path().join("slides"), "big", 8192, 7);
    for round in 0..20 {
        let out = dir.path().join(format!("out{round}"));
        std::fs::create_dir(&out).unwrap();
        let status = interrupt_twice_after_log(
            binary()
                .args(["segment", "--baseline", "threshold", "--out"])
                .arg(out.join("mask.tif"))
                .arg(&slide),
            "segmenting",
        );
        assert_eq!(status.code(), Some(130), "round {round}: {status:?}");
        assert!(!out.join("mask.tif").exists(), "round {round}");
        assert_eq!(partial_files(&out), Vec::<std::path::PathBuf>::new());
    }
}

/// A 200000 × 200000 single-level RGB TIFF of 1024² uncompressed tiles, every tile entry
/// pointing at the same pink tile: 40 Gpx to decode from a 3.4 MB file.
fn huge_sparse_tiff(path: &Path) {
    const SIDE: u32 = 200_000;
    const TILE: u32 = 1024;
    let tiles = SIDE.div_ceil(TILE).pow(2) as usize;
    let tile_bytes = (TILE * TILE * 3) as usize;
    let tile_at = 8u32;
    let offsets_at = tile_at + tile_bytes as u32;
    let counts_at = offsets_at + 4 * tiles as u32;
    let bits_at = counts_at + 4 * tiles as u32;
    let ifd_at = bits_at + 6;
    let mut file = b"II*\0".to_vec();
    file.extend(ifd_at.to_le_bytes());
    file.extend([200u8, 150, 180].repeat(tile_bytes / 3));
    file.extend(tile_at.to_le_bytes().repeat(tiles));
    file.extend((tile_bytes as u32).to_le_bytes().repeat(tiles));
    file.extend([8u8, 0].repeat(3));
    // (tag, type: 3 SHORT / 4 LONG, count, value or offset), in tag order.
    let entries: [(u16, u16, u32, u32); 11] = [
        (256, 4, 1, SIDE),
        (257, 4, 1, SIDE),
        (258, 3, 3, bits_at),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (277, 3, 1, 3),
        (284, 3, 1, 1),
        (322, 3, 1, TILE),
        (323, 3, 1, TILE),
        (324, 4, tiles as u32, offsets_at),
        (325, 4, tiles as u32, counts_at),
    ];
    file.extend((entries.len() as u16).to_le_bytes());
    for (tag, kind, count, value) in entries {
        file.extend(tag.to_le_bytes());
        file.extend(kind.to_le_bytes());
        file.extend(count.to_le_bytes());
        file.extend(value.to_le_bytes());
    }
    file.extend(0u32.to_le_bytes());
    std::fs::write(path, file).unwrap();
}

/// Before the fix, a single-level 40 Gpx slide kept decoding its tissue overview for
/// minutes after SIGTERM, and `-v` said nothing about why it was slow.
#[test]
fn a_slide_without_a_pyramid_warns_and_stops_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let slide = dir.path().join("huge.tif");
    huge_sparse_tiff(&slide);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let code = interrupt_after_log(
        binary_with_deadline(60)
            .args(["segment", "--baseline", "threshold", "--out"])
            .arg(out.join("mask.tif"))
            .arg(&slide),
        "no pyramid level",
    );
    assert_eq!(code, Some(130));
    assert_eq!(partial_files(&out), Vec::<std::path::PathBuf>::new());
    assert!(!out.join("mask.tif").exists());
}

/// A copy of the CMU slide with 64 bytes inverted in the middle of the entropy-coded data
/// of level 0's tile `index` (tile 2's damage is one the fast decoder sees).
fn slide_with_a_damaged_tile(dir: &Path, index: usize) -> Option<std::path::PathBuf> {
    use tiff::tags::Tag;
    let original = common::shared_data("slides/CMU-1-Small-Region.svs")?;
    let mut bytes = std::fs::read(&original).unwrap();
    let mut decoder = tiff::decoder::Decoder::new(std::fs::File::open(&original).unwrap()).unwrap();
    let offsets = decoder.get_tag_u64_vec(Tag::TileOffsets).unwrap();
    let counts = decoder.get_tag_u64_vec(Tag::TileByteCounts).unwrap();
    let middle = (offsets[index] + counts[index] / 2) as usize;
    for byte in &mut bytes[middle..middle + 64] {
        *byte = !*byte;
    }
    let damaged = dir.join("damaged.svs");
    std::fs::write(&damaged, bytes).unwrap();
    Some(damaged)
}

/// Before, damage inside a JPEG tile decoded to wrong pixels with exit 0 and no word. Now
/// the tile is named in a warning and counted in the summary, and `--strict-decoding`
/// (libjpeg) fails the slide with exit 2.
#[test]
fn a_damaged_jpeg_tile_is_named_counted_and_refused_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    let Some(slide) = slide_with_a_damaged_tile(dir.path(), 2) else {
        return;
    };
    let segment = |strict: bool, out: &str| {
        let mut command = binary();
        command
            .args(["segment", "--baseline", "threshold", "--json", "--out"])
            .arg(dir.path().join(out))
            .arg(&slide);
        if strict {
            command.arg("--strict-decoding");
        }
        command.output().unwrap()
    };
    let lenient = segment(false, "lenient.tif");
    let stderr = String::from_utf8_lossy(&lenient.stderr);
    assert!(lenient.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&lenient.stdout).unwrap();
    assert_eq!(summary["tiles"]["damaged_jpeg_tiles"], 1, "{stderr}");
    let warnings = stderr.matches("is damaged").count();
    assert_eq!(warnings, 1, "one warning per damaged tile: {stderr}");

    let strict = segment(true, "strict.tif");
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert_eq!(strict.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("damaged.svs") && stderr.contains("Corrupt JPEG"),
        "{stderr}"
    );
    assert!(!dir.path().join("strict.tif").exists());
}

/// The outcome of one command on a hostile input, checked as the user meets it: finished
/// within the deadline, no crash, and a refusal is exit 2 with one line naming `named`.
fn check_refusal_or_success(output: &std::process::Output, named: &str, case: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(2) => {
            assert_eq!(stderr.lines().count(), 1, "{case}: {stderr}");
            assert!(
                stderr.contains(named),
                "{case}: {named} not named: {stderr}"
            );
        }
        Some(124) => panic!("{case}: still running after the deadline"),
        other => panic!("{case}: exit {other:?} (a crash or an unclassified error): {stderr}"),
    }
}

/// Slides made hostile by a fixed-seed generator (flipped bits, edge values in the TIFF
/// directory, truncation, duplicated runs), each through `info` and `segment`: 0 crashes,
/// 0 hangs (10 s each), every refusal exit 2 in one line naming the file, and a refused
/// `segment` leaves neither its mask nor a partial file.
#[test]
fn generated_hostile_slides_are_refused_cleanly() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let seed = std::fs::read(synth_slide(&dir.path().join("seed"), "seed", 384, 5)).unwrap();
    let hot = common::first_directory(&seed);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    for case in 0..24 {
        let mut bytes = seed.clone();
        for _ in 0..rng.random_range(1..=3) {
            common::mutate(&mut bytes, hot.clone(), &mut rng);
        }
        let name = format!("hostile-{case}.tif");
        let slide = dir.path().join(&name);
        std::fs::write(&slide, &bytes).unwrap();
        let info = binary_with_deadline(10)
            .args(["info", "--json"])
            .arg(&slide)
            .output()
            .unwrap();
        check_refusal_or_success(&info, &name, &format!("info {name}"));
        let out = dir.path().join(format!("out-{case}"));
        std::fs::create_dir(&out).unwrap();
        let segment = binary_with_deadline(10)
            .args([
                "-q",
                "segment",
                "--baseline",
                "threshold",
                "--no-overlay",
                "--out",
            ])
            .arg(out.join("mask.tif"))
            .arg(&slide)
            .output()
            .unwrap();
        check_refusal_or_success(&segment, &name, &format!("segment {name}"));
        assert_eq!(partial_files(&out), Vec::<std::path::PathBuf>::new());
        if !segment.status.success() {
            assert!(!out.join("mask.tif").exists(), "segment {name}");
        }
    }
}
