use slidestream::synth::{render_region, write_png_pair, Synth, SynthRegion, SynthSpec};

/// A slide large enough that a 700 x 500 area in its middle holds glass, stroma and nuclei.
fn slide() -> SynthSpec {
    SynthSpec::new(2000, 1500, 7)
}

fn fraction(bytes: &[u8]) -> f64 {
    bytes.iter().filter(|&&b| b > 0).count() as f64 / bytes.len() as f64
}

/// Mean of (R + G + B) / 3 over the pixels where `select` holds.
fn mean_intensity(region: &SynthRegion, select: impl Fn(usize) -> bool) -> f64 {
    let (mut sum, mut n) = (0u64, 0u64);
    for (i, px) in region.rgb.chunks_exact(3).enumerate() {
        if select(i) {
            sum += px.iter().map(|&c| u64::from(c)).sum::<u64>();
            n += 1;
        }
    }
    assert!(n > 0, "no pixel selected");
    sum as f64 / (3 * n) as f64
}

#[test]
fn regions_render_identically_whatever_mosaic_they_belong_to() {
    let synth = Synth::new(&slide()).unwrap();
    let (x0, y0, w, h) = (613u64, 411u64, 700u32, 500u32);
    let whole = synth.render_region(x0, y0, w, h);
    // The area must exercise every path: glass, tissue and nuclei.
    assert!(fraction(&whole.tissue) > 0.2 && fraction(&whole.tissue) < 0.98);
    assert!(fraction(&whole.mask) > 0.01);

    // Odd-sized pieces that cut across lattice cells, nucleus cells and parallel bands.
    let widths = [1u32, 97, 256, 311, 35];
    let heights = [3u32, 130, 67, 300];
    assert_eq!(widths.iter().sum::<u32>(), w);
    assert_eq!(heights.iter().sum::<u32>(), h);
    let mut y = 0;
    for &ph in &heights {
        let mut x = 0;
        for &pw in &widths {
            // Mix the reusable renderer and the one-shot function.
            let piece = if (x + y) % 2 == 0 {
                synth.render_region(x0 + u64::from(x), y0 + u64::from(y), pw, ph)
            } else {
                render_region(&slide(), x0 + u64::from(x), y0 + u64::from(y), pw, ph)
            };
            for r in 0..ph {
                let src = (r * pw) as usize..((r + 1) * pw) as usize;
                let dst = ((y + r) * w + x) as usize..((y + r) * w + x + pw) as usize;
                let rgb = |rg: &std::ops::Range<usize>| rg.start * 3..rg.end * 3;
                assert_eq!(
                    piece.rgb[rgb(&src)],
                    whole.rgb[rgb(&dst)],
                    "rgb row {}",
                    y + r
                );
                assert_eq!(
                    piece.mask[src.clone()],
                    whole.mask[dst.clone()],
                    "mask row {}",
                    y + r
                );
                assert_eq!(piece.tissue[src], whole.tissue[dst], "tissue row {}", y + r);
            }
            x += pw;
        }
        y += ph;
    }
}

#[test]
fn thread_count_does_not_change_pixels() {
    let synth = Synth::new(&slide()).unwrap();
    let render_on = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        // Short enough that band heights depend on the thread count.
        pool.install(|| synth.render_region(700, 600, 400, 100))
    };
    let single = render_on(1);
    assert_eq!(single, render_on(3));
    assert_eq!(single, render_on(8));
}

#[test]
fn render_into_reuses_buffers_and_matches_render_region() {
    let synth = Synth::new(&slide()).unwrap();
    let mut out = synth.render_region(0, 0, 640, 200);
    synth.render_into(900, 700, 300, 90, &mut out);
    assert_eq!(out, synth.render_region(900, 700, 300, 90));
    synth.render_into(5, 5, 0, 10, &mut out);
    assert!(out.rgb.is_empty() && out.mask.is_empty() && out.tissue.is_empty());
}

#[test]
fn same_seed_renders_the_same_and_other_seeds_differ() {
    let spec = SynthSpec::new(512, 512, 42);
    let a = render_region(&spec, 0, 0, 512, 512);
    assert_eq!(a, render_region(&spec, 0, 0, 512, 512));
    let other = SynthSpec { seed: 43, ..spec };
    let b = render_region(&other, 0, 0, 512, 512);
    let differing = a.rgb.iter().zip(&b.rgb).filter(|(p, q)| p != q).count();
    assert!(differing > a.rgb.len() / 2, "only {differing} bytes differ");
    assert_ne!(a.mask, b.mask);
}

#[test]
fn nuclei_cover_a_plausible_share_of_tissue_and_only_tissue() {
    for seed in 0..3 {
        let region = render_region(&SynthSpec::new(1024, 1024, seed), 0, 0, 1024, 1024);
        let tissue = region.tissue.iter().filter(|&&t| t == 255).count();
        let nuclei = region.mask.iter().filter(|&&m| m == 255).count();
        let share = nuclei as f64 / tissue as f64;
        assert!(
            (0.05..=0.40).contains(&share),
            "seed {seed}: nuclei {share:.3} of tissue"
        );
        assert!(region.mask.iter().all(|&m| m == 0 || m == 255));
        assert!(region.tissue.iter().all(|&t| t == 0 || t == 255));
        let outside = region.mask.iter().zip(&region.tissue).any(|(&m, &t)| m > t);
        assert!(!outside, "seed {seed}: nucleus pixel outside tissue");
    }
}

#[test]
fn tissue_coverage_follows_the_spec() {
    for (coverage, lo, hi) in [(0.55, 0.40, 0.70), (0.3, 0.2, 0.4), (0.8, 0.7, 0.9)] {
        let spec = SynthSpec {
            tissue_coverage: coverage,
            ..SynthSpec::new(1024, 768, 5)
        };
        let region = render_region(&spec, 0, 0, 1024, 768);
        let share = fraction(&region.tissue);
        assert!(
            (lo..=hi).contains(&share),
            "coverage {coverage}: tissue {share:.3}"
        );
    }
}

#[test]
fn nuclei_are_darker_than_stroma_and_glass_brighter_than_tissue() {
    let region = render_region(&SynthSpec::new(1024, 1024, 3), 0, 0, 1024, 1024);
    let nucleus = mean_intensity(&region, |i| region.mask[i] > 0);
    let stroma = mean_intensity(&region, |i| region.tissue[i] > 0 && region.mask[i] == 0);
    let glass = mean_intensity(&region, |i| region.tissue[i] == 0);
    assert!(
        nucleus + 30.0 < stroma,
        "nuclei {nucleus:.1} vs stroma {stroma:.1}"
    );
    assert!(
        stroma + 20.0 < glass,
        "stroma {stroma:.1} vs glass {glass:.1}"
    );
    assert!((236.0..=244.0).contains(&glass), "glass {glass:.1}");
}

#[test]
fn a_slide_without_tissue_is_blank_glass() {
    let spec = SynthSpec {
        tissue_coverage: 0.0,
        ..SynthSpec::new(600, 400, 9)
    };
    let region = render_region(&spec, 0, 0, 600, 400);
    assert!(region.mask.iter().all(|&m| m == 0));
    assert!(region.tissue.iter().all(|&t| t == 0));
    // Default noise sigma is 3 levels around 240: 5 sigma either way.
    assert!(region.rgb.iter().all(|&c| (225..=255).contains(&c)));
    let mean = mean_intensity(&region, |_| true);
    assert!((239.0..=241.0).contains(&mean), "mean {mean:.2}");
}

#[test]
fn pixels_beyond_the_slide_are_glass() {
    let spec = SynthSpec {
        tissue_coverage: 1.0,
        ..SynthSpec::new(300, 200, 1)
    };
    // Straddles the bottom-right corner: 100 x 50 px on the slide, the rest beyond it.
    let region = render_region(&spec, 200, 150, 160, 90);
    for (i, (&t, &m)) in region.tissue.iter().zip(&region.mask).enumerate() {
        let (x, y) = (200 + i % 160, 150 + i / 160);
        let on_slide = x < 300 && y < 200;
        assert_eq!(t == 255, on_slide, "tissue at ({x}, {y})");
        assert!(on_slide || m == 0, "nucleus at ({x}, {y})");
    }
}

#[test]
fn invalid_specs_are_rejected() {
    let bad = [
        SynthSpec {
            tissue_coverage: 1.5,
            ..SynthSpec::default()
        },
        SynthSpec {
            nucleus_radius_px: [9.0, 4.0],
            ..SynthSpec::default()
        },
        SynthSpec {
            nucleus_spacing_px: 0,
            ..SynthSpec::default()
        },
        SynthSpec {
            noise_sigma: f32::NAN,
            ..SynthSpec::default()
        },
        SynthSpec {
            width: 0,
            ..SynthSpec::default()
        },
    ];
    for spec in bad {
        assert!(Synth::new(&spec).is_err(), "{spec:?} accepted");
    }
    assert!(SynthSpec::default().validate().is_ok());
}

#[test]
fn png_pair_holds_the_rendered_image_and_a_binary_mask() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec::new(160, 120, 11);
    let image_path = dir.path().join("images/slide.png");
    let mask_path = dir.path().join("masks/slide.png");
    write_png_pair(&spec, &image_path, &mask_path).unwrap();

    let expected = render_region(&spec, 0, 0, 160, 120);
    let rgb = image::open(&image_path).unwrap();
    assert_eq!(rgb.color(), image::ColorType::Rgb8);
    assert_eq!((rgb.width(), rgb.height()), (160, 120));
    assert_eq!(rgb.into_rgb8().into_raw(), expected.rgb);
    let mask = image::open(&mask_path).unwrap();
    assert_eq!(mask.color(), image::ColorType::L8);
    assert_eq!(mask.into_luma8().into_raw(), expected.mask);

    let huge = SynthSpec::new(100_000, 100_000, 0);
    assert!(write_png_pair(&huge, dir.path().join("a.png"), dir.path().join("b.png")).is_err());
}
