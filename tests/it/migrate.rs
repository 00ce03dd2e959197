//! `shipgate migrate` end to end: the real binary against a real PostgreSQL cluster, with
//! migration "tools" that are shell scripts driving real `psql` through `$DATABASE_URL`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::postgres::PgCluster;
use crate::support::state_files;
use crate::support::{Shipgate, assert_no_secret, read_tree};

/// One test's world: a fresh database and a working directory with its state dir.
struct World {
    pg: &'static PgCluster,
    db: String,
    dir: tempfile::TempDir,
}

impl World {
    fn new(prefix: &str) -> World {
        let pg = PgCluster::shared();
        World {
            pg,
            db: pg.create_database(prefix),
            dir: tempfile::tempdir().expect("workdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn url(&self) -> String {
        self.pg.url(&self.db)
    }

    fn sql(&self, sql: &str) -> String {
        self.pg.psql(&self.db, sql)
    }

    /// `shipgate --deployment-id <id> --repository octo/app migrate <args…>` with the database
    /// in DATABASE_URL.
    fn migrate(&self, id: &str, args: &[&str]) -> Shipgate {
        let mut cmd = Shipgate::new(self.dir.path());
        cmd.env("DATABASE_URL", self.url())
            .args(["--deployment-id", id, "--repository", "octo/app", "migrate"])
            .args(args);
        cmd
    }

    /// What `shipgate backup` leaves for a verified backup (the shared state-contract fixture).
    fn verified_backup(&self, id: &str) {
        state_files::write(
            &self.dir.path().join(".shipgate"),
            id,
            "backup.json",
            &state_files::backup(id, 5),
        );
    }

    fn state(&self, id: &str, name: &str) -> PathBuf {
        self.dir.path().join(".shipgate").join(id).join(name)
    }

    fn migrate_json(&self, id: &str) -> serde_json::Value {
        let path = self.state(id, "migrate.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("migrate.json is JSON")
    }
}

/// A shell line that runs `sql` on the migrated database the way a migration tool would: from
/// `$DATABASE_URL`.
fn psql(sql: &str) -> String {
    format!(
        "psql \"$DATABASE_URL\" -X -q -v ON_ERROR_STOP=1 -c {}",
        shell_quote(sql)
    )
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Polls `condition` until it holds; panics naming `what` if it never does (a hang guard, not a
/// timing assertion).
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(120);
    while !condition() {
        assert!(Instant::now() < give_up, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The process is gone (or a zombie nobody reaps: it runs no code any more).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// Kills the process group led by the pid written in a file, when dropped: a failing test must
/// not leave its migration command running.
struct GroupReaper(PathBuf);

impl Drop for GroupReaper {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn read_pid(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{} holds no pid: {text:?}", path.display()))
}

/// `(id, start, end)` for each `start <id> <ns>` / `end <id> <ns>` pair in the journal.
fn intervals(journal: &str) -> Vec<(String, u128, u128)> {
    let mut starts = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for line in journal.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts[..] {
            ["start", id, at] => {
                starts.insert(id.to_string(), at.parse::<u128>().expect("time"));
            }
            ["end", id, at] => {
                let start = starts.remove(id).expect("a start before the end");
                out.push((id.to_string(), start, at.parse().expect("time")));
            }
            _ => panic!("unexpected journal line {line:?}"),
        }
    }
    assert!(starts.is_empty(), "runs that never ended: {starts:?}");
    out.sort_by_key(|(_, start, _)| *start);
    out
}

#[test]
fn concurrent_runs_never_overlap() {
    let w = World::new("migrate_overlap");
    let journal = w.path("journal");
    let inside = w.path("inside");
    // `mkdir` is atomic: it fails if another run's command is inside at the same moment.
    let script = format!(
        "mkdir {inside} || echo OVERLAP >> {journal}; echo start $SHIPGATE_DEPLOYMENT_ID $(date +%s%N) >> {journal}; {sql}; sleep 1; echo end $SHIPGATE_DEPLOYMENT_ID $(date +%s%N) >> {journal}; rmdir {inside}",
        inside = inside.display(),
        journal = journal.display(),
        sql = psql("SELECT pg_sleep(0.1)"),
    );
    let ids = ["100-aaaaaaa", "101-bbbbbbb", "102-ccccccc"];
    for id in ids {
        w.verified_backup(id);
    }
    let mut commands: Vec<Shipgate> = ids
        .iter()
        .map(|id| w.migrate(id, &["--lock-timeout", "5m", "--shell", "--", &script]))
        .collect();
    let running: Vec<_> = commands.iter_mut().map(Shipgate::spawn).collect();
    let runs: Vec<_> = running.into_iter().map(|r| r.wait()).collect();
    for run in &runs {
        run.expect_code(0);
    }
    let journal = std::fs::read_to_string(&journal).expect("journal");
    assert!(!journal.contains("OVERLAP"), "{journal}");
    let spans = intervals(&journal);
    assert_eq!(spans.len(), 3, "{journal}");
    for pair in spans.windows(2) {
        assert!(
            pair[1].1 > pair[0].2,
            "`{}` started before `{}` ended:\n{journal}",
            pair[1].0,
            pair[0].0
        );
    }
    // The last to run found the lock taken (a strict wait is proved deterministically by
    // `a_second_run_waits_for_the_lock_or_fails_naming_the_holder`).
    let last = w.migrate_json(&spans[2].0);
    assert!(last["lock_wait_ms"].as_u64() > Some(0), "{last}");
}

#[test]
fn a_second_run_waits_for_the_lock_or_fails_naming_the_holder() {
    let w = World::new("migrate_wait");
    let release = w.path("release");
    let journal = w.path("journal");
    for id in ["200-aaaaaaa", "201-bbbbbbb", "202-ccccccc"] {
        w.verified_backup(id);
    }
    let first_script = format!(
        "echo start $SHIPGATE_DEPLOYMENT_ID $(date +%s%N) >> {journal}; while [ ! -e {release} ]; do sleep 0.02; done; echo end $SHIPGATE_DEPLOYMENT_ID $(date +%s%N) >> {journal}",
        journal = journal.display(),
        release = release.display()
    );
    let other_script = format!(
        "echo start $SHIPGATE_DEPLOYMENT_ID $(date +%s%N) >> {journal}; echo end $SHIPGATE_DEPLOYMENT_ID $(date +%s%N) >> {journal}",
        journal = journal.display()
    );
    let mut first = w.migrate("200-aaaaaaa", &["--shell", "--", &first_script]);
    let first = first.spawn();
    wait_for("the first run's command to start", || {
        std::fs::read_to_string(&journal).is_ok_and(|j| j.contains("start 200-aaaaaaa"))
    });
    let holder_pid = w.sql(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'shipgate migrate 200-aaaaaaa'",
    );
    assert!(!holder_pid.is_empty(), "the lock session names its run");

    // A short lock timeout: refused, naming who holds the lock; its command never runs.
    let refused = w
        .migrate(
            "201-bbbbbbb",
            &["--lock-timeout", "300ms", "--shell", "--", &other_script],
        )
        .run();
    refused.expect_code(4);
    assert!(
        refused.stderr.contains(&format!(
            "is still held by pid {holder_pid} (`shipgate migrate 200-aaaaaaa`, user `postgres`, from 127.0.0.1, idle, connected since "
        )),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("--lock-timeout"),
        "{}",
        refused.stderr
    );
    let journal_now = std::fs::read_to_string(&journal).expect("journal");
    assert!(!journal_now.contains("201-bbbbbbb"), "{journal_now}");
    let state = w.migrate_json("201-bbbbbbb");
    assert_eq!(state["result"], "fail");
    // The key every runner derives for `octo/app` in `production`.
    assert_eq!(state["lock_key"], "-4271874471539250901");
    assert_eq!(
        state["lock_holders"][0]["application_name"],
        "shipgate migrate 200-aaaaaaa"
    );
    assert_eq!(
        state["lock_holders"][0]["pid"].to_string(),
        holder_pid,
        "{state}"
    );

    // A long one: it waits, then runs once the first is done.
    let mut third = w.migrate(
        "202-ccccccc",
        &["--lock-timeout", "10m", "--shell", "--", &other_script],
    );
    let third = third.spawn();
    wait_for("the third run to try the lock", || {
        w.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shipgate migrate 202-ccccccc' AND query LIKE '%advisory%'")
            == "1"
    });
    std::fs::write(&release, "").expect("release");
    first.wait().expect_code(0);
    let third = third.wait();
    third.expect_code(0);
    let spans = intervals(&std::fs::read_to_string(&journal).expect("journal"));
    assert_eq!(
        spans.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["200-aaaaaaa", "202-ccccccc"]
    );
    assert!(spans[1].1 > spans[0].2, "{spans:?}");
    let state = w.migrate_json("202-ccccccc");
    assert!(state["lock_wait_ms"].as_u64() > Some(0), "{state}");
    assert_eq!(state["lock_holders"][0]["pid"].to_string(), holder_pid);
}

#[test]
fn a_killed_command_fails_and_releases_the_lock() {
    let w = World::new("migrate_killed_child");
    w.verified_backup("300-aaaaaaa");
    w.verified_backup("301-bbbbbbb");
    let run = w
        .migrate(
            "300-aaaaaaa",
            &["--shell", "--", "echo about to die; kill -9 $$"],
        )
        .actions()
        .run();
    run.expect_code(3);
    assert!(
        run.stderr.contains("was killed by signal 9"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("::error title=shipgate migrate::"),
        "{}",
        run.stderr
    );
    assert_eq!(run.outputs["result"], "fail");
    assert!(
        run.summary
            .contains("### ❌ Migration command failed (signal 9)"),
        "{}",
        run.summary
    );
    assert!(run.summary.contains("about to die"), "{}", run.summary);
    let state = w.migrate_json("300-aaaaaaa");
    assert_eq!(state["result"], "fail");
    assert_eq!(state["signal"], 9);
    assert_eq!(state["exit_code"], serde_json::Value::Null);

    w.migrate("301-bbbbbbb", &["--lock-timeout", "1m"])
        .input("migration-command", "sh -c 'exit 0'")
        .input("lock-key", "42")
        .run()
        .expect_code(0);
    let state = w.migrate_json("301-bbbbbbb");
    assert_eq!(state["result"], "pass");
    assert_eq!(state["migration_command"], "sh -c exit 0");
    assert_eq!(state["lock_key"], "42");
}

#[test]
fn killing_shipgate_ends_the_command_before_the_lock_is_released() {
    let w = World::new("migrate_killed_shipgate");
    w.verified_backup("400-aaaaaaa");
    w.verified_backup("401-bbbbbbb");
    let ticks = w.path("ticks");
    let script = format!(
        "echo $$ > {leader}; sleep 600 & echo $! > {background}; while :; do date +%s%N >> {ticks}; sleep 0.01; done",
        leader = w.path("leader.pid").display(),
        background = w.path("background.pid").display(),
        ticks = ticks.display()
    );
    let _reaper = GroupReaper(w.path("leader.pid"));
    let mut first = w.migrate("400-aaaaaaa", &["--shell", "--", &script]);
    let mut first = first.spawn();
    wait_for("the command to tick", || {
        std::fs::read_to_string(&ticks).is_ok_and(|t| t.lines().count() >= 3)
    });
    first.kill();
    let killed = first.wait();
    assert_eq!(killed.code, -1, "killed by a signal");

    let second = w
        .migrate(
            "401-bbbbbbb",
            &[
                "--lock-timeout",
                "1m",
                "--shell",
                "--",
                &format!("date +%s%N > {}", w.path("second.start").display()),
            ],
        )
        .run();
    second.expect_code(0);
    let second_start: u128 = std::fs::read_to_string(w.path("second.start"))
        .expect("second start")
        .trim()
        .parse()
        .expect("time");
    let last_tick: u128 = std::fs::read_to_string(&ticks)
        .expect("ticks")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .max()
        .expect("a tick");
    assert!(
        last_tick < second_start,
        "the orphaned command was still running when the next migration started"
    );
    for name in ["leader.pid", "background.pid"] {
        let pid = read_pid(&w.path(name));
        wait_for(&format!("{name} ({pid}) to be gone"), || is_gone(pid));
    }
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let w = World::new("migrate_timeout");
    w.verified_backup("500-aaaaaaa");
    let script = format!(
        "echo $$ > {leader}; sleep 600 & echo $! > {background}; wait",
        leader = w.path("leader.pid").display(),
        background = w.path("background.pid").display()
    );
    let _reaper = GroupReaper(w.path("leader.pid"));
    let run = w
        .migrate(
            "500-aaaaaaa",
            &["--timeout", "1s", "--shell", "--", &script],
        )
        .actions()
        .run();
    run.expect_code(4);
    assert!(
        run.stderr
            .contains("timed out after 1s; its whole process group was killed"),
        "{}",
        run.stderr
    );
    assert!(
        run.summary.contains("### ❌ Migration command timed out"),
        "{}",
        run.summary
    );
    for name in ["leader.pid", "background.pid"] {
        let pid = read_pid(&w.path(name));
        wait_for(&format!("{name} ({pid}) to be gone"), || is_gone(pid));
    }
    let state = w.migrate_json("500-aaaaaaa");
    assert_eq!(state["timed_out"], true);
    assert_eq!(state["result"], "fail");
}

#[test]
fn a_cancelled_run_stops_its_command_and_says_so() {
    let w = World::new("migrate_cancel");
    w.verified_backup("550-aaaaaaa");
    w.verified_backup("551-bbbbbbb");
    let script = format!(
        "echo $$ > {leader}; sleep 600 & echo $! > {background}; wait",
        leader = w.path("leader.pid").display(),
        background = w.path("background.pid").display()
    );
    let _reaper = GroupReaper(w.path("leader.pid"));
    let mut cmd = w.migrate("550-aaaaaaa", &["--shell", "--", &script]);
    cmd.actions();
    let running = cmd.spawn();
    wait_for("the command to start", || {
        std::fs::read_to_string(w.path("background.pid")).is_ok_and(|t| !t.trim().is_empty())
    });
    // What the runner does when a workflow is cancelled.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let run = running.wait();
    run.expect_code(3);
    assert!(
        run.stderr.contains("was stopped after")
            && run.stderr.contains("because shipgate was cancelled"),
        "{}",
        run.stderr
    );
    assert_eq!(run.outputs["result"], "fail");
    let state = w.migrate_json("550-aaaaaaa");
    assert_eq!(state["cancelled"], true);
    for name in ["leader.pid", "background.pid"] {
        let pid = read_pid(&w.path(name));
        wait_for(&format!("{name} ({pid}) to be gone"), || is_gone(pid));
    }
    w.migrate("551-bbbbbbb", &["--lock-timeout", "1m", "--", "true"])
        .run()
        .expect_code(0);
}

#[test]
fn a_command_that_is_not_found_is_a_usage_error() {
    let w = World::new("migrate_not_found");
    w.verified_backup("600-aaaaaaa");
    let run = w
        .migrate("600-aaaaaaa", &["--", "shipgate-no-such-migrator", "up"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("the migration command `shipgate-no-such-migrator` was not found on PATH"),
        "{}",
        run.stderr
    );
    assert!(!w.state("600-aaaaaaa", "migrate.json").exists());
    let run = w
        .migrate("600-aaaaaaa", &["--", "./bin/migrate", "up"])
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    let run = w
        .migrate("600-aaaaaaa", &["--shell", "--", "make", "migrate"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("with `--shell` the command is one script argument"),
        "{}",
        run.stderr
    );
    let run = w.migrate("600-aaaaaaa", &[]).run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("no migration command"),
        "{}",
        run.stderr
    );
    // A line written for a shell is not run without one.
    let run = w
        .migrate("600-aaaaaaa", &[])
        .input("migration-command", "make migrate && make seed")
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("run it through a shell (`--shell`, `shell: true`"),
        "{}",
        run.stderr
    );
}

#[test]
fn no_verified_backup_is_refused_with_the_fix() {
    let w = World::new("migrate_backup");
    let marker = w.path("ran");
    let script = format!("touch {}", marker.display());
    let run = w
        .migrate("700-aaaaaaa", &["--shell", "--", &script])
        .actions()
        .run();
    run.expect_code(1);
    assert!(
        run.stderr.contains("no backup of deployment `700-aaaaaaa`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("run `shipgate backup` for this deployment first")
            && run.stderr.contains("`--no-backup-required`"),
        "{}",
        run.stderr
    );
    assert_eq!(run.outputs["result"], "fail");
    assert!(!marker.exists(), "the command ran without a backup");
    assert_eq!(w.migrate_json("700-aaaaaaa")["result"], "fail");

    // An unverified backup is no better.
    w.verified_backup("700-aaaaaaa");
    let path = w.state("700-aaaaaaa", "backup.json");
    let mut backup: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("backup")).expect("json");
    backup["verified"] = json!(false);
    std::fs::write(&path, backup.to_string()).expect("write");
    let run = w.migrate("700-aaaaaaa", &["--shell", "--", &script]).run();
    run.expect_code(1);
    assert!(
        run.stderr.contains(
            "the backup `backup-700-aaaaaaa` of deployment `700-aaaaaaa` is not verified"
        ),
        "{}",
        run.stderr
    );
    assert!(!marker.exists());

    // Overridden on purpose: runs, with a warning.
    let run = w
        .migrate("700-aaaaaaa", &["--shell", "--", &script])
        .input("backup-required", "false")
        .actions()
        .run();
    run.expect_code(0);
    assert!(
        run.stderr.contains("::warning title=shipgate migrate::"),
        "{}",
        run.stderr
    );
    assert!(marker.exists());

    // With a verified backup: runs, and the summary names the backup.
    w.verified_backup("701-bbbbbbb");
    let run = w
        .migrate("701-bbbbbbb", &["--shell", "--", &script])
        .actions()
        .run();
    run.expect_code(0);
    assert!(
        run.summary.contains("`backup-701-bbbbbbb` (verified)"),
        "{}",
        run.summary
    );
    assert_eq!(
        w.migrate_json("701-bbbbbbb")["backup"]["backup_id"],
        "backup-701-bbbbbbb"
    );
}

/// A history table as a tool creates it, the rows already there, and the rows a run adds.
struct Style {
    tool: &'static str,
    create: &'static str,
    existing: &'static str,
    new: &'static str,
    applied: &'static [&'static str],
}

const STYLES: &[Style] = &[
    Style {
        tool: "prisma",
        create: r#"CREATE TABLE "_prisma_migrations" (
            "id" VARCHAR(36) PRIMARY KEY NOT NULL, "checksum" VARCHAR(64) NOT NULL,
            "finished_at" TIMESTAMPTZ, "migration_name" VARCHAR(255) NOT NULL, "logs" TEXT,
            "rolled_back_at" TIMESTAMPTZ, "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
            "applied_steps_count" INTEGER NOT NULL DEFAULT 0)"#,
        existing: "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, applied_steps_count) VALUES ('00000000-0000-0000-0000-000000000001', 'c1', now(), '20240101000000_init', 1)",
        new: "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, applied_steps_count) VALUES ('00000000-0000-0000-0000-000000000002', 'c2', now(), '20240201000000_users', 1), ('00000000-0000-0000-0000-000000000003', 'c3', now(), '20240301000000_orders', 1), ('00000000-0000-0000-0000-000000000004', 'c4', NULL, '20240401000000_broken', 0)",
        applied: &["20240201000000_users", "20240301000000_orders"],
    },
    Style {
        tool: "ef-core",
        create: r#"CREATE TABLE "__EFMigrationsHistory" ("MigrationId" character varying(150) NOT NULL,
            "ProductVersion" character varying(32) NOT NULL,
            CONSTRAINT "PK___EFMigrationsHistory" PRIMARY KEY ("MigrationId"))"#,
        existing: r#"INSERT INTO "__EFMigrationsHistory" VALUES ('20240101_Initial', '8.0.0')"#,
        new: r#"INSERT INTO "__EFMigrationsHistory" VALUES ('20240201_AddUsers', '8.0.0'), ('20240301_AddOrders', '8.0.0')"#,
        applied: &["20240201_AddUsers", "20240301_AddOrders"],
    },
    Style {
        tool: "flyway",
        create: r#"CREATE TABLE "flyway_schema_history" ("installed_rank" INT NOT NULL,
            "version" VARCHAR(50), "description" VARCHAR(200) NOT NULL, "type" VARCHAR(20) NOT NULL,
            "script" VARCHAR(1000) NOT NULL, "checksum" INTEGER, "installed_by" VARCHAR(100) NOT NULL,
            "installed_on" TIMESTAMP NOT NULL DEFAULT now(), "execution_time" INTEGER NOT NULL,
            "success" BOOLEAN NOT NULL,
            CONSTRAINT "flyway_schema_history_pk" PRIMARY KEY ("installed_rank"))"#,
        existing: "INSERT INTO flyway_schema_history VALUES (1, '1', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', NULL, 'app', now(), 0, true), (2, '2', 'init', 'SQL', 'V2__init.sql', 1, 'app', now(), 5, true)",
        new: "INSERT INTO flyway_schema_history VALUES (3, '3', 'users', 'SQL', 'V3__users.sql', 2, 'app', now(), 5, true), (4, '4', 'orders', 'SQL', 'V4__orders.sql', 3, 'app', now(), 5, true)",
        applied: &["V3__users.sql", "V4__orders.sql"],
    },
    Style {
        tool: "django",
        create: "CREATE TABLE django_migrations (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, app varchar(255) NOT NULL, name varchar(255) NOT NULL, applied timestamptz NOT NULL)",
        existing: "INSERT INTO django_migrations (app, name, applied) VALUES ('contenttypes', '0001_initial', now())",
        new: "INSERT INTO django_migrations (app, name, applied) VALUES ('shop', '0001_initial', now()), ('shop', '0002_orders', now())",
        applied: &["shop.0001_initial", "shop.0002_orders"],
    },
    Style {
        tool: "rails",
        create: "CREATE TABLE schema_migrations (version character varying NOT NULL PRIMARY KEY)",
        existing: "INSERT INTO schema_migrations VALUES ('20240101000000')",
        new: "INSERT INTO schema_migrations VALUES ('20240201000000'), ('20240301000000')",
        applied: &["20240201000000", "20240301000000"],
    },
    Style {
        tool: "sqlx",
        create: "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)",
        existing: "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (20240101000000, 'init', true, '\\x00', 1)",
        new: "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (20240201000000, 'users', true, '\\x00', 1), (20240301000000, 'orders', true, '\\x00', 1)",
        applied: &["20240201000000 users", "20240301000000 orders"],
    },
    Style {
        tool: "diesel",
        create: "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        existing: "INSERT INTO __diesel_schema_migrations (version) VALUES ('20240101000000')",
        new: "INSERT INTO __diesel_schema_migrations (version) VALUES ('20240201000000'), ('20240301000000')",
        applied: &["20240201000000", "20240301000000"],
    },
    Style {
        tool: "liquibase",
        create: "CREATE TABLE databasechangelog (id VARCHAR(255) NOT NULL, author VARCHAR(255) NOT NULL, filename VARCHAR(255) NOT NULL, dateexecuted TIMESTAMP NOT NULL, orderexecuted INTEGER NOT NULL, exectype VARCHAR(10) NOT NULL, md5sum VARCHAR(35), description VARCHAR(255), comments VARCHAR(255), tag VARCHAR(255), liquibase VARCHAR(20), contexts VARCHAR(255), labels VARCHAR(255), deployment_id VARCHAR(10))",
        existing: "INSERT INTO databasechangelog (id, author, filename, dateexecuted, orderexecuted, exectype) VALUES ('1', 'ana', 'db/changelog.xml', now(), 1, 'EXECUTED')",
        new: "INSERT INTO databasechangelog (id, author, filename, dateexecuted, orderexecuted, exectype) VALUES ('2', 'ana', 'db/changelog.xml', now(), 2, 'EXECUTED'), ('3', 'bo', 'db/changelog.xml', now(), 3, 'EXECUTED'), ('4', 'bo', 'db/changelog.xml', now(), 4, 'MARK_RAN')",
        applied: &["db/changelog.xml::2::ana", "db/changelog.xml::3::bo"],
    },
];

#[test]
fn counts_what_each_kind_of_history_table_recorded() {
    for style in STYLES {
        let w = World::new(&format!("migrate_count_{}", style.tool));
        w.sql(style.create);
        w.sql(style.existing);
        let id = "800-aaaaaaa";
        w.verified_backup(id);
        let run = w
            .migrate(id, &["--shell", "--", &psql(style.new)])
            .actions()
            .run();
        run.expect_code(0);
        assert_eq!(run.outputs["tool"], style.tool, "{}", run.stderr);
        assert_eq!(
            run.outputs["migrations-applied"],
            style.applied.len().to_string(),
            "{}: {}",
            style.tool,
            run.stderr
        );
        let applied: Vec<String> =
            serde_json::from_str(&run.outputs["applied"]).expect("applied is a JSON list");
        assert_eq!(applied, style.applied, "{}", style.tool);
        assert_eq!(run.outputs["result"], "pass");
        assert!(
            run.summary.contains(&format!(
                "### ✅ Migrations: {} applied ({})",
                applied.len(),
                style.tool
            )),
            "{}",
            run.summary
        );
        let state = w.migrate_json(id);
        assert_eq!(state["applied_count"], applied.len());
        assert_eq!(state["tool"], style.tool);
        assert_eq!(state["exit_code"], 0);
        if style.tool == "prisma" {
            assert_eq!(state["failed"], json!(["20240401000000_broken"]));
        }

        // A second run applies nothing new.
        let again = w.migrate(id, &["--", "true"]).actions().run();
        again.expect_code(0);
        assert_eq!(again.outputs["migrations-applied"], "0", "{}", style.tool);
        assert_eq!(again.outputs["applied"], "[]");
    }
}

#[test]
fn counts_from_no_table_yet_and_says_when_it_cannot_count() {
    let w = World::new("migrate_no_table");
    w.verified_backup("900-aaaaaaa");
    // The first deploy: the tool creates its history table.
    let create = STYLES
        .iter()
        .find(|s| s.tool == "ef-core")
        .expect("ef-core");
    let script = format!(
        "{} && {}",
        psql(create.create),
        psql(
            r#"INSERT INTO "__EFMigrationsHistory" VALUES ('1_A', '8'), ('2_B', '8'), ('3_C', '8')"#
        )
    );
    let run = w
        .migrate("900-aaaaaaa", &["--shell", "--", &script])
        .actions()
        .run();
    run.expect_code(0);
    assert_eq!(run.outputs["migrations-applied"], "3");
    assert_eq!(run.outputs["applied"], r#"["1_A","2_B","3_C"]"#);
    assert!(
        run.summary.contains("created by this run"),
        "{}",
        run.summary
    );
    assert_eq!(
        w.migrate_json("900-aaaaaaa")["history_tables"][0]["rows_before"],
        serde_json::Value::Null
    );

    // No history table of any known tool: not a failure, but no number is made up.
    let bare = World::new("migrate_no_history");
    bare.verified_backup("901-bbbbbbb");
    let run = bare
        .migrate(
            "901-bbbbbbb",
            &["--shell", "--", &psql("CREATE TABLE t (x int)")],
        )
        .actions()
        .run();
    run.expect_code(0);
    assert_eq!(run.outputs["migrations-applied"], "");
    assert_eq!(run.outputs["tool"], "");
    assert!(
        run.stderr
            .contains("no migration history table of a known tool was found"),
        "{}",
        run.stderr
    );

    // golang-migrate keeps one row, the current version: it moved, by how many is unknown.
    let gm = World::new("migrate_golang");
    gm.verified_backup("902-ccccccc");
    gm.sql("CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL); INSERT INTO schema_migrations VALUES (3, false)");
    let run = gm
        .migrate(
            "902-ccccccc",
            &[
                "--shell",
                "--",
                &psql("UPDATE schema_migrations SET version = 7"),
            ],
        )
        .actions()
        .run();
    run.expect_code(0);
    assert_eq!(run.outputs["tool"], "golang-migrate");
    assert_eq!(run.outputs["migrations-applied"], "");
    assert_eq!(run.outputs["applied"], r#"["7"]"#);
    assert!(run.summary.contains("`3` → `7`"), "{}", run.summary);

    // A table of the team's own, named with `history-table` in shipgate.yml, and a command
    // given as an argv list there too.
    let own = World::new("migrate_custom");
    own.verified_backup("903-ddddddd");
    own.sql("CREATE SCHEMA ops; CREATE TABLE ops.\"AppliedScripts\" (id serial PRIMARY KEY, name text NOT NULL); INSERT INTO ops.\"AppliedScripts\" (name) VALUES ('001.sql')");
    std::fs::write(
        own.path("shipgate.yml"),
        "migrate:\n  history-table: ops.AppliedScripts\n  command: [psql, '$DATABASE_URL_IS_NOT_EXPANDED']\n  timeout: 5m\n",
    )
    .expect("config");
    // The argv list is passed as is (no shell): psql gets the literal text and fails.
    let run = own.migrate("903-ddddddd", &[]).run();
    run.expect_code(3);
    std::fs::write(
        own.path("shipgate.yml"),
        "migrate:\n  history-table: ops.AppliedScripts\n  shell: true\n  command: psql \"$DATABASE_URL\" -X -q -c \"INSERT INTO ops.\\\"AppliedScripts\\\" (name) VALUES ('002.sql'), ('003.sql')\"\n",
    )
    .expect("config");
    let run = own.migrate("903-ddddddd", &[]).actions().run();
    run.expect_code(0);
    assert_eq!(run.outputs["tool"], "custom");
    assert_eq!(run.outputs["applied"], r#"["002.sql","003.sql"]"#);
}

#[test]
fn no_secret_reaches_any_output_log_or_state_file() {
    let w = World::new("migrate_secrets");
    w.verified_backup("950-aaaaaaa");
    w.sql(STYLES[0].create);
    let password = w.pg.password().to_string();
    // A chatty tool: prints the URL it was given and the decoded password, then fails.
    let script = format!(
        "echo \"connecting to $DATABASE_URL\"; echo {}; echo '::error::injected by the tool'; {}; exit 1",
        shell_quote(&format!("password is {password}")),
        psql(STYLES[0].new)
    );
    let run = Shipgate::new(w.dir.path())
        .actions()
        .input("database-url", &w.url())
        .args([
            "--format",
            "json",
            "--deployment-id",
            "950-aaaaaaa",
            "migrate",
            "--shell",
            "--",
            &script,
        ])
        .run();
    run.expect_code(3);
    assert!(run.stderr.contains("connecting to ***"), "{}", run.stderr);
    assert!(run.stderr.contains("password is ***"), "{}", run.stderr);
    // The tool's output cannot issue workflow commands: it is fenced.
    let fence = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("::stop-commands::"))
        .expect("a stop-commands fence");
    let fenced = run
        .stderr
        .split(&format!("::stop-commands::{fence}"))
        .nth(1)
        .and_then(|rest| rest.split(&format!("::{fence}::")).next())
        .expect("fenced block");
    assert!(fenced.contains("::error::injected by the tool"), "{fenced}");
    // Failure, reported with what was applied before it.
    let result = run.json();
    assert_eq!(result["result"], "fail");
    assert_eq!(result["exit_code"], 1);
    assert_eq!(result["applied_count"], 2);
    assert_eq!(run.outputs["migrations-applied"], "2");
    assert!(
        run.summary
            .contains("### ❌ Migration command failed (exit code 1)"),
        "{}",
        run.summary
    );
    let log = std::fs::read_to_string(w.state("950-aaaaaaa", "migration-logs-950-aaaaaaa.log"))
        .expect("log kept");
    assert!(log.contains("[stdout] connecting to ***"), "{log}");
    let mut places: Vec<(String, String)> = run.everything();
    places.extend(read_tree(&w.dir.path().join(".shipgate")));
    for secret in [password.as_str(), &w.pg.password_url_encoded(), &w.url()] {
        assert_no_secret(secret, places.iter().map(|(n, t)| (n.clone(), t.as_str())));
    }
}

#[test]
fn an_unreachable_or_invalid_database_is_reported_without_its_password() {
    let w = World::new("migrate_unreachable");
    w.verified_backup("960-aaaaaaa");
    let marker = w.path("ran");
    let script = format!("touch {}", marker.display());
    let password = "Unreachable-pw%2Fsecret";
    // Port 1: nothing listens there.
    let url = format!("postgres://app:{password}@127.0.0.1:1/app");
    let run = Shipgate::new(w.dir.path())
        .actions()
        .input("database-url", &url)
        .args([
            "--deployment-id",
            "960-aaaaaaa",
            "migrate",
            "--shell",
            "--",
            &script,
        ])
        .run();
    run.expect_code(3);
    assert!(
        run.stderr
            .contains("cannot open the connection that holds the migration lock"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("postgres://app:***@127.0.0.1:1/app"),
        "{}",
        run.stderr
    );
    assert!(!marker.exists(), "the command ran without the lock");
    let mut places = run.everything();
    places.extend(read_tree(&w.dir.path().join(".shipgate")));
    assert_no_secret(
        password,
        places.iter().map(|(n, t)| (n.clone(), t.as_str())),
    );

    let run = Shipgate::new(w.dir.path())
        .env("DATABASE_URL", "mysql://app:pw@db/app")
        .args(["--deployment-id", "960-aaaaaaa", "migrate", "--", "true"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("is not a PostgreSQL URL"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_lock_connection_lost_during_the_run_is_reported() {
    let w = World::new("migrate_lock_lost");
    w.verified_backup("970-aaaaaaa");
    // The command cuts shipgate's lock connection, as a database restart or a proxy would.
    let script = format!(
        "{}; sleep 1",
        psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'shipgate migrate 970-aaaaaaa'",
        )
    );
    let run = w
        .migrate("970-aaaaaaa", &["--shell", "--", &script])
        .actions()
        .run();
    run.expect_code(0);
    // Noticed while the command still ran (the connection is used every 30 s, scaled down
    // here by SHIPGATE_RETRY_SCALE), and reported at the end.
    assert!(
        run.stderr
            .contains("the migration lock is lost while the command still runs"),
        "{}",
        run.stderr
    );
    assert!(
        run.summary.contains("another run may have overlapped"),
        "{}",
        run.summary
    );
    assert_eq!(w.migrate_json("970-aaaaaaa")["lock_lost"], true);
}

#[test]
fn a_command_that_exits_0_leaving_a_background_process_passes_at_once() {
    let w = World::new("migrate_leftover");
    w.verified_backup("980-aaaaaaa");
    let script = w.path("m.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho migrating\n{}\nsleep 300 & echo $! > {}\n",
            psql("CREATE TABLE leftover_ok (x int)"),
            w.path("background.pid").display()
        ),
    )
    .expect("m.sh");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let _reaper = GroupReaper(w.path("background.pid"));
    let mut cmd = w.migrate("980-aaaaaaa", &["--", "./m.sh"]);
    cmd.actions();
    // The watchdog: the `sleep 300` holds the command's output; shipgate must not wait for it.
    let run = cmd.spawn().wait_at_most(Duration::from_secs(60));
    run.expect_code(0);
    assert_eq!(run.outputs["result"], "pass");
    assert!(
        run.stderr.contains("left 1 process behind"),
        "{}",
        run.stderr
    );
    let state = w.migrate_json("980-aaaaaaa");
    assert_eq!(state["result"], "pass", "{state}");
    assert_eq!(state["exit_code"], 0, "{state}");
    assert_eq!(state["left_processes"], true, "{state}");
    assert!(
        state["warning"]
            .as_str()
            .is_some_and(|w| w.contains("holding its output")),
        "{state}"
    );
    let log = std::fs::read_to_string(w.state("980-aaaaaaa", "migration-logs-980-aaaaaaa.log"))
        .expect("log");
    assert!(log.contains("[stdout] migrating"), "{log}");
    assert!(log.contains("left 1 process behind"), "{log}");
    // Nothing the command started outlives the lock.
    let pid = read_pid(&w.path("background.pid"));
    wait_for(&format!("the background sleep ({pid}) to be gone"), || {
        is_gone(pid)
    });
}

/// Terminates, when dropped, every backend whose query contains `marker` (a failing test must
/// not leave a `pg_sleep(300)` on the shared cluster).
struct BackendReaper<'a>(&'a World, String);

impl Drop for BackendReaper<'_> {
    fn drop(&mut self) {
        let _ = self.0.pg.try_psql(
            &self.0.db,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%{}%' AND pid <> pg_backend_pid()",
                self.1
            ),
        );
    }
}

#[test]
fn killing_shipgate_stops_the_migrations_sql_before_the_lock_is_released() {
    let w = World::new("migrate_killed_sql");
    w.verified_backup("990-aaaaaaa");
    w.verified_backup("991-bbbbbbb");
    let marker = format!("shipgate_test_{}", crate::support::watchdog::random_hex(6));
    let running_sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
    );
    let _backends = BackendReaper(&w, marker.clone());
    let script = format!(
        "echo $$ > {leader}; {sql}",
        leader = w.path("leader.pid").display(),
        sql = psql(&format!("SELECT pg_sleep(300) /* {marker} */"))
    );
    let _reaper = GroupReaper(w.path("leader.pid"));
    let mut first = w.migrate("990-aaaaaaa", &["--shell", "--", &script]);
    let mut first = first.spawn();
    wait_for("the migration's query to run on the server", || {
        w.sql(&running_sql) == "1"
    });
    first.kill();
    assert_eq!(first.wait().code, -1, "killed by a signal");

    // The next run sees the query gone by the time it holds the lock.
    let seen = w.path("seen-by-second");
    let second = w
        .migrate(
            "991-bbbbbbb",
            &[
                "--lock-timeout",
                "2m",
                "--shell",
                "--",
                &format!(
                    "psql \"$DATABASE_URL\" -X -q -A -t -c {} > {}",
                    shell_quote(&running_sql),
                    seen.display()
                ),
            ],
        )
        .run();
    second.expect_code(0);
    assert_eq!(
        std::fs::read_to_string(&seen)
            .expect("second run's view")
            .trim(),
        "0",
        "the killed run's SQL was still running when the next migration took the lock"
    );
    wait_for("no backend to run the killed migration's query", || {
        w.sql(&running_sql) == "0"
    });
}

#[test]
fn a_timed_out_commands_sql_is_stopped_before_the_lock_is_released() {
    let w = World::new("migrate_timeout_sql");
    w.verified_backup("995-aaaaaaa");
    let marker = format!("shipgate_test_{}", crate::support::watchdog::random_hex(6));
    let _backends = BackendReaper(&w, marker.clone());
    let script = format!(
        "echo $$ > {leader}; {sql}",
        leader = w.path("leader.pid").display(),
        sql = psql(&format!("SELECT pg_sleep(300) /* {marker} */"))
    );
    let _reaper = GroupReaper(w.path("leader.pid"));
    let run = w
        .migrate(
            "995-aaaaaaa",
            &["--timeout", "2s", "--shell", "--", &script],
        )
        .actions()
        .run();
    run.expect_code(4);
    // Killing psql does not stop its query on the server: shipgate did, before it let go of
    // the lock (and so before it exited).
    assert_eq!(
        w.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
        )),
        "0"
    );
    let state = w.migrate_json("995-aaaaaaa");
    assert_eq!(state["timed_out"], true, "{state}");
    let name = state["application_name"]
        .as_str()
        .expect("application_name");
    assert!(name.starts_with("shipgate-migrate-995-aaaaaaa-"), "{name}");
    let stopped = &state["stopped_sessions"][0];
    assert_eq!(stopped["state"], "active", "{state}");
    assert!(
        stopped["query"]
            .as_str()
            .is_some_and(|q| q.contains(&marker)),
        "{state}"
    );
    assert!(
        run.stderr
            .contains("1 database session(s) of the migration command were still running SQL"),
        "{}",
        run.stderr
    );
}
