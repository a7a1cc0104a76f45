//! `explain ALERT_ID`: one alert from a JSON lines alerts file, its evidence laid out for a
//! person, and the Zeek log lines of the same run behind it: the flows its evidence names,
//! then the host's lines in the alert's window, those to its destinations first.
use super::text::{self, Style};
use crate::detect::{human_bytes, human_duration};
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, BinaryHeap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The logs a run's `--log-dir` holds, in the order they are shown.
pub const LOGS: [&str; 5] = ["conn.log", "dns.log", "ssl.log", "http.log", "quic.log"];
/// Shortest id prefix taken for an id (as with git, a unique prefix will do).
const MIN_PREFIX: usize = 4;
/// Bad log lines named on stderr; the rest are only counted.
const MAX_SKIP_MESSAGES: usize = 5;
/// Wrapped lines of a long value (a list of names) in the evidence.
const MAX_VALUE_LINES: usize = 6;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}:{line}: not a JSON alert: {reason}")]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("no alert with id {id} in {path} ({alerts} alerts{hint})")]
    NotFound {
        id: String,
        path: PathBuf,
        alerts: usize,
        hint: &'static str,
    },
    #[error("id {id} is ambiguous in {path}: {}", matches.join(", "))]
    Ambiguous {
        id: String,
        path: PathBuf,
        matches: Vec<String>,
    },
    #[error("{path}:{line}: alert {id}: {reason}")]
    BadAlert {
        path: PathBuf,
        line: usize,
        id: String,
        reason: String,
    },
}

/// What to explain and how.
#[derive(Debug, Clone)]
pub struct ExplainArgs {
    pub id: String,
    pub alerts: PathBuf,
    pub log_dir: Option<PathBuf>,
    /// Log lines shown per log and group; 0 shows all.
    pub limit: usize,
    pub json: bool,
}

/// The alert and where it was found.
#[derive(Debug, Clone)]
pub struct Found {
    pub alert: Map<String, Value>,
    pub line: usize,
}

/// Finds the alert whose id is `id` (or the one alert whose id starts with it).
pub fn find_alert(path: &Path, id: &str) -> Result<Found, ExplainError> {
    let read_error = |source| ExplainError::Read {
        path: path.to_path_buf(),
        source,
    };
    let reader = BufReader::new(File::open(path).map_err(read_error)?);
    let id = id.trim().to_ascii_lowercase();
    let mut exact = None;
    let mut prefixed: Vec<Found> = Vec::new();
    let (mut alerts, mut without_id) = (0, 0);
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(read_error)?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| ExplainError::BadLine {
            path: path.to_path_buf(),
            line: n + 1,
            reason,
        };
        let alert = match serde_json::from_str(&line) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(bad("not a JSON object".into())),
            Err(e) => return Err(bad(e.to_string())),
        };
        alerts += 1;
        let Some(this) = alert.get("id").and_then(Value::as_str) else {
            without_id += 1;
            continue;
        };
        let found = || Found {
            alert: alert.clone(),
            line: n + 1,
        };
        if this == id {
            exact.get_or_insert_with(found);
        } else if id.len() >= MIN_PREFIX && this.starts_with(&id) && prefixed.len() < 10 {
            prefixed.push(found());
        }
    }
    if let Some(found) = exact {
        return Ok(found);
    }
    match prefixed.len() {
        1 => Ok(prefixed.remove(0)),
        0 => Err(ExplainError::NotFound {
            id,
            path: path.to_path_buf(),
            alerts,
            hint: if alerts > 0 && without_id == alerts {
                "; none has an id: written by an older version"
            } else {
                ""
            },
        }),
        _ => Err(ExplainError::Ambiguous {
            id,
            path: path.to_path_buf(),
            matches: prefixed
                .iter()
                .filter_map(|f| f.alert.get("id").and_then(Value::as_str))
                .map(str::to_string)
                .collect(),
        }),
    }
}

/// What of the logs belongs to an alert: its host and window, and what its evidence names.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub host: Option<IpAddr>,
    /// The alert's window in microseconds since the epoch (Zeek `ts` precision).
    pub start_us: i64,
    pub end_us: i64,
    /// Flow uids named in the evidence: their lines belong to the alert wherever they are.
    pub uids: BTreeSet<String>,
    /// Addresses named in the alert (destination, evidence), other than the host.
    pub peers: BTreeSet<IpAddr>,
    /// Names of the destinations (lower case, no trailing dot).
    pub names: BTreeSet<String>,
}

impl Scope {
    pub fn of(alert: &Map<String, Value>) -> Result<Scope, String> {
        let host = alert
            .get("host")
            .and_then(Value::as_str)
            .and_then(|h| h.parse().ok())
            .ok_or("no host")?;
        let time = |key: &str| {
            alert
                .get(key)
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_micros())
                .ok_or(format!("no {key}"))
        };
        let mut scope = Scope {
            host: Some(host),
            start_us: time("window_start")?,
            end_us: time("window_end")?,
            ..Scope::default()
        };
        for (key, value) in alert {
            if key != "host" {
                scope.collect(key, value);
            }
        }
        scope.peers.remove(&host);
        Ok(scope)
    }

    /// Walks the alert: uids under `uid`/`flows`, names under name-like keys, and every
    /// string that is an address or an address:port.
    fn collect(&mut self, key: &str, value: &Value) {
        match value {
            Value::String(s) => {
                if key == "uid" || key == "flows" {
                    self.uids.insert(s.clone());
                } else if matches!(
                    key,
                    "DestinationHostname" | "name" | "names" | "destination_name"
                ) {
                    self.names.insert(normal_name(s));
                } else if let Some(ip) = address(s) {
                    self.peers.insert(ip);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.collect(key, item);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    self.collect(k, v);
                }
            }
            _ => {}
        }
    }

    /// How a log line relates to the alert, if it does.
    pub fn relation(&self, line: &Map<String, Value>) -> Option<Relation> {
        let field = |k: &str| line.get(k).and_then(Value::as_str);
        if field("uid").is_some_and(|u| self.uids.contains(u)) {
            return Some(Relation::Destination);
        }
        let host = self.host?;
        let orig = field("id.orig_h").and_then(|a| a.parse::<IpAddr>().ok());
        let resp = field("id.resp_h").and_then(|a| a.parse::<IpAddr>().ok());
        let peer = if orig == Some(host) {
            resp
        } else if resp == Some(host) {
            orig
        } else {
            return None;
        };
        let (start, end) = line_span_us(line)?;
        if start >= self.end_us || end < self.start_us {
            return None;
        }
        let named = ["query", "server_name", "host"]
            .iter()
            .filter_map(|k| field(k))
            .any(|n| self.names.contains(&normal_name(n)));
        let answered = line
            .get("answers")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter_map(address)
                    .any(|ip| self.peers.contains(&ip))
            });
        if named || answered || peer.is_some_and(|p| self.peers.contains(&p)) {
            Some(Relation::Destination)
        } else {
            Some(Relation::Other)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// A flow the evidence names, or one to (or a lookup of) the alert's destinations.
    Destination,
    /// Another line of the host in the alert's window.
    Other,
}

/// Start and end of a log line in µs: `ts`, plus `duration` for conn.log.
pub fn line_span_us(line: &Map<String, Value>) -> Option<(i64, i64)> {
    let ts = line.get("ts").and_then(Value::as_f64)?;
    let duration = line.get("duration").and_then(Value::as_f64).unwrap_or(0.0);
    let start = (ts * 1e6).round() as i64;
    Some((start, start + (duration.max(0.0) * 1e6).round() as i64))
}

fn normal_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn address(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// The earliest `limit` lines of one group (0: all), with how many there were.
#[derive(Debug, Default)]
pub struct Group {
    heap: BinaryHeap<(i64, usize, Line)>,
    pub total: u64,
}

/// A log line kept for display; ordered only by its place in the heap's key.
#[derive(Debug, PartialEq, Eq)]
struct Line(String);

impl PartialOrd for Line {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Line {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Group {
    fn push(&mut self, ts_us: i64, n: usize, line: String, limit: usize) {
        self.total += 1;
        self.heap.push((ts_us, n, Line(line)));
        if limit > 0 && self.heap.len() > limit {
            self.heap.pop();
        }
    }

    /// The kept lines in time order (file order among equal times).
    pub fn lines(&self) -> Vec<Map<String, Value>> {
        let mut kept: Vec<&(i64, usize, Line)> = self.heap.iter().collect();
        kept.sort_by_key(|(ts, n, _)| (*ts, *n));
        kept.iter()
            .filter_map(|(_, _, l)| match serde_json::from_str(&l.0) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            })
            .collect()
    }
}

/// One log's lines that belong to the alert.
#[derive(Debug, Default)]
pub struct LogSelection {
    pub name: &'static str,
    /// False when the log dir has no such file.
    pub present: bool,
    pub related: Group,
    pub other: Group,
    /// Lines that were not JSON objects (named on stderr, up to a few).
    pub skipped: u64,
}

/// Reads one log of the run and keeps the lines of `scope`.
pub fn select(
    scope: &Scope,
    dir: &Path,
    name: &'static str,
    limit: usize,
    warn: &mut dyn FnMut(String),
) -> Result<LogSelection, ExplainError> {
    let path = dir.join(name);
    let mut selection = LogSelection {
        name,
        ..LogSelection::default()
    };
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(selection),
        Err(source) => return Err(ExplainError::Read { path, source }),
    };
    selection.present = true;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| ExplainError::Read {
            path: path.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let map = match serde_json::from_str(&line) {
            Ok(Value::Object(map)) => map,
            other => {
                selection.skipped += 1;
                if selection.skipped <= MAX_SKIP_MESSAGES as u64 {
                    let reason = other
                        .err()
                        .map_or("not a JSON object".into(), |e| e.to_string());
                    warn(format!(
                        "{}:{}: not a JSON log line, skipped: {reason}",
                        path.display(),
                        n + 1
                    ));
                }
                continue;
            }
        };
        let Some(relation) = scope.relation(&map) else {
            continue;
        };
        let ts = line_span_us(&map).map_or(i64::MAX, |(s, _)| s);
        let group = match relation {
            Relation::Destination => &mut selection.related,
            Relation::Other => &mut selection.other,
        };
        group.push(ts, n, line, limit);
    }
    if selection.skipped > MAX_SKIP_MESSAGES as u64 {
        warn(format!(
            "{}: {} lines in all were not JSON and were skipped",
            path.display(),
            selection.skipped
        ));
    }
    Ok(selection)
}

/// `explain`: finds the alert, reads the logs, writes text or JSON to `out`.
pub fn run(
    args: &ExplainArgs,
    style: Style,
    out: &mut dyn Write,
    warn: &mut dyn FnMut(String),
) -> anyhow::Result<()> {
    let found = find_alert(&args.alerts, &args.id)?;
    let mut logs = Vec::new();
    if let Some(dir) = &args.log_dir {
        let scope = Scope::of(&found.alert).map_err(|reason| ExplainError::BadAlert {
            path: args.alerts.clone(),
            line: found.line,
            id: args.id.clone(),
            reason,
        })?;
        if !dir.is_dir() {
            return Err(ExplainError::Read {
                path: dir.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "not a directory"),
            }
            .into());
        }
        for name in LOGS {
            logs.push(select(&scope, dir, name, args.limit, warn)?);
        }
    }
    if args.json {
        write_json(out, args, &found, &logs)?;
    } else {
        write_text(out, style, args, &found, &logs)?;
    }
    Ok(out.flush()?)
}

fn write_json(
    out: &mut dyn Write,
    args: &ExplainArgs,
    found: &Found,
    logs: &[LogSelection],
) -> io::Result<()> {
    let mut doc = json!({
        "alert": found.alert,
        "alerts_file": args.alerts.display().to_string(),
        "line": found.line,
    });
    if let Some(dir) = &args.log_dir {
        let mut by_log = Map::new();
        for s in logs {
            let entry = if s.present {
                json!({
                    "related": s.related.lines(),
                    "related_total": s.related.total,
                    "other": s.other.lines(),
                    "other_total": s.other.total,
                    "skipped_lines": s.skipped,
                })
            } else {
                Value::Null
            };
            by_log.insert(s.name.into(), entry);
        }
        doc["log_dir"] = json!(dir.display().to_string());
        doc["logs"] = Value::Object(by_log);
    }
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

fn str_field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

/// `value` as text: numbers with their human form when the key says bytes or seconds.
fn scalar(key: &str, value: &Value) -> String {
    match value {
        Value::String(s) => text::clean(s),
        Value::Null => "-".into(),
        Value::Number(n) if key.contains("bytes") && n.is_u64() => {
            let b = n.as_u64().unwrap_or(0);
            if b >= 1000 {
                format!("{b} ({})", human_bytes(b))
            } else {
                b.to_string()
            }
        }
        Value::Number(n)
            if (key.ends_with("_s") || key.ends_with("_seconds") || key == "duration")
                && n.as_f64().is_some_and(|s| s >= 60.0) =>
        {
            format!("{n} s ({})", human_duration(n.as_f64().unwrap_or(0.0)))
        }
        other => other.to_string(),
    }
}

/// Label column of a block of fields: its longest label, within these bounds.
const LABEL_MIN: usize = 14;
const LABEL_MAX: usize = 28;

fn label_width<'a>(labels: impl Iterator<Item = &'a str>) -> usize {
    labels
        .map(|l| text::width(l) + 2)
        .max()
        .unwrap_or(0)
        .clamp(LABEL_MIN, LABEL_MAX)
}

/// Writes `label` then `value` wrapped beside it, indented by `indent`.
fn field(
    out: &mut dyn Write,
    style: Style,
    indent: usize,
    label: &str,
    value: &str,
) -> io::Result<()> {
    labelled(out, style, indent, LABEL_MIN, label, value)
}

fn labelled(
    out: &mut dyn Write,
    style: Style,
    indent: usize,
    label_w: usize,
    label: &str,
    value: &str,
) -> io::Result<()> {
    let pad = " ".repeat(indent);
    let label_w = label_w.max(text::width(label) + 1);
    let room = style.width.saturating_sub(indent + label_w).max(20);
    let lines = text::wrap_cut(value, room, MAX_VALUE_LINES);
    let mut first = true;
    for line in lines
        .iter()
        .chain(lines.is_empty().then(String::new).iter())
    {
        if first {
            writeln!(out, "{pad}{}{line}", text::pad(label, label_w, false))?;
            first = false;
        } else {
            writeln!(out, "{pad}{}{line}", " ".repeat(label_w))?;
        }
    }
    Ok(())
}

/// Any JSON value as indented, readable lines: objects as labelled fields, lists of scalars
/// joined, lists of objects as a table when it fits, else one line per item.
fn value_block(
    out: &mut dyn Write,
    style: Style,
    indent: usize,
    label_w: usize,
    key: &str,
    value: &Value,
) -> io::Result<()> {
    let pad = " ".repeat(indent);
    let key = text::clean(key);
    match value {
        Value::Object(map) if map.is_empty() => labelled(out, style, indent, label_w, &key, "-"),
        Value::Object(map) => {
            writeln!(out, "{pad}{key}:")?;
            fields(out, style, indent + 2, map)
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            writeln!(out, "{pad}{key} ({}):", items.len())?;
            object_list(out, style, indent + 2, items)
        }
        Value::Array(items) if items.is_empty() => labelled(out, style, indent, label_w, &key, "-"),
        Value::Array(items) => {
            let joined: Vec<String> = items.iter().map(|v| scalar(&key, v)).collect();
            labelled(out, style, indent, label_w, &key, &joined.join(", "))
        }
        scalar_value => labelled(
            out,
            style,
            indent,
            label_w,
            &key,
            &scalar(&key, scalar_value),
        ),
    }
}

/// An object's fields as a block with one label column.
fn fields(
    out: &mut dyn Write,
    style: Style,
    indent: usize,
    map: &Map<String, Value>,
) -> io::Result<()> {
    let label_w = label_width(map.keys().map(String::as_str));
    for (k, v) in map {
        value_block(out, style, indent, label_w, k, v)?;
    }
    Ok(())
}

/// A list of objects: a table with a column per key when it fits the width, else each
/// object on its own wrapped line of `key value` pairs.
fn object_list(
    out: &mut dyn Write,
    style: Style,
    indent: usize,
    items: &[Value],
) -> io::Result<()> {
    let mut keys: Vec<&str> = Vec::new();
    for item in items {
        if let Value::Object(map) = item {
            for k in map.keys() {
                if !keys.contains(&k.as_str()) {
                    keys.push(k);
                }
            }
        }
    }
    let cell = |item: &Value, k: &str| match item.get(k) {
        Some(Value::Number(n)) if k.contains("bytes") && n.is_u64() => {
            human_bytes(n.as_u64().unwrap_or(0))
        }
        Some(v @ (Value::Array(_) | Value::Object(_))) => text::clean(&v.to_string()),
        Some(v) => scalar(k, v),
        None => "-".into(),
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| keys.iter().map(|k| cell(item, k)).collect())
        .collect();
    let widths: Vec<usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            rows.iter()
                .map(|r| text::width(&r[i]))
                .chain([text::width(k)])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let pad = " ".repeat(indent);
    let total = indent + widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
    if total <= style.width {
        let line = |cells: &[String]| {
            let parts: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, &w)| text::pad(c, w, false))
                .collect();
            format!("{pad}{}", parts.join("  ").trim_end())
        };
        let header: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        writeln!(out, "{}", line(&header))?;
        for row in &rows {
            writeln!(out, "{}", line(row))?;
        }
        return Ok(());
    }
    let room = style.width.saturating_sub(indent + 2).max(20);
    for row in &rows {
        let pairs: Vec<String> = keys
            .iter()
            .zip(row)
            .filter(|(_, v)| v.as_str() != "-")
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        for (i, line) in text::wrap_cut(&pairs.join(" · "), room, MAX_VALUE_LINES)
            .iter()
            .enumerate()
        {
            writeln!(out, "{pad}{}{line}", if i == 0 { "- " } else { "  " })?;
        }
    }
    Ok(())
}

/// "gw3.example.net (203.0.113.5) port 443".
fn destination(alert: &Map<String, Value>) -> String {
    let name = str_field(alert, "DestinationHostname");
    let ip = str_field(alert, "DestinationIp");
    let mut d = match (name, ip) {
        (Some(n), Some(ip)) => format!("{} ({ip})", text::clean(n)),
        (Some(n), None) => text::clean(n),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => "-".into(),
    };
    if let Some(port) = alert.get("DestinationPort").and_then(Value::as_u64) {
        d.push_str(&format!(" port {port}"));
    }
    d
}

fn write_text(
    out: &mut dyn Write,
    style: Style,
    args: &ExplainArgs,
    found: &Found,
    logs: &[LogSelection],
) -> io::Result<()> {
    let a = &found.alert;
    let s = |k: &str| str_field(a, k).map_or("-".to_string(), text::clean);
    let n = |k: &str| a.get(k).map_or("-".to_string(), |v| scalar(k, v));
    let severity = s("severity");
    writeln!(
        out,
        "Alert {}  {}  score {} {}",
        s("id"),
        s("DetectionBranch"),
        n("score"),
        text::paint_severity(style, &severity, &severity)
    )?;
    writeln!(out, "  from {} line {}", args.alerts.display(), found.line)?;
    let geo = match (
        str_field(a, "country"),
        a.get("asn").and_then(Value::as_u64),
    ) {
        (None, None) => None,
        (c, asn) => Some(format!(
            "{}{}",
            c.map_or(String::new(), text::clean),
            asn.map_or(String::new(), |n| format!(" AS{n}"))
        )),
    };
    let bytes = format!(
        "sent {}, received {}, over {}",
        a.get("bytes_out")
            .and_then(Value::as_u64)
            .map_or("-".into(), human_bytes),
        a.get("bytes_in")
            .and_then(Value::as_u64)
            .map_or("-".into(), human_bytes),
        a.get("duration_s")
            .and_then(Value::as_f64)
            .map_or("-".into(), human_duration),
    );
    let rows = [
        ("host", s("host")),
        ("destination", destination(a)),
        ("first seen", s("time")),
        (
            "window",
            format!("{} to {}", s("window_start"), s("window_end")),
        ),
        ("bytes", bytes),
        (
            "technique",
            format!("{}, analytic {}", s("technique"), s("analytic")),
        ),
        ("count", n("count")),
    ];
    for (label, value) in rows {
        field(out, style, 2, label, &value)?;
    }
    if let Some(geo) = geo {
        field(out, style, 2, "geo", &geo)?;
    }
    // Fields this version does not know (added later) still show.
    const SHOWN: [&str; 21] = [
        "id",
        "time",
        "host",
        "DestinationIp",
        "DestinationHostname",
        "DestinationPort",
        "DetectionBranch",
        "technique",
        "analytic",
        "score",
        "severity",
        "bytes_out",
        "bytes_in",
        "duration_s",
        "country",
        "asn",
        "window_start",
        "window_end",
        "count",
        "reason",
        "evidence",
    ];
    for (k, v) in a.iter().filter(|(k, _)| !SHOWN.contains(&k.as_str())) {
        value_block(out, style, 2, LABEL_MIN, k, v)?;
    }
    writeln!(out, "\nReason")?;
    for line in text::wrap(&s("reason"), style.width.saturating_sub(2).max(20)) {
        writeln!(out, "  {line}")?;
    }
    let evidence = a.get("evidence").cloned().unwrap_or(Value::Null);
    write_evidence(out, style, &evidence)?;
    if args.log_dir.is_some() {
        write_logs(out, style, a, logs, args.limit)?;
    }
    Ok(())
}

fn write_evidence(out: &mut dyn Write, style: Style, evidence: &Value) -> io::Result<()> {
    let Value::Object(map) = evidence else {
        writeln!(out, "\nEvidence")?;
        return value_block(out, style, 2, LABEL_MIN, "evidence", evidence);
    };
    if let Some(Value::Array(findings)) = map.get("findings") {
        writeln!(out, "\nFindings ({}), strongest first", findings.len())?;
        for (i, f) in findings.iter().enumerate() {
            let fs = |k: &str| {
                f.get(k)
                    .and_then(Value::as_str)
                    .map_or("-".into(), text::clean)
            };
            writeln!(
                out,
                "\n  {}. {} ({}), strength {}, at {}",
                i + 1,
                fs("branch"),
                fs("analytic"),
                f.get("strength").map_or("-".into(), |v| v.to_string()),
                fs("time")
            )?;
            for line in text::wrap(&fs("summary"), style.width.saturating_sub(5).max(20)) {
                writeln!(out, "     {line}")?;
            }
            let dest = match (
                fs("destination"),
                f.get("destination_name").and_then(Value::as_str),
            ) {
                (d, Some(name)) => format!("{d} ({})", text::clean(name)),
                (d, None) => d,
            };
            field(out, style, 5, "destination", &dest)?;
            let amount = |k: &str| {
                f.get(k)
                    .and_then(Value::as_u64)
                    .map_or("-".into(), human_bytes)
            };
            field(
                out,
                style,
                5,
                "bytes",
                &format!(
                    "sent {}, received {}, over {}",
                    amount("bytes_out"),
                    amount("bytes_in"),
                    f.get("duration_s")
                        .and_then(Value::as_f64)
                        .map_or("-".into(), human_duration)
                ),
            )?;
            if let Some(details) = f.get("details") {
                value_block(out, style, 5, LABEL_MIN, "details", details)?;
            }
        }
        let mut rest = map.clone();
        rest.remove("findings");
        if !rest.is_empty() {
            writeln!(out, "\nScoring")?;
            fields(out, style, 2, &rest)?;
        }
        return Ok(());
    }
    writeln!(out, "\nEvidence")?;
    fields(out, style, 2, map)
}

/// Columns of a log line as shown: the host's side is implied, the peer's is shown with the
/// direction (→ the host opened it, ← the peer did).
fn log_columns(name: &str) -> &'static [&'static str] {
    match name {
        "conn.log" => &["service", "duration", "sent", "received", "conn_state"],
        "dns.log" => &["query", "qtype_name", "rcode_name", "answers"],
        "ssl.log" => &["server_name", "version", "established"],
        "http.log" => &["method", "host", "uri"],
        _ => &["server_name", "version"],
    }
}

fn log_cell(line: &Map<String, Value>, host: Option<&str>, column: &str) -> String {
    let outbound = line.get("id.orig_h").and_then(Value::as_str) == host;
    let (sent, received) = if outbound {
        ("orig_ip_bytes", "resp_ip_bytes")
    } else {
        ("resp_ip_bytes", "orig_ip_bytes")
    };
    let value = match column {
        "sent" => line.get(sent),
        "received" => line.get(received),
        c => line.get(c),
    };
    match (column, value) {
        (_, None | Some(Value::Null)) => "-".into(),
        ("sent" | "received", Some(v)) => v.as_u64().map_or("-".into(), human_bytes),
        ("duration", Some(v)) => v.as_f64().map_or("-".into(), human_duration),
        (_, Some(Value::Array(items))) => items
            .iter()
            .map(|v| v.as_str().map_or(v.to_string(), text::clean))
            .collect::<Vec<_>>()
            .join(","),
        (_, Some(Value::String(s))) => text::clean(s),
        (_, Some(v)) => v.to_string(),
    }
}

fn write_logs(
    out: &mut dyn Write,
    style: Style,
    alert: &Map<String, Value>,
    logs: &[LogSelection],
    limit: usize,
) -> io::Result<()> {
    let host = str_field(alert, "host");
    // Times on the window's day show without the date.
    let day = str_field(alert, "window_start").and_then(|w| w.get(..10));
    writeln!(out)?;
    let intro = format!(
        "Logs: the flows the evidence names, and the lines of {} in the window, those to \
         its destinations first.",
        host.unwrap_or("-")
    );
    for line in text::wrap(&intro, style.width) {
        writeln!(out, "{line}")?;
    }
    for log in logs {
        if !log.present {
            writeln!(out, "\n{}: not in the log dir", log.name)?;
            continue;
        }
        writeln!(
            out,
            "\n{}: {} to the alert's destinations or named in its evidence, {} other",
            log.name, log.related.total, log.other.total
        )?;
        for (title, group) in [("destinations", &log.related), ("other", &log.other)] {
            let lines = group.lines();
            if lines.is_empty() {
                continue;
            }
            let mut header = vec!["time (UTC)".to_string(), "uid".into(), "peer".into()];
            header.extend(log_columns(log.name).iter().map(|c| {
                match *c {
                    "conn_state" => "state",
                    "qtype_name" => "qtype",
                    "rcode_name" => "rcode",
                    other => other,
                }
                .to_string()
            }));
            let rows: Vec<Vec<String>> = lines
                .iter()
                .map(|l| {
                    let time = line_span_us(l)
                        .map(|(s, _)| {
                            let iso = super::rfc3339(u64::try_from(s).unwrap_or(0) * 1000);
                            match iso.get(..10) {
                                Some(d) if Some(d) == day => iso.get(11..19),
                                _ => iso.get(5..19),
                            }
                            .unwrap_or(&iso)
                            .replace('T', " ")
                        })
                        .unwrap_or_else(|| "-".into());
                    let mut row = vec![
                        time,
                        str_field(l, "uid").map_or("-".into(), text::clean),
                        peer(l, host),
                    ];
                    row.extend(log_columns(log.name).iter().map(|c| log_cell(l, host, c)));
                    row
                })
                .collect();
            writeln!(out, "  {title}:")?;
            write_grid(out, style, 4, &header, &rows)?;
            let shown = lines.len() as u64;
            if group.total > shown {
                writeln!(
                    out,
                    "    … {} more (the earliest {} shown; --limit 0 shows all)",
                    group.total - shown,
                    if limit == 0 { shown as usize } else { limit }
                )?;
            }
        }
    }
    Ok(())
}

/// "→ 203.0.113.5:443/tcp" for a flow the host opened, "← 192.0.2.7:5555/tcp" for one it
/// accepted.
fn peer(line: &Map<String, Value>, host: Option<&str>) -> String {
    let proto = line.get("proto").and_then(Value::as_str).map(text::clean);
    let peer = endpoints(line, host);
    match proto {
        Some(p) => format!("{peer}/{p}"),
        None => peer,
    }
}

fn endpoints(line: &Map<String, Value>, host: Option<&str>) -> String {
    let f = |k: &str| {
        line.get(k).map_or("-".into(), |v| match v {
            Value::String(s) => text::clean(s),
            other => other.to_string(),
        })
    };
    let (orig, resp) = (f("id.orig_h"), f("id.resp_h"));
    let with_port = |ip: String, port: String| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    if Some(orig.as_str()) == host {
        format!("→ {}", with_port(resp, f("id.resp_p")))
    } else if Some(resp.as_str()) == host {
        format!("← {}", with_port(orig, f("id.orig_p")))
    } else {
        format!(
            "{} → {}",
            with_port(orig, f("id.orig_p")),
            with_port(resp, f("id.resp_p"))
        )
    }
}

/// A table cut to the width: every column as wide as its widest cell, the last one takes
/// what is left (cut with `…`).
fn write_grid(
    out: &mut dyn Write,
    style: Style,
    indent: usize,
    header: &[String],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .chain(header.get(i))
                .map(|c| text::width(c))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let pad = " ".repeat(indent);
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, &w)| text::pad(c, w, false))
            .collect();
        let line = format!("{pad}{}", cells.join("  "));
        writeln!(out, "{}", text::cut(line.trim_end(), style.width))?;
    }
    Ok(())
}
