//! The binary, run as a user would: hermetic temp dirs, real captures, exit codes and messages.
mod common;

use common::TempDir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn public(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/captures/public")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn truncated_file_is_reported_with_offset_and_the_run_goes_on() {
    let dir = TempDir::new("cli", "trunc");
    let original = std::fs::read(public("ndpi__http_connect.pcap")).unwrap();
    let cut = dir.path("cut.pcap");
    std::fs::write(&cut, &original[..original.len() - 100]).unwrap();
    let other = public("tcpdump__dns_tcp.pcap");
    let o = run(&[
        "replay",
        "--format",
        "json",
        cut.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("cut.pcap at byte offset"), "{err}");
    assert!(err.contains("truncated"), "{err}");
    // 99 whole frames of the cut file plus all 11 of the other file were still read.
    assert!(err.contains("2 file(s), 110 frames"), "{err}");
}

#[test]
fn unknown_link_type_is_an_error_naming_the_file() {
    let dir = TempDir::new("cli", "linktype");
    let path = dir.path("usb.pcap");
    let mut header = vec![
        0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0,
    ];
    header.extend_from_slice(&189u32.to_le_bytes()); // LINKTYPE_USB_LINUX_MMAPPED
    std::fs::write(&path, &header).unwrap();
    let o = run(&["replay", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("usb.pcap") && err.contains("unsupported link type 189"),
        "{err}"
    );
}

#[test]
fn not_a_capture_is_an_error_naming_the_file() {
    let dir = TempDir::new("cli", "notcap");
    let path = dir.path("notes.txt");
    std::fs::write(&path, b"this is not a capture file at all, just text").unwrap();
    let o = run(&["replay", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("notes.txt: not a pcap or pcapng file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn shipped_config_checks_and_a_bad_one_is_named() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/egresswatch.toml");
    let o = run(&["check-config", config.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("20 proxyware services"),
        "{}",
        stderr(&o)
    );

    let dir = TempDir::new("cli", "badconfig");
    let bad = dir.path("bad.toml");
    std::fs::write(&bad, "[flow]\nmax_flow = 10\n").unwrap();
    let o = run(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("bad.toml") && stderr(&o).contains("max_flow"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_retired_key_still_loads_with_a_warning() {
    // [detectors.flood] max_tracked_flows bounded a map the flood detector no longer keeps.
    let dir = TempDir::new("cli", "retired");
    let old = dir.path("old.toml");
    std::fs::write(&old, "[detectors.flood]\nmax_tracked_flows = 1000\n").unwrap();
    let o = run(&["check-config", old.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("old.toml: detectors.flood.max_tracked_flows is no longer used"),
        "{}",
        stderr(&o)
    );
    let capture = public("tcpdump__dns_tcp.pcap");
    let o = run(&[
        "replay",
        "--config",
        old.to_str().unwrap(),
        capture.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("max_tracked_flows is no longer used"));
    // The shipped config does not set it.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/egresswatch.toml");
    let o = run(&["check-config", shipped.to_str().unwrap()]);
    assert!(!stderr(&o).contains("no longer used"), "{}", stderr(&o));
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

#[test]
fn zeek_logs_for_a_connect_tunnel() {
    let dir = TempDir::new("cli", "logs");
    let logs = dir.path("logs");
    let o = run(&[
        "replay",
        "--log-dir",
        logs.to_str().unwrap(),
        public("ndpi__http_connect.pcap").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let conn = json_lines(&logs.join("conn.log"));
    assert_eq!(conn.len(), 3);
    let proxy = conn
        .iter()
        .find(|c| c["id.resp_p"] == 8080)
        .expect("proxy connection");
    assert_eq!(proxy["proto"], "tcp");
    assert_eq!(proxy["service"], "http,ssl");
    assert_eq!(proxy["orig_pkts"], 18);
    assert_eq!(proxy["resp_pkts"], 22);
    assert!(proxy["uid"].as_str().unwrap().starts_with('C'));
    let http = json_lines(&logs.join("http.log"));
    assert_eq!(http.len(), 1);
    assert_eq!(http[0]["method"], "CONNECT");
    assert_eq!(http[0]["host"], "apache.org:443");
    assert_eq!(http[0]["uid"], proxy["uid"]);
    let ssl = json_lines(&logs.join("ssl.log"));
    assert_eq!(
        ssl.len(),
        2,
        "TLS inside the tunnel and the proxy's own upstream TLS"
    );
    assert!(ssl.iter().all(|s| s["server_name"] == "apache.org"));
    let dns = json_lines(&logs.join("dns.log"));
    assert_eq!(dns.len(), 1, "query and response pair into one line");
    assert_eq!(dns[0]["query"], "apache.org");
    assert_eq!(dns[0]["qtype_name"], "A");
    assert!(dns[0]["answers"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(dns[0]["rtt"].as_f64().is_some());
}

/// ssl.log's server fields against tshark's view of each ServerHello, recorded in
/// tests/data/ssl_server_hello.tsv by tests/data/make_ssl_expect.py (CI may lack tshark).
#[test]
fn ssl_log_server_fields_match_tshark() {
    let expect = include_str!("data/ssl_server_hello.tsv");
    let mut by_file: Vec<(&str, Vec<Vec<&str>>)> = Vec::new();
    for line in expect.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        match by_file.last_mut() {
            Some((f, rows)) if *f == cols[0] => rows.push(cols),
            _ => by_file.push((cols[0], vec![cols])),
        }
    }
    assert!(
        by_file.len() >= 10,
        "expectations for {} captures",
        by_file.len()
    );
    let mut failures = Vec::new();
    let dir = TempDir::new("cli", "ssl");
    for (file, rows) in &by_file {
        let logs = dir.path(file);
        let o = run(&[
            "replay",
            "--log-dir",
            logs.to_str().unwrap(),
            public(file).to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{file}: {}", stderr(&o));
        let ssl = json_lines(&logs.join("ssl.log"));
        let with_version = ssl.iter().filter(|s| s.get("version").is_some()).count();
        if with_version != rows.len() {
            failures.push(format!(
                "{file}: {with_version} lines with a version, tshark {} ServerHellos",
                rows.len()
            ));
        }
        for row in rows {
            let (orig_p, resp_p): (u64, u64) = (row[1].parse().unwrap(), row[2].parse().unwrap());
            let Some(line) = ssl
                .iter()
                .find(|s| s["id.orig_p"] == orig_p && s["id.resp_p"] == resp_p)
            else {
                failures.push(format!("{file} {orig_p}->{resp_p}: no ssl.log line"));
                continue;
            };
            let alpn = (row[5] != "-").then_some(row[5]);
            let got = (
                line["version"].as_str(),
                line["cipher"].as_str(),
                line["next_protocol"].as_str(),
                line["established"].as_bool(),
            );
            let want = (Some(row[3]), Some(row[4]), alpn, Some(row[6] == "T"));
            if got != want {
                failures.push(format!(
                    "{file} {orig_p}->{resp_p}: ours {got:?}, expected {want:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// SIGHUP re-reads the config: a change that can apply live is applied, one that sizes state
/// already held is named and kept, and a broken file leaves the running config in place.
#[test]
fn collect_reloads_its_config_on_sighup() {
    use std::io::{BufRead, BufReader, Read};
    let dir = TempDir::new("cli", "sighup");
    let config = dir.path("egresswatch.toml");
    std::fs::write(&config, "").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .args([
            "collect",
            "--listen",
            "127.0.0.1:0",
            "--format",
            "json",
            "--config",
        ])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("egresswatch: listening on udp"), "{line}");
    let signal = |name: &str| {
        let ok = Command::new("kill")
            .args([name, &child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    let mut next_line = || {
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        line
    };
    std::fs::write(
        &config,
        "[proxyware]\nallow_domains = [\"honeygain.com\"]\n[windows]\nwindow_seconds = 300\n",
    )
    .unwrap();
    signal("-HUP");
    let reloaded = next_line();
    assert!(
        reloaded.contains("config reloaded") && reloaded.contains("[windows]"),
        "{reloaded}"
    );
    std::fs::write(&config, "no_such_key = 1\n").unwrap();
    signal("-HUP");
    let failed = next_line();
    assert!(
        failed.contains("config reload failed, running config unchanged")
            && failed.contains(&config.display().to_string()),
        "{failed}"
    );
    signal("-TERM");
    let status = child.wait().unwrap();
    let mut summary = String::new();
    stderr.read_to_string(&mut summary).unwrap();
    assert!(status.success(), "{summary}");
    assert!(summary.contains("config reloads: 1"), "{summary}");
}
