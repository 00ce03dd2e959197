//! GitHub Actions I/O, used by every command: file commands (`GITHUB_OUTPUT`, `GITHUB_ENV`,
//! `GITHUB_STEP_SUMMARY`), workflow commands (annotations, groups, masks, stop-commands) and the
//! plain-text equivalents when shipgate runs outside Actions.
//!
//! Workflow commands go to stderr (the runner reads both streams), so stdout stays data only.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::secret::redact;

/// The runner refuses step summaries over 1 MiB (`AttachmentSizeLimit`).
pub(crate) const SUMMARY_LIMIT: u64 = 1024 * 1024;

/// The runner cuts annotation messages at this many characters.
const ANNOTATION_LIMIT: usize = 4096;

static ENABLED: OnceLock<bool> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub(crate) enum ActionsError {
    #[error("cannot write the runner file `{path}` ({var})")]
    Io {
        var: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the value of `{key}` contains its heredoc delimiter; refusing to write it")]
    Delimiter { key: String },
    #[error("`{key}` is not a valid output or variable name")]
    Key { key: String },
}

impl crate::error::Classify for ActionsError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Usage
    }
}

/// Whether shipgate runs inside a GitHub Actions job (`GITHUB_ACTIONS=true`).
pub(crate) fn enabled() -> bool {
    *ENABLED.get_or_init(|| std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"))
}

/// Writes one line to stderr in a single call, so concurrent writers never interleave mid-line.
pub(crate) fn emit(line: &str) {
    crate::ui::stderr_lines(format!("{line}\n").as_bytes());
}

/// `::add-mask::` for a value (each line of a multi-line value) when running in Actions.
pub(crate) fn add_mask(value: &str) {
    if !enabled() {
        return;
    }
    for line in value.lines().filter(|line| !line.trim().is_empty()) {
        emit(&format!("::add-mask::{}", escape_data(line)));
    }
}

/// The toolkit's `escapeData`: `%`, CR and LF.
pub(crate) fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// The toolkit's `escapeProperty`: `escapeData` plus `:` and `,`.
pub(crate) fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

pub(crate) use crate::text::quote;

pub(crate) use crate::text::one_line;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Error,
    Warning,
    Notice,
}

impl Level {
    fn command(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Notice => "notice",
        }
    }
}

/// An annotation: `::error title=…::message` in Actions, `error: message` outside.
pub(crate) fn annotate(level: Level, title: Option<&str>, message: &str) {
    annotate_at(level, title, None, message);
}

/// An annotation pinned on a file, line and column (GitHub shows it on that line of the file in
/// the run's summary and in pull requests); outside Actions the message is prefixed with
/// `file:line:column` when it does not already say it.
pub(crate) fn annotate_at(
    level: Level,
    title: Option<&str>,
    at: Option<&crate::error::Location>,
    message: &str,
) {
    let message = redact(message);
    if enabled() {
        let message: String = if message.chars().count() > ANNOTATION_LIMIT {
            let mut cut: String = message.chars().take(ANNOTATION_LIMIT - 1).collect();
            cut.push('…');
            cut
        } else {
            message
        };
        let mut props = Vec::new();
        if let Some(at) = at {
            props.push(format!("file={}", escape_property(&redact(&at.file))));
            props.push(format!("line={}", at.line));
            props.push(format!("col={}", at.column));
        }
        if let Some(title) = title {
            props.push(format!("title={}", escape_property(&redact(title))));
        }
        let props = if props.is_empty() {
            String::new()
        } else {
            format!(" {}", props.join(","))
        };
        emit(&format!(
            "::{}{props}::{}",
            level.command(),
            escape_data(&message)
        ));
    } else {
        let prefix = level.command();
        match title {
            Some(title) => emit(&format!("{prefix}: {}: {message}", redact(title))),
            None => emit(&format!("{prefix}: {message}")),
        }
    }
}

/// A `::group::` that ends when dropped; outside Actions, a heading line.
pub(crate) struct Group(());

pub(crate) fn group(name: &str) -> Group {
    if enabled() {
        emit(&format!("::group::{}", escape_data(&redact(name))));
    } else {
        emit(&format!("==> {}", redact(name)));
    }
    Group(())
}

impl Drop for Group {
    fn drop(&mut self) {
        if enabled() {
            emit("::endgroup::");
        }
    }
}

/// Stops the runner from reading workflow commands until dropped: `::stop-commands::<token>`
/// then `::<token>::`. Wrap any block of untrusted multi-line text (child process output) in one.
pub(crate) struct Fence {
    token: Option<String>,
}

pub(crate) fn fence() -> Fence {
    if !enabled() {
        return Fence { token: None };
    }
    let token = format!("shipgate-{}", crate::util::random_hex(16));
    emit(&format!("::stop-commands::{token}"));
    Fence { token: Some(token) }
}

impl Drop for Fence {
    fn drop(&mut self) {
        if let Some(token) = &self.token {
            emit(&format!("::{token}::"));
        }
    }
}

/// Prints untrusted multi-line text, redacted, inside a stop-commands fence.
pub(crate) fn print_untrusted(text: &str) {
    let _fence = fence();
    for line in redact(text).lines() {
        emit(line);
    }
}

/// Sets a step output (`$GITHUB_OUTPUT`); does nothing when the runner gave no output file.
pub(crate) fn set_output(key: &str, value: &str) -> Result<(), ActionsError> {
    append_file_command("GITHUB_OUTPUT", key, value)
}

/// Exports a variable to later steps of the job (`$GITHUB_ENV`).
pub(crate) fn set_env(key: &str, value: &str) -> Result<(), ActionsError> {
    append_file_command("GITHUB_ENV", key, value)
}

fn append_file_command(var: &'static str, key: &str, value: &str) -> Result<(), ActionsError> {
    let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let block = file_command(key, &redact(value))?;
    append(var, Path::new(&path), block.as_bytes())
}

/// One `KEY=VALUE` line, or the heredoc form with a random delimiter when the value has a line
/// break, exactly as the runner's `EnvFileKeyValuePairs` reads it back.
pub(crate) fn file_command(key: &str, value: &str) -> Result<String, ActionsError> {
    // A key ending in `<` would make `KEY<<DELIM` read as `KEY` + `<<` + `<DELIM` (found by the
    // file-command property in `properties`).
    if key.is_empty()
        || key.contains(['=', '\n', '\r'])
        || key.contains("<<")
        || key.ends_with('<')
        || key.trim() != key
    {
        return Err(ActionsError::Key {
            key: key.to_string(),
        });
    }
    if !value.contains('\n') {
        return Ok(format!("{key}={value}\n"));
    }
    let delimiter = format!("ghadelimiter_{}", crate::util::random_hex(16));
    if value.contains(&delimiter) {
        return Err(ActionsError::Delimiter {
            key: key.to_string(),
        });
    }
    Ok(format!("{key}<<{delimiter}\n{value}\n{delimiter}\n"))
}

fn append(var: &'static str, path: &Path, bytes: &[u8]) -> Result<(), ActionsError> {
    let io = |source| ActionsError::Io {
        var,
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)
}

/// This workflow run's page (`{server}/{repo}/actions/runs/{id}`), from the runner's
/// variables; `None` outside GitHub Actions.
pub(crate) fn run_url() -> Option<String> {
    let server = crate::inputs::env("GITHUB_SERVER_URL")?;
    let repo = crate::inputs::env("GITHUB_REPOSITORY")?;
    let run = crate::inputs::env("GITHUB_RUN_ID")?;
    Some(format!(
        "{}/{repo}/actions/runs/{run}",
        server.trim_end_matches('/')
    ))
}

/// Where a reader of the step summary finds the log written to `path`: in a workflow run, the
/// artifact of the log's name (`rollout-logs-<id>`, uploaded by `shipgate record`) on the run's
/// page; elsewhere the path itself.
pub(crate) fn log_reference(path: &str) -> String {
    let name = Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.strip_suffix(".log").unwrap_or(n).to_string());
    match (enabled(), run_url(), name) {
        (true, Some(run), Some(name)) => format!(
            "artifact [`{}`]({run}#artifacts) (uploaded by `shipgate record`)",
            crate::text::one_line(&name).replace('`', "'")
        ),
        _ => format!("`{}`", crate::text::one_line(path).replace('`', "'")),
    }
}

/// Appends Markdown to the step summary, keeping the file under the runner's 1 MiB limit: what
/// does not fit is cut at a line boundary and replaced by a visible note.
pub(crate) fn append_summary(markdown: &str) -> Result<(), ActionsError> {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let path = PathBuf::from(path);
    let markdown = redact(markdown);
    let used = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let text = fit_summary(&markdown, used);
    if text.is_empty() {
        return Ok(());
    }
    append("GITHUB_STEP_SUMMARY", &path, text.as_bytes())
}

const TRUNCATION_NOTE: &str = "\n\n> [!WARNING]\n> shipgate cut this summary at the runner's 1 MiB limit; the full report is in the state directory and the workflow artifacts.\n";

/// The part of `markdown` that fits after `used` bytes, with the truncation note when cut.
pub(crate) fn fit_summary(markdown: &str, used: u64) -> String {
    let room = SUMMARY_LIMIT.saturating_sub(used) as usize;
    let mut text = markdown.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    if text.len() <= room {
        return text;
    }
    if room <= TRUNCATION_NOTE.len() {
        return String::new();
    }
    let budget = room - TRUNCATION_NOTE.len();
    let mut cut = budget;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let cut = text[..cut].rfind('\n').map_or(cut, |i| i + 1);
    format!("{}{TRUNCATION_NOTE}", &text[..cut])
}

/// A Markdown table whose cells are escaped so untrusted text cannot break its layout.
#[derive(Debug, Default)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row<S: AsRef<str>>(&mut self, cells: &[S]) -> &mut Self {
        self.rows
            .push(cells.iter().map(|c| cell(c.as_ref())).collect());
        self
    }

    pub(crate) fn render(&self) -> String {
        let mut out = format!("| {} |\n", self.header.join(" | "));
        out.push_str(&format!(
            "|{}\n",
            self.header.iter().map(|_| " --- |").collect::<String>()
        ));
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out
    }
}

fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_follow_the_toolkit() {
        assert_eq!(escape_data("50%\r\nnext"), "50%25%0D%0Anext");
        assert_eq!(escape_property("a:b,c%"), "a%3Ab%2Cc%25");
    }

    #[test]
    fn quote_cannot_start_a_line() {
        let q = quote("v1\n::add-mask::x\r");
        assert!(!q.contains('\n') && !q.contains('\r'), "{q}");
        assert_eq!(q, "`v1\\n::add-mask::x\\r`");
    }

    #[test]
    fn single_line_and_heredoc_forms() {
        assert_eq!(
            file_command("tag", "v1.2.3").ok(),
            Some("tag=v1.2.3\n".into())
        );
        let block = file_command("notes", "a\nb").expect("heredoc");
        let mut lines = block.lines();
        let first = lines.next().expect("first line");
        let delimiter = first.strip_prefix("notes<<").expect("heredoc start");
        assert!(delimiter.starts_with("ghadelimiter_"));
        assert_eq!(lines.next(), Some("a"));
        assert_eq!(lines.next(), Some("b"));
        assert_eq!(lines.next(), Some(delimiter));
        assert!(file_command("a=b", "x").is_err());
        assert!(file_command("a<<b", "x").is_err());
    }

    #[test]
    fn summary_is_cut_with_a_note() {
        let line = "| a | b |\n";
        let big = line.repeat(200_000);
        let fitted = fit_summary(&big, 0);
        assert!(fitted.len() as u64 <= SUMMARY_LIMIT);
        assert!(fitted.ends_with(TRUNCATION_NOTE));
        let body = fitted.trim_end_matches(TRUNCATION_NOTE);
        assert!(body.ends_with('\n'));
        assert_eq!(fit_summary("small", 0), "small\n");
        assert_eq!(fit_summary("x", SUMMARY_LIMIT), "");
    }

    #[test]
    fn table_cells_are_escaped() {
        let mut table = Table::new(&["a", "b"]);
        table.row(&["x|y", "line\nbreak"]);
        assert_eq!(
            table.render(),
            "| a | b |\n| --- | --- |\n| x\\|y | line break |\n"
        );
    }
}
