//! The alert schema (field names follow the seed Splunk search) and its renderings.
pub mod explain;
pub mod sink;
pub mod syslog;
pub mod text;

use serde::Serialize;
use std::net::IpAddr;

pub const TECHNIQUE: &str = "T1496.002";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Stable name of the alert ([`alert_id`]): the same on every replay of the same input,
    /// whatever `--threads`; `explain` finds the alert by it.
    pub id: String,
    /// First observation in the window, RFC 3339 UTC.
    pub time: String,
    pub host: IpAddr,
    #[serde(rename = "DestinationIp")]
    pub destination_ip: Option<IpAddr>,
    #[serde(rename = "DestinationHostname")]
    pub destination_hostname: Option<String>,
    #[serde(rename = "DestinationPort")]
    pub destination_port: Option<u16>,
    #[serde(rename = "DetectionBranch")]
    pub detection_branch: &'static str,
    pub technique: &'static str,
    pub analytic: &'static str,
    pub score: u8,
    pub severity: &'static str,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub duration_s: f64,
    /// Of the strongest finding's destination, from the geo databases (null without them).
    pub country: Option<String>,
    pub asn: Option<u32>,
    pub window_start: String,
    pub window_end: String,
    /// Observations folded into this alert.
    pub count: u64,
    pub reason: String,
    pub evidence: serde_json::Value,
    /// The program behind the alert, from Sysmon (`--endpoint-events`): the process of an
    /// endpoint hit, or the one whose connections match the alert's flows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Box<Process>>,
}

/// A process as Sysmon names it (field names as in its events, so SIEM searches written for
/// Sysmon work on the alert's `process` object).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Process {
    /// The Sysmon event's Computer.
    pub computer: String,
    #[serde(rename = "Image")]
    pub image: Option<String>,
    #[serde(rename = "CommandLine")]
    pub command_line: Option<String>,
    #[serde(rename = "User")]
    pub user: Option<String>,
    #[serde(rename = "ParentImage")]
    pub parent_image: Option<String>,
    #[serde(rename = "ParentCommandLine")]
    pub parent_command_line: Option<String>,
    #[serde(rename = "ProcessId")]
    pub process_id: Option<u32>,
    #[serde(rename = "ProcessGuid")]
    pub process_guid: Option<String>,
}

/// Hex digits of an alert id: 64 bits, so ids of one run never collide in practice.
const ALERT_ID_BYTES: usize = 8;

/// The alert id: a digest of what makes the alert one of its kind in a run (branch, host,
/// window start and `key`, which tells apart alerts of one host, branch and window: the
/// proxyware service, the destination). Nothing counted or scored goes in, so folding more
/// observations or repeats into the alert keeps its id.
pub fn alert_id(branch: &str, host: IpAddr, window_start_ns: u64, key: &str) -> String {
    let text = format!("{branch}\n{host}\n{window_start_ns}\n{key}");
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .take(ALERT_ID_BYTES)
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn severity(score: u8) -> &'static str {
    match score {
        80.. => "high",
        50..=79 => "medium",
        _ => "low",
    }
}

/// Nanoseconds since the epoch from an RFC 3339 time (an alert's `time`, `window_start`, ...).
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    u64::try_from(t.timestamp_nanos_opt()?).ok()
}

/// RFC 3339 UTC with microseconds from nanoseconds since the epoch.
pub fn rfc3339(ts_ns: u64) -> String {
    let secs = ts_ns / 1_000_000_000;
    let micros = (ts_ns % 1_000_000_000) / 1_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Gregorian date from days since 1970-01-01 (Howard Hinnant's well-known algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        // 2021-09-12 13:52:02.864133 UTC, the first packet of ndpi__http_connect.pcap.
        assert_eq!(
            rfc3339(1_631_454_722_864_133_000),
            "2021-09-12T13:52:02.864133Z"
        );
        assert_eq!(
            rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn alert_ids_are_short_hex_and_depend_on_every_part() {
        let host: IpAddr = "10.0.0.7".parse().unwrap();
        let id = alert_id("FanOut", host, 900, "-");
        assert_eq!(id.len(), 2 * ALERT_ID_BYTES);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, alert_id("FanOut", host, 900, "-"));
        for other in [
            alert_id("SustainedEgress", host, 900, "-"),
            alert_id("FanOut", "10.0.0.8".parse().unwrap(), 900, "-"),
            alert_id("FanOut", host, 1800, "-"),
            alert_id("FanOut", host, 900, "198.51.100.7:443"),
        ] {
            assert_ne!(id, other);
        }
    }

    #[test]
    fn severity_bands() {
        assert_eq!(severity(100), "high");
        assert_eq!(severity(60), "medium");
        assert_eq!(severity(10), "low");
    }
}
