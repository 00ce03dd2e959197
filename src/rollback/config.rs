//! The `rollback:` section of `shipgate.yml`, read by `shipgate rollback`.

use serde::Deserialize;

use crate::hooks::CommandLine;
use crate::util::HumanDuration;

/// The `rollback:` section of `shipgate.yml`. The hook keys are `rollout:`'s (same names, same
/// forms); each one absent here is read from the `rollout:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    /// One line (split like a shell would, no expansion; `sh -c` with `hook-shell`) or an argv
    /// list.
    pub(crate) rollback_hook: Option<CommandLine>,
    pub(crate) hook_shell: Option<bool>,
    pub(crate) hook_timeout: Option<HumanDuration>,
    pub(crate) hook_retries: Option<u32>,
    pub(crate) restore_command: Option<String>,
    pub(crate) health_urls: Option<Vec<String>>,
    pub(crate) health_timeout: Option<HumanDuration>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_hook_keys_are_rollouts() {
        let file: FileConfig = serde_yaml_ng::from_str(
            "rollback-hook: [kubectl, rollout, undo]\nhook-timeout: 5m\nhook-retries: 0",
        )
        .expect("argv");
        assert!(matches!(file.rollback_hook, Some(CommandLine::Argv(ref a)) if a.len() == 3));
        assert_eq!(
            file.hook_timeout,
            Some(HumanDuration(Duration::from_secs(300)))
        );
        let line: FileConfig =
            serde_yaml_ng::from_str("rollback-hook: ./rollback.sh prod").expect("line");
        assert!(matches!(line.rollback_hook, Some(CommandLine::Line(_))));
        // The old key is gone, with an error naming it rather than silently ignoring it.
        assert!(serde_yaml_ng::from_str::<FileConfig>("command: ./rollback.sh").is_err());
    }
}
