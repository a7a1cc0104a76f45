//! Live capture against real frames on real links: each test makes its own network
//! namespaces and veth pairs (the sensor's end in one namespace, the sender's in another, so
//! nothing reaches the host's network), runs `egresswatch live` on its end, and replays
//! `captures/office.pcap` into the other with tcpreplay (Debian package; `.ci/run` installs
//! it). What the sensor reports must be what `egresswatch replay` reports for the file.
//!
//! tcpreplay re-times the frames (the whole capture goes out in milliseconds), so alerts are
//! compared on what does not depend on time: host, branch, destination name, and the number
//! of observations summed over windows (a burst can straddle a window boundary). office.pcap's
//! alerts are ProxywareDomain, raised by names, not durations.
mod common;

use common::TempDir;
use egresswatch::config::Config;
use egresswatch::pipeline::{ReplayOptions, replay};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

const OFFICE_FRAMES: u64 = 1031;
/// Only guards against a hang; a passing test takes a few seconds.
const HANG_GUARD: Duration = Duration::from_secs(120);
/// veth has offloads on, so libpcap gives every ring slot 64 KiB; 128 MiB holds 2048 frames,
/// the whole capture, so a burst at top speed fits even before the reader thread runs.
const BUFFER_MIB: &str = "128";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} not found: install it with `apt-get install {package}` (.ci/run does)"
    );
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Network namespaces made by one test; deleting them deletes their veth ends too. Dropped
/// even when the test fails.
struct Lab {
    capture_ns: String,
    sender_ns: String,
    created: Vec<String>,
}

impl Lab {
    /// None (the test skips) only when this environment may not create namespaces.
    fn new(tag: &str) -> Option<Lab> {
        require("ip", "iproute2");
        require("tcpreplay", "tcpreplay");
        let pid = std::process::id();
        let mut lab = Lab {
            capture_ns: format!("egw-cap-{tag}-{pid}"),
            sender_ns: format!("egw-tx-{tag}-{pid}"),
            created: Vec::new(),
        };
        for ns in [lab.capture_ns.clone(), lab.sender_ns.clone()] {
            let out = Command::new("ip")
                .args(["netns", "add", &ns])
                .output()
                .expect("ip runs");
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                if err.contains("Permission denied") || err.contains("Operation not permitted") {
                    eprintln!("skipping: not allowed to create network namespaces here: {err}");
                    return None;
                }
                panic!("ip netns add {ns}: {err}");
            }
            lab.created.push(ns.clone());
            // No IPv6 on the test links: router solicitations and MLD reports would be
            // captured along with the replayed frames.
            let _ = Command::new("ip")
                .args(["netns", "exec", &ns, "sh", "-c"])
                .arg(
                    "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; \
                     echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
                )
                .status();
        }
        Some(lab)
    }

    /// A veth pair, up: the sensor's end (returned first) and the sender's.
    fn link(&self, n: u32) -> (String, String) {
        let pid = std::process::id();
        let (ours, theirs) = (format!("egwA{n}-{pid}"), format!("egwB{n}-{pid}"));
        assert!(ours.len() <= 15, "interface names are at most 15 bytes");
        run(Command::new("ip").args([
            "link",
            "add",
            &ours,
            "netns",
            &self.capture_ns,
            "type",
            "veth",
            "peer",
            "name",
            &theirs,
            "netns",
            &self.sender_ns,
        ]));
        run(Command::new("ip").args(["-n", &self.capture_ns, "link", "set", &ours, "up"]));
        run(Command::new("ip").args(["-n", &self.sender_ns, "link", "set", &theirs, "up"]));
        (ours, theirs)
    }

    /// tcpreplay sends `capture` out of the sender's end at top speed.
    fn replay(&self, interface: &str, capture: &Path) -> Child {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.sender_ns,
                "tcpreplay",
                "-q",
                "--topspeed",
            ])
            .arg("-i")
            .arg(interface)
            .arg(capture)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpreplay starts")
    }

    /// `egresswatch live` in the capture namespace; returns once every interface is open.
    fn sensor(&self, args: &[&str]) -> Sensor {
        self.sensor_via(&[], args)
    }

    /// The same, started through `wrapper` (a command that execs the rest, like setpriv).
    fn sensor_via(&self, wrapper: &[&str], args: &[&str]) -> Sensor {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.capture_ns])
            .args(wrapper)
            .arg(env!("CARGO_BIN_EXE_egresswatch"))
            .arg("live")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("egresswatch live starts");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        let interfaces = args.iter().filter(|a| **a == "--interface").count();
        let mut sensor = Sensor {
            child: Some(child),
            stdout,
            stderr,
            out: Vec::new(),
            err: Vec::new(),
        };
        sensor.wait_stderr("every interface open", |err| {
            err.iter()
                .filter(|l| l.starts_with("egresswatch: capturing on "))
                .count()
                == interfaces
        });
        sensor
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.created {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn lines(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_replay(mut tcpreplay: Child) {
    let status = tcpreplay.wait().unwrap();
    let mut err = String::new();
    if let Some(mut e) = tcpreplay.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "tcpreplay failed: {err}");
}

/// A running `egresswatch live`; killed on drop if a test fails before stopping it.
struct Sensor {
    child: Option<Child>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    out: Vec<String>,
    err: Vec<String>,
}

struct Stopped {
    status: ExitStatus,
    out: Vec<String>,
    err: Vec<String>,
}

impl Sensor {
    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    fn pump(&mut self, wait: Duration) -> bool {
        let mut got = false;
        while let Ok(line) = self.stdout.try_recv() {
            self.out.push(line);
            got = true;
        }
        match self.stderr.recv_timeout(wait) {
            Ok(line) => {
                self.err.push(line);
                got = true;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        }
        got
    }

    fn wait_until(&mut self, what: &str, done: impl Fn(&Sensor) -> bool) {
        let start = Instant::now();
        while !done(self) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.pump(Duration::from_millis(100));
                panic!(
                    "egresswatch exited ({status}) waiting for {what}\nstderr:\n{}",
                    self.err.join("\n")
                );
            }
            assert!(
                start.elapsed() < HANG_GUARD,
                "no {what}\nstdout:\n{}\nstderr:\n{}",
                self.out.join("\n"),
                self.err.join("\n")
            );
            self.pump(Duration::from_millis(100));
        }
    }

    fn wait_stderr(&mut self, what: &str, done: impl Fn(&[String]) -> bool) {
        self.wait_until(what, |s| done(&s.err));
    }

    /// Frames the pipeline processed, from the per-interval stats lines.
    fn frames_processed(&self) -> u64 {
        self.err
            .iter()
            .filter_map(|l| l.strip_prefix("egresswatch: live: "))
            .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    fn wait_processed(&mut self, frames: u64) {
        self.wait_until(&format!("{frames} frames processed"), |s| {
            s.frames_processed() >= frames
        });
    }

    fn stop(mut self, signal: nix::sys::signal::Signal) -> Stopped {
        self.signal(signal);
        let mut child = self.child.take().unwrap();
        let status = child.wait().unwrap();
        // The reader threads end at EOF.
        self.out.extend(self.stdout.iter());
        self.err.extend(self.stderr.iter());
        Stopped {
            status,
            out: std::mem::take(&mut self.out),
            err: std::mem::take(&mut self.err),
        }
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One live interface's line of the exit summary.
#[derive(Debug, PartialEq)]
struct InterfaceSummary {
    received: u64,
    delivered: u64,
    kernel: u64,
    interface: u64,
    queue: u64,
}

impl Stopped {
    fn summary_frames(&self) -> u64 {
        self.err
            .iter()
            .find_map(|l| {
                let frames = l.strip_prefix("egresswatch: ")?.split_once(" frames, ")?.0;
                frames.parse().ok()
            })
            .unwrap_or_else(|| panic!("no summary:\n{}", self.err.join("\n")))
    }

    fn interface(&self, name: &str) -> InterfaceSummary {
        let prefix = format!("live {name}: ");
        let line = self
            .err
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no summary for {name}:\n{}", self.err.join("\n")));
        let numbers: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        InterfaceSummary {
            received: numbers[0],
            delivered: numbers[1],
            kernel: numbers[2],
            interface: numbers[3],
            queue: numbers[4],
        }
    }

    fn assert_clean_exit(&self) {
        assert!(
            self.status.success(),
            "egresswatch live: {}\n{}",
            self.status,
            self.err.join("\n")
        );
    }
}

/// (host, branch, what was contacted) -> observations, summed over windows.
type Projection = BTreeMap<(String, String, String), u64>;

/// What names the destination of an alert in a projection.
#[derive(Clone, Copy)]
enum Destination {
    /// `DestinationHostname`: the strongest name in the window.
    Hostname,
    /// The proxyware service: with short windows one service's names can be split over
    /// two alerts of the same window (looked up only vs contacted).
    Service,
}

fn project(alerts: &[Value], destination: Destination) -> Projection {
    let mut out = Projection::new();
    for v in alerts {
        let named = match destination {
            Destination::Hostname => &v["DestinationHostname"],
            Destination::Service => &v["evidence"]["service"],
        };
        let key = (
            v["host"].as_str().unwrap().to_string(),
            v["DetectionBranch"].as_str().unwrap().to_string(),
            named.as_str().unwrap_or("").to_string(),
        );
        *out.entry(key).or_insert(0) += v["count"].as_u64().unwrap();
    }
    out
}

fn parse_lines<'a>(lines: impl IntoIterator<Item = &'a String>) -> Vec<Value> {
    lines
        .into_iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn project_json<'a>(lines: impl IntoIterator<Item = &'a String>) -> Projection {
    project(&parse_lines(lines), Destination::Hostname)
}

/// `egresswatch replay captures/office.pcap` with the default config.
fn replayed(destination: Destination) -> Projection {
    let report = replay(
        &Config::default(),
        &[repo("captures/office.pcap")],
        &ReplayOptions::default(),
        &mut |_| Ok(()),
    )
    .unwrap();
    let alerts: Vec<Value> = report
        .alerts
        .iter()
        .map(|a| serde_json::to_value(a).unwrap())
        .collect();
    let out = project(&alerts, destination);
    assert!(!out.is_empty(), "office.pcap raises alerts");
    out
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("egresswatch.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// Stats every second, so the test sees when every frame has been processed.
const FAST_STATS: &str = "[live]\nstats_interval_seconds = 1\n";

#[test]
fn live_capture_raises_the_alerts_replay_raises() {
    live_matches_replay("one", 1, &[]);
}

/// The packet path on two shard workers: same frames, same alerts.
#[test]
fn live_capture_on_worker_threads_raises_the_alerts_replay_raises() {
    live_matches_replay("threads", 9, &["--threads", "2"]);
}

fn live_matches_replay(tag: &str, link: u32, extra: &[&str]) {
    let Some(lab) = Lab::new(tag) else { return };
    let dir = TempDir::new("live", tag);
    let (ours, theirs) = lab.link(link);
    let config = write_config(&dir.0, FAST_STATS);
    let alerts = dir.path("alerts.jsonl");
    let alerts_arg = alerts.to_str().unwrap();
    let mut args = vec![
        "--interface",
        &ours,
        "--buffer-mib",
        BUFFER_MIB,
        "--config",
        &config,
        "--format",
        "json",
        "--alerts",
        alerts_arg,
    ];
    args.extend_from_slice(extra);
    let mut sensor = lab.sensor(&args);
    wait_replay(lab.replay(&theirs, &repo("captures/office.pcap")));
    sensor.wait_processed(OFFICE_FRAMES);
    let stopped = sensor.stop(nix::sys::signal::Signal::SIGTERM);
    stopped.assert_clean_exit();

    assert_eq!(stopped.summary_frames(), OFFICE_FRAMES);
    let interface = stopped.interface(&ours);
    assert_eq!(
        interface,
        InterfaceSummary {
            received: OFFICE_FRAMES,
            delivered: OFFICE_FRAMES,
            kernel: 0,
            interface: 0,
            queue: 0
        }
    );
    let expected = replayed(Destination::Hostname);
    let file = std::fs::read_to_string(&alerts).unwrap();
    let file_lines: Vec<String> = file.lines().map(str::to_string).collect();
    assert_eq!(project_json(&file_lines), expected);
    // stdout (JSON lines) carries the same alerts as the file.
    assert_eq!(stopped.out, file_lines);
}

/// A field of /proc/PID/status.
fn proc_status(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// Every thread of `pid` runs as `uid` with no capability in any set.
fn assert_unprivileged(pid: i32, uid: u32, when: &str) {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid: i32 = task.unwrap().file_name().to_str().unwrap().parse().unwrap();
        let uids: Vec<String> = proc_status(tid, "Uid")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert_eq!(uids, vec![uid.to_string(); 4], "thread {tid} uids {when}");
        for set in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
            assert_eq!(
                proc_status(tid, set),
                "0000000000000000",
                "thread {tid} {set} {when}"
            );
        }
        assert_eq!(proc_status(tid, "NoNewPrivs"), "1", "thread {tid} {when}");
    }
}

/// As systemd's unit runs it: an unprivileged user handed CAP_NET_RAW and CAP_NET_ADMIN as
/// ambient capabilities (setpriv does the same here). They are gone once the interface is
/// open; without them the interface cannot be opened at all.
#[test]
fn ambient_capabilities_are_dropped_after_opening() {
    require("setpriv", "util-linux");
    let Some(lab) = Lab::new("amb") else { return };
    let dir = TempDir::new("live", "amb");
    let (ours, theirs) = lab.link(7);
    let config = write_config(&dir.0, FAST_STATS);
    // The unprivileged user must read the config.
    run(Command::new("chmod").arg("755").arg(&dir.0));
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody exists");
    let reuid = format!("--reuid={}", nobody.uid.as_raw());
    let regid = format!("--regid={}", nobody.gid.as_raw());
    let caps = "+net_raw,+net_admin";
    let args = [
        "--interface",
        &ours,
        "--buffer-mib",
        BUFFER_MIB,
        "--config",
        &config,
        "--format",
        "json",
    ];
    let unprivileged = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.capture_ns,
            "setpriv",
            &reuid,
            &regid,
            "--clear-groups",
        ])
        .arg(env!("CARGO_BIN_EXE_egresswatch"))
        .arg("live")
        .args(args)
        .output()
        .unwrap();
    assert!(!unprivileged.status.success());
    let err = String::from_utf8_lossy(&unprivileged.stderr);
    assert!(
        err.contains(&format!("interface {ours}")) && err.contains("CAP_NET_RAW"),
        "{err}"
    );

    let inh = format!("--inh-caps={caps}");
    let amb = format!("--ambient-caps={caps}");
    let mut sensor = lab.sensor_via(
        &["setpriv", &reuid, &regid, "--clear-groups", &inh, &amb],
        &args,
    );
    assert!(
        sensor.err.iter().any(|l| l.starts_with(&format!(
            "egresswatch: running as nobody (uid {}, gid {}); capabilities dropped: cap_net_admin, cap_net_raw",
            nobody.uid.as_raw(),
            nobody.gid.as_raw()
        ))),
        "{:?}",
        sensor.err
    );
    let pid = sensor.pid();
    assert_unprivileged(pid, nobody.uid.as_raw(), "after the interface opened");
    wait_replay(lab.replay(&theirs, &repo("captures/office.pcap")));
    sensor.wait_processed(OFFICE_FRAMES);
    assert_unprivileged(pid, nobody.uid.as_raw(), "while capturing");
    let stopped = sensor.stop(nix::sys::signal::Signal::SIGTERM);
    stopped.assert_clean_exit();
    assert_eq!(stopped.summary_frames(), OFFICE_FRAMES);
    assert_eq!(project_json(&stopped.out), replayed(Destination::Hostname));
}

#[test]
fn privileges_are_dropped_while_capturing() {
    let Some(lab) = Lab::new("priv") else { return };
    let dir = TempDir::new("live", "priv");
    let (ours, theirs) = lab.link(2);
    let config = write_config(&dir.0, FAST_STATS);
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody exists");
    let mut sensor = lab.sensor(&[
        "--interface",
        &ours,
        "--buffer-mib",
        BUFFER_MIB,
        "--config",
        &config,
        "--format",
        "json",
        "--user",
        "nobody",
    ]);
    let dropped = format!(
        "egresswatch: running as nobody (uid {}, gid {}); capabilities dropped (all: was root)",
        nobody.uid.as_raw(),
        nobody.gid.as_raw()
    );
    assert!(sensor.err.contains(&dropped), "{:?}", sensor.err);
    let pid = sensor.pid();
    let uid = nobody.uid.as_raw();
    let gid = nobody.gid.as_raw().to_string();
    let check = |when: &str| {
        assert_unprivileged(pid, uid, when);
        assert_eq!(
            proc_status(pid, "Gid"),
            [gid.as_str(); 4].join("\t"),
            "{when}"
        );
        // Root's bounding set is emptied too (it needs CAP_SETPCAP, so before the switch).
        assert_eq!(proc_status(pid, "CapBnd"), "0000000000000000", "{when}");
    };
    check("after the interface opened");
    // Still capturing, from every thread, with nothing left to lose.
    wait_replay(lab.replay(&theirs, &repo("captures/office.pcap")));
    sensor.wait_processed(OFFICE_FRAMES);
    check("while capturing");
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count();
    assert!(threads >= 2, "pipeline and capture threads");
    let stopped = sensor.stop(nix::sys::signal::Signal::SIGTERM);
    stopped.assert_clean_exit();
    assert_eq!(stopped.summary_frames(), OFFICE_FRAMES);
    assert_eq!(project_json(&stopped.out), replayed(Destination::Hostname));
}

#[test]
fn two_interfaces_make_one_picture() {
    require("tcpdump", "tcpdump");
    let Some(lab) = Lab::new("two") else { return };
    let dir = TempDir::new("live", "two");
    // Each half holds whole hosts (their DNS too), so every flow is seen on one interface.
    let filter = "host 10.20.1.66 or host 10.20.1.10 or host 10.20.1.11 or host 10.20.1.12";
    let halves = [
        (dir.path("half1.pcap"), filter.to_string()),
        (dir.path("half2.pcap"), format!("not ({filter})")),
    ];
    let mut counts = Vec::new();
    for (path, filter) in &halves {
        run(Command::new("tcpdump")
            .arg("-r")
            .arg(repo("captures/office.pcap"))
            .arg("-w")
            .arg(path)
            .arg(filter));
        let out = Command::new("tcpdump")
            .arg("-r")
            .arg(path)
            .arg("-nn")
            .output()
            .unwrap();
        counts.push(out.stdout.iter().filter(|&&b| b == b'\n').count() as u64);
    }
    assert_eq!(counts.iter().sum::<u64>(), OFFICE_FRAMES);
    assert!(counts.iter().all(|&c| c > 0));
    let (a1, b1) = lab.link(3);
    let (a2, b2) = lab.link(4);
    let config = write_config(&dir.0, FAST_STATS);
    let mut sensor = lab.sensor(&[
        "--interface",
        &a1,
        "--interface",
        &a2,
        "--buffer-mib",
        BUFFER_MIB,
        "--config",
        &config,
        "--format",
        "json",
    ]);
    // Both halves at once.
    let first = lab.replay(&b1, &halves[0].0);
    let second = lab.replay(&b2, &halves[1].0);
    wait_replay(first);
    wait_replay(second);
    sensor.wait_processed(OFFICE_FRAMES);
    let stopped = sensor.stop(nix::sys::signal::Signal::SIGTERM);
    stopped.assert_clean_exit();
    assert_eq!(stopped.summary_frames(), OFFICE_FRAMES);
    for (name, count) in [(&a1, counts[0]), (&a2, counts[1])] {
        let s = stopped.interface(name);
        assert_eq!((s.received, s.delivered), (count, count), "{name}");
        assert_eq!((s.kernel, s.interface, s.queue), (0, 0, 0), "{name}");
    }
    assert_eq!(project_json(&stopped.out), replayed(Destination::Hostname));
}

/// On a link that goes quiet, windows close on the wall clock: the alerts are on stdout while
/// the sensor still runs, before any signal.
#[test]
fn windows_close_on_the_wall_clock_on_a_quiet_link() {
    let Some(lab) = Lab::new("quiet") else { return };
    let dir = TempDir::new("live", "quiet");
    let (ours, theirs) = lab.link(5);
    let text = "[proxyware]\nalert_window_seconds = 2\n[windows]\nwindow_seconds = 2\n\
                [live]\nstats_interval_seconds = 1\n";
    let config_path = write_config(&dir.0, text);
    // The burst lands in one or two 2 s windows; the replay of the file's real timing spreads
    // it over ten minutes. Per service, the observations add up the same.
    let expected = replayed(Destination::Service);
    let mut sensor = lab.sensor(&[
        "--interface",
        &ours,
        "--buffer-mib",
        BUFFER_MIB,
        "--config",
        &config_path,
        "--format",
        "json",
    ]);
    wait_replay(lab.replay(&theirs, &repo("captures/office.pcap")));
    // Nothing more is sent. Alert windows of 2 s close while the link is silent.
    sensor.wait_until("alerts while the link is quiet", |s| {
        let seen = project(&parse_lines(&s.out), Destination::Service);
        seen.keys().eq(expected.keys()) && seen.values().sum::<u64>() >= expected.values().sum()
    });
    assert!(
        sensor.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "still running: the alerts came before any signal"
    );
    let before_signal = sensor.out.len();
    let stopped = sensor.stop(nix::sys::signal::Signal::SIGTERM);
    stopped.assert_clean_exit();
    assert_eq!(
        stopped.out.len(),
        before_signal,
        "nothing was left for the stop"
    );
    assert_eq!(
        project(&parse_lines(&stopped.out), Destination::Service),
        expected
    );
    assert_eq!(stopped.summary_frames(), OFFICE_FRAMES);
}

/// SIGINT flushes; a second SIGINT while the flush is stuck exits at once with 130. The
/// flush is held deterministically: the state file is written beside itself (`.tmp`) and
/// renamed, and that `.tmp` is a FIFO nobody reads.
#[test]
fn second_sigint_exits_at_once() {
    use std::os::unix::process::ExitStatusExt;
    let Some(lab) = Lab::new("int") else { return };
    let dir = TempDir::new("live", "int");
    let (ours, _) = lab.link(6);
    let state = dir.path("state.json");
    run(Command::new("mkfifo").arg(dir.path("state.tmp")));
    let mut sensor = lab.sensor(&[
        "--interface",
        &ours,
        "--format",
        "json",
        "--state",
        state.to_str().unwrap(),
    ]);
    sensor.signal(nix::sys::signal::Signal::SIGINT);
    sensor.wait_stderr("the flush after SIGINT", |err| {
        err.iter()
            .any(|l| l.starts_with("egresswatch: capture stopped; flushing"))
    });
    let stopped = sensor.stop(nix::sys::signal::Signal::SIGINT);
    assert_eq!(
        stopped.status.code(),
        Some(130),
        "{:?} {:?}",
        stopped.status.signal(),
        stopped.err
    );
}

#[test]
fn unknown_interface_is_reported() {
    let out = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .args(["live", "--interface", "egw-missing0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interface egw-missing0"), "{err}");
}

/// SIGHUP applies a new domain allowlist to a running sensor: from then on Honeygain is not
/// reported, everything else is, and the capture never stopped.
#[test]
fn sighup_reloads_the_config_while_capturing() {
    let Some(lab) = Lab::new("hup") else { return };
    let dir = TempDir::new("live", "hup");
    let (ours, theirs) = lab.link(8);
    let config = write_config(&dir.0, FAST_STATS);
    let mut sensor = lab.sensor(&[
        "--interface",
        &ours,
        "--buffer-mib",
        BUFFER_MIB,
        "--config",
        &config,
        "--format",
        "json",
    ]);
    let allow = format!("{FAST_STATS}[proxyware]\nallow_domains = [\"honeygain.com\"]\n");
    write_config(&dir.0, &allow);
    sensor.signal(nix::sys::signal::Signal::SIGHUP);
    sensor.wait_stderr("the reload", |err| {
        err.iter().any(|l| l == "egresswatch: config reloaded")
    });
    wait_replay(lab.replay(&theirs, &repo("captures/office.pcap")));
    sensor.wait_processed(OFFICE_FRAMES);
    let stopped = sensor.stop(nix::sys::signal::Signal::SIGTERM);
    stopped.assert_clean_exit();
    assert_eq!(stopped.summary_frames(), OFFICE_FRAMES);
    let mut expected = replayed(Destination::Hostname);
    let before = expected.len();
    expected.retain(|(_, _, name), _| !name.ends_with("honeygain.com"));
    assert!(
        expected.len() < before,
        "the capture has Honeygain alerts to allow"
    );
    assert_eq!(project_json(&stopped.out), expected);
    assert!(
        stopped.err.iter().any(|l| l == "config reloads: 1"),
        "{}",
        stopped.err.join("\n")
    );
}

/// The metrics endpoint while capturing on two shard workers: scraped from inside the capture
/// namespace (bash's /dev/tcp, so no client is needed), its frame and interface counters reach
/// the capture's frame count and agree with the exit summary.
#[test]
fn metrics_are_served_while_capturing() {
    let Some(lab) = Lab::new("metrics") else {
        return;
    };
    let dir = TempDir::new("live", "metrics");
    let (ours, theirs) = lab.link(11);
    // A new namespace's loopback is down; the endpoint listens there.
    run(Command::new("ip").args(["-n", &lab.capture_ns, "link", "set", "lo", "up"]));
    let config = write_config(&dir.0, FAST_STATS);
    let mut sensor = lab.sensor(&[
        "--interface",
        &ours,
        "--buffer-mib",
        BUFFER_MIB,
        "--config",
        &config,
        "--format",
        "json",
        "--threads",
        "2",
        "--metrics",
        "127.0.0.1:0",
    ]);
    sensor.wait_stderr("the metrics address", |err| {
        err.iter()
            .any(|l| l.starts_with("egresswatch: metrics on http://"))
    });
    let endpoint = sensor
        .err
        .iter()
        .find_map(|l| l.strip_prefix("egresswatch: metrics on http://"))
        .and_then(|u| u.strip_suffix("/metrics"))
        .unwrap()
        .to_string();
    let scrape = |path: &str| {
        let (host, port) = endpoint.rsplit_once(':').unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.capture_ns, "bash", "-c"])
            .arg(format!(
                "exec 3<>/dev/tcp/{host}/{port} && printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3"
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        common::http_status_and_body(&String::from_utf8_lossy(&out.stdout))
    };
    let (status, health) = scrape("/health");
    assert_eq!(status, 200, "{health}");

    wait_replay(lab.replay(&theirs, &repo("captures/office.pcap")));
    let frames = |m: &BTreeMap<String, f64>| m.get("egresswatch_frames_total").copied();
    // The kernel's counters (pcap_stats) are read on their own cadence, so they may trail the
    // frame count by one refresh; both must arrive.
    let received = |m: &BTreeMap<String, f64>| {
        m.get(&format!(
            "egresswatch_interface_received_total{{interface=\"{ours}\"}}"
        ))
        .copied()
    };
    let start = Instant::now();
    let samples = loop {
        let (status, body) = scrape("/metrics");
        assert_eq!(status, 200, "{body}");
        let samples = common::metric_samples(&body);
        if frames(&samples) == Some(OFFICE_FRAMES as f64)
            && received(&samples) == Some(OFFICE_FRAMES as f64)
        {
            break samples;
        }
        assert!(
            start.elapsed() < HANG_GUARD,
            "frames or interface counters never reached {OFFICE_FRAMES}: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let iface = |name: &str| samples[&format!("{name}{{interface=\"{ours}\"}}")];
    assert_eq!(
        iface("egresswatch_interface_received_total"),
        OFFICE_FRAMES as f64
    );
    assert_eq!(
        iface("egresswatch_interface_delivered_total"),
        OFFICE_FRAMES as f64
    );
    assert_eq!(iface("egresswatch_interface_kernel_drops_total"), 0.0);
    assert!(samples["egresswatch_flows_total"] > 0.0, "{samples:?}");
    assert!(
        samples["egresswatch_dns_messages_total"] > 0.0,
        "{samples:?}"
    );
    assert_eq!(scrape("/health").0, 200);

    let stopped = sensor.stop(nix::sys::signal::Signal::SIGTERM);
    stopped.assert_clean_exit();
    assert_eq!(
        stopped.summary_frames() as f64,
        samples["egresswatch_frames_total"]
    );
    let flows_line = stopped
        .err
        .iter()
        .find_map(|l| l.strip_prefix("flows: "))
        .unwrap();
    let flows: f64 = flows_line.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(flows, samples["egresswatch_flows_total"], "{flows_line}");
}
