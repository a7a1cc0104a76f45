//! Alert outputs: JSON lines and a readable terminal table.
use super::Alert;
use super::text::{self, Style};
use std::io::{self, Write};

pub fn write_json_line(out: &mut dyn Write, alert: &Alert) -> io::Result<()> {
    serde_json::to_writer(&mut *out, alert)?;
    out.write_all(b"\n")
}

/// Lines of reason under each row; the rest is in `explain`.
const MAX_REASON_LINES: usize = 3;
/// Narrowest the elastic columns get before lines are simply cut at the width.
const MIN_DESTINATION: usize = 12;
const MIN_HOST: usize = 15;
const MIN_BRANCH: usize = 10;
/// The reason needs this much beside the id gutter, else it goes under the row.
const MIN_REASON: usize = 30;

const HEADERS: [&str; 7] = [
    "TIME (UTC)",
    "HOST",
    "SCORE",
    "SEV",
    "BRANCH",
    "DESTINATION",
    "COUNT",
];
const TIME: usize = 0;
const HOST: usize = 1;
const SCORE: usize = 2;
const SEV: usize = 3;
const BRANCH: usize = 4;
const DEST: usize = 5;
const COUNT: usize = 6;

fn cells(a: &Alert) -> [String; 7] {
    let time = a.time.get(..19).unwrap_or(&a.time).replace('T', " ");
    let dest = match (
        &a.destination_hostname,
        a.destination_ip,
        a.destination_port,
    ) {
        (Some(name), _, Some(port)) => format!("{name}:{port}"),
        (Some(name), _, None) => name.clone(),
        (None, Some(std::net::IpAddr::V6(ip)), Some(port)) => format!("[{ip}]:{port}"),
        (None, Some(ip), Some(port)) => format!("{ip}:{port}"),
        (None, Some(ip), None) => ip.to_string(),
        (None, None, _) => "-".into(),
    };
    [
        time,
        a.host.to_string(),
        a.score.to_string(),
        a.severity.to_string(),
        a.detection_branch.to_string(),
        text::clean(&dest),
        a.count.to_string(),
    ]
}

/// Column widths: each as wide as its widest cell, then the destination, host and branch
/// shrink (in that order) until the row fits `width`.
fn widths(rows: &[[String; 7]], width: usize) -> [usize; 7] {
    let mut w = [0; 7];
    for (i, h) in HEADERS.iter().enumerate() {
        w[i] = rows
            .iter()
            .map(|r| text::width(&r[i]))
            .chain([text::width(h)])
            .max()
            .unwrap_or(0);
    }
    let separators = HEADERS.len() - 1;
    for (col, min) in [
        (DEST, MIN_DESTINATION),
        (HOST, MIN_HOST),
        (BRANCH, MIN_BRANCH),
    ] {
        let total: usize = w.iter().sum::<usize>() + separators;
        if total > width {
            w[col] = w[col].saturating_sub(total - width).max(min.min(w[col]));
        }
    }
    w
}

/// A destination in `w` columns: a name too long is cut before its port, which stays.
fn fit_destination(dest: &str, w: usize) -> String {
    if text::width(dest) <= w {
        return dest.to_string();
    }
    match dest.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']'))
                && text::width(port) + 3 <= w =>
        {
            format!("{}:{port}", text::cut(host, w - text::width(port) - 1))
        }
        _ => text::cut(dest, w),
    }
}

/// The alerts as a table in `style.width` columns: one row of fields per alert, then its id
/// and its reason wrapped under it (at most [`MAX_REASON_LINES`], cut with `…`). Severity and
/// score are coloured by severity when `style.colour`.
pub fn write_table(out: &mut dyn Write, alerts: &[Alert], style: Style) -> io::Result<()> {
    if alerts.is_empty() {
        return writeln!(out, "No alerts.");
    }
    let rows: Vec<[String; 7]> = alerts.iter().map(cells).collect();
    let w = widths(&rows, style.width);
    // Terminals narrower than the narrowest columns: the row is cut at the width (cells are
    // cut before they are coloured, so escape sequences are never split).
    let line = |cells: &[String; 7], severity: Option<&str>| {
        let mut line = String::new();
        let mut left = style.width;
        for (i, cell) in cells.iter().enumerate() {
            let sep = usize::from(i > 0);
            if left <= sep {
                break;
            }
            left -= sep;
            line.push_str(&" ".repeat(sep));
            let right = matches!(i, SCORE | COUNT);
            let mut padded = if i == DEST {
                text::pad(&fit_destination(cell, w[i]), w[i], false)
            } else {
                text::pad(cell, w[i], right)
            };
            if text::width(&padded) > left {
                padded = text::cut(&padded, left);
            }
            left -= text::width(&padded);
            line.push_str(&match severity {
                Some(sev) if matches!(i, SCORE | SEV) => text::paint_severity(style, sev, &padded),
                _ => padded,
            });
        }
        line
    };
    let header = HEADERS.map(String::from);
    let header_line = line(&header, None);
    if style.colour {
        let bold = anstyle::Style::new().bold();
        writeln!(out, "{}{header_line}{}", bold.render(), bold.render_reset())?;
    } else {
        writeln!(out, "{header_line}")?;
    }
    let gutter = w[TIME] + 1;
    for (a, row) in alerts.iter().zip(&rows) {
        writeln!(out, "{}", line(row, Some(a.severity)))?;
        let reason = text::clean(&a.reason);
        let id = format!("  {}", a.id);
        if style.width >= gutter + MIN_REASON && text::width(&id) < gutter {
            let lines = text::wrap_cut(&reason, style.width - gutter, MAX_REASON_LINES);
            for (i, l) in lines.iter().enumerate() {
                let left = if i == 0 { id.as_str() } else { "" };
                writeln!(out, "{}{l}", text::pad(left, gutter, false))?;
            }
        } else {
            writeln!(out, "{}", text::cut(&id, style.width))?;
            let room = style.width.saturating_sub(4).max(1);
            for l in text::wrap_cut(&reason, room, MAX_REASON_LINES) {
                writeln!(out, "    {l}")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alert(n: u8, severity: &'static str, reason: &str) -> Alert {
        Alert {
            id: format!("{n:016x}"),
            time: "2024-03-04T17:55:19.000000Z".into(),
            host: if n < 3 {
                "10.20.2.50".parse().unwrap()
            } else {
                "fd00:20::1234:5678:9abc:def0".parse().unwrap()
            },
            destination_ip: Some("203.0.113.5".parse().unwrap()),
            destination_hostname: Some("gw3.fastlane-cdn.example.net".into()),
            destination_port: Some(443),
            detection_branch: "FloodParticipation",
            technique: "T1496.002",
            analytic: "AN0081",
            score: 85,
            severity,
            bytes_out: 1,
            bytes_in: 2,
            duration_s: 3.0,
            country: None,
            asn: None,
            window_start: "2024-03-04T17:45:00.000000Z".into(),
            window_end: "2024-03-04T18:00:00.000000Z".into(),
            count: 12_345,
            reason: reason.into(),
            evidence: json!({}),
            process: None,
        }
    }

    fn long_reason() -> String {
        "10.20.2.50 relayed 6.7 MB: a 13 min control session to 203.0.113.5:443 \
         (gw3.fastlane-cdn.example.net) uploaded what 26 short flows to 25 sites downloaded \
         (ratio 1.35); kept TCP 203.0.113.5:443 open 10 min, sent 4.8 MB (231x received); "
            .repeat(3)
    }

    fn render(alerts: &[Alert], style: Style) -> String {
        let mut out = Vec::new();
        write_table(&mut out, alerts, style).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn alerts() -> Vec<Alert> {
        vec![
            alert(0, "high", &long_reason()),
            alert(1, "medium", "short \u{1b}[2J reason"),
            alert(2, "low", "x"),
        ]
    }

    #[test]
    fn fits_the_width_without_colour() {
        let mut all = alerts();
        all.push(alert(3, "high", "an IPv6 host"));
        for width in [30, 40, 60, 80, 100, 132, 200] {
            let s = render(&all, Style::plain(width));
            assert!(!s.contains('\u{1b}'), "width {width}: escape in\n{s}");
            for line in s.lines() {
                assert!(text::width(line) <= width, "width {width}: {line:?}");
            }
            for a in &all {
                assert!(s.contains(&a.id), "width {width}: id {} missing\n{s}", a.id);
            }
        }
    }

    #[test]
    fn reads_well_at_100_columns() {
        let s = render(&alerts(), Style::plain(100));
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].starts_with("TIME (UTC)"));
        // Row, then the id beside at most three lines of reason, the last cut with `…`.
        assert!(lines[1].starts_with("2024-03-04 17:55:19 10.20.2.50"));
        assert!(lines[1].contains("gw3.fastlane-cdn.example.n…:443"), "{s}");
        assert!(lines[1].contains(" high "), "{s}");
        assert!(
            lines[2].starts_with("  0000000000000000  10.20.2.50 relayed"),
            "{s}"
        );
        assert!(lines[4].ends_with('…'), "{s}");
        assert!(
            lines[5].starts_with("2024-03-04 17:55:19 10.20.2.50"),
            "{s}"
        );
        // Every column starts at the same place on every row.
        let dest = lines[0].find("DESTINATION").unwrap();
        assert_eq!(lines[1].find("gw3."), Some(dest));
        // The cleaned reason: no escape from the input reaches the terminal.
        assert!(s.contains("short \u{fffd}[2J reason"));
    }

    #[test]
    fn narrow_terminals_shrink_the_destination_first_keeping_its_port() {
        let s = render(&alerts(), Style::plain(90));
        let row = s.lines().nth(1).unwrap();
        assert!(
            row.contains("FloodParticipation gw3.fastlane-cdn…:443 12345"),
            "{s}"
        );
        let s = render(&alerts(), Style::plain(80));
        let row = s.lines().nth(1).unwrap();
        assert!(row.contains(" FloodParticipati… gw3.fas…:443 12345"), "{s}");
        assert_eq!(fit_destination("[2001:db8::1]:443", 12), "[2001:d…:443");
        assert_eq!(fit_destination("2001:db8::1234", 10), "2001:db8:…");
    }

    #[test]
    fn colours_by_severity_only_when_asked() {
        let style = Style {
            width: 100,
            colour: true,
        };
        let s = render(&alerts(), style);
        let red = anstyle::AnsiColor::Red
            .on_default()
            .bold()
            .render()
            .to_string();
        let yellow = anstyle::AnsiColor::Yellow.on_default().render().to_string();
        let high_row = s.lines().nth(1).unwrap();
        assert!(high_row.contains(&format!("{red}high  ")), "{high_row:?}");
        assert!(s.lines().any(|l| l.contains(&format!("{yellow}medium"))));
        // Colour codes take no columns: the visible text still fits.
        for width in [30, 60, 100] {
            let coloured = Style {
                width,
                colour: true,
            };
            let visible = crate::alert::text::strip_ansi(&render(&alerts(), coloured));
            assert_eq!(visible, render(&alerts(), Style::plain(width)));
        }
    }

    #[test]
    fn no_alerts() {
        assert_eq!(render(&[], Style::plain(100)), "No alerts.\n");
    }
}
