//! The readers on hand-written samples of each format (tests/data/endpoint/README.md says
//! where their shapes come from) and on broken input.
use super::*;
use crate::endpoint::Platform;
use crate::testing::TempDir;
use std::io::Write;

/// 2026-03-02T09:00:00Z in ns since the epoch.
const NINE_AM: u64 = 1_772_442_000_000_000_000;
const MS: u64 = 1_000_000;

struct Read {
    format: Result<InputFormat, String>,
    events: Vec<SysmonEvent>,
    counters: ReadCounters,
    problems: Vec<Problem>,
}

fn read(name: &str, bytes: &[u8]) -> Read {
    let mut counters = ReadCounters::default();
    let mut problems = Vec::new();
    let mut events = Vec::new();
    let format = read_bytes(
        Path::new(name),
        bytes,
        &mut counters,
        &mut problems,
        &mut |e| events.push(e),
    )
    .map_err(|e| e.to_string());
    Read {
        format,
        events,
        counters,
        problems,
    }
}

fn sample(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/endpoint")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn data(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn problems(read: &Read) -> Vec<String> {
    read.problems.iter().map(ToString::to_string).collect()
}

#[test]
fn wevtutil_xml_events_one_per_line() {
    let r = read("wevtutil.xml", &sample("wevtutil.xml"));
    assert_eq!(r.format, Ok(InputFormat::SysmonXml));
    assert_eq!(r.counters.events, 2);
    assert!(r.problems.is_empty(), "{:?}", problems(&r));
    let e = &r.events[0];
    assert_eq!(e.platform, Platform::Windows);
    assert_eq!(e.event_id, 1);
    assert_eq!(e.time_ns, NINE_AM + 60_123_456_700);
    assert_eq!(e.record_id, Some(1201));
    assert_eq!(e.computer, "WIN-DESK-07.corp.example");
    assert_eq!(e.host, None);
    assert_eq!(e.data.len(), 23);
    assert_eq!(e.data[0], ("RuleName".to_string(), "-".to_string()));
    assert_eq!(
        e.raw("Image"),
        Some(r"C:\Users\alice\AppData\Local\Programs\Honeygain\Honeygain.exe")
    );
    assert_eq!(
        e.raw("ParentCommandLine"),
        Some(
            r#"cmd.exe /c start "" "C:\Users\alice\AppData\Local\Programs\Honeygain\Honeygain.exe""#
        )
    );
    assert_eq!(e.raw("User"), Some(r"CORP\alice"));
    assert_eq!(
        e.data[22],
        ("ParentUser".to_string(), r"CORP\alice".to_string())
    );
    let e = &r.events[1];
    assert_eq!((e.event_id, e.record_id), (3, Some(1203)));
    assert_eq!(e.time_ns, NINE_AM + 62_500 * MS);
    assert_eq!(e.raw("DestinationHostname"), Some("api.honeygain.com"));
    assert_eq!(e.raw("SourcePort"), Some("50001"));
    assert_eq!(e.raw("SourcePortName"), Some("-"));
    assert_eq!(e.get("SourcePortName"), None);
}

#[test]
fn xml_events_on_one_line_or_spread_over_lines_read_the_same() {
    let one_per_line = read("a.xml", &sample("wevtutil.xml"));
    // wevtutil writes events back to back without separators.
    let text = String::from_utf8(sample("wevtutil.xml")).unwrap();
    let joined = read("b.xml", text.replace('\n', "").as_bytes());
    assert_eq!(joined.events, one_per_line.events);
    let spread = read("c.xml", text.replace("><", ">\n  <").as_bytes());
    assert_eq!(spread.events, one_per_line.events);
    assert!(joined.problems.is_empty() && spread.problems.is_empty());
}

#[test]
fn saved_log_xml_with_other_providers() {
    let r = read("saved-log.xml", &sample("saved-log.xml"));
    assert_eq!(r.format, Ok(InputFormat::SysmonXml));
    assert_eq!((r.counters.events, r.counters.not_sysmon), (2, 1));
    assert!(r.problems.is_empty(), "{:?}", problems(&r));
    let e = &r.events[0];
    assert_eq!((e.event_id, e.record_id), (13, Some(877)));
    assert_eq!(e.time_ns, NINE_AM + 310_002 * MS);
    assert_eq!(e.computer, "WIN-LAB-03.corp.example");
    assert_eq!(
        e.data[0],
        ("RuleName".to_string(), "T1060,RunKey".to_string())
    );
    assert_eq!(
        e.raw("Details"),
        Some(
            r#""C:\Users\bob\AppData\Local\Traffmonetizer\Traffmonetizer.exe" --token 4f2a9c0e7b1d4e8f"#
        )
    );
    assert_eq!(
        r.events[1].data,
        data(&[
            ("Image", r"C:\Windows\System32\cmd.exe"),
            ("CommandLine", "cmd.exe /c echo a & echo <b>"),
        ])
    );
}

#[test]
fn winlogbeat_lines() {
    let r = read("winlogbeat.ndjson", &sample("winlogbeat.ndjson"));
    assert_eq!(r.format, Ok(InputFormat::WinlogbeatJson));
    assert_eq!((r.counters.events, r.counters.not_sysmon), (2, 1));
    assert!(r.problems.is_empty(), "{:?}", problems(&r));
    let e = &r.events[0];
    assert_eq!(
        (e.platform, e.event_id, e.record_id),
        (Platform::Windows, 22, Some(1202))
    );
    assert_eq!(e.time_ns, NINE_AM + 60_850 * MS);
    assert_eq!(e.computer, "WIN-DESK-07.corp.example");
    assert_eq!(e.host.as_deref(), Some("WIN-DESK-07"));
    assert_eq!(
        e.data,
        data(&[
            ("RuleName", "-"),
            ("UtcTime", "2026-03-02 09:01:00.848"),
            ("ProcessGuid", "{6b1e4a2c-5d3e-65e3-2a01-000000000700}"),
            ("ProcessId", "6212"),
            ("QueryName", "api.honeygain.com"),
            ("QueryStatus", "0"),
            ("QueryResults", "::ffff:203.0.113.50;"),
            (
                "Image",
                r"C:\Users\alice\AppData\Local\Programs\Honeygain\Honeygain.exe"
            ),
            ("User", r"CORP\alice"),
        ])
    );
    // event_id as a number, record_id as a string: both shapes occur.
    let e = &r.events[1];
    assert_eq!((e.event_id, e.record_id), (3, Some(1203)));
    assert_eq!(e.raw("DestinationIp"), Some("203.0.113.50"));
}

#[test]
fn elastic_agent_ecs_lines() {
    let r = read("elastic-agent.ndjson", &sample("elastic-agent.ndjson"));
    assert_eq!(r.format, Ok(InputFormat::ElasticEcsJson));
    assert_eq!(r.counters.events, 4);
    assert!(r.problems.is_empty(), "{:?}", problems(&r));
    let e = &r.events[0];
    assert_eq!((e.event_id, e.record_id), (1, Some(5501)));
    assert_eq!(e.time_ns, NINE_AM + 600_250 * MS);
    assert_eq!(e.computer, "WIN-SRV-12.corp.example");
    assert_eq!(e.host.as_deref(), Some("win-srv-12"));
    // What the pipeline left in event_data comes first, as the line has it.
    assert_eq!(
        e.data[0],
        ("Company".to_string(), "Microsoft Corporation".to_string())
    );
    assert_eq!(
        e.data[8],
        ("TerminalSessionId".to_string(), "2".to_string())
    );
    let rebuilt: Vec<&str> = e.data[9..].iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        rebuilt,
        [
            "ProcessGuid",
            "ProcessId",
            "Image",
            "OriginalFileName",
            "CommandLine",
            "CurrentDirectory",
            "User",
            "Hashes",
            "ParentProcessGuid",
            "ParentProcessId",
            "ParentImage",
            "ParentCommandLine",
        ]
    );
    assert_eq!(
        e.raw("Image"),
        Some(r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe")
    );
    assert_eq!(
        e.raw("CommandLine"),
        Some(
            r#"powershell.exe -NoProfile -Command "1..80 | ForEach-Object { Test-NetConnection -ComputerName 8.8.$_.1 -Port 80 -InformationLevel Quiet }""#
        )
    );
    assert_eq!(e.raw("ProcessId"), Some("5120"));
    assert_eq!(e.raw("User"), Some(r"CORP\carol"));
    assert_eq!(e.raw("OriginalFileName"), Some("PowerShell.EXE"));
    assert_eq!(e.raw("ParentImage"), Some(r"C:\Windows\explorer.exe"));
    assert_eq!(e.raw("ParentProcessId"), Some("4188"));
    assert_eq!(
        e.raw("Hashes"),
        Some(
            "SHA1=6CBCE4A295C163791B60FC23D285E6D84F28EE4C,MD5=7353F60B1739074EB17C5F4DDDEFE239,\
             SHA256=DE96A6E69944335375DC1AC238336066889D9FFC7D73628EF4FE1B1B160AB32C,\
             IMPHASH=AFACF6DC9041114B198160AAB4D0AE77"
        )
    );
    let e = &r.events[1];
    assert_eq!(e.event_id, 3);
    for (name, value) in [
        ("Protocol", "tcp"),
        ("Initiated", "true"),
        ("SourceIp", "10.20.0.12"),
        ("SourceHostname", "WIN-SRV-12.corp.example"),
        ("SourcePort", "51001"),
        ("DestinationIp", "8.8.1.1"),
        ("DestinationPort", "80"),
        ("User", r"CORP\carol"),
    ] {
        assert_eq!(e.raw(name), Some(value), "{name}");
    }
    assert_eq!(e.raw("DestinationHostname"), None);
    let e = &r.events[2];
    assert_eq!(e.event_id, 13);
    assert_eq!(e.data[0], ("EventType".to_string(), "SetValue".to_string()));
    assert_eq!(e.raw("RuleName"), Some("T1060,RunKey"));
    assert_eq!(
        e.raw("TargetObject"),
        Some(
            r"HKU\S-1-5-21-1111111111-2222222222-3333333333-1104\Software\Microsoft\Windows\CurrentVersion\Run\Traffmonetizer"
        )
    );
    assert_eq!(
        e.raw("Details"),
        Some(
            r#""C:\Users\bob\AppData\Local\Traffmonetizer\Traffmonetizer.exe" --token 4f2a9c0e7b1d4e8f"#
        )
    );
    let e = &r.events[3];
    assert_eq!(e.event_id, 22);
    assert_eq!(e.raw("QueryName"), Some("api.honeygain.com"));
    assert_eq!(e.raw("QueryStatus"), Some("0"));
    assert_eq!(e.raw("QueryResults"), Some("::ffff:203.0.113.50;"));
}

#[test]
fn event_data_wins_over_ecs() {
    let line = r#"{"@timestamp":"2026-03-02T09:00:00Z","process":{"executable":"ecs.exe","pid":1},"winlog":{"provider_name":"Microsoft-Windows-Sysmon","event_id":1,"event_data":{"Image":"own.exe"}}}"#;
    let r = read("x.ndjson", line.as_bytes());
    assert_eq!(
        r.events[0].data,
        data(&[("Image", "own.exe"), ("ProcessId", "1")])
    );
}

#[test]
fn splunk_export_lines() {
    let r = read("splunk.json", &sample("splunk.json"));
    assert_eq!(r.format, Ok(InputFormat::SplunkJson));
    assert_eq!((r.counters.events, r.counters.unsupported_lines), (1, 1));
    let e = &r.events[0];
    assert_eq!((e.event_id, e.record_id), (3, Some(1290)));
    assert_eq!(e.time_ns, NINE_AM + 150_100 * MS);
    assert_eq!(e.computer, "WIN-DESK-07.corp.example");
    assert_eq!(e.host.as_deref(), Some("WIN-DESK-07"));
    assert_eq!(e.host_name(), "WIN-DESK-07");
    assert_eq!(
        e.raw("Image"),
        Some(r"C:\Program Files\Google\Chrome\Application\chrome.exe")
    );
    assert_eq!(
        e.raw("DestinationHostname"),
        Some("notpawns.app.example.net")
    );
    // The WinEventLog (text) rendering is not read: said once, then only counted.
    let told = problems(&r);
    assert_eq!(told.len(), 1);
    assert!(
        told[0].starts_with("splunk.json: line 2: Splunk _raw is neither"),
        "{told:?}"
    );
    assert!(told[0].contains("XmlWinEventLog"));
}

#[test]
fn splunk_bare_result_with_a_linux_syslog_raw() {
    let line = sample("sysmon-linux.log");
    let raw = String::from_utf8(line).unwrap();
    let raw = raw.lines().nth(1).unwrap();
    let doc = format!(
        "{{\"_raw\":{},\"host\":\"build-2\"}}",
        serde_json::to_string(raw).unwrap()
    );
    let r = read("s.json", doc.as_bytes());
    assert_eq!(r.format, Ok(InputFormat::SplunkJson));
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].platform, Platform::Linux);
    assert_eq!(r.events[0].host.as_deref(), Some("build-2"));
}

#[test]
fn linux_syslog_rfc3164() {
    let r = read("sysmon-linux.log", &sample("sysmon-linux.log"));
    assert_eq!(r.format, Ok(InputFormat::LinuxSyslog));
    assert_eq!(
        (
            r.counters.events,
            r.counters.not_sysmon,
            r.counters.malformed
        ),
        (2, 1, 1)
    );
    let e = &r.events[0];
    assert_eq!(
        (e.platform, e.event_id, e.record_id),
        (Platform::Linux, 1, Some(3101))
    );
    assert_eq!(e.time_ns, NINE_AM + 180_125 * MS);
    assert_eq!(e.computer, "ubuntu-build-2");
    assert_eq!(e.host.as_deref(), Some("ubuntu-build-2"));
    assert_eq!(e.raw("CommandLine"), Some("dig honeygain.com"));
    assert_eq!(e.raw("User"), Some("dev"));
    assert_eq!(e.raw("Hashes"), Some("-"));
    let e = &r.events[1];
    assert_eq!(e.event_id, 3);
    assert_eq!(e.raw("DestinationPort"), Some("53"));
    assert_eq!(
        problems(&r),
        ["sysmon-linux.log: line 4: truncated event: no </Event>"]
    );
}

#[test]
fn linux_syslog_rfc5424_reads_like_rfc3164() {
    let bsd = read("a.log", &sample("sysmon-linux.log"));
    let r = read("b.log", &sample("sysmon-linux-5424.log"));
    assert_eq!(r.format, Ok(InputFormat::LinuxSyslog));
    assert!(r.problems.is_empty(), "{:?}", problems(&r));
    assert_eq!(r.events, bsd.events);
}

#[test]
fn malformed_lines_are_counted_with_their_line_numbers() {
    let good = String::from_utf8(sample("winlogbeat.ndjson")).unwrap();
    let good = good.lines().next().unwrap();
    let mut text = Vec::new();
    text.extend_from_slice(good.as_bytes());
    text.extend_from_slice(b"\n{\"winlog\": \n\n");
    text.extend_from_slice(good.replace("\"22\"", "\"x22\"").as_bytes());
    text.extend_from_slice(b"\r\n\xff\xfe{}\n");
    text.extend_from_slice(good.as_bytes());
    text.extend_from_slice(
        b"\n[1,2]\n{\"winlog\":{\"provider_name\":\"Microsoft-Windows-Sysmon\",\"event_id\":1}}",
    );
    let r = read("mixed.ndjson", &text);
    assert_eq!(r.format, Ok(InputFormat::WinlogbeatJson));
    assert_eq!(r.counters.events, 2);
    assert_eq!((r.counters.malformed, r.counters.unsupported_lines), (4, 1));
    let told = problems(&r);
    assert_eq!(told.len(), 5, "{told:?}");
    assert!(
        told[0].starts_with("mixed.ndjson: line 2: not JSON"),
        "{told:?}"
    );
    assert!(
        told[1].starts_with("mixed.ndjson: line 4: event id \"x22\""),
        "{told:?}"
    );
    assert_eq!(told[2], "mixed.ndjson: line 5: not UTF-8 text");
    assert!(
        told[3].starts_with("mixed.ndjson: line 7: a JSON object with neither"),
        "{told:?}"
    );
    assert_eq!(
        told[4],
        "mixed.ndjson: line 8: neither winlog.time_created nor @timestamp"
    );
}

#[test]
fn unknown_and_empty_files_are_errors_naming_the_file() {
    let r = read(
        "capture.pcap",
        b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00 binary \n stuff",
    );
    let error = r.format.unwrap_err();
    assert!(
        error.starts_with("capture.pcap: not a Sysmon event file"),
        "{error}"
    );
    assert!(error.contains("the first non-empty line starts"), "{error}");
    let r = read("notes.txt", b"hello\nworld\n{\"a\":1}\n");
    assert!(
        r.format
            .unwrap_err()
            .starts_with("notes.txt: not a Sysmon event file")
    );
    assert_eq!(
        read("empty.log", b"").format,
        Err("empty.log: empty file".to_string())
    );
    let r = read("blank.log", b"\n  \n\n");
    assert!(r.format.unwrap_err().contains("only blank lines"));

    let dir = TempDir::new("read");
    let path = dir.path("notes.txt");
    std::fs::write(&path, "hello\n").unwrap();
    let mut counters = ReadCounters::default();
    let error = read_events(&path, &mut counters, &mut Vec::new(), &mut |_| {}).unwrap_err();
    assert!(matches!(error, ReadError::UnknownFormat { .. }));
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: ", path.display()))
    );
    let missing = dir.path("missing.evtx");
    let error = read_events(&missing, &mut counters, &mut Vec::new(), &mut |_| {}).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: cannot open", missing.display()))
    );
}

#[test]
fn files_are_read_like_their_bytes_plain_and_gzip() {
    let dir = TempDir::new("read-gz");
    for name in ["winlogbeat.ndjson", "saved-log.xml", "sysmon-linux.log"] {
        let bytes = sample(name);
        let expected = read(name, &bytes);
        let plain = dir.path(name);
        std::fs::write(&plain, &bytes).unwrap();
        let packed = dir.path(&format!("{name}.gz"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        std::fs::write(&packed, gz.finish().unwrap()).unwrap();
        for path in [&plain, &packed] {
            let mut counters = ReadCounters::default();
            let mut events = Vec::new();
            let format = read_events(path, &mut counters, &mut Vec::new(), &mut |e| {
                events.push(e)
            });
            assert_eq!(
                format.ok(),
                expected.format.clone().ok(),
                "{}",
                path.display()
            );
            assert_eq!(events, expected.events, "{}", path.display());
            assert_eq!(counters, expected.counters, "{}", path.display());
        }
    }
}

#[test]
fn utf16_xml_as_powershell_redirects_it() {
    let text = String::from_utf8(sample("wevtutil.xml")).unwrap();
    let mut bytes = vec![0xff, 0xfe];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    let r = read("utf16.xml", &bytes);
    assert_eq!(r.format, Ok(InputFormat::SysmonXml));
    assert_eq!(r.events, read("utf8.xml", text.as_bytes()).events);
}

#[test]
fn long_lines_and_events_are_skipped_not_buffered() {
    let good = String::from_utf8(sample("winlogbeat.ndjson")).unwrap();
    let good = good.lines().next().unwrap();
    let mut text = format!("{good}\n").into_bytes();
    text.extend(std::iter::repeat_n(b'{', 3 * MAX_LINE_BYTES));
    text.extend_from_slice(format!("\n{good}\n").as_bytes());
    let r = read("long.ndjson", &text);
    assert_eq!(
        (
            r.counters.events,
            r.counters.oversized,
            r.counters.malformed
        ),
        (2, 1, 1)
    );
    assert_eq!(
        problems(&r),
        [format!(
            "long.ndjson: line 2: line longer than {MAX_LINE_BYTES} bytes, skipped"
        )]
    );

    let xml = String::from_utf8(sample("wevtutil.xml")).unwrap();
    let (first, second) = xml.split_once('\n').unwrap();
    let huge = first.replace(
        "Honeygain</Data>",
        &format!("{}</Data>", "x".repeat(2 * MAX_LINE_BYTES)),
    );
    let r = read("long.xml", format!("{first}\n{huge}\n{second}").as_bytes());
    assert_eq!((r.counters.events, r.counters.oversized), (2, 1));
    assert_eq!(
        problems(&r),
        [format!(
            "long.xml: line 2: XML event longer than {MAX_LINE_BYTES} bytes, skipped"
        )]
    );
    assert_eq!(r.events[1].event_id, 3);
}

#[test]
fn xml_left_over_at_the_end_is_reported() {
    let xml = String::from_utf8(sample("wevtutil.xml")).unwrap();
    let cut = &xml[..xml.len() - 100];
    let r = read("cut.xml", cut.as_bytes());
    assert_eq!(r.counters.events, 1);
    assert_eq!(
        problems(&r),
        ["cut.xml: line 2: event cut short at the end of the file"]
    );
    let r = read("tail.xml", format!("{xml}\n</Events>\n garbage").as_bytes());
    assert_eq!(r.counters.events, 2);
    assert_eq!(problems(&r), ["tail.xml: line 4: text outside an event"]);
}

#[test]
fn problems_are_kept_up_to_the_limit() {
    let text = "Mar  2 09:03:00 h sysmon: <Event>\n".repeat(MAX_PROBLEMS + 50);
    let r = read("many.log", text.as_bytes());
    assert_eq!(r.problems.len(), MAX_PROBLEMS);
    assert_eq!(r.counters.malformed, MAX_PROBLEMS as u64 + 50);
    assert_eq!(r.counters.problems_dropped, 50);
    assert_eq!(
        r.problems[MAX_PROBLEMS - 1].at,
        Location::Line(MAX_PROBLEMS as u64)
    );
}

#[test]
fn problems_name_file_and_place() {
    let problem = |at| Problem {
        file: PathBuf::from("logs/s.evtx"),
        at,
        reason: "bad".to_string(),
    };
    assert_eq!(
        problem(Location::Byte(1234)).to_string(),
        "logs/s.evtx: byte 1234: bad"
    );
    assert_eq!(
        problem(Location::Line(17)).to_string(),
        "logs/s.evtx: line 17: bad"
    );
    assert_eq!(
        problem(Location::Record(88)).to_string(),
        "logs/s.evtx: record 88: bad"
    );
    assert_eq!(problem(Location::File).to_string(), "logs/s.evtx: bad");
}

/// An EVTX file header (libyal's documentation of the format): version 3.1, one chunk.
fn evtx_header() -> Vec<u8> {
    let mut header = vec![0u8; 4096];
    header[..8].copy_from_slice(b"ElfFile\0");
    header[24..32].copy_from_slice(&1u64.to_le_bytes()); // next record id
    header[32..36].copy_from_slice(&128u32.to_le_bytes()); // header size
    header[36..38].copy_from_slice(&1u16.to_le_bytes()); // minor version
    header[38..40].copy_from_slice(&3u16.to_le_bytes()); // major version
    header[40..42].copy_from_slice(&4096u16.to_le_bytes()); // header block size
    header[42..44].copy_from_slice(&1u16.to_le_bytes()); // chunk count
    header
}

#[test]
fn evtx_damage_is_placed_and_the_read_goes_on() {
    let r = read("short.evtx", b"ElfFile\0 and nothing else");
    let error = r.format.unwrap_err();
    assert!(
        error.starts_with("short.evtx: not a readable EVTX file: "),
        "{error}"
    );

    // A chunk that is not one, then half a chunk: both reported by offset.
    let mut file = evtx_header();
    file.extend(std::iter::repeat_n(0x5a, 65536));
    file.extend_from_slice(b"ElfChnk\0");
    file.extend(std::iter::repeat_n(0, 1000));
    let r = read("damaged.evtx", &file);
    assert_eq!(r.format, Ok(InputFormat::Evtx));
    assert_eq!(r.counters.events, 0);
    let told = problems(&r);
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(told[0].starts_with("damaged.evtx: byte 4096: "), "{told:?}");
    assert_eq!(
        told[1],
        "damaged.evtx: byte 69632: incomplete chunk of 1008 bytes at the end of the file: \
         its records are not read"
    );
}
