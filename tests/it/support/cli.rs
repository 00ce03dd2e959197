//! Runs the real `shipgate` binary with a scrubbed environment (no stray `GITHUB_*`,
//! `ACTIONS_*`, `RUNNER_*`, `CI`) and, for simulated Actions runs, temp `GITHUB_OUTPUT`,
//! `GITHUB_ENV`, `GITHUB_STEP_SUMMARY` and `GITHUB_EVENT_PATH` files read back by the runner's
//! own parsing rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

pub use super::file_commands::parse_file_commands;

/// A prepared invocation of `shipgate`.
pub struct Shipgate {
    command: Command,
    files: Option<ActionsFiles>,
    workdir: PathBuf,
}

/// The runner's file-command files for one simulated step.
pub struct ActionsFiles {
    dir: TempDir,
}

impl ActionsFiles {
    pub fn output(&self) -> PathBuf {
        self.dir.path().join("output")
    }
    pub fn env(&self) -> PathBuf {
        self.dir.path().join("env")
    }
    pub fn summary(&self) -> PathBuf {
        self.dir.path().join("summary.md")
    }
    pub fn event(&self) -> PathBuf {
        self.dir.path().join("event.json")
    }
}

/// What one run produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// `GITHUB_OUTPUT` parsed by the runner's rules (empty outside Actions).
    pub outputs: BTreeMap<String, String>,
    /// `GITHUB_ENV` parsed by the runner's rules.
    pub env: BTreeMap<String, String>,
    pub summary: String,
    /// Raw file-command files, for secret searches.
    pub raw_output_file: String,
    pub raw_env_file: String,
}

impl Run {
    /// stderr as a person reads it in the job log: the runner consumes `::add-mask::` lines
    /// (they are how secrets get masked) and shows everything else.
    pub fn visible_stderr(&self) -> String {
        self.stderr
            .lines()
            .filter(|line| !line.trim_start().starts_with("::add-mask::"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every stream and file this run produced, for leak searches (`::add-mask::` lines aside).
    pub fn everything(&self) -> Vec<(String, String)> {
        vec![
            ("stdout".into(), self.stdout.clone()),
            ("stderr".into(), self.visible_stderr()),
            ("GITHUB_OUTPUT".into(), self.raw_output_file.clone()),
            ("GITHUB_ENV".into(), self.raw_env_file.clone()),
            ("GITHUB_STEP_SUMMARY".into(), self.summary.clone()),
        ]
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// Panics with both streams when the exit code is not `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit code {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

impl Shipgate {
    /// `shipgate` run in `workdir` with only PATH, HOME and a fast retry scale.
    pub fn new(workdir: &Path) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shipgate"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", workdir)
            .env("LANG", "C.UTF-8")
            .env("SHIPGATE_RETRY_SCALE", "0.001")
            .current_dir(workdir);
        Shipgate {
            command,
            files: None,
            workdir: workdir.to_path_buf(),
        }
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(&mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> &mut Self {
        self.command.env(key, value);
        self
    }

    /// An action input as the runner sets it: `INPUT_<NAME>`, hyphens kept.
    pub fn input(&mut self, name: &str, value: &str) -> &mut Self {
        let var = format!("INPUT_{}", name.replace(' ', "_").to_uppercase());
        self.command.env(var, value);
        self
    }

    /// Simulates a GitHub Actions step: `GITHUB_ACTIONS=true`, `CI=true` and fresh file-command
    /// files; `GITHUB_EVENT_PATH` holds `{}` unless [`Shipgate::event`] replaces it.
    pub fn actions(&mut self) -> &mut Self {
        let files = ActionsFiles {
            dir: tempfile::tempdir().expect("temp dir for runner files"),
        };
        std::fs::write(files.event(), "{}").expect("event file");
        self.command
            .env("GITHUB_ACTIONS", "true")
            .env("CI", "true")
            .env("GITHUB_OUTPUT", files.output())
            .env("GITHUB_ENV", files.env())
            .env("GITHUB_STEP_SUMMARY", files.summary())
            .env("GITHUB_EVENT_PATH", files.event())
            .env("GITHUB_WORKSPACE", &self.workdir);
        self.files = Some(files);
        self
    }

    /// Writes the event payload (`GITHUB_EVENT_PATH`) and sets `GITHUB_EVENT_NAME`.
    pub fn event(&mut self, name: &str, payload: &serde_json::Value) -> &mut Self {
        if self.files.is_none() {
            self.actions();
        }
        let files = self.files.as_ref().expect("actions files");
        std::fs::write(files.event(), payload.to_string()).expect("event file");
        self.command.env("GITHUB_EVENT_NAME", name);
        self
    }

    pub fn run(&mut self) -> Run {
        let output = self.command.output().expect("run shipgate");
        collect(
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
            self.files.as_ref(),
        )
    }

    /// Runs `shipgate` on a pseudo-terminal, as from an interactive shell (`script` from
    /// util-linux gives it one): `stdout` holds what the terminal received, stdout and stderr
    /// together, with the terminal's `\r\n` line ends; `stderr` is empty.
    pub fn run_in_terminal(&mut self) -> Run {
        let quote =
            |arg: &std::ffi::OsStr| format!("'{}'", arg.to_string_lossy().replace('\'', r"'\''"));
        // `script` runs the line with a shell, which drops variables whose names are not shell
        // names (`INPUT_DEPLOYMENT-ID`): `env` sets them all from its arguments instead.
        let mut line = "exec env -i".to_string();
        for (key, value) in self.command.get_envs() {
            if let Some(value) = value {
                let mut pair = key.to_os_string();
                pair.push("=");
                pair.push(value);
                line.push(' ');
                line.push_str(&quote(&pair));
            }
        }
        line.push(' ');
        line.push_str(&quote(self.command.get_program()));
        for arg in self.command.get_args() {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        let mut script = Command::new("script");
        script
            .args(["--quiet", "--return", "--command", &line, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(std::process::Stdio::null());
        if let Some(dir) = self.command.get_current_dir() {
            script.current_dir(dir);
        }
        let output = script.output().expect("run shipgate under `script`");
        collect(
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
            self.files.as_ref(),
        )
    }

    /// Starts `shipgate` without waiting for it (stdout and stderr go to files), for tests that
    /// act while it runs: send it a signal, approve a paused stage.
    pub fn spawn(&mut self) -> Running {
        let streams = tempfile::tempdir().expect("temp dir for streams");
        let stdout = std::fs::File::create(streams.path().join("stdout")).expect("stdout file");
        let stderr = std::fs::File::create(streams.path().join("stderr")).expect("stderr file");
        let child = self
            .command
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn shipgate");
        Running {
            child,
            files: self.files.take(),
            streams,
        }
    }
}

/// A `shipgate` started by [`Shipgate::spawn`].
pub struct Running {
    child: std::process::Child,
    files: Option<ActionsFiles>,
    streams: TempDir,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.streams.path().join("stderr")).unwrap_or_default()
    }

    /// Has it exited yet?
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGKILL: shipgate gets no chance to clean up.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill shipgate");
    }

    /// Waits for the end (at most ten minutes) and collects the run.
    pub fn wait(self) -> Run {
        self.wait_at_most(std::time::Duration::from_secs(600))
    }

    /// Waits (at most `limit`, then kills it and panics) and collects the run.
    pub fn wait_at_most(mut self, limit: std::time::Duration) -> Run {
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for shipgate") {
                break status;
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "shipgate did not exit within {limit:?}\n--- stderr\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let stdout =
            std::fs::read_to_string(self.streams.path().join("stdout")).unwrap_or_default();
        collect(
            status.code().unwrap_or(-1),
            stdout,
            self.stderr(),
            self.files.as_ref(),
        )
    }
}

fn collect(code: i32, stdout: String, stderr: String, files: Option<&ActionsFiles>) -> Run {
    let read = |path: Option<PathBuf>| {
        path.and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    let raw_output_file = read(files.map(ActionsFiles::output));
    let raw_env_file = read(files.map(ActionsFiles::env));
    let summary = read(files.map(ActionsFiles::summary));
    Run {
        code,
        stdout,
        stderr,
        outputs: parse_file_commands(&raw_output_file)
            .unwrap_or_else(|e| panic!("GITHUB_OUTPUT rejected by the runner's rules: {e}")),
        env: parse_file_commands(&raw_env_file)
            .unwrap_or_else(|e| panic!("GITHUB_ENV rejected by the runner's rules: {e}")),
        summary,
        raw_output_file,
        raw_env_file,
    }
}

/// Every file under `dir` (recursively) as text, for leak searches.
pub fn read_tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(read_tree(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    out
}

/// The forms a secret can leak in: as is, percent-encoded and percent-decoded.
pub fn secret_forms(secret: &str) -> Vec<String> {
    let encoded: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut forms = vec![secret.to_string(), encoded.clone(), encoded.to_lowercase()];
    if let Ok(decoded) = urlencoding_decode(secret) {
        forms.push(decoded);
    }
    forms.sort();
    forms.dedup();
    forms.retain(|f| f.len() >= 3);
    forms
}

fn urlencoding_decode(text: &str) -> Result<String, ()> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// Panics naming the place when any form of `secret` appears in any of `places`.
pub fn assert_no_secret<'a>(secret: &str, places: impl IntoIterator<Item = (String, &'a str)>) {
    let forms = secret_forms(secret);
    for (name, text) in places {
        for form in &forms {
            assert!(
                !text.contains(form.as_str()),
                "secret form `{form}` leaked into {name}:\n{text}"
            );
        }
    }
}
