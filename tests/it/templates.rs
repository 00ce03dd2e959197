//! The workflows, templates, `action.yml` and the docs agree with each other and with the
//! security checklist: every `with:` key of a shipgate step is a declared input, every output a
//! workflow reads is declared, no expression inside `run:`, pinned `uses:`, least privilege.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Action {
    inputs: BTreeSet<String>,
    outputs: BTreeSet<String>,
}

fn action() -> Action {
    let action = load(&root().join("action.yml"));
    let keys = |section: &str| -> BTreeSet<String> {
        action[section]
            .as_mapping()
            .unwrap_or_else(|| panic!("action.yml has no `{section}`"))
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect()
    };
    Action {
        inputs: keys("inputs"),
        outputs: keys("outputs"),
    }
}

fn workflow_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["workflows-templates", ".github/workflows"] {
        let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            ) {
                files.push(path);
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no workflows found");
    files
}

/// The subcommands `shipgate --help` lists.
fn subcommands() -> BTreeSet<String> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shipgate"))
        .arg("--help")
        .output()
        .expect("run shipgate --help");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let commands = text
        .split("Commands:")
        .nth(1)
        .expect("a Commands section")
        .split("\n\n")
        .next()
        .unwrap_or("");
    commands
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| *word != "help")
        .map(str::to_string)
        .collect()
}

fn is_shipgate(uses: &str) -> bool {
    uses.starts_with("./") && !uses.contains(".github/")
        || uses
            .split('@')
            .next()
            .is_some_and(|name| name.ends_with("/shipgate"))
}

/// Every `steps.<id>.outputs.<name>` in `text`.
fn step_output_refs(text: &str) -> Vec<(String, String)> {
    let mut refs = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("steps.") {
        rest = &rest[at + "steps.".len()..];
        let id: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            .collect();
        let after = &rest[id.len()..];
        if let Some(tail) = after.strip_prefix(".outputs.") {
            let name: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                .collect();
            refs.push((id, name));
        }
    }
    refs
}

#[test]
fn shipgate_steps_use_only_declared_inputs_and_outputs() {
    let action = action();
    let commands = subcommands();
    let mut shipgate_steps = 0;
    for path in workflow_files() {
        let workflow = load(&path);
        let text = std::fs::read_to_string(&path).expect("read");
        let Some(jobs) = workflow["jobs"].as_mapping() else {
            continue;
        };
        for (job_name, job) in jobs {
            let job_name = job_name.as_str().unwrap_or("?");
            let mut shipgate_ids = BTreeSet::new();
            for step in job["steps"].as_sequence().into_iter().flatten() {
                let Some(uses) = step["uses"].as_str() else {
                    continue;
                };
                if !is_shipgate(uses) {
                    continue;
                }
                shipgate_steps += 1;
                let with = step["with"].as_mapping().cloned().unwrap_or_default();
                for key in with.keys().filter_map(|k| k.as_str()) {
                    assert!(
                        action.inputs.contains(key),
                        "{}: job `{job_name}` passes `{key}`, which action.yml does not declare",
                        path.display()
                    );
                }
                let command = with
                    .get("command")
                    .and_then(|c| c.as_str())
                    .unwrap_or_else(|| {
                        panic!("{}: a shipgate step without `command`", path.display())
                    });
                assert!(
                    commands.contains(command),
                    "{}: `command: {command}` is not a shipgate subcommand ({commands:?})",
                    path.display()
                );
                if let Some(id) = step["id"].as_str() {
                    shipgate_ids.insert(id.to_string());
                }
            }
            let job_text = serde_yaml_ng::to_string(job).expect("job yaml");
            for (id, output) in step_output_refs(&job_text) {
                if shipgate_ids.contains(&id) {
                    assert!(
                        action.outputs.contains(&output),
                        "{}: job `{job_name}` reads `steps.{id}.outputs.{output}`, which action.yml does not declare",
                        path.display()
                    );
                }
            }
        }
        assert!(!text.is_empty());
    }
    assert!(shipgate_steps > 0, "no template uses shipgate");
}

#[test]
fn workflows_follow_the_security_checklist() {
    for path in workflow_files() {
        let workflow = load(&path);
        let name = path.display().to_string();
        assert!(
            workflow["permissions"]
                .as_mapping()
                .is_some_and(|m| m.is_empty()),
            "{name}: top-level `permissions: {{}}` is required; grant scopes per job"
        );
        let jobs = workflow["jobs"].as_mapping().expect("jobs");
        for (job_name, job) in jobs {
            let job_name = job_name.as_str().unwrap_or("?");
            // A job that calls a reusable workflow has no steps and takes its limits there.
            if job.get("uses").is_some() {
                continue;
            }
            assert!(
                job.get("timeout-minutes").is_some(),
                "{name}: job `{job_name}` needs `timeout-minutes`"
            );
            for step in job["steps"].as_sequence().into_iter().flatten() {
                if let Some(run) = step["run"].as_str() {
                    assert!(
                        !run.contains("${{"),
                        "{name}: job `{job_name}` has an expression inside `run:`; pass it through `env:`"
                    );
                }
                if let Some(uses) = step["uses"].as_str() {
                    if uses.starts_with("./") || uses.starts_with("docker://") {
                        continue;
                    }
                    let pin = uses.split('@').nth(1).unwrap_or("");
                    assert!(
                        pin.len() == 40 && pin.chars().all(|c| c.is_ascii_hexdigit()),
                        "{name}: `{uses}` is not pinned to a full commit SHA"
                    );
                    if uses.starts_with("actions/checkout@") {
                        assert_eq!(
                            step["with"]["persist-credentials"].as_bool(),
                            Some(false),
                            "{name}: checkout must set `persist-credentials: false`"
                        );
                    }
                }
            }
        }
    }
}

/// The Markdown pages a reader reads: README.md and docs/ (with docs/commands/), without the
/// generated ones (`docs/inputs.md` lists every input by construction; the rehearsal summary is
/// a run's output).
fn doc_pages(dir: &Path) -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    pages
}

#[test]
fn command_pages_tables_match_action_yml() {
    let action = action();
    let commands = doc_pages(&root().join("docs/commands"));
    let mut documented = BTreeSet::new();
    let mut tables = 0;
    for page in &commands {
        let text = std::fs::read_to_string(page).expect("command page");
        let Some(title) = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# ").or_else(|| l.strip_prefix("## ")))
        else {
            continue;
        };
        if !title.starts_with("`shipgate ") {
            continue;
        }
        let title = format!(
            "{} {title}",
            page.strip_prefix(root()).unwrap_or(page).display()
        );
        for table in text
            .split("\n\n")
            .filter(|b| b.trim_start().starts_with('|'))
        {
            let mut lines = table.trim().lines();
            let header = lines.next().unwrap_or("");
            let first = header.split('|').nth(1).unwrap_or("").trim();
            if first == "input" || first == "output" {
                tables += 1;
            }
            let names: Vec<String> = lines
                .skip(1)
                .filter_map(|row| row.split('|').nth(1))
                .flat_map(|cell| {
                    cell.split(',')
                        .filter_map(|part| part.trim().strip_prefix('`'))
                        .filter_map(|part| part.split('`').next())
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect();
            for name in names {
                match first {
                    "input" => {
                        assert!(
                            action.inputs.contains(&name),
                            "{title}: input `{name}` is not in action.yml"
                        );
                        documented.insert(name);
                    }
                    "output" => assert!(
                        action.outputs.contains(&name),
                        "{title}: output `{name}` is not in action.yml"
                    ),
                    _ => {}
                }
            }
        }
    }
    assert!(
        tables > 0,
        "no input or output table found in docs/commands/*.md ({} pages)",
        commands.len()
    );
    let mut prose = std::fs::read_to_string(root().join("README.md")).expect("README");
    for page in doc_pages(&root().join("docs"))
        .into_iter()
        .chain(commands)
        .filter(|p| !p.ends_with("docs/inputs.md") && !p.ends_with("docs/rehearsal-summary.md"))
    {
        prose.push_str(&std::fs::read_to_string(&page).expect("docs page"));
    }
    for input in &action.inputs {
        if [
            "command",
            "config",
            "state-dir",
            "deployment-id",
            "environment",
        ]
        .contains(&input.as_str())
        {
            continue;
        }
        assert!(
            documented.contains(input) || prose.contains(&format!("`{input}`")),
            "action.yml input `{input}` is documented nowhere in README.md or docs/"
        );
    }
}

#[test]
fn the_released_image_tag_is_the_crate_version() {
    let action = load(&root().join("action.yml"));
    let image = action["runs"]["image"].as_str().expect("runs.image");
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("package version");
    // On main, the last release's tag; a release commit pins its image by digest
    // (`release_commits_pin_a_multi_arch_image_by_digest`).
    assert_eq!(
        image,
        format!("docker://ghcr.io/shipgate-dev/shipgate:{version}"),
        "action.yml must run the image of this version"
    );
    let args = serde_yaml_ng::to_string(&action["runs"]["args"]).expect("args");
    assert!(
        !args.contains("token") && !args.contains("url") && !args.contains("password"),
        "secrets never travel in `args:`: {args}"
    );
}

/// The release workflow builds the image natively for amd64 and arm64, joins them in one
/// index, and releases a commit whose action.yml runs that index by digest
/// (`scripts/pin-image.sh`, run here on a copy of action.yml).
#[test]
fn release_commits_pin_a_multi_arch_image_by_digest() {
    let release = load(&root().join(".github/workflows/release.yml"));
    assert!(
        release["on"]["workflow_dispatch"]["inputs"]["version"].is_mapping(),
        "released by hand with a version, so the tagged commit can carry the digest"
    );
    let jobs = &release["jobs"];
    let arches: Vec<(String, String)> = jobs["image"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .expect("an image matrix")
        .iter()
        .map(|m| {
            (
                m["arch"].as_str().expect("arch").to_string(),
                m["runner"].as_str().expect("runner").to_string(),
            )
        })
        .collect();
    assert_eq!(
        arches,
        [
            ("amd64".to_string(), "ubuntu-24.04".to_string()),
            ("arm64".to_string(), "ubuntu-24.04-arm".to_string())
        ],
        "each platform built natively"
    );
    let text = std::fs::read_to_string(root().join(".github/workflows/release.yml")).expect("io");
    assert!(text.contains("platforms: linux/${{ matrix.arch }}"));
    assert!(text.contains("push-by-digest=true"));
    assert!(text.contains("docker buildx imagetools create"));
    let needs = |job: &str| -> Vec<String> {
        match &jobs[job]["needs"] {
            Value::String(one) => vec![one.clone()],
            Value::Sequence(many) => many
                .iter()
                .map(|n| n.as_str().expect("need").to_string())
                .collect(),
            _ => Vec::new(),
        }
    };
    assert!(needs("manifest").contains(&"image".to_string()));
    assert!(needs("release-commit").contains(&"manifest".to_string()));
    assert!(needs("release-commit").contains(&"binaries".to_string()));
    assert!(needs("github-release").contains(&"release-commit".to_string()));
    let pin = serde_yaml_ng::to_string(&jobs["release-commit"]).expect("yaml");
    assert!(pin.contains("scripts/pin-image.sh action.yml"), "{pin}");

    let dir = tempfile::tempdir().expect("tmp");
    let copy = dir.path().join("action.yml");
    let original = std::fs::read_to_string(root().join("action.yml")).expect("action.yml");
    std::fs::write(&copy, &original).expect("copy");
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let pin = |image: &str, digest: &str| {
        std::process::Command::new("bash")
            .arg(root().join("scripts/pin-image.sh"))
            .args([copy.to_str().expect("utf-8"), image, digest])
            .output()
            .expect("bash")
    };
    let out = pin("ghcr.io/acme/shipgate", &digest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pinned = std::fs::read_to_string(&copy).expect("pinned");
    assert_eq!(
        load(&copy)["runs"]["image"].as_str(),
        Some(format!("docker://ghcr.io/acme/shipgate@{digest}").as_str())
    );
    let changed: Vec<(&str, &str)> = original
        .lines()
        .zip(pinned.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 1, "only the image line changes: {changed:?}");
    assert_eq!(original.lines().count(), pinned.lines().count());

    for (image, digest, says) in [
        (
            "ghcr.io/acme/shipgate",
            "sha256:abc",
            "is not an image digest",
        ),
        (
            "ghcr.io/acme/shipgate:1.0.0",
            digest.as_str(),
            "is not an image name",
        ),
        (
            "ghcr.io/Acme/shipgate",
            digest.as_str(),
            "is not an image name",
        ),
    ] {
        let out = pin(image, digest);
        assert_eq!(out.status.code(), Some(2), "{image} {digest}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{image} {digest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        std::fs::read_to_string(&copy).expect("io"),
        pinned,
        "a refused pin changes nothing"
    );
}

// ---------------------------------------------------------------------------------------------
// GitHub Enterprise Server: v4 artifact actions are not supported there, v3 are.

/// github.com and GHE.com (`*.ghe.com`, data residency) serve the v4 artifact actions; any other
/// server is GHES (actions/toolkit's `isGhes`, and shipgate's `artifacts::is_ghes`).
const DOTCOM: &str =
    "github.server_url == 'https://github.com' || endsWith(github.server_url, '.ghe.com')";
const GHES: &str =
    "github.server_url != 'https://github.com' && !endsWith(github.server_url, '.ghe.com')";

/// `(action, major)` of the pinned artifact actions, by pin.
fn artifact_action(uses: &str) -> Option<(&'static str, u8)> {
    let (action, pin) = uses.split_once('@')?;
    let known = [
        (
            "actions/upload-artifact",
            "ea165f8d65b6e75b540449e92b4886f43607fa02",
            4,
        ), // v4.6.2
        (
            "actions/download-artifact",
            "d3f86a106a0bac45b974a628896c90dbdf5c8093",
            4,
        ), // v4.3.0
        (
            "actions/upload-artifact",
            "a8a3f3ad30e3422c9c7b888a15615d19a852ae32",
            3,
        ), // v3.1.3
        (
            "actions/download-artifact",
            "9bc31d5ccc31df68ecc42ccf4149144866c47d8a",
            3,
        ), // v3.0.2
    ];
    if !action.ends_with("-artifact") || !action.starts_with("actions/") {
        return None;
    }
    let found = known
        .iter()
        .find(|(a, p, _)| *a == action && *p == pin)
        .unwrap_or_else(|| {
            panic!("`{uses}`: not a known v4 or v3 pin; add it to the table with its GHES rule")
        });
    Some((found.0, found.2))
}

/// The `if:` of the GHES twin of a step guarded by `if:` `dotcom`; `None` when `dotcom` does not
/// end with the github.com test.
fn ghes_twin_condition(dotcom: &str) -> Option<String> {
    let inner = dotcom
        .trim()
        .strip_prefix("${{")?
        .strip_suffix("}}")?
        .trim();
    if inner == DOTCOM {
        return Some(format!("${{{{ {GHES} }}}}"));
    }
    let rest = inner.strip_suffix(&format!(" && ({DOTCOM})"))?;
    Some(format!("${{{{ {rest} && {GHES} }}}}"))
}

#[test]
fn artifact_steps_come_in_github_com_and_ghes_pairs() {
    let v3_inputs = |action: &str| -> &'static [&'static str] {
        if action == "actions/upload-artifact" {
            &["name", "path", "if-no-files-found", "retention-days"]
        } else {
            &["name", "path"]
        }
    };
    let mut pairs = 0;
    for path in workflow_files() {
        // shipgate's own release runs on github.com only.
        if path.ends_with(".github/workflows/release.yml") {
            continue;
        }
        let name = path.display().to_string();
        let workflow = load(&path);
        let Some(jobs) = workflow["jobs"].as_mapping() else {
            continue;
        };
        for (job_name, job) in jobs {
            let job_name = job_name.as_str().unwrap_or("?");
            let steps: Vec<&Value> = job["steps"].as_sequence().into_iter().flatten().collect();
            let cond = |s: &Value| s["if"].as_str().unwrap_or("").trim().to_string();
            let with_keys = |s: &Value| -> Vec<String> {
                s["with"]
                    .as_mapping()
                    .map(|m| {
                        m.keys()
                            .filter_map(|k| k.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            for (at, step) in steps.iter().enumerate() {
                let Some((action, major)) = step["uses"].as_str().and_then(artifact_action) else {
                    continue;
                };
                let step_name = step["name"].as_str().unwrap_or("?");
                let here = format!("{name}: job `{job_name}`, step `{step_name}`");
                if major == 3 {
                    let c = cond(step);
                    assert!(
                        c.ends_with(&format!("{GHES} }}}}")),
                        "{here}: a v3 artifact step runs on GHES only (`if:` ending in `{GHES}`), not `{c}`"
                    );
                    for key in with_keys(step) {
                        assert!(
                            v3_inputs(action).contains(&key.as_str()),
                            "{here}: `{key}` is not an input of {action} v3"
                        );
                    }
                    continue;
                }
                let twin_if = ghes_twin_condition(&cond(step)).unwrap_or_else(|| {
                    panic!(
                        "{here}: a v4 artifact step needs `if: ${{{{ {DOTCOM} }}}}` (or `<condition> && ({DOTCOM})`) and a GHES twin; it has `{}`",
                        cond(step)
                    )
                });
                let twins: Vec<&&Value> = steps.iter().filter(|s| cond(s) == twin_if).collect();
                let from_another_run = step["with"].get("run-id").is_some();
                let twin = twins.iter().find(|s| {
                    if from_another_run {
                        // v3 reads only this run's artifacts: the REST API fetches the other's.
                        s["run"]
                            .as_str()
                            .is_some_and(|r| r.contains("GITHUB_API_URL"))
                    } else {
                        s["uses"].as_str().and_then(artifact_action) == Some((action, 3))
                    }
                });
                let twin = twin.unwrap_or_else(|| {
                    panic!("{here}: no GHES twin ({action} v3, or a REST fetch for another run's artifact) with `if: {twin_if}`")
                });
                pairs += 1;
                if from_another_run {
                    continue;
                }
                if action == "actions/upload-artifact" {
                    for key in ["name", "path", "retention-days"] {
                        assert_eq!(
                            twin["with"][key], step["with"][key],
                            "{here}: the GHES twin uploads a different `{key}`"
                        );
                    }
                } else if let Some(pattern) = step["with"]["pattern"].as_str() {
                    // v3 has no `pattern`: it downloads every artifact of the run, and a `run:`
                    // step merges this deployment's state directories into `path`.
                    assert!(
                        twin["with"].get("name").is_none(),
                        "{here}: the GHES twin downloads by name; it must download all"
                    );
                    let merge = steps[at..]
                        .iter()
                        .find(|s| cond(s) == twin_if && s.get("run").is_some())
                        .unwrap_or_else(|| panic!("{here}: no merge step after the GHES download"));
                    assert_eq!(
                        merge["env"]["PREFIX"].as_str(),
                        pattern.strip_suffix('*'),
                        "{here}: the merge takes another prefix than `{pattern}`"
                    );
                    assert_eq!(
                        merge["env"]["TARGET"], step["with"]["path"],
                        "{here}: the merge fills another directory"
                    );
                    assert_eq!(
                        merge["env"]["DOWNLOADED"], twin["with"]["path"],
                        "{here}: the merge reads another directory than the download fills"
                    );
                } else {
                    for key in ["name", "path"] {
                        assert_eq!(
                            twin["with"][key], step["with"][key],
                            "{here}: the GHES twin downloads a different `{key}`"
                        );
                    }
                }
            }
        }
    }
    assert!(pairs >= 40, "only {pairs} github.com/GHES pairs found");
}

/// `record`, `rollback` and `drill` upload their artifacts through the results service, absent on
/// GHES: there they stage them in `<state-dir>/<id>/artifacts/<name>/`, and the job publishes
/// those directories with the v3 action under the same names.
#[test]
fn on_ghes_every_job_that_stages_artifacts_publishes_them() {
    let documents = [
        (
            "record",
            &["deployment-record-", "rollback-instructions-"][..],
        ),
        ("rollback", &["deployment-record-", "incident-"][..]),
        ("drill", &["drill-report-"][..]),
    ];
    let mut jobs_checked = 0;
    for path in workflow_files() {
        let name = path.display().to_string();
        let workflow = load(&path);
        let Some(jobs) = workflow["jobs"].as_mapping() else {
            continue;
        };
        for (job_name, job) in jobs {
            let job_name = job_name.as_str().unwrap_or("?");
            let steps: Vec<&Value> = job["steps"].as_sequence().into_iter().flatten().collect();
            for (command, names) in documents {
                let stages = steps.iter().any(|s| {
                    s["uses"].as_str().is_some_and(is_shipgate)
                        && s["with"]["command"].as_str() == Some(command)
                });
                if !stages {
                    continue;
                }
                jobs_checked += 1;
                for prefix in names {
                    let published = steps.iter().any(|s| {
                        s["uses"].as_str().and_then(artifact_action)
                            == Some(("actions/upload-artifact", 3))
                            && s["if"].as_str().is_some_and(|c| c.contains(GHES))
                            && s["with"]["name"]
                                .as_str()
                                .is_some_and(|n| n.starts_with(prefix))
                            && s["with"]["path"].as_str().is_some_and(|p| {
                                p.starts_with(".shipgate/")
                                    && p.contains("/artifacts/")
                                    && p.trim_end_matches('/')
                                        .ends_with(s["with"]["name"].as_str().unwrap_or("\u{0}"))
                            })
                    });
                    assert!(
                        published,
                        "{name}: job `{job_name}` runs `{command}` but does not publish `{prefix}<id>` from `.shipgate/<id>/artifacts/` on GHES"
                    );
                }
            }
        }
    }
    assert!(jobs_checked >= 9, "only {jobs_checked} jobs checked");
}

/// The `run:` script of `step` in `workflows-templates/<file>`.
fn run_script(file: &str, step: &str) -> String {
    let workflow = load(&root().join("workflows-templates").join(file));
    let jobs = workflow["jobs"].as_mapping().expect("jobs");
    jobs.values()
        .flat_map(|job| job["steps"].as_sequence().into_iter().flatten())
        .find(|s| s["name"].as_str() == Some(step))
        .and_then(|s| s["run"].as_str())
        .unwrap_or_else(|| panic!("{file}: no `run:` step `{step}`"))
        .to_string()
}

/// A loopback stand-in for a GHES instance: the REST API under `/api/v3` (run 123's artifact
/// list, built from the port; artifact 7's zip answered with a redirect, as GitHub does) and
/// the storage the redirect points at. Returns the port and the requests seen (path and
/// Authorization header).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

fn fake_ghes(
    listing: impl Fn(u16) -> serde_json::Value + Send + 'static,
    zip: Vec<u8>,
) -> (u16, Seen) {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen: Seen = Default::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut auth = None;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = header.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    auth = Some(v.trim().to_string());
                }
            }
            log.lock().expect("log").push((path.clone(), auth));
            let (status, extra, body): (&str, String, Vec<u8>) =
                if path.starts_with("/api/v3/repos/octo/app/actions/runs/123/artifacts?") {
                    (
                        "200 OK",
                        String::new(),
                        listing(port).to_string().into_bytes(),
                    )
                } else if path == "/api/v3/repos/octo/app/actions/artifacts/7/zip" {
                    (
                        "302 Found",
                        format!("Location: http://127.0.0.1:{port}/storage/7.zip?sig=signed\r\n"),
                        Vec::new(),
                    )
                } else if path == "/storage/7.zip?sig=signed" {
                    ("200 OK", String::new(), zip.clone())
                } else {
                    ("404 Not Found", String::new(), b"{}".to_vec())
                };
            let head = format!(
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (port, seen)
}

fn artifact_entry(port: u16, id: u64, name: &str, expired: bool) -> serde_json::Value {
    serde_json::json!({
        "id": id, "name": name, "expired": expired,
        "archive_download_url": format!("http://127.0.0.1:{port}/api/v3/repos/octo/app/actions/artifacts/{id}/zip"),
    })
}

/// GHES: `rollback.yml` fetches the deploying run's record through the REST API at
/// GITHUB_API_URL (download-artifact@v3 reads only the current run), and the token never goes
/// to the storage the zip redirects to.
#[test]
fn on_ghes_rollback_fetches_the_record_of_another_run_through_the_rest_api() {
    let script = run_script("rollback.yml", "Fetch the deployment record (GHES)");
    let work = tempfile::tempdir().expect("tempdir");
    let zip_path = work.path().join("record.zip");
    let made = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w') as z: z.writestr('deployment-record-123-abcdef0.json', '{\"status\": \"success\"}')",
        ])
        .arg(&zip_path)
        .status()
        .expect("python3 (the GHES fetch needs it on the runner too)");
    assert!(made.success());
    let zip = std::fs::read(&zip_path).expect("zip");
    let fetch = |listing: fn(u16) -> serde_json::Value| {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, seen) = fake_ghes(listing, zip.clone());
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GITHUB_API_URL", format!("http://127.0.0.1:{port}/api/v3"))
            .env("GITHUB_REPOSITORY", "octo/app")
            .env("GH_TOKEN", "ghs_secret")
            .env("RUN_ID", "123")
            .env("ARTIFACT", "deployment-record-123-abcdef0")
            .output()
            .expect("bash");
        let seen = seen.lock().expect("seen").clone();
        (output, seen, dir)
    };

    // The run's artifacts: another one, an expired copy, and the record.
    let (output, seen, dir) = fetch(|port| {
        serde_json::json!({ "total_count": 3, "artifacts": [
            artifact_entry(port, 5, "shipgate-state-123-abcdef0-deployment-record", false),
            artifact_entry(port, 6, "deployment-record-123-abcdef0", true),
            artifact_entry(port, 7, "deployment-record-123-abcdef0", false),
        ]})
    });
    assert!(
        output.status.success(),
        "the fetch failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let record =
        std::fs::read_to_string(dir.path().join("record/deployment-record-123-abcdef0.json"))
            .expect("the record is where the rollback step reads it");
    assert_eq!(record, r#"{"status": "success"}"#);
    let paths: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/v3/repos/octo/app/actions/runs/123/artifacts?per_page=100&page=1",
            "/api/v3/repos/octo/app/actions/artifacts/7/zip",
            "/storage/7.zip?sig=signed",
        ]
    );
    assert_eq!(seen[0].1.as_deref(), Some("Bearer ghs_secret"));
    assert_eq!(seen[1].1.as_deref(), Some("Bearer ghs_secret"));
    assert_eq!(seen[2].1, None, "the token went on to the storage");

    // No such record (expired, or the deployment never reached the record): an error that says so.
    let (output, _, _) = fetch(|port| {
        serde_json::json!({ "total_count": 1, "artifacts": [
            artifact_entry(port, 6, "deployment-record-123-abcdef0", true),
        ]})
    });
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("::error title=No deployment record::run 123 has no artifact deployment-record-123-abcdef0"),
        "{stdout}"
    );
    assert!(!stdout.contains("ghs_secret"));
}

/// The GHES twin of the reusable workflow is the same workflow, except that no environment says
/// `deployment` (a key GitHub documents for github.com and GHE.com only) and its name says GHES.
#[test]
fn the_ghes_reusable_workflow_is_deploy_yml_without_environment_deployment() {
    let mut github = load(&root().join(".github/workflows/deploy.yml"));
    let ghes = load(&root().join(".github/workflows/deploy-ghes.yml"));
    let mut removed = 0;
    for (_, job) in github["jobs"].as_mapping_mut().expect("jobs").iter_mut() {
        if let Some(environment) = job.get_mut("environment").and_then(|e| e.as_mapping_mut())
            && environment.remove("deployment").is_some()
        {
            removed += 1;
        }
    }
    assert!(
        removed > 0,
        "deploy.yml has no `deployment: false` left to strip"
    );
    for (name, job) in ghes["jobs"].as_mapping().expect("jobs") {
        assert!(
            job.get("environment")
                .and_then(|e| e.get("deployment"))
                .is_none(),
            "{name:?} says `deployment` in deploy-ghes.yml"
        );
    }
    assert_eq!(ghes["name"], Value::from("Deploy (reusable, GHES)"));
    github["name"] = ghes["name"].clone();
    assert_eq!(
        github, ghes,
        "deploy-ghes.yml differs from deploy.yml beyond `deployment`: run `python3 scripts/ghes-workflow.py`"
    );
}
