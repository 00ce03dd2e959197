//! Properties at the trust boundary: the code that turns untrusted text (tags, inputs, child
//! output, server replies) into decisions or output, checked over generated inputs instead of
//! examples. Case counts are bounded so CI stays fast.

use proptest::prelude::*;

use crate::actions;
use crate::metrics::json_path::Path;
use crate::process::split_command;
use crate::rollout::config::Percent;
use crate::secret;
use crate::ui::format_duration;
use crate::util::{MAX_DURATION, parse_duration};
use crate::version;

const CASES: u32 = 512;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Characters that mean something to a shell.
const SHELL_META: &str = "$`;|&()<>'\"\\*?[]{}!#~^";

/// A SemVer identifier list: `alpha.1`, `rc-2.x`.
fn identifiers() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof!["[1-9][0-9]{0,3}", "0", "[a-zA-Z-][a-zA-Z0-9-]{0,6}"],
        1..4,
    )
    .prop_map(|ids| ids.join("."))
}

/// A valid SemVer version as text.
fn semver_text() -> impl Strategy<Value = String> {
    (
        0u64..1000,
        0u64..1000,
        0u64..1000,
        prop::option::of(identifiers()),
        prop::option::of(identifiers()),
    )
        .prop_map(|(major, minor, patch, pre, build)| {
            let mut text = format!("{major}.{minor}.{patch}");
            if let Some(pre) = pre {
                text.push('-');
                text.push_str(&pre);
            }
            if let Some(build) = build {
                text.push('+');
                text.push_str(&build);
            }
            text
        })
}

// The runner's reading of file-command files, shared with the integration tests.
#[path = "../tests/it/support/file_commands.rs"]
mod file_commands;
use file_commands::parse_file_commands;

/// Registers a generated secret (prefixed so that it cannot collide with text other tests of
/// this process compare: the registry is process-wide).
fn test_secret(tail: &str) -> String {
    format!("prop-secret-{tail}")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn versions_the_parser_accepts_are_plain_and_round_trip(input in "\\PC{0,40}") {
        if let Ok(release) = version::parse(&input, "v") {
            prop_assert!(!input.chars().any(|c| c.is_whitespace() || c.is_control()));
            prop_assert!(!input.chars().any(|c| SHELL_META.contains(c)));
            prop_assert_eq!(&release.tag, &input);
            let again = version::parse(&release.tag, "v").expect("an accepted tag parses again");
            prop_assert_eq!(&again, &release);
            let number = input.strip_prefix('v').unwrap_or(&input);
            prop_assert_eq!(release.version.to_string(), number);
        }
    }

    #[test]
    fn every_semver_version_is_accepted_with_and_without_the_prefix(text in semver_text()) {
        let plain = version::parse(&text, "v").expect("valid SemVer is accepted");
        let tagged = version::parse(&format!("v{text}"), "v").expect("with the prefix too");
        prop_assert_eq!(&plain.version, &tagged.version);
        prop_assert_eq!(plain.version, semver::Version::parse(&text).expect("semver agrees"));
    }

    #[test]
    fn precedence_is_a_total_order_agreeing_with_semver(
        a in semver_text(), b in semver_text(), c in semver_text()
    ) {
        let [a, b, c] = [a, b, c].map(|t| version::parse(&t, "v").expect("valid"));
        let ab = a.precedence(&b.version);
        prop_assert_eq!(ab, b.precedence(&a.version).reverse());
        prop_assert_eq!(ab, a.version.cmp_precedence(&b.version));
        if ab.is_le() && b.precedence(&c.version).is_le() {
            prop_assert!(a.precedence(&c.version).is_le());
        }
    }

    #[test]
    fn file_commands_read_back_exactly_or_are_refused(
        key in "\\PC{0,12}", value in prop_oneof!["\\PC{0,40}", "[a-z\\n\\r<=]{0,40}", "(.|\\n){0,60}"]
    ) {
        match actions::file_command(&key, &value) {
            Ok(block) => {
                // The runner errs on a last line without its newline.
                prop_assert!(block.ends_with('\n'));
                let parsed = parse_file_commands(&block);
                prop_assert_eq!(parsed, Ok(std::collections::BTreeMap::from([(key, value)])));
            }
            Err(_) => {
                // Refused only for a key the runner could not read back.
                prop_assert!(
                    key.is_empty() || key.contains(['=', '\n', '\r']) || key.contains("<<")
                        || key.ends_with('<') || key.trim() != key
                );
            }
        }
    }

    #[test]
    fn untrusted_text_stays_on_one_line_and_never_starts_a_command(text in "(.|\\n|\\r|\\u{1b}|::){0,60}") {
        for shown in [actions::one_line(&text), actions::quote(&text)] {
            prop_assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
        // A log line made of a prefix and the quoted text is one line that starts with the prefix.
        let line = format!("shipgate: tag {}", actions::quote(&text));
        prop_assert_eq!(line.lines().count(), 1);
        prop_assert!(!line.starts_with("::"));
    }

    #[test]
    fn durations_parse_what_they_print_and_never_panic(
        secs in 0u64..=MAX_DURATION.as_secs(), ms in 0u64..1000, junk in "\\PC{0,16}"
    ) {
        let whole = std::time::Duration::from_secs(secs);
        prop_assert_eq!(parse_duration(&format_duration(whole)), Ok(whole));
        let short = std::time::Duration::from_millis(ms);
        prop_assert_eq!(parse_duration(&format_duration(short)), Ok(short));
        if let Ok(parsed) = parse_duration(&junk) {
            prop_assert!(parsed <= MAX_DURATION);
        }
    }

    #[test]
    fn percentages_parse_what_they_print_and_nothing_outside_0_to_100(
        value in 0.0f64..=100.0, junk in "\\PC{0,16}"
    ) {
        prop_assert_eq!(value.to_string().parse::<Percent>(), Ok(Percent(value)));
        prop_assert_eq!(format!("{value}%").parse::<Percent>(), Ok(Percent(value)));
        prop_assert_eq!(format!(" {value} % ").parse::<Percent>(), Ok(Percent(value)));
        if let Ok(Percent(parsed)) = junk.parse::<Percent>() {
            prop_assert!((0.0..=100.0).contains(&parsed), "{junk:?} gave {parsed}");
        }
    }

    #[test]
    fn a_json_pointer_and_a_json_path_to_one_place_find_the_same_value(
        steps in prop::collection::vec(
            prop_oneof![
                "[a-zA-Z0-9 _/~.-]{1,8}".prop_map(Ok),
                (0usize..4, 0usize..3).prop_map(Err),
            ],
            0..6,
        ),
        junk in "\\PC{0,30}",
    ) {
        // The document: the leaf at the end of `steps` (a key of an object, or an index into
        // an array with `extra` more items after it), with a decoy beside every step.
        let mut doc = serde_json::json!("leaf");
        for step in steps.iter().rev() {
            doc = match step {
                Ok(key) => {
                    let mut map = serde_json::Map::new();
                    map.insert(format!("{key}-decoy"), serde_json::json!("decoy"));
                    map.insert(key.clone(), doc);
                    serde_json::Value::Object(map)
                }
                Err((index, extra)) => {
                    let mut items = vec![serde_json::json!("decoy"); index + extra + 1];
                    items[*index] = doc;
                    serde_json::Value::Array(items)
                }
            };
        }
        let mut pointer = String::new();
        let mut path = String::from("$");
        let mut from_end = String::from("$");
        for step in &steps {
            match step {
                Ok(key) => {
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    path.push_str(&format!("['{key}']"));
                    from_end.push_str(&format!("[\"{key}\"]"));
                }
                Err((index, extra)) => {
                    pointer.push_str(&format!("/{index}"));
                    path.push_str(&format!("[{index}]"));
                    from_end.push_str(&format!("[-{}]", extra + 1));
                }
            }
        }
        let leaf = serde_json::json!("leaf");
        for text in [&pointer, &path, &from_end] {
            let parsed = Path::parse(text);
            prop_assert!(parsed.is_ok(), "{text:?}: {parsed:?}");
            let parsed = parsed.expect("checked");
            prop_assert_eq!(parsed.to_string(), text.as_str());
            prop_assert_eq!(parsed.find(&doc), Some(&leaf), "{}", text);
        }
        // Arbitrary text parses or is refused, and finds at most one value, without a panic.
        if let Ok(parsed) = Path::parse(&junk) {
            let _ = parsed.find(&doc);
        }
    }

    #[test]
    fn the_command_splitter_reads_back_quoted_words_and_never_panics(
        words in prop::collection::vec("[a-zA-Z0-9_./:=@%+,-]{0,12}", 1..6), junk in "\\PC{0,40}"
    ) {
        let line = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ");
        prop_assert_eq!(split_command(&line), Ok(words));
        let _ = split_command(&junk);
    }
}

proptest! {
    // Fewer cases: every generated secret stays in the process-wide registry for the rest of
    // the run, and every redaction in other tests walks it.
    #![proptest_config(ProptestConfig { cases: 64, ..config() })]

    #[test]
    fn redaction_removes_a_secret_in_every_form(
        tail in "[\\PC]{5,24}", before in "\\PC{0,20}", after in "\\PC{0,20}"
    ) {
        let value = test_secret(&tail);
        secret::register(&value);
        for form in secret::forms_of(&value) {
            let text = format!("{before}{form}{after}");
            let shown = secret::redact(&text);
            prop_assert!(!shown.contains(&form), "{form:?} survived in {shown:?}");
        }
    }
}
