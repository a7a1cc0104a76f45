//! Default-mode endpoint detection, one event at a time: what the seed search does, done
//! better. Binary names match whole file names from the project's list (and its hashes and
//! signers when events carry them), domains match on whole labels at a suffix, and Event 11
//! (file drops), 13 (Run-key persistence) and 22 (DNS queries) count too. Fan-out needs a
//! window of Event 3s and lives in [`super::evidence`].
use super::binaries::{BinaryHit, BinaryMatcher, MatchedBy, file_name, program};
use super::config::EndpointConfig;
use super::event::SysmonEvent;
use crate::config::ProxywareConfig;
use crate::enrich::domains::DomainMatcher;
use serde::Serialize;
use serde_json::json;
use std::net::IpAddr;

/// The endpoint's detection branches (the alert's `DetectionBranch`). The domain and fan-out
/// branches share the network's names so a host's alerts from both sides fold together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum EndpointBranch {
    KnownProxywareBinary,
    ProxywarePersistence,
    ProxywareFileDrop,
    ProxywareDomain,
    FanOut,
}

impl EndpointBranch {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointBranch::KnownProxywareBinary => "KnownProxywareBinary",
            EndpointBranch::ProxywarePersistence => "ProxywarePersistence",
            EndpointBranch::ProxywareFileDrop => "ProxywareFileDrop",
            EndpointBranch::ProxywareDomain => "ProxywareDomain",
            EndpointBranch::FanOut => "FanOut",
        }
    }

    /// DET0028: AN0080 is about processes (Sysmon 1 and 3); names and fan-out are AN0081's.
    pub fn analytic(self) -> &'static str {
        match self {
            EndpointBranch::ProxywareDomain | EndpointBranch::FanOut => "AN0081",
            _ => "AN0080",
        }
    }
}

/// What one event says.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub branch: EndpointBranch,
    /// The proxyware service, or for fan-out `proto/port`.
    pub key: String,
    pub score: u8,
    /// A clause without the host, e.g. "ran Honeygain's agent Honeygain.exe from ...".
    pub summary: String,
    pub destination: Option<(IpAddr, u16)>,
    pub destination_name: Option<String>,
    pub detail: serde_json::Value,
}

/// The lists detection matches against.
pub struct Matchers<'a> {
    pub binaries: &'a BinaryMatcher,
    pub domains: &'a DomainMatcher,
    pub allow_domains: &'a DomainMatcher,
    pub config: &'a EndpointConfig,
    pub proxyware: &'a ProxywareConfig,
}

impl Matchers<'_> {
    /// Hits of one event (fan-out aside).
    pub fn hits(&self, ev: &SysmonEvent, out: &mut Vec<Hit>) {
        match ev.event_id {
            1 => {
                if let Some(hit) = self.process_binary(ev) {
                    out.push(self.binary_hit(ev, &hit, "ran"));
                }
                if let Some(command) = ev.get("CommandLine") {
                    self.command_line_names(ev, command, out);
                }
            }
            3 => {
                if let Some(hit) = ev.get("Image").and_then(|i| self.binaries.path(i)) {
                    out.push(self.binary_hit(ev, &hit, "connected out with"));
                }
                if let Some(name) = ev.get("DestinationHostname") {
                    let destination = destination(ev);
                    self.name(ev, name, NameSeen::Connection, destination, out);
                }
            }
            22 => {
                if let Some(hit) = ev.get("Image").and_then(|i| self.binaries.path(i)) {
                    out.push(self.binary_hit(ev, &hit, "looked names up with"));
                }
                if let Some(name) = ev.get("QueryName") {
                    self.name(ev, name, NameSeen::Query, None, out);
                }
            }
            11 => self.file_drop(ev, out),
            13 => self.persistence(ev, out),
            6 | 7 => {
                if let Some(hit) = ev.get("Signature").and_then(|s| self.binaries.signer(s)) {
                    out.push(self.binary_hit(ev, &hit, "loaded a module signed for"));
                }
            }
            _ => {}
        }
    }

    fn process_binary(&self, ev: &SysmonEvent) -> Option<BinaryHit<'_>> {
        ev.get("Image")
            .and_then(|i| self.binaries.path(i))
            .or_else(|| {
                ev.get("OriginalFileName")
                    .and_then(|n| self.binaries.file_name(n, MatchedBy::OriginalFileName))
            })
            .or_else(|| ev.get("Hashes").and_then(|h| self.binaries.hashes(h)))
    }

    fn binary_hit(&self, ev: &SysmonEvent, hit: &BinaryHit<'_>, verb: &str) -> Hit {
        let c = self.config;
        let image = ev.get("Image").unwrap_or("");
        let writable = user_writable(image);
        let mut score = u32::from(c.binary_score);
        if writable {
            score += u32::from(c.user_writable_bonus);
        }
        let mut summary = format!(
            "{verb} {}'s agent {} (listed {} {})",
            hit.service,
            if image.is_empty() { hit.entry } else { image },
            hit.by.as_str(),
            hit.entry
        );
        if writable {
            summary.push_str(", from a folder users can write to");
        }
        if let Some(parent) = ev.get("ParentImage") {
            summary.push_str(&format!(", started by {}", file_name(parent)));
        }
        if let Some(user) = ev.get("User") {
            summary.push_str(&format!(", as {user}"));
        }
        Hit {
            branch: EndpointBranch::KnownProxywareBinary,
            key: hit.service.to_string(),
            score: score.min(100) as u8,
            summary,
            destination: None,
            destination_name: None,
            detail: json!({
                "matched": hit.entry,
                "matched_by": hit.by.as_str(),
                "user_writable_folder": writable,
            }),
        }
    }

    /// A proxyware name (label-suffix match, allowlist first).
    fn name(
        &self,
        ev: &SysmonEvent,
        name: &str,
        seen: NameSeen,
        destination: Option<(IpAddr, u16)>,
        out: &mut Vec<Hit>,
    ) {
        let name = name.trim().trim_end_matches('.');
        let Some(found) = self.domains.find(name) else {
            return;
        };
        if self.allow_domains.find(name).is_some() {
            return;
        }
        let p = self.proxyware;
        let mut score = u32::from(p.base_score);
        if destination.is_some() {
            score += u32::from(p.connection_bonus);
        }
        let by = ev
            .get("Image")
            .map(|i| format!(" ({})", file_name(i)))
            .unwrap_or_default();
        out.push(Hit {
            branch: EndpointBranch::ProxywareDomain,
            key: found.service.to_string(),
            score: score.min(100) as u8,
            summary: format!(
                "{} {} ({}'s domain {}){by}",
                seen.verb(),
                name.to_ascii_lowercase(),
                found.service,
                found.domain
            ),
            destination,
            destination_name: Some(name.to_ascii_lowercase()),
            detail: json!({"name": name.to_ascii_lowercase(), "matched_domain": found.domain}),
        });
    }

    /// Domains named on a command line (`dig honeygain.com`, `curl https://...`): Sysmon for
    /// Linux has no DNS event, so this is how its hosts' lookups show.
    fn command_line_names(&self, ev: &SysmonEvent, command: &str, out: &mut Vec<Hit>) {
        let mut seen = Vec::new();
        for token in command.split(|c: char| {
            c.is_whitespace()
                || matches!(
                    c,
                    '"' | '\'' | '=' | '<' | '>' | '|' | ';' | ',' | '(' | ')'
                )
        }) {
            let host = token
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split(['/', ':', '?', '#', '@'])
                .next()
                .unwrap_or("");
            if !host.contains('.') || seen.contains(&host) {
                continue;
            }
            seen.push(host);
            self.name(ev, host, NameSeen::CommandLine, None, out);
        }
    }

    fn file_drop(&self, ev: &SysmonEvent, out: &mut Vec<Hit>) {
        let Some(target) = ev.get("TargetFilename") else {
            return;
        };
        let Some(hit) = self.binaries.path(target) else {
            return;
        };
        let by = ev
            .get("Image")
            .map(|i| format!(" (by {})", file_name(i)))
            .unwrap_or_default();
        out.push(Hit {
            branch: EndpointBranch::ProxywareFileDrop,
            key: hit.service.to_string(),
            score: self.config.file_drop_score.min(100),
            summary: format!("wrote {}'s agent to {target}{by}", hit.service),
            destination: None,
            destination_name: None,
            detail: json!({"matched": hit.entry, "TargetFilename": target}),
        });
    }

    /// Run and RunOnce values (HKLM or a user's hive) that start a listed agent, or are named
    /// after a listed service.
    fn persistence(&self, ev: &SysmonEvent, out: &mut Vec<Hit>) {
        let (Some(target), Some(details)) = (ev.get("TargetObject"), ev.get("Details")) else {
            return;
        };
        let lower = target.to_ascii_lowercase();
        if !(lower.contains(r"\currentversion\run\") || lower.contains(r"\currentversion\runonce\"))
        {
            return;
        }
        let value_name = target.rsplit('\\').next().unwrap_or("");
        let hit = self.binaries.path(program(details));
        let service = match &hit {
            Some(hit) => hit.service.to_string(),
            None => match self
                .binaries_services()
                .find(|s| s.eq_ignore_ascii_case(value_name))
            {
                Some(s) => s.to_string(),
                None => return,
            },
        };
        let credentials = carries_credentials(details);
        let c = self.config;
        let mut score = u32::from(c.persistence_score);
        if credentials {
            score += u32::from(c.credentials_bonus);
        }
        let mut summary = format!(
            "made {service}'s agent start at logon (Run value {value_name}: {})",
            program(details)
        );
        if credentials {
            summary.push_str(", with credentials on its command line");
        }
        out.push(Hit {
            branch: EndpointBranch::ProxywarePersistence,
            key: service,
            score: score.min(100) as u8,
            summary,
            destination: None,
            destination_name: None,
            detail: json!({"TargetObject": target, "Details": details, "credentials_on_command_line": credentials}),
        });
    }

    fn binaries_services(&self) -> impl Iterator<Item = &str> {
        self.domains.services()
    }
}

/// Where an event named a proxyware domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameSeen {
    Connection,
    Query,
    CommandLine,
}

impl NameSeen {
    fn verb(self) -> &'static str {
        match self {
            NameSeen::Connection => "connected to",
            NameSeen::Query => "looked up",
            NameSeen::CommandLine => "ran a command naming",
        }
    }
}

/// DestinationIp and DestinationPort of an Event 3.
pub fn destination(ev: &SysmonEvent) -> Option<(IpAddr, u16)> {
    let ip = ev.get("DestinationIp")?.parse().ok()?;
    let port = ev.get("DestinationPort")?.parse().ok()?;
    Some((ip, port))
}

/// Folders any user can write to: where droppers put agents, not where installers do.
pub fn user_writable(path: &str) -> bool {
    let p = path.to_ascii_lowercase().replace('/', "\\");
    [
        r"\appdata\",
        r"\temp\",
        r"\downloads\",
        r"\users\public\",
        r"\tmp\",
        r"\home\",
        r"\dev\shm\",
    ]
    .iter()
    .any(|d| p.contains(d))
}

/// A proxyware agent's command line with an account token or login on it.
pub fn carries_credentials(command: &str) -> bool {
    let c = command.to_ascii_lowercase();
    [
        "--token",
        "-token",
        "token=",
        "--email",
        "-email",
        "--password",
        "-password",
        "--api-key",
        "-accept-tos",
    ]
    .iter()
    .any(|k| c.contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Platform;

    fn event(id: u16, data: &[(&str, &str)]) -> SysmonEvent {
        SysmonEvent::new(Platform::Windows, id, 1, "PC", data)
    }

    fn hits(ev: &SysmonEvent) -> Vec<Hit> {
        let binaries = BinaryMatcher::parse(super::super::binaries::BUILTIN_BINARIES).unwrap();
        let domains = DomainMatcher::parse(crate::pipeline::BUILTIN_DOMAINS).unwrap();
        let allow = DomainMatcher::default();
        let config = EndpointConfig::default();
        let proxyware = ProxywareConfig::default();
        let m = Matchers {
            binaries: &binaries,
            domains: &domains,
            allow_domains: &allow,
            config: &config,
            proxyware: &proxyware,
        };
        let mut out = Vec::new();
        m.hits(ev, &mut out);
        out
    }

    #[test]
    fn agent_from_appdata_scores_higher_than_from_program_files() {
        let appdata = hits(&event(
            1,
            &[
                ("Image", r"C:\Users\a\AppData\Local\Honeygain\Honeygain.exe"),
                ("ParentImage", r"C:\Windows\System32\cmd.exe"),
            ],
        ));
        let installed = hits(&event(
            1,
            &[("Image", r"C:\Program Files\Honeygain\honeygain.exe")],
        ));
        assert_eq!(appdata[0].branch, EndpointBranch::KnownProxywareBinary);
        assert!(appdata[0].summary.contains("started by cmd.exe"));
        assert_eq!(appdata[0].score, 90);
        assert_eq!(installed[0].score, 80);
        let renamed = hits(&event(
            1,
            &[
                ("Image", r"C:\x\svc.exe"),
                ("OriginalFileName", "Pawns.exe"),
            ],
        ));
        assert_eq!(renamed[0].key, "IPRoyal Pawns");
        assert!(hits(&event(1, &[("Image", r"C:\mysterium-notes\reader.exe")])).is_empty());
    }

    #[test]
    fn names_match_whole_labels() {
        let q = hits(&event(
            22,
            &[("QueryName", "api.honeygain.com"), ("Image", r"C:\x\y.exe")],
        ));
        assert_eq!(
            (q[0].branch, q[0].key.as_str()),
            (EndpointBranch::ProxywareDomain, "Honeygain")
        );
        assert!(
            hits(&event(
                3,
                &[("DestinationHostname", "notpawns.app.example.net")]
            ))
            .is_empty()
        );
        let c = hits(&event(
            1,
            &[
                ("CommandLine", "dig +short packetstream.io A"),
                ("Image", "/usr/bin/dig"),
            ],
        ));
        assert_eq!(c[0].key, "PacketStream");
        assert!(
            c[0].summary
                .starts_with("ran a command naming packetstream.io"),
            "{}",
            c[0].summary
        );
    }

    #[test]
    fn run_keys_and_file_drops() {
        let p = hits(&event(
            13,
            &[
                (
                    "TargetObject",
                    r"HKU\S-1-5-21-1\Software\Microsoft\Windows\CurrentVersion\Run\Traffmonetizer",
                ),
                (
                    "Details",
                    r#""C:\Users\b\AppData\Local\Traffmonetizer\Traffmonetizer.exe" --token 4f2a"#,
                ),
            ],
        ));
        assert_eq!(p[0].branch, EndpointBranch::ProxywarePersistence);
        assert_eq!(p[0].score, 85);
        assert!(
            hits(&event(
                13,
                &[
                    ("TargetObject", r"HKLM\Software\X\Traffmonetizer"),
                    ("Details", "traffmonetizer.exe")
                ],
            ))
            .is_empty()
        );
        let d = hits(&event(
            11,
            &[(
                "TargetFilename",
                r"C:\Users\a\AppData\Local\Honeygain\Honeygain.exe",
            )],
        ));
        assert_eq!(d[0].branch, EndpointBranch::ProxywareFileDrop);
    }
}
