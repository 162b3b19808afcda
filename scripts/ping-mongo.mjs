#!/usr/bin/env node
// Dependency-free MongoDB ping: sends {ping: 1} to the "admin" database over
// the MongoDB wire protocol (OP_MSG) and checks for {ok: 1}. It needs no
// node_modules, so scripts/services.sh can use it before `npm ci`.
//
// Usage: node scripts/ping-mongo.mjs [mongodb://host:port/db] [--timeout ms] [-q]
// The URL defaults to $MONGO_URL, then mongodb://127.0.0.1:27017/.
// Only the first host of the URL is tried; TLS and mongodb+srv are not supported.
// Exit status: 0 answered ok, 1 no (or bad) answer, 2 usage error.
import net from 'node:net';

const args = process.argv.slice(2);
let url = process.env.MONGO_URL || 'mongodb://127.0.0.1:27017/';
let timeoutMs = 2000;
let quiet = false;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '-q' || a === '--quiet') quiet = true;
  else if (a === '--timeout') timeoutMs = Number(args[++i]);
  else if (a.startsWith('--timeout=')) timeoutMs = Number(a.slice('--timeout='.length));
  else url = a;
}

const say = (msg) => {
  if (!quiet) console.log(msg);
};
const fail = (msg, code = 1) => {
  if (!quiet) console.error(msg);
  process.exit(code);
};

function parseHostPort(u) {
  const m = /^mongodb:\/\/(?:[^@/]*@)?([^/?,]+)/.exec(u);
  if (!m) return null;
  const hp = m[1];
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(hp);
  if (v6) return { host: v6[1], port: Number(v6[2] || 27017) };
  const [host, port] = hp.split(':');
  return { host: decodeURIComponent(host), port: Number(port || 27017) };
}

const target = parseHostPort(url);
if (!target || !Number.isFinite(target.port) || !Number.isFinite(timeoutMs)) {
  fail(`ping-mongo: unsupported or invalid URL/options: ${url.replace(/\/\/[^@/]*@/, '//***@')}`, 2);
}
const where = `${target.host}:${target.port}`;

// --- minimal BSON -----------------------------------------------------------
function cstring(s) {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
}
function encodeDoc(fields) {
  const parts = [];
  for (const [k, v] of fields) {
    if (typeof v === 'number') {
      const b = Buffer.alloc(4);
      b.writeInt32LE(v);
      parts.push(Buffer.from([0x10]), cstring(k), b);
    } else {
      const s = Buffer.from(v, 'utf8');
      const len = Buffer.alloc(4);
      len.writeInt32LE(s.length + 1);
      parts.push(Buffer.from([0x02]), cstring(k), len, s, Buffer.from([0]));
    }
  }
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(4);
  head.writeInt32LE(4 + body.length + 1);
  return Buffer.concat([head, body, Buffer.from([0])]);
}
// Returns the top-level fields we care about ({ok, errmsg}) of a BSON document.
function decodeTop(buf, off) {
  const end = off + buf.readInt32LE(off);
  const out = {};
  let p = off + 4;
  while (p < end - 1) {
    const type = buf[p++];
    const nameEnd = buf.indexOf(0, p);
    const name = buf.toString('utf8', p, nameEnd);
    p = nameEnd + 1;
    switch (type) {
      case 0x01:
        out[name] = buf.readDoubleLE(p);
        p += 8;
        break;
      case 0x02:
      case 0x0d:
      case 0x0e: {
        const n = buf.readInt32LE(p);
        out[name] = buf.toString('utf8', p + 4, p + 4 + n - 1);
        p += 4 + n;
        break;
      }
      case 0x03:
      case 0x04:
        p += buf.readInt32LE(p);
        break;
      case 0x05:
        p += 5 + buf.readInt32LE(p);
        break;
      case 0x06:
      case 0x0a:
      case 0x7f:
      case 0xff:
        break;
      case 0x07:
        p += 12;
        break;
      case 0x08:
        out[name] = buf[p] === 1;
        p += 1;
        break;
      case 0x09:
      case 0x11:
      case 0x12:
        out[name] = type === 0x12 ? Number(buf.readBigInt64LE(p)) : null;
        p += 8;
        break;
      case 0x0b:
        p = buf.indexOf(0, buf.indexOf(0, p) + 1) + 1;
        break;
      case 0x10:
        out[name] = buf.readInt32LE(p);
        p += 4;
        break;
      case 0x13:
        p += 16;
        break;
      default:
        return out; // unknown type: stop, keep what we have
    }
  }
  return out;
}

// --- OP_MSG ping --------------------------------------------------------------
const doc = encodeDoc([
  ['ping', 1],
  ['$db', 'admin'],
]);
const header = Buffer.alloc(16);
const requestId = Date.now() & 0x7fffffff || 1;
const msgLen = 16 + 4 + 1 + doc.length;
header.writeInt32LE(msgLen, 0);
header.writeInt32LE(requestId, 4);
header.writeInt32LE(0, 8);
header.writeInt32LE(2013, 12); // OP_MSG
const message = Buffer.concat([header, Buffer.alloc(4) /* flagBits */, Buffer.from([0]) /* kind 0 */, doc]);

const timer = setTimeout(() => fail(`ping-mongo: ${where}: no answer within ${timeoutMs} ms`), timeoutMs);
const sock = net.connect({ host: target.host, port: target.port });
let chunks = Buffer.alloc(0);
sock.on('connect', () => sock.write(message));
sock.on('error', (e) => {
  clearTimeout(timer);
  fail(`ping-mongo: ${where}: ${e.code || e.message}`);
});
sock.on('data', (d) => {
  chunks = Buffer.concat([chunks, d]);
  if (chunks.length < 4) return;
  const len = chunks.readInt32LE(0);
  if (len < 21 || len > 48 * 1024 * 1024) {
    clearTimeout(timer);
    sock.destroy();
    fail(`ping-mongo: ${where}: not a MongoDB server (bad reply length ${len})`);
  }
  if (chunks.length < len) return;
  clearTimeout(timer);
  sock.destroy();
  try {
    if (chunks.readInt32LE(12) !== 2013 || chunks.readInt32LE(8) !== requestId) throw new Error('unexpected reply header');
    const res = decodeTop(chunks, 21);
    if (Number(res.ok) === 1) {
      say(`ping-mongo: ${where}: ok`);
      process.exit(0);
    }
    fail(`ping-mongo: ${where}: ping failed: ${res.errmsg || JSON.stringify(res)}`);
  } catch (e) {
    fail(`ping-mongo: ${where}: not a MongoDB server (${e.message})`);
  }
});
sock.on('close', () => {
  if (chunks.length === 0) {
    clearTimeout(timer);
    fail(`ping-mongo: ${where}: connection closed without reply`);
  }
});
