//! Child processes, one way for every command: argv only (a shell only when the user asks for
//! one), each child in its own process group so a timeout or a cancelled workflow ends the whole
//! tree, output streamed live inside a `stop-commands` fence with secrets redacted, and kept in
//! a log file. Also the shutdown signal (SIGTERM/SIGINT) that every long command listens for.

// Shared adapter whose commands land with the next issues (migrate, backup, rollout, smoke);
// remove this allowance once they use it.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::error::{Classify, Kind};
use crate::secret::{Secret, redact};

/// How long a process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Lines of output kept for error messages.
const TAIL_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProcessError {
    #[error("command `{program}` not found; check the command and PATH")]
    NotFound { program: String },
    #[error("cannot start `{program}`: {reason}")]
    Spawn { program: String, reason: String },
    #[error("cannot write the log `{}`: {reason}", path.display())]
    Log { path: PathBuf, reason: String },
}

impl Classify for ProcessError {
    fn kind(&self) -> Kind {
        match self {
            ProcessError::NotFound { .. } => Kind::Usage,
            _ => Kind::Dependency,
        }
    }
}

/// A command to run.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// Shown in logs, e.g. `migrate` or `stage hook canary`.
    pub(crate) label: String,
    pub(crate) argv: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    /// Secret environment values (never logged).
    pub(crate) secret_env: Vec<(String, Secret)>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) timeout: Option<Duration>,
    /// Inherited environment variables the child must not see (e.g. a stray `PGPASSFILE`).
    pub(crate) remove_env: Vec<String>,
}

impl Spec {
    pub(crate) fn new(label: impl Into<String>, argv: Vec<String>) -> Spec {
        Spec {
            label: label.into(),
            argv,
            env: Vec::new(),
            secret_env: Vec::new(),
            cwd: None,
            timeout: None,
            remove_env: Vec::new(),
        }
    }

    /// `sh -c <script>`: only when the user asked for a shell.
    pub(crate) fn shell(label: impl Into<String>, script: &str) -> Spec {
        Spec::new(label, vec!["sh".into(), "-c".into(), script.to_string()])
    }

    pub(crate) fn env(mut self, key: &str, value: impl Into<String>) -> Spec {
        self.env.push((key.to_string(), value.into()));
        self
    }

    pub(crate) fn secret_env(mut self, key: &str, value: &Secret) -> Spec {
        self.secret_env.push((key.to_string(), value.clone()));
        self
    }

    pub(crate) fn timeout(mut self, timeout: Option<Duration>) -> Spec {
        self.timeout = timeout;
        self
    }

    /// Removes `key` from the environment the child inherits.
    pub(crate) fn remove_env(mut self, key: &str) -> Spec {
        self.remove_env.push(key.to_string());
        self
    }

    /// The command for logs: argv redacted, never the environment.
    pub(crate) fn display(&self) -> String {
        redact(&self.argv.join(" "))
    }

    fn command(&self) -> Result<Command, ProcessError> {
        let program = self.argv.first().ok_or_else(|| ProcessError::Spawn {
            program: String::new(),
            reason: "the command is empty".into(),
        })?;
        let mut command = Command::new(program);
        command
            .args(&self.argv[1..])
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        for key in &self.remove_env {
            command.env_remove(key);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        for (key, value) in &self.secret_env {
            command.env(key, value.expose());
        }
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        Ok(command)
    }

    /// Spawns with stdout and stderr piped, for callers that read them themselves (pg_dump).
    pub(crate) fn spawn_piped(&self) -> Result<Child, ProcessError> {
        let mut command = self.command()?;
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command.spawn().map_err(|e| spawn_error(&self.argv[0], e))
    }

    /// Spawns with stdin, stdout and stderr piped, for callers that feed the child themselves
    /// (psql or pg_restore reading a dump).
    pub(crate) fn spawn_piped_stdin(&self) -> Result<Child, ProcessError> {
        let mut command = self.command()?;
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn().map_err(|e| spawn_error(&self.argv[0], e))
    }
}

fn spawn_error(program: &str, error: std::io::Error) -> ProcessError {
    if error.kind() == std::io::ErrorKind::NotFound {
        ProcessError::NotFound {
            program: program.to_string(),
        }
    } else {
        ProcessError::Spawn {
            program: program.to_string(),
            reason: error.to_string(),
        }
    }
}

/// How a child ended.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Finished {
    pub(crate) exit_code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) timed_out: bool,
    pub(crate) cancelled: bool,
    pub(crate) duration_ms: u64,
    /// The last lines of output, redacted.
    #[serde(skip)]
    pub(crate) tail: Vec<String>,
}

impl Finished {
    pub(crate) fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.cancelled
    }

    /// `exit code 3`, `killed by signal 9`, `timed out after 30s`.
    pub(crate) fn describe(&self) -> String {
        if self.timed_out {
            return format!(
                "timed out after {} and was killed",
                crate::util::format_duration(Duration::from_millis(self.duration_ms))
            );
        }
        if self.cancelled {
            return "was stopped because shipgate was cancelled".to_string();
        }
        match (self.exit_code, self.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => "ended without a status".to_string(),
        }
    }
}

/// An append-only log file; every line is redacted before it is written.
pub(crate) struct LogFile {
    path: PathBuf,
    file: std::fs::File,
}

impl LogFile {
    pub(crate) fn append(path: &Path) -> Result<LogFile, ProcessError> {
        let log_error = |e: std::io::Error| ProcessError::Log {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(log_error)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(log_error)?;
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn line(&mut self, text: &str) {
        let _ = writeln!(self.file, "{}", redact(text));
    }
}

/// A log file shared by the tasks of one command.
pub(crate) type SharedLog = std::sync::Arc<std::sync::Mutex<LogFile>>;

/// Reads `stream` line by line until it closes: each line redacted, written to `log` as
/// `[<label>] line` and, when `echo`, shown on stderr as `[<label>] line` (one escaped line, so
/// the child can never issue a workflow command). Resolves to the last lines, for error
/// messages.
pub(crate) fn tail_lines<R>(
    stream: R,
    label: &str,
    log: Option<SharedLog>,
    echo: bool,
) -> tokio::task::JoinHandle<Vec<String>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let label = label.to_string();
    tokio::spawn(async move {
        let mut tail: Vec<String> = Vec::new();
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = crate::actions::one_line(&line);
            if echo {
                crate::actions::emit(&format!("[{label}] {line}"));
            }
            if let Some(log) = &log
                && let Ok(mut log) = log.lock()
            {
                log.line(&format!(
                    "[{}] [{label}] {line}",
                    crate::util::now_rfc3339()
                ));
            }
            tail.push(line);
            if tail.len() > TAIL_LINES {
                tail.remove(0);
            }
        }
        tail
    })
}

/// Runs `spec` to the end: output streamed to stderr inside a stop-commands fence (and into
/// `log`), killed as a group at its timeout or when `cancel` resolves.
pub(crate) async fn run_logged(
    spec: &Spec,
    mut log: Option<&mut LogFile>,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<Finished, ProcessError> {
    let started = Instant::now();
    let mut child = spec.spawn_piped()?;
    let pid = child.id();
    if let Some(log) = log.as_deref_mut() {
        log.line(&format!(
            "[{}] $ {}",
            crate::util::now_rfc3339(),
            spec.display()
        ));
    }
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, String)>();
    for (is_err, stream) in [
        (
            false,
            stdout.map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ),
        (
            true,
            stderr.map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ),
    ] {
        if let Some(stream) = stream {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send((is_err, line)).is_err() {
                        break;
                    }
                }
            });
        }
    }
    drop(tx);

    let fence = crate::actions::fence();
    let mut tail: Vec<String> = Vec::new();
    let mut timed_out = false;
    let mut cancelled = false;
    let deadline = spec.timeout.map(|t| tokio::time::Instant::now() + t);
    let sleep_until_deadline = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep_until_deadline);
    tokio::pin!(cancel);
    let mut streams_open = true;
    let status = loop {
        tokio::select! {
            line = rx.recv(), if streams_open => match line {
                Some((is_err, line)) => {
                    let line = redact(&line);
                    crate::actions::emit(&format!("  {line}"));
                    if let Some(log) = log.as_deref_mut() {
                        log.line(&format!("[{}] {line}", if is_err { "stderr" } else { "stdout" }));
                    }
                    tail.push(line);
                    if tail.len() > TAIL_LINES {
                        tail.remove(0);
                    }
                }
                None => streams_open = false,
            },
            status = child.wait(), if !streams_open => break status,
            _ = &mut sleep_until_deadline, if !timed_out && !cancelled => {
                timed_out = true;
                terminate_group(pid, &mut child).await;
            }
            _ = &mut cancel, if !timed_out && !cancelled => {
                cancelled = true;
                terminate_group(pid, &mut child).await;
            }
        }
    };
    drop(fence);
    let status = status.map_err(|e| ProcessError::Spawn {
        program: spec.argv[0].clone(),
        reason: e.to_string(),
    })?;
    use std::os::unix::process::ExitStatusExt as _;
    let finished = Finished {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        cancelled,
        duration_ms: started.elapsed().as_millis() as u64,
        tail,
    };
    if let Some(log) = log {
        log.line(&format!(
            "[{}] {} {} after {}",
            crate::util::now_rfc3339(),
            spec.label,
            finished.describe(),
            crate::util::format_duration(started.elapsed())
        ));
    }
    Ok(finished)
}

/// SIGTERM to the whole process group, then SIGKILL after the grace period.
pub(crate) async fn terminate_group(pid: Option<u32>, child: &mut Child) {
    let Some(pid) = pid else {
        return;
    };
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let grace = crate::util::retry_delay(KILL_GRACE).max(Duration::from_millis(200));
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = killpg(group, Signal::SIGKILL);
    }
    // Whatever the leader did, make sure no member of the group outlives us.
    let _ = killpg(group, Signal::SIGKILL);
}

/// SIGTERM/SIGINT handlers installed as soon as this is created (unlike [`shutdown_signal`],
/// which installs them when first polled): create it before starting work that must be cleaned
/// up, so a signal arriving at any moment afterwards is caught rather than killing shipgate.
pub(crate) struct Shutdown {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    pub(crate) fn listen() -> Shutdown {
        use tokio::signal::unix::{SignalKind, signal};
        Shutdown {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// Resolves on the first SIGTERM or SIGINT and returns its name.
    pub(crate) async fn recv(&mut self) -> &'static str {
        let term = async {
            match self.term.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let int = async {
            match self.int.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term => "SIGTERM",
            _ = int => "SIGINT",
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT (a cancelled workflow, Ctrl-C).
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::warn!("received SIGTERM: stopping"),
        _ = int.recv() => tracing::warn!("received SIGINT: stopping"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn timeouts_kill_the_whole_group() {
        let dir = tempfile::tempdir().expect("temp dir");
        let marker = dir.path().join("grandchild-survived");
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let spec = Spec::shell("test", &script).timeout(Some(Duration::from_millis(300)));
        let finished = run_logged(&spec, None, std::future::pending())
            .await
            .expect("runs");
        assert!(finished.timed_out);
        assert!(!finished.success());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the background grandchild was not killed");
    }

    #[tokio::test]
    async fn output_is_kept_and_status_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut log = LogFile::append(&dir.path().join("run.log")).expect("log");
        let spec = Spec::new(
            "test",
            vec![
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ],
        );
        let finished = run_logged(&spec, Some(&mut log), std::future::pending())
            .await
            .expect("runs");
        assert_eq!(finished.exit_code, Some(3));
        assert_eq!(finished.describe(), "exit code 3");
        let text = std::fs::read_to_string(log.path()).expect("log text");
        assert!(text.contains("[stdout] out"), "{text}");
        assert!(text.contains("[stderr] err"), "{text}");
    }

    #[tokio::test]
    async fn a_missing_program_is_not_found() {
        let spec = Spec::new("test", vec!["shipgate-no-such-program".into()]);
        let error = run_logged(&spec, None, std::future::pending())
            .await
            .expect_err("missing");
        assert!(matches!(error, ProcessError::NotFound { .. }));
    }
}
