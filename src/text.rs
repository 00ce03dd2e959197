//! Text safe to show: untrusted values made one redacted line.

use crate::secret::redact;

/// Untrusted text as one redacted line, control characters escaped (`\n`, `\u{1b}`), at most
/// [`LINE_MAX`] characters.
pub(crate) fn one_line(untrusted: &str) -> String {
    capped(&escaped(untrusted), LINE_MAX)
}

/// One line of untrusted text is cut after this many characters.
const LINE_MAX: usize = 4 * 1024;

/// `text` cut after `max` characters, saying how much was left out. Cut after redaction, so a
/// secret is never half-shown.
pub(crate) fn capped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!(
            "{}… ({} more characters)",
            &text[..at],
            text[at..].chars().count()
        ),
        None => text.to_string(),
    }
}

fn escaped(untrusted: &str) -> String {
    let mut out = String::with_capacity(untrusted.len());
    for ch in untrusted.chars() {
        match ch {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    redact(&out)
}

/// Items of a comma- or newline-separated list (an input or flag that names several things),
/// trimmed, empties dropped.
pub(crate) fn split_list(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A commit as people cite it: its first seven characters.
pub(crate) fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// At most `max` characters, an ellipsis marking a cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Renders untrusted text (a tag, a commit message, a server's reply) for use inside one log
/// line: in backticks, with control characters escaped, so it can never start a line of its own
/// and so never be read as a workflow command.
pub(crate) fn quote(untrusted: &str) -> String {
    format!("`{}`", capped(&one_line(untrusted), QUOTED_MAX))
}

/// A value echoed in a message is cut after this many characters (a 50 MB input must not come
/// back as a 50 MB error line).
const QUOTED_MAX: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_after_redaction() {
        assert_eq!(capped("abcdef", 3), "abc… (3 more characters)");
        assert_eq!(capped("abc", 3), "abc");
        assert_eq!(capped("ééé", 1), "é… (2 more characters)");
        let huge = "x".repeat(LINE_MAX * 4);
        assert!(one_line(&huge).chars().count() < LINE_MAX + 40);
    }

    #[test]
    fn lists_split_on_commas_and_lines() {
        assert_eq!(split_list("a, b\nc,,"), vec!["a", "b", "c"]);
    }
}
