//! Health responses, read the same way by `rollout` and `smoke`: the status code AND the body,
//! in the formats services actually use — IETF `application/health+json` (pass/warn/fail),
//! Spring Boot Actuator (UP/DOWN/OUT_OF_SERVICE/UNKNOWN), ASP.NET Core (Healthy/Degraded/
//! Unhealthy, JSON or plain text), `{"status":"healthy"}` — case-insensitively, or a custom JSON
//! pointer with accepted values. "warn"/"Degraded" is its own state, never a silent pass.

// Shared adapter whose commands land with the next issues (migrate, backup, rollout, smoke);
// remove this allowance once they use it.

use serde::{Deserialize, Serialize};

/// What one response says about the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    Healthy,
    Degraded,
    Unhealthy,
    /// The body said something this reader does not know (e.g. Spring's `UNKNOWN`).
    Unknown,
}

/// Which convention the body followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Format {
    /// `application/health+json`.
    Ietf,
    /// Spring Boot Actuator.
    Spring,
    /// ASP.NET Core (JSON writer or the default plain text).
    AspNet,
    /// `{"status": "healthy" | "ok" | "up" | …}`.
    Generic,
    /// The configured JSON pointer.
    Custom,
    /// No recognisable body: the status code decides.
    StatusCode,
}

/// How to read a body beyond the built-in formats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct Rule {
    /// A JSON pointer (`/data/state`) whose value decides.
    pub(crate) pointer: Option<String>,
    /// Values (case-insensitive) at `pointer` that mean healthy.
    #[serde(default)]
    pub(crate) accepted: Vec<String>,
}

/// The reading of one response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Reading {
    pub(crate) state: State,
    pub(crate) format: Format,
    /// `version` (or IETF `releaseId`, or Spring's `build.version`) when the body reports one.
    pub(crate) version: Option<String>,
    /// Why: the status code and the value that decided.
    pub(crate) detail: String,
}

/// Reads a response: `status` code, `content_type` header, `body`.
pub(crate) fn read(status: u16, content_type: Option<&str>, body: &[u8], rule: &Rule) -> Reading {
    let code_ok = (200..400).contains(&status);
    let text = String::from_utf8_lossy(body);
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let version = json.as_ref().and_then(version_of);

    if let Some(pointer) = &rule.pointer {
        let value = json
            .as_ref()
            .and_then(|j| j.pointer(pointer))
            .map(value_text);
        let state = match &value {
            Some(v) if code_ok && rule.accepted.iter().any(|a| a.eq_ignore_ascii_case(v)) => {
                State::Healthy
            }
            _ => State::Unhealthy,
        };
        let detail = match value {
            Some(v) => format!("HTTP {status}, `{pointer}` is `{v}`"),
            None => format!("HTTP {status}, `{pointer}` is missing"),
        };
        return Reading {
            state,
            format: Format::Custom,
            version,
            detail,
        };
    }

    let ietf =
        content_type.is_some_and(|c| c.to_ascii_lowercase().contains("application/health+json"));
    let status_value = json.as_ref().and_then(|j| j.get("status")).map(value_text);
    let (body_state, format, said) = match (&status_value, &json) {
        (Some(value), Some(json)) => {
            let (state, format) = classify(value, json, ietf);
            (Some(state), format, Some(value.clone()))
        }
        (None, _) => match plain_word(&text) {
            Some((state, word)) => (Some(state), Format::AspNet, Some(word)),
            None => (None, Format::StatusCode, None),
        },
        (Some(_), None) => (None, Format::StatusCode, None),
    };
    let state = match (body_state, code_ok) {
        // A 5xx with a "healthy" body is still a failure; a 2xx "fail" body is a failure too.
        (_, false) => State::Unhealthy,
        (Some(state), true) => state,
        (None, true) => State::Healthy,
    };
    let detail = match said {
        Some(word) => format!("HTTP {status}, status `{word}`"),
        None => format!("HTTP {status}"),
    };
    Reading {
        state,
        format,
        version,
        detail,
    }
}

fn classify(value: &str, json: &serde_json::Value, ietf: bool) -> (State, Format) {
    let lower = value.to_ascii_lowercase();
    let format = if ietf || matches!(lower.as_str(), "pass" | "warn" | "fail") {
        Format::Ietf
    } else if matches!(value, "UP" | "DOWN" | "OUT_OF_SERVICE" | "UNKNOWN")
        || json.get("components").is_some()
    {
        Format::Spring
    } else if matches!(value, "Healthy" | "Degraded" | "Unhealthy") || json.get("entries").is_some()
    {
        Format::AspNet
    } else {
        Format::Generic
    };
    let state = match lower.as_str() {
        "pass" | "ok" | "up" | "healthy" | "green" | "ready" | "alive" | "live" => State::Healthy,
        "warn" | "warning" | "degraded" | "yellow" => State::Degraded,
        "fail" | "error" | "down" | "out_of_service" | "unhealthy" | "red" | "critical" => {
            State::Unhealthy
        }
        _ => State::Unknown,
    };
    (state, format)
}

/// ASP.NET Core's default writer: the body is just `Healthy`, `Degraded` or `Unhealthy`.
fn plain_word(text: &str) -> Option<(State, String)> {
    let word = text.trim();
    let state = match word.to_ascii_lowercase().as_str() {
        "healthy" | "ok" | "up" | "pass" => State::Healthy,
        "degraded" | "warn" => State::Degraded,
        "unhealthy" | "down" | "fail" => State::Unhealthy,
        _ => return None,
    };
    Some((state, word.to_string()))
}

fn version_of(json: &serde_json::Value) -> Option<String> {
    [
        "/version",
        "/releaseId",
        "/build/version",
        "/app/version",
        "/info/version",
    ]
    .iter()
    .find_map(|p| json.pointer(p))
    .map(value_text)
    .filter(|v| !v.is_empty())
}

fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(status: u16, content_type: &str, text: &str) -> Reading {
        read(
            status,
            Some(content_type),
            text.as_bytes(),
            &Rule::default(),
        )
    }

    #[test]
    fn ietf_health_json() {
        let r = body(
            200,
            "application/health+json",
            r#"{"status":"pass","version":"1.4.0"}"#,
        );
        assert_eq!((r.state, r.format), (State::Healthy, Format::Ietf));
        assert_eq!(r.version.as_deref(), Some("1.4.0"));
        let warn = body(200, "application/health+json", r#"{"status":"WARN"}"#);
        assert_eq!(warn.state, State::Degraded);
        let fail = body(503, "application/health+json", r#"{"status":"fail"}"#);
        assert_eq!(fail.state, State::Unhealthy);
        let release = body(
            200,
            "application/health+json",
            r#"{"status":"ok","releaseId":"abc"}"#,
        );
        assert_eq!(release.version.as_deref(), Some("abc"));
    }

    #[test]
    fn spring_boot() {
        let up = body(
            200,
            "application/json",
            r#"{"status":"UP","components":{}}"#,
        );
        assert_eq!((up.state, up.format), (State::Healthy, Format::Spring));
        let oos = body(503, "application/json", r#"{"status":"OUT_OF_SERVICE"}"#);
        assert_eq!(oos.state, State::Unhealthy);
        let unknown = body(200, "application/json", r#"{"status":"UNKNOWN"}"#);
        assert_eq!(unknown.state, State::Unknown);
    }

    #[test]
    fn aspnet_core_plain_and_json() {
        let plain = body(200, "text/plain", "Healthy");
        assert_eq!(
            (plain.state, plain.format),
            (State::Healthy, Format::AspNet)
        );
        let degraded = body(200, "text/plain", "Degraded");
        assert_eq!(degraded.state, State::Degraded);
        let json = body(
            200,
            "application/json",
            r#"{"status":"Unhealthy","entries":{}}"#,
        );
        assert_eq!(
            (json.state, json.format),
            (State::Unhealthy, Format::AspNet)
        );
    }

    #[test]
    fn generic_status_and_codes() {
        let ok = body(
            200,
            "application/json",
            r#"{"status":"healthy","version":"2.0.0"}"#,
        );
        assert_eq!((ok.state, ok.format), (State::Healthy, Format::Generic));
        let lying = body(500, "application/json", r#"{"status":"healthy"}"#);
        assert_eq!(lying.state, State::Unhealthy);
        let bare = body(204, "text/plain", "");
        assert_eq!(
            (bare.state, bare.format),
            (State::Healthy, Format::StatusCode)
        );
        let broken = body(502, "text/html", "<html>Bad Gateway</html>");
        assert_eq!(broken.state, State::Unhealthy);
    }

    #[test]
    fn custom_pointer() {
        let rule = Rule {
            pointer: Some("/data/state".into()),
            accepted: vec!["serving".into()],
        };
        let ok = read(200, None, br#"{"data":{"state":"SERVING"}}"#, &rule);
        assert_eq!((ok.state, ok.format), (State::Healthy, Format::Custom));
        let missing = read(200, None, br#"{"data":{}}"#, &rule);
        assert_eq!(missing.state, State::Unhealthy);
        assert!(missing.detail.contains("missing"));
    }
}
