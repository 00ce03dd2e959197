//! Firing alerts: Prometheus's `GET /api/v1/alerts` or Alertmanager's `GET /api/v2/alerts`,
//! filtered by a PromQL-style selector such as `severity=~"critical|warning", service="api"`
//! (`=`, `!=`, `=~`, `!~`; regexes anchored at both ends as in PromQL; a label an alert does not
//! have is the empty string). Only firing alerts count: Prometheus's `firing` (not `pending`),
//! Alertmanager's `active` (not silenced or inhibited).

use std::collections::BTreeMap;
use std::fmt;

use regex_lite::Regex;
use serde_json::Value;

use super::Error;
use super::prometheus::Client;
use crate::text::one_line;

/// Which API lists the alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Api {
    #[default]
    Prometheus,
    Alertmanager,
}

impl Api {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Api::Prometheus => "Prometheus",
            Api::Alertmanager => "Alertmanager",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    Matches,
    NotMatches,
}

#[derive(Debug, Clone)]
struct Matcher {
    label: String,
    op: Op,
    value: String,
    regex: Option<Regex>,
}

impl Matcher {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let actual = labels.get(&self.label).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (Op::Equal, _) => actual == self.value,
            (Op::NotEqual, _) => actual != self.value,
            (Op::Matches, Some(re)) => re.is_match(actual),
            (Op::NotMatches, Some(re)) => !re.is_match(actual),
            (_, None) => false,
        }
    }
}

/// A label selector; empty matches every alert.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selector {
    matchers: Vec<Matcher>,
}

const EXAMPLE: &str = r#"`severity=~"critical|warning", service="api"`"#;

impl std::str::FromStr for Selector {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let whole = text.trim();
        let bad = |why: &str| {
            format!(
                "alert selector `{}` is not valid: {why}; write it like {EXAMPLE}",
                one_line(whole)
            )
        };
        let mut rest = whole;
        if let Some(inner) = rest.strip_prefix('{') {
            rest = inner
                .strip_suffix('}')
                .ok_or_else(|| bad("`{` without `}`"))?;
        }
        let mut matchers = Vec::new();
        let mut chars = rest.trim();
        while !chars.is_empty() {
            let name_len = chars
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(chars.len());
            let label = &chars[..name_len];
            if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(bad("a label name is expected"));
            }
            chars = chars[name_len..].trim_start();
            let (op, after) = [
                ("=~", Op::Matches),
                ("!~", Op::NotMatches),
                ("!=", Op::NotEqual),
                ("=", Op::Equal),
            ]
            .iter()
            .find_map(|(symbol, op)| chars.strip_prefix(symbol).map(|r| (*op, r)))
            .ok_or_else(|| {
                bad(&format!(
                    "an operator (`=`, `!=`, `=~`, `!~`) after `{label}`"
                ))
            })?;
            chars = after.trim_start();
            let (value, after) = quoted(chars)
                .ok_or_else(|| bad(&format!("the value of `{label}` must be quoted")))?;
            let regex = match op {
                Op::Matches | Op::NotMatches => Some(
                    Regex::new(&format!("^(?:{value})$"))
                        .map_err(|e| bad(&format!("`{value}` is not a regex ({e})")))?,
                ),
                _ => None,
            };
            matchers.push(Matcher {
                label: label.to_string(),
                op,
                value,
                regex,
            });
            chars = after.trim_start();
            if let Some(after) = chars.strip_prefix(',') {
                chars = after.trim_start();
            } else if !chars.is_empty() {
                return Err(bad("matchers are separated by `,`"));
            }
        }
        Ok(Selector { matchers })
    }
}

/// A double-, single- or back-quoted string at the start of `text` (`\"`, `\\`, `\n` escapes
/// in double and single quotes), and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let quote = text
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '\'' | '`'))?;
    let mut out = String::new();
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        if escaped {
            out.push(match c {
                'n' => '\n',
                't' => '\t',
                other => other,
            });
            escaped = false;
        } else if c == '\\' && quote != '`' {
            escaped = true;
        } else if c == quote {
            return Some((out, &text[i + 1..]));
        } else {
            out.push(c);
        }
    }
    None
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .matchers
            .iter()
            .map(|m| {
                let op = match m.op {
                    Op::Equal => "=",
                    Op::NotEqual => "!=",
                    Op::Matches => "=~",
                    Op::NotMatches => "!~",
                };
                format!("{}{op}{:?}", m.label, m.value)
            })
            .collect();
        write!(f, "{{{}}}", parts.join(", "))
    }
}

impl Selector {
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// A firing alert.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Alert {
    pub(crate) labels: BTreeMap<String, String>,
    /// Since when (as the backend wrote it), if said.
    pub(crate) since: Option<String>,
}

impl Alert {
    /// `HighErrorRate{service="api", severity="critical"}`.
    pub(crate) fn describe(&self) -> String {
        let name = self.labels.get("alertname").map_or("alert", String::as_str);
        let others: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "alertname")
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        one_line(&format!("{name}{{{}}}", others.join(", ")))
    }
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The firing alerts of an API's answer that `selector` matches.
pub(crate) fn firing_in(api: Api, json: &Value, selector: &Selector) -> Option<Vec<Alert>> {
    let list = match api {
        Api::Prometheus => json.get("data")?.get("alerts")?.as_array()?,
        Api::Alertmanager => json.as_array()?,
    };
    Some(
        list.iter()
            .filter(|alert| match api {
                Api::Prometheus => alert.get("state").and_then(Value::as_str) == Some("firing"),
                Api::Alertmanager => {
                    alert
                        .get("status")
                        .and_then(|s| s.get("state"))
                        .and_then(Value::as_str)
                        == Some("active")
                }
            })
            .map(|alert| Alert {
                labels: string_map(alert.get("labels")),
                since: alert
                    .get(match api {
                        Api::Prometheus => "activeAt",
                        Api::Alertmanager => "startsAt",
                    })
                    .and_then(Value::as_str)
                    .map(one_line),
            })
            .filter(|alert| selector.matches(&alert.labels))
            .collect(),
    )
}

/// The firing alerts `selector` matches, from `client`'s backend.
pub(crate) async fn firing(
    client: &Client,
    api: Api,
    selector: &Selector,
) -> Result<Vec<Alert>, Error> {
    let json = match api {
        Api::Prometheus => client.get("/api/v1/alerts", &[]).await?,
        Api::Alertmanager => {
            client
                .get(
                    "/api/v2/alerts",
                    &[
                        ("active", "true"),
                        ("silenced", "false"),
                        ("inhibited", "false"),
                    ],
                )
                .await?
        }
    };
    firing_in(api, &json, selector).ok_or_else(|| Error::Malformed {
        backend: client.label().to_string(),
        detail: format!("not a list of alerts as {}'s API writes it", api.name()),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selector(text: &str) -> Selector {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn matchers_follow_promql() {
        let s = selector(r#"severity=~"critical|warning", service="api""#);
        assert!(s.matches(&labels(&[("severity", "critical"), ("service", "api")])));
        assert!(s.matches(&labels(&[("severity", "warning"), ("service", "api")])));
        // Anchored: `critical` does not match `critical-ish`.
        assert!(!s.matches(&labels(&[("severity", "critical-ish"), ("service", "api")])));
        assert!(!s.matches(&labels(&[("severity", "info"), ("service", "api")])));
        assert!(!s.matches(&labels(&[("severity", "critical")])));
        let s = selector(r#"{team!="db", env!~"dev|staging", page=~".*"}"#);
        assert!(s.matches(&labels(&[("team", "web"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("team", "db"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("team", "web"), ("env", "dev")])));
        // A missing label is "": `=""` matches it, `!=""` does not.
        assert!(selector(r#"x="""#).matches(&labels(&[])));
        assert!(!selector(r#"x!="""#).matches(&labels(&[])));
        assert!(selector("").matches(&labels(&[("any", "thing")])));
        assert_eq!(
            selector(r#"a = 'b\'c' ,b=~`x|y`"#).to_string(),
            r#"{a="b'c", b=~"x|y"}"#
        );
    }

    #[test]
    fn bad_selectors_name_the_value() {
        for text in [
            "severity",
            r#"severity=critical"#,
            r#"severity=~"(""#,
            r#"a="b" b="c""#,
            r#"{a="b""#,
            r#"1a="b""#,
            r#"a=="b""#,
        ] {
            let error = text.parse::<Selector>().expect_err(text);
            assert!(error.contains("alert selector `"), "{error}");
            assert!(error.contains(r#"service="api""#), "{error}");
        }
    }

    #[test]
    fn only_firing_alerts_count() {
        let s = selector(r#"severity=~"critical|warning""#);
        let prometheus = json!({"status": "success", "data": {"alerts": [
            {"labels": {"alertname": "HighErrorRate", "severity": "critical"}, "state": "firing", "activeAt": "2026-01-01T00:00:00Z"},
            {"labels": {"alertname": "Slow", "severity": "warning"}, "state": "pending"},
            {"labels": {"alertname": "Info", "severity": "info"}, "state": "firing"},
        ]}});
        let firing = firing_in(Api::Prometheus, &prometheus, &s).expect("a list");
        assert_eq!(firing.len(), 1);
        assert_eq!(
            firing[0].describe(),
            r#"HighErrorRate{severity="critical"}"#
        );
        let alertmanager = json!([
            {"labels": {"alertname": "A", "severity": "warning"}, "status": {"state": "active"}},
            {"labels": {"alertname": "B", "severity": "critical"}, "status": {"state": "suppressed"}},
        ]);
        let firing = firing_in(Api::Alertmanager, &alertmanager, &s).expect("a list");
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].labels["alertname"], "A");
        assert!(firing_in(Api::Alertmanager, &prometheus, &s).is_none());
    }
}
