//! Progress bars for long runs.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A progress bar labelled `label` showing rate and ETA (`total` known) or a counter and rate
/// (`None`). Drawn on stderr only when it is a terminal and not `quiet`: logs and CI output
/// stay clean, while the bar still counts (position, rate) for whoever reads it.
pub fn progress_bar(label: &str, total: Option<u64>, quiet: bool) -> ProgressBar {
    let target = if quiet || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let template = if total.is_some() {
        "{prefix:>12.cyan.bold} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} \
         {per_sec} ETA {eta}"
    } else {
        "{prefix:>12.cyan.bold} {spinner} [{elapsed_precise}] {human_pos} {per_sec}"
    };
    let style = ProgressStyle::with_template(template).expect("progress templates are valid");
    ProgressBar::with_draw_target(total, target)
        .with_style(style)
        .with_prefix(label.to_owned())
}

#[cfg(test)]
mod tests {
    use super::progress_bar;

    #[test]
    fn quiet_bars_are_hidden_but_count() {
        for total in [Some(40), None] {
            let bar = progress_bar("tiles", total, true);
            assert!(bar.is_hidden());
            assert_eq!(bar.length(), total);
            bar.inc(3);
            assert_eq!(bar.position(), 3);
        }
    }
}
