//! Smoke snapshots (`shipgate smoke --snapshot NAME`): values recorded before the deploy in
//! `smoke-snapshot-<name>.json`, which the suite's `before` / `growth` asserts compare with after
//! it: the tests a snapshot takes, the values it keeps, and loading it back checked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::runner::{SnapshotValues, TestResult};
use super::suite::Suite;
use crate::error::{Error, Result};
use crate::state::StateDir;

/// `smoke-snapshot-<name>.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotFile {
    pub(crate) schema_version: u32,
    pub(crate) command: String,
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) result: String,
    pub(crate) timestamp: String,
    pub(crate) deployment_id: String,
    pub(crate) values: SnapshotValues,
}

pub(crate) fn file_name(name: &str) -> String {
    format!("smoke-snapshot-{name}.json")
}

/// All tests; with `--snapshot NAME`, the tests of that snapshot and what they depend on.
pub(crate) fn select(suite: &Suite, snapshot: Option<&str>) -> Result<Vec<bool>> {
    let Some(name) = snapshot else {
        return Ok(vec![true; suite.tests.len()]);
    };
    let mut selected = vec![false; suite.tests.len()];
    let mut stack: Vec<usize> = suite
        .tests
        .iter()
        .enumerate()
        .filter(|(_, t)| t.snapshot.as_deref() == Some(name))
        .map(|(i, _)| i)
        .collect();
    if stack.is_empty() {
        return Err(Error::usage(format!(
            "no test of the suite has `snapshot: {name}`; add it to the tests whose values are compared after the deploy"
        )));
    }
    while let Some(i) = stack.pop() {
        if !selected[i] {
            selected[i] = true;
            stack.extend(suite.tests[i].deps.iter().copied());
        }
    }
    Ok(selected)
}

/// The snapshots the suite compares with, each checked to hold every value it needs.
pub(crate) fn load(state: &StateDir, suite: &Suite) -> Result<BTreeMap<String, SnapshotValues>> {
    let mut out = BTreeMap::new();
    for test in &suite.tests {
        let Some(name) = &test.snapshot else { continue };
        if !out.contains_key(name) {
            let file = file_name(name);
            let Some(snapshot) = state.read_json::<SnapshotFile>(&file)? else {
                return Err(Error::usage(format!(
                    "test `{}` compares with snapshot `{name}`, but there is none for deployment `{}` (`{}`); take it before the deploy with `shipgate smoke --snapshot {name}`",
                    test.name,
                    state.id(),
                    state.path(&file).display()
                )));
            };
            out.insert(name.clone(), snapshot.values);
        }
        let values = out.get(name).and_then(|v| v.get(&test.name));
        for path in test.asserts.iter().filter_map(|a| a.snapshot_path()) {
            if values.is_none_or(|v| !v.contains_key(&path.to_string())) {
                return Err(Error::usage(format!(
                    "snapshot `{name}` has no value of `{path}` for test `{}`: the suite changed since it was taken; take it again with `shipgate smoke --snapshot {name}`",
                    test.name
                )));
            }
        }
    }
    Ok(out)
}

/// The values a snapshot keeps: what each of its own tests recorded (not the tests it depends on).
pub(crate) fn values_of(name: &str, suite: &Suite, results: &[&TestResult]) -> SnapshotValues {
    let mut values = SnapshotValues::new();
    for r in results {
        let is_snapshot_test = suite
            .tests
            .iter()
            .any(|t| t.name == r.name && t.snapshot.as_deref() == Some(name));
        if is_snapshot_test {
            values.insert(r.name.clone(), r.recorded.clone());
        }
    }
    values
}
