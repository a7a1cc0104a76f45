//! The HTML report (`replay --report`), opened in headless Chromium (Debian `chromium`,
//! installed by `scripts/setup.sh --test`): it loads without console messages, every host the
//! scenario's truth file expects to alert has its chart, hostile names stay text, and a
//! screenshot is kept in target/test-artifacts/report.png. Chromium runs offline: every host
//! name resolves to nothing and the report's Content-Security-Policy refuses any load.
mod common;
use common::TempDir;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Chromium gets this long per page (it takes about a second).
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(120);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs `egresswatch replay` in the repository (the scenario config's geo paths are relative
/// to it) and returns its stderr.
fn replay(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .current_dir(repo())
        .arg("replay")
        .args(["--format", "json"])
        .args(args)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "replay {args:?}: {stderr}");
    stderr
}

/// Hosts the truth file expects an alert from.
fn alerted_hosts(truth: &Value) -> BTreeSet<String> {
    truth["hosts"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, h)| {
            h["expect_branch"].as_str().is_some_and(|b| b != "none")
                || h["expect_alerts"].as_array().is_some_and(|a| !a.is_empty())
        })
        .map(|(ip, _)| ip.clone())
        .collect()
}

/// Runs Chromium headless on `page` with `args` (e.g. --dump-dom); waits at most
/// CHROMIUM_TIMEOUT.
fn chromium(page: &Path, args: &[&str]) -> Output {
    let profile = TempDir::new("report", "chromium-profile");
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless=new",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        // Offline: no name resolves.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.0.display()));
    // Chromium's sandbox refuses to run as root.
    if nix::unistd::geteuid().is_root() {
        cmd.arg("--no-sandbox");
    }
    let mut child = cmd
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start chromium ({e}): install it with `bash scripts/setup.sh --test`")
        });
    // Pipes are drained on threads so a chatty Chromium never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).map(|_| v)
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut v).map(|_| v)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish {} within {CHROMIUM_TIMEOUT:?}",
                page.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    }
}

/// The page's DOM after its scripts ran, and every console message it produced.
fn load(page: &Path) -> (String, Vec<String>) {
    let out = chromium(page, &["--dump-dom"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium: {stderr}");
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// The `<svg class="timeline" data-host=...>` elements of a DOM: host -> bars of bytes out.
fn charts(dom: &str) -> Vec<(String, usize)> {
    dom.split("<svg ")
        .skip(1)
        .filter(|s| s.contains(r#"class="timeline""#))
        .map(|s| {
            let host = s.split(r#"data-host=""#).nth(1).unwrap();
            let host = host.split('"').next().unwrap().to_string();
            let body = s.split("</svg>").next().unwrap();
            (host, body.matches(r#"<rect class="out""#).count())
        })
        .collect()
}

fn artifacts() -> PathBuf {
    let dir = repo().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn behaviour_report_loads_in_chromium_with_a_chart_per_alerted_host() {
    let dir = TempDir::new("report", "behaviour");
    let html = dir.path("report.html");
    let alerts = dir.path("alerts.json");
    let stderr = replay(&[
        "--config",
        "captures/behaviour.toml",
        "--report",
        html.to_str().unwrap(),
        "--alerts",
        alerts.to_str().unwrap(),
        "captures/behaviour.pcap",
    ]);
    let truth = read_json(&repo().join("captures/behaviour.truth.json"));
    let want = alerted_hosts(&truth);
    assert!(want.len() >= 5, "{want:?}");

    let (dom, console) = load(&html);
    assert!(console.is_empty(), "console messages: {console:#?}");
    // The script ran to its end.
    assert!(
        dom.contains(r#"<body data-ready="1">"#),
        "script did not finish"
    );
    let charts = charts(&dom);
    let hosts: BTreeSet<String> = charts.iter().map(|(h, _)| h.clone()).collect();
    assert_eq!(hosts, want, "one chart per alerted host");
    assert_eq!(charts.len(), want.len());
    for (host, bars) in &charts {
        assert!(*bars > 0, "{host}: no windows drawn");
        assert!(dom.contains(&format!(r#"data-host="{host}"><h3>{host}</h3>"#)));
    }
    // One table row group per alert, as many as the alerts file holds.
    let alert_lines = std::fs::read_to_string(&alerts).unwrap().lines().count();
    assert_eq!(dom.matches(r#"<tbody class="alert">"#).count(), alert_lines);
    // The summary is the one printed at the end of the run.
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("behaviour: "))
        .unwrap();
    assert!(dom.contains(summary), "{summary}");

    // Chromium reports what the Content-Security-Policy blocks: the same report with an
    // external script added gets a console message, so a clean load above means something.
    let text = std::fs::read_to_string(&html).unwrap();
    let tainted = dir.path("tainted.html");
    std::fs::write(
        &tainted,
        text.replace(
            "</main>",
            r#"</main><script src="https://cdn.example.invalid/lib.js"></script>"#,
        ),
    )
    .unwrap();
    let (_, console) = load(&tainted);
    assert!(
        console
            .iter()
            .any(|l| l.contains("Content Security Policy")),
        "{console:#?}"
    );

    let png = artifacts().join("report.png");
    let _ = std::fs::remove_file(&png);
    let shot = chromium(
        &html,
        &[
            "--hide-scrollbars",
            "--window-size=1240,3000",
            &format!("--screenshot={}", png.display()),
        ],
    );
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is no PNG",
        png.display()
    );
}

/// office.pcap with the TLS server names `client.earnapp.com` of host 10.20.1.66 (alerted for
/// proxyware) replaced by markup of the same length.
fn hostile_office(dir: &TempDir, name: &str) -> PathBuf {
    let original = b"client.earnapp.com";
    assert_eq!(name.len(), original.len());
    let mut bytes = std::fs::read(repo().join("captures/office.pcap")).unwrap();
    // In the SNI extension: list length 0x15, host_name type 0, name length 0x12.
    let needle = [&[0x00, 0x15, 0x00, 0x00, 0x12][..], original].concat();
    let mut patched = 0;
    let mut at = 0;
    while let Some(pos) = bytes[at..].windows(needle.len()).position(|w| w == needle) {
        let start = at + pos + 5;
        bytes[start..start + name.len()].copy_from_slice(name.as_bytes());
        at = start;
        patched += 1;
    }
    assert!(patched > 0, "office.pcap has no SNI client.earnapp.com");
    let path = dir.path("hostile.pcap");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn hostile_names_stay_text() {
    let hostile = "<script>x</script>";
    let dir = TempDir::new("report", "hostile");
    let pcap = hostile_office(&dir, hostile);
    let html = dir.path("report.html");
    replay(&["--report", html.to_str().unwrap(), pcap.to_str().unwrap()]);
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(!text.contains(hostile));
    // The name reached the report, as text, among the host's destinations.
    assert!(text.contains("&lt;script&gt;x&lt;/script&gt;"));
    // In the browser it stays text: the page's one script element is its own.
    let (dom, console) = load(&html);
    assert!(console.is_empty(), "{console:#?}");
    assert_eq!(dom.matches("<script").count(), 1);
    assert!(dom.contains("&lt;script&gt;x&lt;/script&gt;"));
}

#[test]
fn the_report_changes_no_alert_and_no_log() {
    let dir = TempDir::new("report", "same");
    let run = |tag: &str, report: bool| {
        let alerts = dir.path(&format!("{tag}.json"));
        let logs = dir.path(tag);
        let html = dir.path(&format!("{tag}.html"));
        let mut args = vec![
            "--config".to_string(),
            "captures/behaviour.toml".into(),
            "--alerts".into(),
            alerts.display().to_string(),
            "--log-dir".into(),
            logs.display().to_string(),
        ];
        if report {
            args.extend(["--report".to_string(), html.display().to_string()]);
        }
        args.push("captures/behaviour.pcap".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        replay(&args);
        let mut files = vec![std::fs::read(&alerts).unwrap()];
        for log in ["conn.log", "dns.log", "ssl.log", "http.log"] {
            files.push(std::fs::read(logs.join(log)).unwrap_or_default());
        }
        files
    };
    let without = run("without", false);
    let with = run("with", true);
    assert!(!without[0].is_empty() && !without[1].is_empty());
    assert!(without == with, "alerts or logs differ with --report");
    assert!(dir.path("with.html").exists() && !dir.path("without.html").exists());
}
