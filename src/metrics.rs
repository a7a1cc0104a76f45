//! Prometheus metrics and a health check for `live` and `collect`, over plain HTTP/1.1 on a
//! thread of their own: `GET /metrics` (text exposition format 0.0.4) and `GET /health`.
//! The server only reads the telemetry's latest snapshot, so a slow scraper never slows the
//! pipeline; requests are served one at a time with short timeouts (scrapers are few).
use crate::telemetry::{Snapshot, Telemetry};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// `[metrics]`: the Prometheus endpoint of `live` and `collect`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to serve on, e.g. "127.0.0.1:9464"; empty: no endpoint (`--metrics` overrides).
    pub listen: String,
    /// `/health` answers 503 when the pipeline has published no counters for this long.
    pub stall_seconds: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: String::new(),
            stall_seconds: 10,
        }
    }
}

/// A request larger than this is refused.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the accept loop looks at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

pub struct MetricsServer {
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks a free port: see `local_addr`) and serves until dropped.
    pub fn start(
        addr: SocketAddr,
        telemetry: Arc<Telemetry>,
        stall: Duration,
    ) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            io::Error::new(e.kind(), format!("metrics: cannot listen on {addr}: {e}"))
        })?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("egresswatch-metrics".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    match listener.accept() {
                        // A client that misbehaves only loses its own answer.
                        Ok((stream, _)) => {
                            let _ = serve(stream, &telemetry, stall);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(ACCEPT_POLL);
                        }
                        // Out of descriptors and the like: back off, keep serving.
                        Err(_) => std::thread::sleep(ACCEPT_POLL),
                    }
                }
            })?;
        Ok(MetricsServer {
            local,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, telemetry: &Telemetry, stall: Duration) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(buf.get(..n).unwrap_or(&[]));
        if request.len() > MAX_REQUEST_BYTES {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            );
        }
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or(&[]);
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        );
    }
    let (status, content_type, body) = match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(&telemetry.snapshot(), telemetry),
        ),
        "/health" | "/healthz" => {
            let health = health(&telemetry.snapshot(), stall);
            let status = if health.ok {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            (status, "application/json", health.body)
        }
        _ => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /health\n".into(),
        ),
    };
    let body = if method == "HEAD" {
        String::new()
    } else {
        body
    };
    respond(&mut stream, status, content_type, &body)
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

pub struct Health {
    pub ok: bool,
    pub body: String,
}

/// Healthy while the pipeline publishes counters (it does every 200 ms, with or without
/// traffic); not once it has stalled that long, nor once it has finished.
pub fn health(snapshot: &Snapshot, stall: Duration) -> Health {
    let age = snapshot.published.map(|p| p.elapsed());
    let (ok, status) = match age {
        _ if snapshot.finished => (false, "finished"),
        None => (true, "starting"),
        Some(age) if age > stall => (false, "stalled"),
        Some(_) => (true, "ok"),
    };
    let body = serde_json::json!({
        "status": status,
        "seconds_since_update": age.map(|a| a.as_secs_f64()),
        "frames": snapshot.stats.frames,
        "export_records": snapshot.stats.export.records,
        "alerts": snapshot.stats.alerts,
    });
    Health {
        ok,
        body: format!("{body}\n"),
    }
}

/// One metric family: its help and type lines, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = write!(self.out, "{name}");
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn family<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out }
}

/// Label values escape backslash, double quote and newline (exposition format).
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The snapshot in the Prometheus text format.
pub fn render(s: &Snapshot, telemetry: &Telemetry) -> String {
    let mut out = String::with_capacity(4096);
    let st = &s.stats;
    let counters: [(&str, &str, u64); 14] = [
        (
            "egresswatch_frames_total",
            "Frames read from captures.",
            st.frames,
        ),
        (
            "egresswatch_wire_bytes_total",
            "Bytes of those frames on the wire.",
            st.wire_bytes,
        ),
        (
            "egresswatch_flows_total",
            "Flows started by the packet path.",
            st.flows,
        ),
        (
            "egresswatch_flows_evicted_total",
            "Flows evicted at the flow table's bound.",
            st.flows_evicted,
        ),
        (
            "egresswatch_hosts_evicted_total",
            "Inside hosts evicted at the window state's bound.",
            st.hosts_evicted,
        ),
        (
            "egresswatch_dns_messages_total",
            "DNS messages read.",
            st.dns_messages,
        ),
        (
            "egresswatch_tls_client_hellos_total",
            "TLS ClientHellos read.",
            st.tls_client_hellos,
        ),
        (
            "egresswatch_quic_connections_total",
            "QUIC connections read.",
            st.quic_connections,
        ),
        (
            "egresswatch_http_requests_total",
            "HTTP request heads read.",
            st.http_requests,
        ),
        (
            "egresswatch_windows_closed_total",
            "Host windows closed.",
            st.windows_closed,
        ),
        (
            "egresswatch_config_reloads_total",
            "SIGHUP config reloads applied.",
            st.config_reloads,
        ),
        (
            "egresswatch_export_datagrams_total",
            "NetFlow/IPFIX and sFlow datagrams decoded.",
            st.export.netflow_datagrams + st.export.sflow_datagrams,
        ),
        (
            "egresswatch_export_records_total",
            "Flow export records that reached the flow table.",
            st.export.records,
        ),
        (
            "egresswatch_findings_total",
            "Detector findings before scoring.",
            st.findings,
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help).sample(name, &[], value);
    }
    let gauges: [(&str, &str, u64); 5] = [
        (
            "egresswatch_flows_active",
            "Flows held now (packet path and flow-export table).",
            s.active_flows,
        ),
        (
            "egresswatch_hosts",
            "Inside hosts with window state now.",
            s.hosts,
        ),
        (
            "egresswatch_collector_queue_depth",
            "Export datagrams waiting between the sockets and the decoder.",
            s.collector_queue,
        ),
        (
            "egresswatch_export_records_held",
            "Flow export records held for reordering before they reach the flow table.",
            s.records_held,
        ),
        (
            "egresswatch_event_time_seconds",
            "Event time of the pipeline (packet or flow timestamps).",
            s.event_time_ns / 1_000_000_000,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help).sample(name, &[], value);
    }
    let name = "egresswatch_drops_total";
    let mut f = family(&mut out, name, "counter", "Frames dropped, by reason.");
    for (reason, n) in &st.drops {
        f.sample(name, &[("reason", reason)], n);
    }
    let name = "egresswatch_export_errors_total";
    let mut f = family(
        &mut out,
        name,
        "counter",
        "Export datagrams that failed to decode, by reason.",
    );
    for (reason, n) in &st.export.errors {
        f.sample(name, &[("reason", reason)], n);
    }
    let name = "egresswatch_collector_queue_drops_total";
    let mut f = family(
        &mut out,
        name,
        "counter",
        "Export datagrams dropped because the decoder queue was full, by exporter.",
    );
    for (exporter, n) in &st.export.queue_drops {
        f.sample(name, &[("exporter", exporter)], n);
    }
    let name = "egresswatch_alerts_total";
    let mut f = family(
        &mut out,
        name,
        "counter",
        "Alerts raised, by detection branch.",
    );
    for (branch, n) in &s.alerts_by_branch {
        f.sample(name, &[("branch", branch)], n);
    }
    if let Some(fleet) = &st.fleet {
        let c = &fleet.counters;
        let name = "egresswatch_fleet_messages_total";
        let mut f = family(
            &mut out,
            name,
            "counter",
            "Fleet messages (window summaries, alerts): queued for the bus, stored by it, dropped (buffer full or too big), retried.",
        );
        for (state, n) in [
            ("queued", c.queued),
            ("stored", c.acknowledged),
            ("dropped", c.dropped),
            ("retried", c.retried),
        ] {
            f.sample(name, &[("state", state)], n);
        }
        let name = "egresswatch_fleet_windows_scored_total";
        let mut f = family(
            &mut out,
            name,
            "counter",
            "Windows scored, by the population whose p90 they were compared with.",
        );
        f.sample(name, &[("population", "fleet")], c.windows_fleet_scored);
        f.sample(name, &[("population", "site")], c.windows_site_scored);
        let name = "egresswatch_fleet_baselines_received_total";
        family(
            &mut out,
            name,
            "counter",
            "Fleet baselines received from the aggregator.",
        )
        .sample(name, &[], c.baselines_received);
        let name = "egresswatch_fleet_connected";
        family(&mut out, name, "gauge", "1 once the bus has answered.").sample(
            name,
            &[],
            u64::from(c.connected),
        );
    }
    type Field = fn(&crate::stats::InterfaceStats) -> u64;
    let interface_counters: [(&str, &str, Field); 5] = [
        (
            "egresswatch_interface_received_total",
            "Frames the kernel filter passed (pcap ps_recv).",
            |i| i.received,
        ),
        (
            "egresswatch_interface_kernel_drops_total",
            "Frames dropped because the kernel capture buffer was full (pcap ps_drop).",
            |i| i.kernel_dropped,
        ),
        (
            "egresswatch_interface_drops_total",
            "Frames dropped by the interface or its driver (pcap ps_ifdrop).",
            |i| i.if_dropped,
        ),
        (
            "egresswatch_interface_queue_drops_total",
            "Frames dropped because the pipeline was behind.",
            |i| i.queue_dropped,
        ),
        (
            "egresswatch_interface_delivered_total",
            "Frames handed to the pipeline.",
            |i| i.delivered,
        ),
    ];
    for (name, help, field) in interface_counters {
        let mut f = family(&mut out, name, "counter", help);
        for i in &st.live {
            f.sample(name, &[("interface", &i.interface)], field(i));
        }
    }
    let sinks = telemetry.sinks();
    let name = "egresswatch_sink_queue_depth";
    let mut f = family(
        &mut out,
        name,
        "gauge",
        "Alert messages waiting in a syslog target's memory queue.",
    );
    for (url, c) in &sinks {
        f.sample(name, &[("target", url)], c.pending);
    }
    let name = "egresswatch_sink_spool_bytes";
    let mut f = family(
        &mut out,
        name,
        "gauge",
        "Bytes in a syslog target's disk spool.",
    );
    for (url, c) in &sinks {
        f.sample(name, &[("target", url)], c.spool_bytes);
    }
    let name = "egresswatch_sink_sent_total";
    let mut f = family(
        &mut out,
        name,
        "counter",
        "Alert messages sent to a syslog target.",
    );
    for (url, c) in &sinks {
        f.sample(name, &[("target", url)], c.sent);
    }
    let name = "egresswatch_sink_dropped_total";
    let mut f = family(
        &mut out,
        name,
        "counter",
        "Alert messages a syslog target gave up on, by reason.",
    );
    for (url, c) in &sinks {
        for (reason, n) in &c.dropped {
            f.sample(name, &[("target", url), ("reason", reason)], n);
        }
    }
    let name = "egresswatch_seconds_since_update";
    let age = s.published.map_or(-1.0, |p| p.elapsed().as_secs_f64());
    family(
        &mut out,
        name,
        "gauge",
        "Seconds since the pipeline last published counters (-1: not yet).",
    )
    .sample(name, &[], format!("{age:.3}"));
    let name = "egresswatch_uptime_seconds";
    family(&mut out, name, "gauge", "Seconds since the sensor started.").sample(
        name,
        &[],
        format!("{:.3}", telemetry.uptime().as_secs_f64()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample line is `name{labels} value` with a parseable value, and every family has
    /// its HELP and TYPE lines before its samples (what Prometheus' parser insists on).
    fn check_exposition(text: &str) -> Vec<(String, f64)> {
        let mut typed = std::collections::BTreeSet::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(typed.insert(name.to_string()), "family twice: {name}");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(line);
            let name = series.split('{').next().unwrap();
            assert!(typed.contains(name), "sample before its TYPE: {line}");
            samples.push((series.to_string(), value.parse::<f64>().expect(line)));
        }
        samples
    }

    #[test]
    fn exposition_has_every_family_and_escapes_labels() {
        let telemetry = Telemetry::new();
        let mut s = Snapshot::default();
        s.stats.frames = 7;
        s.stats.drops.insert("truncated", 2);
        s.stats.export.queue_drops.insert("10.0.0.1".into(), 3);
        s.stats.live.push(crate::stats::InterfaceStats {
            interface: "eth\"1\\\n".into(),
            received: 9,
            kernel_dropped: 1,
            ..Default::default()
        });
        s.alerts_by_branch.insert("SustainedEgress", 4);
        s.active_flows = 5;
        let text = render(&s, &telemetry);
        let samples: std::collections::BTreeMap<String, f64> =
            check_exposition(&text).into_iter().collect();
        assert_eq!(samples["egresswatch_frames_total"], 7.0);
        assert_eq!(
            samples["egresswatch_drops_total{reason=\"truncated\"}"],
            2.0
        );
        assert_eq!(
            samples["egresswatch_collector_queue_drops_total{exporter=\"10.0.0.1\"}"],
            3.0
        );
        assert_eq!(
            samples["egresswatch_interface_kernel_drops_total{interface=\"eth\\\"1\\\\\\n\"}"],
            1.0
        );
        assert_eq!(
            samples["egresswatch_alerts_total{branch=\"SustainedEgress\"}"],
            4.0
        );
        assert_eq!(samples["egresswatch_flows_active"], 5.0);
        assert_eq!(samples["egresswatch_seconds_since_update"], -1.0);
    }

    #[test]
    fn health_follows_the_publishing() {
        let stall = Duration::from_secs(10);
        let mut s = Snapshot::default();
        assert!(health(&s, stall).ok, "starting is healthy");
        s.published = Some(std::time::Instant::now());
        let h = health(&s, stall);
        assert!(h.ok);
        assert!(h.body.contains("\"status\":\"ok\""), "{}", h.body);
        s.published = std::time::Instant::now().checked_sub(Duration::from_secs(11));
        if s.published.is_some() {
            let h = health(&s, stall);
            assert!(!h.ok);
            assert!(h.body.contains("stalled"), "{}", h.body);
        }
        s.finished = true;
        assert!(!health(&s, stall).ok);
    }

    /// The server answers each path, refuses other methods and oversized requests, and keeps
    /// serving after a client that sends garbage and hangs up.
    #[test]
    fn server_answers_on_loopback() {
        let telemetry = Arc::new(Telemetry::new());
        let mut s = Snapshot::default();
        s.stats.frames = 42;
        s.published = Some(std::time::Instant::now());
        telemetry.publish(s);
        let server = MetricsServer::start(
            "127.0.0.1:0".parse().unwrap(),
            telemetry.clone(),
            Duration::from_secs(10),
        )
        .unwrap();
        let addr = server.local_addr();
        let get = |request: &[u8]| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(request).unwrap();
            let mut answer = String::new();
            c.read_to_string(&mut answer).unwrap();
            answer
        };
        let metrics = get(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        let body = metrics.split("\r\n\r\n").nth(1).unwrap();
        assert!(body.lines().any(|l| l == "egresswatch_frames_total 42"));
        check_exposition(body);
        let health = get(b"GET /health HTTP/1.0\r\n\r\n");
        assert!(health.starts_with("HTTP/1.1 200 OK"), "{health}");
        assert!(get(b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(get(b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        // Exactly what the server reads before it refuses, so it closes with nothing unread.
        let huge = vec![b'a'; MAX_REQUEST_BYTES + 1024];
        assert!(get(&huge).starts_with("HTTP/1.1 431"));
        drop(TcpStream::connect(addr).unwrap());
        assert!(get(b"GET /metrics HTTP/1.1\r\n\r\n").contains("egresswatch_frames_total 42"));
        telemetry.finish(&crate::stats::Stats::default());
        assert!(get(b"GET /health HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 503"));
    }
}
