//! Alert outputs: JSON lines and a readable terminal table.
use super::Alert;
use std::io::{self, Write};

pub fn write_json_line(out: &mut dyn Write, alert: &Alert) -> io::Result<()> {
    serde_json::to_writer(&mut *out, alert)?;
    out.write_all(b"\n")
}

/// A fixed-width table; the reason column takes what is left.
pub fn write_table(out: &mut dyn Write, alerts: &[Alert]) -> io::Result<()> {
    if alerts.is_empty() {
        return writeln!(out, "No alerts.");
    }
    writeln!(
        out,
        "{:<20} {:<16} {:>5} {:<6} {:<16} {:<34} {:>5}  REASON",
        "TIME (UTC)", "HOST", "SCORE", "SEV", "BRANCH", "DESTINATION", "COUNT"
    )?;
    for a in alerts {
        let time: String = a
            .time
            .chars()
            .take(19)
            .collect::<String>()
            .replace('T', " ");
        let dest = match (
            &a.destination_hostname,
            a.destination_ip,
            a.destination_port,
        ) {
            (Some(name), _, Some(port)) => format!("{name}:{port}"),
            (Some(name), _, None) => name.clone(),
            (None, Some(ip), Some(port)) => format!("{ip}:{port}"),
            (None, Some(ip), None) => ip.to_string(),
            (None, None, _) => "-".into(),
        };
        let dest: String = if dest.chars().count() > 34 {
            dest.chars().take(33).chain(['…']).collect()
        } else {
            dest
        };
        writeln!(
            out,
            "{:<20} {:<16} {:>5} {:<6} {:<16} {:<34} {:>5}  {}",
            time,
            a.host.to_string(),
            a.score,
            a.severity,
            a.detection_branch,
            dest,
            a.count,
            a.reason
        )?;
    }
    Ok(())
}
