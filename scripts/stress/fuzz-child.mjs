// The random-input campaign's child process: throws malformed and random inputs at the public
// API and checks that every call resolves or rejects with a QuiverError carrying a code.
// argv = [dir, seed, first, end, hangSeconds] (calls first..end-1), or [dir, seed, "--only", i]
// to run one call and print what it was.
//
// Call i draws everything from Rng("fuzz", seed, i), so a call can be replayed on its own.
// Tables: `keep` (local) and its copy in memory are only read, or written with data that must
// be refused; at the end their row count and id checksum must be what they were. The scratch
// tables (local and memory) take random writes of every kind. Prints JSON lines: progress
// records, then one `done` record.
import { closeSync, existsSync, ftruncateSync, openSync, readdirSync, writeFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int32,
  Int64,
  List,
  Schema,
  Table as ArrowTable,
  tableFromArrays,
  tableToIPC,
  Utf8,
  vectorFromArray,
} from "apache-arrow";
import { connect, Index, InternalError, QuiverError } from "../../dist/index.js";
import { Rng } from "./rng.mjs";

const args = process.argv.slice(2);
const [dir, seed] = args;
const only = args[2] === "--only" ? Number(args[3]) : null;
const first = only ?? Number(args[2]);
const end = only === null ? Number(args[3]) : only + 1;
const hangMs = Number(args[4] ?? 30) * 1000;
const MARK = `qfz-escape-${seed}`;

/** Errors thrown on purpose by hostile inputs (throwing getters, iterators): the caller's own. */
class HostileError extends Error {}

// ---------------------------------------------------------------- outcomes
const stats = {
  calls: 0,
  resolved: 0,
  rejectedTyped: 0,
  hostile: 0,
  byClass: {},
  byCategory: {},
  failures: 0,
  failuresByKind: {},
  failureExamples: [],
  internal: 0,
  internalByKind: {},
  internalExamples: [],
  acceptedInvalid: 0,
  acceptedInvalidExamples: [],
};
let current = { i: -1, desc: "" };
function failure(kind, detail) {
  stats.failures++;
  stats.failuresByKind[kind] = (stats.failuresByKind[kind] ?? 0) + 1;
  if (stats.failureExamples.length < 40) stats.failureExamples.push(`${kind}: call #${current.i} ${current.desc} → ${detail}`);
}
process.on("unhandledRejection", (e) => failure("unhandledRejection", describeError(e)));
process.on("uncaughtException", (e) => failure("uncaughtException", describeError(e)));

function describeError(e) {
  if (e instanceof Error) return `${e.constructor.name}${e.code ? ` [${e.code}]` : ""}: ${String(e.message).slice(0, 300)}`;
  return `non-error ${repr(e)}`;
}

/** Short text for any value, for failure reports. Never throws. */
function repr(v, max = 240) {
  let s;
  try {
    if (typeof v === "string") s = JSON.stringify(v.length > max ? `${v.slice(0, max)}…(${v.length} chars)` : v);
    else if (typeof v === "bigint") s = `${v}n`;
    else if (typeof v === "symbol" || typeof v === "function") s = String(v);
    else if (v instanceof Uint8Array) {
      s = `${v.constructor.name}(${v.length})`;
      // Replaying one call (--only) keeps the bytes it sent, to reproduce it elsewhere.
      if (only !== null) {
        const file = join(dir, `call-${only}-${v.length}.bin`);
        writeFileSync(file, v);
        s += ` [${file}]`;
      }
    }
    else if (Array.isArray(v) && v.length > 0 && Object.keys(v).length < v.length) s = `sparse array of ${v.length} (${Object.keys(v).length} set)`;
    else if (ArrayBuffer.isView(v)) s = `${v.constructor.name}(${v.length ?? v.byteLength})`;
    else if (v instanceof ArrowTable) s = `ArrowTable(${v.numRows} rows: ${v.schema.fields.map((f) => `${f.name}:${f.type}`).join(", ")})`;
    else if (v && typeof v === "object" && v.__repr) s = v.__repr;
    else s = JSON.stringify(v, (_, x) => (typeof x === "bigint" ? `${x}n` : typeof x === "number" && !Number.isFinite(x) ? String(x) : x));
    if (s === undefined) s = String(v);
  } catch {
    s = "<unprintable>";
  }
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

// ---------------------------------------------------------------- tables
const DIM = 4;
const ROWS = 1000;
const keepSchema = new Schema([
  new Field("id", new Int64(), false),
  new Field("vector", new FixedSizeList(DIM, new Field("item", new Float32(), true)), false),
  new Field("text", new Utf8(), false),
  new Field("price", new Float64(), false),
  new Field("tags", new List(new Field("item", new Utf8(), true)), false),
]);
const keepRow = (id) => ({
  id: BigInt(id),
  vector: Float32Array.from({ length: DIM }, (_, j) => ((id * (j + 1)) % 17) / 4),
  text: `row ${id} ${["alpha", "beta", "gamma"][id % 3]}`,
  price: (id % 100) / 4,
  tags: id % 4 === 0 ? [] : [`t${id % 7}`],
});
const keepRows = Array.from({ length: ROWS }, (_, i) => keepRow(i));

const keepDb = await connect(join(dir, "keep-db"));
const keep = await keepDb.createTable("keep", keepRows, { schema: keepSchema, existOk: true });
const memDb = await connect(`memory://fuzz-${seed}-${first}`);
const memKeep = await memDb.createTable("keep", keepRows, { schema: keepSchema });
await keep.createIndex("vector", { config: Index.ivfFlat({ numPartitions: 4 }) });
const scratchLocalDb = await connect(join(dir, "scratch-db"));
const namesDb = await connect(join(dir, "names", "db"));
const scratch = { local: null, memory: null };
async function resetScratch() {
  const rows = keepRows.slice(0, 300);
  scratch.local = await scratchLocalDb.createTable("s", rows, { schema: keepSchema, mode: "overwrite" });
  scratch.memory = await memDb.createTable("s", rows, { schema: keepSchema, mode: "overwrite" });
}
await resetScratch();
const closedDb = await connect(join(dir, "closed-db"));
const closedTable = await closedDb.createTable("c", keepRows.slice(0, 5), { schema: keepSchema, existOk: true });
closedDb.close();

async function fingerprint(table) {
  let sum = 0n;
  let mix = 0n;
  const rows = await table.query().select(["id"]).toArray();
  for (const r of rows) {
    sum += r.id;
    mix ^= (r.id * 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
  }
  return { rows: rows.length, count: await table.countRows(), checksum: `${sum}:${mix.toString(16)}` };
}
const keepBefore = await fingerprint(keep);
const memBefore = await fingerprint(memKeep);

// ---------------------------------------------------------------- generators
const COLUMNS = ["id", "vector", "text", "price", "tags", "_rowid", "_distance", "missing", "ID", '"id"', "`text`", "tags.item", "a.b", '"Quoted Name"'];
const LITERALS = [
  "0", "1", "-1", "42", "0.5", "-0.0", "1e308", "1e-308", "1e999", "9223372036854775807", "9223372036854775808",
  "-9223372036854775808", "99999999999999999999999999", "0x10", "'a'", "''", "'it''s'", "'row 1 alpha'", "'%'", "'\\'",
  "NULL", "TRUE", "FALSE", "DATE '2024-01-31'", "DATE '2024-02-30'", "DATE 'x'", "TIMESTAMP '2024-01-31 12:00:00'",
  "TIMESTAMP 'nope'", "'🙂'", "'\u0000'", "NaN", "'NaN'", "INTERVAL '1' DAY", "[1, 2]", "X'00'",
];
const OPERATORS = ["=", "!=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "||", "AND", "OR", "NOT", "IS", "IS NOT", "IN", "NOT IN", "BETWEEN", "LIKE", "ILIKE", "NOT LIKE", "ESCAPE", "::", "->", "=="];
const PUNCT = ["(", ")", ",", "[", "]", ".", ";", "'", '"', "`", "--", "/*", "*/", "?", "$1", ":x", "@", "#", "{", "}", "\\", "\n", "\t"];
const FUNCTIONS = [
  "lower(", "upper(", "length(", "char_length(", "starts_with(", "ends_with(", "contains(", "regexp_match(", "abs(", "coalesce(",
  "array_has(", "array_has_any(", "array_has_all(", "array_length(", "CAST(", "nosuchfn(", "count(", "sum(", "now(", "random(",
];
const KEYWORDS = ["AS", "BIGINT", "INT", "INT UNSIGNED", "DOUBLE", "STRING", "DATE", "TIMESTAMP", "BOOLEAN", "TINYINT", "DECIMAL(10,2)", "SELECT", "FROM", "WHERE", "DROP TABLE keep", "UNION", "CASE", "WHEN", "THEN", "ELSE", "END", "EXISTS", "ALL", "ANY", "TRUE", "NULL"];
const REGEXES = ["'^row 1'", "'(a+)+$'", "'['", "'\\\\p{L}+'", "'(?i)ALPHA'", "'a{1000000}'", "'\\\\'", "''", "'(((('"];

function randomString(rng, max = 40) {
  const n = rng.int(0, max);
  let s = "";
  for (let k = 0; k < n; k++) {
    const r = rng.next();
    if (r < 0.6) s += String.fromCharCode(rng.int(32, 126));
    else if (r < 0.75) s += String.fromCharCode(rng.int(0, 31));
    else if (r < 0.85) s += String.fromCharCode(rng.int(0xd800, 0xdfff)); // lone surrogates
    else s += String.fromCodePoint(rng.int(0x80, 0x10ffff));
  }
  return s;
}

function expression(rng, depth) {
  if (depth <= 0 || rng.chance(0.3)) {
    const r = rng.next();
    if (r < 0.45) return rng.pick(COLUMNS);
    if (r < 0.9) return rng.pick(LITERALS);
    return `'${randomString(rng, 8).replace(/'/g, "''")}'`;
  }
  const r = rng.next();
  const sub = () => expression(rng, depth - 1);
  if (r < 0.35) return `${sub()} ${rng.pick(OPERATORS.slice(0, 16))} ${sub()}`;
  if (r < 0.45) return `(${sub()})`;
  if (r < 0.5) return `NOT ${sub()}`;
  if (r < 0.6) return `${sub()} IS ${rng.pick(["", "NOT "])}${rng.pick(["NULL", "TRUE", "FALSE"])}`;
  if (r < 0.68) return `${sub()} ${rng.pick(["IN", "NOT IN"])} (${Array.from({ length: rng.int(0, 6) }, sub).join(", ")})`;
  if (r < 0.73) return `${sub()} BETWEEN ${sub()} AND ${sub()}`;
  if (r < 0.8) return `${sub()} ${rng.pick(["LIKE", "ILIKE", "NOT LIKE"])} ${rng.pick(["'%a%'", "'row _'", "'\\%'", "'%'", sub()])}`;
  if (r < 0.85) return `regexp_match(${sub()}, ${rng.pick(REGEXES)}${rng.chance(0.3) ? `, '${rng.pick(["i", "m", "s", "x", "q", ""])}'` : ""})`;
  if (r < 0.93) {
    const fn = rng.pick(FUNCTIONS);
    if (fn === "CAST(") return `CAST(${sub()} AS ${rng.pick(KEYWORDS.slice(1, 11))})`;
    return `${fn}${Array.from({ length: rng.int(0, 3) }, sub).join(", ")})`;
  }
  return `${sub()} ${rng.pick(["AND", "OR"])} ${sub()}`;
}

function tokenSoup(rng, n) {
  const parts = [];
  for (let k = 0; k < n; k++) {
    const r = rng.next();
    if (r < 0.25) parts.push(rng.pick(COLUMNS));
    else if (r < 0.45) parts.push(rng.pick(LITERALS));
    else if (r < 0.65) parts.push(rng.pick(OPERATORS));
    else if (r < 0.8) parts.push(rng.pick(PUNCT));
    else if (r < 0.9) parts.push(rng.pick(FUNCTIONS));
    else if (r < 0.97) parts.push(rng.pick(KEYWORDS));
    else parts.push(randomString(rng, 6));
  }
  return parts.join(rng.chance(0.8) ? " " : "");
}

/** Mutates text: deletes, duplicates, swaps or inserts characters. */
function mutate(rng, s) {
  const chars = [...s];
  for (let k = rng.int(1, 4); k > 0 && chars.length > 0; k--) {
    const at = rng.int(0, chars.length - 1);
    const r = rng.next();
    if (r < 0.3) chars.splice(at, 1);
    else if (r < 0.5) chars.splice(at, 0, chars[at]);
    else if (r < 0.7) chars.splice(at, 0, rng.pick(PUNCT));
    else if (r < 0.85) chars.splice(at, 0, String.fromCharCode(rng.int(0, 255)));
    else chars.splice(at, 0, ` ${rng.pick(OPERATORS)} `);
  }
  return chars.join("");
}

/** A filter: mostly text of every kind of wrongness, sometimes not text at all. */
function filter(rng) {
  const r = rng.next();
  if (r < 0.3) return expression(rng, rng.int(0, 5));
  if (r < 0.5) return mutate(rng, expression(rng, rng.int(1, 4)));
  if (r < 0.68) return tokenSoup(rng, rng.int(1, 30));
  if (r < 0.74) return randomString(rng, 200);
  if (r < 0.8) {
    // Long flat chains, sometimes broken somewhere.
    const n = rng.int(10, rng.chance(0.1) ? 20_000 : 2000);
    const op = rng.pick([" OR ", " AND "]);
    const term = rng.pick([(k) => `id = ${k}`, (k) => `id != ${k}`, (k) => `text = 'row ${k}'`, (k) => `price > ${k / 7}`]);
    let s = Array.from({ length: n }, (_, k) => term(k)).join(op);
    if (rng.chance(0.3)) s = mutate(rng, s);
    return s;
  }
  if (r < 0.86) {
    // Deep nesting of every kind.
    const n = rng.int(50, rng.chance(0.1) ? 30_000 : 3000);
    const kind = rng.int(0, 5);
    if (kind === 0) return `${"(".repeat(n)}id = 1${")".repeat(n)}`;
    if (kind === 1) return `${"NOT ".repeat(n)}id = 1`;
    if (kind === 2) return `id = ${Array(n).fill("1").join(rng.pick([" + ", " * ", " - ", " / "]))}`;
    if (kind === 3) return `${"abs(".repeat(n)}price${")".repeat(n)} > 1`;
    if (kind === 4) return `${"(".repeat(n)}id = 1${")".repeat(rng.int(0, n))}`;
    return `id = ${"-".repeat(n)}1`;
  }
  if (r < 0.9) return rng.pick(["", " ", "\u0000", "--", "/*", "'", "id = 1; DROP TABLE keep", "SELECT * FROM keep", "id = 1 --", "1", "TRUE", "NULL", "_rowid >= 0"]);
  return anyValue(rng, 1);
}

/** Any JS value at all, hostile ones included. */
function anyValue(rng, depth = 2) {
  const r = rng.int(0, 41);
  switch (r) {
    case 0: return undefined;
    case 1: return null;
    case 2: return rng.chance(0.5);
    case 3: return 0;
    case 4: return -0;
    case 5: return rng.int(-5, 5);
    case 6: return rng.next() * 1e6 - 5e5;
    case 7: return NaN;
    case 8: return rng.chance(0.5) ? Infinity : -Infinity;
    case 9: return 2 ** 53 + rng.int(0, 4);
    case 10: return 1e308;
    case 11: return BigInt(rng.int(-3, 3));
    case 12: return 2n ** 64n;
    case 13: return "";
    case 14: return randomString(rng, 20);
    case 15: return "x".repeat(rng.int(1000, 100_000));
    case 16: return Symbol("fuzz");
    case 17: return () => 1;
    case 18: return {};
    case 19: return [];
    case 20: return depth > 0 ? Array.from({ length: rng.int(1, 4) }, () => anyValue(rng, depth - 1)) : [1, 2];
    case 21: return new Map([["a", 1]]);
    case 22: return new Date(rng.chance(0.5) ? NaN : 0);
    case 23: return Object.create(null);
    case 24: return rng.bytes(rng.int(0, 64));
    case 25: return new Float32Array(rng.int(0, 8)).fill(rng.next());
    case 26: return Buffer.from(randomString(rng, 10));
    case 27: return Promise.resolve(1);
    case 28: return hostileObject(rng);
    case 29: return { toString: () => "id = 1", valueOf: () => 1 };
    case 30: return new Array(5); // holes
    case 31: return depth > 0 ? Object.fromEntries(Array.from({ length: rng.int(1, 3) }, () => [rng.pick(["mode", "where", "schema", "limit", "version", "x", "__proto__"]), anyValue(rng, depth - 1)])) : { a: 1 };
    case 32: return new ArrayBuffer(rng.int(0, 16));
    case 33: return new DataView(new ArrayBuffer(8));
    case 34: return Number.MAX_SAFE_INTEGER;
    case 35: return -1;
    case 36: return 1.5;
    case 37: return new Error("not data");
    case 38: return new Set([1]);
    case 39: return new WeakMap();
    case 40: return /regex/;
    default: return Number.MIN_VALUE;
  }
}

/** An object whose property reads throw the caller's own error. */
function hostileObject(rng) {
  const kind = rng.int(0, 2);
  if (kind === 0) {
    return new Proxy(
      {},
      {
        get(_, key) {
          if (key === "then") return undefined;
          throw new HostileError(`hostile get ${String(key)}`);
        },
        has() {
          throw new HostileError("hostile has");
        },
      },
    );
  }
  if (kind === 1) {
    return {
      __repr: "{ toString() throws }",
      toString() {
        throw new HostileError("hostile toString");
      },
      valueOf() {
        throw new HostileError("hostile valueOf");
      },
    };
  }
  return Object.defineProperty({ __repr: "{ get mode() throws }" }, "mode", {
    get() {
      throw new HostileError("hostile getter");
    },
    enumerable: true,
  });
}

function selectList(rng) {
  const r = rng.next();
  if (r < 0.4) return rng.sample(COLUMNS, rng.int(0, 4));
  if (r < 0.55) return [rng.pick(COLUMNS), rng.pick(COLUMNS)]; // maybe duplicated
  if (r < 0.7) return Object.fromEntries(Array.from({ length: rng.int(0, 3) }, () => [randomString(rng, 6), rng.chance(0.5) ? rng.pick(COLUMNS) : filter(rng)]));
  if (r < 0.8) return [randomString(rng, 10)];
  if (r < 0.85) return Array.from({ length: 5000 }, (_, k) => `c${k}`);
  return anyValue(rng);
}

function vectorArg(rng) {
  const r = rng.int(0, 15);
  const len = rng.pick([0, 1, 3, 4, 4, 4, 5, 8, 1000]);
  switch (r) {
    case 0: return Array.from({ length: len }, () => rng.next());
    case 1: return Float32Array.from({ length: len }, () => rng.next());
    case 2: return [1, NaN, 0, 0];
    case 3: return [1, Infinity, 0, 0];
    case 4: return ["1", "2", "3", "4"];
    case 5: return [1n, 2n, 3n, 4n];
    case 6: return new Float64Array(4);
    case 7: return new Uint8Array(4);
    case 8: return [[1, 2], [3, 4]];
    case 9: return new Array(4);
    case 10: return [1, 2, 3, { valueOf: () => 4 }];
    case 11: return [1e39, -1e39, 0, 0]; // overflows float32
    case 12: return new Int8Array(4);
    default: return anyValue(rng);
  }
}

// Real IPC of the keep schema (for scratch tables: truncated, flipped, or whole).
const goodIpc = tableToIPC(tableFromRows(keepRows.slice(0, 20)), "stream");
const goodFileIpc = tableToIPC(tableFromRows(keepRows.slice(0, 5)), "file");
// IPC whose schema is not keep's: never accepted by keep.
const otherIpc = tableToIPC(tableFromArrays({ a: Int32Array.from([1, 2, 3]), b: ["x", "y", "z"] }), "stream");
const shortVectorIpc = tableToIPC(
  new ArrowTable({
    id: vectorFromArray([1n], new Int64()),
    vector: vectorFromArray([[1, 2]], new FixedSizeList(2, new Field("item", new Float32(), true))),
  }),
  "stream",
);

function tableFromRows(rows) {
  return new ArrowTable({
    id: vectorFromArray(rows.map((r) => r.id), new Int64()),
    vector: vectorFromArray(rows.map((r) => Array.from(r.vector)), new FixedSizeList(DIM, new Field("item", new Float32(), true))),
    text: vectorFromArray(rows.map((r) => r.text), new Utf8()),
    price: vectorFromArray(rows.map((r) => r.price), new Float64()),
    tags: vectorFromArray(rows.map((r) => r.tags), new List(new Field("item", new Utf8(), true))),
  });
}

function damagedIpc(rng, bytes) {
  const r = rng.next();
  if (r < 0.4) return bytes.slice(0, rng.int(0, bytes.length - 1));
  const copy = Uint8Array.from(bytes);
  for (let k = rng.int(1, 8); k > 0; k--) copy[rng.int(0, copy.length - 1)] ^= 1 << rng.int(0, 7);
  if (r < 0.8) return copy;
  return Buffer.concat([copy, rng.bytes(rng.int(1, 64))]);
}

/** Data that keep must refuse: every row invalid, never an empty source. */
function invalidData(rng) {
  const r = rng.int(0, 19);
  const n = rng.int(1, 5);
  const base = () => ({ ...keepRow(5000 + rng.int(0, 1000)) });
  switch (r) {
    case 0: return rng.bytes(rng.int(1, 300));
    case 1: return damagedIpc(rng, otherIpc);
    case 2: return otherIpc;
    case 3: return shortVectorIpc;
    case 4: return Array.from({ length: n }, () => ({ ...base(), vector: Array.from({ length: rng.pick([0, 1, 3, 5, 100]) }, () => rng.next()) }));
    case 5: return Array.from({ length: n }, () => ({ ...base(), vector: "abcd" }));
    case 6: return Array.from({ length: n }, () => ({ ...base(), vector: [1, 2, "x", 4] }));
    case 7: return Array.from({ length: n }, () => ({ ...base(), id: "not a number", vector: [1, 2, 3] }));
    case 8: return Array.from({ length: n }, () => ({ ...base(), vector: null }));
    case 9: return Array.from({ length: n }, () => ({ id: 1n }));
    case 10: return [1, 2, 3];
    case 11: return ["a"];
    case 12: return [null];
    case 13: return Array.from({ length: n }, () => ({ ...base(), vector: [1, 2, 3], text: anyValue(rng, 0) }));
    case 14: return tableFromArrays({ other: Float64Array.from([1, 2]) });
    case 15: return new Uint8Array(0);
    case 16: {
      // A stream whose second chunk is invalid (the first alone is valid!).
      async function* s() {
        yield keepRows.slice(0, 2).map((x) => ({ ...x, id: x.id + 100_000n }));
        yield [{ ...base(), vector: [1] }];
      }
      return s();
    }
    case 17: {
      async function* s() {
        yield keepRows.slice(0, 2).map((x) => ({ ...x, id: x.id + 200_000n }));
        throw new HostileError("source failed");
      }
      return s();
    }
    case 18: return anyValue(rng);
    default: return Array.from({ length: n }, () => ({ ...base(), vector: [1, 2, 3], tags: "not a list" }));
  }
}

/** Data for scratch tables: anything, valid or not. */
function anyData(rng) {
  const r = rng.next();
  if (r < 0.25) return keepRows.slice(0, rng.int(0, 30)).map((x) => ({ ...x, id: x.id + BigInt(rng.int(0, 10_000)) }));
  if (r < 0.35) return damagedIpc(rng, rng.chance(0.7) ? goodIpc : goodFileIpc);
  if (r < 0.4) return rng.chance(0.5) ? goodIpc : goodFileIpc;
  if (r < 0.45) return tableFromRows(keepRows.slice(0, 3));
  if (r < 0.5) return [{ ...keepRow(1), vector: [NaN, Infinity, -Infinity, 0] }];
  if (r < 0.55) return [{ ...keepRow(2), extra: 1, text: "é\u0000🙂".repeat(rng.int(0, 1000)) }];
  return invalidData(rng);
}

function options(rng, keys) {
  if (rng.chance(0.3)) return anyValue(rng);
  const o = {};
  for (const k of keys) if (rng.chance(0.5)) o[k] = rng.chance(0.5) ? anyValue(rng, 1) : rng.pick(["append", "overwrite", "create", true, 1, "x"]);
  return o;
}

function tableName(rng) {
  return rng.pick([
    `../${MARK}`, `../../${MARK}`, `../../../${MARK}`, `/${MARK}`, `${join(dir, MARK)}`, `a/b`, `a\\b`, `a\u0000b`, "x".repeat(rng.int(100, 5000)), "é🙂", ".", "..", " ", "", "s", "keep",
    "../keep-db/keep", "../../keep-db/keep", `${MARK}.quiver`, "%2e%2e", "con", "nul", "a".repeat(128), "a".repeat(129), "-", "_", `${MARK}-${rng.int(0, 50)}`, randomString(rng, 12), "file:///etc", "memory://x",
  ]);
}

// ---------------------------------------------------------------- calls
/** Builds a random query or search on `table`: random builder calls with random arguments. */
function buildQuery(rng, table, vectorSearch) {
  const builderLog = [];
  let q = vectorSearch ? table.search(rng.chance(0.7) ? vectorArg(rng) : keepRow(rng.int(0, 999)).vector) : table.query();
  builderLog.push(vectorSearch ? "search(…)" : "query()");
  const steps = rng.int(0, 5);
  for (let k = 0; k < steps; k++) {
    const valid = rng.chance(0.5);
    const choices = vectorSearch
      ? ["where", "select", "limit", "offset", "withRowId", "column", "distanceType", "nprobes", "refineFactor", "ef", "postfilter", "bypassVectorIndex", "distanceRange"]
      : ["where", "select", "limit", "offset", "withRowId"];
    const m = rng.pick(choices);
    let arg;
    switch (m) {
      case "where": arg = [filter(rng)]; break;
      case "select": arg = [selectList(rng)]; break;
      case "limit":
      case "offset":
      case "nprobes":
      case "refineFactor":
      case "ef": arg = [valid ? rng.int(0, 50) : anyValue(rng)]; break;
      case "column": arg = [valid ? rng.pick(["vector", "price", "text", "missing"]) : anyValue(rng)]; break;
      case "distanceType": arg = [valid ? rng.pick(["l2", "cosine", "dot", "hamming"]) : anyValue(rng)]; break;
      case "distanceRange": arg = [rng.chance(0.5) ? rng.next() * 10 : anyValue(rng), rng.chance(0.5) ? rng.next() * 10 : anyValue(rng)]; break;
      default: arg = rng.chance(0.8) ? [] : [anyValue(rng)];
    }
    builderLog.push(`${m}(${arg.map((a) => repr(a, 80)).join(", ")})`);
    q = q[m](...arg);
  }
  return { q, text: builderLog.join(".") };
}

async function consume(rng, q) {
  const t = rng.int(0, 5);
  if (t === 0) return q.toArray(rng.chance(0.7) ? undefined : options(rng, ["bigIntAsNumber"]));
  if (t === 1) return q.toArrow();
  if (t === 2) return q.explainPlan(rng.chance(0.8) ? rng.chance(0.5) : anyValue(rng));
  if (t === 3) return q.analyzePlan();
  let batches = 0;
  for await (const _ of q) if (++batches >= 2) break;
  return batches;
}

const CATEGORIES = {
  // Reads of keep (local, with an index) and its in-memory copy.
  async count(rng, ctx) {
    const f = rng.chance(0.1) ? undefined : filter(rng);
    ctx.desc = `keep.countRows(${repr(f)})`;
    return (rng.chance(0.8) ? keep : memKeep).countRows(f);
  },
  async query(rng, ctx) {
    const { q, text } = buildQuery(rng, rng.chance(0.7) ? keep : memKeep, false);
    ctx.desc = `keep.${text}`;
    return consume(rng, q);
  },
  async search(rng, ctx) {
    const { q, text } = buildQuery(rng, rng.chance(0.7) ? keep : memKeep, true);
    ctx.desc = `keep.${text}`;
    return consume(rng, q);
  },
  async take(rng, ctx) {
    const byId = rng.chance(0.5);
    const list = rng.chance(0.6) ? Array.from({ length: rng.int(0, 10) }, () => (rng.chance(0.7) ? rng.int(-2, 1200) : anyValue(rng, 0))) : anyValue(rng);
    const cols = rng.chance(0.6) ? undefined : selectList(rng);
    ctx.desc = `keep.${byId ? "takeRowIds" : "takeOffsets"}(${repr(list)}, ${repr(cols)})`;
    return byId ? keep.takeRowIds(list, cols) : keep.takeOffsets(list, cols);
  },
  async keepMeta(rng, ctx) {
    const m = rng.pick(["schema", "version", "listVersions", "stats", "listIndices", "indexStats", "checkout", "display", "toArrow", "countRows"]);
    const arg = m === "indexStats" ? (rng.chance(0.3) ? "vector_idx" : anyValue(rng)) : m === "checkout" ? (rng.chance(0.3) ? rng.int(-1, 3) : anyValue(rng)) : undefined;
    ctx.desc = `keep.${m}(${repr(arg)})`;
    const t = rng.chance(0.5) ? keep : memKeep;
    if (m === "checkout") {
      try {
        return await t.checkout(arg);
      } finally {
        await t.checkoutLatest();
      }
    }
    return t[m](arg);
  },
  // Writes keep must refuse.
  async keepAdd(rng, ctx) {
    const data = invalidData(rng);
    const opts = rng.chance(0.6) ? undefined : options(rng, ["mode", "schema"]);
    ctx.desc = `keep.add(${repr(data)}, ${repr(opts)})`;
    ctx.mustFail = true;
    // Never overwrite keep: an overwrite of invalid data must fail too, but keep it out.
    if (opts && typeof opts === "object" && !(opts instanceof Promise)) {
      try {
        if (opts.mode === "overwrite") opts.mode = "append";
      } catch {
        /* hostile */
      }
    }
    return (rng.chance(0.8) ? keep : memKeep).add(data, opts);
  },
  async keepMerge(rng, ctx) {
    const on = rng.chance(0.6) ? "id" : rng.chance(0.5) ? rng.pick([["id", "text"], "missing", [], "vector", "price"]) : anyValue(rng);
    const data = invalidData(rng);
    let b;
    ctx.desc = `keep.mergeInsert(${repr(on)})…execute(${repr(data)})`;
    ctx.mustFail = true;
    const t = rng.chance(0.8) ? keep : memKeep;
    b = t.mergeInsert(on);
    if (rng.chance(0.7)) b = b.whenMatchedUpdateAll(rng.chance(0.6) ? undefined : rng.chance(0.5) ? { where: filter(rng) } : anyValue(rng));
    if (rng.chance(0.7)) b = b.whenNotMatchedInsertAll();
    if (rng.chance(0.3)) b = b.whenNotMatchedBySourceDelete(rng.chance(0.6) ? undefined : rng.chance(0.5) ? { where: filter(rng) } : anyValue(rng));
    return b.execute(data);
  },
  async keepCreate(rng, ctx) {
    const data = rng.chance(0.5) ? invalidData(rng) : keepRows.slice(0, 3);
    const opts = rng.chance(0.5) ? { mode: "create", existOk: rng.chance(0.5) } : options(rng, ["existOk", "schema"]);
    if (opts && typeof opts === "object") {
      try {
        if ("mode" in opts && opts.mode !== "create") opts.mode = "create";
      } catch {
        /* hostile */
      }
    }
    ctx.desc = `keepDb.createTable("keep", ${repr(data)}, ${repr(opts)})`;
    return (rng.chance(0.7) ? keepDb : memDb).createTable("keep", data, opts);
  },
  async keepNoWrite(rng, ctx) {
    // Argument errors of writes: refused before anything is read.
    const m = rng.pick(["delete", "update", "addColumns", "alterColumns", "dropColumns", "createIndex", "dropIndex", "restore"]);
    const arg = m === "delete" ? anyValueNotString(rng) : m === "update" ? updateGarbage(rng) : anyValueNotString(rng);
    ctx.desc = `keep.${m}(${repr(arg)}) [argument error]`;
    ctx.mustFail = true;
    // restore() with no version restores the checked-out one (a new version, same rows): valid.
    if (m === "restore" && (typeof arg === "number" || arg === undefined)) return "skipped";
    if (m === "restore" || m === "createIndex" || m === "dropColumns" || m === "alterColumns" || m === "addColumns") {
      if (!isHarmless(arg)) return "skipped";
    }
    return keep[m](arg);
  },
  // Random writes to scratch tables.
  async scratchWrite(rng, ctx) {
    const t = rng.chance(0.5) ? scratch.local : scratch.memory;
    const m = rng.pick(["delete", "update", "add", "merge", "addColumns", "alterColumns", "dropColumns", "createIndex", "optimize", "restore", "checkout", "dropIndex"]);
    switch (m) {
      case "delete": {
        const f = filter(rng);
        ctx.desc = `scratch.delete(${repr(f)})`;
        return t.delete(f);
      }
      case "update": {
        const o = rng.chance(0.6)
          ? { where: rng.chance(0.3) ? undefined : filter(rng), ...(rng.chance(0.5) ? { valuesSql: { [rng.pick(COLUMNS)]: filter(rng) } } : { values: { [rng.pick(COLUMNS)]: anyValue(rng, 1) } }) }
          : updateGarbage(rng);
        ctx.desc = `scratch.update(${repr(o)})`;
        return t.update(o);
      }
      case "add": {
        const d = anyData(rng);
        const o = rng.chance(0.7) ? undefined : options(rng, ["mode", "schema"]);
        ctx.desc = `scratch.add(${repr(d)}, ${repr(o)})`;
        return t.add(d, o);
      }
      case "merge": {
        const d = anyData(rng);
        ctx.desc = `scratch.mergeInsert("id")…execute(${repr(d)})`;
        let b = t.mergeInsert(rng.chance(0.8) ? "id" : anyValue(rng));
        if (rng.chance(0.7)) b = b.whenMatchedUpdateAll(rng.chance(0.5) ? undefined : { where: filter(rng) });
        if (rng.chance(0.7)) b = b.whenNotMatchedInsertAll();
        if (rng.chance(0.1)) b = b.whenNotMatchedBySourceDelete(rng.chance(0.5) ? undefined : { where: filter(rng) });
        return b.execute(d);
      }
      case "addColumns": {
        const a = rng.chance(0.6) ? [{ name: rng.chance(0.5) ? `c${rng.int(0, 9)}` : anyValue(rng, 0), valueSql: filter(rng) }] : anyValue(rng);
        ctx.desc = `scratch.addColumns(${repr(a)})`;
        return t.addColumns(a);
      }
      case "alterColumns": {
        const a = rng.chance(0.6)
          ? [{ path: rng.pick([...COLUMNS, "c1"]), ...(rng.chance(0.5) ? { rename: rng.chance(0.5) ? `r${rng.int(0, 9)}` : anyValue(rng, 0) } : {}), ...(rng.chance(0.3) ? { nullable: anyValue(rng, 0) } : {}), ...(rng.chance(0.3) ? { dataType: rng.chance(0.5) ? rng.pick(["int64", "float64", "large_utf8", "int8", "nope"]) : anyValue(rng, 0) } : {}) }]
          : anyValue(rng);
        ctx.desc = `scratch.alterColumns(${repr(a)})`;
        return t.alterColumns(a);
      }
      case "dropColumns": {
        const a = rng.chance(0.6) ? rng.sample([...COLUMNS, "c1", "c2"], rng.int(0, 2)).filter((c) => c !== "id") : anyValue(rng);
        ctx.desc = `scratch.dropColumns(${repr(a)})`;
        return t.dropColumns(a);
      }
      case "createIndex": {
        const col = rng.chance(0.7) ? rng.pick(["vector", "price", "text", "missing"]) : anyValue(rng, 0);
        const cfgOpts = rng.chance(0.5)
          ? { numPartitions: rng.pick([1, 2, 4, 0, -1, 1e9, 2.5, NaN]), numSubVectors: rng.pick([undefined, 1, 2, 3, 4, 0, 8]), distanceType: rng.pick([undefined, "l2", "cosine", "dot", "hamming", "x"]), maxIterations: rng.pick([undefined, 1, 5, 0]), sampleRate: rng.pick([undefined, 1, 4, 0]) }
          : anyValue(rng, 1);
        let config;
        try {
          config = rng.chance(0.5) ? Index.ivfPq(cfgOpts) : Index.ivfFlat(cfgOpts);
        } catch (e) {
          ctx.desc = `Index.ivf…(${repr(cfgOpts)})`;
          throw e;
        }
        const o = rng.chance(0.8) ? { config, replace: rng.chance(0.8) ? true : anyValue(rng, 0) } : options(rng, ["config", "replace", "name", "progress"]);
        ctx.desc = `scratch.createIndex(${repr(col)}, ${repr(cfgOpts)})`;
        return t.createIndex(col, o);
      }
      case "optimize":
        ctx.desc = "scratch.optimize()";
        return t.optimize();
      case "restore":
      case "checkout": {
        const v = rng.chance(0.5) ? rng.int(-1, 5) : anyValue(rng, 0);
        ctx.desc = `scratch.${m}(${repr(v)})`;
        try {
          return await t[m](v);
        } finally {
          await t.checkoutLatest();
        }
      }
      default: {
        const name = rng.chance(0.5) ? "vector_idx" : anyValue(rng, 0);
        ctx.desc = `scratch.dropIndex(${repr(name)})`;
        return t.dropIndex(name);
      }
    }
  },
  // Table names with path tricks.
  async names(rng, ctx) {
    const name = tableName(rng);
    const m = rng.pick(["createTable", "openTable", "dropTable", "tableNames", "createEmptyTable"]);
    if (m === "createTable") {
      const opts = rng.chance(0.7) ? { mode: rng.pick(["create", "overwrite"]), existOk: rng.chance(0.5) } : options(rng, ["mode", "existOk", "schema"]);
      ctx.desc = `namesDb.createTable(${repr(name)}, rows, ${repr(opts)})`;
      return namesDb.createTable(name, keepRows.slice(0, 2), opts);
    }
    if (m === "createEmptyTable") {
      ctx.desc = `namesDb.createEmptyTable(${repr(name)}, schema)`;
      return namesDb.createEmptyTable(name, rng.chance(0.8) ? keepSchema : anyValue(rng));
    }
    if (m === "openTable") {
      const opts = rng.chance(0.7) ? undefined : options(rng, ["version"]);
      ctx.desc = `namesDb.openTable(${repr(name)}, ${repr(opts)})`;
      return namesDb.openTable(name, opts);
    }
    if (m === "dropTable") {
      ctx.desc = `namesDb.dropTable(${repr(name)})`;
      return namesDb.dropTable(name);
    }
    const opts = rng.chance(0.5) ? { startAfter: rng.chance(0.5) ? name : anyValue(rng, 0), limit: rng.chance(0.5) ? rng.int(-1, 5) : anyValue(rng, 0) } : anyValue(rng);
    ctx.desc = `namesDb.tableNames(${repr(opts)})`;
    return namesDb.tableNames(opts);
  },
  async connectGarbage(rng, ctx) {
    const uri = rng.pick([
      anyValue(rng, 0), "", " ", "memory://", `memory://${randomString(rng, 8)}`, "s3://bucket/x", "gs://b", "http://localhost:1", "file://", "file://relative/path",
      `file://${join(dir, "conn")}`, join(dir, "conn"), `${join(dir, "conn")}\u0000x`, "mem://x", "memory:", "::::", randomString(rng, 30), "x".repeat(5000), "az://x", "file:///dev/null",
    ]);
    const opts = rng.chance(0.5) ? undefined : options(rng, ["readConsistencyInterval", "metadataCacheBytes", "indexCacheBytes", "memoryMap"]);
    ctx.desc = `connect(${repr(uri)}, ${repr(opts)})`;
    const db = await connect(uri, opts);
    try {
      return await db.tableNames();
    } finally {
      db.close();
    }
  },
  async closed(rng, ctx) {
    const m = rng.int(0, 4);
    ctx.desc = `closed handle #${m}`;
    if (m === 0) return closedTable.countRows();
    if (m === 1) return closedTable.query().toArray();
    if (m === 2) return closedDb.openTable("c");
    if (m === 3) return closedTable.add(keepRows.slice(0, 1));
    return closedTable.search([1, 2, 3, 4]).toArray();
  },
};

function anyValueNotString(rng) {
  const v = anyValue(rng);
  return typeof v === "string" ? 12 : v;
}
function updateGarbage(rng) {
  return rng.pick([null, undefined, {}, { where: 1 }, { values: 5 }, { valuesSql: "x" }, { valuesSql: { price: 5 } }, { valuesSql: { price: "" } }, { values: null }, anyValueNotString(rng)]);
}
/** Arguments to schema/index/restore calls on keep that cannot change it if they succeed. */
function isHarmless(arg) {
  return arg === undefined || arg === null || typeof arg !== "object" || (Array.isArray(arg) && arg.length === 0);
}

const WEIGHTS = {
  count: 14,
  query: 14,
  search: 14,
  take: 5,
  keepMeta: 5,
  keepAdd: 9,
  keepMerge: 6,
  keepCreate: 3,
  keepNoWrite: 4,
  scratchWrite: 16,
  names: 5,
  connectGarbage: 3,
  closed: 2,
};

// ---------------------------------------------------------------- the loop
const progress = openSync(join(dir, `current-${first}`), "w");
const timeout = (ms) => new Promise((resolve) => setTimeout(() => resolve({ hang: true }), ms).unref());

for (let i = first; i < end; i++) {
  if (i > first && i % 1000 === 0) process.stdout.write(`${JSON.stringify({ progress: i, stats })}\n`);
  if (i > first && i % 2000 === 0) await resetScratch().catch((e) => failure("resetScratch", describeError(e)));
  const rng = new Rng("fuzz", seed, i);
  const category = rng.weighted(WEIGHTS);
  const ctx = { desc: category, mustFail: false };
  current = { i, desc: category };
  const note = (text) => {
    ftruncateSync(progress, 0);
    writeSync(progress, `${i} ${text}\n`, 0);
  };
  note(category);
  let promise;
  try {
    promise = Promise.resolve(CATEGORIES[category](rng, ctx)).then(
      (value) => ({ value }),
      (error) => ({ error }),
    );
  } catch (error) {
    promise = Promise.resolve({ error });
  }
  // What the call is (known once it started), for the parent's report should it crash.
  note(ctx.desc);
  if (only !== null) process.stderr.write(`call ${i}: ${ctx.desc}\n`);
  const outcome = await Promise.race([promise, timeout(hangMs)]);
  current.desc = ctx.desc;
  stats.calls++;
  stats.byCategory[category] = (stats.byCategory[category] ?? 0) + 1;
  if (only !== null) process.stdout.write(`${JSON.stringify({ call: i, category, desc: ctx.desc, outcome: "error" in outcome ? describeError(outcome.error) : outcome.hang ? "hang" : `resolved ${repr(outcome.value)}` })}\n`);
  if (outcome.hang) {
    failure("hang", `no answer after ${hangMs / 1000} s`);
    continue;
  }
  if (!("error" in outcome)) {
    stats.resolved++;
    if (ctx.mustFail && outcome.value !== "skipped") {
      stats.acceptedInvalid++;
      if (stats.acceptedInvalidExamples.length < 20) stats.acceptedInvalidExamples.push(`call #${i} ${ctx.desc} → ${repr(outcome.value)}`);
    }
    continue;
  }
  const e = outcome.error;
  if (e instanceof HostileError) {
    stats.hostile++;
    continue;
  }
  if (e instanceof QuiverError) {
    if (typeof e.code !== "string" || e.code === "" || typeof e.retryable !== "boolean" || typeof e.message !== "string") {
      failure("malformedQuiverError", describeError(e));
      continue;
    }
    stats.rejectedTyped++;
    stats.byClass[e.constructor.name] = (stats.byClass[e.constructor.name] ?? 0) + 1;
    if (e instanceof InternalError) {
      stats.internal++;
      const kind = e.message.replace(/\d+/g, "N").slice(0, 100);
      stats.internalByKind[kind] = (stats.internalByKind[kind] ?? 0) + 1;
      if (stats.internalExamples.length < 20) stats.internalExamples.push(`call #${i} ${ctx.desc} → ${describeError(e)}`);
    }
    continue;
  }
  failure(`untyped ${e?.constructor?.name ?? typeof e}`, describeError(e));
}

// ---------------------------------------------------------------- the end checks
await keep.checkoutLatest();
await memKeep.checkoutLatest();
const keepAfter = await fingerprint(keep);
const memAfter = await fingerprint(memKeep);
const reopened = await (await connect(join(dir, "keep-db"))).openTable("keep");
const reopenedAfter = await fingerprint(reopened);
const searchWorks = (await keep.search(keepRow(7).vector).limit(3).toArray()).length === 3;
const escaped = [];
for (const [folder, allowed] of [
  [dir, null],
  [dirname(dir), null],
  [join(dir, "names"), ["db"]],
]) {
  for (const entry of existsSync(folder) ? readdirSync(folder) : []) {
    if (entry.includes(MARK) || (allowed && !allowed.includes(entry))) escaped.push(join(folder, entry));
  }
}
if (existsSync(`/${MARK}`) || existsSync(`/${MARK}.quiver`)) escaped.push(`/${MARK}`);
for (const path of escaped) failure("nameEscaped", `a table name wrote outside its folder: ${path}`);
closeSync(progress);
const committedIntact =
  JSON.stringify(keepAfter) === JSON.stringify(keepBefore) &&
  JSON.stringify(reopenedAfter) === JSON.stringify(keepBefore) &&
  JSON.stringify(memAfter) === JSON.stringify(memBefore) &&
  searchWorks;
process.stdout.write(
  `${JSON.stringify({ done: true, ...stats, committedIntact, keepBefore, keepAfter, reopenedAfter, memBefore, memAfter, searchWorks })}\n`,
);
// Pending hung calls must not keep the process alive.
await sleep(10);
process.exit(0);
