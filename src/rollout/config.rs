//! The `rollout:` section of `shipgate.yml`, read by `shipgate rollout` (and its hook keys by
//! `rollback`), and [`Percent`], how its flags and keys write a percentage.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::gates::DegradedPolicy;
use crate::hooks::{self, CommandLine};
use crate::metrics::alerts::Api;
use crate::util::HumanDuration;

/// A percentage written `99`, `99.5` or `99%`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Percent(pub(crate) f64);

impl std::str::FromStr for Percent {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number = text.trim().trim_end_matches('%').trim();
        match number.parse::<f64>() {
            Ok(value) if (0.0..=100.0).contains(&value) => Ok(Percent(value)),
            _ => Err(format!(
                "`{text}` is not a percentage; use a number from 0 to 100 such as `99` or `99.5%`"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor, not an untagged enum, so that a list or a map is named as such.
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Percent;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a percentage from 0 to 100 such as `99` or `99.5%`")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Percent, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Percent, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Percent, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Percent, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Default for Percent {
    fn default() -> Self {
        Percent(0.0)
    }
}

/// `pause:` of a stage.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum PauseMode {
    UntilApproved,
}

/// One stage in `rollout.stages`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct StageConfig {
    pub(crate) name: String,
    pub(crate) weight: Percent,
    pub(crate) duration: HumanDuration,
    pub(crate) interval: Option<HumanDuration>,
    pub(crate) window: Option<HumanDuration>,
    pub(crate) success_rate: Option<Percent>,
    pub(crate) max_p95: Option<HumanDuration>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) min_samples: Option<u64>,
    pub(crate) baseline_ratio: Option<f64>,
    pub(crate) degraded: Option<DegradedPolicy>,
    pub(crate) pause: Option<PauseMode>,
    pub(crate) approval_timeout: Option<HumanDuration>,
}

/// A named command probe in `rollout.probes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct ProbeConfig {
    pub(crate) name: String,
    pub(crate) command: CommandLine,
}

/// What a measurement without data counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum NoDataPolicy {
    /// A failed measurement.
    #[default]
    Fail,
    /// Not a failure while the stage runs; still no data at the end of the stage fails it.
    Wait,
    /// Left out of the verdict (said so in the log and the record).
    Ignore,
}

impl NoDataPolicy {
    pub(crate) fn name(self) -> &'static str {
        match self {
            NoDataPolicy::Fail => "fail",
            NoDataPolicy::Wait => "wait",
            NoDataPolicy::Ignore => "ignore",
        }
    }
}

/// `provider:` of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Provider {
    Prometheus,
    /// Any JSON endpoint: `url` (templated), `path` to the number in the answer.
    Web,
}

/// Credentials for a metrics backend: the *names* of the inputs or environment variables that
/// hold the secrets (the config file is committed; secrets never come from it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct AuthConfig {
    /// Input or environment variable holding a bearer token.
    pub(crate) bearer: Option<String>,
    /// Basic auth: the user name, and the input or environment variable holding the password.
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    /// Headers whose values are secrets: header name → the input or environment variable
    /// holding its value (`DD-API-KEY: DD_API_KEY`).
    pub(crate) headers: Option<BTreeMap<String, String>>,
}

/// `rollout.prometheus`: the backend every metric and the alerts use unless they name another.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct BackendConfig {
    pub(crate) address: Option<String>,
    pub(crate) auth: Option<AuthConfig>,
    pub(crate) headers: Option<BTreeMap<String, String>>,
    pub(crate) timeout: Option<HumanDuration>,
}

/// One metric gate in `rollout.metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct MetricConfig {
    pub(crate) name: String,
    /// PromQL, templated (`{{version}}`, `{{stage}}`, …); not for `provider: web`.
    #[serde(default)]
    pub(crate) query: String,
    /// `< 0.03`, `>= 0.98`, `<= 2 * baseline`.
    pub(crate) condition: String,
    pub(crate) baseline_query: Option<String>,
    pub(crate) interval: Option<HumanDuration>,
    pub(crate) initial_delay: Option<HumanDuration>,
    /// Failed measurements tolerated in a stage.
    pub(crate) failure_limit: Option<u32>,
    /// Failed measurements in a row that fail the stage.
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) no_data: Option<NoDataPolicy>,
    pub(crate) provider: Option<Provider>,
    /// `provider: web`: the JSON endpoint (templated: values are percent-encoded; the host is
    /// fixed), its baseline's for `<= 2 * baseline`, and the location of the number in the answer.
    pub(crate) url: Option<String>,
    pub(crate) baseline_url: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) address: Option<String>,
    pub(crate) auth: Option<AuthConfig>,
    pub(crate) headers: Option<BTreeMap<String, String>>,
    pub(crate) timeout: Option<HumanDuration>,
    /// Only in these stages (default: every stage).
    pub(crate) stages: Option<Vec<String>>,
}

/// `rollout.alerts`: a stage fails when an alert matching `selector` fires.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct AlertsConfig {
    /// `severity=~"critical|warning", service="api"`.
    pub(crate) selector: String,
    pub(crate) api: Option<Api>,
    pub(crate) interval: Option<HumanDuration>,
    pub(crate) initial_delay: Option<HumanDuration>,
    pub(crate) address: Option<String>,
    pub(crate) auth: Option<AuthConfig>,
    pub(crate) headers: Option<BTreeMap<String, String>>,
    pub(crate) timeout: Option<HumanDuration>,
    pub(crate) stages: Option<Vec<String>>,
}

/// `inconclusive:` of the canary judge: what a judgement without enough evidence does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum InconclusivePolicy {
    /// The stage fails and rolls back.
    #[default]
    Fail,
    /// The stage holds its weight (still watched) until approved like a paused stage
    /// (`shipgate rollout --resume`), or rolls back at its `approval-timeout`.
    Pause,
}

/// One Prometheus range-query pair in `rollout.judge.metrics`: the canary's series and the
/// baseline's, compared point by point as two samples (higher is worse).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct JudgeMetricConfig {
    pub(crate) name: String,
    /// PromQL for the canary, templated like `rollout.metrics`' queries.
    pub(crate) query: String,
    /// The same for the baseline (e.g. with `{{previous_version}}`).
    pub(crate) baseline_query: String,
    /// Resolution of the range query [default: the stage's probe interval].
    pub(crate) step: Option<HumanDuration>,
    /// Differences of medians (and of spreads) below this, in the metric's unit, never fail.
    pub(crate) tolerance: Option<f64>,
    pub(crate) address: Option<String>,
    pub(crate) auth: Option<AuthConfig>,
    pub(crate) headers: Option<BTreeMap<String, String>>,
    pub(crate) timeout: Option<HumanDuration>,
}

/// One error-count source in `rollout.judge.errors`: four instant queries, each one number —
/// the canary's errors and requests, and the baseline's (e.g. `sum(increase(...[{{window}}]))`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct JudgeErrorsConfig {
    pub(crate) name: String,
    pub(crate) errors: String,
    pub(crate) total: String,
    pub(crate) baseline_errors: String,
    pub(crate) baseline_total: String,
    /// Error rates closer than this many percentage points never fail [default: 0].
    pub(crate) tolerance: Option<f64>,
    pub(crate) address: Option<String>,
    pub(crate) auth: Option<AuthConfig>,
    pub(crate) headers: Option<BTreeMap<String, String>>,
    pub(crate) timeout: Option<HumanDuration>,
}

/// `rollout.judge`: the statistical judgement of canary against baseline at the end of each
/// stage's window.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct JudgeConfig {
    /// Significance level of every test [default: 0.01].
    pub(crate) alpha: Option<f64>,
    /// Cliff's delta a slower or wider canary must reach to fail [default: 0.33].
    pub(crate) effect: Option<f64>,
    /// Samples each side needs, per test [default: 20]; fewer is inconclusive.
    pub(crate) min_samples: Option<u64>,
    pub(crate) inconclusive: Option<InconclusivePolicy>,
    /// Judge the canary's probes against the baseline's [default: true; needs `baseline`].
    pub(crate) probes: Option<bool>,
    /// Probe latency differences (of medians, and of spreads) below this never fail [default: 0].
    pub(crate) tolerance: Option<HumanDuration>,
    pub(crate) metrics: Option<Vec<JudgeMetricConfig>>,
    pub(crate) errors: Option<Vec<JudgeErrorsConfig>>,
    /// Only in these stages (default: every stage).
    pub(crate) stages: Option<Vec<String>>,
}

/// The `rollout:` section of `shipgate.yml`. Webhook URLs are secrets and never come from here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    pub(crate) stages: Option<Vec<StageConfig>>,
    pub(crate) endpoints: Option<Vec<String>>,
    pub(crate) baseline: Option<Vec<String>>,
    pub(crate) verify_endpoints: Option<Vec<String>>,
    pub(crate) probes: Option<Vec<ProbeConfig>>,
    pub(crate) hook: Option<CommandLine>,
    pub(crate) rollback_hook: Option<CommandLine>,
    pub(crate) hook_shell: Option<bool>,
    pub(crate) hook_timeout: Option<HumanDuration>,
    pub(crate) hook_retries: Option<u32>,
    pub(crate) interval: Option<HumanDuration>,
    pub(crate) probe_timeout: Option<HumanDuration>,
    pub(crate) window: Option<HumanDuration>,
    pub(crate) success_rate: Option<Percent>,
    pub(crate) max_p95: Option<HumanDuration>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) min_samples: Option<u64>,
    pub(crate) baseline_ratio: Option<f64>,
    pub(crate) degraded: Option<DegradedPolicy>,
    pub(crate) expect_version: Option<String>,
    pub(crate) health: Option<crate::health::Rule>,
    pub(crate) approval_timeout: Option<HumanDuration>,
    pub(crate) verify_timeout: Option<HumanDuration>,
    pub(crate) verify_successes: Option<u32>,
    pub(crate) prometheus: Option<BackendConfig>,
    pub(crate) metrics: Option<Vec<MetricConfig>>,
    pub(crate) alerts: Option<AlertsConfig>,
    pub(crate) judge: Option<JudgeConfig>,
}

impl FileConfig {
    /// The hook keys, which `rollback` also reads (see `hooks::resolve`).
    pub(crate) fn hook_keys(&self) -> hooks::FileKeys<'_> {
        hooks::FileKeys {
            hook: self.hook.as_ref(),
            rollback_hook: self.rollback_hook.as_ref(),
            shell: self.hook_shell,
            timeout: self.hook_timeout,
            retries: self.hook_retries,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    /// `shipgate.yml` with only this section.
    #[derive(Debug, Deserialize)]
    struct Doc {
        rollout: FileConfig,
    }

    #[test]
    fn config_section_parses_with_stage_overrides() {
        let text = r#"
rollout:
  endpoints: [https://app.example/health]
  hook: ./shift-traffic.sh --service api
  interval: 5s
  success-rate: 99.5%
  stages:
    - name: canary
      weight: 5
      duration: 5m
      max-p95: 400ms
    - name: full
      weight: 100%
      duration: 15m
      pause: until-approved
"#;
        let config: Doc =
            crate::inputs::parse_yaml(Path::new("shipgate.yml"), text).expect("valid config");
        let rollout = config.rollout;
        let stages = rollout.stages.expect("stages");
        assert_eq!(stages.len(), 2);
        assert_eq!(
            stages[0].max_p95.map(|d| d.0),
            Some(Duration::from_millis(400))
        );
        assert!(stages[1].pause.is_some());
        assert_eq!(rollout.success_rate, Some(Percent(99.5)));
        let unknown = "rollout:\n  stages:\n    - name: a\n      weight: 5\n      duration: 1m\n      max_p95: 1s\n";
        let error = crate::inputs::parse_yaml::<Doc>(Path::new("shipgate.yml"), unknown)
            .expect_err("unknown key");
        assert!(error.to_string().contains("max_p95"), "{error}");
    }

    #[test]
    fn the_judge_section_parses_and_names_unknown_keys() {
        let text = r#"
rollout:
  judge:
    alpha: 0.01
    min-samples: 30
    tolerance: 20ms
    inconclusive: pause
    stages: [canary]
    metrics:
      - name: mean-latency
        query: 'q{version="{{version}}"}'
        baseline-query: 'q{version="{{previous_version}}"}'
        step: 15s
        tolerance: 0.02
"#;
        let config: Doc =
            crate::inputs::parse_yaml(Path::new("shipgate.yml"), text).expect("valid config");
        let judge = config.rollout.judge.expect("judge");
        assert_eq!(judge.inconclusive, Some(InconclusivePolicy::Pause));
        assert_eq!(
            judge.tolerance.map(|d| d.0),
            Some(Duration::from_millis(20))
        );
        let metrics = judge.metrics.expect("metrics");
        assert_eq!(metrics[0].step.map(|d| d.0), Some(Duration::from_secs(15)));
        let unknown = "rollout:\n  judge:\n    confidence: 0.99\n";
        let error = crate::inputs::parse_yaml::<Doc>(Path::new("shipgate.yml"), unknown)
            .expect_err("unknown key");
        assert!(error.to_string().contains("confidence"), "{error}");
        let bad = "rollout:\n  judge:\n    inconclusive: wait\n";
        let error = crate::inputs::parse_yaml::<Doc>(Path::new("shipgate.yml"), bad)
            .expect_err("unknown policy");
        assert!(error.to_string().contains("wait"), "{error}");
    }

    #[test]
    fn percentages() {
        assert_eq!("99.5%".parse::<Percent>(), Ok(Percent(99.5)));
        assert!("101".parse::<Percent>().is_err());
        let from_yaml: Percent = serde_yaml_ng::from_str("99").expect("number");
        assert_eq!(from_yaml, Percent(99.0));
        let list = serde_yaml_ng::from_str::<Percent>("[1, 2]").expect_err("a list");
        assert!(
            list.to_string()
                .contains("invalid type: sequence, expected a percentage"),
            "{list}"
        );
        let duration =
            serde_yaml_ng::from_str::<crate::util::HumanDuration>("{a: 1}").expect_err("a map");
        assert!(
            duration
                .to_string()
                .contains("invalid type: map, expected a duration"),
            "{duration}"
        );
    }
}
