//! cliff-style output: `-f table|json|shell|value|yaml` for one object (Field | Value),
//! `-f table|csv|json|value|yaml` for lists, `-c COLUMN` selection, `--sort-column`.

use std::fmt::Write as _;

use anyhow::bail;

use super::value::{self, Value};

/// One object to print: its fields in octaviaclient's row order.
pub type Record = Vec<(&'static str, Value)>;

/// Output formats of show/create commands (cliff `ShowOne`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OneFormat {
    /// Field | Value table.
    Table,
    /// A JSON object.
    Json,
    /// `field="value"` lines.
    Shell,
    /// One value per line.
    Value,
    /// YAML.
    Yaml,
}

/// Output formats of list commands (cliff `Lister`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    /// A table with one row per object.
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// A JSON list of objects.
    Json,
    /// Space-separated values, one object per line.
    Value,
    /// YAML.
    Yaml,
}

/// CSV quoting (`--quote`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QuoteMode {
    /// Quote every field.
    All,
    /// Quote only fields that need it.
    Minimal,
    /// Quote fields that are not numbers.
    Nonnumeric,
    /// Never quote.
    None,
}

/// Output options of commands that print one object.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowOutput {
    /// The output format.
    #[arg(short = 'f', long = "format", value_enum, default_value = "table")]
    pub format: OneFormat,
    /// Print only this column (repeatable).
    #[arg(short = 'c', long = "column", value_name = "COLUMN")]
    pub columns: Vec<String>,
    /// Do not indent JSON.
    #[arg(long)]
    pub noindent: bool,
    /// Prefix of every variable name (`-f shell`).
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Table options.
    #[command(flatten)]
    pub table: TableOptions,
}

/// Output options of list commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ListOutput {
    /// The output format.
    #[arg(short = 'f', long = "format", value_enum, default_value = "table")]
    pub format: ListFormat,
    /// Print only this column (repeatable).
    #[arg(short = 'c', long = "column", value_name = "COLUMN")]
    pub columns: Vec<String>,
    /// Do not indent JSON.
    #[arg(long)]
    pub noindent: bool,
    /// When to quote CSV fields.
    #[arg(long, value_enum, default_value = "nonnumeric")]
    pub quote: QuoteMode,
    /// Sort the rows by this column (repeatable; first has priority).
    #[arg(long = "sort-column", value_name = "SORT_COLUMN")]
    pub sort_columns: Vec<String>,
    /// Sort ascending (the default).
    #[arg(long, conflicts_with = "sort_descending")]
    pub sort_ascending: bool,
    /// Sort descending.
    #[arg(long)]
    pub sort_descending: bool,
    /// Table options.
    #[command(flatten)]
    pub table: TableOptions,
}

/// Table options cliff accepts; the width ones are accepted and ignored.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TableOptions {
    /// Maximum display width (accepted for compatibility; tables are not wrapped).
    #[arg(long, value_name = "INTEGER")]
    pub max_width: Option<i64>,
    /// Fit the table to the display width (accepted for compatibility).
    #[arg(long)]
    pub fit_width: bool,
    /// Print an empty table when there is no data.
    #[arg(long)]
    pub print_empty: bool,
}

impl Default for ShowOutput {
    fn default() -> Self {
        ShowOutput {
            format: OneFormat::Table,
            columns: vec![],
            noindent: false,
            prefix: String::new(),
            table: TableOptions::default(),
        }
    }
}

impl Default for ListOutput {
    fn default() -> Self {
        ListOutput {
            format: ListFormat::Table,
            columns: vec![],
            noindent: false,
            quote: QuoteMode::Nonnumeric,
            sort_columns: vec![],
            sort_ascending: false,
            sort_descending: false,
            table: TableOptions::default(),
        }
    }
}

/// The columns `-c` keeps, in the record's order (cliff's rule: unknown names are ignored
/// unless none is known).
fn select_columns<'a>(available: &[&'a str], wanted: &[String]) -> anyhow::Result<Vec<&'a str>> {
    if wanted.is_empty() {
        return Ok(available.to_vec());
    }
    let norm = |c: &str| c.trim().to_lowercase().replace(' ', "_");
    let wanted: Vec<String> = wanted.iter().map(|c| norm(c)).collect();
    let kept: Vec<&str> = available
        .iter()
        .copied()
        .filter(|c| wanted.contains(&norm(c)))
        .collect();
    if kept.is_empty() {
        let quoted = |v: Vec<String>| {
            v.iter()
                .map(|c| format!("'{c}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        bail!(
            "No recognized column names in [{}]. Recognized columns are ({}).",
            quoted(wanted),
            quoted(available.iter().map(|c| c.to_string()).collect())
        );
    }
    Ok(kept)
}

/// Renders one object.
pub fn render_one(record: &Record, opts: &ShowOutput) -> anyhow::Result<String> {
    let names: Vec<&str> = record.iter().map(|(k, _)| *k).collect();
    let cols = select_columns(&names, &opts.columns)?;
    let fields: Vec<(&str, &Value)> = record
        .iter()
        .filter(|(k, _)| cols.contains(k))
        .map(|(k, v)| (*k, v))
        .collect();
    let mut out = String::new();
    match opts.format {
        OneFormat::Table => {
            let rows: Vec<Vec<String>> = fields
                .iter()
                .map(|(k, v)| vec![k.to_string(), v.human()])
                .collect();
            out = render_table(&["Field", "Value"], &rows, &[false, false]);
        }
        OneFormat::Json => {
            out = value::json_object(&fields, (!opts.noindent).then_some(2));
            out.push('\n');
        }
        OneFormat::Shell => {
            for (k, v) in &fields {
                let name = k.to_lowercase().replace([' ', ':', '-'], "_");
                let val = v.python_str().replace('"', "\\\"");
                let _ = writeln!(out, "{}{name}=\"{val}\"", opts.prefix);
            }
        }
        OneFormat::Value => {
            for (_, v) in &fields {
                out.push_str(&v.python_str());
                out.push('\n');
            }
        }
        OneFormat::Yaml => {
            for (k, v) in &fields {
                out.push_str(&value::yaml_field(k, v));
            }
        }
    }
    Ok(out)
}

/// Renders a list of objects with the given columns (missing fields print as `None`).
pub fn render_list(
    columns: &[&str],
    records: &[Record],
    opts: &ListOutput,
) -> anyhow::Result<String> {
    let null = Value::Null;
    let mut rows: Vec<Vec<&Value>> = records
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| r.iter().find(|(k, _)| k == c).map_or(&null, |(_, v)| v))
                .collect()
        })
        .collect();
    // cliff sorts by the last --sort-column first, so the first one wins (stable sorts).
    for sc in opts.sort_columns.iter().rev() {
        if let Some(i) = columns.iter().position(|c| c == sc) {
            rows.sort_by(|a, b| {
                let o = a[i].sort_cmp(b[i]);
                if opts.sort_descending {
                    o.reverse()
                } else {
                    o
                }
            });
        }
    }
    let cols = select_columns(columns, &opts.columns)?;
    let idx: Vec<usize> = cols
        .iter()
        .map(|c| columns.iter().position(|x| x == c).unwrap_or(0))
        .collect();
    let rows: Vec<Vec<&Value>> = rows
        .into_iter()
        .map(|r| idx.iter().map(|&i| r[i]).collect())
        .collect();
    let mut out = String::new();
    match opts.format {
        ListFormat::Table => {
            if rows.is_empty() && !opts.table.print_empty {
                return Ok("\n".into());
            }
            let text: Vec<Vec<String>> = rows
                .iter()
                .map(|r| r.iter().map(|v| v.human()).collect())
                .collect();
            let right: Vec<bool> = (0..cols.len())
                .map(|i| rows.first().is_some_and(|r| r[i].is_number()))
                .collect();
            let headers: Vec<&str> = cols.clone();
            out = render_table(&headers, &text, &right);
        }
        ListFormat::Csv => {
            let quote = |s: &str, numeric: bool| -> String {
                let must = s.contains([',', '"', '\n', '\r']);
                let q = match opts.quote {
                    QuoteMode::All => true,
                    QuoteMode::Minimal => must,
                    QuoteMode::Nonnumeric => !numeric,
                    QuoteMode::None => false,
                };
                if q {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else if must {
                    s.replace(',', "\\,").replace('"', "\\\"")
                } else {
                    s.to_string()
                }
            };
            let header: Vec<String> = cols.iter().map(|c| quote(c, false)).collect();
            out.push_str(&header.join(","));
            out.push('\n');
            for r in &rows {
                let line: Vec<String> = r
                    .iter()
                    .map(|v| match v {
                        Value::Null => quote("", false),
                        v => quote(
                            &v.python_str(),
                            v.is_number() || matches!(v, Value::Bool(_)),
                        ),
                    })
                    .collect();
                out.push_str(&line.join(","));
                out.push('\n');
            }
        }
        ListFormat::Json => {
            let items: Vec<Vec<(&str, &Value)>> = rows.iter().map(|r| named(&cols, r)).collect();
            out = value::json_rows(&items, (!opts.noindent).then_some(2));
            out.push('\n');
        }
        ListFormat::Value => {
            for r in &rows {
                let line: Vec<String> = r.iter().map(|v| v.python_str()).collect();
                out.push_str(&line.join(" "));
                out.push('\n');
            }
        }
        ListFormat::Yaml => {
            let items: Vec<Vec<(&str, &Value)>> = rows.iter().map(|r| named(&cols, r)).collect();
            out = value::yaml_rows(&items);
        }
    }
    Ok(out)
}

fn named<'a>(cols: &[&'a str], row: &[&'a Value]) -> Vec<(&'a str, &'a Value)> {
    cols.iter().copied().zip(row.iter().copied()).collect()
}

/// A prettytable-style grid. Cells may hold several lines; `right[i]` right-aligns column i.
fn render_table(headers: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            for line in cell.split('\n') {
                widths[i] = widths[i].max(width(line));
            }
        }
    }
    let rule: String = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s
    };
    let line_of = |cells: &[&str]| -> String {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - width(c);
            if right.get(i).copied().unwrap_or(false) {
                let _ = write!(s, " {}{} |", " ".repeat(pad), c);
            } else {
                let _ = write!(s, " {}{} |", c, " ".repeat(pad));
            }
        }
        s
    };
    let mut out = String::new();
    out.push_str(&rule);
    out.push('\n');
    out.push_str(&line_of(headers));
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for r in rows {
        let split: Vec<Vec<&str>> = r.iter().map(|c| c.split('\n').collect()).collect();
        let height = split.iter().map(Vec::len).max().unwrap_or(1);
        for l in 0..height {
            let cells: Vec<&str> = split
                .iter()
                .map(|c| c.get(l).copied().unwrap_or(""))
                .collect();
            out.push_str(&line_of(&cells));
            out.push('\n');
        }
    }
    out.push_str(&rule);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        vec![
            ("admin_state_up", Value::Bool(true)),
            ("id", Value::str("1234")),
            ("listeners", Value::IdList(vec!["l1".into(), "l2".into()])),
            ("name", Value::str("lb_test_1")),
            ("updated_at", Value::Null),
        ]
    }

    fn show(f: OneFormat, cols: &[&str]) -> String {
        let opts = ShowOutput {
            format: f,
            columns: cols.iter().map(|c| c.to_string()).collect(),
            ..ShowOutput::default()
        };
        render_one(&rec(), &opts).unwrap()
    }

    #[test]
    fn show_table_is_field_value_grid() {
        let expected = "\
+----------------+-----------+
| Field          | Value     |
+----------------+-----------+
| admin_state_up | True      |
| id             | 1234      |
| listeners      | l1        |
|                | l2        |
| name           | lb_test_1 |
| updated_at     | None      |
+----------------+-----------+
";
        assert_eq!(show(OneFormat::Table, &[]), expected);
    }

    #[test]
    fn show_other_formats_and_columns() {
        assert_eq!(show(OneFormat::Value, &["id", "name"]), "1234\nlb_test_1\n");
        // -c keeps the record's order, not the order asked for.
        assert_eq!(show(OneFormat::Value, &["name", "id"]), "1234\nlb_test_1\n");
        assert_eq!(
            show(OneFormat::Json, &["id", "updated_at"]),
            "{\n  \"id\": \"1234\",\n  \"updated_at\": null\n}\n"
        );
        assert_eq!(
            show(OneFormat::Yaml, &["listeners", "admin_state_up"]),
            "admin_state_up: true\nlisteners:\n- id: l1\n- id: l2\n"
        );
        assert_eq!(
            show(OneFormat::Shell, &["id", "listeners"]),
            "id=\"1234\"\nlisteners=\"[{'id': 'l1'}, {'id': 'l2'}]\"\n"
        );
        assert_eq!(show(OneFormat::Value, &["ID", "bogus"]), "1234\n");
        let err = render_one(
            &rec(),
            &ShowOutput {
                columns: vec!["bogus".into()],
                ..ShowOutput::default()
            },
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("No recognized column names in ['bogus']"),
            "{err}"
        );
    }

    fn list(f: ListFormat, cols: &[&str], sort: &[&str], desc: bool) -> String {
        let records = vec![
            vec![
                ("id", Value::str("b")),
                ("name", Value::str("second")),
                ("protocol_port", Value::Int(8080)),
            ],
            vec![
                ("id", Value::str("a")),
                ("name", Value::str("first")),
                ("protocol_port", Value::Int(80)),
            ],
        ];
        let opts = ListOutput {
            format: f,
            columns: cols.iter().map(|c| c.to_string()).collect(),
            sort_columns: sort.iter().map(|c| c.to_string()).collect(),
            sort_descending: desc,
            ..ListOutput::default()
        };
        render_list(&["id", "name", "protocol_port"], &records, &opts).unwrap()
    }

    #[test]
    fn list_table_aligns_numbers_right() {
        let expected = "\
+----+--------+---------------+
| id | name   | protocol_port |
+----+--------+---------------+
| b  | second |          8080 |
| a  | first  |            80 |
+----+--------+---------------+
";
        assert_eq!(list(ListFormat::Table, &[], &[], false), expected);
    }

    #[test]
    fn list_formats_columns_and_sorting() {
        assert_eq!(
            list(ListFormat::Value, &["id"], &["protocol_port"], false),
            "a\nb\n"
        );
        assert_eq!(
            list(ListFormat::Value, &["id", "protocol_port"], &["id"], true),
            "b 8080\na 80\n"
        );
        assert_eq!(
            list(ListFormat::Csv, &["id", "protocol_port"], &[], false),
            "\"id\",\"protocol_port\"\n\"b\",8080\n\"a\",80\n"
        );
        assert_eq!(
            list(ListFormat::Json, &["id"], &["id"], false),
            "[\n  {\n    \"id\": \"a\"\n  },\n  {\n    \"id\": \"b\"\n  }\n]\n"
        );
        assert_eq!(
            list(ListFormat::Yaml, &["protocol_port", "id"], &[], false),
            "- id: b\n  protocol_port: 8080\n- id: a\n  protocol_port: 80\n"
        );
    }

    #[test]
    fn empty_list_prints_like_cliff() {
        let opts = ListOutput::default();
        assert_eq!(render_list(&["id"], &[], &opts).unwrap(), "\n");
        let json = ListOutput {
            format: ListFormat::Json,
            ..ListOutput::default()
        };
        assert_eq!(render_list(&["id"], &[], &json).unwrap(), "[]\n");
        let mut empty = ListOutput::default();
        empty.table.print_empty = true;
        assert_eq!(
            render_list(&["id"], &[], &empty).unwrap(),
            "+----+\n| id |\n+----+\n+----+\n"
        );
    }
}
