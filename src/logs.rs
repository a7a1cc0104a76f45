//! Analyst logs as JSON lines with Zeek's file and field names (conn, dns, ssl, http, quic), so tools
//! that read Zeek JSON logs read ours. Fields we cannot fill are left out, never invented.
use crate::config::Config;
use crate::decode::dns::{self, DnsMessage, DnsRdata};
use crate::decode::http::RequestHead;
use crate::decode::packet::ip_proto;
use crate::decode::quic::{self, QuicInfo};
use crate::decode::tls::{self, ClientHelloInfo, ServerInfo};
use crate::enrich::naming::EncryptedDns;
use crate::export::table::ExportFlow;
use crate::flow::key::Uid;
use crate::flow::table::Flow;
use crate::flow::update::service;
use rustc_hash::FxHashMap;
use serde_json::{Map, Value, json};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;

/// DNS queries of one flow waiting for their response; beyond this the oldest is logged
/// unanswered. With flows bounded by `max_flows`, the whole map is bounded too.
const MAX_PENDING_DNS_PER_FLOW: usize = 32;

/// An ssl.log line waits for the server's side until the session is established or the flow
/// ends, as Zeek logs it. A flow carries at most one TLS session (inspection ends with it), so
/// one pending line per flow and the map is bounded by the flow table.
struct PendingSsl {
    ts_ns: u64,
    id: Map<String, Value>,
    server_name: Option<String>,
    /// The hello offered (or greased) encrypted_client_hello.
    ech: bool,
    server: ServerInfo,
}

pub struct ZeekLogs {
    conn: BufWriter<File>,
    dns: BufWriter<File>,
    ssl: BufWriter<File>,
    http: BufWriter<File>,
    quic: BufWriter<File>,
    pending_dns: FxHashMap<Uid, Vec<(u16, PendingQuery)>>,
    pending_ssl: FxHashMap<Uid, PendingSsl>,
    http_depth: FxHashMap<Uid, u32>,
    home: Config,
}

struct PendingQuery {
    ts_ns: u64,
    line: Map<String, Value>,
}

fn ts(ts_ns: u64) -> Value {
    // Zeek writes epoch seconds with microsecond precision.
    json!(((ts_ns / 1_000) as f64) / 1e6)
}

/// SVCB/HTTPS data in the zone-file presentation format of RFC 9460 (the parameters read):
/// `1 . alpn=h3,h2 ipv4hint=104.16.132.229 ipv6hint=2606:4700::6810:84e5`.
fn service_text(binding: &dns::ServiceBinding) -> String {
    let target = if binding.target == dns::ROOT_NAME {
        "."
    } else {
        &binding.target
    };
    let mut text = format!("{} {target}", binding.priority);
    let join = |items: &mut dyn Iterator<Item = String>| items.collect::<Vec<_>>().join(",");
    if !binding.alpn.is_empty() {
        text += &format!(" alpn={}", join(&mut binding.alpn.iter().cloned()));
    }
    for (key, v4) in [("ipv4hint", true), ("ipv6hint", false)] {
        let mut hints = binding
            .hints
            .iter()
            .filter(|a| a.is_ipv4() == v4)
            .map(|a| a.to_string())
            .peekable();
        if hints.peek().is_some() {
            text += &format!(" {key}={}", join(&mut hints));
        }
    }
    text
}

fn proto_name(proto: u8) -> &'static str {
    match proto {
        ip_proto::TCP => "tcp",
        ip_proto::UDP => "udp",
        ip_proto::ICMP | ip_proto::ICMPV6 => "icmp",
        _ => "unknown_transport",
    }
}

impl ZeekLogs {
    pub fn create(dir: &Path, config: &Config) -> io::Result<ZeekLogs> {
        std::fs::create_dir_all(dir)?;
        let open = |name: &str| -> io::Result<BufWriter<File>> {
            let path = dir.join(name);
            File::create(&path)
                .map(BufWriter::new)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
        };
        Ok(ZeekLogs {
            conn: open("conn.log")?,
            dns: open("dns.log")?,
            ssl: open("ssl.log")?,
            http: open("http.log")?,
            quic: open("quic.log")?,
            pending_dns: FxHashMap::default(),
            pending_ssl: FxHashMap::default(),
            http_depth: FxHashMap::default(),
            home: config.clone(),
        })
    }

    fn id_fields(flow: &Flow) -> Map<String, Value> {
        Self::id_of(flow.uid, flow.orig(), flow.resp())
    }

    fn id_of(uid: Uid, orig: (IpAddr, u16), resp: (IpAddr, u16)) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("uid".into(), json!(uid.to_string()));
        m.insert("id.orig_h".into(), json!(orig.0.to_string()));
        m.insert("id.orig_p".into(), json!(orig.1));
        m.insert("id.resp_h".into(), json!(resp.0.to_string()));
        m.insert("id.resp_p".into(), json!(resp.1));
        m
    }

    /// A flow stitched from flow export records. Export gives IP bytes and packets, not
    /// payload bytes, history or services, so those fields are left out; conn_state is
    /// logged only when TCP flags were exported (or the flow is not TCP). `exporter` and
    /// `flow_source` are ours: which router and protocol the flow came from.
    pub fn conn_export(&mut self, flow: &ExportFlow) -> io::Result<()> {
        let mut m = Map::new();
        m.insert("ts".into(), ts(flow.first_ns));
        m.append(&mut Self::id_of(flow.uid, flow.orig, flow.resp));
        m.insert("proto".into(), json!(proto_name(flow.proto)));
        let duration_us = flow.last_ns.saturating_sub(flow.first_ns) / 1_000;
        if duration_us > 0 {
            m.insert("duration".into(), json!(duration_us as f64 / 1e6));
        }
        if flow.proto != ip_proto::TCP || flow.orig_flags.is_some() || flow.resp_flags.is_some() {
            m.insert("conn_state".into(), json!(flow.conn_state()));
        }
        m.insert("local_orig".into(), json!(self.home.is_inside(flow.orig.0)));
        m.insert("local_resp".into(), json!(self.home.is_inside(flow.resp.0)));
        m.insert("orig_pkts".into(), json!(flow.orig_pkts));
        m.insert("orig_ip_bytes".into(), json!(flow.orig_bytes));
        m.insert("resp_pkts".into(), json!(flow.resp_pkts));
        m.insert("resp_ip_bytes".into(), json!(flow.resp_bytes));
        m.insert("exporter".into(), json!(flow.exporter.to_string()));
        m.insert("flow_source".into(), json!(flow.source.as_str()));
        if flow.sampling > 1 {
            m.insert("sampling".into(), json!(flow.sampling));
        }
        Self::write(&mut self.conn, &m)
    }

    fn write(out: &mut BufWriter<File>, line: &Map<String, Value>) -> io::Result<()> {
        serde_json::to_writer(&mut *out, line)?;
        out.write_all(b"\n")
    }

    /// `encrypted_dns`: the flow carried DNS over HTTPS, TLS or QUIC (an added field).
    pub fn conn(&mut self, flow: &Flow, encrypted_dns: Option<EncryptedDns>) -> io::Result<()> {
        // Unanswered DNS queries of this flow are logged as Zeek does at connection end.
        if let Some(unanswered) = self.pending_dns.remove(&flow.uid) {
            for (_, p) in unanswered {
                Self::write(&mut self.dns, &p.line)?;
            }
        }
        self.http_depth.remove(&flow.uid);
        if let Some(p) = self.pending_ssl.remove(&flow.uid) {
            Self::write_ssl(&mut self.ssl, p)?;
        }

        let mut m = Map::new();
        m.insert("ts".into(), ts(flow.first_ns));
        m.append(&mut Self::id_fields(flow));
        m.insert("proto".into(), json!(proto_name(flow.proto)));
        let services: Vec<&str> = service::NAMES
            .iter()
            .filter(|(bit, _)| flow.services & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        if !services.is_empty() {
            m.insert("service".into(), json!(services.join(",")));
        }
        // Zeek logs duration and payload bytes only for connections that lasted (set_conn).
        let duration_us = (flow.last_ns - flow.first_ns) / 1_000;
        if duration_us > 0 {
            m.insert("duration".into(), json!(duration_us as f64 / 1e6));
            let (orig_bytes, resp_bytes) = flow.payload_bytes();
            m.insert("orig_bytes".into(), json!(orig_bytes));
            m.insert("resp_bytes".into(), json!(resp_bytes));
        }
        let (state, history) = if flow.proto == ip_proto::TCP {
            (flow.tcp().conn_state(), flow.tcp().history())
        } else {
            (
                crate::flow::tcp_state::udp_conn_state(flow.orig_pkts, flow.resp_pkts),
                crate::flow::tcp_state::udp_history(flow.orig_pkts, flow.resp_pkts).to_string(),
            )
        };
        m.insert("conn_state".into(), json!(state));
        m.insert(
            "local_orig".into(),
            json!(self.home.is_inside(flow.orig().0)),
        );
        m.insert(
            "local_resp".into(),
            json!(self.home.is_inside(flow.resp().0)),
        );
        if !history.is_empty() {
            m.insert("history".into(), json!(history));
        }
        m.insert("orig_pkts".into(), json!(flow.orig_pkts));
        m.insert("orig_ip_bytes".into(), json!(flow.orig_ip_bytes));
        m.insert("resp_pkts".into(), json!(flow.resp_pkts));
        m.insert("resp_ip_bytes".into(), json!(flow.resp_ip_bytes));
        if let Some(kind) = encrypted_dns {
            m.insert("encrypted_dns".into(), json!(kind.as_str()));
        }
        Self::write(&mut self.conn, &m)
    }

    pub fn dns(&mut self, flow: &Flow, ts_ns: u64, msg: &DnsMessage) -> io::Result<()> {
        if !msg.is_response {
            let mut m = Map::new();
            m.insert("ts".into(), ts(ts_ns));
            m.append(&mut Self::id_fields(flow));
            m.insert("proto".into(), json!(proto_name(flow.proto)));
            m.insert("trans_id".into(), json!(msg.id));
            Self::question(&mut m, msg);
            let pending = self.pending_dns.entry(flow.uid).or_default();
            if pending.len() >= MAX_PENDING_DNS_PER_FLOW {
                let (_, oldest) = pending.remove(0);
                Self::write(&mut self.dns, &oldest.line)?;
            }
            pending.push((msg.id, PendingQuery { ts_ns, line: m }));
            return Ok(());
        }
        let matched = self.pending_dns.get_mut(&flow.uid).and_then(|pending| {
            let at = pending.iter().position(|(id, _)| *id == msg.id)?;
            Some(pending.remove(at).1)
        });
        let mut m = match matched {
            Some(p) => {
                let mut line = p.line;
                line.insert(
                    "rtt".into(),
                    json!((ts_ns.saturating_sub(p.ts_ns) / 1_000) as f64 / 1e6),
                );
                line
            }
            None => {
                let mut line = Map::new();
                line.insert("ts".into(), ts(ts_ns));
                line.append(&mut Self::id_fields(flow));
                line.insert("proto".into(), json!(proto_name(flow.proto)));
                line.insert("trans_id".into(), json!(msg.id));
                Self::question(&mut line, msg);
                line
            }
        };
        m.insert("rcode".into(), json!(msg.rcode));
        m.insert("rcode_name".into(), json!(dns::rcode_name(msg.rcode)));
        m.insert("TC".into(), json!(msg.truncated));
        let mut answers = Vec::new();
        let mut ttls = Vec::new();
        for a in &msg.answers {
            let text = match &a.data {
                DnsRdata::A(ip) => ip.to_string(),
                DnsRdata::Aaaa(ip) => ip.to_string(),
                DnsRdata::Cname(name) => name.clone(),
                DnsRdata::Service(binding) => service_text(binding),
                DnsRdata::Other(_) => continue,
            };
            answers.push(text);
            ttls.push(f64::from(a.ttl));
        }
        if !answers.is_empty() {
            m.insert("answers".into(), json!(answers));
            m.insert("TTLs".into(), json!(ttls));
        }
        Self::write(&mut self.dns, &m)
    }

    fn question(m: &mut Map<String, Value>, msg: &DnsMessage) {
        if let Some(q) = msg.questions.first() {
            m.insert("query".into(), json!(q.name));
            m.insert("qclass".into(), json!(q.qclass));
            m.insert("qtype".into(), json!(q.qtype));
            m.insert("qtype_name".into(), json!(dns::qtype_name(q.qtype)));
        }
    }

    /// Starts the flow's ssl.log line at its ClientHello; it is written once the server side
    /// is known (see [`ZeekLogs::ssl_server`]) or the flow ends.
    pub fn ssl(&mut self, flow: &Flow, ts_ns: u64, hello: &ClientHelloInfo) -> io::Result<()> {
        let line = PendingSsl {
            ts_ns,
            id: Self::id_fields(flow),
            server_name: hello.sni.clone(),
            ech: hello.ech,
            server: ServerInfo::default(),
        };
        match self.pending_ssl.insert(flow.uid, line) {
            Some(earlier) => Self::write_ssl(&mut self.ssl, earlier),
            None => Ok(()),
        }
    }

    /// Adds what the server showed; an established session is logged at once, as Zeek does.
    pub fn ssl_server(&mut self, flow: &Flow, info: &ServerInfo) -> io::Result<()> {
        let Some(pending) = self.pending_ssl.get_mut(&flow.uid) else {
            return Ok(());
        };
        pending.server = info.clone();
        if !info.established {
            return Ok(());
        }
        match self.pending_ssl.remove(&flow.uid) {
            Some(p) => Self::write_ssl(&mut self.ssl, p),
            None => Ok(()),
        }
    }

    fn write_ssl(out: &mut BufWriter<File>, p: PendingSsl) -> io::Result<()> {
        let mut m = p.id;
        m.insert("ts".into(), ts(p.ts_ns));
        if let Some(hello) = &p.server.hello {
            m.insert("version".into(), json!(tls::version_name(hello.version)));
            if let Some(name) = tls::cipher_name(hello.cipher_suite) {
                m.insert("cipher".into(), json!(name));
            }
            if let Some(alpn) = &hello.alpn {
                m.insert("next_protocol".into(), json!(alpn));
            }
        }
        if let Some(sni) = p.server_name {
            m.insert("server_name".into(), json!(sni));
        }
        m.insert("established".into(), json!(p.server.established));
        // Added field: the hello offered ECH (or greased it), so server_name may be the
        // outer, public name and the real one hidden.
        if p.ech {
            m.insert("ech".into(), json!(true));
        }
        Self::write(out, &m)
    }

    pub fn http(&mut self, flow: &Flow, ts_ns: u64, request: &RequestHead) -> io::Result<()> {
        let depth = self.http_depth.entry(flow.uid).or_insert(0);
        *depth += 1;
        let mut m = Map::new();
        m.insert("ts".into(), ts(ts_ns));
        m.append(&mut Self::id_fields(flow));
        m.insert("trans_depth".into(), json!(*depth));
        m.insert("method".into(), json!(request.method));
        if let Some(host) = &request.host {
            m.insert("host".into(), json!(host));
        }
        m.insert("uri".into(), json!(request.uri));
        Self::write(&mut self.http, &m)
    }

    /// One line per QUIC connection, when its client hello was read or reading ended.
    /// `ts` is the flow's first packet (its first Initial); `history` holds what the client's
    /// first packets showed (see [`QuicInfo::history`]). gQUIC connections are logged too,
    /// with their version tag ("Q046") and the CHLO's SNI as `server_name`.
    pub fn quic(&mut self, flow: &Flow, info: &QuicInfo) -> io::Result<()> {
        let mut m = Map::new();
        m.insert("ts".into(), ts(flow.first_ns));
        m.append(&mut Self::id_fields(flow));
        m.insert("version".into(), json!(quic::version_name(info.version)));
        if !info.client_initial_dcid.is_empty() {
            let dcid: String = info
                .client_initial_dcid
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            m.insert("client_initial_dcid".into(), json!(dcid));
        }
        if let Some(sni) = info.sni() {
            m.insert("server_name".into(), json!(sni));
        }
        if let Some(alpn) = info.client_protocol() {
            m.insert("client_protocol".into(), json!(alpn));
        }
        m.insert("history".into(), json!(info.history));
        // Added field, as in ssl.log: the hello offered ECH.
        if info.ech() {
            m.insert("ech".into(), json!(true));
        }
        Self::write(&mut self.quic, &m)
    }

    pub fn finish(&mut self) -> io::Result<()> {
        let mut rest: Vec<PendingQuery> = self
            .pending_dns
            .drain()
            .flat_map(|(_, p)| p)
            .map(|(_, p)| p)
            .collect();
        rest.sort_by_key(|a| a.ts_ns);
        for p in rest {
            Self::write(&mut self.dns, &p.line)?;
        }
        let mut ssl: Vec<PendingSsl> = self.pending_ssl.drain().map(|(_, p)| p).collect();
        ssl.sort_by_key(|p| p.ts_ns);
        for p in ssl {
            Self::write_ssl(&mut self.ssl, p)?;
        }
        self.conn.flush()?;
        self.dns.flush()?;
        self.ssl.flush()?;
        self.quic.flush()?;
        self.http.flush()
    }
}
