//! The state directory `<root>/<deployment-id>/`: every command writes its result there as
//! `<command>.json` (atomically, redacted); later commands — in the same job, another container
//! or another job through artifacts — read it back.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::settings::Settings;

/// The file in the root that names the most recent deployment id, for local use.
const LATEST: &str = "latest";

/// Deployment ids end up in paths, object keys and artifact names: keep them plain.
pub(crate) fn check_deployment_id(id: &str) -> Result<()> {
    crate::settings::check_name("deployment id", id)
}

#[allow(dead_code)] // shared API: used by the commands of the next issues
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    dir: PathBuf,
    id: String,
}

#[allow(dead_code)] // shared API: used by the commands of the next issues
impl StateDir {
    /// Creates (or reuses) the state directory of deployment `id` and marks it the latest.
    pub(crate) fn create(root: &Path, id: &str) -> Result<StateDir> {
        check_deployment_id(id)?;
        let dir = root.join(id);
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::usage(format!(
                "cannot create the state directory `{}`: {e}; set `--state-dir` to a writable place",
                dir.display()
            ))
        })?;
        crate::util::write_atomic(&root.join(LATEST), format!("{id}\n").as_bytes()).map_err(
            |e| {
                Error::usage(format!(
                    "cannot write `{}`: {e}",
                    root.join(LATEST).display()
                ))
            },
        )?;
        Ok(StateDir {
            dir,
            id: id.to_string(),
        })
    }

    /// The state directory of this run's deployment: `--deployment-id` / input /
    /// `SHIPGATE_DEPLOYMENT_ID`, else the latest one `validate` created.
    pub(crate) fn open(settings: &Settings) -> Result<StateDir> {
        let id = match &settings.deployment_id {
            Some(id) => id.clone(),
            None => std::fs::read_to_string(settings.state_root.join(LATEST))
                .map(|s| s.trim().to_string())
                .map_err(|_| {
                    Error::usage(format!(
                        "no deployment id: run `shipgate validate` first, or pass `--deployment-id` (input `deployment-id`); looked in `{}`",
                        settings.state_root.display()
                    ))
                })?,
        };
        StateDir::create(&settings.state_root, &id)
    }

    /// The state directory of this run's deployment if it already exists; never creates one
    /// (for commands that only look, such as `rollout --dry-run`).
    pub(crate) fn peek(settings: &Settings) -> Option<StateDir> {
        let id = match &settings.deployment_id {
            Some(id) => id.clone(),
            None => std::fs::read_to_string(settings.state_root.join(LATEST))
                .ok()?
                .trim()
                .to_string(),
        };
        check_deployment_id(&id).ok()?;
        let dir = settings.state_root.join(&id);
        dir.is_dir().then_some(StateDir { dir, id })
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

    /// Reads `name` back; `None` when that command has not run for this deployment.
    pub(crate) fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let path = self.path(name);
        match std::fs::read_to_string(&path) {
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
