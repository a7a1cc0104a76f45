//! The `endpoint` scenario (issue 11): ten minutes of five hosts seen twice, by Sysmon on each
//! host and by the sensor on the wire, on one clock. One list of `SysmonEvent`s is built from
//! the timeline below; the capture's flows carry the same 5-tuples as its network events, and
//! the list is written in every format the endpoint readers take:
//!
//! * `sysmon-<host>.evtx`: each Windows computer's events as its Sysmon/Operational channel
//!   stores them (written by `evtx::write_evtx`);
//! * `winlogbeat.ndjson`: the Windows events as Winlogbeat 8 writes them (no ingest pipeline);
//! * `elastic-agent.ndjson`: the Windows events as Elastic Agent's Windows integration
//!   (`windows.sysmon_operational`) indexes them: ECS fields, the rest left in event_data;
//! * `splunk.json`: the Windows events as Splunk's search export (`output_mode=json`) gives
//!   them for sourcetype `XmlWinEventLog:Microsoft-Windows-Sysmon/Operational`, newest first
//!   as a search returns them;
//! * `sysmon-linux.log`: the Linux events as rsyslog's default file template writes Sysmon for
//!   Linux to /var/log/syslog, among two lines of other programs.
//!
//! Hosts (2026-03-02 09:00-09:10 UTC, a Monday morning):
//! * WIN-DESK-07 (10.20.0.17): Honeygain dropped by its installer and started from AppData by
//!   cmd.exe, its DNS query and three TLS sessions to api.honeygain.com; look-alikes the seed
//!   search flags (a `mysterium-notes` reader, chrome to `notpawns.app.example.net`).
//! * WIN-LAB-03 (10.20.0.33): reg.exe writes a Run value starting Traffmonetizer with a token.
//! * WIN-SRV-12 (10.20.0.12): powershell.exe tries 8.8.i.1:80 for i = 1..80, one every 0.5 s;
//!   nobody answers.
//! * ubuntu-build-2 (10.20.0.42, Sysmon for Linux): `dig` for five proxyware domains.
//! * WIN-DESK-08 (10.20.0.18): plain benign.
//!
//! Every Windows host also has benign noise: notepad.exe started, svchost.exe and chrome.exe
//! resolving and connecting to ordinary names.
//!
//! Field sets and order per event id are Sysmon's manifest (Sysinternals/SysmonCommon
//! `manifest.xml`, schema 4.81: ProcessCreate v5, NetworkConnect v5, FileCreate v2,
//! RegistryEvent SetValue v2, DnsQuery v5; Sysmon 15 and Sysmon for Linux 1.3 write the same
//! lists for these ids). The System part follows events rendered by Windows (single-quoted,
//! namespaced; e.g. elastic/integrations `windows/data_stream/sysmon_operational/_dev/test/
//! pipeline/test-events.json`) and by Sysmon for Linux (double-quoted, no namespace,
//! nanosecond TimeCreated; public /var/log/syslog samples). Winlogbeat's layout follows
//! elastic/beats `x-pack/winlogbeat/module/sysmon/test/testdata/collection/*.golden.json`; the
//! ECS mapping follows the integration's ingest pipeline (`elasticsearch/ingest_pipeline/
//! default.yml`): `-` values dropped, mapped fields removed from event_data.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::behaviour::{MS, Sim};
use super::blocks::{Host, RESOLVER_V4, Zone, remote};
use super::frames::{Frames, HostTally};
use super::proto::QTYPE_A;
use super::rng::Rng;
use super::wire::{Endpoint, PcapWriter, mac_for};
use super::{GenerateError, HOME_NETS, HostMap};
use crate::endpoint::{Platform, SysmonEvent};

/// 2026-03-02 09:00:00 UTC, a Monday, in milliseconds since the epoch.
const START_MS: u64 = 1_772_442_000_000;
const DURATION_MS: u64 = 600_000;
const SEC_MS: u64 = 1_000;

/// The files written into the endpoint directory.
/// One EVTX per Windows computer (`sysmon-<host>.evtx`): a log's record ids are one sequence,
/// each machine's own, as when each machine's Sysmon/Operational log is exported.
pub(crate) fn evtx_file(host: &str) -> String {
    format!("sysmon-{host}.evtx")
}
pub(crate) const WINLOGBEAT_FILE: &str = "winlogbeat.ndjson";
pub(crate) const ELASTIC_AGENT_FILE: &str = "elastic-agent.ndjson";
pub(crate) const SPLUNK_FILE: &str = "splunk.json";
pub(crate) const SYSLOG_FILE: &str = "sysmon-linux.log";

const WINDOWS_PROVIDER_GUID: &str = "{5770385f-c22a-43e0-bf4c-06f5698ffbd9}";
const LINUX_PROVIDER_GUID: &str = "{ff032593-a8d3-4f13-b0d6-01fc615a0f97}";
const WINDOWS_CHANNEL: &str = "Microsoft-Windows-Sysmon/Operational";
const LINUX_CHANNEL: &str = "Linux-Sysmon/Operational";
const SPLUNK_SOURCETYPE: &str = "XmlWinEventLog:Microsoft-Windows-Sysmon/Operational";
const SPLUNK_INDEX: &str = "wineventlog";
/// The Beats version the JSON files claim; nothing reads it.
const BEATS_VERSION: &str = "8.17.0";

// ---------------------------------------------------------------------------------------
// Hosts

struct HostSpec {
    computer: &'static str,
    /// Splunk's `host` (the forwarder's short name). Beats write it lower-cased as host.name.
    short: &'static str,
    addr: Ipv4Addr,
    /// Sysmon's User of the host's interactive processes.
    user: &'static str,
    platform: Platform,
    role: &'static str,
    what: &'static str,
    /// FileVersion of Windows' own binaries on this host.
    build: &'static str,
}

const DESK07: usize = 0;
const LAB03: usize = 1;
const SRV12: usize = 2;
const BUILD2: usize = 3;
const DESK08: usize = 4;

const DESKTOP_BUILD: &str = "10.0.22621.1 (WinBuild.160101.0800)";
const SERVER_BUILD: &str = "10.0.20348.1 (WinBuild.160101.0800)";

const HOSTS: [HostSpec; 5] = [
    HostSpec {
        computer: "WIN-DESK-07.corp.example",
        short: "WIN-DESK-07",
        addr: Ipv4Addr::new(10, 20, 0, 17),
        user: "CORP\\alice",
        platform: Platform::Windows,
        role: "proxyware_binary",
        what: "HoneygainInstaller.exe drops Honeygain.exe into AppData; cmd.exe starts it; it \
               resolves api.honeygain.com and opens three TLS sessions to it. Look-alikes the \
               seed search flags: reader.exe in Documents\\mysterium-notes, chrome.exe to \
               notpawns.app.example.net",
        build: DESKTOP_BUILD,
    },
    HostSpec {
        computer: "WIN-LAB-03.corp.example",
        short: "WIN-LAB-03",
        addr: Ipv4Addr::new(10, 20, 0, 33),
        user: "CORP\\bob",
        platform: Platform::Windows,
        role: "run_key_persistence",
        what: "reg.exe (from cmd.exe) sets HKCU Run\\Traffmonetizer to the agent with a --token \
               argument; the agent never runs here",
        build: DESKTOP_BUILD,
    },
    HostSpec {
        computer: "WIN-SRV-12.corp.example",
        short: "WIN-SRV-12",
        addr: Ipv4Addr::new(10, 20, 0, 12),
        user: "CORP\\carol",
        platform: Platform::Windows,
        role: "fan_out",
        what: "powershell.exe tries 8.8.i.1:80 for i = 1..80, one every 0.5 s over 40 s; no \
               answer (a SYN and one retransmission each)",
        build: SERVER_BUILD,
    },
    HostSpec {
        computer: "ubuntu-build-2",
        short: "ubuntu-build-2",
        addr: Ipv4Addr::new(10, 20, 0, 42),
        user: "dev",
        platform: Platform::Linux,
        role: "linux_proxyware_dns",
        what: "Sysmon for Linux: dig for honeygain.com, peer2profit.com, packetstream.io, \
               traffmonetizer.com and earnapp.com, each query answered by 10.20.0.2",
        build: "-",
    },
    HostSpec {
        computer: "WIN-DESK-08.corp.example",
        short: "WIN-DESK-08",
        addr: Ipv4Addr::new(10, 20, 0, 18),
        user: "CORP\\dave",
        platform: Platform::Windows,
        role: "benign",
        what: "ordinary office desktop: notepad, svchost and chrome resolving and connecting to \
               ordinary names",
        build: DESKTOP_BUILD,
    },
];

// Names and addresses (documentation ranges, 8.8.x.1 aside).
const MICROSOFT: (&str, Ipv4Addr) = ("www.microsoft.com", Ipv4Addr::new(198, 51, 100, 21));
const EXAMPLE: (&str, Ipv4Addr) = ("www.example.com", Ipv4Addr::new(198, 51, 100, 20));
const DESK08_EXTRA: [(&str, Ipv4Addr); 2] = [
    ("docs.example.org", Ipv4Addr::new(198, 51, 100, 24)),
    ("mail.example.com", Ipv4Addr::new(198, 51, 100, 22)),
];
const LOOKALIKE: (&str, Ipv4Addr) = ("notpawns.app.example.net", Ipv4Addr::new(198, 51, 100, 77));
const HONEYGAIN: (&str, Ipv4Addr) = ("api.honeygain.com", Ipv4Addr::new(203, 0, 113, 50));
const HONEYGAIN_PORTS: [u16; 3] = [50001, 50002, 50003];
const DIG_NAMES: [(&str, &str, Ipv4Addr); 5] = [
    ("honeygain.com", "Honeygain", Ipv4Addr::new(203, 0, 113, 61)),
    (
        "peer2profit.com",
        "Peer2Profit",
        Ipv4Addr::new(203, 0, 113, 62),
    ),
    (
        "packetstream.io",
        "PacketStream",
        Ipv4Addr::new(203, 0, 113, 63),
    ),
    (
        "traffmonetizer.com",
        "Traffmonetizer",
        Ipv4Addr::new(203, 0, 113, 64),
    ),
    ("earnapp.com", "EarnApp", Ipv4Addr::new(203, 0, 113, 65)),
];
const FAN_OUT_TARGETS: u8 = 80;

const HONEYGAIN_EXE: &str = "C:\\Users\\alice\\AppData\\Local\\Programs\\Honeygain\\Honeygain.exe";
const HONEYGAIN_INSTALLER: &str = "C:\\Users\\alice\\Downloads\\HoneygainInstaller.exe";
const READER_EXE: &str = "C:\\Users\\alice\\Documents\\mysterium-notes\\reader.exe";
const CMD_EXE: &str = "C:\\Windows\\System32\\cmd.exe";
const REG_EXE: &str = "C:\\Windows\\System32\\reg.exe";
const EXPLORER_EXE: &str = "C:\\Windows\\explorer.exe";
const NOTEPAD_EXE: &str = "C:\\Windows\\System32\\notepad.exe";
const SVCHOST_EXE: &str = "C:\\Windows\\System32\\svchost.exe";
const CHROME_EXE: &str = "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe";
const POWERSHELL_EXE: &str = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe";
const POWERSHELL_COMMAND: &str = "powershell.exe -NoProfile -Command \"1..80 | ForEach-Object { \
     Test-NetConnection -ComputerName 8.8.$_.1 -Port 80 -InformationLevel Quiet }\"";
const RUN_KEY: &str = "HKU\\S-1-5-21-1111111111-2222222222-3333333333-1104\\Software\\Microsoft\\\
     Windows\\CurrentVersion\\Run\\Traffmonetizer";
const RUN_VALUE: &str = "\"C:\\Users\\bob\\AppData\\Local\\Traffmonetizer\\Traffmonetizer.exe\" --token 4f2a9c0e7b1d4e8f";
const REG_COMMAND: &str = "reg add HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run /v \
     Traffmonetizer /t REG_SZ /d \"\\\"C:\\Users\\bob\\AppData\\Local\\Traffmonetizer\\\
     Traffmonetizer.exe\\\" --token 4f2a9c0e7b1d4e8f\" /f";

/// What an image says about itself (Event 1's version resource fields).
#[derive(Clone, Copy)]
struct Pe {
    file_version: &'static str,
    description: &'static str,
    product: &'static str,
    company: &'static str,
    original_file_name: &'static str,
}

/// Sysmon for Linux has no version resource: every field is `-`.
const NO_PE: Pe = Pe {
    file_version: "-",
    description: "-",
    product: "-",
    company: "-",
    original_file_name: "-",
};

const WINDOWS_PRODUCT: &str = "Microsoft\u{ae} Windows\u{ae} Operating System";

fn windows_pe(build: &'static str, description: &'static str, original: &'static str) -> Pe {
    Pe {
        file_version: build,
        description,
        product: WINDOWS_PRODUCT,
        company: "Microsoft Corporation",
        original_file_name: original,
    }
}

// ---------------------------------------------------------------------------------------
// Processes and the machines that run them

/// A process as Sysmon describes it in Event 1 (and by guid/pid/image/user elsewhere).
#[derive(Clone)]
struct Proc {
    guid: String,
    pid: u32,
    image: String,
    command_line: String,
    user: String,
    current_directory: String,
    pe: Pe,
    hashes: String,
    integrity: &'static str,
    logon_guid: String,
    logon_id: String,
    session: u32,
}

/// What makes one host's identifiers its own.
struct Machine {
    /// First group of every GUID Sysmon makes here (from the machine GUID).
    guid_prefix: u32,
    next_pid: u32,
    /// The interactive user's logon: LUID and the time it began (seconds).
    logon_id: u64,
    logon_s: u64,
    /// Ephemeral ports of the host's own sockets.
    net: Host,
}

/// How a process runs: which account, and from where.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Account {
    /// The host's interactive user (medium integrity).
    User,
    /// NT AUTHORITY\NETWORK SERVICE (svchost).
    NetworkService,
}

fn hex_upper(rng: &mut Rng, bytes: usize) -> String {
    rng.bytes(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// A Sysmon GUID: machine prefix, then the creation time's low and high 16 bits (as Sysmon's
/// ProcessGuid and LogonGuid carry them), then `tail`.
fn sysmon_guid(prefix: u32, time_s: u64, tail: &str) -> String {
    format!(
        "{{{prefix:08x}-{:04x}-{:04x}-{tail}}}",
        time_s & 0xffff,
        (time_s >> 16) & 0xffff
    )
}

/// The last two GUID groups holding a little-endian 64-bit LUID (as in Sysmon's LogonGuid).
fn luid_tail(luid: u64) -> String {
    let b = luid.to_le_bytes();
    format!(
        "{:02x}{:02x}-{}",
        b[0],
        b[1],
        b[2..]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}

impl Machine {
    fn new(rng: &mut Rng, spec: &HostSpec) -> Machine {
        let linux = spec.platform == Platform::Linux;
        let ttl = if linux { 64 } else { 128 };
        Machine {
            guid_prefix: rng.next_u32(),
            next_pid: if linux {
                20_000 + rng.below(8_000) as u32
            } else {
                (1_000 + rng.below(3_000) as u32) * 4
            },
            logon_id: if linux {
                1000
            } else {
                0x2_0000 + rng.below(0x4_0000)
            },
            // Logged on between 07:30 and 08:30.
            logon_s: START_MS / SEC_MS - 5_400 + rng.below(3_600),
            net: Host::new(rng, IpAddr::V4(spec.addr), ttl),
        }
    }

    /// A new process started at `t_ms`.
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &mut self,
        rng: &mut Rng,
        spec: &HostSpec,
        t_ms: u64,
        image: &str,
        command_line: &str,
        account: Account,
        pe: Pe,
    ) -> Proc {
        let linux = spec.platform == Platform::Linux;
        let pid = self.next_pid;
        self.next_pid += if linux {
            1 + rng.below(40) as u32
        } else {
            4 * (1 + rng.below(300) as u32)
        };
        let tail = if linux {
            format!("{:04x}-{:08x}0000", rng.next_u16(), rng.next_u32())
        } else {
            format!(
                "{:04x}-0000{:06x}00",
                rng.next_u16(),
                rng.next_u32() & 0xff_ffff
            )
        };
        let guid = sysmon_guid(self.guid_prefix, t_ms / SEC_MS, &tail);
        let (user, integrity, logon_id, logon_s, session) = match (linux, account) {
            (true, _) => (spec.user.to_string(), "no level", self.logon_id, 0, 3),
            (false, Account::User) => (
                spec.user.to_string(),
                "Medium",
                self.logon_id,
                self.logon_s,
                1,
            ),
            // NETWORK SERVICE's well-known LUID 0x3e4, logged on at boot.
            (false, Account::NetworkService) => (
                "NT AUTHORITY\\NETWORK SERVICE".to_string(),
                "System",
                0x3e4,
                self.logon_s - 600,
                0,
            ),
        };
        let (logon_guid, logon_id) = if linux {
            (
                sysmon_guid(self.guid_prefix, 0, &luid_tail(logon_id)),
                logon_id.to_string(),
            )
        } else {
            (
                sysmon_guid(self.guid_prefix, logon_s, &luid_tail(logon_id)),
                format!("{logon_id:#x}"),
            )
        };
        let current_directory = match (linux, account) {
            (true, _) => format!("/home/{}", spec.user),
            (false, Account::User) => {
                let name = spec.user.rsplit('\\').next().unwrap_or(spec.user);
                format!("C:\\Users\\{name}\\")
            }
            (false, Account::NetworkService) => "C:\\Windows\\system32\\".to_string(),
        };
        let hashes = if linux {
            "-".to_string()
        } else {
            format!(
                "SHA1={},MD5={},SHA256={},IMPHASH={}",
                hex_upper(rng, 20),
                hex_upper(rng, 16),
                hex_upper(rng, 32),
                hex_upper(rng, 16)
            )
        };
        Proc {
            guid,
            pid,
            image: image.to_string(),
            command_line: command_line.to_string(),
            user,
            current_directory,
            pe,
            hashes,
            integrity,
            logon_guid,
            logon_id,
            session,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Event data, in Sysmon's field order

type Data = Vec<(String, String)>;

fn field(name: &str, value: impl ToString) -> (String, String) {
    (name.to_string(), value.to_string())
}

/// Event 1, ProcessCreate (version 5).
fn process_create(p: &Proc, parent: &Proc) -> Data {
    vec![
        field("RuleName", "-"),
        field("UtcTime", ""),
        field("ProcessGuid", &p.guid),
        field("ProcessId", p.pid),
        field("Image", &p.image),
        field("FileVersion", p.pe.file_version),
        field("Description", p.pe.description),
        field("Product", p.pe.product),
        field("Company", p.pe.company),
        field("OriginalFileName", p.pe.original_file_name),
        field("CommandLine", &p.command_line),
        field("CurrentDirectory", &p.current_directory),
        field("User", &p.user),
        field("LogonGuid", &p.logon_guid),
        field("LogonId", &p.logon_id),
        field("TerminalSessionId", p.session),
        field("IntegrityLevel", p.integrity),
        field("Hashes", &p.hashes),
        field("ParentProcessGuid", &parent.guid),
        field("ParentProcessId", parent.pid),
        field("ParentImage", &parent.image),
        field("ParentCommandLine", &parent.command_line),
        field("ParentUser", &parent.user),
    ]
}

/// One side of a connection as Event 3 gives it.
struct Side<'a> {
    ip: Ipv4Addr,
    hostname: &'a str,
    port: u16,
    port_name: &'a str,
}

/// Event 3, NetworkConnect (version 5), always initiated by the host.
fn network_connect(p: &Proc, protocol: &str, src: &Side<'_>, dst: &Side<'_>) -> Data {
    vec![
        field("RuleName", "-"),
        field("UtcTime", ""),
        field("ProcessGuid", &p.guid),
        field("ProcessId", p.pid),
        field("Image", &p.image),
        field("User", &p.user),
        field("Protocol", protocol),
        field("Initiated", "true"),
        field("SourceIsIpv6", "false"),
        field("SourceIp", src.ip),
        field("SourceHostname", src.hostname),
        field("SourcePort", src.port),
        field("SourcePortName", src.port_name),
        field("DestinationIsIpv6", "false"),
        field("DestinationIp", dst.ip),
        field("DestinationHostname", dst.hostname),
        field("DestinationPort", dst.port),
        field("DestinationPortName", dst.port_name),
    ]
}

/// Event 11, FileCreate (version 2).
fn file_create(p: &Proc, target: &str) -> Data {
    vec![
        field("RuleName", "-"),
        field("UtcTime", ""),
        field("ProcessGuid", &p.guid),
        field("ProcessId", p.pid),
        field("Image", &p.image),
        field("TargetFilename", target),
        field("CreationUtcTime", ""),
        field("User", &p.user),
    ]
}

/// Event 13, RegistryEvent SetValue (version 2).
fn registry_set(p: &Proc, target_object: &str, details: &str) -> Data {
    vec![
        field("RuleName", "-"),
        field("EventType", "SetValue"),
        field("UtcTime", ""),
        field("ProcessGuid", &p.guid),
        field("ProcessId", p.pid),
        field("Image", &p.image),
        field("TargetObject", target_object),
        field("Details", details),
        field("User", &p.user),
    ]
}

/// Event 22, DnsQuery (version 5), answered with one IPv4 address.
fn dns_query(p: &Proc, name: &str, addr: Ipv4Addr) -> Data {
    vec![
        field("RuleName", "-"),
        field("UtcTime", ""),
        field("ProcessGuid", &p.guid),
        field("ProcessId", p.pid),
        field("QueryName", name),
        field("QueryStatus", "0"),
        field("QueryResults", format!("::ffff:{addr};")),
        field("Image", &p.image),
        field("User", &p.user),
    ]
}

/// Port names as Sysmon on Windows resolves them (Sysmon for Linux writes `-`).
fn port_name(port: u16) -> &'static str {
    match port {
        53 => "domain",
        80 => "http",
        443 => "https",
        _ => "-",
    }
}

// ---------------------------------------------------------------------------------------
// The plan: events with their network side and what detection should make of them

/// The packets an event stands for, stamped once the event's time is final.
enum Net {
    None,
    /// Event 22: the resolver exchange behind the query, answered just before the event.
    Lookup {
        client: Endpoint,
        name: &'static str,
        addr: Ipv4Addr,
    },
    /// Event 3 over TLS: the handshake starts with the event, then `rounds` of (up, down).
    Tls {
        client: Endpoint,
        server: Ipv4Addr,
        sni: &'static str,
        rounds: Vec<(u64, u64)>,
    },
    /// Event 3 nobody answers: a SYN and one retransmission.
    SynUnanswered {
        client: Endpoint,
        server: Ipv4Addr,
    },
    /// Linux Event 3: dig's query leaves with the event and is answered.
    Query {
        client: Endpoint,
        name: &'static str,
        addr: Ipv4Addr,
    },
}

/// What detection should make of one event.
#[derive(Clone, Copy, Default)]
struct Tag {
    /// Default-mode (branch, service) this event is evidence for ("" when no service).
    expect: Option<(&'static str, &'static str)>,
    /// The network alert whose flow this event names: (branch, service).
    network: Option<(&'static str, &'static str)>,
    /// The seed search's DetectionBranch for it.
    seed: Option<&'static str>,
    /// A look-alike that default mode must not alert on.
    lookalike: bool,
}

const NO_TAG: Tag = Tag {
    expect: None,
    network: None,
    seed: None,
    lookalike: false,
};

struct Draft {
    t_ms: u64,
    host: usize,
    event_id: u16,
    data: Data,
    net: Net,
    tag: Tag,
}

struct Planner {
    rng: Rng,
    machines: Vec<Machine>,
    drafts: Vec<Draft>,
}

/// The processes every Windows host has running before the scenario starts.
struct Desktop {
    explorer: Proc,
    svchost: Proc,
    chrome: Proc,
}

impl Planner {
    /// A time `from_s` seconds into the capture plus up to `jitter_s` seconds.
    fn at(&mut self, from_s: u64, jitter_s: u64) -> u64 {
        START_MS + from_s * SEC_MS + self.rng.below(jitter_s * SEC_MS + 1)
    }

    fn spawn(
        &mut self,
        host: usize,
        t_ms: u64,
        image: &str,
        command_line: &str,
        account: Account,
        pe: Pe,
    ) -> Proc {
        // Host indexes are the HOSTS constants; `machines` has one per host.
        self.machines[host].spawn(
            &mut self.rng,
            &HOSTS[host],
            t_ms,
            image,
            command_line,
            account,
            pe,
        )
    }

    fn client(&mut self, host: usize) -> Endpoint {
        self.machines[host].net.client(&mut self.rng)
    }

    fn push(&mut self, host: usize, t_ms: u64, event_id: u16, data: Data, net: Net, tag: Tag) {
        self.drafts.push(Draft {
            t_ms,
            host,
            event_id,
            data,
            net,
            tag,
        });
    }

    /// explorer.exe, an svchost and chrome, started at logon (no events of their own here).
    fn desktop(&mut self, host: usize) -> Desktop {
        let build = HOSTS[host].build;
        let logon_ms = self.machines[host].logon_s * SEC_MS;
        let explorer = self.spawn(
            host,
            logon_ms + 4_000,
            EXPLORER_EXE,
            "C:\\Windows\\Explorer.EXE",
            Account::User,
            windows_pe(build, "Windows Explorer", "EXPLORER.EXE"),
        );
        let svchost = self.spawn(
            host,
            logon_ms - 590_000,
            SVCHOST_EXE,
            "C:\\Windows\\system32\\svchost.exe -k NetworkService -p",
            Account::NetworkService,
            windows_pe(build, "Host Process for Windows Services", "svchost.exe"),
        );
        let chrome = self.spawn(
            host,
            logon_ms + 60_000,
            CHROME_EXE,
            "\"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe\"",
            Account::User,
            Pe {
                file_version: "122.0.6261.95",
                description: "Google Chrome",
                product: "Google Chrome",
                company: "Google LLC",
                original_file_name: "chrome.exe",
            },
        );
        Desktop {
            explorer,
            svchost,
            chrome,
        }
    }

    /// An Event 22 for `name` by `p`, then an Event 3 and TLS session to its address.
    fn visit(
        &mut self,
        host: usize,
        p: &Proc,
        (name, addr): (&'static str, Ipv4Addr),
        t: u64,
        tag: Tag,
    ) {
        let dns_client = self.client(host);
        self.push(
            host,
            t,
            22,
            dns_query(p, name, addr),
            Net::Lookup {
                client: dns_client,
                name,
                addr,
            },
            Tag {
                seed: None,
                network: None,
                ..tag
            },
        );
        let t3 = t + self.rng.range(3, 40);
        let n = 1 + self.rng.below(3);
        let rounds = self.rounds(n, 2_000..6_000, 30_000..200_000);
        self.connect(host, p, (name, addr), None, t3, rounds, tag);
    }

    /// `n` rounds of (up, down) bytes drawn from the ranges.
    fn rounds(
        &mut self,
        n: u64,
        up: std::ops::Range<u64>,
        down: std::ops::Range<u64>,
    ) -> Vec<(u64, u64)> {
        (0..n)
            .map(|_| {
                (
                    self.rng.range(up.start, up.end),
                    self.rng.range(down.start, down.end),
                )
            })
            .collect()
    }

    /// An Event 3 for a TLS session from `port` (or an ephemeral one) to `addr`:443.
    #[allow(clippy::too_many_arguments)]
    fn connect(
        &mut self,
        host: usize,
        p: &Proc,
        (name, addr): (&'static str, Ipv4Addr),
        port: Option<u16>,
        t: u64,
        rounds: Vec<(u64, u64)>,
        tag: Tag,
    ) {
        let spec = &HOSTS[host];
        let client = match port {
            Some(port) => inside(spec, port),
            None => self.client(host),
        };
        let data = network_connect(
            p,
            "tcp",
            &Side {
                ip: spec.addr,
                hostname: spec.computer,
                port: client.port,
                port_name: "-",
            },
            &Side {
                ip: addr,
                hostname: name,
                port: 443,
                port_name: port_name(443),
            },
        );
        self.push(
            host,
            t,
            3,
            data,
            Net::Tls {
                client,
                server: addr,
                sni: name,
                rounds,
            },
            tag,
        );
    }

    /// The benign activity of every Windows host.
    fn windows_noise(&mut self, host: usize, d: &Desktop, extra: &[(&'static str, Ipv4Addr)]) {
        let t = self.at(15, 150);
        let build = HOSTS[host].build;
        let notepad = self.spawn(
            host,
            t,
            NOTEPAD_EXE,
            "\"C:\\Windows\\system32\\notepad.exe\"",
            Account::User,
            windows_pe(build, "Notepad", "NOTEPAD.EXE"),
        );
        self.push(
            host,
            t,
            1,
            process_create(&notepad, &d.explorer),
            Net::None,
            NO_TAG,
        );
        let t = self.at(30, 500);
        self.visit(host, &d.svchost, MICROSOFT, t, NO_TAG);
        let t = self.at(30, 500);
        self.visit(host, &d.chrome, EXAMPLE, t, NO_TAG);
        for &site in extra {
            let t = self.at(30, 520);
            self.visit(host, &d.chrome, site, t, NO_TAG);
        }
    }

    fn desk07(&mut self) {
        let h = DESK07;
        let d = self.desktop(h);
        self.windows_noise(h, &d, &[]);

        // Look-alikes: the seed matches substrings; default mode must stay quiet.
        let t = self.at(100, 20);
        let reader = self.spawn(
            h,
            t,
            READER_EXE,
            &format!("\"{READER_EXE}\" \"C:\\Users\\alice\\Documents\\mysterium-notes\\todo.md\""),
            Account::User,
            Pe {
                file_version: "1.4.2.0",
                description: "Markdown Reader",
                product: "Markdown Reader",
                company: "Example Software",
                original_file_name: "reader.exe",
            },
        );
        let lookalike = |seed| Tag {
            seed,
            lookalike: true,
            ..NO_TAG
        };
        self.push(
            h,
            t,
            1,
            process_create(&reader, &d.explorer),
            Net::None,
            lookalike(Some("KnownProxywareBinary")),
        );
        let t = self.at(140, 20);
        self.visit(
            h,
            &d.chrome,
            LOOKALIKE,
            t,
            lookalike(Some("ProxywareDomainConnection")),
        );

        // The installer drops the agent; cmd.exe starts it from AppData.
        let t_drop = self.at(175, 10);
        let installer = self.spawn(
            h,
            t_drop - 20_000,
            HONEYGAIN_INSTALLER,
            &format!("\"{HONEYGAIN_INSTALLER}\""),
            Account::User,
            NO_PE,
        );
        let expect = |branch| Tag {
            expect: Some((branch, "Honeygain")),
            ..NO_TAG
        };
        self.push(
            h,
            t_drop,
            11,
            file_create(&installer, HONEYGAIN_EXE),
            Net::None,
            expect("ProxywareFileDrop"),
        );
        let t_start = t_drop + self.rng.range(15 * SEC_MS, 25 * SEC_MS);
        let cmd = self.spawn(
            h,
            t_start - 700,
            CMD_EXE,
            &format!("cmd.exe /c start \"\" \"{HONEYGAIN_EXE}\""),
            Account::User,
            windows_pe(HOSTS[h].build, "Windows Command Processor", "Cmd.Exe"),
        );
        let honeygain = self.spawn(
            h,
            t_start,
            HONEYGAIN_EXE,
            &format!("\"{HONEYGAIN_EXE}\""),
            Account::User,
            Pe {
                file_version: "0.11.10.0",
                description: "Honeygain",
                product: "Honeygain",
                company: "Honeygain",
                original_file_name: "Honeygain.exe",
            },
        );
        self.push(
            h,
            t_start,
            1,
            process_create(&honeygain, &cmd),
            Net::None,
            Tag {
                seed: Some("KnownProxywareBinary"),
                ..expect("KnownProxywareBinary")
            },
        );
        let t_dns = t_start + self.rng.range(1_500, 2_500);
        let (name, addr) = HONEYGAIN;
        let dns_client = self.client(h);
        self.push(
            h,
            t_dns,
            22,
            dns_query(&honeygain, name, addr),
            Net::Lookup {
                client: dns_client,
                name,
                addr,
            },
            expect("ProxywareDomain"),
        );
        // Three sessions: one right after the lookup, two later (the agent reconnects).
        let starts = [
            t_dns + self.rng.range(5, 30),
            t_dns + self.rng.range(40 * SEC_MS, 50 * SEC_MS),
            t_dns + self.rng.range(100 * SEC_MS, 120 * SEC_MS),
        ];
        for (port, t) in HONEYGAIN_PORTS.into_iter().zip(starts) {
            let rounds = self.rounds(3, 20_000..60_000, 10_000..40_000);
            self.connect(
                h,
                &honeygain,
                HONEYGAIN,
                Some(port),
                t,
                rounds,
                Tag {
                    expect: Some(("ProxywareDomain", "Honeygain")),
                    network: Some(("ProxywareDomain", "Honeygain")),
                    seed: Some("ProxywareDomainConnection"),
                    lookalike: false,
                },
            );
        }
    }

    fn lab03(&mut self) {
        let h = LAB03;
        let d = self.desktop(h);
        self.windows_noise(h, &d, &[]);
        let t = self.at(235, 10);
        let cmd = self.spawn(
            h,
            t - 9_000,
            CMD_EXE,
            "\"C:\\Windows\\system32\\cmd.exe\" ",
            Account::User,
            windows_pe(HOSTS[h].build, "Windows Command Processor", "Cmd.Exe"),
        );
        let reg = self.spawn(
            h,
            t,
            REG_EXE,
            REG_COMMAND,
            Account::User,
            windows_pe(HOSTS[h].build, "Registry Console Tool", "reg.exe"),
        );
        self.push(h, t, 1, process_create(&reg, &cmd), Net::None, NO_TAG);
        let t13 = t + self.rng.range(20, 200);
        self.push(
            h,
            t13,
            13,
            registry_set(&reg, RUN_KEY, RUN_VALUE),
            Net::None,
            Tag {
                expect: Some(("ProxywarePersistence", "Traffmonetizer")),
                ..NO_TAG
            },
        );
    }

    fn srv12(&mut self) {
        let h = SRV12;
        let d = self.desktop(h);
        self.windows_noise(h, &d, &[]);
        let spec = &HOSTS[h];
        let t = self.at(295, 10);
        let ps = self.spawn(
            h,
            t,
            POWERSHELL_EXE,
            POWERSHELL_COMMAND,
            Account::User,
            windows_pe(spec.build, "Windows PowerShell", "PowerShell.EXE"),
        );
        self.push(h, t, 1, process_create(&ps, &d.explorer), Net::None, NO_TAG);
        let first = t + self.rng.range(800, 1_200);
        for i in 1..=FAN_OUT_TARGETS {
            let target = Ipv4Addr::new(8, 8, i, 1);
            let port = 51_000 + u16::from(i);
            let t3 = first + u64::from(i - 1) * 500;
            let data = network_connect(
                &ps,
                "tcp",
                &Side {
                    ip: spec.addr,
                    hostname: spec.computer,
                    port,
                    port_name: "-",
                },
                &Side {
                    ip: target,
                    hostname: "-",
                    port: 80,
                    port_name: port_name(80),
                },
            );
            let tag = Tag {
                expect: Some(("FanOut", "")),
                network: Some(("FanOut", "")),
                ..NO_TAG
            };
            let client = inside(spec, port);
            self.push(
                h,
                t3,
                3,
                data,
                Net::SynUnanswered {
                    client,
                    server: target,
                },
                tag,
            );
        }
    }

    fn build2(&mut self) {
        let h = BUILD2;
        let spec = &HOSTS[h];
        let logon_ms = self.machines[h].logon_s * SEC_MS;
        let bash = self.spawn(h, logon_ms, "/usr/bin/bash", "-bash", Account::User, NO_PE);
        for (k, (name, service, addr)) in DIG_NAMES.into_iter().enumerate() {
            let t1 = self.at(360 + 8 * k as u64, 3);
            let dig = self.spawn(
                h,
                t1,
                "/usr/bin/dig",
                &format!("dig {name}"),
                Account::User,
                NO_PE,
            );
            self.push(
                h,
                t1,
                1,
                process_create(&dig, &bash),
                Net::None,
                Tag {
                    expect: Some(("ProxywareDomain", service)),
                    ..NO_TAG
                },
            );
            let port = 40_001 + k as u16;
            let t3 = t1 + self.rng.range(3, 12);
            let data = network_connect(
                &dig,
                "udp",
                &Side {
                    ip: spec.addr,
                    hostname: "-",
                    port,
                    port_name: "-",
                },
                &Side {
                    ip: RESOLVER_V4,
                    hostname: "-",
                    port: 53,
                    port_name: "-",
                },
            );
            self.push(
                h,
                t3,
                3,
                data,
                Net::Query {
                    client: inside(spec, port),
                    name,
                    addr,
                },
                Tag {
                    network: Some(("ProxywareDomain", service)),
                    ..NO_TAG
                },
            );
        }
    }

    fn desk08(&mut self) {
        let h = DESK08;
        let d = self.desktop(h);
        self.windows_noise(h, &d, &DESK08_EXTRA);
    }
}

/// An inside host's socket with a fixed port.
fn inside(spec: &HostSpec, port: u16) -> Endpoint {
    let ip = IpAddr::V4(spec.addr);
    Endpoint {
        mac: mac_for(ip),
        ip,
        port,
        ttl: if spec.platform == Platform::Linux {
            64
        } else {
            128
        },
    }
}

// ---------------------------------------------------------------------------------------
// Times as each format writes them

fn datetime(ms: u64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(0)).unwrap_or_default()
}

/// Sysmon's UtcTime: `2026-03-02 09:03:20.123`.
fn utc_time(ms: u64) -> String {
    datetime(ms).format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// ISO 8601 with milliseconds: `2026-03-02T09:03:20.123Z`.
fn iso_ms(ms: u64) -> String {
    datetime(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// System/TimeCreated as Windows renders it (100 ns ticks, 7 digits).
fn windows_system_time(ms: u64) -> String {
    format!("{}0000Z", datetime(ms).format("%Y-%m-%dT%H:%M:%S%.3f"))
}

/// System/TimeCreated as Sysmon for Linux writes it (9 digits).
fn linux_system_time(ms: u64) -> String {
    format!("{}000000Z", datetime(ms).format("%Y-%m-%dT%H:%M:%S%.3f"))
}

/// Splunk's `_time` in a JSON export (the search's time zone, UTC here).
fn splunk_time(ms: u64) -> String {
    datetime(ms)
        .format("%Y-%m-%dT%H:%M:%S%.3f+00:00")
        .to_string()
}

/// rsyslog's RSYSLOG_TraditionalFileFormat timestamp: `Mar  2 09:03:20`.
fn syslog_time(ms: u64) -> String {
    datetime(ms).format("%b %e %H:%M:%S").to_string()
}

fn ns_to_ms(ns: u64) -> u64 {
    ns / 1_000_000
}

// ---------------------------------------------------------------------------------------
// Building the scenario

/// One event named in the truth file.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub(crate) struct EventRef {
    pub record_id: u64,
    pub event_id: u16,
}

/// A branch default mode must raise for a host, and the events that show it.
#[derive(Serialize)]
struct Expect {
    branch: &'static str,
    services: Vec<&'static str>,
    /// The image of the process behind the evidence.
    process: String,
    event_ids: Vec<u16>,
    record_ids: Vec<u64>,
}

/// One inside host in the truth file.
#[derive(Serialize)]
pub(super) struct HostDoc {
    computer: &'static str,
    /// Splunk's `host` and Sysmon for Linux's syslog host name.
    splunk_host: &'static str,
    /// Winlogbeat's and Elastic Agent's host.name (Beats lower-case it).
    beats_host_name: Option<String>,
    platform: &'static str,
    user: &'static str,
    role: &'static str,
    what: &'static str,
    events: usize,
    first_record_id: u64,
    last_record_id: u64,
    /// Default mode on the endpoint files alone.
    expect_endpoint: Vec<Expect>,
    /// Replay of the capture alone; `events` are the network events naming those flows (the
    /// process to attach when both are given).
    expect_network: Vec<Expect>,
    /// Look-alikes: no alert may name these events.
    no_alert: Vec<EventRef>,
    /// What the capture holds for the host (IP total lengths).
    traffic: HostTally,
}

/// One row the seed search (SPL) returns on the Splunk export, identified by computer and
/// record id; the rest are the columns of its `table`, as Splunk's export writes them
/// (strings; fields the event lacks are left out).
#[derive(Serialize)]
pub(super) struct SeedRow {
    computer: &'static str,
    record_id: u64,
    #[serde(rename = "_time")]
    time: String,
    host: &'static str,
    #[serde(rename = "User")]
    user: Option<String>,
    #[serde(rename = "EventCode")]
    event_code: String,
    #[serde(rename = "Image")]
    image: Option<String>,
    #[serde(rename = "CommandLine", skip_serializing_if = "Option::is_none")]
    command_line: Option<String>,
    #[serde(rename = "ParentImage", skip_serializing_if = "Option::is_none")]
    parent_image: Option<String>,
    #[serde(rename = "ParentCommandLine", skip_serializing_if = "Option::is_none")]
    parent_command_line: Option<String>,
    #[serde(rename = "DestinationIp", skip_serializing_if = "Option::is_none")]
    destination_ip: Option<String>,
    #[serde(
        rename = "DestinationHostname",
        skip_serializing_if = "Option::is_none"
    )]
    destination_hostname: Option<String>,
    #[serde(rename = "DestinationPort", skip_serializing_if = "Option::is_none")]
    destination_port: Option<String>,
    #[serde(rename = "KnownProxywareBinary")]
    known_proxyware_binary: &'static str,
    #[serde(rename = "ProxywareDomain")]
    proxyware_domain: &'static str,
    #[serde(rename = "DetectionBranch")]
    detection_branch: &'static str,
}

/// What `run` hands back; the command, packet count and directory are added when written.
pub(crate) struct EndpointScenario {
    seed: u64,
    pub(crate) events: Vec<SysmonEvent>,
    hosts: Vec<(IpAddr, HostDoc)>,
    seed_rows: Vec<SeedRow>,
}

#[derive(Serialize)]
struct EndpointFiles {
    dir: String,
    evtx: Vec<String>,
    winlogbeat: &'static str,
    elastic_agent: &'static str,
    splunk: &'static str,
    sysmon_linux: &'static str,
}

/// Ground truth of the endpoint scenario.
#[derive(Serialize)]
pub(super) struct EndpointTruthDoc {
    scenario: &'static str,
    seed: u64,
    generator_command: String,
    packets: u64,
    home_nets: [&'static str; 2],
    start: String,
    end: String,
    files: EndpointFiles,
    windows_events: usize,
    linux_events: usize,
    hosts: HostMap<HostDoc>,
    /// The seed search's rows, newest first as Splunk returns them; only Windows Event 1 and
    /// 3 can appear.
    seed_search: Vec<SeedRow>,
}

impl EndpointScenario {
    pub(super) fn into_doc(
        self,
        generator_command: String,
        packets: u64,
        dir: &Path,
    ) -> EndpointTruthDoc {
        let windows = self
            .events
            .iter()
            .filter(|e| e.platform == Platform::Windows)
            .count();
        EndpointTruthDoc {
            scenario: "endpoint",
            seed: self.seed,
            generator_command,
            packets,
            home_nets: HOME_NETS,
            start: iso_ms(START_MS),
            end: iso_ms(START_MS + DURATION_MS),
            files: EndpointFiles {
                dir: dir.display().to_string(),
                evtx: {
                    let hosts: std::collections::BTreeSet<&str> = self
                        .events
                        .iter()
                        .filter(|e| e.platform == Platform::Windows)
                        .map(|e| e.host_name())
                        .collect();
                    hosts.into_iter().map(evtx_file).collect()
                },
                winlogbeat: WINLOGBEAT_FILE,
                elastic_agent: ELASTIC_AGENT_FILE,
                splunk: SPLUNK_FILE,
                sysmon_linux: SYSLOG_FILE,
            },
            windows_events: windows,
            linux_events: self.events.len() - windows,
            hosts: HostMap(self.hosts),
            seed_search: self.seed_rows,
        }
    }
}

pub(super) fn run<W: Write>(
    seed: u64,
    w: &mut PcapWriter<W>,
) -> Result<EndpointScenario, GenerateError> {
    let mut rng = Rng::new(seed);
    let machines = HOSTS.iter().map(|h| Machine::new(&mut rng, h)).collect();
    // EventRecordID counts per computer; each host's range lies above the previous host's,
    // so record ids are also unique across the scenario.
    let record_bases: Vec<u64> = (0..HOSTS.len() as u64)
        .map(|i| (i + 1) * 10_000 + rng.below(5_000))
        .collect();
    let mut p = Planner {
        rng: rng.fork(1),
        machines,
        drafts: Vec::new(),
    };
    // Each host plans with its own stream, so changing one leaves the others' bytes alone.
    type Plan = fn(&mut Planner);
    let plans: [Plan; 5] = [
        Planner::desk07,
        Planner::lab03,
        Planner::srv12,
        Planner::build2,
        Planner::desk08,
    ];
    for (i, plan) in plans.into_iter().enumerate() {
        let fork = rng.fork(100 + i as u64);
        let saved = std::mem::replace(&mut p.rng, fork);
        plan(&mut p);
        p.rng = saved;
    }

    // Final times: whole milliseconds, no two events in the same one.
    let mut drafts = p.drafts;
    drafts.sort_by_key(|d| d.t_ms);
    let mut last = 0;
    for d in &mut drafts {
        if d.t_ms <= last {
            d.t_ms = last + 1;
        }
        last = d.t_ms;
        if d.t_ms >= START_MS + DURATION_MS - 30 * SEC_MS {
            return Err(GenerateError::Internal(
                "endpoint event planned past the capture's end".into(),
            ));
        }
    }

    let mut events = Vec::with_capacity(drafts.len());
    let mut next_record = record_bases;
    for d in &drafts {
        let spec = &HOSTS[d.host];
        let record = next_record.get_mut(d.host).map(|r| {
            *r += 1;
            *r
        });
        let mut data = d.data.clone();
        for (name, value) in &mut data {
            if name == "UtcTime" || name == "CreationUtcTime" {
                *value = utc_time(d.t_ms);
            }
        }
        events.push(SysmonEvent {
            platform: spec.platform,
            event_id: d.event_id,
            time_ns: d.t_ms * 1_000_000,
            computer: spec.computer.to_string(),
            record_id: record,
            host: Some(spec.short.to_string()),
            data,
        });
    }

    let tallies = stamp_network(&mut rng.fork(2), &drafts, w)?;
    let hosts = host_docs(&drafts, &events, &tallies);
    let mut seed_rows: Vec<SeedRow> = drafts
        .iter()
        .zip(&events)
        .filter_map(|(d, e)| {
            let branch = d.tag.seed?;
            let field = |name: &str| e.raw(name).map(str::to_string);
            let binary = branch == "KnownProxywareBinary";
            Some(SeedRow {
                computer: HOSTS[d.host].computer,
                record_id: e.record_id.unwrap_or(0),
                time: splunk_time(ns_to_ms(e.time_ns)),
                host: HOSTS[d.host].short,
                user: field("User"),
                event_code: e.event_id.to_string(),
                image: field("Image"),
                command_line: field("CommandLine"),
                parent_image: field("ParentImage"),
                parent_command_line: field("ParentCommandLine"),
                destination_ip: field("DestinationIp"),
                destination_hostname: field("DestinationHostname"),
                destination_port: field("DestinationPort"),
                known_proxyware_binary: if binary { "1" } else { "0" },
                proxyware_domain: if binary { "0" } else { "1" },
                detection_branch: branch,
            })
        })
        .collect();
    seed_rows.reverse();
    Ok(EndpointScenario {
        seed,
        events,
        hosts,
        seed_rows,
    })
}

/// Stamps the packets behind the events and writes the capture; returns per-host tallies.
fn stamp_network<W: Write>(
    rng: &mut Rng,
    drafts: &[Draft],
    w: &mut PcapWriter<W>,
) -> Result<BTreeMap<IpAddr, HostTally>, GenerateError> {
    let f = Frames::new(rng);
    let mut sim = Sim {
        rng: rng.fork(3),
        f,
    };
    for h in &HOSTS {
        sim.f.track(IpAddr::V4(h.addr));
    }
    let resolver = {
        let ip = IpAddr::V4(RESOLVER_V4);
        Endpoint {
            mac: mac_for(ip),
            ip,
            port: 53,
            ttl: 64,
        }
    };
    for d in drafts {
        let t = d.t_ms * 1_000;
        match &d.net {
            Net::None => {}
            Net::Lookup { client, name, addr } => {
                // Frames::dns answers within 45 ms: the answer arrives before the event.
                let zone = Zone {
                    v4: Some(*addr),
                    ..Zone::default()
                };
                sim.f.dns(
                    &mut sim.rng,
                    t - 50 * MS,
                    *client,
                    resolver,
                    name,
                    QTYPE_A,
                    &zone,
                )?;
            }
            Net::Query { client, name, addr } => {
                let zone = Zone {
                    v4: Some(*addr),
                    ..Zone::default()
                };
                sim.f
                    .dns(&mut sim.rng, t, *client, resolver, name, QTYPE_A, &zone)?;
            }
            Net::SynUnanswered { client, server } => {
                let ttl = 50 + sim.rng.below(8) as u8;
                let server = remote(IpAddr::V4(*server), 80, ttl);
                sim.f
                    .tcp_syn_unanswered(&mut sim.rng, *client, server, t, 1)?;
            }
            Net::Tls {
                client,
                server,
                sni,
                rounds,
            } => {
                let server = sim.server(*server, 443);
                let rtt = sim.rng.range(12 * MS, 60 * MS);
                let (mut tcp, mut now) = sim.tls_open_from(*client, t, Some(sni), server, rtt)?;
                for &(up, down) in rounds {
                    let think = sim.rng.range(200 * MS, 2_000 * MS);
                    let dur = (up / 10).max(20 * MS);
                    now = sim.f.tcp_bulk(&mut tcp, true, now + think, dur, up)?;
                    let dur = (down / 10).max(20 * MS);
                    now = sim.f.tcp_bulk(&mut tcp, false, now + rtt, dur, down)?;
                }
                let think = sim.rng.range(300 * MS, 2_000 * MS);
                sim.f.tcp_close(&mut tcp, now + think, rtt)?;
            }
        }
    }
    sim.f.write_to(w)
}

/// The truth of every host, from the tags of its events.
fn host_docs(
    drafts: &[Draft],
    events: &[SysmonEvent],
    tallies: &BTreeMap<IpAddr, HostTally>,
) -> Vec<(IpAddr, HostDoc)> {
    let mut docs: Vec<(IpAddr, HostDoc)> = HOSTS
        .iter()
        .map(|spec| {
            let ip = IpAddr::V4(spec.addr);
            (
                ip,
                HostDoc {
                    computer: spec.computer,
                    splunk_host: spec.short,
                    beats_host_name: (spec.platform == Platform::Windows)
                        .then(|| spec.short.to_ascii_lowercase()),
                    platform: match spec.platform {
                        Platform::Windows => "windows",
                        Platform::Linux => "linux",
                    },
                    user: spec.user,
                    role: spec.role,
                    what: spec.what,
                    events: 0,
                    first_record_id: 0,
                    last_record_id: 0,
                    expect_endpoint: Vec::new(),
                    expect_network: Vec::new(),
                    no_alert: Vec::new(),
                    traffic: tallies.get(&ip).copied().unwrap_or_default(),
                },
            )
        })
        .collect();
    for (d, e) in drafts.iter().zip(events) {
        let Some((_, doc)) = docs.get_mut(d.host) else {
            continue;
        };
        let r = EventRef {
            record_id: e.record_id.unwrap_or(0),
            event_id: e.event_id,
        };
        doc.events += 1;
        if doc.first_record_id == 0 {
            doc.first_record_id = r.record_id;
        }
        doc.last_record_id = r.record_id;
        let image = e.raw("Image").unwrap_or("-");
        if let Some(b) = d.tag.expect {
            add_evidence(&mut doc.expect_endpoint, b, image, r);
        }
        if let Some(b) = d.tag.network {
            add_evidence(&mut doc.expect_network, b, image, r);
        }
        if d.tag.lookalike {
            doc.no_alert.push(r);
        }
    }
    docs.sort_by_key(|(ip, _)| *ip);
    docs
}

fn add_evidence(
    list: &mut Vec<Expect>,
    (branch, service): (&'static str, &'static str),
    image: &str,
    r: EventRef,
) {
    let i = match list.iter().position(|x| x.branch == branch) {
        Some(i) => i,
        None => {
            list.push(Expect {
                branch,
                services: Vec::new(),
                process: image.to_string(),
                event_ids: Vec::new(),
                record_ids: Vec::new(),
            });
            list.len() - 1
        }
    };
    if let Some(x) = list.get_mut(i) {
        if !service.is_empty() && !x.services.contains(&service) {
            x.services.push(service);
        }
        if !x.event_ids.contains(&r.event_id) {
            x.event_ids.push(r.event_id);
        }
        x.record_ids.push(r.record_id);
    }
}

// ---------------------------------------------------------------------------------------
// Writing the formats

/// Per event id: the manifest's version, the task name Windows renders, and the integration's
/// ECS action, categories and types.
struct Kind {
    id: u16,
    version: u8,
    task: &'static str,
    action: &'static str,
    category: &'static [&'static str],
    kind_type: &'static [&'static str],
}

const KINDS: [Kind; 5] = [
    Kind {
        id: 1,
        version: 5,
        task: "Process Create (rule: ProcessCreate)",
        action: "Process creation",
        category: &["process"],
        kind_type: &["start"],
    },
    Kind {
        id: 3,
        version: 5,
        task: "Network connection detected (rule: NetworkConnect)",
        action: "Network connection",
        category: &["network"],
        kind_type: &["start", "connection", "protocol"],
    },
    Kind {
        id: 11,
        version: 2,
        task: "File created (rule: FileCreate)",
        action: "FileCreate",
        category: &["file"],
        kind_type: &["creation"],
    },
    Kind {
        id: 13,
        version: 2,
        task: "Registry value set (rule: RegistryEvent)",
        action: "RegistryEvent (Value Set)",
        category: &["configuration", "registry"],
        kind_type: &["change"],
    },
    Kind {
        id: 22,
        version: 5,
        task: "Dns query (rule: DnsQuery)",
        action: "DNSEvent (DNS query)",
        category: &["network"],
        kind_type: &["connection", "protocol", "info"],
    },
];

static UNKNOWN_KIND: Kind = Kind {
    id: 0,
    version: 0,
    task: "-",
    action: "-",
    category: &[],
    kind_type: &[],
};

fn kind(id: u16) -> &'static Kind {
    KINDS.iter().find(|k| k.id == id).unwrap_or(&UNKNOWN_KIND)
}

/// Sysmon's service PID on a computer and the thread that logged one record: Windows and
/// Sysmon for Linux write them in System/Execution; nothing downstream reads them, so they
/// are derived from the name (FNV-1a) rather than carried in the event.
fn execution_ids(computer: &str, record: u64) -> (u32, u32) {
    let pid = 2_000 + (fnv1a(computer.as_bytes()) % 2_000) as u32 * 4;
    let threads = [pid + 4, pid + 248, pid + 1_028];
    let thread = threads.get((record % 3) as usize).copied().unwrap_or(pid);
    (pid, thread)
}

/// 64-bit FNV-1a: stable ids derived from names.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Text (and the plain attribute values used here) as Windows renders event XML: `&`, `<` and
/// `>` become entities, quotes stay (public XmlWinEventLog events show CommandLine values as
/// `<Data Name='CommandLine'>"C:\...\x.exe" ...</Data>`), which is also what the seed
/// search's field extraction sees.
fn xml_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// The event as Windows renders it (EvtRender XML; Splunk's XmlWinEventLog `_raw`).
fn windows_xml(e: &SysmonEvent) -> String {
    let k = kind(e.event_id);
    let record = e.record_id.unwrap_or(0);
    let (pid, tid) = execution_ids(&e.computer, record);
    let mut x = String::with_capacity(2048);
    x.push_str("<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>");
    x.push_str(&format!(
        "<Provider Name='Microsoft-Windows-Sysmon' Guid='{WINDOWS_PROVIDER_GUID}'/>\
         <EventID>{}</EventID><Version>{}</Version><Level>4</Level><Task>{}</Task>\
         <Opcode>0</Opcode><Keywords>0x8000000000000000</Keywords>\
         <TimeCreated SystemTime='{}'/><EventRecordID>{record}</EventRecordID><Correlation/>\
         <Execution ProcessID='{pid}' ThreadID='{tid}'/><Channel>{WINDOWS_CHANNEL}</Channel>\
         <Computer>",
        e.event_id,
        k.version,
        e.event_id,
        windows_system_time(ns_to_ms(e.time_ns)),
    ));
    xml_escape(&e.computer, &mut x);
    x.push_str("</Computer><Security UserID='S-1-5-18'/></System><EventData>");
    push_event_data(e, '\'', &mut x);
    x
}

/// The EventData elements and the closing tags, attribute values in `quote`s.
fn push_event_data(e: &SysmonEvent, quote: char, x: &mut String) {
    for (name, value) in &e.data {
        x.push_str("<Data Name=");
        x.push(quote);
        xml_escape(name, x);
        x.push(quote);
        x.push('>');
        xml_escape(value, x);
        x.push_str("</Data>");
    }
    x.push_str("</EventData></Event>");
}

/// The event as Sysmon for Linux writes it to syslog: no namespace, double quotes.
fn linux_xml(e: &SysmonEvent) -> String {
    let k = kind(e.event_id);
    let record = e.record_id.unwrap_or(0);
    let (pid, _) = execution_ids(&e.computer, record);
    let mut x = String::with_capacity(2048);
    x.push_str(&format!(
        "<Event><System><Provider Name=\"Linux-Sysmon\" Guid=\"{LINUX_PROVIDER_GUID}\"/>\
         <EventID>{}</EventID><Version>{}</Version><Level>4</Level><Task>{}</Task>\
         <Opcode>0</Opcode><Keywords>0x8000000000000000</Keywords>\
         <TimeCreated SystemTime=\"{}\"/><EventRecordID>{record}</EventRecordID><Correlation/>\
         <Execution ProcessID=\"{pid}\" ThreadID=\"{pid}\"/><Channel>{LINUX_CHANNEL}</Channel>\
         <Computer>",
        e.event_id,
        k.version,
        e.event_id,
        linux_system_time(ns_to_ms(e.time_ns)),
    ));
    xml_escape(&e.computer, &mut x);
    x.push_str("</Computer><Security UserId=\"0\"/></System><EventData>");
    push_event_data(e, '"', &mut x);
    x
}

fn beats_host_name(e: &SysmonEvent) -> String {
    e.host_name().to_ascii_lowercase()
}

/// Sysmon's own account as Winlogbeat resolves System/Security/@UserID.
fn winlog_user() -> Value {
    json!({
        "domain": "NT AUTHORITY",
        "identifier": "S-1-5-18",
        "name": "SYSTEM",
        "type": "Well Known Group",
    })
}

fn winlog_process(e: &SysmonEvent) -> Value {
    let (pid, tid) = execution_ids(&e.computer, e.record_id.unwrap_or(0));
    json!({ "pid": pid, "thread": { "id": tid } })
}

/// A stable version-4-shaped UUID per host and purpose, for the Beats agent ids.
fn agent_uuid(host: &str, purpose: &str) -> String {
    let a = fnv1a(format!("{host}/{purpose}/a").as_bytes());
    let b = fnv1a(format!("{host}/{purpose}/b").as_bytes());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn agent(e: &SysmonEvent, kind: &str) -> Value {
    let host = beats_host_name(e);
    json!({
        "ephemeral_id": agent_uuid(&host, &format!("{kind}/ephemeral")),
        "id": agent_uuid(&host, kind),
        "name": host,
        "type": kind,
        "version": BEATS_VERSION,
    })
}

/// Object keys in byte order at every level, as Go's encoding/json writes the Beats' maps.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// One Winlogbeat 8 document (output to file, no ingest pipeline): event_data keeps every
/// field Sysmon wrote, `-` included (Winlogbeat drops only empty values); keys sorted, as
/// Winlogbeat writes its maps. The rendered `message` is dropped (`drop_fields`), as many
/// deployments do: it repeats event_data and would double the file.
fn winlogbeat_doc(e: &SysmonEvent) -> Value {
    let k = kind(e.event_id);
    let ms = ns_to_ms(e.time_ns);
    let event_data: Map<String, Value> = e
        .data
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| (n.clone(), Value::String(v.clone())))
        .collect();
    let doc = json!({
        "@timestamp": iso_ms(ms),
        "@metadata": { "beat": "winlogbeat", "type": "_doc", "version": BEATS_VERSION },
        "agent": agent(e, "winlogbeat"),
        "ecs": { "version": "8.0.0" },
        "event": {
            "action": k.task,
            "code": e.event_id.to_string(),
            "created": iso_ms(ms + 1_000 + e.record_id.unwrap_or(0) % 700),
            "kind": "event",
            "provider": "Microsoft-Windows-Sysmon",
        },
        "host": { "name": beats_host_name(e) },
        "log": { "level": "information" },
        "winlog": {
            "api": "wineventlog",
            "channel": WINDOWS_CHANNEL,
            "computer_name": e.computer,
            "event_data": event_data,
            "event_id": e.event_id.to_string(),
            "opcode": "Info",
            "process": winlog_process(e),
            "provider_guid": WINDOWS_PROVIDER_GUID,
            "provider_name": "Microsoft-Windows-Sysmon",
            "record_id": e.record_id.unwrap_or(0),
            "task": k.task,
            "user": winlog_user(),
            "version": k.version,
        },
    });
    sorted(doc)
}

/// Windows command-line splitting (CommandLineToArgvW rules, with the pre-2008 `""` rule the
/// integration's pipeline uses), for process.args.
fn windows_argv(cmd: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut chars = cmd.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        if chars.peek().is_none() {
            return args;
        }
        let mut arg = String::new();
        let mut quoted = false;
        let mut slashes = 0usize;
        while let Some(c) = chars.next() {
            match c {
                '\\' => slashes += 1,
                '"' => {
                    arg.extend(std::iter::repeat_n('\\', slashes / 2));
                    if slashes % 2 == 1 {
                        arg.push('"');
                    } else if quoted && chars.peek() == Some(&'"') {
                        arg.push('"');
                        chars.next();
                    } else {
                        quoted = !quoted;
                    }
                    slashes = 0;
                }
                ' ' | '\t' if !quoted => break,
                c => {
                    arg.extend(std::iter::repeat_n('\\', slashes));
                    slashes = 0;
                    arg.push(c);
                }
            }
        }
        arg.extend(std::iter::repeat_n('\\', slashes));
        args.push(arg);
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('\\').next().unwrap_or(path)
}

/// Inserts `value` at a dotted path of objects.
fn put(doc: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts = path.split('.').peekable();
    let mut cur = doc;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(part.to_string(), value);
            return;
        }
        let next = cur
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        match next.as_object_mut() {
            Some(obj) => cur = obj,
            None => return,
        }
    }
}

/// EventData fields the integration's pipeline moves into ECS or drops.
const ECS_CONSUMED: [&str; 31] = [
    "RuleName",
    "UtcTime",
    "ProcessGuid",
    "ProcessId",
    "Image",
    "CommandLine",
    "CurrentDirectory",
    "ParentProcessGuid",
    "ParentProcessId",
    "ParentImage",
    "ParentCommandLine",
    "OriginalFileName",
    "User",
    "Hashes",
    "TargetFilename",
    "Protocol",
    "Initiated",
    "SourceIsIpv6",
    "SourceIp",
    "SourceHostname",
    "SourcePort",
    "SourcePortName",
    "DestinationIsIpv6",
    "DestinationIp",
    "DestinationHostname",
    "DestinationPort",
    "DestinationPortName",
    "QueryName",
    "QueryStatus",
    "QueryResults",
    "TargetObject",
];

/// One document as Elastic Agent's Windows integration (data stream
/// `windows.sysmon_operational`) indexes it after its ingest pipeline; `message` dropped as
/// in the Winlogbeat file.
fn elastic_agent_doc(e: &SysmonEvent) -> Value {
    let k = kind(e.event_id);
    let ms = ns_to_ms(e.time_ns);
    let code = e.event_id.to_string();
    let mut d = Map::new();
    let get = |name: &str| e.get(name).map(str::to_string);
    let mut related_ip: Vec<String> = Vec::new();
    let mut related_hash: Vec<String> = Vec::new();

    put(&mut d, "@timestamp", json!(iso_ms(ms)));
    put(&mut d, "agent", agent(e, "filebeat"));
    put(
        &mut d,
        "data_stream",
        json!({"dataset": "windows.sysmon_operational", "namespace": "default", "type": "logs"}),
    );
    put(&mut d, "ecs.version", json!("8.0.0"));
    put(&mut d, "event.action", json!(k.action));
    put(&mut d, "event.category", json!(k.category));
    put(&mut d, "event.code", json!(code));
    put(&mut d, "event.created", json!(iso_ms(ms)));
    put(&mut d, "event.dataset", json!("windows.sysmon_operational"));
    put(
        &mut d,
        "event.ingested",
        json!(iso_ms(ms + 2_500 + e.record_id.unwrap_or(0) % 900)),
    );
    put(&mut d, "event.kind", json!("event"));
    put(&mut d, "event.provider", json!("Microsoft-Windows-Sysmon"));
    put(&mut d, "event.type", json!(k.kind_type));
    put(&mut d, "host.name", json!(beats_host_name(e)));
    put(&mut d, "input.type", json!("winlog"));
    put(&mut d, "log.level", json!("information"));
    if let Some(v) = get("RuleName") {
        put(&mut d, "rule.name", json!(v));
    }

    // Process.
    if let Some(hashes) = get("Hashes") {
        for pair in hashes.split(',') {
            if let Some((algo, value)) = pair.split_once('=') {
                let (algo, value) = (algo.to_ascii_lowercase(), value.to_ascii_lowercase());
                related_hash.push(value.clone());
                if algo == "imphash" {
                    put(&mut d, "process.pe.imphash", json!(value));
                } else {
                    put(&mut d, &format!("process.hash.{algo}"), json!(value));
                }
            }
        }
    }
    if let Some(v) = get("ProcessGuid") {
        put(&mut d, "process.entity_id", json!(v));
    }
    if let Some(v) = e.get("ProcessId").and_then(|v| v.parse::<u64>().ok()) {
        put(&mut d, "process.pid", json!(v));
    }
    if let Some(v) = get("Image") {
        put(&mut d, "process.name", json!(basename(&v)));
        put(&mut d, "process.executable", json!(v));
    }
    if let Some(v) = get("CommandLine") {
        let args = windows_argv(&v);
        put(&mut d, "process.args_count", json!(args.len()));
        put(&mut d, "process.args", json!(args));
        put(&mut d, "process.command_line", json!(v));
    }
    if let Some(v) = get("CurrentDirectory") {
        put(&mut d, "process.working_directory", json!(v));
    }
    if let Some(v) = get("ParentProcessGuid") {
        put(&mut d, "process.parent.entity_id", json!(v));
    }
    if let Some(v) = e.get("ParentProcessId").and_then(|v| v.parse::<u64>().ok()) {
        put(&mut d, "process.parent.pid", json!(v));
    }
    if let Some(v) = get("ParentImage") {
        put(&mut d, "process.parent.name", json!(basename(&v)));
        put(&mut d, "process.parent.executable", json!(v));
    }
    if let Some(v) = get("ParentCommandLine") {
        let args = windows_argv(&v);
        put(&mut d, "process.parent.args_count", json!(args.len()));
        put(&mut d, "process.parent.args", json!(args));
        put(&mut d, "process.parent.command_line", json!(v));
    }
    for (field, ecs) in [
        ("OriginalFileName", "process.pe.original_file_name"),
        ("Company", "process.pe.company"),
        ("Description", "process.pe.description"),
        ("FileVersion", "process.pe.file_version"),
        ("Product", "process.pe.product"),
    ] {
        if let Some(v) = get(field) {
            put(&mut d, ecs, json!(v));
        }
    }

    // File.
    if let Some(path) = get("TargetFilename") {
        if let Some((dir, name)) = path.rsplit_once('\\') {
            put(&mut d, "file.directory", json!(dir));
            put(&mut d, "file.name", json!(name));
        }
        if let Some((_, ext)) = path.rsplit_once('.') {
            put(&mut d, "file.extension", json!(ext));
        }
        put(&mut d, "file.path", json!(path));
    }

    // Network.
    if let Some(v) = get("Protocol") {
        put(&mut d, "network.transport", json!(v));
    }
    if e.event_id == 22 {
        put(&mut d, "network.protocol", json!("dns"));
    } else if let Some(v) = get("SourcePortName").or_else(|| get("DestinationPortName")) {
        put(&mut d, "network.protocol", json!(v));
    }
    match e.get("Initiated") {
        Some("true") => put(&mut d, "network.direction", json!("egress")),
        Some("false") => put(&mut d, "network.direction", json!("ingress")),
        _ => {}
    }
    match e.get("SourceIsIpv6") {
        Some("false") => put(&mut d, "network.type", json!("ipv4")),
        Some("true") => put(&mut d, "network.type", json!("ipv6")),
        _ => {}
    }
    for side in ["Source", "Destination"] {
        let ecs = side.to_ascii_lowercase();
        if let Some(ip) = get(&format!("{side}Ip")) {
            related_ip.push(ip.clone());
            put(&mut d, &format!("{ecs}.ip"), json!(ip));
        }
        if let Some(v) = get(&format!("{side}Hostname")) {
            put(&mut d, &format!("{ecs}.domain"), json!(v));
        }
        if let Some(v) = e
            .get(&format!("{side}Port"))
            .and_then(|v| v.parse::<u64>().ok())
        {
            put(&mut d, &format!("{ecs}.port"), json!(v));
        }
    }

    // DNS.
    if let Some(name) = get("QueryName") {
        let labels: Vec<&str> = name.split('.').collect();
        put(&mut d, "dns.question.name", json!(name));
        // Registered domain: the last two labels (every name here has a one-label suffix).
        if labels.len() >= 2 {
            let n = labels.len();
            put(
                &mut d,
                "dns.question.registered_domain",
                json!(labels[n - 2..].join(".")),
            );
            put(
                &mut d,
                "dns.question.top_level_domain",
                json!(labels[n - 1]),
            );
            if n > 2 {
                put(
                    &mut d,
                    "dns.question.subdomain",
                    json!(labels[..n - 2].join(".")),
                );
            }
        }
        put(&mut d, "related.hosts", json!([name]));
    }
    if let Some(results) = get("QueryResults") {
        let ips: Vec<String> = results
            .split(';')
            .filter(|r| !r.is_empty() && !r.starts_with("type:"))
            .map(|r| r.strip_prefix("::ffff:").unwrap_or(r).to_string())
            .collect();
        let answers: Vec<Value> = ips
            .iter()
            .map(|ip| json!({"data": ip, "type": if ip.contains(':') { "AAAA" } else { "A" }}))
            .collect();
        if !ips.is_empty() {
            put(&mut d, "dns.answers", json!(answers));
            put(&mut d, "dns.resolved_ip", json!(ips));
            let mut all = ips;
            all.append(&mut related_ip);
            related_ip = all;
        }
    }
    if let Some(status) = get("QueryStatus") {
        let status = if status == "0" {
            "SUCCESS".to_string()
        } else {
            status
        };
        put(&mut d, "sysmon.dns.status", json!(status));
    }

    // User: Sysmon's own account as user.id, the event's User split into domain and name.
    put(&mut d, "user.id", json!("S-1-5-18"));
    if let Some((domain, name)) = e.get("User").and_then(|u| u.split_once('\\')) {
        put(&mut d, "user.domain", json!(domain));
        put(&mut d, "user.name", json!(name));
        put(&mut d, "related.user", json!([name]));
    }
    if !related_ip.is_empty() {
        related_ip.dedup();
        put(&mut d, "related.ip", json!(related_ip));
    }
    if !related_hash.is_empty() {
        put(&mut d, "related.hash", json!(related_hash));
    }

    // Registry (events 12-14).
    if let (Some(path), true) = (get("TargetObject"), matches!(e.event_id, 12..=14)) {
        let tokens: Vec<&str> = path.split('\\').collect();
        let hive = match tokens.first().copied() {
            Some("HKLM" | "HKEY_LOCAL_MACHINE") => Some("HKLM"),
            Some("HKU" | "HKEY_USERS") => Some("HKU"),
            Some("HKCU" | "HKEY_CURRENT_USER") => Some("HKCU"),
            Some("HKCR" | "HKEY_CLASSES_ROOT") => Some("HKCR"),
            _ => None,
        };
        if let Some(hive) = hive {
            put(&mut d, "registry.hive", json!(hive));
            if tokens.len() > 1 {
                put(&mut d, "registry.key", json!(tokens[1..].join("\\")));
            }
        }
        if let Some(value) = tokens.last() {
            put(&mut d, "registry.value", json!(value));
        }
        put(&mut d, "registry.path", json!(path));
        if let Some(details) = get("Details") {
            put(&mut d, "registry.data.strings", json!([details]));
            put(&mut d, "registry.data.type", json!("REG_SZ"));
        }
    }

    // What the pipeline leaves in event_data.
    let rest: Map<String, Value> = e
        .data
        .iter()
        .filter(|(n, v)| !v.is_empty() && v != "-" && !ECS_CONSUMED.contains(&n.as_str()))
        .map(|(n, v)| (n.clone(), Value::String(v.clone())))
        .collect();
    let mut winlog = json!({
        "api": "wineventlog",
        "channel": WINDOWS_CHANNEL,
        "computer_name": e.computer,
        "event_id": code,
        "opcode": "Info",
        "process": winlog_process(e),
        "provider_guid": WINDOWS_PROVIDER_GUID,
        "provider_name": "Microsoft-Windows-Sysmon",
        "record_id": e.record_id.unwrap_or(0).to_string(),
        "task": k.task,
        "user": winlog_user(),
        "version": k.version,
    });
    if let (false, Some(w)) = (rest.is_empty(), winlog.as_object_mut()) {
        w.insert("event_data".to_string(), Value::Object(rest));
    }
    put(&mut d, "winlog", winlog);
    sorted(Value::Object(d))
}

/// One line of Splunk's search export (`output_mode=json`), fields in Splunk's order.
#[derive(Serialize)]
struct SplunkLine<'a> {
    preview: bool,
    result: SplunkResult<'a>,
}

#[derive(Serialize)]
struct SplunkResult<'a> {
    #[serde(rename = "_raw")]
    raw: String,
    #[serde(rename = "_time")]
    time: String,
    host: &'a str,
    source: &'a str,
    sourcetype: &'a str,
    index: &'a str,
}

fn write_json_lines<T: Serialize>(
    out: &mut impl Write,
    docs: impl Iterator<Item = T>,
) -> io::Result<()> {
    for doc in docs {
        serde_json::to_writer(&mut *out, &doc)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Lines of other programs among the Sysmon lines, as a real /var/log/syslog has them.
fn other_syslog_lines(host: &str) -> [(u64, String); 2] {
    [
        (
            START_MS + 300 * SEC_MS + 1,
            format!(
                "{} {host} CRON[24117]: (root) CMD (command -v debian-sa1 > /dev/null && \
                 debian-sa1 1 1)",
                syslog_time(START_MS + 300 * SEC_MS + 1)
            ),
        ),
        (
            START_MS + 380 * SEC_MS + 7,
            format!(
                "{} {host} systemd[1]: Starting apt-daily.service - Daily apt download \
                 activities...",
                syslog_time(START_MS + 380 * SEC_MS + 7)
            ),
        ),
    ]
}

fn write_syslog(out: &mut impl Write, events: &[&SysmonEvent]) -> io::Result<()> {
    let mut lines: Vec<(u64, String)> = events
        .iter()
        .map(|e| {
            let ms = ns_to_ms(e.time_ns);
            (
                ms,
                format!(
                    "{} {} sysmon: {}",
                    syslog_time(ms),
                    e.host_name(),
                    linux_xml(e)
                ),
            )
        })
        .collect();
    if let Some(host) = events.first().map(|e| e.host_name().to_string()) {
        lines.extend(other_syslog_lines(&host));
    }
    lines.sort_by_key(|(t, _)| *t);
    for (_, line) in lines {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn write_file(
    path: &Path,
    f: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), GenerateError> {
    let file = File::create(path).map_err(|e| GenerateError::io(path, e))?;
    let mut out = BufWriter::new(file);
    f(&mut out)
        .and_then(|()| out.flush())
        .map_err(|e| GenerateError::io(path, e))
}

/// Writes the endpoint files of `events` into `dir` (created if missing).
pub(crate) fn write_files(dir: &Path, events: &[SysmonEvent]) -> Result<(), GenerateError> {
    fs::create_dir_all(dir).map_err(|e| GenerateError::io(dir, e))?;
    let windows: Vec<&SysmonEvent> = events
        .iter()
        .filter(|e| e.platform == Platform::Windows)
        .collect();
    let linux: Vec<&SysmonEvent> = events
        .iter()
        .filter(|e| e.platform == Platform::Linux)
        .collect();
    write_file(&dir.join(WINLOGBEAT_FILE), |out| {
        write_json_lines(out, windows.iter().map(|e| winlogbeat_doc(e)))
    })?;
    write_file(&dir.join(ELASTIC_AGENT_FILE), |out| {
        write_json_lines(out, windows.iter().map(|e| elastic_agent_doc(e)))
    })?;
    // A search returns the newest event first.
    write_file(&dir.join(SPLUNK_FILE), |out| {
        write_json_lines(
            out,
            windows.iter().rev().map(|e| SplunkLine {
                preview: false,
                result: SplunkResult {
                    raw: windows_xml(e),
                    time: splunk_time(ns_to_ms(e.time_ns)),
                    host: e.host_name(),
                    source: SPLUNK_SOURCETYPE,
                    sourcetype: SPLUNK_SOURCETYPE,
                    index: SPLUNK_INDEX,
                },
            }),
        )
    })?;
    write_file(&dir.join(SYSLOG_FILE), |out| write_syslog(out, &linux))?;
    let mut by_host: std::collections::BTreeMap<&str, Vec<SysmonEvent>> = Default::default();
    for e in windows {
        by_host.entry(e.host_name()).or_default().push(e.clone());
    }
    for (host, mut log) in by_host {
        log.sort_by_key(|e| e.record_id);
        write_file(&dir.join(evtx_file(host)), |out| {
            super::evtx::write_evtx(out, &log)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_follows_windows_rules() {
        assert_eq!(
            windows_argv(r#"cmd.exe /c start "" "C:\A B\x.exe""#),
            ["cmd.exe", "/c", "start", "", r"C:\A B\x.exe"]
        );
        assert_eq!(
            windows_argv(r#"a\\\"b "c\\" d\e"#),
            [r#"a\"b"#, r"c\", r"d\e"]
        );
        assert_eq!(windows_argv("  "), Vec::<String>::new());
    }

    #[test]
    fn times_render_per_format() {
        let ms = START_MS + 200 * SEC_MS + 123;
        assert_eq!(utc_time(ms), "2026-03-02 09:03:20.123");
        assert_eq!(windows_system_time(ms), "2026-03-02T09:03:20.1230000Z");
        assert_eq!(linux_system_time(ms), "2026-03-02T09:03:20.123000000Z");
        assert_eq!(syslog_time(ms), "Mar  2 09:03:20");
        assert_eq!(splunk_time(ms), "2026-03-02T09:03:20.123+00:00");
    }

    #[test]
    fn logon_guid_carries_the_luid_little_endian() {
        assert_eq!(luid_tail(0x2c9e7), "e7c9-020000000000");
        assert_eq!(luid_tail(1000), "e803-000000000000");
    }

    #[test]
    fn xml_escapes_as_windows_renders_text() {
        let mut s = String::new();
        xml_escape(r#"a&b<c>d'e"f"#, &mut s);
        assert_eq!(s, r#"a&amp;b&lt;c&gt;d'e"f"#);
    }
}
