//! The top-level modules form layers, and code only reaches down: a newcomer can read a
//! module knowing nothing of the ones above it, and no change below can break on one above.
//!
//! From the bottom (a module may use only modules of lower layers, never its own layer):
//!
//! 0. foundations: `allocator`, `atomic_file`, `device`, `error_text`, `logging`,
//!    `morphology`, `output_path`, `picture`, `scores`, `watershed`
//! 1. `instances`, `instance_scores`, `model`, `pipeline`, `synth`, `tiff`
//! 2. `slide`: reading slides, tissue, tile grids, the segmentation geometry
//! 3. `stain`: colour deconvolution, and a slide's stain cut (for `segment` and `train`)
//! 4. `segment` and `train`: siblings, neither uses the other
//! 5. `cohort`: many slides through `segment`
//! 6. `commands`: the CLI's subcommands (and `main.rs` above them)
//!
//! The test reads `src/**/*.rs` (outside `#[cfg(test)]` modules and comments), resolves
//! every `crate::…` and `super::…` path to the top-level module it names, and checks each
//! such use against the table. Strict layers also mean no cycles; the test checks that too,
//! so that a module added without a layer still cannot close one.
//!
//! Within `slide` and `segment` the files form no cycles either (checked below the same
//! way, one level down). `train`'s files still do (`config`/`error`/`sampler`, and
//! `run`/`checkpoint`/`seeds`/`step`/…); those cycles are listed and must not grow.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, u32)] = &[
    ("allocator", 0),
    ("atomic_file", 0),
    ("bit_rows", 0),
    ("convex_hull", 0),
    ("device", 0),
    ("error_text", 0),
    ("gaussian", 0),
    ("logging", 0),
    ("output_path", 0),
    ("picture", 0),
    ("scores", 0),
    ("test_support", 0),
    ("instance_scores", 1),
    ("model", 1),
    ("pipeline", 1),
    ("stain_recut", 1),
    ("synth", 1),
    ("tiff", 1),
    ("watershed", 1),
    ("instances", 2),
    ("morphology", 2),
    ("slide", 3),
    ("stain", 4),
    ("segment", 5),
    ("train", 5),
    ("cohort", 6),
    ("commands", 7),
];

/// File-level cycles allowed, each as its sorted set of files: none since the trainers'
/// shared pieces (checkpoint selection, the blur, the run identity) moved below them.
const KNOWN_FILE_CYCLES: &[(&str, &[&str])] = &[];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/segment/predict.rs` → `["segment", "predict"]`; `mod.rs` names its folder.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut path: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

/// The code of a file without comments (doc links are not uses) and without `#[cfg(test)]`
/// modules (tests may reach anywhere).
fn code_of(text: &str) -> String {
    let mut code = String::with_capacity(text.len());
    let mut skip_depth: Option<i32> = None;
    let mut pending_cfg_test = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        // A trailing comment; `"//"` inside a string literal (a URL) is rare enough in
        // paths that cutting it loses no `crate::`.
        let line = line.split(" // ").next().unwrap_or(line);
        if let Some(depth) = skip_depth.as_mut() {
            *depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
            if *depth <= 0 {
                skip_depth = None;
            }
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            pending_cfg_test = true;
            continue;
        }
        if pending_cfg_test {
            pending_cfg_test = false;
            if trimmed.starts_with("mod ") && line.contains('{') {
                let depth = line.matches('{').count() as i32 - line.matches('}').count() as i32;
                if depth > 0 {
                    skip_depth = Some(depth);
                }
                continue;
            }
            if trimmed.starts_with("mod ") || trimmed.starts_with("use ") {
                continue;
            }
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first segment of each path a `{…}` group (starting at `text[0] == '{'`) lists.
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let (mut depth, mut at_start) = (0, true);
    let mut current = String::new();
    for c in text.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth > 1 {
                    at_start = false;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => {
                if !current.is_empty() {
                    heads.push(std::mem::take(&mut current));
                }
                at_start = true;
            }
            c if depth == 1 && at_start && is_ident(c) => current.push(c),
            c if depth == 1 && at_start && !c.is_whitespace() => {
                at_start = false;
            }
            _ => {}
        }
    }
    if !current.is_empty() {
        heads.push(current);
    }
    heads
}

/// Every module path (from the crate root) that `code`, in module `module`, names through
/// `crate::` or `super::`.
fn named_paths(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for anchor in ["crate::", "super::"] {
        for (at, _) in code.match_indices(anchor) {
            if code[..at].chars().next_back().is_some_and(is_ident) {
                continue;
            }
            let mut base: Vec<String> = if anchor == "crate::" {
                Vec::new()
            } else {
                module[..module.len().saturating_sub(1)].to_vec()
            };
            let mut rest = &code[at + anchor.len()..];
            while let Some(after) = rest.strip_prefix("super::") {
                base.pop();
                rest = after;
            }
            if rest.starts_with('{') {
                for head in group_heads(rest) {
                    let mut path = base.clone();
                    if head != "self" {
                        path.push(head);
                    }
                    found.push(path);
                }
            } else {
                let head: String = rest.chars().take_while(|&c| is_ident(c)).collect();
                let mut path = base;
                path.push(head);
                found.push(path);
            }
        }
    }
    found
}

struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    fn cycles(&self) -> Vec<BTreeSet<String>> {
        // A node is in a cycle with every node it reaches that also reaches it back.
        let reach = |from: &String| {
            let mut seen = BTreeSet::new();
            let mut todo: Vec<&String> = self.edges.get(from).into_iter().flatten().collect();
            while let Some(node) = todo.pop() {
                if seen.insert(node.clone()) {
                    todo.extend(self.edges.get(node).into_iter().flatten());
                }
            }
            seen
        };
        let reaches: BTreeMap<&String, BTreeSet<String>> =
            self.edges.keys().map(|n| (n, reach(n))).collect();
        let mut cycles: Vec<BTreeSet<String>> = Vec::new();
        for (node, reached) in &reaches {
            if !reached.contains(*node) {
                continue;
            }
            let cycle: BTreeSet<String> = reached
                .iter()
                .filter(|other| reaches.get(other).is_some_and(|r| r.contains(*node)))
                .cloned()
                .collect();
            if !cycles.contains(&cycle) {
                cycles.push(cycle);
            }
        }
        cycles
    }
}

/// The crate's modules and every use between them: (module path, named path) pairs.
fn uses() -> Vec<(Vec<String>, Vec<String>)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut uses = Vec::new();
    for file in files {
        let module = module_path(&src, &file);
        // The crate roots: `main.rs` is the binary, above everything.
        if module.len() == 1 && (module[0] == "lib" || module[0] == "main") {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        for named in named_paths(&module, &code) {
            uses.push((module.clone(), named));
        }
    }
    uses
}

#[test]
fn top_level_modules_only_use_lower_layers() {
    let layers: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut graph = Graph {
        edges: BTreeMap::new(),
    };
    let mut wrong = Vec::new();
    for (module, named) in uses() {
        let (from, Some(to)) = (&module[0], named.first()) else {
            continue;
        };
        if from == to {
            continue;
        }
        let Some(&from_layer) = layers.get(from.as_str()) else {
            panic!("module `{from}` has no layer: add it to LAYERS in tests/module_layers.rs");
        };
        let Some(&to_layer) = layers.get(to.as_str()) else {
            panic!(
                "`{}` names `crate::{to}`, which has no layer",
                module.join("::")
            );
        };
        graph
            .edges
            .entry(from.clone())
            .or_default()
            .insert(to.clone());
        if to_layer >= from_layer {
            wrong.push(format!(
                "{} (layer {from_layer}) uses {} (layer {to_layer})",
                module.join("::"),
                named.join("::")
            ));
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "uses that reach up or sideways:\n{}",
        wrong.join("\n")
    );
    assert_eq!(graph.cycles(), Vec::<BTreeSet<String>>::new());
    // The test sees the uses it must: `commands` reaches most of the crate.
    assert!(graph.edges["commands"].len() > 10, "{:?}", graph.edges);
}

#[test]
fn files_within_a_module_form_no_new_cycles() {
    let mut graphs: BTreeMap<String, Graph> = BTreeMap::new();
    for (module, named) in uses() {
        if module.len() < 2 || named.len() < 2 || named[0] != module[0] || named[1] == module[1] {
            continue;
        }
        graphs
            .entry(module[0].clone())
            .or_insert_with(|| Graph {
                edges: BTreeMap::new(),
            })
            .edges
            .entry(module[1].clone())
            .or_default()
            .insert(named[1].clone());
    }
    let known: Vec<(String, BTreeSet<String>)> = KNOWN_FILE_CYCLES
        .iter()
        .map(|(module, files)| {
            (
                module.to_string(),
                files.iter().map(|f| f.to_string()).collect(),
            )
        })
        .collect();
    // Uses within `slide` are seen (so the check has teeth).
    assert!(graphs["slide"].edges.contains_key("stain_sample"));
    for (module, graph) in &graphs {
        for cycle in graph.cycles() {
            let allowed = known
                .iter()
                .any(|(m, files)| m == module && cycle.is_subset(files));
            assert!(
                allowed,
                "files of `{module}` use each other in a cycle: {cycle:?}"
            );
        }
    }
}
