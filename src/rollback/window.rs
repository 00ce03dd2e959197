//! The rollback window: `record` writes its deadline into the deployment record; after it,
//! `shipgate rollback` refuses unless forced.

use std::time::Duration;

use crate::actions;
use crate::error::{Error, Result};

/// How long ago the window that ends at `deadline` (the record's `rollback_deadline`) closed;
/// `None` while it is open. A deadline that is not a timestamp is a usage error.
pub(crate) fn closed_since(deadline: &str, now: jiff::Timestamp) -> Result<Option<Duration>> {
    let deadline = deadline.parse::<jiff::Timestamp>().map_err(|_| {
        Error::usage(format!(
            "the record's `rollback_deadline` {} is not a timestamp; fix the record or pass `--force`",
            actions::quote(deadline)
        ))
    })?;
    Ok((now > deadline)
        .then(|| Duration::from_secs((now.as_second() - deadline.as_second()).max(0) as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_closed_and_unreadable_windows() {
        let now: jiff::Timestamp = "2026-01-01T12:00:00Z".parse().expect("timestamp");
        assert_eq!(
            closed_since("2026-01-01T13:00:00Z", now).expect("readable"),
            None
        );
        assert_eq!(
            closed_since("2026-01-01T11:00:00Z", now).expect("readable"),
            Some(Duration::from_secs(3600))
        );
        let error = closed_since("tomorrow", now).expect_err("not a timestamp");
        assert!(error.to_string().contains("`--force`"), "{error}");
    }
}
