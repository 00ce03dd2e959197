//! Secrets: a newtype that never prints its value, and one process-wide registry of every secret
//! value (and every form derived from it) so that anything shipgate writes — logs, annotations,
//! outputs, summaries, state files — can be redacted in one place.

use std::fmt;
use std::sync::{OnceLock, RwLock};

use url::Url;

/// What a redacted secret is replaced with, everywhere.
pub(crate) const MASK: &str = "***";

/// Values shorter than this are registered with the runner (`::add-mask::`) but not replaced in
/// shipgate's own text, which would otherwise turn every `a` into `***`.
const MIN_REDACT_LEN: usize = 3;

static REGISTRY: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Told of every new secret form as it is registered: `main` installs the runner's
/// `::add-mask::` here first thing, so this module needs nothing above it.
static ON_REGISTER: OnceLock<fn(&str)> = OnceLock::new();

/// Installs what tells the outside world of each new secret form (once, before any secret).
pub(crate) fn on_register(mask: fn(&str)) {
    let _ = ON_REGISTER.set(mask);
}

/// A secret value: `Debug` and `Display` print `***`; the value is reachable only through
/// [`Secret::expose`], which makes every use greppable.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// Wraps `value` and registers it (and its encoded/decoded forms) for masking and redaction.
    pub(crate) fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register(&value);
        Secret(value)
    }

    /// The secret value itself. Never log or format the result.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// The forms of `value` a leak could take: itself, percent-encoded, percent-decoded, base64
/// (standard and URL-safe, as in Basic auth headers and tokens) and, when it is a URL with a
/// password, the password in both forms.
pub(crate) fn forms_of(value: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    if value.is_empty() {
        return Vec::new();
    }
    let mut forms = vec![value.to_string()];
    let encoded = percent_encode(value);
    if encoded != value {
        forms.push(encoded);
    }
    if let Some(decoded) = percent_decode(value)
        && decoded != value
    {
        forms.push(decoded);
    }
    if let Ok(url) = Url::parse(value)
        && let Some(password) = url.password()
    {
        forms.push(password.to_string());
        if let Some(decoded) = percent_decode(password) {
            forms.push(percent_encode(&decoded));
            forms.push(decoded);
        }
    }
    // Base64 of the value on its own; the value encoded at another offset inside a longer
    // text (`user:secret`) has other base64 and is not found this way.
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        forms.push(engine.encode(value.as_bytes()));
    }
    forms.dedup();
    forms
}

/// Registers `value` and the forms derived from it ([`forms_of`]). Each new form is announced to
/// the runner with `::add-mask::` before shipgate prints anything that could contain it.
pub(crate) fn register(value: &str) {
    let forms = forms_of(value);
    if forms.is_empty() {
        return;
    }
    let mut registry = REGISTRY
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for form in forms {
        if form.is_empty() || registry.contains(&form) {
            continue;
        }
        if let Some(mask) = ON_REGISTER.get() {
            mask(&form);
        }
        registry.push(form);
    }
    // Longest first, so that a value containing another is replaced whole.
    registry.sort_by_key(|form| std::cmp::Reverse(form.len()));
}

/// Replaces every registered secret form in `text` with `***`.
pub(crate) fn redact(text: &str) -> String {
    let registry = REGISTRY
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = text.to_string();
    for form in registry.iter().filter(|form| form.len() >= MIN_REDACT_LEN) {
        if out.contains(form.as_str()) {
            out = out.replace(form.as_str(), MASK);
        }
    }
    out
}

/// A URL fit for logs: the password replaced by `***`, and every registered secret redacted.
/// Text that does not parse as a URL is redacted the same way.
pub(crate) fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                // Cannot fail for a URL that already has a password.
                let _ = url.set_password(Some(MASK));
            }
            redact(url.as_str())
        }
        Err(_) => redact(raw),
    }
}

/// Everything outside RFC 3986's unreserved set (`A-Z a-z 0-9 - . _ ~`).
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything outside RFC 3986's unreserved set, as URL userinfo needs.
pub(crate) fn percent_encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, NOT_UNRESERVED).to_string()
}

/// Decodes `%XX` escapes; `None` when the text has none or does not decode to UTF-8.
pub(crate) fn percent_decode(value: &str) -> Option<String> {
    if !value.contains('%') {
        return None;
    }
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let secret = Secret::new("canary-d3b07384d113");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(***)");
    }

    #[test]
    fn url_password_is_redacted_in_both_forms() {
        register("postgres://app:p%40ss%3Aw0rd-zz@db:5432/app");
        let decoded = redact("connecting with p@ss:w0rd-zz now");
        assert_eq!(decoded, "connecting with *** now");
        let encoded = redact("password=p%40ss%3Aw0rd-zz");
        assert_eq!(encoded, "password=***");
        let url = redact_url("postgres://app:other@db:5432/app");
        assert_eq!(url, "postgres://app:***@db:5432/app");
    }

    #[test]
    fn percent_round_trip() {
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
        assert_eq!(percent_decode("a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(percent_decode("plain"), None);
        assert_eq!(percent_decode("bad%zz").as_deref(), Some("bad%zz"));
    }
}
