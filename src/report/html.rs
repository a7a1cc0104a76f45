//! The report as one self-contained HTML file: inline CSS, a little inline JS (table sorting),
//! inline SVG charts; a Content-Security-Policy forbids loading anything else, so the file
//! opens offline and a stray external reference shows up as a console error.
use super::svg::{self, Timeline};
use super::{HostRecord, ReportData};
use crate::alert::Alert;
use crate::config::ClockConfig;
use crate::detect::human_bytes;
use crate::stats::Stats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

/// What the report is made of.
pub struct ReportInput<'a> {
    /// The files replayed.
    pub inputs: &'a [String],
    /// The end-of-run summary as printed on stderr.
    pub summary: &'a str,
    pub stats: &'a Stats,
    pub alerts: &'a [Alert],
    pub data: &'a ReportData,
    pub business_hours: &'a ClockConfig,
}

/// Text for HTML content and attribute values (quoted with either quote).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The id of a host's section (addresses only hold hex digits, dots and colons).
fn host_id(host: IpAddr) -> String {
    format!("host-{}", host.to_string().replace([':', '.'], "-"))
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:16px 20px 40px;background:#fff}
h1{font-size:22px;margin:4px 0}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
h3{font-size:16px;margin:22px 0 4px}.muted{color:#5b6475}
.cards{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0}
.card{border:1px solid #dde1e7;border-radius:6px;padding:6px 10px;min-width:110px}
.card b{display:block;font-size:18px}.card span{color:#5b6475;font-size:12px}
table{border-collapse:collapse;width:100%;margin:6px 0;font-size:12.5px}
td.reason{min-width:340px}td.dest{min-width:190px;overflow-wrap:break-word}td.dest span{display:block;color:#5b6475}td.time{white-space:nowrap}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eceef2;vertical-align:top}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th{background:#f0f2f5;position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \25B2"}th[aria-sort=descending]::after{content:" \25BC"}
.sev-high{color:#b3261e;font-weight:600}.sev-medium{color:#a35b00;font-weight:600}
details summary{cursor:pointer}
pre{background:#f6f7f9;border:1px solid #eceef2;padding:6px;white-space:pre-wrap;word-break:break-all;max-height:420px;overflow:auto;font-size:12px}
svg.timeline{width:100%;height:auto;display:block}
svg .off{fill:#e9ecf1}svg .alert{fill:#e0392b;fill-opacity:.16}
svg .grid{stroke:#e3e6eb}svg .axis,svg .tick{stroke:#8a93a3}
svg text{font-size:11px;fill:#5b6475}svg .empty{font-size:14px}
svg .out{fill:#4a78b5}svg .in{fill:none;stroke:#e08a1e;stroke-width:1.6}
svg .baseline{fill:none;stroke:#2a9d4b;stroke-width:1.6;stroke-dasharray:6 3}
svg .p90{fill:none;stroke:#7d3cb5;stroke-width:1.6;stroke-dasharray:2 3}
.legend{font-size:12px;color:#5b6475;margin:2px 0 6px}.legend i{display:inline-block;width:14px;height:10px;margin:0 4px 0 12px;vertical-align:middle}
.note{font-size:12px;color:#8a4b00}
"#;

/// Sorts a table by the clicked column: `data-sort` of the cells when present (numbers), else
/// their text. Alert tables sort their `tbody`s (a row and its details), others their rows.
const SCRIPT: &str = r#"
(function(){
  function key(cell){var v=cell.getAttribute('data-sort');return v===null?cell.textContent.trim():v;}
  document.querySelectorAll('table.sortable').forEach(function(table){
    var heads=table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads,function(th,col){
      th.addEventListener('click',function(){
        var numeric=th.classList.contains('num');
        var asc=th.getAttribute('aria-sort')!=='ascending';
        Array.prototype.forEach.call(heads,function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',asc?'ascending':'descending');
        var many=table.tBodies.length>1;
        var parent=many?table:table.tBodies[0];
        var units=Array.prototype.slice.call(many?table.tBodies:table.tBodies[0].rows);
        units.sort(function(a,b){
          var ra=many?a.rows[0]:a, rb=many?b.rows[0]:b;
          var x=key(ra.cells[col]), y=key(rb.cells[col]);
          var c=numeric?(parseFloat(x)||0)-(parseFloat(y)||0):x.localeCompare(y);
          return asc?c:-c;
        });
        units.forEach(function(u){parent.appendChild(u);});
      });
    });
  });
  document.body.setAttribute('data-ready','1');
})();
"#;

/// "2024-03-04 16:30:00" from an RFC 3339 time.
fn short_time(text: &str) -> String {
    text.get(..19).unwrap_or(text).replace('T', " ")
}

fn time_ns(ns: u64) -> String {
    short_time(&crate::alert::rfc3339(ns))
}

fn card(out: &mut String, value: &str, label: &str) {
    let _ = write!(
        out,
        r#"<div class="card"><b>{}</b><span>{}</span></div>"#,
        escape(value),
        escape(label)
    );
}

fn num_cell(out: &mut String, value: u64, shown: &str) {
    let _ = write!(
        out,
        r#"<td class="num" data-sort="{value}">{}</td>"#,
        escape(shown)
    );
}

fn bytes_cell(out: &mut String, bytes: u64) {
    num_cell(out, bytes, &human_bytes(bytes));
}

fn opt(text: Option<impl ToString>) -> String {
    text.map_or_else(String::new, |t| t.to_string())
}

fn summary_section(out: &mut String, input: &ReportInput<'_>) {
    let s = input.stats;
    let d = input.data;
    out.push_str("<h2 id=\"summary\">Run summary</h2>");
    if let (Some(first), Some(last)) = (d.windows.first(), d.windows.last()) {
        let _ = write!(
            out,
            "<p class=\"muted\">Event time {} to {} UTC, {} windows of {} s recorded. Business hours: {} {} ({}); off-hours are shaded grey in the charts.</p>",
            time_ns(first.start_ns),
            time_ns(last.end_ns),
            d.windows.len(),
            d.window_seconds,
            escape(&input.business_hours.hours),
            escape(&input.business_hours.timezone),
            escape(&input.business_hours.workdays.join(", ")),
        );
    }
    out.push_str("<div class=\"cards\">");
    let drops: u64 = s.drops.values().sum();
    for (value, label) in [
        (s.frames.to_string(), "frames"),
        (human_bytes(s.wire_bytes), "on the wire"),
        (s.flows.to_string(), "flows"),
        (s.windows_closed.to_string(), "windows"),
        (s.findings.to_string(), "findings"),
        (s.alerts.to_string(), "alerts"),
        (s.hosts_evicted.to_string(), "hosts evicted"),
        (drops.to_string(), "drops"),
    ] {
        card(out, &value, label);
    }
    out.push_str("</div>");
    let _ = write!(
        out,
        "<details open><summary>End-of-run summary</summary><pre id=\"run-summary\">{}</pre></details>",
        escape(input.summary)
    );
}

/// Alerts sorted by time as emitted; each is a `tbody` (row with expandable details).
fn alerts_section(out: &mut String, alerts: &[Alert]) {
    let _ = write!(
        out,
        "<h2 id=\"alerts\">Alerts ({})</h2><p class=\"muted\">Click a column to sort; open a reason for its evidence.</p>",
        alerts.len()
    );
    if alerts.is_empty() {
        out.push_str("<p>No alerts.</p>");
        return;
    }
    out.push_str(
        "<table id=\"alert-table\" class=\"sortable\"><thead><tr><th>time (UTC)</th><th>host</th>\
         <th>branch</th><th class=\"num\">score</th><th>severity</th><th>destination</th>\
         <th>country</th><th class=\"num\">ASN</th><th class=\"num\">out</th><th class=\"num\">in</th>\
         <th class=\"num\">count</th><th>reason</th></tr></thead>",
    );
    for a in alerts {
        // The name, then the address and port under it.
        let address = a.destination_ip.map(|ip| match a.destination_port {
            Some(port) if ip.is_ipv6() => format!("[{ip}]:{port}"),
            Some(port) => format!("{ip}:{port}"),
            None => ip.to_string(),
        });
        let destination = format!(
            "{}{}",
            escape(&opt(a.destination_hostname.as_deref())),
            address.map_or_else(String::new, |a| format!("<span>{a}</span>"))
        );
        let evidence = serde_json::to_string_pretty(&a.evidence).unwrap_or_default();
        let _ = write!(
            out,
            "<tbody class=\"alert\"><tr><td class=\"time\">{}</td><td><a href=\"#{}\">{}</a></td><td>{}</td>",
            escape(&short_time(&a.time)),
            host_id(a.host),
            a.host,
            escape(a.detection_branch),
        );
        num_cell(out, u64::from(a.score), &a.score.to_string());
        let _ = write!(
            out,
            "<td class=\"sev-{0}\">{0}</td><td class=\"dest\">{1}</td><td>{2}</td>",
            escape(a.severity),
            destination,
            escape(&opt(a.country.as_deref())),
        );
        num_cell(out, u64::from(a.asn.unwrap_or(0)), &opt(a.asn));
        bytes_cell(out, a.bytes_out);
        bytes_cell(out, a.bytes_in);
        num_cell(out, a.count, &a.count.to_string());
        let _ = write!(
            out,
            "<td class=\"reason\"><details><summary>{}</summary><p>alert {} (<code>egresswatch explain {1}</code>), window {} to {} UTC</p><pre>{}</pre></details></td></tr></tbody>",
            escape(&a.reason),
            escape(&a.id),
            escape(&short_time(&a.window_start)),
            escape(&short_time(&a.window_end)),
            escape(&evidence),
        );
    }
    out.push_str("</table>");
}

fn destinations_table(out: &mut String, r: &HostRecord) {
    if r.destinations.is_empty() && r.other.flows == 0 && r.other.bytes_out == 0 {
        out.push_str("<p class=\"muted\">No destinations recorded.</p>");
        return;
    }
    out.push_str(
        "<table class=\"sortable destinations\"><thead><tr><th>name</th><th>address</th>\
         <th class=\"num\">port</th><th>country</th><th class=\"num\">ASN</th><th>AS organisation</th>\
         <th class=\"num\">out</th><th class=\"num\">in</th><th class=\"num\">flows</th></tr></thead><tbody>",
    );
    for d in &r.destinations {
        let name = opt(d.name.as_deref());
        let name = if d.allowlisted {
            format!("{name} (allowlisted)")
        } else {
            name
        };
        let _ = write!(out, "<tr><td>{}</td><td>{}</td>", escape(&name), opt(d.ip));
        num_cell(out, u64::from(d.port), &d.port.to_string());
        let _ = write!(out, "<td>{}</td>", escape(&opt(d.country)));
        num_cell(out, u64::from(d.asn.unwrap_or(0)), &opt(d.asn));
        let _ = write!(out, "<td>{}</td>", escape(&opt(d.as_org.as_deref())));
        bytes_cell(out, d.bytes_out);
        bytes_cell(out, d.bytes_in);
        num_cell(out, d.flows, &d.flows.to_string());
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    if r.other.flows > 0 || r.other.bytes_out > 0 || r.other.bytes_in > 0 {
        let _ = write!(
            out,
            "<p class=\"muted\">Other destinations (beyond the {} kept): {} out, {} in, {} flows.</p>",
            r.destinations.len(),
            human_bytes(r.other.bytes_out),
            human_bytes(r.other.bytes_in),
            r.other.flows
        );
    }
}

const LEGEND: &str = "<div class=\"legend\"><i style=\"background:#4a78b5\"></i>bytes out\
<i style=\"border-top:2px solid #e08a1e\"></i>bytes in<i style=\"border-top:2px dashed #2a9d4b\"></i>host baseline\
<i style=\"border-top:2px dotted #7d3cb5\"></i>population p90<i style=\"background:#e0392b;opacity:.3\"></i>alert window\
<i style=\"background:#e9ecf1\"></i>off-hours</div>";

/// One section per alerted host, highest score first.
fn hosts_section(out: &mut String, input: &ReportInput<'_>) {
    let d = input.data;
    let mut by_host: BTreeMap<IpAddr, Vec<&Alert>> = BTreeMap::new();
    for a in input.alerts {
        by_host.entry(a.host).or_default().push(a);
    }
    let mut hosts: Vec<(IpAddr, Vec<&Alert>)> = by_host.into_iter().collect();
    hosts.sort_by_key(|(ip, alerts)| {
        (
            std::cmp::Reverse(alerts.iter().map(|a| a.score).max().unwrap_or(0)),
            *ip,
        )
    });
    let _ = write!(out, "<h2 id=\"hosts\">Alerted hosts ({})</h2>", hosts.len());
    let (start_ns, end_ns) = match (d.windows.first(), d.windows.last()) {
        (Some(f), Some(l)) => (f.start_ns, l.end_ns),
        _ => (0, 0),
    };
    let window_ns = d.window_seconds.saturating_mul(1_000_000_000);
    for (ip, alerts) in &hosts {
        let mut branches: Vec<&str> = alerts.iter().map(|a| a.detection_branch).collect();
        branches.sort_unstable();
        branches.dedup();
        let _ = write!(
            out,
            "<section class=\"host\" id=\"{}\" data-host=\"{ip}\"><h3>{ip}</h3><p>{} alert(s): {}; top score {}.</p>",
            host_id(*ip),
            alerts.len(),
            escape(&branches.join(", ")),
            alerts.iter().map(|a| a.score).max().unwrap_or(0),
        );
        let spans: Vec<(u64, u64)> = alerts
            .iter()
            .filter_map(|a| {
                Some((
                    crate::alert::parse_rfc3339(&a.window_start)?,
                    crate::alert::parse_rfc3339(&a.window_end)?,
                ))
            })
            .collect();
        let record = d.host(*ip);
        let points: Vec<super::Point> =
            record.map_or_else(Vec::new, |r| r.points.iter().copied().collect());
        let host = ip.to_string();
        out.push_str(&svg::timeline(&Timeline {
            start_ns,
            end_ns,
            window_ns,
            points: &points,
            windows: &d.windows,
            alerts: &spans,
            off_hours: &d.off_hours,
            host: &host,
        }));
        out.push_str(LEGEND);
        match record {
            Some(r) => {
                let _ = write!(
                    out,
                    "<p>Recorded: {} out ({} of it off-hours), {} in, {} to allowlisted destinations, active in {} windows.</p>",
                    human_bytes(r.bytes_out),
                    human_bytes(r.off_hours_bytes_out),
                    human_bytes(r.bytes_in),
                    human_bytes(r.allowlisted_bytes_out),
                    r.windows_active
                );
                if r.late {
                    let _ = write!(
                        out,
                        "<p class=\"note\">Recorded from {} UTC only (the host table was full before).</p>",
                        time_ns(r.since_ns)
                    );
                }
                out.push_str("<h4>Top destinations</h4>");
                destinations_table(out, r);
            }
            None => out.push_str(
                "<p class=\"note\">Not recorded: the host table was full of hosts that alerted too ([report] max_hosts).</p>",
            ),
        }
        out.push_str("</section>");
    }
}

fn talkers_section(out: &mut String, input: &ReportInput<'_>) {
    let d = input.data;
    let mut alerts_by_host: BTreeMap<IpAddr, u64> = BTreeMap::new();
    for a in input.alerts {
        *alerts_by_host.entry(a.host).or_default() += 1;
    }
    let n = d.limits.top_talkers.min(d.hosts.len());
    let _ = write!(
        out,
        "<h2 id=\"talkers\">Top talkers</h2><p class=\"muted\">The {n} of {} recorded hosts that sent the most (egress as detection counts it: allowlisted destinations apart).</p>",
        d.hosts.len()
    );
    out.push_str(
        "<table id=\"talkers-table\" class=\"sortable\"><thead><tr><th>host</th><th class=\"num\">out</th>\
         <th class=\"num\">in</th><th class=\"num\">off-hours out</th><th class=\"num\">allowlisted out</th>\
         <th class=\"num\">windows</th><th class=\"num\">alerts</th></tr></thead><tbody>",
    );
    for r in d.hosts.iter().take(n) {
        let Some(ip) = r.host else { continue };
        let alerts = alerts_by_host.get(&ip).copied().unwrap_or(0);
        let host = if alerts > 0 {
            format!("<a href=\"#{}\">{ip}</a>", host_id(ip))
        } else {
            ip.to_string()
        };
        let _ = write!(out, "<tr><td>{host}</td>");
        bytes_cell(out, r.bytes_out);
        bytes_cell(out, r.bytes_in);
        bytes_cell(out, r.off_hours_bytes_out);
        bytes_cell(out, r.allowlisted_bytes_out);
        num_cell(out, r.windows_active, &r.windows_active.to_string());
        num_cell(out, alerts, &alerts.to_string());
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

fn limits_section(out: &mut String, d: &ReportData) {
    let l = &d.limits;
    let c = &d.cuts;
    let _ = write!(
        out,
        "<h2 id=\"limits\">Limits</h2><p class=\"muted\">From the config's <code>[report]</code> section: \
         {} hosts, {} windows per host and for the run, {} destinations per host, {} top talkers.</p>",
        l.max_hosts, l.max_windows_per_host, l.max_destinations_per_host, l.top_talkers
    );
    let cut = [
        (
            c.host_windows_unrecorded,
            "host windows not recorded (host table full)",
        ),
        (
            c.flow_updates_unrecorded,
            "flow updates of unrecorded hosts",
        ),
        (c.hosts_evicted, "hosts evicted for heavier or alerted ones"),
        (c.alerted_hosts_unrecorded, "alerted hosts without a place"),
        (c.host_windows_dropped, "oldest host windows dropped"),
        (c.run_windows_dropped, "oldest run windows dropped"),
        (c.destinations_folded, "destinations folded into other"),
        (
            c.flows_folded_when_full,
            "flows to new destinations folded while a host's table was full",
        ),
    ];
    let shown: Vec<String> = cut
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if shown.is_empty() {
        out.push_str("<p id=\"cuts\">Nothing was cut.</p>");
    } else {
        let _ = write!(
            out,
            "<p id=\"cuts\" class=\"note\">Cut: {}.</p>",
            escape(&shown.join("; "))
        );
    }
}

/// The whole report.
pub fn render(input: &ReportInput<'_>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let inputs = input.inputs.join(", ");
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>egresswatch report: {0}</title><style>{STYLE}</style></head><body><main>\
         <h1>egresswatch report</h1><p class=\"muted\">{0} &middot; egresswatch {1} &middot; \
         <a href=\"#summary\">summary</a> &middot; <a href=\"#alerts\">alerts</a> &middot; \
         <a href=\"#hosts\">hosts</a> &middot; <a href=\"#talkers\">top talkers</a> &middot; <a href=\"#limits\">limits</a></p>",
        escape(&inputs),
        env!("CARGO_PKG_VERSION"),
    );
    summary_section(&mut out, input);
    alerts_section(&mut out, input.alerts);
    hosts_section(&mut out, input);
    talkers_section(&mut out, input);
    limits_section(&mut out, input.data);
    let _ = writeln!(out, "</main><script>{SCRIPT}</script></body></html>");
    out
}
