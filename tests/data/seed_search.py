#!/usr/bin/env python3
"""Independent oracle for the seed Splunk search (df00tech T1496.002, Splunk version).

Usage: python3 tests/data/seed_search.py FILE > rows.ndjson

FILE holds Splunk search-export JSON lines (REST search/jobs/export or
`splunk search ... -output json`): {"preview":false,"result":{"_raw":...,"_time":...,
"host":...,"index":...,"sourcetype":...}} per line, or a bare result object per line.
Output: the rows the seed search would return, one JSON object per line.

Written from the SPL below and Splunk's documented semantics only; it shares no
code or reading with egresswatch's Rust implementation, so the two can check
each other. Standard library only.

    index=wineventlog sourcetype="XmlWinEventLog:Microsoft-Windows-Sysmon/Operational"
    | eval EventCode=coalesce(EventCode, event_id)
    | search EventCode IN (1, 3)
    | eval KnownProxywareBinary=case(EventCode=1 AND match(lower(Image), "(honeygain|...)"), 1, true(), 0)
    | eval ProxywareDomain=case(EventCode=3 AND match(lower(coalesce(DestinationHostname, "")), "(...)"), 1,
                                true(), 0)
    | eval DetectionBranch=case(KnownProxywareBinary=1, "KnownProxywareBinary",
                                ProxywareDomain=1, "ProxywareDomainConnection", true(), "None")
    | where DetectionBranch!="None"
    | table _time, host, User, EventCode, Image, CommandLine, ParentImage, ParentCommandLine,
            DestinationIp, DestinationHostname, DestinationPort,
            KnownProxywareBinary, ProxywareDomain, DetectionBranch

Semantics decisions, each with its reason and source
----------------------------------------------------
1. Field extraction is the search-time REPORT extraction of Splunk's TA-microsoft-sysmon,
   whose props.conf stanza is exactly the seed's sourcetype
   [XmlWinEventLog:Microsoft-Windows-Sysmon/Operational]
   (source: github.com/splunk/TA-microsoft-sysmon default/props.conf and transforms.conf):
     sysmon-eventid   REGEX = <EventID>(\\d+)</EventID>          FORMAT = EventCode::$1
     sysmon-computer  REGEX = <Computer>(.*?)</Computer>         FORMAT = Computer::$1
     sysmon-data      REGEX = <Data Name='(.*?)'>(.*?)</Data>    FORMAT = $1::$2  (every match)
   applied in that order. Consequences, all deliberate:
   - values are the bytes between the tags as written in _raw: no XML entity decoding
     (`&amp;` stays `&amp;`), Sysmon's "-" is a value;
   - only single-quoted Name='...' with a separate </Data> tag is seen (Splunk's rendered
     XML uses single quotes); `.` does not cross a line feed, so a value holding a newline
     is not extracted; a self-closing <Data Name='X'/> is not an element to this regex and
     makes the next match start there (its name swallows the following element);
   - the other TA transforms (Version, Level, Task, ...) yield no field the search reads.
2. transforms.conf defaults (source: docs.splunk.com/Documentation/Splunk/latest/Admin/Transformsconf):
   KEEP_EMPTY_VALS = false, so an empty <Data Name='X'></Data> gives no field X;
   MV_ADD = false, so a field extracted again keeps its first value (and the default fields
   host, index, sourcetype, source, _time are never overwritten by an extraction);
   CLEAN_KEYS = true, so a name's characters outside [A-Za-z0-9_] become "_" and leading
   "_" and digits are stripped.
3. Only _raw, _time, host, index, source and sourcetype are read from a result; any other
   key the export carries is ignored, so every event field comes from _raw as in item 1.
   No extraction yields `event_id`, so coalesce(EventCode, event_id) is EventCode.
4. Base search: index and sourcetype compare equal ignoring case, as search-time field
   values do (source: Search Manual, "Use CASE() and TERM() to match phrases": "By default,
   searches are case-insensitive" for terms and field values). An event without an index or
   sourcetype does not match. No time range: the search runs over all time.
5. `search EventCode IN (1, 3)`: the value, compared as a string ignoring case, is "1" or "3".
   The TA's \\d+ makes EventCode digits only; Windows writes no leading zeros.
6. eval (source: Search Reference, "Comparison and Conditional functions", "Text functions"):
   null is Python None; lower(null) and match(null, re) are null; `X AND null` is not true;
   case() returns the value of the first condition that is true (null is not true).
   `EventCode=1` in eval compares numerically when the value reads as a number.
   match() is unanchored: Python re.search with the same pattern is equivalent here because
   the patterns use only literals, alternation, a group, `.` and `\\.`, whose meaning is the
   same in PCRE and Python (`.` excludes only "\\n" in both by default). SPL string literals
   keep `\\.` as-is (Splunk's own match() examples write "\\d{1,3}\\.").
   lower() is Python str.lower(); it differs from an ASCII-only lower only for U+0130 and
   U+212A, the only non-ASCII code points whose lower case contains an ASCII letter.
7. `where DetectionBranch!="None"`: case-sensitive string comparison.
8. `table`: the listed fields only, in the listed order; a field the event lacks is left out.
   Every value is a string: eval's numbers 1 and 0 are written "1" and "0" as Splunk's JSON
   export does; a multivalued input field (a JSON array in the export) stays an array.
   _time is written exactly as the input's _time string. Rows are compact JSON in UTF-8
   (non-ASCII unescaped); byte-level details of Splunk's JSON writer (such as whether "/"
   is escaped) are not documented, so compare rows as parsed JSON objects, keys in order.
9. Row order: newest first by _time (Splunk returns events in reverse time order); equal
   instants keep reverse input order (Splunk documents no tie order). _time is read as ISO
   8601 with an offset ("2026-03-02T09:01:00.123+00:00", "Z" allowed) or epoch seconds,
   compared as exact decimals; any other _time on an output row is an error.
10. Export lines with "preview": true or without a result (messages, metadata) are skipped
    and counted on stderr. A line that is not JSON, or whose result is not an object, is an
    error naming the file and line; the exit status is then 2.

Self-test (tests/seed_oracle.rs): seed_search_sample.json, hand-made, one event per line;
seed_search_sample.expected.ndjson was derived by hand from the SPL before this script ran.
   1 Sysmon 1 Honeygain.exe                    -> row, KnownProxywareBinary
   2 Sysmon 3 Honeygain to api.honeygain.com   -> row, ProxywareDomainConnection (binary counts on 1 only)
   3 Sysmon 3 to notpawns.app.example.net      -> row: the unanchored regex matches the look-alike
   4 Sysmon 3 to Proxy.PacketStream.IO         -> row; same _time as 3, so it comes before 3
   5 Sysmon 22 DNS query for api.iproyal.com   -> none (EventCode)
   6 Sysmon 13 registry write by earnapp.exe   -> none (EventCode)
   7 Security 4688, sourcetype XmlWinEventLog:Security -> none (sourcetype)
   8 Sysmon 1 Bitping under sourcetype XmlWinEventLog  -> none (sourcetype)
   9 Sysmon 3 repocket.exe, DestinationHostname "-"    -> none
  10 Sysmon 1 upper-case TRAFFMONETIZER path, sourcetype in lower case, _time at +01:00,
     empty CommandLine element, &amp; in ParentCommandLine -> row without CommandLine
  11 Sysmon 1 earnapp.exe in index main        -> none (index)
  12 bare result, Sysmon 3 without Image to node7.bitping.com -> row without Image
"""

import datetime
import json
import re
import sys
from decimal import Decimal

SEED_INDEX = "wineventlog"
SEED_SOURCETYPE = "XmlWinEventLog:Microsoft-Windows-Sysmon/Operational"
DEFAULT_FIELDS = ("_raw", "_time", "host", "index", "source", "sourcetype")

# TA-microsoft-sysmon transforms, in their REPORT order (item 1).
EVENTID_RE = re.compile(r"<EventID>(\d+)</EventID>")
COMPUTER_RE = re.compile(r"<Computer>(.*?)</Computer>")
DATA_RE = re.compile(r"<Data Name='(.*?)'>(.*?)</Data>")

# The seed's regexes, character for character.
BINARY_RE = re.compile(
    r"(honeygain|iproyal.desktop|iproyal_desktop|pawns\.exe|peer2profit|p2p-node|packetstream"
    r"|psnode|traffmonetizer|traffmain|earnapp|repocket|bitping|mysterium|myst\.exe)"
)
DOMAIN_RE = re.compile(
    r"(honeygain|iproyal|pawns\.app|peer2profit|packetstream|traffmonetizer|earnapp|repocket"
    r"|bitping|mysterium)"
)

TABLE_FIELDS = (
    "_time", "host", "User", "EventCode", "Image", "CommandLine", "ParentImage",
    "ParentCommandLine", "DestinationIp", "DestinationHostname", "DestinationPort",
    "KnownProxywareBinary", "ProxywareDomain", "DetectionBranch",
)

ISO_TIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})"
)
EPOCH_RE = re.compile(r"\d+(?:\.\d+)?")


class InputError(Exception):
    pass


def clean_key(name):
    """CLEAN_KEYS = true (item 2)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name).lstrip("_0123456789")


def add_field(fields, name, value):
    """KEEP_EMPTY_VALS = false and MV_ADD = false (item 2)."""
    if name and value != "" and name not in fields:
        fields[name] = value


def extract(result):
    fields = {key: result[key] for key in DEFAULT_FIELDS if key in result}
    raw = fields.get("_raw")
    if not isinstance(raw, str):
        return fields
    m = EVENTID_RE.search(raw)
    if m:
        add_field(fields, "EventCode", m.group(1))
    m = COMPUTER_RE.search(raw)
    if m:
        add_field(fields, "Computer", m.group(1))
    for m in DATA_RE.finditer(raw):
        add_field(fields, clean_key(m.group(1)), m.group(2))
    return fields


def values(v):
    """A field's values: none, one, or a multivalue list."""
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def search_equals(v, literal):
    """Search-time field=value: case-insensitive, any value of a multivalue field (items 4, 5)."""
    return any(isinstance(x, str) and x.lower() == literal.lower() for x in values(v))


# eval functions; None is SPL null (item 6).
def spl_coalesce(*args):
    return next((a for a in args if a is not None), None)


def spl_lower(v):
    return None if v is None else v.lower()


def spl_match(v, regex):
    return None if v is None else regex.search(v) is not None


def spl_eq_number(v, number):
    if v is None:
        return None
    try:
        return Decimal(v) == number
    except ArithmeticError:
        return v == str(number)


def spl_and(a, b):
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def spl_case(*pairs):
    for i in range(0, len(pairs), 2):
        if pairs[i]() is True:
            return pairs[i + 1]
    return None


def run_seed(fields):
    """The pipeline after the base search; returns the table row or None."""
    fields["EventCode"] = spl_coalesce(fields.get("EventCode"), fields.get("event_id"))
    if fields["EventCode"] is None:
        del fields["EventCode"]
    if not (search_equals(fields.get("EventCode"), "1") or search_equals(fields.get("EventCode"), "3")):
        return None
    event_code = fields["EventCode"]
    fields["KnownProxywareBinary"] = spl_case(
        lambda: spl_and(spl_eq_number(event_code, 1), spl_match(spl_lower(fields.get("Image")), BINARY_RE)), 1,
        lambda: True, 0,
    )
    fields["ProxywareDomain"] = spl_case(
        lambda: spl_and(
            spl_eq_number(event_code, 3),
            spl_match(spl_lower(spl_coalesce(fields.get("DestinationHostname"), "")), DOMAIN_RE),
        ), 1,
        lambda: True, 0,
    )
    fields["DetectionBranch"] = spl_case(
        lambda: spl_eq_number(fields["KnownProxywareBinary"], 1), "KnownProxywareBinary",
        lambda: spl_eq_number(fields["ProxywareDomain"], 1), "ProxywareDomainConnection",
        lambda: True, "None",
    )
    if fields["DetectionBranch"] == "None":
        return None
    return {name: export_value(fields[name]) for name in TABLE_FIELDS if name in fields}


def export_value(v):
    if isinstance(v, list):
        return [export_value(x) for x in v]
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def time_key(text):
    """_time as exact epoch seconds (item 9)."""
    if not isinstance(text, str):
        raise ValueError("_time is missing or not a string")
    if EPOCH_RE.fullmatch(text):
        return Decimal(text)
    m = ISO_TIME_RE.fullmatch(text)
    if not m:
        raise ValueError("_time %r is neither ISO 8601 with an offset nor epoch seconds" % text)
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction = Decimal("0." + m.group(7)) if m.group(7) else Decimal(0)
    offset = m.group(8)
    offset_seconds = 0
    if offset != "Z":
        digits = offset[1:].replace(":", "")
        offset_seconds = (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * (1 if offset[0] == "+" else -1)
    days = days_from_civil(year, month, day)
    return Decimal(days * 86400 + hour * 3600 + minute * 60 + second - offset_seconds) + fraction


def days_from_civil(year, month, day):
    """Days since 1970-01-01 in the proleptic Gregorian calendar."""
    return (datetime.date(year, month, day) - datetime.date(1970, 1, 1)).days


def read_results(path, stream, skipped):
    for line_no, line in enumerate(stream, start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError("%s:%d: not UTF-8 (%s)" % (path, line_no, e))
        if line_no == 1:
            text = text.lstrip("\ufeff")
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError("%s:%d: not JSON (%s)" % (path, line_no, e))
        if not isinstance(obj, dict):
            raise InputError("%s:%d: a line must be a JSON object" % (path, line_no))
        if obj.get("preview") is True:
            skipped["preview"] = skipped.get("preview", 0) + 1
            continue
        if "result" in obj:
            result = obj["result"]
            if not isinstance(result, dict):
                raise InputError("%s:%d: \"result\" is not an object" % (path, line_no))
        elif "_raw" in obj or "_time" in obj:
            result = obj
        else:
            skipped["no result"] = skipped.get("no result", 0) + 1
            continue
        yield line_no, result


def evaluate(path, stream):
    skipped = {}
    rows = []
    for line_no, result in read_results(path, stream, skipped):
        fields = extract(result)
        if not (search_equals(fields.get("index"), SEED_INDEX)
                and search_equals(fields.get("sourcetype"), SEED_SOURCETYPE)):
            continue
        row = run_seed(fields)
        if row is None:
            continue
        try:
            key = time_key(result.get("_time"))
        except ValueError as e:
            raise InputError("%s:%d: %s" % (path, line_no, e))
        rows.append((key, line_no, row))
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
    return [row for _, _, row in rows], skipped


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: %s FILE > rows.ndjson\n" % argv[0])
        return 2
    path = argv[1]
    try:
        with open(path, "rb") as stream:
            rows, skipped = evaluate(path, stream)
    except OSError as e:
        sys.stderr.write("%s: %s\n" % (path, e.strerror or e))
        return 2
    except InputError as e:
        sys.stderr.write("%s\n" % e)
        return 2
    out = sys.stdout.buffer
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")
    out.flush()
    for reason, count in sorted(skipped.items()):
        sys.stderr.write("%s: skipped %d line(s): %s\n" % (path, count, reason))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
