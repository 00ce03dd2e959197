//! The state directory `<root>/<deployment-id>/` and the contract between commands: every
//! command writes its result there as `<command>.json` (atomically, redacted); later commands —
//! in the same job, another container or another job through artifacts — read it back.
//!
//! Each file has one Rust type here (a [`StateFile`]): the writer serializes it, every reader
//! deserializes the same type, and `schema/<file>.schema.json` is generated from it. A file of
//! another `schema_version`, or one edited by hand into another shape, is refused with an error
//! naming the file and the field.

pub(crate) mod backup;
pub(crate) mod deployment_record;
pub(crate) mod drill;
pub(crate) mod gate;
mod header;
pub(crate) mod hook;
pub(crate) mod lease;
pub(crate) mod migrate;
pub(crate) mod notify;
pub(crate) mod pipeline;
pub(crate) mod record;
pub(crate) mod rollback;
pub(crate) mod rollout;
pub(crate) mod smoke;
pub(crate) mod validate;
pub(crate) mod watch;

pub(crate) use header::Header;

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where the state of this run lives: the root directory and, when given, the deployment id
/// (else the `latest` pointer names it). `Settings` resolves both.
pub(crate) trait StateRoot {
    fn state_root(&self) -> &Path;
    fn deployment_id(&self) -> Option<&str>;
}

/// One state file's shape: its name, the command that writes it and the schema version this
/// build reads and writes.
pub(crate) trait StateFile: Serialize + DeserializeOwned + schemars::JsonSchema {
    /// `gate.json`.
    const FILE: &'static str;
    /// `gate`.
    const COMMAND: &'static str;
    /// The version written in `schema_version`; readers refuse any other.
    const SCHEMA_VERSION: u32 = 1;
}

use crate::error::{Error, Result};

/// The file in the root that names the most recent deployment id, for local use.
const LATEST: &str = "latest";

/// Deployment ids end up in paths, object keys and artifact names: keep them plain.
pub(crate) fn check_deployment_id(id: &str) -> Result<()> {
    crate::inputs::check_name("deployment id", id)
}

/// Refuses a path that is a symbolic link: shipgate writes and reads its state only in real
/// files and directories, so a link placed in the state directory cannot send a write (or a read
/// that ends up in a report) anywhere else.
pub(crate) fn refuse_link(path: &Path, what: &str) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(Error::usage(format!(
            "the {what} `{}` is a symbolic link; shipgate only uses real files and directories there: remove the link (or point `--state-dir` at the real directory)",
            path.display()
        ))),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    root: PathBuf,
    dir: PathBuf,
    id: String,
}

impl StateDir {
    /// Creates (or reuses) the state directory of deployment `id` and marks it the latest: for
    /// the commands that start a deployment's state (`validate`, `gate`, `restore`, `pipeline`).
    pub(crate) fn create(root: &Path, id: &str) -> Result<StateDir> {
        let state = StateDir::at(root, id)?;
        state.ensure()?;
        Ok(state)
    }

    /// The state directory of deployment `id`, checked but not created: nothing is written (no
    /// directory, no `latest`) until the first state file is.
    pub(crate) fn at(root: &Path, id: &str) -> Result<StateDir> {
        check_deployment_id(id)?;
        let dir = root.join(id);
        refuse_link(&dir, "deployment's state directory")?;
        Ok(StateDir {
            root: root.to_path_buf(),
            dir,
            id: id.to_string(),
        })
    }

    /// Makes the directory and points `latest` at it; called before every write.
    fn ensure(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            Error::usage(format!(
                "cannot create the state directory `{}`: {e}; set `--state-dir` to a writable place",
                self.dir.display()
            ))
        })?;
        let latest = self.root.join(LATEST);
        let current = std::fs::read_to_string(&latest).unwrap_or_default();
        if current.trim() != self.id {
            crate::util::write_atomic(&latest, format!("{}\n", self.id).as_bytes())
                .map_err(|e| Error::usage(format!("cannot write `{}`: {e}", latest.display())))?;
        }
        Ok(())
    }

    /// The deployment id this run names: `--deployment-id` / input / `SHIPGATE_DEPLOYMENT_ID`,
    /// else the latest one.
    fn named(settings: &impl StateRoot) -> Result<String> {
        match settings.deployment_id() {
            Some(id) => Ok(id.to_string()),
            None => std::fs::read_to_string(settings.state_root().join(LATEST))
                .map(|s| s.trim().to_string())
                .map_err(|_| {
                    Error::usage(format!(
                        "no deployment id: run `shipgate validate` first, or pass `--deployment-id` (input `deployment-id`); looked in `{}`",
                        settings.state_root().display()
                    ))
                }),
        }
    }

    /// The state directory of this run's deployment (`--deployment-id` / input /
    /// `SHIPGATE_DEPLOYMENT_ID`, else the latest one). Nothing is created until the command
    /// writes its state, so a command refused for bad input leaves the state directory as it
    /// was.
    pub(crate) fn open(settings: &impl StateRoot) -> Result<StateDir> {
        StateDir::at(settings.state_root(), &StateDir::named(settings)?)
    }

    /// Like [`StateDir::open`], for commands that act on a deployment's earlier state (`record`,
    /// `notify`, `rollback`): a deployment with no state here is a usage error naming the id and
    /// the deployments that are here, so a mistyped id changes nothing.
    pub(crate) fn existing(settings: &impl StateRoot) -> Result<StateDir> {
        let state = StateDir::open(settings)?;
        if state.dir.is_dir() {
            return Ok(state);
        }
        let mut known: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&state.root)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| {
                        let modified = e
                            .metadata()
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH);
                        (modified, e.file_name().to_string_lossy().into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        known.sort_by_key(|k| std::cmp::Reverse(k.0));
        let listed = if known.is_empty() {
            "there is none".to_string()
        } else {
            let names: Vec<String> = known
                .iter()
                .take(5)
                .map(|(_, n)| format!("`{n}`"))
                .collect();
            format!("the newest are {}", names.join(", "))
        };
        Err(Error::usage(format!(
            "no state of deployment `{}` in `{}` ({listed}); check `--deployment-id`, or fetch that deployment's state first (the `shipgate-state-{}-*` artifacts)",
            state.id,
            state.root.display(),
            state.id
        )))
    }

    /// The state directory of this run's deployment if it already exists; never creates one
    /// (for commands that only look, such as `rollout --dry-run`).
    pub(crate) fn peek(settings: &impl StateRoot) -> Option<StateDir> {
        let id = match settings.deployment_id() {
            Some(id) => id.to_string(),
            None => std::fs::read_to_string(settings.state_root().join(LATEST))
                .ok()?
                .trim()
                .to_string(),
        };
        check_deployment_id(&id).ok()?;
        let dir = settings.state_root().join(&id);
        dir.is_dir().then_some(StateDir {
            root: settings.state_root().to_path_buf(),
            dir,
            id,
        })
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `value` as pretty JSON to `name`, atomically, with every secret redacted.
    pub(crate) fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<PathBuf> {
        let json = serde_json::to_string_pretty(value)
            .map_err(|e| Error::usage(format!("cannot serialize `{name}`: {e}")))?;
        self.ensure()?;
        let path = self.path(name);
        let text = crate::secret::redact(&json) + "\n";
        crate::util::write_atomic(&path, text.as_bytes()).map_err(|e| {
            Error::usage(format!(
                "cannot write the state file `{}`: {e}",
                path.display()
            ))
        })?;
        Ok(path)
    }

    /// Writes a state file of the contract under its own name.
    pub(crate) fn save<T: StateFile>(&self, value: &T) -> Result<PathBuf> {
        self.write_json(T::FILE, value)
    }

    /// Reads a state file of the contract; `None` when its command has not run for this
    /// deployment. A file of another `schema_version`, or one that does not have the shape this
    /// build writes, is a usage error naming the file and the field.
    pub(crate) fn load<T: StateFile>(&self) -> Result<Option<T>> {
        let path = self.path(T::FILE);
        refuse_link(&path, "state file")?;
        let text = match crate::inputs::read_text_file(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::usage(format!(
                    "cannot read the state file `{}`: {e}",
                    path.display()
                )));
            }
        };
        parse::<T>(&path, &text).map(Some)
    }

    /// Reads `name` back; `None` when that command has not run for this deployment.
    pub(crate) fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let path = self.path(name);
        refuse_link(&path, "state file")?;
        match crate::inputs::read_text_file(&path) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                Error::usage(format!(
                    "the state file `{}` is not valid: {e}; delete it and re-run the command that wrote it",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::usage(format!(
                "cannot read the state file `{}`: {e}",
                path.display()
            ))),
        }
    }
}

/// Only the version, read before the whole shape so an older or newer file gets the right message.
#[derive(serde::Deserialize)]
struct Version {
    schema_version: Option<serde_json::Value>,
}

/// Parses the text of state file `T` read from `path`.
pub(crate) fn parse<T: StateFile>(path: &Path, text: &str) -> Result<T> {
    let rerun = || {
        format!(
            "re-run `shipgate {}` with this shipgate, or delete the file",
            T::COMMAND
        )
    };
    let version: Version = serde_json::from_str(text).map_err(|e| {
        Error::usage(format!(
            "the state file `{}` is not a JSON object: {e}; {}",
            path.display(),
            rerun()
        ))
    })?;
    match version.schema_version {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(T::SCHEMA_VERSION.into()) => {}
        found => {
            let found = match found {
                None => "no `schema_version`".to_string(),
                Some(v) => format!("`schema_version` {v}"),
            };
            return Err(Error::usage(format!(
                "the state file `{}` has {found}, but this shipgate reads `schema_version` {} of `{}`; {}",
                path.display(),
                T::SCHEMA_VERSION,
                T::FILE,
                rerun()
            )));
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        Error::usage(format!(
            "the state file `{}` is not what `shipgate {}` writes: field `{field}`: {}; {}",
            path.display(),
            T::COMMAND,
            e.inner(),
            rerun()
        ))
    })
}

/// Every state file type, for the generated schemas (`schema/`).
#[cfg(test)]
pub(crate) fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    fn one<T: StateFile>() -> (&'static str, serde_json::Value) {
        let schema = schemars::schema_for!(T);
        (T::FILE, schema.to_value())
    }
    vec![
        one::<validate::ValidateFile>(),
        one::<gate::GateFile>(),
        one::<backup::BackupFile>(),
        one::<migrate::MigrateFile>(),
        one::<pipeline::PipelineFile>(),
        one::<notify::NotifyFile>(),
        one::<rollout::RolloutFile>(),
        one::<rollback::RollbackFile>(),
        one::<record::RecordFile>(),
        one::<smoke::SmokeFile>(),
        one::<drill::DrillFile>(),
        one::<lease::LeaseFile>(),
        one::<watch::WatchFile>(),
        (
            "deployment-record.json",
            schemars::schema_for!(deployment_record::Record).to_value(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `schema/<file>.schema.json` is generated from the types: run
    /// `SHIPGATE_BLESS=1 cargo test --bin shipgate state::tests::schemas` after changing one.
    #[test]
    fn schemas_in_the_repository_match_the_types() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        let bless = std::env::var_os("SHIPGATE_BLESS").is_some();
        let mut stale = Vec::new();
        for (file, schema) in schemas() {
            let name = format!("{}.schema.json", file.trim_end_matches(".json"));
            let path = dir.join(&name);
            let text = serde_json::to_string_pretty(&schema).expect("schema serializes") + "\n";
            if bless {
                std::fs::write(&path, &text).expect("write schema");
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(name);
            }
        }
        assert!(
            stale.is_empty(),
            "schema files out of date: {stale:?}; run `SHIPGATE_BLESS=1 cargo test --bin shipgate state::tests` and commit `schema/`"
        );
    }

    #[test]
    fn another_schema_version_or_a_wrong_field_names_the_file_and_field() {
        let path = Path::new("/state/x/validate.json");
        let err = parse::<validate::ValidateFile>(path, r#"{"schema_version": 2}"#)
            .expect_err("version 2 refused")
            .to_string();
        assert!(err.contains("`schema_version` 2"), "{err}");
        assert!(err.contains("/state/x/validate.json"), "{err}");
        let err = parse::<validate::ValidateFile>(path, r#"{"schema_version": 1, "command": "validate", "result": "pass", "timestamp": "t", "deployment_id": 7}"#)
            .expect_err("a number for a string refused")
            .to_string();
        assert!(err.contains("field `deployment_id`"), "{err}");
    }
}
