//! Makes the binary find libtorch and OpenSlide without LD_LIBRARY_PATH: torch-sys and
//! openslide-sys link them but set no rpath. Also records the libtorch version for `doctor`.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    // Libraries carried next to the binary (e.g. to the GPU machine) win over build paths.
    let mut rpath = vec!["$ORIGIN".to_string(), "$ORIGIN/lib".to_string()];
    let libtorch_lib = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .map(PathBuf::from)
        .ok();
    rpath.extend(libtorch_lib.iter().map(|p| p.display().to_string()));
    if let Ok(openslide) = pkg_config::Config::new()
        .cargo_metadata(false)
        .probe("openslide")
    {
        rpath.extend(openslide.link_paths.iter().map(|p| p.display().to_string()));
    }
    for dir in &rpath {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }

    let version = libtorch_lib
        .as_deref()
        .and_then(libtorch_version)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SLIDESTREAM_LIBTORCH_VERSION={version}");
}

/// Reads MAJOR.MINOR.PATCH from libtorch's `headeronly/version.h` (lib/../include).
fn libtorch_version(lib_dir: &Path) -> Option<String> {
    let header = lib_dir.parent()?.join("include/torch/headeronly/version.h");
    println!("cargo:rerun-if-changed={}", header.display());
    let text = std::fs::read_to_string(header).ok()?;
    let part = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("#define TORCH_VERSION_{name} ")))
            .map(|v| v.trim().to_string())
    };
    Some(format!(
        "{}.{}.{}",
        part("MAJOR")?,
        part("MINOR")?,
        part("PATCH")?
    ))
}
