//! Progress on a terminal (issue 17 §7): the real binary on a pseudo-terminal redraws one line
//! in place (`\r`, erase line) with a bar and percent, coloured unless `NO_COLOR` is set, and
//! ends it with a newline before any other line. Without a terminal (every other test) the same
//! progress is plain lines.

use crate::backup::{Case, big_database, pg, s3};
use crate::rollout::{VERSION, World, canary, stages};
use crate::support::health_server::Reply;

/// The redraws in what the terminal received: the text after each `\r` + erase-line.
fn redraws(screen: &str) -> Vec<&str> {
    screen.split("\r\x1b[2K").skip(1).collect()
}

/// A redraw is followed by another redraw or ended by a line end before anything else is
/// written, so other lines never start in the middle of a progress line.
fn assert_redraws_are_ended(screen: &str) {
    for redraw in redraws(screen) {
        let (_, after) = redraw
            .split_once("\x1b[?7h")
            .unwrap_or_else(|| panic!("a redraw turns wrapping back on: {redraw:?}"));
        assert!(
            after.is_empty() || after.starts_with("\r\n"),
            "a progress line was not ended before {after:?}"
        );
    }
}

#[test]
fn backup_and_restore_redraw_progress_in_place_on_a_terminal() {
    let db = big_database();
    let bucket = s3().create_bucket();
    for no_color in [false, true] {
        let case = Case::new();
        let mut cmd = case.shipgate(db);
        cmd.env("TERM", "xterm-256color")
            .input("destination", &format!("s3://{bucket}/tty"));
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        let run = cmd.args(["backup"]).run_in_terminal();
        assert_eq!(run.code, 0, "{}", run.stdout);
        let screen = &run.stdout;
        let dumping: Vec<&str> = redraws(screen)
            .into_iter()
            .filter(|r| r.contains(" dumped, "))
            .collect();
        assert!(
            !dumping.is_empty(),
            "no progress redrawn in place: {screen:?}"
        );
        // A percent of `pg_database_size`'s estimate, with the rate and the ETA.
        assert!(
            dumping
                .iter()
                .any(|r| r.contains("%") && r.contains("/s)") && r.contains("ETA")),
            "{dumping:?}"
        );
        assert_redraws_are_ended(screen);
        if no_color {
            assert!(
                !screen.contains("\x1b[36m"),
                "colour despite NO_COLOR: {screen:?}"
            );
            assert!(
                !screen.contains("\x1b[1m"),
                "bold despite NO_COLOR: {screen:?}"
            );
        } else {
            assert!(screen.contains("\x1b[36m"), "no colour: {screen:?}");
            assert!(screen.contains("\x1b[0m"), "colour left on: {screen:?}");
        }
        assert!(screen.contains("\r\nverified `"), "{screen:?}");

        if no_color {
            continue;
        }
        // The restore streams the backup in: its progress is of the bytes stored.
        let target = pg().create_database("tty_target");
        let run = case
            .shipgate(db)
            .env("TERM", "xterm-256color")
            .input("target-database-url", &pg().url(&target))
            .input("confirm", "true")
            .args([
                "restore",
                "--location",
                &format!("s3://{bucket}/tty/backup-{}.sql.gz", case.id),
            ])
            .run_in_terminal();
        assert_eq!(run.code, 0, "{}", run.stdout);
        let screen = &run.stdout;
        assert!(
            redraws(screen).iter().any(|r| r.contains("to read)")),
            "no restore progress redrawn in place: {screen:?}"
        );
        assert_redraws_are_ended(screen);
    }
}

/// `shipgate rollout` of `world` on a pseudo-terminal, probing a healthy canary through `stages`.
fn rollout_on_a_terminal(world: &World, specs: &[&str]) -> crate::support::cli::Run {
    let server = canary(world, vec![Reply::healthy(VERSION)]);
    world
        .shipgate()
        .env("TERM", "xterm-256color")
        .args(["--endpoint", &server.url("/health")])
        .args(stages(specs))
        .run_in_terminal()
}

#[test]
fn a_rollout_counts_its_stage_down_in_place_and_a_signal_ends_the_line() {
    // Healthy to its end: each stage is redrawn with its bar, what is left and the window.
    let world = World::new();
    let run = rollout_on_a_terminal(&world, &["canary:5:2s", "full:100:1s"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let screen = &run.stdout;
    for stage in ["canary 5% · ", "full 100% · "] {
        assert!(
            redraws(screen)
                .iter()
                .any(|r| r.contains(stage) && r.contains(" left · ") && r.contains("%\x1b[0m ")),
            "no countdown of `{stage}` redrawn in place with its bar: {screen:?}"
        );
    }
    assert_redraws_are_ended(screen);

    // SIGINT in the middle of a redrawn stage: the line is ended before shipgate says why it
    // stops, and the rollback's lines follow on lines of their own.
    let world = World::new();
    world.hook(
        "stage-hook.sh",
        "shipgate=$PPID\nsetsid sh -c \"sleep 1; kill -INT $shipgate\" </dev/null >/dev/null 2>&1 &",
    );
    let run = rollout_on_a_terminal(&world, &["canary:5:60s", "full:100:1s"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let screen = &run.stdout;
    assert!(
        redraws(screen).iter().any(|r| r.contains("canary 5% · ")),
        "the canary stage was not redrawn before the signal: {screen:?}"
    );
    assert!(
        screen.contains("\r\nwarning: received SIGINT"),
        "the signal's line does not start on a line of its own: {screen:?}"
    );
    assert_redraws_are_ended(screen);
    assert_eq!(world.result()["result"], "rolled_back");
}
