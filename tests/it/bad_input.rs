//! Bad input is refused at once, naming it, and changes nothing: input files that are devices,
//! FIFOs or too large are read with a bound, never waited on or swallowed whole.

use std::time::Duration;

use crate::support::Shipgate;

/// A refusal comes at once: a hang would be caught here (a watchdog, not a timing assertion).
const WATCHDOG: Duration = Duration::from_secs(60);

fn refused(run: &crate::support::cli::Run, names: &[&str]) {
    assert_eq!(run.code, 2, "{}", run.stderr);
    for name in names {
        assert!(run.stderr.contains(name), "`{name}` not in: {}", run.stderr);
    }
}

#[test]
fn a_config_that_is_a_device_or_fifo_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("shipgate.yml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let run = Shipgate::new(dir.path())
        .args(["--config", "/dev/zero", "validate", "--version", "v1.0.0"])
        .spawn()
        .wait_at_most(WATCHDOG);
    refused(&run, &["/dev/zero", "a device"]);
    let run = Shipgate::new(dir.path())
        .args(["--config"])
        .args([&fifo])
        .args(["validate", "--version", "v1.0.0"])
        .spawn()
        .wait_at_most(WATCHDOG);
    refused(&run, &["shipgate.yml", "FIFO"]);
}

#[test]
fn an_oversized_smoke_suite_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suite = dir.path().join("smoke.yml");
    let file = std::fs::File::create(&suite).expect("suite");
    // Sparse: 4 GiB that take no disk.
    file.set_len(4 << 30).expect("set_len");
    let run = Shipgate::new(dir.path())
        .args(["smoke", "--deployment-id", "1-abcdef0", "--suite"])
        .args([&suite])
        .spawn()
        .wait_at_most(WATCHDOG);
    refused(&run, &["smoke.yml", "the most shipgate reads"]);
    let run = Shipgate::new(dir.path())
        .args([
            "smoke",
            "--deployment-id",
            "1-abcdef0",
            "--suite",
            "/dev/zero",
        ])
        .spawn()
        .wait_at_most(WATCHDOG);
    refused(&run, &["/dev/zero", "a device"]);
}

#[test]
fn an_event_payload_that_is_a_device_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = Shipgate::new(dir.path())
        .args(["validate"])
        .env("GITHUB_EVENT_NAME", "workflow_dispatch")
        .env("GITHUB_EVENT_PATH", "/dev/zero")
        .spawn()
        .wait_at_most(WATCHDOG);
    refused(&run, &["/dev/zero", "event payload"]);
}

#[test]
fn a_dispatch_version_that_is_not_text_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let event = dir.path().join("event.json");
    std::fs::write(&event, r#"{"inputs": {"version": {"major": 2}}}"#).expect("event");
    let run = Shipgate::new(dir.path())
        .args(["validate"])
        .env("GITHUB_EVENT_NAME", "workflow_dispatch")
        .env("GITHUB_EVENT_PATH", event.to_str().expect("utf-8"))
        .spawn()
        .wait_at_most(WATCHDOG);
    refused(
        &run,
        &[r#"`{"major":2}`"#, "workflow_dispatch input `version`"],
    );
    assert!(!dir.path().join(".shipgate").exists(), "nothing written");
}

#[test]
fn a_log_placed_as_a_link_to_a_file_elsewhere_is_never_written_through() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("outside");
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").expect("victim");
    let state = dir.path().join(".shipgate/1-abcdef0");
    std::fs::create_dir_all(&state).expect("state dir");
    let log = state.join("smoke-test-logs-1-abcdef0.log");
    std::os::unix::fs::symlink(&victim, &log).expect("symlink");
    let run = smoke_of_deployment(dir.path());
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("symbolic link")
            && run.stderr.contains("smoke-test-logs-1-abcdef0.log"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious\n"
    );
}

/// `shipgate smoke` of deployment `1-abcdef0` in `dir`, against a port where nothing listens.
fn smoke_of_deployment(dir: &std::path::Path) -> crate::support::cli::Run {
    Shipgate::new(dir)
        .args([
            "smoke",
            "--deployment-id",
            "1-abcdef0",
            "--url",
            "http://127.0.0.1:9/health",
        ])
        .spawn()
        .wait_at_most(WATCHDOG)
}

#[test]
fn a_deployment_directory_that_is_a_link_is_refused_and_nothing_lands_elsewhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::create_dir_all(dir.path().join(".shipgate")).expect("root");
    std::os::unix::fs::symlink(outside.path(), dir.path().join(".shipgate/1-abcdef0"))
        .expect("symlink");
    let run = smoke_of_deployment(dir.path());
    refused(&run, &[".shipgate/1-abcdef0", "symbolic link"]);
    assert_eq!(
        std::fs::read_dir(outside.path()).expect("outside").count(),
        0,
        "something was written through the link"
    );
}

#[test]
fn a_state_directory_that_is_a_link_is_refused_unless_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("outside");
    std::os::unix::fs::symlink(outside.path(), dir.path().join(".shipgate")).expect("symlink");
    let run = smoke_of_deployment(dir.path());
    refused(&run, &["`.shipgate`", "symbolic link"]);
    assert_eq!(
        std::fs::read_dir(outside.path()).expect("outside").count(),
        0,
        "something was written through the link"
    );
    // Named on purpose, the same link is the user's choice.
    let named = Shipgate::new(dir.path())
        .args([
            "--state-dir",
            ".shipgate",
            "smoke",
            "--deployment-id",
            "1-abcdef0",
            "--url",
            "http://127.0.0.1:9/health",
        ])
        .spawn()
        .wait_at_most(WATCHDOG);
    assert_eq!(named.code, 1, "{}", named.stderr);
    assert!(outside.path().join("1-abcdef0").is_dir());
}

/// Every path under `dir` (directories and links included) with its content or kind.
fn snapshot(dir: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path
                .strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string();
            let kind = entry.file_type().expect("file type");
            if kind.is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                out.insert(name, format!("-> {}", target.display()));
            } else if kind.is_dir() {
                out.insert(name, "<dir>".into());
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("file");
                out.insert(name, String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    out
}

/// Every command, refused for each kind of bad input (durations, percents, URLs, ids, versions,
/// config, missing files, names), exits 2 (an invalid release version is `validate`'s gate
/// saying no: 1) and leaves the working directory and the state directory exactly as they were;
/// the step's outputs say only `result=fail`.
#[test]
fn bad_input_to_any_command_changes_nothing() {
    const ID: &str = "7-abcdef0";
    let cases: &[&[&str]] = &[
        &[
            "--environment",
            "prod uction",
            "validate",
            "--version",
            "v1.0.0",
        ],
        &["--config", "missing.yml", "validate", "--version", "v1.0.0"],
        &["gate", "--timeout", "99999d"],
        &["gate", "--interval", "soon"],
        &["backup", "--destination", "ftp://host/x"],
        &["backup", "--timeout", "soon"],
        &["restore", "--location", "s3://", "--yes"],
        &["migrate", "--timeout", "0", "--", "true"],
        &["migrate", "--lock-timeout", "forever", "--", "true"],
        &["migrate", "--", "no-such-migrator-anywhere"],
        &[
            "rollout",
            "--success-rate",
            "150",
            "--endpoint",
            "http://127.0.0.1:9/",
        ],
        &[
            "rollout",
            "--window",
            "99999d",
            "--endpoint",
            "http://127.0.0.1:9/",
        ],
        &["smoke", "--suite", "missing.yml"],
        &[
            "smoke",
            "--concurrency",
            "0",
            "--url",
            "http://127.0.0.1:9/",
        ],
        &["smoke", "--url", "not a url"],
        &["record", "--deployment-id", "nosuch"],
        &["record", "--rollback-window-minutes", "99999999"],
        &["rollback", "--deployment-id", "nosuch", "--reason", "x"],
        &["notify", "--deployment-id", "nosuch", "--status", "failure"],
        &["notify", "--status", "maybe"],
        &["pipeline", "--stages", "validate,launch-missiles"],
        &[
            "backup",
            "--destination",
            "file:///nonexistent-shipgate-dir",
            "--lease-ttl",
            "soon",
        ],
        &[
            "rollout",
            "--lease-destination",
            "ftp://host/x",
            "--endpoint",
            "http://127.0.0.1:9/",
        ],
        &["lease"],
        &["lease", "show"],
        &[
            "lease",
            "take",
            "--destination",
            "file:///nonexistent-shipgate-dir",
            "--lease-wait",
            "soon",
        ],
        &["lease", "release", "--deployment-id", "nosuch"],
        &[
            "lease",
            "break",
            "--destination",
            "file:///nonexistent-shipgate-dir",
        ],
        &["drill", "--max-rto", "soon"],
        &["drill", "--location", "ftp://host/x"],
        &["watch", "--for", "soon"],
        &["watch", "--interval", "often"],
        &["watch", "--deployment-id", "nosuch"],
        &["backup", "list", "--destination", "ftp://host/x"],
        &["backup", "prune", "--keep-days", "seven"],
        &[
            "backup",
            "prune",
            "--destination",
            "ftp://host/x",
            "--keep-last",
            "3",
        ],
        &[
            "restore",
            "--backup-id",
            "latest",
            "--location",
            "ftp://host/x",
        ],
        &[
            "--deployment-id",
            "../escape",
            "smoke",
            "--url",
            "http://127.0.0.1:9/",
        ],
    ];
    let gated: &[&[&str]] = &[
        &["validate", "--version", "v1.2"],
        &["validate", "--version", "v1.0.0;reboot"],
    ];
    let mut wrong = Vec::new();
    for (args, code) in cases
        .iter()
        .map(|a| (a, 2))
        .chain(gated.iter().map(|a| (a, 1)))
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join(".shipgate");
        crate::support::state_files::write(
            &root,
            ID,
            "validate.json",
            &crate::support::state_files::validate(ID, 5),
        );
        let before = snapshot(dir.path());
        let run = Shipgate::new(dir.path())
            .args(*args)
            .env("DATABASE_URL", "postgres://u:p@127.0.0.1:9/app")
            .actions()
            .spawn()
            .wait_at_most(WATCHDOG);
        let after = snapshot(dir.path());
        let changed: Vec<&String> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .chain(before.keys().filter(|k| !after.contains_key(*k)))
            .collect();
        let extra_outputs: Vec<&String> = run.outputs.keys().filter(|k| *k != "result").collect();
        if run.code != code
            || !changed.is_empty()
            || !extra_outputs.is_empty()
            || !run.env.is_empty()
            || run.outputs.get("result").is_some_and(|r| r != "fail")
        {
            wrong.push(format!(
                "{args:?}: exit {}, changed {changed:?}, outputs {:?}, env {:?}\n  {}",
                run.code,
                run.outputs,
                run.env,
                run.stderr.lines().last().unwrap_or("")
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A config or suite error is pinned on its file, line and column (GitHub shows it there), and a
/// misspelt key gets the nearest valid one.
#[test]
fn a_suite_error_is_an_annotation_on_its_line_with_the_nearest_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suite = dir.path().join("smoke.yml");
    std::fs::write(
        &suite,
        "base-url: http://127.0.0.1:9\ntests:\n  - name: health\n    url: /health\n    tiemout: 5s\n",
    )
    .expect("suite");
    let run = Shipgate::new(dir.path())
        .args(["smoke", "--deployment-id", "1-abcdef0", "--suite"])
        .args([&suite])
        .actions()
        .spawn()
        .wait_at_most(WATCHDOG);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("::error "))
        .unwrap_or_else(|| panic!("no annotation in {}", run.stderr));
    let file = suite.display().to_string();
    assert!(
        line.starts_with(&format!(
            "::error file={file},line=5,col=5,title=shipgate smoke::"
        )),
        "{line}"
    );
    assert!(line.contains("did you mean `timeout`?"), "{line}");
}

/// An input nothing read in a successful run (misspelt, or meant for another command) is a
/// warning naming it, not silence; the inputs the command used are not named.
#[test]
fn an_input_the_command_does_not_use_is_a_warning() {
    let server = crate::support::stub_http::serve(|_| {
        crate::support::stub_http::Outgoing::json(200, &serde_json::json!({"status": "healthy"}))
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let run = Shipgate::new(dir.path())
        .args(["smoke", "--deployment-id", "1-abcdef0"])
        .actions()
        .input("urls", &format!("{}/health", server.url))
        .input("destinaton", "s3://backups/prod")
        .input("concurrency", "")
        .spawn()
        .wait_at_most(WATCHDOG);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("::warning ") && l.contains("does not use it"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("the input `destinaton` is set but `shipgate smoke` does not use it"),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_huge_value_is_echoed_cut_short() {
    let dir = tempfile::tempdir().expect("workdir");
    // Near the kernel's limit for one environment string (128 KiB).
    let huge = format!("v1.{}", "9".repeat(120 * 1024));
    let run = Shipgate::new(dir.path())
        .input("version", &huge)
        .args(["validate"])
        .run();
    // Not a release version: refused (exit 1), the value echoed cut short.
    run.expect_code(1);
    assert!(
        run.stderr.len() < 8 * 1024,
        "{} bytes of stderr for a {} byte value",
        run.stderr.len(),
        huge.len()
    );
    assert!(run.stderr.contains("more characters)"), "{}", run.stderr);
}
