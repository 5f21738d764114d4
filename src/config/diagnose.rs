//! Adds the dotted key to toml's parse errors.
//!
//! toml reports a wrong type or an unknown key with a line, a column and a
//! snippet, but not with the key's full path: `workers = "two"` under
//! `[engine]` shows the line, yet never says `engine.workers`. The path is
//! found here by trying each key of the document on its own.

use toml::{Table, Value};

use super::WeirConfig;

/// The message for a failed parse: toml's own text (line, column, snippet and
/// reason), followed by the dotted key when it can be pinned down.
pub(super) fn describe(text: &str, err: &toml::de::Error) -> String {
    let mut message = err.to_string().trim_end().to_owned();
    if let Some(key) = locate(text, err) {
        message.push_str(&format!("\nin key `{key}`"));
    }
    message
}

/// Finds the dotted key that the error is about.
///
/// Gives up (returns `None`) on syntax errors, where there is no key to name,
/// and when several keys fail in a way that cannot be told apart, since naming
/// the wrong key is worse than naming none.
fn locate(text: &str, err: &toml::de::Error) -> Option<String> {
    let document: Table = text.parse().ok()?;
    let mut candidates = Vec::new();
    for (section, value) in &document {
        let mut path = vec![section.clone()];
        if shape_error(&path, value.clone()).is_some() {
            failing_keys(&mut path, value, &mut candidates);
        }
    }

    // Keep the keys whose own error reads like the one being reported.
    if candidates
        .iter()
        .any(|(_, _, message)| message == err.message())
    {
        candidates.retain(|(_, _, message)| message == err.message());
    }
    if candidates.len() > 1 {
        // Still ambiguous: prefer a key written on the line the error points at.
        let line = err.span().and_then(|span| line_at(text, span.start));
        if let Some(line) = line {
            candidates.retain(|(_, leaf, _)| line.contains(leaf.as_str()));
        }
    }
    match candidates.as_slice() {
        [(path, _, _)] => Some(path.clone()),
        _ => None,
    }
}

/// A failing key: its dotted path, its last part, and the error it causes alone.
type Candidate = (String, String, String);

/// `value` at `path` fails: adds the deepest keys under it that fail on their own
/// (descending into a table only where the schema has a table, so a table given
/// for a number is reported at the number's key).
fn failing_keys(path: &mut Vec<String>, value: &Value, out: &mut Vec<Candidate>) {
    if let Value::Table(keys) = value {
        if shape_error(path, Value::Table(Table::new())).is_none() {
            let before = out.len();
            for (key, inner) in keys {
                path.push(key.clone());
                if shape_error(path, inner.clone()).is_some() {
                    failing_keys(path, inner, out);
                }
                path.pop();
            }
            if out.len() > before {
                return;
            }
        }
    }
    if let Some(message) = shape_error(path, value.clone()) {
        let leaf = path.last().cloned().unwrap_or_default();
        out.push((path.join("."), leaf, message));
    }
}

/// Deserializes a document holding only `value` at the dotted `path` and
/// returns the reason it fails, if it does.
fn shape_error(path: &[String], value: Value) -> Option<String> {
    let mut document = value;
    for key in path.iter().rev() {
        document = Value::Table(Table::from_iter([(key.clone(), document)]));
    }
    match document.try_into::<WeirConfig>() {
        Ok(_) => None,
        Err(err) => Some(err.message().to_owned()),
    }
}

/// The line of `text` containing byte offset `offset`.
fn line_at(text: &str, offset: usize) -> Option<&str> {
    let before = text.get(..offset)?;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    text.get(start..)?.lines().next()
}
