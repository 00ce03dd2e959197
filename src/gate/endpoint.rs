//! The JSON endpoint gate (seed 002 "no active Sev-1/Sev-2 incidents", seed 000 "unresolved P0
//! incident"): a status page or an incident tool's API, one value read by a JSON path and judged
//! by a condition — `$.status.indicator` `== "none"`, `$.incidents` `== 0` (an array counts
//! its items), `/meta/open_sev1` `< 1`. The path is smoke's (`metrics::json_path`). The request goes through the metrics client (auth from a
//! secret, headers, retries on 5xx/429 and dropped connections, then exit 3).

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::metrics::condition::{Condition, number_text};
use crate::metrics::json_path::Path;
use crate::metrics::prometheus::Client;
use crate::state::gate::{PreflightRow, PreflightVerdict};
use crate::text::one_line;

/// One entry of `gate.endpoints` in shipgate.yml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct EndpointConfig {
    /// What it is, for the row: `status page`, `open incidents`.
    pub(crate) name: Option<String>,
    /// `https://status.example.com/api/v2/status.json` (a query string is kept).
    pub(crate) url: Option<String>,
    /// Where the value is in the answer: `$.status.indicator` or `/status/indicator`.
    pub(crate) path: Option<String>,
    /// `== "none"`, `!= "major"`, `== 0`, `< 1`, `== false`.
    pub(crate) condition: Option<String>,
    pub(crate) auth: Option<crate::rollout::config::AuthConfig>,
    pub(crate) headers: Option<std::collections::BTreeMap<String, String>>,
    pub(crate) timeout: Option<crate::util::HumanDuration>,
}

/// What the value must be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expect {
    /// A number compared with a bound (an array counts as its length, a numeric string as its
    /// number).
    Number(Condition),
    /// Equal to this JSON value (a string, `true`/`false`, `null`).
    Equals(Value),
    NotEquals(Value),
}

impl std::str::FromStr for Expect {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let trimmed = text.trim();
        let rest = trimmed
            .strip_prefix("value")
            .map_or(trimmed, str::trim_start);
        let literal = |after: &str| match serde_json::from_str::<Value>(after.trim()) {
            Ok(v @ (Value::String(_) | Value::Bool(_) | Value::Null | Value::Number(_))) => Some(v),
            _ => None,
        };
        if let Some(after) = rest.strip_prefix("!=") {
            return literal(after).map(Expect::NotEquals).ok_or_else(|| {
                format!(
                    "`{}` is not a condition: `!=` takes a JSON value, such as `!= \"major\"` or `!= 0`",
                    one_line(trimmed)
                )
            });
        }
        if let Some(after) = rest.strip_prefix("==")
            && let Some(v @ (Value::String(_) | Value::Bool(_) | Value::Null)) = literal(after)
        {
            return Ok(Expect::Equals(v));
        }
        let condition: Condition = trimmed.parse().map_err(|e: String| {
            format!("{e}, or `== \"text\"` / `!= \"text\"` for a string, `== true` for a flag")
        })?;
        if condition.needs_baseline() {
            return Err(format!(
                "`{}` compares with a baseline, which an endpoint does not have; write a number",
                one_line(trimmed)
            ));
        }
        Ok(Expect::Number(condition))
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Number(c) => write!(f, "{c}"),
            Expect::Equals(v) => write!(f, "== {v}"),
            Expect::NotEquals(v) => write!(f, "!= {v}"),
        }
    }
}

/// A number for a numeric condition: a number, a numeric string, or an array's length.
fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        Value::Array(items) => Some(items.len() as f64),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (as_number(a), b) {
        (Some(x), Value::Number(n)) if !a.is_array() => n.as_f64() == Some(x),
        _ => a == b,
    }
}

impl Expect {
    /// Whether `value` meets it; `Err` says why it cannot be judged.
    pub(crate) fn holds(&self, value: &Value) -> std::result::Result<bool, String> {
        match self {
            Expect::Number(condition) => {
                let n = as_number(value).ok_or_else(|| {
                    format!(
                        "the value {} is not a number (nor an array to count)",
                        shown(value)
                    )
                })?;
                Ok(condition.holds(n, None).unwrap_or(false))
            }
            Expect::Equals(expected) => Ok(equal(value, expected)),
            Expect::NotEquals(unwanted) => Ok(!equal(value, unwanted)),
        }
    }
}

/// A value as a row shows it: an array as its item count, anything else as JSON, cut short.
fn shown(value: &Value) -> String {
    match value {
        Value::Array(items) => format!("{} item(s)", items.len()),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), number_text),
        other => crate::text::truncate(&one_line(&other.to_string()), 120),
    }
}

/// One endpoint gate, resolved.
pub(crate) struct EndpointGate {
    pub(crate) name: String,
    pub(crate) client: Client,
    /// The URL's query, sent as it was written.
    pub(crate) params: Vec<(String, String)>,
    pub(crate) path: Path,
    pub(crate) expect: Expect,
    /// The URL for messages, credentials redacted.
    pub(crate) shown_url: String,
}

impl EndpointGate {
    /// Resolves entry `index` of `gate.endpoints`; every mistake is a usage error naming it.
    pub(crate) fn resolve(index: usize, config: &EndpointConfig) -> Result<EndpointGate> {
        let name = config
            .name
            .clone()
            .map(|n| one_line(n.trim()))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("endpoint {}", index + 1));
        let what = format!("`gate.endpoints` entry `{name}`");
        let need = |key: &str, value: &Option<String>| {
            value.clone().filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                Error::usage(format!(
                    "{what} has no `{key}`; an endpoint gate needs `url`, `path` and `condition`"
                ))
            })
        };
        let url_text = need("url", &config.url)?;
        let path = need("path", &config.path)?;
        let path =
            Path::parse(path.trim()).map_err(|e| Error::usage(format!("{what}: `path`: {e}")))?;
        let expect = need("condition", &config.condition)?
            .parse::<Expect>()
            .map_err(|e| Error::usage(format!("{what}: `condition`: {e}")))?;
        let shown_url = crate::secret::redact_url(url_text.trim());
        let mut url = url::Url::parse(url_text.trim()).map_err(|e| {
            Error::usage(format!(
                "{what}: `url` `{shown_url}` is not a URL ({e}); write it like `https://status.example.com/api/v2/status.json`"
            ))
        })?;
        let params: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        url.set_fragment(None);
        let client = crate::rollout::metric::client(
            &what,
            "the endpoint",
            Some(&url.to_string()),
            config.auth.as_ref(),
            config.headers.as_ref(),
            config.timeout,
            &Default::default(),
        )?;
        Ok(EndpointGate {
            name,
            client,
            params,
            path,
            expect,
            shown_url,
        })
    }

    /// Asks the endpoint and judges its value. Unreachable or 5xx after retries, or a 4xx: an
    /// error (exit 3), never a pass; an answer without the value: a refusal naming the path.
    pub(crate) async fn row(&self) -> Result<PreflightRow> {
        let params: Vec<(&str, &str)> = self
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let answer = self.client.get("", &params).await.map_err(|e| {
            Error::dependency(format!(
                "the endpoint gate `{}` could not read `{}`: {e}",
                self.name, self.shown_url
            ))
        })?;
        let judged = self
            .path
            .find(&answer)
            .ok_or_else(|| format!("the answer has no `{}`", self.path))
            .and_then(|value| self.expect.holds(value).map(|ok| (ok, shown(value))));
        let (verdict, reason, measured) = match judged {
            Ok((true, value)) => (
                PreflightVerdict::Pass,
                format!(
                    "`{}` at `{}` is {value}, which meets `{}`",
                    self.path, self.name, self.expect
                ),
                Some(value),
            ),
            Ok((false, value)) => (
                PreflightVerdict::Fail,
                format!(
                    "`{}` at `{}` is {value}, which does not meet `{}` ({})",
                    self.path, self.name, self.expect, self.shown_url
                ),
                Some(value),
            ),
            Err(why) => (
                PreflightVerdict::Fail,
                format!(
                    "`{}` cannot be judged: {why} (path `{}`, condition `{}`, {})",
                    self.name, self.path, self.expect, self.shown_url
                ),
                None,
            ),
        };
        Ok(PreflightRow {
            gate: format!("endpoint: {}", self.name),
            verdict,
            reason,
            measured,
            links: vec![self.shown_url.clone()],
            override_by: None,
            override_reason: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect(text: &str) -> Expect {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn strings_flags_and_numbers() {
        assert_eq!(expect("== \"none\"").holds(&json!("none")), Ok(true));
        assert_eq!(expect("== \"none\"").holds(&json!("major")), Ok(false));
        assert_eq!(
            expect("value != \"major\"").holds(&json!("minor")),
            Ok(true)
        );
        assert_eq!(expect("== false").holds(&json!(false)), Ok(true));
        assert_eq!(expect("== 0").holds(&json!(0)), Ok(true));
        assert_eq!(expect("== 0").holds(&json!("0")), Ok(true));
        assert_eq!(expect("== 0").holds(&json!([])), Ok(true));
        assert_eq!(expect("== 0").holds(&json!([{"id": 1}])), Ok(false));
        assert_eq!(expect("< 2").holds(&json!(1.5)), Ok(true));
        assert_eq!(expect("!= 0").holds(&json!(0)), Ok(false));
        assert!(expect("< 2").holds(&json!({"a": 1})).is_err());
        assert!(expect("< 2").holds(&json!(null)).is_err());
        assert_eq!(expect("== \"none\"").to_string(), "== \"none\"");
        assert_eq!(expect("<  1").to_string(), "< 1");
    }

    #[test]
    fn bad_conditions_name_themselves() {
        for (text, why) in [
            ("is none", "is not a condition"),
            ("!= major", "`!=` takes a JSON value"),
            ("<= 2 * baseline", "an endpoint does not have"),
        ] {
            let error = text.parse::<Expect>().expect_err(text);
            assert!(error.contains(why), "{text}: {error}");
        }
    }
}
