//! How the runner reads `GITHUB_OUTPUT` / `GITHUB_ENV` back. Standard library only: the
//! integration tests use it through `support`, and `src/properties.rs` includes this file to
//! hold `actions::file_command` to the same rules.

use std::collections::BTreeMap;

/// The runner's `FileCommandManager.EnvFileKeyValuePairs`: `KEY=VALUE` when `=` comes before
/// `<<`, else `KEY<<DELIM`, the value's lines, and `DELIM` alone on a line. The value excludes
/// its final newline; a missing delimiter is an error. Later keys win.
pub fn parse_file_commands(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let equals = line.find('=');
        let heredoc = line.find("<<");
        match (equals, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                let key = &line[..e];
                if key.is_empty() {
                    return Err(format!("invalid line `{line}`: empty key"));
                }
                out.insert(key.to_string(), line[e + 1..].to_string());
            }
            (_, Some(h)) => {
                let key = &line[..h];
                let delimiter = &line[h + 2..];
                if key.is_empty() || delimiter.is_empty() {
                    return Err(format!("invalid heredoc start `{line}`"));
                }
                let mut value = Vec::new();
                let mut closed = false;
                for next in lines.by_ref() {
                    if next == delimiter {
                        closed = true;
                        break;
                    }
                    value.push(next);
                }
                if !closed {
                    return Err(format!("matching delimiter `{delimiter}` not found"));
                }
                out.insert(key.to_string(), value.join("\n"));
            }
            _ => return Err(format!("invalid format `{line}`")),
        }
    }
    Ok(out)
}
