//! The recorder's bounds: hosts, windows and destinations, and what each cut is counted as.
use super::*;
use crate::config::ClockConfig;
use crate::detect::Delta;
use crate::detect::windows::HostWindow;
use crate::enrich::geo::GeoInfo;
use crate::flow::key::Uid;
use crate::flow::update::{FlowNames, FlowUpdate, UpdateKind};

const NS: u64 = 1_000_000_000;
const W: u64 = 900 * NS;
/// 2024-03-04 (a Monday) 16:30 UTC, the behaviour scenario's start.
const T0: u64 = 1_709_569_800 * NS;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 20, 1, last])
}

fn recorder(config: ReportConfig) -> Recorder {
    let clock = BusinessClock::new(&ClockConfig::default()).unwrap();
    Recorder::new(config, clock, W)
}

fn host(last: u8, bytes_out: u64) -> HostWindow {
    HostWindow {
        host: ip(last),
        bytes_out,
        bytes_in: bytes_out / 2,
        pkts_out: 1,
        pkts_in: 1,
        allowlisted_bytes_out: 0,
        flows_opened: 1,
        distinct_destinations: 1,
        distinct_ports: 1,
        unanswered_tcp: 0,
        long_sessions_open: 0,
        countries: Vec::new(),
        asns: Vec::new(),
        off_hours_bytes_out: 0,
        baseline_bytes_out: (bytes_out > 0).then_some(bytes_out as f64 / 3.0),
        history_windows: 4,
        in_population: true,
        long_sessions: Vec::new(),
    }
}

fn window(i: u64, hosts: Vec<HostWindow>) -> ClosedWindow {
    ClosedWindow {
        start_ns: T0 + i * W,
        end_ns: T0 + (i + 1) * W,
        population_p90_bytes_out: Some(1000 + i),
        population_scope: crate::detect::windows::PopulationScope::Site,
        hosts,
    }
}

fn alert(last: u8) -> Alert {
    Alert {
        id: format!("{last:016x}"),
        time: String::new(),
        host: ip(last),
        destination_ip: None,
        destination_hostname: None,
        destination_port: None,
        detection_branch: "FanOut",
        technique: "T1496.002",
        analytic: "AN0081",
        score: 70,
        severity: "medium",
        bytes_out: 0,
        bytes_in: 0,
        duration_s: 0.0,
        country: None,
        asn: None,
        window_start: String::new(),
        window_end: String::new(),
        count: 1,
        reason: String::new(),
        evidence: serde_json::Value::Null,
        process: None,
    }
}

/// One flow update of `host` to 203.0.113.`dest` moving `bytes_out` (and half as much in).
fn flow(r: &mut Recorder, host: u8, dest: u8, bytes_out: u64, names: Option<&FlowNames>) {
    let update = FlowUpdate {
        uid: Uid(u64::from(host) << 8 | u64::from(dest)),
        kind: UpdateKind::Final,
        proto: 6,
        inside: ip(host),
        inside_port: 50_000,
        outside: IpAddr::from([203, 0, 113, dest]),
        outside_port: 443,
        inbound: false,
        first_ns: T0,
        last_ns: T0 + NS,
        bytes_out,
        bytes_in: bytes_out / 2,
        pkts_out: 1,
        pkts_in: 1,
        answered: true,
        conn_state: "SF",
        services: 0,
        names,
    };
    let geo = GeoInfo::default();
    r.flow(&FlowView {
        update: &update,
        delta: Delta {
            bytes_out,
            bytes_in: bytes_out / 2,
            pkts_out: 1,
            pkts_in: 1,
        },
        delta_since_ns: update.first_ns,
        first_update: true,
        geo: &geo,
        allowlisted: false,
        history: None,
        off_hours: false,
        host_inside: true,
        host_allowlisted: false,
    });
}

fn recorded(data: &ReportData) -> Vec<IpAddr> {
    let mut hosts: Vec<IpAddr> = data.hosts.iter().filter_map(|h| h.host).collect();
    hosts.sort();
    hosts
}

#[test]
fn the_host_table_keeps_the_heaviest_and_counts_the_rest() {
    let mut r = recorder(ReportConfig {
        max_hosts: 2,
        ..ReportConfig::default()
    });
    r.window(&window(0, vec![host(1, 100), host(2, 50), host(3, 10)]));
    // Host 4 outweighs the lightest recorded host (2, 50 B) and takes its place; host 5 does not.
    r.window(&window(1, vec![host(1, 100), host(4, 500), host(5, 20)]));
    // Host 6 arrives by a flow while the table is full: its updates are counted, not kept.
    flow(&mut r, 6, 1, 10, None);
    let data = r.finish();
    assert_eq!(recorded(&data), vec![ip(1), ip(4)]);
    assert_eq!(data.cuts.host_windows_unrecorded, 2, "hosts 3 and 5");
    assert_eq!(data.cuts.hosts_evicted, 1, "host 2");
    assert_eq!(data.cuts.flow_updates_unrecorded, 1);
    // The newcomer's figures start with the window that placed it.
    let h4 = data.host(ip(4)).unwrap();
    assert_eq!(h4.since_ns, T0 + W);
    assert!(h4.late && !data.host(ip(1)).unwrap().late);
    assert_eq!((h4.bytes_out, h4.points.len()), (500, 1));
    assert_eq!(
        data.hosts.first().and_then(|h| h.host),
        Some(ip(4)),
        "most egress first"
    );
}

#[test]
fn alerted_hosts_keep_their_places() {
    let mut r = recorder(ReportConfig {
        max_hosts: 2,
        ..ReportConfig::default()
    });
    r.window(&window(0, vec![host(1, 10), host(2, 1000)]));
    r.alerts(&[alert(1)]);
    // A heavy newcomer takes the unalerted host's place, never the alerted one's.
    r.window(&window(1, vec![host(3, 5000)]));
    assert_eq!(r.cuts.hosts_evicted, 1);
    r.window(&window(2, vec![host(4, 9000)]));
    assert_eq!(r.cuts.hosts_evicted, 2);
    // An alert for an unrecorded host takes a place too; once all places are alerted hosts,
    // the next is counted.
    r.alerts(&[alert(5)]);
    r.alerts(&[alert(6)]);
    let data = r.finish();
    assert_eq!(recorded(&data), vec![ip(1), ip(5)]);
    assert!(data.hosts.iter().all(|h| h.alerted));
    assert_eq!(data.cuts.alerted_hosts_unrecorded, 1);
    assert_eq!(data.cuts.hosts_evicted, 3);
    // Host 1 was never displaced and kept its window.
    assert_eq!(data.host(ip(1)).unwrap().points.len(), 1);
    assert_eq!(data.host(ip(5)).unwrap().since_ns, T0 + 3 * W);
}

#[test]
fn windows_keep_the_latest_within_the_bound() {
    let mut r = recorder(ReportConfig {
        max_windows_per_host: 3,
        ..ReportConfig::default()
    });
    for i in 0..5 {
        r.window(&window(i, vec![host(1, 100 + i)]));
    }
    let data = r.finish();
    let h = data.host(ip(1)).unwrap();
    let starts: Vec<u64> = h.points.iter().map(|p| (p.start_ns - T0) / W).collect();
    assert_eq!(starts, vec![2, 3, 4]);
    assert_eq!(data.windows.len(), 3);
    assert_eq!(data.windows.first().unwrap().start_ns, T0 + 2 * W);
    assert_eq!(data.cuts.host_windows_dropped, 2);
    assert_eq!(data.cuts.run_windows_dropped, 2);
    // Totals still count every window seen.
    assert_eq!(h.bytes_out, (100..105).sum::<u64>());
    assert_eq!(
        h.points.back().unwrap().baseline(),
        Some(f64::from((104.0 / 3.0) as f32))
    );
}

#[test]
fn destinations_keep_the_heaviest_and_fold_the_rest() {
    let mut r = recorder(ReportConfig {
        max_destinations_per_host: 2,
        ..ReportConfig::default()
    });
    let names = FlowNames {
        sni: Some("<script>alert(1)</script>".into()),
        ..FlowNames::default()
    };
    // 2 * DESTINATION_SLACK = 8 destinations fit within a window; the 9th and 10th fold at once.
    for dest in 1..=10u8 {
        flow(&mut r, 1, dest, u64::from(dest) * 100, Some(&names));
    }
    assert_eq!(r.cuts.flows_folded_when_full, 2);
    r.window(&window(0, vec![host(1, 5500)]));
    assert_eq!(r.cuts.destinations_folded, 6);
    // A destination that becomes heavy after the cut gets its place at the next close.
    flow(&mut r, 1, 1, 5000, None);
    let data = r.finish();
    let h = data.host(ip(1)).unwrap();
    let kept: Vec<(IpAddr, u64)> = h
        .destinations
        .iter()
        .map(|d| (d.ip.unwrap(), d.bytes_out))
        .collect();
    assert_eq!(
        kept,
        vec![
            (IpAddr::from([203, 0, 113, 1]), 5000),
            (IpAddr::from([203, 0, 113, 8]), 800),
        ]
    );
    assert_eq!(data.cuts.destinations_folded, 7);
    // Nothing is lost: kept + other = everything sent.
    let total: u64 = (1..=10u64).map(|d| d * 100).sum::<u64>() + 5000;
    let shown: u64 = h.destinations.iter().map(|d| d.bytes_out).sum::<u64>() + h.other.bytes_out;
    assert_eq!(shown, total);
    assert_eq!(
        h.other.flows + h.destinations.iter().map(|d| d.flows).sum::<u64>(),
        11
    );
    assert_eq!(
        h.destinations[1].name.as_deref(),
        Some("<script>alert(1)</script>")
    );
}

#[test]
fn off_hours_follow_business_hours() {
    let clock = BusinessClock::new(&ClockConfig::default()).unwrap();
    // Monday 16:30 to 20:30 UTC: business hours end at 18:00.
    let spans = off_hours_spans(&clock, T0, T0 + 16 * W);
    assert_eq!(spans, vec![(T0 + 6 * W, T0 + 16 * W)]);
    // A long run is sampled coarsely, within the bound.
    let spans = off_hours_spans(&clock, T0, T0 + 365 * 86_400 * NS);
    assert!(spans.len() as u64 <= OFF_HOURS_MAX_SAMPLES / 2 + 1);
    assert!(off_hours_spans(&clock, T0, T0).is_empty());
}
