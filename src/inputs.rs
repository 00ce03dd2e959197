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
    env(&var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
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
        match e.location() {
            Some(at) => {
                let (line, column) = refine_location(text, at.line(), at.column(), &message);
                Error::usage(format!("{}:{line}:{column}: {message}", path.display()))
            }
            None => Error::usage(format!("{}: {message}", path.display())),
        }
    })
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
