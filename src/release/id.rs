//! The deployment id: `<run id>-<short sha>`, the same for every job and re-run of a workflow
//! run.

/// `<GITHUB_RUN_ID>-<sha7>` in Actions (the same for every re-run attempt), else
/// `<unix-seconds>-<sha7>`.
pub(crate) fn deployment_id(sha: &str) -> String {
    deployment_id_of(crate::inputs::env("GITHUB_RUN_ID").as_deref(), sha)
}

/// `<run id>-<short sha>`: the same for every job and re-run attempt of one workflow run; a
/// timestamp stands in for the run id outside Actions (or for one that is not a number).
pub(crate) fn deployment_id_of(run_id: Option<&str>, sha: &str) -> String {
    let short: String = sha.chars().take(7).collect();
    match run_id.filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit())) {
        Some(run_id) => format!("{run_id}-{short}"),
        None => format!("{}-{short}", jiff::Timestamp::now().as_second()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_makes_the_deployment_id_stable() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(deployment_id_of(Some("4242"), sha), "4242-0123456");
        assert_eq!(
            deployment_id_of(Some("4242"), sha),
            deployment_id_of(Some("4242"), sha),
            "every job of the run derives the same id"
        );
        // Outside Actions, or with a run id that is not a number, a timestamp stands in.
        for run_id in [None, Some(""), Some("../x")] {
            let id = deployment_id_of(run_id, sha);
            let (stamp, short) = id.split_once('-').expect("two parts");
            assert_eq!(short, "0123456");
            assert!(
                stamp.parse::<i64>().expect("a timestamp") > 1_700_000_000,
                "{id}"
            );
        }
    }
}
