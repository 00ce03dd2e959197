//! Where every value a command reads comes from, at the bottom of the layers: the runner's
//! inputs (`INPUT_*`), environment variables, secrets, names that end up in paths, and YAML
//! files with `file:line:column` errors. `settings` resolves flag > input > file > default on top.

use std::path::Path;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// A secret: the `name` input, else the first set environment variable of `env_vars`.
pub(crate) fn secret(name: &str, env_vars: &[&str]) -> Option<Secret> {
    input(name)
        .or_else(|| env_vars.iter().find_map(|var| env(var)))
        .map(Secret::new)
}

/// The runner's input variable: `INPUT_` + the name upper-cased with spaces as `_` (hyphens
/// kept); empty and unset are the same (the runner sets declared inputs to `""`). Trimmed, as
/// the toolkit's `getInput` does.
pub(crate) fn input(name: &str) -> Option<String> {
    let var = format!("INPUT_{}", name.replace(' ', "_").to_uppercase());
    READ.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(var.clone());
    env(&var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The `INPUT_*` variables some command asked for in this run.
static READ: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Inputs that always carry a value from action.yml's defaults, or that pick the command.
const ALWAYS_SET: &[&str] = &["INPUT_COMMAND", "INPUT_GITHUB-TOKEN", "INPUT_CONFIG"];

/// The inputs given a value (`INPUT_*` set, not empty) that nothing in this run asked for: a
/// misspelt name, or an input of another command. Names as the workflow wrote them.
pub(crate) fn unused_inputs() -> Vec<String> {
    let read = READ.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut unused: Vec<String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
        .filter(|(k, v)| {
            k.starts_with("INPUT_")
                && !v.to_string_lossy().trim().is_empty()
                && !read.contains(k)
                && !ALWAYS_SET.contains(&k.as_str())
        })
        .map(|(k, _)| k["INPUT_".len()..].to_lowercase())
        .collect();
    unused.sort();
    unused
}

/// Who is acting, for records and overrides: the user who triggered the run (re-runs
/// included), else the run's actor, else the local user.
pub(crate) fn actor() -> String {
    env("GITHUB_TRIGGERING_ACTOR")
        .or_else(|| env("GITHUB_ACTOR"))
        .or_else(|| env("USER"))
        .unwrap_or_else(|| "unknown".into())
}

/// A non-empty environment variable.
pub(crate) fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// YAML 1.2 core-schema booleans, as the toolkit accepts them.
pub(crate) fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim() {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Names used in paths, keys and artifact names: letters, digits, `.`, `_`, `-`.
pub(crate) fn check_name(what: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && !value.starts_with(['.', '-'])
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "{what} `{}` is not valid: use 1-128 letters, digits, `.`, `_` or `-`, not starting with `.` or `-`",
            crate::text::one_line(value)
        )))
    }
}

/// Parses any YAML file shipgate reads (the config, smoke suites); errors read
/// `file:line:column: message`, so a user can jump to the problem.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    serde_yaml_ng::from_str(text).map_err(|e| {
        let message = e.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        let message = match nearest_expected(&message) {
            Some(near) => format!("{message}; did you mean `{near}`?"),
            None => message,
        };
        match e.location() {
            Some(at) => {
                let (line, column) = refine_location(text, at.line(), at.column(), &message);
                Error::usage(format!("{}:{line}:{column}: {message}", path.display())).at(
                    path.display().to_string(),
                    line,
                    column,
                )
            }
            None => Error::usage(format!("{}: {message}", path.display())),
        }
    })
}

/// For serde's "unknown field `stauts`, expected one of `status`, `url`" (or variant): the
/// expected name nearest to the unknown one, when it is near enough to be a typo.
fn nearest_expected(message: &str) -> Option<String> {
    let rest = message
        .split_once("unknown field `")
        .or_else(|| message.split_once("unknown variant `"))?
        .1;
    let (unknown, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected")?.1;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let limit = (unknown.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&unknown.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Levenshtein distance (insertions, deletions, substitutions) between two short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// serde reports a value that fails to convert (a bad duration inside a map) at the start of
/// the enclosing map. When the message quotes the value in backticks, point at the first line
/// from there on that holds it.
fn refine_location(text: &str, line: usize, column: usize, message: &str) -> (usize, usize) {
    let quoted = message
        .split('`')
        .nth(1)
        .filter(|q| q.len() >= 2 && !q.contains('\n'));
    let Some(quoted) = quoted else {
        return (line, column);
    };
    text.lines()
        .enumerate()
        .skip(line.saturating_sub(1))
        .find_map(|(i, l)| l.find(quoted).map(|c| (i + 1, c + 1)))
        .unwrap_or((line, column))
}

/// A URL input that must be http(s) with a host; the error shows it with its password redacted.
pub(crate) fn check_http_url(input: &str, raw: &str) -> Result<()> {
    match url::Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(Error::usage(format!(
            "`{input}` is `{}`, not an http(s) URL",
            crate::text::one_line(&crate::secret::redact_url(raw))
        ))),
    }
}

/// The most shipgate reads of one input file (config, smoke suite, event payload, record,
/// approval): far more than any real one, small enough that a wrong path fails at once.
pub(crate) const MAX_INPUT_FILE: u64 = 8 * 1024 * 1024;

/// Reads an input file as UTF-8 text, at most [`MAX_INPUT_FILE`] bytes. Only a regular file is
/// read: a device (`/dev/zero`), a FIFO or a directory is refused without waiting on it (opened
/// non-blocking, judged by the opened file's own metadata), so a wrong path can neither hang
/// shipgate nor fill its memory. Errors keep their kind (`NotFound` stays `NotFound`).
pub(crate) fn read_text_file(path: &Path) -> std::io::Result<String> {
    use std::io::{Error as IoError, ErrorKind, Read as _};
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO (named pipe)"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(IoError::new(
            ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file"),
        ));
    }
    let too_big = |size: u64| {
        IoError::new(
            ErrorKind::InvalidData,
            format!("it is {size} bytes or more; the most shipgate reads is {MAX_INPUT_FILE}"),
        )
    };
    if meta.len() > MAX_INPUT_FILE {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_INPUT_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_INPUT_FILE {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        IoError::new(
            ErrorKind::InvalidData,
            format!("it is not UTF-8 text ({e})"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_key_gets_the_nearest_valid_one() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Probe {
            status: Option<u16>,
            url: Option<String>,
            timeout: Option<String>,
        }
        let path = Path::new("suite.yml");
        let err = parse_yaml::<Probe>(path, "url: x\nstauts: 200\n").expect_err("unknown");
        let text = err.to_string();
        assert!(text.contains("did you mean `status`?"), "{text}");
        assert_eq!(
            err.location(),
            Some(&crate::error::Location {
                file: "suite.yml".into(),
                line: 2,
                column: 1
            })
        );
        // Nothing near: no guess.
        let err = parse_yaml::<Probe>(path, "retries: 3\n").expect_err("unknown");
        assert!(!err.to_string().contains("did you mean"), "{err}");
        assert_eq!(edit_distance("stauts", "status"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn devices_fifos_directories_and_oversized_files_are_refused_at_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let message = |path: &Path| read_text_file(path).expect_err("refused").to_string();
        assert!(message(&fifo).contains("FIFO"), "{}", message(&fifo));
        assert!(message(Path::new("/dev/zero")).contains("a device"));
        assert!(message(dir.path()).contains("a directory"));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_INPUT_FILE as usize + 1]).expect("write");
        assert!(message(&big).contains("the most shipgate reads"));
        let binary = dir.path().join("binary");
        std::fs::write(&binary, [0xff, 0xfe]).expect("write");
        assert!(message(&binary).contains("not UTF-8"));
        let fine = dir.path().join("fine.yml");
        std::fs::write(&fine, "a: 1\n").expect("write");
        assert_eq!(read_text_file(&fine).expect("read"), "a: 1\n");
        assert_eq!(
            read_text_file(&dir.path().join("missing"))
                .expect_err("missing")
                .kind(),
            std::io::ErrorKind::NotFound
        );
    }
}
