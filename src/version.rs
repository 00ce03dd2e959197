//! Release versions: strict SemVer 2.0.0 with exactly one optional tag prefix (`v`). Every
//! refusal says which rule failed, because the text came from a tag or a free-text input.

use std::cmp::Ordering;
use std::fmt;

/// Longer than any real release tag; refuses pasted garbage early.
const MAX_LEN: usize = 128;

/// A validated release: the SemVer and the git tag that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Release {
    pub(crate) version: semver::Version,
    pub(crate) tag: String,
}

impl Release {
    /// SemVer precedence: build metadata is ignored, unlike `Ord` on `semver::Version`.
    pub(crate) fn precedence(&self, other: &semver::Version) -> Ordering {
        self.version.cmp_precedence(other)
    }
}

/// Why a version string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) input: String,
    pub(crate) rule: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a release version: {}",
            crate::actions::quote(&self.input).trim_matches('`'),
            self.rule
        )
    }
}

impl std::error::Error for Invalid {}

/// Parses `input` as `[prefix]MAJOR.MINOR.PATCH[-PRE][+BUILD]`, strictly.
pub(crate) fn parse(input: &str, prefix: &str) -> Result<Release, Invalid> {
    let fail = |rule: String| Invalid {
        input: input.to_string(),
        rule,
    };
    if input.is_empty() {
        return Err(fail("it is empty; pass a version such as `v1.2.3`".into()));
    }
    if input.len() > MAX_LEN {
        return Err(fail(format!("it is longer than {MAX_LEN} characters")));
    }
    if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(fail(format!(
            "it contains whitespace or a control character ({})",
            c.escape_unicode()
        )));
    }
    const SHELL: &[char] = &[
        '$', '`', ';', '|', '&', '(', ')', '<', '>', '\'', '"', '\\', '*', '?', '[', ']', '{', '}',
        '!', '#', '~', '^', ':', '=', '%', '@', ',', '/',
    ];
    if let Some(c) = input.chars().find(|c| SHELL.contains(c)) {
        return Err(fail(format!(
            "it contains the character `{c}`, which no SemVer version has (shell metacharacters are refused)"
        )));
    }
    if let Some(c) = input.chars().find(|c| !c.is_ascii()) {
        return Err(fail(format!("it contains the non-ASCII character `{c}`")));
    }
    let rest = match input.strip_prefix(prefix) {
        Some(rest) if !prefix.is_empty() => rest,
        _ => input,
    };
    if !prefix.is_empty() && rest.starts_with(prefix) {
        return Err(fail(format!("it has the prefix `{prefix}` more than once")));
    }
    if let Some(first) = rest.chars().next()
        && !first.is_ascii_digit()
    {
        let hint = if !prefix.is_empty() && rest.to_lowercase().starts_with(&prefix.to_lowercase())
        {
            format!("; the prefix is `{prefix}` (case matters)")
        } else if prefix.is_empty() {
            String::new()
        } else {
            format!("; only the prefix `{prefix}` may come before the number")
        };
        return Err(fail(format!("it must start with a digit{hint}")));
    }
    let (without_build, build) = match rest.split_once('+') {
        Some((head, build)) => (head, Some(build)),
        None => (rest, None),
    };
    let (core, pre) = match without_build.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (without_build, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 {
        return Err(fail(format!(
            "it needs MAJOR.MINOR.PATCH; `{core}` has {} part{}",
            parts.len(),
            if parts.len() == 1 { "" } else { "s" }
        )));
    }
    for (name, part) in ["MAJOR", "MINOR", "PATCH"].iter().zip(&parts) {
        if part.is_empty() {
            return Err(fail(format!("{name} is empty")));
        }
        if !part.chars().all(|c| c.is_ascii_digit()) {
            return Err(fail(format!("{name} `{part}` is not a number")));
        }
        if part.len() > 1 && part.starts_with('0') {
            return Err(fail(format!("{name} `{part}` has a leading zero")));
        }
        if part.parse::<u64>().is_err() {
            return Err(fail(format!("{name} `{part}` is too large")));
        }
    }
    if let Some(pre) = pre {
        check_identifiers("pre-release", pre, true).map_err(fail)?;
    }
    if let Some(build) = build {
        check_identifiers("build metadata", build, false).map_err(fail)?;
    }
    let version = semver::Version::parse(rest).map_err(|e| fail(e.to_string()))?;
    Ok(Release {
        tag: format!("{prefix}{rest}"),
        version,
    })
}

fn check_identifiers(what: &str, text: &str, numeric_no_leading_zero: bool) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!(
            "the {what} after `{}` is empty",
            if what == "pre-release" { '-' } else { '+' }
        ));
    }
    for identifier in text.split('.') {
        if identifier.is_empty() {
            return Err(format!("the {what} `{text}` has an empty identifier"));
        }
        if let Some(c) = identifier
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "the {what} identifier `{identifier}` contains `{c}`; only letters, digits and `-` are allowed"
            ));
        }
        if numeric_no_leading_zero
            && identifier.len() > 1
            && identifier.starts_with('0')
            && identifier.chars().all(|c| c.is_ascii_digit())
        {
            return Err(format!(
                "the numeric {what} identifier `{identifier}` has a leading zero"
            ));
        }
    }
    Ok(())
}
