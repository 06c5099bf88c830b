//! The values the CLI prints, and how each output format spells them.
//!
//! cliff (the framework under `openstack`) prints a field three ways: the table shows a
//! "human readable" form (ID lists one ID per line, string lists one per line, dicts as `k=v`
//! lines, Python `None`/`True` for null and booleans), `-f json`/`-f yaml` show the plain data,
//! and `-f value`/`-f shell`/`-f csv` show Python's `str()` of the data. [`Value`] keeps enough
//! shape to reproduce all three.

use std::fmt::Write as _;

/// One printable value, shaped like the Octavia API's JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// JSON `null` (Python `None`).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float (health monitor `http_version`).
    Float(f64),
    /// A string.
    Str(String),
    /// A list of object references, `[{"id": ...}]` in JSON, one ID per line in tables
    /// (octaviaclient's `ListColumn`).
    IdList(Vec<String>),
    /// A list of strings shown one per line in tables (octaviaclient's `FlatListColumn`).
    Lines(Vec<String>),
    /// A string map shown as `k=v` lines in tables (octaviaclient's `HashColumn`).
    Hash(Vec<(String, Value)>),
    /// A list with no table formatter: tables show its Python repr.
    List(Vec<Value>),
    /// A map with no table formatter: tables show its Python repr.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// A string that the API reports as `null` when empty (optional references and settings).
    pub fn opt_str(s: &str) -> Value {
        if s.is_empty() {
            Value::Null
        } else {
            Value::Str(s.to_string())
        }
    }

    /// An optional integer.
    pub fn opt_int(v: Option<i32>) -> Value {
        v.map_or(Value::Null, |v| Value::Int(v.into()))
    }

    /// A plain list of strings (no table formatter).
    pub fn str_list(v: &[String]) -> Value {
        Value::List(v.iter().cloned().map(Value::Str).collect())
    }

    /// An ID list from one optional ID (e.g. a listener's `loadbalancers`).
    pub fn id_list_of(id: &str) -> Value {
        Value::IdList(if id.is_empty() {
            vec![]
        } else {
            vec![id.to_string()]
        })
    }

    /// The form a cliff table shows.
    pub fn human(&self) -> String {
        match self {
            Value::IdList(v) | Value::Lines(v) => v.join("\n"),
            Value::Hash(kv) => kv
                .iter()
                .map(|(k, v)| format!("{k}={}", v.python_str()))
                .collect::<Vec<_>>()
                .join("\n"),
            other => other.python_str(),
        }
    }

    /// Python's `str()` of the plain data (`-f value`, `-f shell`, `-f csv`).
    pub fn python_str(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            other => {
                let mut out = String::new();
                other.python_repr(&mut out);
                out
            }
        }
    }

    fn python_repr(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("None"),
            Value::Bool(true) => out.push_str("True"),
            Value::Bool(false) => out.push_str("False"),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => {
                let _ = write!(out, "{f:?}");
            }
            Value::Str(s) => python_str_repr(s, out),
            Value::IdList(ids) => {
                out.push('[');
                for (i, id) in ids.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str("{'id': ");
                    python_str_repr(id, out);
                    out.push('}');
                }
                out.push(']');
            }
            Value::Lines(v) => Value::str_list(v).python_repr(out),
            Value::List(v) => {
                out.push('[');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    x.python_repr(out);
                }
                out.push(']');
            }
            Value::Hash(kv) | Value::Map(kv) => {
                out.push('{');
                for (i, (k, v)) in kv.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    python_str_repr(k, out);
                    out.push_str(": ");
                    v.python_repr(out);
                }
                out.push('}');
            }
        }
    }

    /// The plain data as a tree of lists and maps (what JSON and YAML show).
    fn plain(&self) -> Plain<'_> {
        match self {
            Value::IdList(ids) => Plain::Seq(
                ids.iter()
                    .map(|id| Plain::IdObj(id.as_str()))
                    .collect::<Vec<_>>(),
            ),
            Value::Lines(v) => {
                Plain::Seq(v.iter().map(|s| Plain::Scalar(ScalarRef::Str(s))).collect())
            }
            Value::List(v) => Plain::Seq(v.iter().map(Value::plain).collect()),
            Value::Hash(kv) | Value::Map(kv) => {
                Plain::Obj(kv.iter().map(|(k, v)| (k.as_str(), v.plain())).collect())
            }
            Value::Null => Plain::Scalar(ScalarRef::Null),
            Value::Bool(b) => Plain::Scalar(ScalarRef::Bool(*b)),
            Value::Int(i) => Plain::Scalar(ScalarRef::Int(*i)),
            Value::Float(f) => Plain::Scalar(ScalarRef::Float(*f)),
            Value::Str(s) => Plain::Scalar(ScalarRef::Str(s)),
        }
    }

    /// Whether this value sorts as a number (cliff aligns numeric list columns right).
    pub fn is_number(&self) -> bool {
        matches!(self, Value::Int(_) | Value::Float(_))
    }

    /// Order used by `--sort-column`: nulls last, numbers numerically, the rest by text.
    pub fn sort_cmp(&self, other: &Value) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Null, _) => Ordering::Greater,
            (_, Value::Null) => Ordering::Less,
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (a, b) if a.is_number() && b.is_number() => a
                .as_f64()
                .partial_cmp(&b.as_f64())
                .unwrap_or(Ordering::Equal),
            (a, b) => a.python_str().cmp(&b.python_str()),
        }
    }

    fn as_f64(&self) -> f64 {
        match self {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            _ => 0.0,
        }
    }
}

/// Python's `repr()` of a string: single quotes unless the text holds a single quote and no
/// double quote.
fn python_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[derive(Clone, Copy)]
enum ScalarRef<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}

enum Plain<'a> {
    Scalar(ScalarRef<'a>),
    /// `{"id": ...}`.
    IdObj(&'a str),
    Seq(Vec<Plain<'a>>),
    Obj(Vec<(&'a str, Plain<'a>)>),
}

impl Plain<'_> {
    fn entries(&self) -> Option<Vec<(&str, Plain<'_>)>> {
        match self {
            Plain::IdObj(id) => Some(vec![("id", Plain::Scalar(ScalarRef::Str(id)))]),
            Plain::Obj(kv) => Some(kv.iter().map(|(k, v)| (*k, v.reborrow())).collect()),
            _ => None,
        }
    }

    fn reborrow(&self) -> Plain<'_> {
        match self {
            Plain::Scalar(s) => Plain::Scalar(*s),
            Plain::IdObj(id) => Plain::IdObj(id),
            Plain::Seq(v) => Plain::Seq(v.iter().map(Plain::reborrow).collect()),
            Plain::Obj(kv) => Plain::Obj(kv.iter().map(|(k, v)| (*k, v.reborrow())).collect()),
        }
    }
}

/// JSON text of named fields in order, indented like Python's `json.dump(indent=N)`
/// (`None` = one line, as `--noindent`).
pub fn json_object(fields: &[(&str, &Value)], indent: Option<usize>) -> String {
    let obj = Plain::Obj(fields.iter().map(|(k, v)| (*k, v.plain())).collect());
    let mut out = String::new();
    write_json(&obj, indent, 0, &mut out);
    out
}

/// JSON text of a list of records (rows of named fields).
pub fn json_rows(rows: &[Vec<(&str, &Value)>], indent: Option<usize>) -> String {
    let seq = Plain::Seq(
        rows.iter()
            .map(|r| Plain::Obj(r.iter().map(|(k, v)| (*k, v.plain())).collect()))
            .collect(),
    );
    let mut out = String::new();
    write_json(&seq, indent, 0, &mut out);
    out
}

/// JSON text of one value.
pub fn json_value(v: &Value, indent: Option<usize>) -> String {
    let mut out = String::new();
    write_json(&v.plain(), indent, 0, &mut out);
    out
}

fn json_str(s: &str, out: &mut String) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

fn write_json(p: &Plain<'_>, indent: Option<usize>, level: usize, out: &mut String) {
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    match p {
        Plain::Scalar(s) => match s {
            ScalarRef::Null => out.push_str("null"),
            ScalarRef::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            ScalarRef::Int(i) => {
                let _ = write!(out, "{i}");
            }
            ScalarRef::Float(f) => {
                let _ = write!(out, "{f:?}");
            }
            ScalarRef::Str(s) => json_str(s, out),
        },
        Plain::Seq(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, level + 1);
                write_json(item, indent, level + 1, out);
            }
            newline(out, level);
            out.push(']');
        }
        obj => {
            let entries = obj.entries().unwrap_or_default();
            if entries.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, level + 1);
                json_str(k, out);
                out.push_str(": ");
                write_json(v, indent, level + 1, out);
            }
            newline(out, level);
            out.push('}');
        }
    }
}

/// YAML of one `key: value` document, as PyYAML's `safe_dump(default_flow_style=False)` writes
/// it (nested map keys sorted).
pub fn yaml_field(key: &str, v: &Value) -> String {
    let obj = Plain::Obj(vec![(key, v.plain())]);
    let mut out = String::new();
    write_yaml_block(&obj, 0, &mut out);
    out
}

/// YAML of a list of records (each record's keys sorted, as PyYAML does).
pub fn yaml_rows(rows: &[Vec<(&str, &Value)>]) -> String {
    if rows.is_empty() {
        return "[]\n".into();
    }
    let seq = Plain::Seq(
        rows.iter()
            .map(|r| Plain::Obj(r.iter().map(|(k, v)| (*k, v.plain())).collect()))
            .collect(),
    );
    let mut out = String::new();
    write_yaml_block(&seq, 0, &mut out);
    out
}

fn yaml_scalar(s: ScalarRef<'_>) -> String {
    match s {
        ScalarRef::Null => "null".into(),
        ScalarRef::Bool(b) => if b { "true" } else { "false" }.into(),
        ScalarRef::Int(i) => i.to_string(),
        ScalarRef::Float(f) => format!("{f:?}"),
        ScalarRef::Str(s) => yaml_str(s),
    }
}

/// A YAML string, quoted when a plain scalar would read back as something else.
fn yaml_str(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let reserved = matches!(
        lower.as_str(),
        "" | "~" | "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    );
    let first = s.chars().next().unwrap_or(' ');
    let needs_quote = reserved
        || (first.is_ascii_digit() && s.chars().all(|c| "0123456789-+:._ eEtTzZ".contains(c)))
        || "-+.!&*?|>'\"%@`#,[]{}:= ".contains(first)
        || s.ends_with(' ')
        || s.ends_with(':')
        || s.contains(": ")
        || s.contains(" #")
        || s.chars().any(|c| c.is_control());
    if !needs_quote {
        return s.to_string();
    }
    if s.chars().any(|c| c.is_control()) {
        let mut out = String::new();
        json_str(s, &mut out);
        return out;
    }
    format!("'{}'", s.replace('\'', "''"))
}

fn sorted_entries<'a>(p: &'a Plain<'a>) -> Vec<(&'a str, Plain<'a>)> {
    let mut e = p.entries().unwrap_or_default();
    e.sort_by(|a, b| a.0.cmp(b.0));
    e
}

/// Writes `p` as a block at `indent` spaces; maps and lists end with a newline.
fn write_yaml_block(p: &Plain<'_>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match p {
        Plain::Scalar(s) => {
            out.push_str(&yaml_scalar(*s));
            out.push('\n');
        }
        Plain::Seq(items) => {
            for item in items {
                out.push_str(&pad);
                out.push_str("- ");
                write_yaml_inline_start(item, indent + 2, out);
            }
        }
        obj => {
            for (k, v) in sorted_entries(obj) {
                out.push_str(&pad);
                out.push_str(&yaml_str(k));
                out.push(':');
                write_yaml_after_key(&v, indent, out);
            }
        }
    }
}

/// After `key:` — scalars and empty collections on the same line, otherwise a nested block
/// (lists at the key's own indentation, as PyYAML does).
fn write_yaml_after_key(v: &Plain<'_>, indent: usize, out: &mut String) {
    match v {
        Plain::Scalar(s) => {
            out.push(' ');
            out.push_str(&yaml_scalar(*s));
            out.push('\n');
        }
        Plain::Seq(items) if items.is_empty() => out.push_str(" []\n"),
        Plain::Seq(_) => {
            out.push('\n');
            write_yaml_block(v, indent, out);
        }
        obj => {
            if obj.entries().unwrap_or_default().is_empty() {
                out.push_str(" {}\n");
            } else {
                out.push('\n');
                write_yaml_block(obj, indent + 2, out);
            }
        }
    }
}

/// After `- ` — the first map entry stays on the dash's line.
fn write_yaml_inline_start(v: &Plain<'_>, indent: usize, out: &mut String) {
    match v {
        Plain::Scalar(s) => {
            out.push_str(&yaml_scalar(*s));
            out.push('\n');
        }
        Plain::Seq(items) if items.is_empty() => out.push_str("[]\n"),
        Plain::Seq(_) => {
            // A list directly in a list: start on the next line.
            out.push('\n');
            write_yaml_block(v, indent, out);
        }
        obj => {
            let entries = sorted_entries(obj);
            if entries.is_empty() {
                out.push_str("{}\n");
                return;
            }
            let pad = " ".repeat(indent);
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(&pad);
                }
                out.push_str(&yaml_str(k));
                out.push(':');
                write_yaml_after_key(v, indent, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_forms_match_octaviaclient_formatters() {
        assert_eq!(Value::Null.human(), "None");
        assert_eq!(Value::Bool(true).human(), "True");
        assert_eq!(Value::IdList(vec!["a".into(), "b".into()]).human(), "a\nb");
        assert_eq!(Value::Lines(vec![]).human(), "");
        let h = Value::Hash(vec![
            ("X-Forwarded-For".into(), Value::str("true")),
            ("cookie_name".into(), Value::Null),
        ]);
        assert_eq!(h.human(), "X-Forwarded-For=true\ncookie_name=None");
        assert_eq!(Value::str_list(&["TLSv1.2".into()]).human(), "['TLSv1.2']");
        assert_eq!(Value::Float(1.0).human(), "1.0");
    }

    #[test]
    fn python_str_of_structures() {
        assert_eq!(
            Value::IdList(vec!["x".into()]).python_str(),
            "[{'id': 'x'}]"
        );
        assert_eq!(Value::Lines(vec!["it's".into()]).python_str(), "[\"it's\"]");
        assert_eq!(
            Value::Hash(vec![("k".into(), Value::str("v"))]).python_str(),
            "{'k': 'v'}"
        );
        assert_eq!(Value::str("plain").python_str(), "plain");
    }

    #[test]
    fn json_matches_python_json_dump() {
        let ids = Value::IdList(vec!["a".into()]);
        let empty = Value::Lines(vec![]);
        let n = Value::Int(80);
        let s = Value::Null;
        let text = json_object(
            &[
                ("listeners", &ids),
                ("tags", &empty),
                ("port", &n),
                ("x", &s),
            ],
            Some(2),
        );
        assert_eq!(
            text,
            "{\n  \"listeners\": [\n    {\n      \"id\": \"a\"\n    }\n  ],\n  \"tags\": [],\n  \"port\": 80,\n  \"x\": null\n}"
        );
        assert_eq!(
            json_object(&[("a", &n), ("b", &ids)], None),
            "{\"a\": 80, \"b\": [{\"id\": \"a\"}]}"
        );
        assert_eq!(json_rows(&[], Some(2)), "[]");
    }

    #[test]
    fn yaml_matches_pyyaml_block_style() {
        assert_eq!(yaml_field("name", &Value::str("lb1")), "name: lb1\n");
        assert_eq!(
            yaml_field("description", &Value::str("")),
            "description: ''\n"
        );
        assert_eq!(yaml_field("updated_at", &Value::Null), "updated_at: null\n");
        assert_eq!(
            yaml_field("created_at", &Value::str("2024-01-01T00:00:00")),
            "created_at: '2024-01-01T00:00:00'\n"
        );
        assert_eq!(
            yaml_field("tags", &Value::Lines(vec!["a".into(), "b".into()])),
            "tags:\n- a\n- b\n"
        );
        assert_eq!(
            yaml_field("name", &Value::str("80_listener")),
            "name: 80_listener\n"
        );
        assert_eq!(yaml_field("port", &Value::str("80")), "port: '80'\n");
        assert_eq!(
            yaml_field("pools", &Value::IdList(vec!["p".into()])),
            "pools:\n- id: p\n"
        );
        assert_eq!(
            yaml_field(
                "insert_headers",
                &Value::Hash(vec![
                    ("X-Forwarded-Port".into(), Value::str("true")),
                    ("X-Forwarded-For".into(), Value::str("true"))
                ])
            ),
            "insert_headers:\n  X-Forwarded-For: 'true'\n  X-Forwarded-Port: 'true'\n"
        );
        assert_eq!(
            yaml_field("insert_headers", &Value::Hash(vec![])),
            "insert_headers: {}\n"
        );
        let id = Value::str("i");
        let port = Value::Int(80);
        assert_eq!(
            yaml_rows(&[vec![("protocol_port", &port), ("id", &id)]]),
            "- id: i\n  protocol_port: 80\n"
        );
        assert_eq!(yaml_rows(&[]), "[]\n");
    }
}
