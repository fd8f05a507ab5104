//! How a failed command reports its error: the top-level message, then each cause once.
//!
//! ```text
//! error: loading runs/ckpt
//!
//! Caused by:
//!   runs/ckpt/config.json
//!   No such file or directory (os error 2)
//! ```
//!
//! The workspace's error types name only their own level in `Display` and keep the cause as
//! `source()`; for errors from elsewhere that repeat their source inside their own message
//! (`path: No such file…`), a cause whose text the line above already ends with is skipped, so
//! nothing is printed twice.

/// Each level of the chain's text once (empty ones and repeats of the level above skipped).
fn causes(err: &anyhow::Error) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() {
            continue;
        }
        if lines.last().is_some_and(|prev| prev.ends_with(&text)) {
            continue;
        }
        lines.push(text);
    }
    lines
}

/// The chain on one line (`a: b: c`), each cause once, for log lines.
pub fn one_line(err: &anyhow::Error) -> String {
    causes(err).join(": ")
}

/// The error chain as printed on stderr (without a trailing newline).
pub fn render(err: &anyhow::Error) -> String {
    let lines = causes(err);
    let mut out = format!("error: {}", lines.first().map_or("", String::as_str));
    if lines.len() > 1 {
        out.push_str("\n\nCaused by:");
        for l in &lines[1..] {
            out.push_str("\n  ");
            out.push_str(l);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Repeats {
        path: String,
        source: std::io::Error,
    }

    fn missing() -> std::io::Error {
        std::fs::read("/surely/not/here/distill.toml").unwrap_err()
    }

    #[test]
    fn each_cause_is_printed_once() {
        let os = missing().to_string();
        // A source repeated inside its parent's message is not printed again.
        let e = anyhow::Error::new(Repeats { path: "c.toml".into(), source: missing() })
            .context("loading the config");
        let text = render(&e);
        assert_eq!(text, format!("error: loading the config\n\nCaused by:\n  c.toml: {os}"));
        assert_eq!(text.matches(&os).count(), 1, "{text}");
        // A plain chain prints every level.
        let e = anyhow::Error::new(missing()).context("c.toml").context("loading");
        assert_eq!(render(&e), format!("error: loading\n\nCaused by:\n  c.toml\n  {os}"));
        assert_eq!(render(&anyhow::anyhow!("alone")), "error: alone");
    }

    #[test]
    fn a_missing_config_file_reports_one_chain() {
        let e = anyhow::Error::new(
            teacher::TeacherConfig::load(std::path::Path::new("/surely/not/here/t.toml"), &[])
                .unwrap_err(),
        );
        let text = render(&e);
        assert!(text.starts_with("error: /surely/not/here/t.toml"), "{text}");
        assert_eq!(text.matches("No such file or directory").count(), 1, "{text}");
        assert!(!text.contains("(os error 2): No such file"), "{text}");
    }
}
