//! One module per subcommand; this one dispatches and reports the outcome the same way for all.

pub(crate) mod backup;
pub(crate) mod drill;
pub(crate) mod gate;
pub(crate) mod lease;
pub(crate) mod migrate;
pub(crate) mod notify;
pub(crate) mod pipeline;
pub(crate) mod record;
pub(crate) mod restore;
pub(crate) mod rollback;
pub(crate) mod rollout;
pub(crate) mod smoke;
pub(crate) mod validate;
pub(crate) mod watch;

use serde_json::json;

use crate::actions::{self, Level};
use crate::error::{Error, Kind, Result};
use crate::settings::Format;
use crate::ui::mark::FAIL;

/// What a command produced: its result object (for `--format json` and the state dir) and its
/// exit code (a command may finish its work and still report a gate that said no).
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) json: serde_json::Value,
    pub(crate) status: crate::exit::Status,
    /// What a listing command prints on stdout without `--format json` (a table).
    pub(crate) text: Option<String>,
}

impl Outcome {
    pub(crate) fn success(json: serde_json::Value) -> Self {
        Outcome {
            json,
            status: crate::exit::Status::Success,
            text: None,
        }
    }

    /// A listing: the table for people, the JSON for `--format json`.
    pub(crate) fn listing(json: serde_json::Value, text: String) -> Self {
        Outcome {
            text: Some(text),
            ..Outcome::success(json)
        }
    }
}

/// Reports a command's result — the JSON object on stdout when asked, or the failure — and
/// returns the process exit code.
pub(crate) fn report(name: &str, result: Result<Outcome>, format: Format) -> u8 {
    status(name, result, format).code()
}

fn status(name: &str, result: Result<Outcome>, format: Format) -> crate::exit::Status {
    match result {
        Ok(outcome) => {
            if format == Format::Json {
                print_json(&outcome.json);
            } else if let Some(text) = &outcome.text {
                print_text(text);
            }
            outcome.status
        }
        Err(error) => {
            report_failure(name, &error, format);
            error.kind().status()
        }
    }
}

/// The one place a failure is reported: annotation (or `error:` line) with its causes, the
/// `result` output, a summary block, and the JSON error object on stdout when asked.
fn report_failure(command: &str, error: &Error, format: Format) {
    let message = error.message();
    let causes = error.causes();
    let mut full = message.clone();
    for cause in &causes {
        full.push_str(&format!("\n  Caused by: {cause}"));
    }
    actions::annotate_at(
        Level::Error,
        Some(&format!("shipgate {command}")),
        error.location(),
        &full,
    );
    let _ = actions::set_output("result", "fail");
    let heading = match error.kind() {
        Kind::Gate => "said no",
        Kind::Usage => "was given bad input",
        Kind::Dependency => "could not reach a dependency",
        Kind::Timeout => "timed out",
        Kind::RollbackFailed => "could not roll back",
    };
    let mut summary = format!("### {FAIL} `shipgate {command}` {heading}\n\n{message}\n");
    for cause in &causes {
        summary.push_str(&format!("\n- Caused by: {cause}"));
    }
    let _ = actions::append_summary(&summary);
    if format == Format::Json {
        print_json(&json!({
            "command": command,
            "result": "fail",
            "error": {
                "kind": format!("{:?}", error.kind()).to_lowercase(),
                "exit_code": error.kind().exit_code(),
                "message": message,
                "causes": causes,
            }
        }));
    }
}

/// stdout is data only: these two are the only places that write to it.
fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".to_string());
    print_text(&text);
}

#[allow(clippy::print_stdout)]
fn print_text(text: &str) {
    crate::ui::end_progress();
    println!("{}", crate::secret::redact(text.trim_end()));
}

/// Sets every `(key, value)` output, stopping at the first that cannot be written.
pub(crate) fn set_outputs(outputs: &[(&str, String)]) -> Result<()> {
    for (key, value) in outputs {
        actions::set_output(key, value)?;
    }
    Ok(())
}
