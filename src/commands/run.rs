//! `slidestream run PIPELINE.toml`: declarative pipelines. A pipeline file names variables
//! (`[vars]`, overridable with `--set NAME=VALUE`) and steps (`[steps.NAME]`, run in file
//! order), each one slidestream subcommand with its flags as keys:
//!
//! ```toml
//! description = "segment a cohort with the threshold baseline"
//! [vars]
//! inputs = ["slides/"]
//! out_dir = "out/cohort"
//! [steps.segment]
//! command = "cohort"          # train, cohort, segment, synth, tissue, eval
//! inputs = "{inputs}"         # `{var}` is replaced; a lone `{list}` splices a list
//! out-dir = "{out_dir}"
//! baseline = "threshold"
//! jobs = 2                    # any flag of `slidestream cohort`, `-` or `_`
//! ```
//!
//! Every step is checked (keys and values, by the same parser as the command line) before
//! the first one runs; errors name the file and the key.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Pipeline file (TOML), e.g. pipelines/segment.toml.
    pub pipeline: PathBuf,
    /// Override a variable (`--set out_dir=/scratch/x`) or a step's key
    /// (`--set segment.jobs=4`); VALUE is read as TOML (numbers, true/false, ["a","b"]) or
    /// else as a string. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Check the pipeline and print the commands it would run, without running them.
    #[arg(long)]
    pub dry_run: bool,
}

/// Problems with a pipeline file or `--set`; each names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{path}: cannot read the pipeline: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Key {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("--set {text}: {message}")]
    Set { text: String, message: String },
}

/// Commands a step may run.
pub const STEP_COMMANDS: [&str; 6] = ["train", "cohort", "segment", "synth", "tissue", "eval"];

/// One step, ready for the command-line parser.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub command: String,
    /// Arguments after the subcommand name.
    pub argv: Vec<String>,
}

/// Reads `path`, applies `sets` and turns each step into command-line arguments. `command`
/// gives the clap definition of a subcommand, to check the keys.
pub fn plan(
    path: &Path,
    sets: &[String],
    command: impl Fn(&str) -> Option<clap::Command>,
) -> Result<Vec<Step>, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| RunError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_owned(),
        })?;
    let key_error = |key: &str, message: String| RunError::Key {
        path: path.to_path_buf(),
        key: key.to_owned(),
        message,
    };
    for key in doc.keys() {
        if !["description", "vars", "steps"].contains(&key.as_str()) {
            return Err(key_error(
                key,
                "unknown top-level key; a pipeline has `description`, `[vars]` and \
                 `[steps.NAME]` tables"
                    .to_owned(),
            ));
        }
    }
    if doc.get("description").is_some_and(|d| !d.is_str()) {
        return Err(key_error(
            "description",
            "must be text, e.g. description = \"segment the nightly cohort\"".to_owned(),
        ));
    }
    apply_sets(path, &mut doc, sets)?;
    let vars = match doc.get("vars") {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => return Err(key_error("vars", "must be a table: [vars]".to_owned())),
    };
    // Variables are replaced in steps only: `out_dir = "{out_dir}/x"` would otherwise reach
    // a command as the literal folder name `{out_dir}/x`.
    for (name, value) in &vars {
        if mentions_a_variable(value) {
            return Err(key_error(
                &format!("vars.{name}"),
                "a variable cannot use `{...}` (variables are replaced in steps only); \
                 give its value in full"
                    .to_owned(),
            ));
        }
    }
    let Some(toml::Value::Table(steps)) = doc.get("steps") else {
        return Err(key_error(
            "steps",
            "the pipeline has no steps; add a [steps.NAME] table with `command = ...`".into(),
        ));
    };
    let mut planned = Vec::new();
    for (name, step) in steps {
        let at = |key: &str| format!("steps.{name}.{key}");
        let toml::Value::Table(step) = step else {
            return Err(key_error(
                &format!("steps.{name}"),
                "must be a table".into(),
            ));
        };
        let cmd = match step.get("command") {
            Some(toml::Value::String(c)) if STEP_COMMANDS.contains(&c.as_str()) => c.clone(),
            Some(other) => {
                return Err(key_error(
                    &at("command"),
                    format!("{other} is not a step command; use one of {STEP_COMMANDS:?}"),
                ))
            }
            None => {
                return Err(key_error(
                    &at("command"),
                    format!("missing; say which command the step runs, one of {STEP_COMMANDS:?}"),
                ))
            }
        };
        let definition = command(&cmd).expect("step commands exist");
        let mut positional = Vec::new();
        let mut argv = Vec::new();
        for (key, value) in step.iter().filter(|(k, _)| k.as_str() != "command") {
            // `false` leaves a key out (e.g. `--set segment.baseline=false`).
            if matches!(value, toml::Value::Boolean(false)) {
                continue;
            }
            let flag = key.replace('_', "-");
            let arg = definition
                .get_arguments()
                .find(|a| {
                    a.get_long() == Some(flag.as_str())
                        || (a.is_positional() && a.get_id().as_str().replace('_', "-") == flag)
                })
                .ok_or_else(|| {
                    let known: Vec<String> = definition
                        .get_arguments()
                        .filter_map(|a| {
                            a.get_long()
                                .map(str::to_owned)
                                .or_else(|| a.is_positional().then(|| a.get_id().to_string()))
                        })
                        .filter(|k| !["help", "version"].contains(&k.as_str()))
                        .collect();
                    key_error(
                        &at(key),
                        format!(
                            "`{cmd}` has no such option; its keys are {}",
                            known.join(", ")
                        ),
                    )
                })?;
            let values = expand(value, &vars).map_err(|m| key_error(&at(key), m))?;
            if arg.is_positional() {
                positional.extend(values);
            } else if !arg.get_action().takes_values() {
                match value {
                    toml::Value::Boolean(true) => argv.push(format!("--{flag}")),
                    other => {
                        return Err(key_error(
                            &at(key),
                            format!("is a switch; give true or false, not {other}"),
                        ))
                    }
                }
            } else {
                // `--flag=value`, so values such as `-1` are not read as flags.
                argv.extend(values.into_iter().map(|v| format!("--{flag}={v}")));
            }
        }
        if !positional.is_empty() {
            argv.push("--".to_owned());
            argv.extend(positional);
        }
        planned.push(Step {
            name: name.clone(),
            command: cmd,
            argv,
        });
    }
    Ok(planned)
}

/// Applies `--set KEY=VALUE`: KEY is a variable of `[vars]` or `STEP.KEY`.
fn apply_sets(path: &Path, doc: &mut toml::Table, sets: &[String]) -> Result<(), RunError> {
    for text in sets {
        let bad = |message: String| RunError::Set {
            text: text.clone(),
            message,
        };
        let Some((key, raw)) = text.split_once('=') else {
            return Err(bad(
                "give KEY=VALUE, e.g. --set out_dir=/scratch/run1".into()
            ));
        };
        let key = key.trim();
        // VALUE as TOML when it parses as a value, else as a plain string.
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
        let target = match key.split_once('.') {
            None => {
                let vars = doc.get_mut("vars").and_then(toml::Value::as_table_mut);
                match vars {
                    Some(vars) if vars.contains_key(key) => vars,
                    _ => {
                        return Err(bad(format!(
                            "{}: no variable `{key}` in [vars]; set a step's key as STEP.KEY",
                            path.display()
                        )))
                    }
                }
            }
            Some((step, _)) => {
                let steps = doc.get_mut("steps").and_then(toml::Value::as_table_mut);
                match steps
                    .and_then(|s| s.get_mut(step))
                    .and_then(toml::Value::as_table_mut)
                {
                    Some(table) => table,
                    None => {
                        return Err(bad(format!(
                            "{}: no step `{step}` (steps are the [steps.NAME] tables)",
                            path.display()
                        )))
                    }
                }
            }
        };
        let leaf = key.split_once('.').map_or(key, |(_, k)| k);
        // A list variable set to one string becomes a list of one.
        let value = match (target.get(leaf), value) {
            (Some(toml::Value::Array(_)), toml::Value::String(s)) => {
                toml::Value::Array(vec![toml::Value::String(s)])
            }
            (_, v) => v,
        };
        target.insert(leaf.to_owned(), value);
    }
    Ok(())
}

/// A value as command-line strings, with `{var}` replaced.
fn expand(value: &toml::Value, vars: &toml::Table) -> Result<Vec<String>, String> {
    match value {
        toml::Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(expand(item, vars)?);
            }
            Ok(out)
        }
        toml::Value::String(s) => {
            let whole = s
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .filter(|n| !n.contains(['{', '}']));
            if let Some(name) = whole {
                let var = vars.get(name).ok_or_else(|| unknown_var(name, vars))?;
                if var.is_array() {
                    return expand(var, vars);
                }
            }
            Ok(vec![substitute(s, vars)?])
        }
        toml::Value::Integer(i) => Ok(vec![i.to_string()]),
        toml::Value::Float(f) => Ok(vec![f.to_string()]),
        toml::Value::Boolean(b) => Ok(vec![b.to_string()]),
        other => Err(format!("cannot pass {other} on a command line")),
    }
}

/// True when `value` (or an item of it) is text holding `{` or `}`.
fn mentions_a_variable(value: &toml::Value) -> bool {
    match value {
        toml::Value::String(s) => s.contains(['{', '}']),
        toml::Value::Array(items) => items.iter().any(mentions_a_variable),
        _ => false,
    }
}

fn unknown_var(name: &str, vars: &toml::Table) -> String {
    let known: Vec<&String> = vars.keys().collect();
    format!("no variable `{name}` in [vars] (variables: {known:?})")
}

fn substitute(text: &str, vars: &toml::Table) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in {text:?}"))?;
        let name = &rest[start + 1..start + end];
        let value = vars.get(name).ok_or_else(|| unknown_var(name, vars))?;
        match value {
            toml::Value::String(s) => out.push_str(s),
            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                out.push_str(&expand(value, vars)?[0])
            }
            _ => {
                return Err(format!(
                    "variable `{name}` is a list; use it alone, as \"{{{name}}}\""
                ))
            }
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Names the key a command-line error is about (`--jobs <N>` → `jobs`), for messages.
pub fn key_of_clap_error(error: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue};
    match error.get(ContextKind::InvalidArg)? {
        ContextValue::String(s) => Some(key_of_arg(s)),
        _ => None,
    }
}

/// The pipeline keys a "required arguments were not provided" error lists (clap puts them
/// on lines after the first, which a one-line message would drop): `--out-dir <OUT_DIR>`
/// → `out-dir`, `<INPUTS>...` → `inputs`. `None` for other errors.
pub fn missing_keys_of_clap_error(error: &clap::Error) -> Option<Vec<String>> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if error.kind() != ErrorKind::MissingRequiredArgument {
        return None;
    }
    match error.get(ContextKind::InvalidArg)? {
        ContextValue::Strings(args) => Some(args.iter().map(|a| key_of_arg(a)).collect()),
        ContextValue::String(arg) => Some(vec![key_of_arg(arg)]),
        _ => None,
    }
}

/// `--jobs <N>` → `jobs`; `<INPUTS>...` → `inputs`.
fn key_of_arg(arg: &str) -> String {
    let first = arg.split_whitespace().next().unwrap_or(arg);
    first
        .trim_start_matches('-')
        .trim_start_matches('<')
        .trim_end_matches("...")
        .trim_end_matches('>')
        .to_ascii_lowercase()
}
