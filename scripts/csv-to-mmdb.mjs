#!/usr/bin/env node
// Builds a MaxMind DB (.mmdb, format 2.0) from ip-location-db style range CSVs
// (start,end,fields... with inclusive address ranges), so egresswatch reads every database
// through one reader (maxminddb). Used by setup-geo.sh for the ASN data, which the npm
// registry ships only as CSV, and to make the small test databases in tests/data/geo/.
//
// usage: node csv-to-mmdb.mjs --layout asn|country --out FILE [--type NAME]
//            [--desc TEXT] [--epoch SECONDS] CSV...
//   asn:     start,end,number,organization -> {autonomous_system_number, autonomous_system_organization}
//   country: start,end,code                -> {country_code}
// The record layouts are those of ip-location-db's own asn-mmdb and *-country-mmdb files.
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { isIPv4 } from 'node:net';

function usage(msg) {
  console.error(`csv-to-mmdb: ${msg}`);
  console.error('usage: node csv-to-mmdb.mjs --layout asn|country --out FILE [--type NAME] [--desc TEXT] [--epoch SECONDS] CSV...');
  process.exit(2);
}

const opts = { layout: '', out: '', type: '', desc: '', epoch: '' };
const inputs = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a.startsWith('--')) {
    const key = a.slice(2);
    if (!(key in opts) || i + 1 >= argv.length) usage(`bad option ${a}`);
    opts[key] = argv[++i];
  } else {
    inputs.push(a);
  }
}
if (!['asn', 'country'].includes(opts.layout)) usage('--layout must be asn or country');
if (!opts.out || inputs.length === 0) usage('need --out and at least one CSV');
const dbType = opts.type || (opts.layout === 'asn' ? 'ip-location-db-asn' : 'ip-location-db-country');
// A fixed epoch keeps generated test databases byte-identical between runs.
const epoch = opts.epoch ? Number(opts.epoch) : Math.floor(Date.now() / 1000);

// --- CSV ---------------------------------------------------------------------------------

// One line into fields; double quotes may wrap a field, "" inside is a quote.
function splitCsv(line) {
  const out = [];
  let i = 0;
  while (i <= line.length) {
    if (line[i] === '"') {
      let s = '';
      i++;
      while (i < line.length) {
        if (line[i] === '"') {
          if (line[i + 1] === '"') { s += '"'; i += 2; continue; }
          i++;
          break;
        }
        s += line[i++];
      }
      out.push(s);
      if (line[i] === ',') i++; else break;
    } else {
      const j = line.indexOf(',', i);
      if (j < 0) { out.push(line.slice(i)); break; }
      out.push(line.slice(i, j));
      i = j + 1;
    }
  }
  return out;
}

// Address -> [BigInt value, bits]; IPv4 lives at ::a.b.c.d of the IPv6 tree (MaxMind's layout).
function parseIp(text) {
  if (isIPv4(text)) {
    const p = text.split('.').map(Number);
    return [BigInt(((p[0] << 24) >>> 0) + (p[1] << 16) + (p[2] << 8) + p[3]), 32];
  }
  if (/^\d+$/.test(text)) return null; // the *-num.csv files: not supported (ambiguous family)
  let [head, tail] = text.includes('::') ? text.split('::') : [text, null];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = tail === null ? 0 : 8 - h.length - t.length;
  if (fill < 0 || (tail === null && h.length !== 8)) return null;
  const groups = [...h, ...Array(fill).fill('0'), ...t];
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  return [v, 128];
}

// --- search tree -------------------------------------------------------------------------

// Records: 0 = empty (the root is never a child), > 0 = node index, < 0 = -(data index + 1).
let tree = new Int32Array(1 << 20);
let nodes = 1;
function newNode(fill) {
  if ((nodes + 1) * 2 > tree.length) {
    const bigger = new Int32Array(tree.length * 2);
    bigger.set(tree);
    tree = bigger;
  }
  tree[nodes * 2] = fill;
  tree[nodes * 2 + 1] = fill;
  return nodes++;
}

function insert(value, prefixLen, data) {
  // 128-bit value as four 32-bit words for fast bit access.
  const w = [
    Number((value >> 96n) & 0xffffffffn),
    Number((value >> 64n) & 0xffffffffn),
    Number((value >> 32n) & 0xffffffffn),
    Number(value & 0xffffffffn),
  ];
  let node = 0;
  for (let i = 0; i < prefixLen; i++) {
    const bit = (w[i >> 5] >>> (31 - (i & 31))) & 1;
    const slot = node * 2 + bit;
    if (i === prefixLen - 1) {
      tree[slot] = -(data + 1);
      return;
    }
    const child = tree[slot];
    if (child > 0) {
      node = child;
    } else {
      // Empty, or a shorter prefix's data that this more specific one splits.
      const n = newNode(child);
      tree[slot] = n;
      node = n;
    }
  }
}

// Inclusive range [start, end] (in the 128-bit space) as aligned CIDR blocks.
function insertRange(start, end, data) {
  while (start <= end) {
    let k = 0n;
    while (k < 128n) {
      const size = 1n << (k + 1n);
      if (start % size !== 0n || start + size - 1n > end) break;
      k += 1n;
    }
    insert(start, 128 - Number(k), data);
    start += 1n << k;
  }
}

// --- data section ------------------------------------------------------------------------

function control(type, size) {
  const out = [];
  let first = type <= 7 ? type << 5 : 0;
  let extra = [];
  if (size < 29) first |= size;
  else if (size < 29 + 256) { first |= 29; extra = [size - 29]; }
  else if (size < 285 + 65536) { first |= 30; const s = size - 285; extra = [s >> 8, s & 255]; }
  else { first |= 31; const s = size - 65821; extra = [(s >> 16) & 255, (s >> 8) & 255, s & 255]; }
  out.push(first);
  if (type > 7) out.push(type - 7);
  return [...out, ...extra];
}
const enc = {
  str: (s) => { const b = Buffer.from(s, 'utf8'); return Buffer.concat([Buffer.from(control(2, b.length)), b]); },
  uint: (type, v) => {
    const bytes = [];
    let n = BigInt(v);
    while (n > 0n) { bytes.unshift(Number(n & 255n)); n >>= 8n; }
    return Buffer.from([...control(type, bytes.length), ...bytes]);
  },
  map: (entries) => Buffer.concat([Buffer.from(control(7, entries.length)), ...entries.flatMap(([k, v]) => [enc.str(k), v])]),
  array: (items) => Buffer.concat([Buffer.from(control(11, items.length)), ...items]),
};

const records = [];      // encoded records
const recordIndex = new Map(); // dedupe identical records
function recordFor(fields) {
  let entries;
  if (opts.layout === 'asn') {
    const asn = Number(fields[0]);
    if (!Number.isInteger(asn) || asn < 0 || asn > 0xffffffff) return -1;
    entries = [['autonomous_system_number', enc.uint(6, asn)]];
    if (fields[1]) entries.push(['autonomous_system_organization', enc.str(fields[1])]);
  } else {
    const cc = (fields[0] || '').trim().toUpperCase();
    if (!/^[A-Z]{2}$/.test(cc)) return -1;
    entries = [['country_code', enc.str(cc)]];
  }
  const key = JSON.stringify(fields.slice(0, opts.layout === 'asn' ? 2 : 1));
  let idx = recordIndex.get(key);
  if (idx === undefined) {
    idx = records.length;
    records.push(enc.map(entries));
    recordIndex.set(key, idx);
  }
  return idx;
}

// --- read ------------------------------------------------------------------------------------

let rows = 0;
let skipped = 0;
for (const file of inputs) {
  const text = readFileSync(file, 'utf8');
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const f = splitCsv(line);
    const a = parseIp(f[0] || '');
    const b = parseIp(f[1] || '');
    if (!a || !b || a[1] !== b[1] || a[0] > b[0]) { skipped++; continue; }
    const data = recordFor(f.slice(2));
    if (data < 0) { skipped++; continue; }
    insertRange(a[0], b[0], data);
    rows++;
  }
}
if (rows === 0) usage('no usable rows');

// --- write -------------------------------------------------------------------------------

const offsets = [];
let dataLen = 0;
for (const r of records) { offsets.push(dataLen); dataLen += r.length; }
const nodeCount = nodes;
const recordSize = nodeCount + 16 + dataLen < 2 ** 24 ? 24 : 32;
if (nodeCount + 16 + dataLen >= 2 ** 32) usage('database too large');
const bytesPerNode = (recordSize * 2) / 8;
const treeBuf = Buffer.alloc(nodeCount * bytesPerNode);
const resolve = (r) => (r === 0 ? nodeCount : r > 0 ? r : nodeCount + 16 + offsets[-r - 1]);
for (let n = 0; n < nodeCount; n++) {
  const l = resolve(tree[n * 2]);
  const r = resolve(tree[n * 2 + 1]);
  const at = n * bytesPerNode;
  if (recordSize === 24) {
    treeBuf.writeUIntBE(l, at, 3);
    treeBuf.writeUIntBE(r, at + 3, 3);
  } else {
    treeBuf.writeUInt32BE(l, at);
    treeBuf.writeUInt32BE(r, at + 4);
  }
}
const description = opts.desc || `${opts.layout} data from ${inputs.map((p) => p.split('/').pop()).join(', ')}`;
const metadata = enc.map([
  ['binary_format_major_version', enc.uint(5, 2)],
  ['binary_format_minor_version', enc.uint(5, 0)],
  ['build_epoch', enc.uint(9, epoch)],
  ['database_type', enc.str(dbType)],
  ['description', enc.map([['en', enc.str(description)]])],
  ['ip_version', enc.uint(5, 6)],
  ['languages', enc.array([])],
  ['node_count', enc.uint(6, nodeCount)],
  ['record_size', enc.uint(5, recordSize)],
]);
const out = Buffer.concat([
  treeBuf,
  Buffer.alloc(16),
  ...records,
  Buffer.from([0xab, 0xcd, 0xef]),
  Buffer.from('MaxMind.com', 'ascii'),
  metadata,
]);
// Write beside and rename: a reader never sees half a database.
const tmp = `${opts.out}.tmp`;
writeFileSync(tmp, out);
renameSync(tmp, opts.out);
console.log(`csv-to-mmdb: ${opts.out}: ${rows} ranges (${skipped} skipped), ${records.length} records, ${nodeCount} nodes, ${out.length} bytes`);
