//! One Sysmon event, as every reader gives it and every writer of the generator takes it:
//! the few System fields detection needs and the EventData fields by name, as text.
use serde::{Deserialize, Serialize};

/// Which Sysmon wrote the event: Windows (provider `Microsoft-Windows-Sysmon`) or Sysmon
/// for Linux (provider `Linux-Sysmon`). Field names are the same; values differ (paths,
/// users), and the seed search only ever sees Windows events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Platform {
    Windows,
    Linux,
}

impl Platform {
    /// The provider name in the event's System part.
    pub fn provider(self) -> &'static str {
        match self {
            Platform::Windows => "Microsoft-Windows-Sysmon",
            Platform::Linux => "Linux-Sysmon",
        }
    }

    /// Platform of a provider name; None for anything that is not Sysmon.
    pub fn from_provider(name: &str) -> Option<Platform> {
        if name.eq_ignore_ascii_case("Microsoft-Windows-Sysmon") {
            Some(Platform::Windows)
        } else if name.eq_ignore_ascii_case("Linux-Sysmon") {
            Some(Platform::Linux)
        } else {
            None
        }
    }
}

/// A Sysmon event. Readers fill `data` in document order, with values exactly as Sysmon
/// rendered them (Sysmon writes `-` for an empty field; readers keep it: `get` hides it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SysmonEvent {
    pub platform: Platform,
    /// System/EventID: 1 process create, 3 network connection, 11 file create, 13 registry
    /// value set, 22 DNS query, ...
    pub event_id: u16,
    /// System/TimeCreated/@SystemTime, ns since the Unix epoch (UTC). Splunk's `_time`.
    pub time_ns: u64,
    /// System/Computer.
    pub computer: String,
    /// System/EventRecordID when the input carries it.
    pub record_id: Option<u64>,
    /// The collector's name for the host when the input carries one apart from Computer
    /// (Splunk's `host`, Elastic's `host.name`); None: use `computer`.
    pub host: Option<String>,
    /// EventData/Data elements: (Name, text), in document order.
    pub data: Vec<(String, String)>,
}

impl SysmonEvent {
    /// An event with these EventData fields, no record id and no collector host.
    pub fn new(
        platform: Platform,
        event_id: u16,
        time_ns: u64,
        computer: &str,
        data: &[(&str, &str)],
    ) -> SysmonEvent {
        SysmonEvent {
            platform,
            event_id,
            time_ns,
            computer: computer.to_string(),
            record_id: None,
            host: None,
            data: data
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// An EventData field's value as written (including Sysmon's `-`).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.data
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// An EventData field with a value: absent, empty and Sysmon's `-` are None.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw(name).filter(|v| !v.is_empty() && *v != "-")
    }

    /// The host name as a SIEM shows it: the collector's host, else Computer.
    pub fn host_name(&self) -> &str {
        self.host.as_deref().unwrap_or(&self.computer)
    }
}
