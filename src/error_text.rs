//! One line for an error and its causes, as `error:` lines and failure reports show it.

/// The error's message followed by each cause that the message does not already quote.
/// Many of our errors name their cause in their own text (`{path}: cannot list: {source}`),
/// so anyhow's `{:#}` would print that cause twice.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::one_line;
    use anyhow::Context;

    #[derive(Debug, thiserror::Error)]
    #[error("images/: cannot list: {source}")]
    struct Quoting {
        source: std::io::Error,
    }

    fn missing() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder")
    }

    #[test]
    fn a_cause_the_message_quotes_is_not_repeated() {
        let error = anyhow::Error::new(Quoting { source: missing() });
        assert_eq!(
            format!("{error:#}"),
            "images/: cannot list: no such folder: no such folder"
        );
        assert_eq!(one_line(&error), "images/: cannot list: no such folder");
    }

    #[test]
    fn context_and_unquoted_causes_are_kept() {
        let error = Err::<(), _>(missing())
            .context("reading the pipeline")
            .unwrap_err();
        assert_eq!(one_line(&error), "reading the pipeline: no such folder");
    }
}
