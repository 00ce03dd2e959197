//! Logs and progress on stderr through `tracing`, as plain lines a person reads (`warning: …`),
//! every line redacted before it is written. `SHIPGATE_LOG` (an `EnvFilter`) or `-v` adjusts the
//! level.

use std::io::Write;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

pub(crate) fn init(verbose: u8) {
    let default = match verbose {
        0 => "shipgate=info,warn,aws_config=error",
        1 => "shipgate=debug,warn",
        _ => "shipgate=trace,info",
    };
    let filter = std::env::var("SHIPGATE_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .event_format(Plain)
        .with_writer(RedactingStderr)
        .try_init();
}

struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let prefix = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            Level::INFO => "",
            Level::DEBUG => "debug: ",
            Level::TRACE => "trace: ",
        };
        write!(writer, "{prefix}")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Buffers one event and writes it to stderr, redacted, in a single call.
struct RedactingStderr;

struct Line(Vec<u8>);

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Self::Writer {
        Line(Vec::new())
    }
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = crate::secret::redact(&String::from_utf8_lossy(&self.0));
        crate::ui::stderr_lines(text.as_bytes());
    }
}
