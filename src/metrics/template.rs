//! Query templates: `{{version}}`, `{{previous_version}}`, `{{stage}}`, `{{weight}}`,
//! `{{deployment_id}}` and `{{window}}` (spaces inside the braces allowed). Any other
//! `{{name}}` is an error naming it.

/// The names a template may use.
pub(crate) const NAMES: &[&str] = &[
    "version",
    "previous_version",
    "stage",
    "weight",
    "deployment_id",
    "window",
];

/// The values of one evaluation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vars {
    pub(crate) version: String,
    pub(crate) previous_version: Option<String>,
    pub(crate) stage: String,
    pub(crate) weight: u8,
    pub(crate) deployment_id: String,
    /// A PromQL duration (`5m`, `30s`, `1500ms`).
    pub(crate) window: String,
}

impl Vars {
    fn get(&self, name: &str) -> Result<String, String> {
        Ok(match name {
            "version" => self.version.clone(),
            "previous_version" => self.previous_version.clone().ok_or_else(|| {
                "`{{previous_version}}` has no value: no previous version is known (pass `--previous-version`, input `previous-version`, or run `shipgate validate` first)".to_string()
            })?,
            "stage" => self.stage.clone(),
            "weight" => self.weight.to_string(),
            "deployment_id" => self.deployment_id.clone(),
            "window" => self.window.clone(),
            other => return Err(unknown(other)),
        })
    }
}

fn unknown(name: &str) -> String {
    format!(
        "unknown template variable `{{{{{name}}}}}`; use one of {}",
        NAMES
            .iter()
            .map(|n| format!("`{{{{{n}}}}}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Each `{{name}}` of `text`, in order, and the text around them.
fn pieces(text: &str) -> Vec<Result<&str, &str>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push(Ok(&rest[..start]));
        out.push(Err(rest[start + 2..start + 2 + len].trim()));
        rest = &rest[start + 2 + len + 2..];
    }
    out.push(Ok(rest));
    out
}

/// Checks that `text` uses only known names (before anything runs).
pub(crate) fn check(text: &str) -> Result<(), String> {
    for piece in pieces(text) {
        if let Err(name) = piece
            && !NAMES.contains(&name)
        {
            return Err(unknown(name));
        }
    }
    Ok(())
}

/// `text` with every `{{name}}` replaced by its value.
pub(crate) fn render(text: &str, vars: &Vars) -> Result<String, String> {
    render_with(text, vars, |value| value.to_string())
}

/// A URL template (a web metric's `url`) rendered with each value percent-encoded, so a value
/// never changes the URL's shape (its host, path or query parameters).
pub(crate) fn render_url(text: &str, vars: &Vars) -> Result<String, String> {
    render_with(text, vars, |value| {
        value
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    })
}

fn render_with(text: &str, vars: &Vars, encode: impl Fn(&str) -> String) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for piece in pieces(text) {
        match piece {
            Ok(literal) => out.push_str(literal),
            Err(name) => out.push_str(&encode(&vars.get(name)?)),
        }
    }
    Ok(out)
}

/// A duration as PromQL writes it: whole seconds as `30s`/`5m`/`2h`, else milliseconds.
pub(crate) fn promql_duration(duration: std::time::Duration) -> String {
    let ms = duration.as_millis();
    if !ms.is_multiple_of(1000) || ms == 0 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn vars() -> Vars {
        Vars {
            version: "1.4.0".into(),
            previous_version: Some("1.3.2".into()),
            stage: "canary".into(),
            weight: 5,
            deployment_id: "42-abcdef0".into(),
            window: "5m".into(),
        }
    }

    #[test]
    fn every_name_is_replaced() {
        let text = r#"rate(x{version="{{version}}",old="{{ previous_version }}",s="{{stage}}",w="{{weight}}",id="{{deployment_id}}"}[{{window}}])"#;
        check(text).expect("known names");
        assert_eq!(
            render(text, &vars()).expect("renders"),
            r#"rate(x{version="1.4.0",old="1.3.2",s="canary",w="5",id="42-abcdef0"}[5m])"#
        );
        assert_eq!(
            render("no braces {", &vars()).expect("plain"),
            "no braces {"
        );
        assert_eq!(
            render("a{{version}}b{{unclosed", &vars()).expect("unclosed"),
            "a1.4.0b{{unclosed"
        );
    }

    #[test]
    fn url_values_are_percent_encoded_and_never_change_the_url_shape() {
        let vars = Vars {
            version: "1.4.0+b/../x?y=1&z#@evil".into(),
            ..vars()
        };
        assert_eq!(
            render_url("https://api.example/q?v={{version}}&s={{stage}}", &vars).expect("renders"),
            "https://api.example/q?v=1.4.0%2Bb%2F..%2Fx%3Fy%3D1%26z%23%40evil&s=canary"
        );
    }

    #[test]
    fn unknown_names_and_missing_values_are_errors_naming_them() {
        let error = check("x{v=\"{{ verison }}\"}").expect_err("unknown");
        assert!(error.contains("`{{verison}}`"), "{error}");
        assert!(error.contains("`{{version}}`"), "{error}");
        assert_eq!(
            render("{{nope}}", &vars()).expect_err("unknown"),
            error.replace("verison", "nope")
        );
        let missing = Vars {
            previous_version: None,
            ..vars()
        };
        let error = render("{{previous_version}}", &missing).expect_err("no previous");
        assert!(
            error.contains("`{{previous_version}}` has no value"),
            "{error}"
        );
    }

    #[test]
    fn durations_in_promql_form() {
        assert_eq!(promql_duration(Duration::from_secs(300)), "5m");
        assert_eq!(promql_duration(Duration::from_secs(30)), "30s");
        assert_eq!(promql_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(promql_duration(Duration::from_millis(1500)), "1500ms");
    }
}
