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
            "{} is not a release version: {}",
            crate::actions::quote(&self.input),
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
    if rest.is_empty() {
        return Err(fail(format!("nothing follows the prefix `{prefix}`")));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// SemVer 2.0.0's own valid examples, with and without the `v` prefix.
    const VALID: &[&str] = &[
        "0.0.4",
        "1.2.3",
        "v1.2.3",
        "10.20.30",
        "1.1.2-prerelease+meta",
        "1.1.2+meta",
        "1.1.2+meta-valid",
        "1.0.0-alpha",
        "1.0.0-beta",
        "1.0.0-alpha.beta",
        "1.0.0-alpha.beta.1",
        "1.0.0-alpha.1",
        "1.0.0-alpha0.valid",
        "1.0.0-alpha.0valid",
        "1.0.0-alpha-a.b-c-somethinglong+build.1-aef.1-its-okay",
        "1.0.0-rc.1+build.1",
        "2.0.0-rc.1+build.123",
        "v2.0.0-rc1",
        "1.2.3-beta",
        "10.2.3-DEV-SNAPSHOT",
        "1.2.3-SNAPSHOT-123",
        "2.0.0+build.1848",
        "2.0.1-alpha.1227",
        "1.0.0-alpha+beta",
        "1.2.3----RC-SNAPSHOT.12.9.1--.12+788",
        "1.2.3----R-S.12.9.1--.12+meta",
        "1.0.0+0.build.1-rc.10000aaa-kk-0.1",
        "1.0.0-0A.is.legal",
        "1.0.0+001",
    ];

    /// Refused, with a piece of the rule each must name.
    const INVALID: &[(&str, &str)] = &[
        ("", "empty"),
        ("1", "has 1 part"),
        ("1.2", "has 2 parts"),
        ("1.2.3.4", "has 4 parts"),
        ("v", "nothing follows the prefix"),
        ("1.2.3-0123", "leading zero"),
        ("1.2.3-0123.0123", "leading zero"),
        ("1.1.2+.123", "empty identifier"),
        ("+invalid", "must start with a digit"),
        ("-invalid", "must start with a digit"),
        ("-invalid+invalid", "must start with a digit"),
        ("alpha", "must start with a digit"),
        ("alpha.beta.1", "must start with a digit"),
        ("alpha_beta", "must start with a digit"),
        ("1.0.0-alpha_beta", "contains `_`"),
        ("1.0.0-alpha..", "empty identifier"),
        ("1.0.0-alpha..1", "empty identifier"),
        ("1.0.0-", "is empty"),
        ("1.0.0+", "is empty"),
        ("01.1.1", "MAJOR `01` has a leading zero"),
        ("1.01.1", "MINOR `01` has a leading zero"),
        ("1.1.01", "PATCH `01` has a leading zero"),
        ("1.2.3.DEV", "has 4 parts"),
        ("1.2-SNAPSHOT", "has 2 parts"),
        ("1.2.31.2.3----RC-SNAPSHOT.12.09.1--..12+788", "parts"),
        ("-1.0.3-gamma+b7718", "must start with a digit"),
        ("9.8.7+meta+meta", "contains `+`"),
        ("9.8.7-whatever+meta+meta", "contains `+`"),
        ("99999999999999999999999.0.0", "too large"),
        ("v1.2.3$(id)", "`$`"),
        ("v1.2.3;id", "`;`"),
        ("v1.2.3|id", "`|`"),
        ("v1.2.3&&id", "`&`"),
        ("v1.2.3`id`", "`` ` ``"),
        ("v1.2.3>x", "`>`"),
        ("-v1.2.3", "must start with a digit"),
        ("v1.2.3 ", "whitespace"),
        (" v1.2.3", "whitespace"),
        ("v1.2.3\n::add-mask::x", "control"),
        ("v1.2.3\t", "whitespace"),
        ("V1.2.3", "case matters"),
        ("vv1.2.3", "more than once"),
        ("v1.2.x", "PATCH `x` is not a number"),
        ("v1..3", "MINOR is empty"),
        ("v1.2.3-ü", "non-ASCII"),
        ("refs/tags/v1.2.3", "`/`"),
        ("v1.2.3:latest", "`:`"),
    ];

    #[test]
    fn semver_examples_are_accepted() {
        for text in VALID {
            let release = parse(text, "v").unwrap_or_else(|e| panic!("{text}: {e}"));
            let bare = text.trim_start_matches('v');
            assert_eq!(release.version.to_string(), bare, "{text}");
            assert_eq!(release.tag, format!("v{bare}"), "{text}");
        }
    }

    #[test]
    fn bad_versions_are_refused_with_the_rule() {
        assert!(VALID.len() + INVALID.len() >= 40);
        for (text, rule) in INVALID {
            let error = parse(text, "v").expect_err(text);
            let message = error.to_string();
            let rule = rule.replace("`` ` ``", "`");
            assert!(
                message.contains(&rule),
                "{text:?}: expected the message to name `{rule}`, got: {message}"
            );
            assert!(!message.contains('\n'), "{text:?}: {message}");
        }
    }

    #[test]
    fn precedence_ignores_build_metadata() {
        let release = parse("v1.2.3+build.9", "v").expect("valid");
        let same = semver::Version::parse("1.2.3+build.1").expect("valid");
        assert!(release.precedence(&same).is_eq());
        let older = semver::Version::parse("1.2.3-rc.1").expect("valid");
        assert!(release.precedence(&older).is_gt());
    }

    #[test]
    fn other_prefixes() {
        let release = parse("release-1.2.3", "release-").expect("valid");
        assert_eq!(release.tag, "release-1.2.3");
        assert_eq!(parse("1.2.3", "").expect("valid").tag, "1.2.3");
        assert!(parse("v1.2.3", "").is_err());
    }
}
