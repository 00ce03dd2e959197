//! Child processes, one way for every command: argv only (a shell only when the user asks for
//! one), each child in its own process group so a timeout or a cancelled workflow ends the whole
//! tree, output streamed live inside a `stop-commands` fence with secrets redacted, and kept in
//! a log file. Also the shutdown signal (SIGTERM/SIGINT) that every long command listens for.

// Shared adapter whose commands land with the next issues (migrate, backup, rollout, smoke);
// remove this allowance once they use it.

use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::error::{Classify, Kind};
use crate::secret::{Secret, redact};

/// Variables the runner gives shipgate that no child of a user's command may see.
const RUNNER_ONLY: &[&str] = &[
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_RESULTS_URL",
];

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
    /// Inherited variables the child must not see (e.g. `GITHUB_OUTPUT` for a nested shipgate).
    pub(crate) env_remove: Vec<String>,
    /// Secret environment values (never logged).
    pub(crate) secret_env: Vec<(String, Secret)>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) timeout: Option<Duration>,
    /// Kill the child's group when shipgate dies first (see [`Spec::die_with_shipgate`]).
    pub(crate) guard: Option<Guard>,
    /// The child is shipgate itself and reads the action inputs (see [`Spec::shipgate_child`]).
    pub(crate) inherit_inputs: bool,
}

/// What the guard process of [`Spec::die_with_shipgate`] keeps open until the group is dead,
/// and what it writes there before letting go of it.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    hold: Option<Arc<OwnedFd>>,
    farewell: Option<String>,
}

/// The guard: gets the child's process group id (`$0`) and a farewell text (`$1`), then blocks
/// on its stdin, a pipe whose only writer is shipgate. If the pipe reaches end-of-file first,
/// shipgate is gone (exit, crash, SIGKILL) while the group may still run: the guard kills the
/// group. If shipgate first writes a line, the group is over (its id may be reused: the guard
/// must not signal it any more), and the guard only waits for shipgate to go. Either way, once
/// shipgate is gone, the guard writes the farewell to the held descriptor (moved to fd 3; stdout
/// is closed so nothing else is ever written there) and exits, closing it. On the normal path
/// shipgate kills the guard, which then writes nothing.
const GUARD_SCRIPT: &str = "exec 3>&1 >/dev/null 2>&1; if read _done; then read _gone; else kill -KILL \"-$0\"; fi; printf '%s' \"$1\" >&3";

/// After a command's main process has exited: how long its pipes are still read (what it and
/// its children had written), first before looking for processes it left behind, then again
/// after stopping them.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

impl Spec {
    pub(crate) fn new(label: impl Into<String>, argv: Vec<String>) -> Spec {
        Spec {
            label: label.into(),
            argv,
            env: Vec::new(),
            env_remove: Vec::new(),
            secret_env: Vec::new(),
            cwd: None,
            timeout: None,
            guard: None,
            inherit_inputs: false,
        }
    }

    /// Marks the child as shipgate itself (a pipeline stage, the restore of a rollback): it
    /// keeps the action inputs and runner tokens every other child is denied.
    pub(crate) fn shipgate_child(mut self) -> Spec {
        self.inherit_inputs = true;
        self
    }

    /// `sh -c <script>`: only when the user asked for a shell.
    pub(crate) fn shell(label: impl Into<String>, script: &str) -> Spec {
        Spec::new(label, vec!["sh".into(), "-c".into(), script.to_string()])
    }

    pub(crate) fn env(mut self, key: &str, value: impl Into<String>) -> Spec {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Removes an inherited variable from the child's environment.
    pub(crate) fn env_remove(mut self, key: &str) -> Spec {
        self.env_remove.push(key.to_string());
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

    /// Makes the child's whole process group die with shipgate, even when shipgate is killed
    /// with SIGKILL (which no signal handler sees): a small guard process (`sh`, in a process
    /// group of its own) kills the group as soon as shipgate is gone. `hold`, when given, is
    /// kept open by the guard until the group is dead, e.g. [`crate::postgres::Session::keepalive`]
    /// so that a lock taken for the child outlives the child and is never released under it.
    ///
    /// `farewell`, when given, is written to `hold` by the guard once shipgate is gone (after
    /// the group is killed), before the guard lets go of it: e.g. SQL that a held `psql` session
    /// runs before it ends ([`crate::postgres::stop_sessions_script`]).
    pub(crate) fn die_with_shipgate(
        mut self,
        hold: Option<OwnedFd>,
        farewell: Option<String>,
    ) -> Spec {
        self.guard = Some(Guard {
            hold: hold.map(Arc::new),
            farewell,
        });
        self
    }

    /// The command for logs: argv redacted, never the environment.
    pub(crate) fn display(&self) -> String {
        redact(&self.argv.join(" "))
    }

    /// The command. A user's command (a hook, a migration tool, a probe) never inherits what the
    /// runner gave shipgate alone: the action inputs (`INPUT_*`, the GitHub token among them) and
    /// the runtime and OIDC tokens; whatever it needs is passed on purpose (`env`, `secret_env`).
    /// Only shipgate's own children ([`Spec::shipgate_child`]) keep them.
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
        if !self.inherit_inputs {
            for (key, _) in std::env::vars_os() {
                let name = key.to_string_lossy();
                if name.starts_with("INPUT_") || RUNNER_ONLY.contains(&name.as_ref()) {
                    command.env_remove(&key);
                }
            }
        }
        for key in &self.env_remove {
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
    /// After the main process exited, processes it had started were still running (in its
    /// process group, or holding its output open); [`Finished::warning`] says which and what
    /// became of them. The command is still judged by its own exit status.
    pub(crate) left_processes: bool,
    /// What was left behind and what shipgate did about it, one line.
    #[serde(skip)]
    pub(crate) warning: Option<String>,
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
                crate::ui::format_duration(Duration::from_millis(self.duration_ms))
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
        use std::os::unix::fs::OpenOptionsExt as _;
        let log_error = |e: std::io::Error| ProcessError::Log {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(log_error)?;
        }
        // Never through a link: a log placed as a symlink to a file elsewhere would have shipgate
        // append to that file.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(nix::libc::ELOOP) {
                    ProcessError::Log {
                        path: path.to_path_buf(),
                        reason: "it is a symbolic link; shipgate writes its logs only into real files: remove the link".into(),
                    }
                } else {
                    log_error(e)
                }
            })?;
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
/// `log`), killed as a group at its timeout or when `cancel` resolves. Judged by its main
/// process's exit status: once it has exited, what it left running in its process group is
/// stopped and its output is read only for a bounded time (see [`run_guarded`]).
pub(crate) async fn run_logged(
    spec: &Spec,
    log: Option<&mut LogFile>,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<Finished, ProcessError> {
    let (finished, guard) = run_guarded(spec, log, cancel).await?;
    if let Some(guard) = guard {
        guard.dismiss().await;
    }
    Ok(finished)
}

/// The guard process of [`Spec::die_with_shipgate`] after the command has ended: it no longer
/// signals the command's group, keeps holding its descriptor, and writes its farewell there if
/// shipgate dies before [`GuardProcess::dismiss`].
pub(crate) struct GuardProcess {
    child: Child,
    stdin: Option<tokio::process::ChildStdin>,
}

impl GuardProcess {
    /// Tells the guard the group is over: from now on it only waits for shipgate to go.
    async fn group_done(&mut self) {
        use tokio::io::AsyncWriteExt as _;
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(b"done\n").await;
            let _ = stdin.flush().await;
        }
    }

    /// Ends the guard without its farewell: shipgate did (or no longer needs) what it would do.
    pub(crate) async fn dismiss(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A process a command left running after its main process exited.
#[derive(Debug)]
struct Leftover {
    pid: Option<i32>,
    name: Option<String>,
    /// It holds the command's stdout or stderr open.
    holds_output: bool,
}

impl Leftover {
    fn describe(&self) -> String {
        let mut text = match (self.pid, &self.name) {
            (Some(pid), Some(name)) => format!("pid {pid} {}", crate::actions::quote(name)),
            (Some(pid), None) => format!("pid {pid}"),
            _ => "processes of its group".to_string(),
        };
        if self.holds_output {
            text.push_str(", holding its output");
        }
        text
    }
}

/// The live members (zombies aside) of process group `group`, read from `/proc`; each says
/// whether it holds one of `pipes` (the command's output pipes, as `pipe:[<inode>]`) open. Without
/// `/proc`, a signal 0 to the group tells whether anything is left.
fn group_members(group: i32, pipes: &[String]) -> Vec<Leftover> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return if killpg(Pid::from_raw(group), None).is_ok() {
            vec![Leftover {
                pid: None,
                name: None,
                holds_output: false,
            }]
        } else {
            Vec::new()
        };
    };
    let mut members = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(state), Some(pgrp)) = (fields.first(), fields.get(2)) else {
            continue;
        };
        if *pgrp != group.to_string() || matches!(*state, "Z" | "X" | "x") {
            continue;
        }
        let name = head.split_once('(').map(|(_, name)| name.to_string());
        let holds_output = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|target| {
                        pipes.iter().any(|pipe| target.as_os_str() == pipe.as_str())
                    })
                })
            })
            .unwrap_or(false);
        members.push(Leftover {
            pid: Some(pid),
            name,
            holds_output,
        });
    }
    members
}

/// SIGTERM to what is left of a group whose leader has exited, SIGKILL after the grace period.
async fn stop_leftovers(group: i32) {
    let pgid = Pid::from_raw(group);
    let _ = killpg(pgid, Signal::SIGTERM);
    let grace = crate::util::retry_delay(KILL_GRACE).max(Duration::from_millis(200));
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if group_members(group, &[]).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = killpg(pgid, Signal::SIGKILL);
}

/// One line of a child's output: redacted, shown inside the fence, logged, kept for the tail.
fn take_line(line: &str, is_err: bool, log: Option<&mut LogFile>, tail: &mut Vec<String>) {
    let line = redact(line);
    crate::actions::emit(&format!("  {line}"));
    if let Some(log) = log {
        log.line(&format!(
            "[{}] {line}",
            if is_err { "stderr" } else { "stdout" }
        ));
    }
    tail.push(line);
    if tail.len() > TAIL_LINES {
        tail.remove(0);
    }
}

/// [`run_logged`], handing back the guard of [`Spec::die_with_shipgate`] (when the spec has one)
/// still alive, so that it keeps its descriptor (e.g. a lock connection) and acts if shipgate
/// dies before the caller is done; the caller ends it with [`GuardProcess::dismiss`].
///
/// The command is over when its main process exits, whatever its children do: its output is
/// then read for at most [`DRAIN_AFTER_EXIT`] (what was already written), anything still
/// running in its process group is stopped (SIGTERM, then SIGKILL after the grace period), the
/// pipes are read again for at most as long, then closed. What was left behind is said in the
/// log, on stderr and in [`Finished::warning`].
pub(crate) async fn run_guarded(
    spec: &Spec,
    mut log: Option<&mut LogFile>,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<(Finished, Option<GuardProcess>), ProcessError> {
    let started = Instant::now();
    let mut child = spec.spawn_piped()?;
    let pid = child.id();
    let mut guard = match &spec.guard {
        Some(guard) => match spawn_guard(guard, pid) {
            Ok(mut process) => Some(GuardProcess {
                stdin: process.stdin.take(),
                child: process,
            }),
            Err(e) => {
                terminate_group(pid, &mut child).await;
                return Err(e);
            }
        },
        None => None,
    };
    if let Some(log) = log.as_deref_mut() {
        log.line(&format!(
            "[{}] $ {}",
            crate::util::now_rfc3339(),
            spec.display()
        ));
    }
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let pipes: Vec<String> = [
        stdout.as_ref().and_then(|s| nix::sys::stat::fstat(s).ok()),
        stderr.as_ref().and_then(|s| nix::sys::stat::fstat(s).ok()),
    ]
    .into_iter()
    .flatten()
    .map(|stat| format!("pipe:[{}]", stat.st_ino))
    .collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, String)>();
    let mut readers = Vec::new();
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
            readers.push(tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send((is_err, line)).is_err() {
                        break;
                    }
                }
            }));
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
    // Judged by the exit of the main process, not by the end of its output: a background child
    // may hold the pipes open for as long as it likes.
    let status = loop {
        tokio::select! {
            line = rx.recv(), if streams_open => match line {
                Some((is_err, line)) => take_line(&line, is_err, log.as_deref_mut(), &mut tail),
                None => streams_open = false,
            },
            status = child.wait() => break status,
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
    let mut drain = async |log: &mut Option<&mut LogFile>, tail: &mut Vec<String>| {
        let until = tokio::time::Instant::now() + DRAIN_AFTER_EXIT;
        while streams_open {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some((is_err, line))) => take_line(&line, is_err, log.as_deref_mut(), tail),
                Ok(None) => streams_open = false,
                Err(_) => break,
            }
        }
    };
    drain(&mut log, &mut tail).await;
    let left = pid.map_or_else(Vec::new, |pid| group_members(pid as i32, &pipes));
    if let (Some(pid), false) = (pid, left.is_empty()) {
        stop_leftovers(pid as i32).await;
        drain(&mut log, &mut tail).await;
    }
    // Still open: a process outside the group (`setsid`) holds the output; stop reading it.
    let held_outside = streams_open;
    for reader in &readers {
        reader.abort();
    }
    drop(fence);
    if let Some(guard) = guard.as_mut() {
        // The group is done: the guard must not signal it any more (a reused id could be
        // another's), but keeps what it holds until it is dismissed or shipgate is gone.
        guard.group_done().await;
    }
    let status = status.map_err(|e| ProcessError::Spawn {
        program: spec.argv[0].clone(),
        reason: e.to_string(),
    })?;
    use std::os::unix::process::ExitStatusExt as _;
    let mut finished = Finished {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out,
        cancelled,
        duration_ms: started.elapsed().as_millis() as u64,
        left_processes: !left.is_empty() || held_outside,
        warning: None,
        tail,
    };
    if finished.left_processes {
        let mut parts = Vec::new();
        if !left.is_empty() {
            let count = left.iter().filter(|l| l.pid.is_some()).count();
            let what = match count {
                0 => "processes".to_string(),
                1 => "1 process".to_string(),
                n => format!("{n} processes"),
            };
            parts.push(format!(
                "left {what} behind ({}); shipgate stopped {} (SIGTERM; SIGKILL if still running after {})",
                left.iter()
                    .map(Leftover::describe)
                    .collect::<Vec<_>>()
                    .join("; "),
                if count == 1 { "it" } else { "them" },
                crate::ui::format_duration(
                    crate::util::retry_delay(KILL_GRACE).max(Duration::from_millis(200))
                )
            ));
        }
        if held_outside {
            parts.push(
                "a process outside its process group still holds its output open; shipgate stopped reading it and left that process alone"
                    .to_string(),
            );
        }
        let warning = format!(
            "{} ended ({}) but {}: a command must wait for what it starts, or start what must outlive it with `setsid`, its output redirected",
            spec.label,
            finished.describe(),
            parts.join("; ")
        );
        if let Some(log) = log.as_deref_mut() {
            log.line(&format!(
                "[{}] warning: {warning}",
                crate::util::now_rfc3339()
            ));
        }
        crate::actions::annotate(crate::actions::Level::Warning, Some("shipgate"), &warning);
        finished.warning = Some(warning);
    }
    if let Some(log) = log {
        log.line(&format!(
            "[{}] {} {} after {}",
            crate::util::now_rfc3339(),
            spec.label,
            finished.describe(),
            crate::ui::format_duration(started.elapsed())
        ));
    }
    Ok((finished, guard))
}

/// Runs a trusted child (shipgate itself) with stdout/stderr inherited, so its workflow commands
/// (masks, groups, annotations) reach the runner unfenced. When `cancel` resolves the child's
/// group gets SIGTERM and is waited for without a deadline: a rollout that is rolling back must
/// be allowed to finish.
pub(crate) async fn run_inherited(
    spec: &Spec,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<Finished, ProcessError> {
    let started = Instant::now();
    let mut command = spec.command()?;
    command.stdout(Stdio::inherit()).stderr(Stdio::inherit());
    let mut child = command.spawn().map_err(|e| spawn_error(&spec.argv[0], e))?;
    let pid = child.id();
    tokio::pin!(cancel);
    let mut cancelled = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = &mut cancel, if !cancelled => {
                cancelled = true;
                if let Some(pid) = pid {
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGTERM);
                }
            }
        }
    };
    let status = status.map_err(|e| ProcessError::Spawn {
        program: spec.argv[0].clone(),
        reason: e.to_string(),
    })?;
    use std::os::unix::process::ExitStatusExt as _;
    Ok(Finished {
        exit_code: status.code(),
        signal: status.signal(),
        timed_out: false,
        cancelled,
        duration_ms: started.elapsed().as_millis() as u64,
        left_processes: false,
        warning: None,
        tail: Vec::new(),
    })
}

/// Starts the guard of [`Spec::die_with_shipgate`] for the group led by `pid`.
fn spawn_guard(guard: &Guard, pid: Option<u32>) -> Result<Child, ProcessError> {
    let Some(pid) = pid else {
        return Err(ProcessError::Spawn {
            program: "sh".into(),
            reason: "the child has no process id to guard".into(),
        });
    };
    let stdout = match &guard.hold {
        Some(fd) => fd
            .try_clone()
            .map(Stdio::from)
            .map_err(|e| ProcessError::Spawn {
                program: "sh".into(),
                reason: format!("cannot pass the guarded descriptor: {e}"),
            })?,
        None => Stdio::null(),
    };
    let mut command = Command::new("sh");
    command
        .args(["-c", GUARD_SCRIPT])
        .arg(pid.to_string())
        .arg(guard.farewell.as_deref().unwrap_or(""))
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::null())
        // Its own group: a signal to shipgate's group must not take the guard with it.
        .process_group(0)
        .kill_on_drop(true);
    command.spawn().map_err(|e| spawn_error("sh", e))
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

/// Runs `spec` quietly: output is collected (redacted, capped at `limit` bytes per stream), not
/// streamed; the group is killed at the spec's timeout or when `cancel` resolves. For frequent,
/// short commands (health probes) whose output is data, not a log.
pub(crate) async fn run_quiet(
    spec: &Spec,
    limit: usize,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<(Finished, String), ProcessError> {
    use tokio::io::AsyncReadExt as _;
    let started = Instant::now();
    let mut child = spec.spawn_piped()?;
    let pid = child.id();
    let read_capped = |stream: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| async move {
        let mut kept = Vec::new();
        if let Some(mut stream) = stream {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        kept
    };
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>);
    let out_task = tokio::spawn(read_capped(stdout));
    let err_task = tokio::spawn(read_capped(stderr));
    let deadline = async {
        match spec.timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    let (mut timed_out, mut cancelled) = (false, false);
    let status = tokio::select! {
        status = child.wait() => status,
        _ = deadline => {
            timed_out = true;
            terminate_group(pid, &mut child).await;
            child.wait().await
        }
        _ = cancel => {
            cancelled = true;
            terminate_group(pid, &mut child).await;
            child.wait().await
        }
    };
    let status = status.map_err(|e| ProcessError::Spawn {
        program: spec.argv[0].clone(),
        reason: e.to_string(),
    })?;
    // A background grandchild would hold the pipes open: the group ends with its leader.
    if let Some(pid) = pid {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    // One that left the group (`setsid`) could hold them forever: read for a bounded time.
    let collect = async |mut task: tokio::task::JoinHandle<Vec<u8>>| match tokio::time::timeout(
        DRAIN_AFTER_EXIT,
        &mut task,
    )
    .await
    {
        Ok(kept) => kept.unwrap_or_default(),
        Err(_) => {
            task.abort();
            Vec::new()
        }
    };
    let stdout = collect(out_task).await;
    let stderr = collect(err_task).await;
    let tail = redact(&String::from_utf8_lossy(&stderr))
        .lines()
        .rev()
        .take(TAIL_LINES)
        .map(str::to_string)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    use std::os::unix::process::ExitStatusExt as _;
    Ok((
        Finished {
            exit_code: status.code(),
            signal: status.signal(),
            timed_out,
            cancelled,
            duration_ms: started.elapsed().as_millis() as u64,
            left_processes: false,
            warning: None,
            tail,
        },
        redact(&String::from_utf8_lossy(&stdout)),
    ))
}

/// Splits a command line written in a flag, an input or `shipgate.yml` into argv, the way a
/// POSIX shell splits words — whitespace separates, `'…'` is literal, `"…"` allows `\"` and
/// `\\`, a backslash outside quotes escapes the next character — without any expansion.
/// Characters only a shell gives meaning to (`|`, `&`, `;`, `<`, `>`, `(`, `)`, `$`, `` ` ``,
/// `*`, `?`, a leading `~`) are refused, so that a line written for a shell is never silently
/// run as something else; [`Spec::shell`] is there when a shell is wanted.
pub(crate) fn split_command(line: &str) -> Result<Vec<String>, String> {
    let quoted = crate::actions::quote(line);
    let fail = |reason: String| Err(format!("{quoted} {reason}"));
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return fail("has an unclosed `'`".to_string()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return fail("has an unclosed `\"`".to_string()),
                        },
                        Some(c @ ('$' | '`')) => {
                            return fail(format!(
                                "uses `{c}` inside double quotes, which only a shell expands; run it through a shell (`--shell`, `shell: true`, `hook-shell: true`) or use single quotes"
                            ));
                        }
                        Some(c) => word.push(c),
                        None => return fail("has an unclosed `\"`".to_string()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return fail("ends with a lone `\\`".to_string()),
                }
            }
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' | '*' | '?' => {
                return fail(format!(
                    "uses `{c}`, which only a shell understands; run it through a shell (`--shell`, `shell: true`, `hook-shell: true`) or quote it"
                ));
            }
            '~' if !in_word => {
                return fail(
                    "starts a word with `~`, which only a shell expands; write the full path or run it through a shell"
                        .to_string(),
                );
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("the command is empty".to_string());
    }
    Ok(words)
}

/// The process-wide SIGTERM/SIGINT listener for long commands: the handlers are installed when
/// [`Shutdown::listen`] returns (not at the first poll), so a signal that arrives at any later
/// moment is seen, and clones share one state.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown {
    received: tokio::sync::watch::Receiver<Option<&'static str>>,
}

impl Shutdown {
    /// Installs the handlers now; a background task records the first signal.
    pub(crate) fn listen() -> Shutdown {
        use tokio::signal::unix::{SignalKind, signal};
        let (tx, received) = tokio::sync::watch::channel(None);
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::spawn(async move {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    tracing::warn!("received {name}: stopping");
                    let _ = tx.send(Some(name));
                    // Keep the handlers installed (and the sender alive) for the rest of the run,
                    // so a second signal does not kill shipgate halfway through its cleanup.
                    loop {
                        tokio::select! {
                            _ = term.recv() => tracing::warn!("received SIGTERM again: still cleaning up"),
                            _ = int.recv() => tracing::warn!("received SIGINT again: still cleaning up"),
                        }
                    }
                });
            }
            _ => {
                tracing::warn!(
                    "cannot install signal handlers; SIGTERM will stop shipgate at once"
                );
                std::mem::forget(tx);
            }
        }
        Shutdown { received }
    }

    /// A listener that never fires (for work that must not be interrupted, e.g. a rollback).
    pub(crate) fn never() -> Shutdown {
        let (tx, received) = tokio::sync::watch::channel(None);
        std::mem::forget(tx);
        Shutdown { received }
    }

    /// The signal received so far, if any (`SIGTERM`, `SIGINT`).
    pub(crate) fn received(&self) -> Option<&'static str> {
        *self.received.borrow()
    }

    /// Resolves once a signal has been received (at once if one already was).
    pub(crate) async fn wait(&self) {
        let mut received = self.received.clone();
        if received.wait_for(Option::is_some).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Like [`Shutdown::wait`], and says which signal it was (`SIGTERM`, `SIGINT`).
    pub(crate) async fn recv(&self) -> &'static str {
        self.wait().await;
        self.received().unwrap_or("SIGTERM")
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

    /// Whether `pid` still runs code (a zombie nobody reaps does not).
    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| !matches!(state, "Z" | "X"))
        })
    }

    #[tokio::test]
    async fn a_command_is_over_when_its_main_process_exits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut log = LogFile::append(&dir.path().join("run.log")).expect("log");
        for (script, holds_output) in [
            // The background child keeps stdout and stderr open.
            ("echo before; sleep 1000 & echo $! > {pid}; exit 0", true),
            // This one does not, but is left running all the same.
            (
                "echo before; sleep 1000 >/dev/null 2>&1 & echo $! > {pid}; exit 0",
                false,
            ),
        ] {
            let pid_file = dir.path().join("pid");
            let script = script.replace("{pid}", &pid_file.display().to_string());
            let spec = Spec::shell("test", &script);
            let finished = run_logged(&spec, Some(&mut log), std::future::pending())
                .await
                .expect("runs");
            let pid: i32 = std::fs::read_to_string(&pid_file)
                .expect("pid")
                .trim()
                .parse()
                .expect("a pid");
            assert!(finished.success(), "{finished:?}");
            assert_eq!(finished.exit_code, Some(0));
            assert!(finished.left_processes, "{finished:?}");
            assert_eq!(finished.tail, vec!["before".to_string()]);
            let warning = finished.warning.clone().expect("a warning");
            assert!(
                warning.contains(&format!("left 1 process behind (pid {pid} `sleep`")),
                "{warning}"
            );
            assert_eq!(
                warning.contains("holding its output"),
                holds_output,
                "{warning}"
            );
            assert!(!alive(pid), "the leftover `sleep` ({pid}) was not stopped");
        }
        let text = std::fs::read_to_string(log.path()).expect("log text");
        assert!(
            text.contains("warning: test ended (exit code 0) but left 1 process behind"),
            "{text}"
        );

        // A command that waits for its children leaves nothing and no warning.
        let spec = Spec::shell("test", "sleep 0.1 & wait; echo done");
        let finished = run_logged(&spec, None, std::future::pending())
            .await
            .expect("runs");
        assert!(
            finished.success() && !finished.left_processes,
            "{finished:?}"
        );
        assert_eq!(finished.warning, None);
        assert_eq!(finished.tail, vec!["done".to_string()]);
    }

    #[tokio::test]
    async fn a_missing_program_is_not_found() {
        let spec = Spec::new("test", vec!["shipgate-no-such-program".into()]);
        let error = run_logged(&spec, None, std::future::pending())
            .await
            .expect_err("missing");
        assert!(matches!(error, ProcessError::NotFound { .. }));
    }

    #[test]
    fn command_lines_split_like_a_shell_without_expansion() {
        assert_eq!(
            split_command(r#"./shift.sh --weight "5 %" 'a b' c\ d '$HOME'"#),
            Ok(vec![
                "./shift.sh".to_string(),
                "--weight".into(),
                "5 %".into(),
                "a b".into(),
                "c d".into(),
                "$HOME".into()
            ])
        );
        assert!(split_command("shift.sh $HOME").is_err());
        assert!(split_command("shift.sh | tee log").is_err());
        assert_eq!(
            split_command(r#"say "q\"uote""#).ok(),
            Some(vec!["say".to_string(), "q\"uote".into()])
        );
        assert_eq!(
            split_command("x ''").ok(),
            Some(vec!["x".to_string(), String::new()])
        );
        assert!(split_command("  ").is_err());
        assert!(split_command("echo 'open").is_err());
    }

    #[tokio::test]
    async fn quiet_runs_collect_output_and_time_out() {
        let spec = Spec::shell("probe", "echo '{\"status\":\"ok\"}'; echo oops >&2; exit 4");
        let (finished, stdout) = run_quiet(&spec, 1024, std::future::pending())
            .await
            .expect("runs");
        assert_eq!(finished.exit_code, Some(4));
        assert_eq!(stdout.trim(), "{\"status\":\"ok\"}");
        assert_eq!(finished.tail, vec!["oops".to_string()]);
        let slow = Spec::shell("probe", "sleep 30").timeout(Some(Duration::from_millis(200)));
        let (finished, _) = run_quiet(&slow, 1024, std::future::pending())
            .await
            .expect("runs");
        assert!(finished.timed_out && !finished.success());
    }

    #[test]
    fn migration_commands_split_without_a_shell() {
        assert_eq!(
            split_command("npx prisma migrate deploy").expect("words"),
            ["npx", "prisma", "migrate", "deploy"]
        );
        assert_eq!(
            split_command(r#"migrate -path 'db/my migrations' -database "x\"y" a\ b ''"#)
                .expect("words"),
            [
                "migrate",
                "-path",
                "db/my migrations",
                "-database",
                "x\"y",
                "a b",
                ""
            ]
        );
        assert!(split_command("make migrate && echo ok").is_err());
        assert!(split_command("migrate $DATABASE_URL").is_err());
        assert!(split_command("migrate \"$DATABASE_URL\"").is_err());
        assert!(split_command("migrate 'unclosed").is_err());
        assert!(split_command("ls ~/x").is_err());
        assert_eq!(split_command("a=~b").expect("words"), ["a=~b"]);
    }
}
