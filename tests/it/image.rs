//! The container action's runtime image, run the way the runner runs it. No registry is
//! reachable here, so `.ci/rootfs.sh` assembles the image's root filesystem from the same
//! package list and setup script as the Dockerfile (`docker/`), from Debian's mirror; this test
//! puts the freshly built shipgate in it and runs commands there as `docker run` would for a
//! container action: entrypoint `shipgate`, the `command` input as the only argument, every input
//! as `INPUT_<NAME>` (hyphens kept), the runner's `GITHUB_*` variables, the workspace at
//! `/github/workspace` (owned by another user, as the runner's checkout is) as the working
//! directory, and the file-command files under `/github/file_commands`, read back by the
//! runner's rules.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::backup::{contents, pg, s3, seeded};
use crate::support::file_commands::parse_file_commands;
use crate::support::git_repo::git_in;
use crate::support::health_server::{HealthServer, Reply};

/// The runner user's uid on GitHub's hosted runners: the checkout is theirs, not root's.
const RUNNER_UID: u32 = 1001;

/// The runtime root filesystem with this build's shipgate as `/usr/local/bin/shipgate`.
fn image() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/rootfs.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("run .ci/rootfs.sh");
        assert!(
            out.status.success(),
            "`bash .ci/rootfs.sh` could not assemble the runtime root filesystem (it needs root and Debian's mirror): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let bin = root.join("usr/local/bin");
        let staged = bin.join(".shipgate.new");
        std::fs::copy(env!("CARGO_BIN_EXE_shipgate"), &staged).expect("copy shipgate in");
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755))
            .expect("chmod shipgate");
        std::fs::rename(&staged, bin.join("shipgate")).expect("install shipgate");
        root
    })
}

/// One `docker run` of the action: what it printed and the outputs the runner read back.
struct Step {
    code: i32,
    stdout: String,
    stderr: String,
    outputs: BTreeMap<String, String>,
    summary: String,
}

impl Step {
    fn expect_ok(&self, what: &str) -> &Self {
        assert_eq!(
            self.code, 0,
            "{what} in the image:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// The runner's `/github` mounts inside the root filesystem, fresh for one job.
struct Job {
    root: &'static Path,
    github: PathBuf,
    steps: u32,
}

impl Job {
    fn new() -> Job {
        let root = image();
        let github = root.join("github");
        if github.exists() {
            std::fs::remove_dir_all(&github).expect("clear /github");
        }
        for dir in [
            "workspace",
            "home",
            "workflow",
            "file_commands",
            "runner_temp",
        ] {
            std::fs::create_dir_all(github.join(dir)).expect("create a /github mount");
        }
        std::fs::write(github.join("workflow/event.json"), "{}").expect("event.json");
        Job {
            root,
            github,
            steps: 0,
        }
    }

    /// The workspace as the host sees it.
    fn workspace(&self) -> PathBuf {
        self.github.join("workspace")
    }

    /// Hands the workspace to the runner user, as the runner's checkout is.
    fn chown_workspace(&self) {
        let out = Command::new("chown")
            .args(["-R", &format!("{RUNNER_UID}:{RUNNER_UID}")])
            .arg(self.workspace())
            .output()
            .expect("chown");
        assert!(out.status.success(), "chown the workspace");
    }

    /// Runs the action's entrypoint with `command` as its only argument and `inputs` as
    /// `INPUT_<NAME>`, in the runner's container layout.
    fn run(&mut self, command: &str, inputs: &[(&str, &str)], env: &[(&str, &str)]) -> Step {
        self.steps += 1;
        let guid = format!("0c8a2b6e-1f4d-4a8e-9c3b-{:012}", self.steps);
        let files = self.github.join("file_commands");
        let output_name = format!("set_output_{guid}");
        let summary_name = format!("step_summary_{guid}");
        for name in [
            &output_name,
            &summary_name,
            &format!("set_env_{guid}"),
            &format!("save_state_{guid}"),
            &format!("add_path_{guid}"),
        ] {
            std::fs::write(files.join(name), "").expect("create a file-command file");
        }
        // `docker run --workdir /github/workspace` with the image's ENTRYPOINT ["shipgate"] and
        // `args: [<command>]`. `chroot` has no --workdir, so coreutils' `env --chdir` changes
        // directory (a shell would drop the `INPUT_*` names with hyphens from the environment).
        let mut cmd = Command::new("chroot");
        cmd.arg(self.root)
            .args(["/usr/bin/env", "--chdir=/github/workspace", "shipgate"])
            .arg(command)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/github/home")
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_WORKSPACE", "/github/workspace")
            .env("GITHUB_EVENT_PATH", "/github/workflow/event.json")
            .env("GITHUB_EVENT_NAME", "push")
            .env("GITHUB_REPOSITORY", "acme/shop")
            .env("GITHUB_SERVER_URL", "https://github.com")
            .env("GITHUB_RUN_ID", "4242")
            .env("GITHUB_RUN_ATTEMPT", "1")
            .env("GITHUB_ACTOR", "release-bot")
            .env(
                "GITHUB_OUTPUT",
                format!("/github/file_commands/{output_name}"),
            )
            .env(
                "GITHUB_STEP_SUMMARY",
                format!("/github/file_commands/{summary_name}"),
            )
            .env(
                "GITHUB_ENV",
                format!("/github/file_commands/set_env_{guid}"),
            )
            .env(
                "GITHUB_STATE",
                format!("/github/file_commands/save_state_{guid}"),
            )
            .env(
                "GITHUB_PATH",
                format!("/github/file_commands/add_path_{guid}"),
            )
            .env("RUNNER_TEMP", "/github/runner_temp")
            .env("RUNNER_OS", "Linux")
            .env("INPUT_COMMAND", command);
        for (name, value) in inputs {
            cmd.env(format!("INPUT_{}", name.to_ascii_uppercase()), value);
        }
        for (key, value) in env {
            cmd.env(key, value);
        }
        let out = cmd.output().expect("run chroot");
        let read = |name: &str| std::fs::read_to_string(files.join(name)).unwrap_or_default();
        let outputs = parse_file_commands(&read(&output_name))
            .unwrap_or_else(|e| panic!("the runner cannot read GITHUB_OUTPUT: {e}"));
        Step {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            outputs,
            summary: read(&summary_name),
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.github);
    }
}

/// The image's three everyday jobs in the runner's layout: `validate` against the checkout,
/// `backup` to S3 and `restore` from it against a real PostgreSQL, and `smoke` against a
/// loopback service. One test, because the runner's layout is one fixed `/github`.
#[test]
fn the_image_validates_backs_up_restores_and_smoke_tests_the_way_the_runner_runs_it() {
    let mut job = Job::new();
    let workspace = job.workspace();

    // validate: a checkout owned by the runner user (git's "dubious ownership" otherwise).
    git_in(&workspace, &["init", "--quiet", "--initial-branch=main"]);
    git_in(
        &workspace,
        &["commit", "--quiet", "--allow-empty", "-m", "release"],
    );
    let sha = git_in(&workspace, &["rev-parse", "HEAD"]);
    git_in(&workspace, &["tag", "-a", "v2.4.0", "-m", "v2.4.0"]);
    job.chown_workspace();
    assert_eq!(
        std::fs::metadata(&workspace).expect("workspace").uid(),
        RUNNER_UID
    );
    let validate = job.run(
        "validate",
        &[("version", "v2.4.0"), ("default-branch", "main")],
        &[],
    );
    validate.expect_ok("validate");
    assert_eq!(
        validate.outputs.get("sha"),
        Some(&sha),
        "{:?}",
        validate.outputs
    );
    assert_eq!(
        validate.outputs.get("version").map(String::as_str),
        Some("2.4.0")
    );
    assert_eq!(
        validate.outputs.get("tag").map(String::as_str),
        Some("v2.4.0")
    );
    let id = validate.outputs["deployment-id"].clone();
    assert!(
        workspace
            .join(".shipgate")
            .join(&id)
            .join("validate.json")
            .is_file(),
        "the state lands in the workspace"
    );

    // backup to S3, then restore into another database, with the image's own pg_dump/psql.
    let source = seeded("image_source");
    let target = pg().create_database("image_target");
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/image");
    let endpoint = s3().endpoint();
    let aws: Vec<(&str, String)> = s3().aws_env();
    let aws: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let backup = job.run(
        "backup",
        &[
            ("database-url", &pg().url(&source)),
            ("destination", &destination),
            ("s3-endpoint-url", &endpoint),
        ],
        &aws,
    );
    backup.expect_ok("backup");
    let location = backup.outputs["location"].clone();
    assert!(location.starts_with(&destination), "{location}");
    assert!(
        s3().list_keys(&bucket)
            .iter()
            .any(|k| location.ends_with(k.as_str())),
        "the dump is in the bucket"
    );
    let restore = job.run(
        "restore",
        &[
            ("target-database-url", &pg().url(&target)),
            ("backup-location", &location),
            ("s3-endpoint-url", &endpoint),
            ("confirm", "true"),
        ],
        &aws,
    );
    restore.expect_ok("restore");
    assert_eq!(contents(&source), contents(&target), "restored intact");

    // smoke against a loopback service.
    let service = HealthServer::start(vec![Reply::healthy("v2.4.0")]);
    let smoke = job.run(
        "smoke",
        &[
            ("urls", &service.url("/health")),
            ("expect-version", "v2.4.0"),
        ],
        &[],
    );
    smoke.expect_ok("smoke");
    assert_eq!(
        smoke.outputs.get("result").map(String::as_str),
        Some("pass"),
        "{:?}",
        smoke.outputs
    );
    assert!(!smoke.summary.is_empty(), "a step summary is written");

    // Nothing secret in anything the runner would show or keep (the `::add-mask::` commands
    // that register the secrets are consumed by the runner, never shown).
    let password = pg().password();
    let shown = |text: &str| -> String {
        text.lines()
            .filter(|line| !line.trim_start().starts_with("::add-mask::"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for step in [&validate, &backup, &restore, &smoke] {
        for text in [
            shown(&step.stdout),
            shown(&step.stderr),
            step.summary.clone(),
        ] {
            assert!(!text.contains(password), "the database password leaked");
            assert!(
                !text.contains(s3().secret_key()),
                "the S3 secret key leaked"
            );
        }
    }
    let mut dirs = vec![workspace.join(".shipgate")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("read the state dir")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                dirs.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                assert!(
                    !text.contains(password),
                    "{} holds the password",
                    path.display()
                );
                assert!(
                    !text.contains(s3().secret_key()),
                    "{} holds the S3 secret key",
                    path.display()
                );
            }
        }
    }
}
