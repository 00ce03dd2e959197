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
