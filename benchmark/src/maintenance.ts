// Tables that live for years, side by side: a table fed one row at a time (Quiver with
// automatic maintenance off, then on; LanceDB), then optimize(), against the same rows
// bulk-loaded fresh; and compaction of 1M rows in 1,000 fragments. Writes
// benchmark/MAINTENANCE.md (appended to BENCHMARKS.md by every suite run) and updates the
// section in BENCHMARKS.md.
//
//   npm run bench:maintenance [-- --quick] [-- --compact-rows 1000000] [-- --only fed|compact]
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int32,
  Int64,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  Table as ArrowTable,
  Utf8,
  vectorFromArray,
} from "apache-arrow";
import { installedVersion } from "./env.js";
import { bar, generatedLine, ms, timedMs, writeSection, x } from "./section.js";
import { summarize } from "./stats.js";

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    "compact-rows": { type: "string" },
    only: { type: "string" },
    "no-markdown": { type: "boolean", default: false },
  },
});
const QUICK = args.quick ?? false;
const BASE_ROWS = 1_000;
const ADDS = QUICK ? 400 : 2_000;
const UPDATES = QUICK ? 40 : 200;
const DIM = 64;
const COMPACT_ROWS = Number(args["compact-rows"] ?? (QUICK ? 100_000 : 1_000_000));
const COMPACT_FRAGMENTS = 1_000;
const SEARCHES = QUICK ? 50 : 200;
const COUNTS = QUICK ? 50 : 200;

type Row = Record<string, unknown>;

/** Deterministic pseudo-random numbers (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SCHEMA = new Schema([
  new Field("id", new Int64(), false),
  new Field("vector", new FixedSizeList(DIM, new Field("item", new Float32(), true)), false),
  new Field("price", new Float64(), false),
  new Field("text", new Utf8(), false),
]);

/** Rows `start..start+n` as an Arrow table (both systems get the same bytes). */
function rows(start: number, n: number, version = 0): ArrowTable {
  const r = rng(start * 7919 + version);
  const length = n;
  const vectors = new Float32Array(n * DIM);
  for (let i = 0; i < vectors.length; i++) vectors[i] = r() * 2 - 1;
  const children = [
    makeData({ type: new Int64(), length, data: BigInt64Array.from({ length }, (_, i) => BigInt(start + i)) } as never),
    makeData({
      type: SCHEMA.fields[1].type,
      length,
      nullCount: 0,
      child: makeData({ type: new Float32(), length: n * DIM, data: vectors } as never),
    } as never),
    makeData({ type: new Float64(), length, data: Float64Array.from({ length }, (_, i) => (start + i) * 0.5 + version) } as never),
    vectorFromArray(
      Array.from({ length }, (_, i) => `note ${start + i} v${version}`),
      new Utf8(),
    ).data[0],
  ];
  const data = makeData({ type: new Struct(SCHEMA.fields), length, nullCount: 0, children } as never);
  return new ArrowTable([new RecordBatch(SCHEMA, data as never)]);
}

function queryVectors(count: number): Float32Array[] {
  const r = rng(12345);
  return Array.from({ length: count }, () => Float32Array.from({ length: DIM }, () => r() * 2 - 1));
}

function diskBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return total;
}

function median(values: number[]): number {
  return summarize(values).median;
}

// The slice of both APIs the workloads use (each system called the way its users would).
interface TableApi {
  add(data: ArrowTable): Promise<unknown>;
  update(options: { where: string; valuesSql: Record<string, string> }): Promise<unknown>;
  countRows(filter?: string): Promise<number>;
  search(v: Float32Array): { limit(n: number): { toArray(): Promise<Row[]> } };
  optimize(options?: { cleanupOlderThan?: Date }): Promise<unknown>;
  query(): { toArrow(): Promise<ArrowTable> };
  stats(): Promise<{ fragmentStats: { numFragments: number } }>;
  close(): void;
}
interface DbApi {
  createTable(name: string, data: ArrowTable, options?: { mode?: string }): Promise<TableApi>;
  close(): void;
}
type Connect = (uri: string, maintenance: boolean | Record<string, unknown>) => Promise<DbApi>;

async function systems(): Promise<Record<string, { version: string; connect: Connect }>> {
  const q = await import("quiverdb");
  const l = await import("@lancedb/lancedb");
  return {
    quiver: {
      version: q.version(),
      connect: async (uri, maintenance) =>
        (await q.connect(uri, { maintenance: maintenance as never })) as unknown as DbApi,
    },
    lancedb: {
      version: installedVersion("@lancedb/lancedb"),
      connect: async (uri) => (await l.connect(uri)) as unknown as DbApi,
    },
  };
}

interface Probe {
  searchP50: number;
  countP50: number;
  diskBytes: number;
  fragments: number;
}

async function probe(table: TableApi, dir: string): Promise<Probe> {
  const queries = queryVectors(SEARCHES);
  for (const q of queries.slice(0, 5)) await table.search(q).limit(10).toArray();
  const searches: number[] = [];
  for (const q of queries) searches.push(await timedMs(() => table.search(q).limit(10).toArray()));
  const counts: number[] = [];
  await table.countRows("id > 100");
  for (let i = 0; i < COUNTS; i++) counts.push(await timedMs(() => table.countRows("id > 100")));
  const fragments = (await table.stats()).fragmentStats.numFragments;
  return { searchP50: median(searches), countP50: median(counts), diskBytes: diskBytes(dir), fragments };
}

interface FedResult {
  system: string;
  mode: string;
  addP50: number;
  addMean: number;
  updateP50: number;
  before: Probe;
  /** Worst figures seen at checkpoints while the adds ran (automatic maintenance only). */
  during?: Probe;
  optimizeMs?: number;
  after: Probe;
  fresh: Probe;
}

/** 1,000 rows, 2,000 one-row adds and 200 one-row updates, then optimize (or, with automatic
 * maintenance, nothing); compared with the same rows bulk-loaded into a new table. */
async function fed(
  name: string,
  connect: Connect,
  mode: "off" | "auto" | "lancedb",
): Promise<FedResult> {
  const dir = mkdtempSync(path.join(tmpdir(), `quiver-bench-fed-${name}-`));
  const freshDir = mkdtempSync(path.join(tmpdir(), `quiver-bench-fresh-${name}-`));
  try {
    // Automatic maintenance keeps no history here (retention 0), as an app that does not
    // time-travel would set it; the default keeps 7 days.
    const maintenance = mode === "auto" ? { retentionSeconds: 0 } : false;
    const db = await connect(dir, maintenance);
    const table = await db.createTable("notes", rows(0, BASE_ROWS));
    const adds: number[] = [];
    const updates: number[] = [];
    const during = { searchP50: 0, countP50: 0, diskBytes: 0, fragments: 0 };
    const checkpoints = mode === "auto" ? new Set([ADDS / 4, ADDS / 2, (3 * ADDS) / 4]) : new Set<number>();
    const updateEvery = Math.floor(ADDS / UPDATES);
    for (let i = 0; i < ADDS; i++) {
      adds.push(await timedMs(() => table.add(rows(BASE_ROWS + i, 1))));
      if (i % updateEvery === 0) {
        const id = Math.floor((i * 7919) % (BASE_ROWS + i));
        updates.push(await timedMs(() => table.update({ where: `id = ${id}`, valuesSql: { price: "price + 1" } })));
      }
      if (checkpoints.has(i)) {
        const p = await probe(table, dir);
        during.searchP50 = Math.max(during.searchP50, p.searchP50);
        during.countP50 = Math.max(during.countP50, p.countP50);
        during.diskBytes = Math.max(during.diskBytes, p.diskBytes);
        during.fragments = Math.max(during.fragments, p.fragments);
      }
    }
    const before = await probe(table, dir);
    let optimizeMs: number | undefined;
    if (mode === "auto") {
      // Let the last round finish (writes have stopped).
      await new Promise((r) => setTimeout(r, 1500));
    } else {
      optimizeMs = await timedMs(() => table.optimize({ cleanupOlderThan: new Date() }));
    }
    const after = await probe(table, dir);
    const all = await table.query().toArrow();
    const freshDb = await connect(freshDir, false);
    const freshTable = await freshDb.createTable("notes", all);
    const fresh = await probe(freshTable, freshDir);
    freshTable.close();
    freshDb.close();
    table.close();
    db.close();
    return {
      system: name,
      mode,
      addP50: median(adds),
      addMean: adds.reduce((a, b) => a + b, 0) / adds.length,
      updateP50: median(updates),
      before,
      during: mode === "auto" ? during : undefined,
      optimizeMs,
      after,
      fresh,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(freshDir, { recursive: true, force: true });
  }
}

/** COMPACT_ROWS rows appended in 1,000 fragments, then compacted (Quiver: compactFiles and
 * optimize; LanceDB: optimize). Returns milliseconds. */
async function compaction(name: string, connect: Connect, call: "compactFiles" | "optimize"): Promise<number> {
  const dir = mkdtempSync(path.join(tmpdir(), `quiver-bench-compact-${name}-`));
  try {
    const db = await connect(dir, false);
    const per = COMPACT_ROWS / COMPACT_FRAGMENTS;
    const table = await db.createTable("big", scalarRows(0, per));
    for (let f = 1; f < COMPACT_FRAGMENTS; f++) await table.add(scalarRows(f * per, per));
    const t = table as unknown as Record<string, () => Promise<unknown>>;
    const ms = await timedMs(() => t[call]());
    if ((await table.countRows()) !== COMPACT_ROWS) throw new Error(`${name} lost rows in compaction`);
    table.close();
    db.close();
    return ms;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function scalarRows(start: number, n: number): ArrowTable {
  const schema = new Schema([
    new Field("id", new Int64(), false),
    new Field("category", new Int32(), false),
    new Field("price", new Float64(), false),
    new Field("text", new Utf8(), false),
  ]);
  const length = n;
  const children = [
    makeData({ type: new Int64(), length, data: BigInt64Array.from({ length }, (_, i) => BigInt(start + i)) } as never),
    makeData({ type: new Int32(), length, data: Int32Array.from({ length }, (_, i) => (start + i) % 100) } as never),
    makeData({ type: new Float64(), length, data: Float64Array.from({ length }, (_, i) => (start + i) * 0.01) } as never),
    vectorFromArray(
      Array.from({ length }, (_, i) => `item ${start + i}`),
      new Utf8(),
    ).data[0],
  ];
  const data = makeData({ type: new Struct(schema.fields), length, nullCount: 0, children } as never);
  return new ArrowTable([new RecordBatch(schema, data as never)]);
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;

function fedRows(r: FedResult): string[] {
  const label = r.mode === "off" ? "Quiver, optimize()" : r.mode === "auto" ? "Quiver, automatic maintenance" : "LanceDB, optimize()";
  const a = r.after;
  const f = r.fresh;
  return [
    `| ${label} | before | ${r.before.fragments} | ${ms(r.before.searchP50)} | ${ms(r.before.countP50)} | ${mib(r.before.diskBytes)} | |`,
    ...(r.during
      ? [
          `| ${label} | worst checkpoint while adding | ${r.during.fragments} | ${ms(r.during.searchP50)} (${x(r.during.searchP50, f.searchP50)}) | ${ms(r.during.countP50)} (${x(r.during.countP50, f.countP50)}) | ${mib(r.during.diskBytes)} (${x(r.during.diskBytes, f.diskBytes)}) | |`,
        ]
      : []),
    `| ${label} | after${r.optimizeMs !== undefined ? ` (optimize ${ms(r.optimizeMs)})` : " (settled, no optimize call)"} | ${a.fragments} | ${ms(a.searchP50)} (${x(a.searchP50, f.searchP50)}) | ${ms(a.countP50)} (${x(a.countP50, f.countP50)}) | ${mib(a.diskBytes)} (${x(a.diskBytes, f.diskBytes)}) | search ${bar(a.searchP50 / f.searchP50, 1.2)}; count ${bar(a.countP50 / f.countP50, 1.2)}; disk ${bar(a.diskBytes / f.diskBytes, 1.2)} |`,
    `| ${label} | same rows bulk-loaded fresh | ${f.fragments} | ${ms(f.searchP50)} | ${ms(f.countP50)} | ${mib(f.diskBytes)} | |`,
  ];
}

async function main(): Promise<void> {
  const s = await systems();
  const only = args.only;
  const started = new Date();
  const fedResults: FedResult[] = [];
  const compactResults: Record<string, number> = {};
  if (!only || only === "fed") {
    for (const [name, mode] of [
      ["quiver", "off"],
      ["quiver", "auto"],
      ["lancedb", "lancedb"],
    ] as const) {
      console.log(`fed table: ${name} (${mode}) …`);
      const r = await fed(name, s[name].connect, mode);
      fedResults.push(r);
      console.log(JSON.stringify(r));
    }
  }
  if (!only || only === "compact") {
    for (const [name, call] of [
      ["quiver", "compactFiles"],
      ["quiver", "optimize"],
      ["lancedb", "optimize"],
    ] as const) {
      console.log(`compaction of ${COMPACT_ROWS} rows in ${COMPACT_FRAGMENTS} fragments: ${name}.${call}() …`);
      compactResults[`${name}.${call}`] = await compaction(name, s[name].connect, call);
      console.log(`  ${ms(compactResults[`${name}.${call}`])}`);
    }
  }
  const lines = [
    "<!-- maintenance -->",
    "## Tables that live for years",
    "",
    generatedLine(
      `npm run bench:maintenance${QUICK ? " -- --quick" : ""}`,
      started,
      `quiver ${s.quiver.version}, lancedb ${s.lancedb.version}`,
    ),
    "",
  ];
  if (fedResults.length) {
    const off = fedResults.find((r) => r.mode === "off");
    const auto = fedResults.find((r) => r.mode === "auto");
    lines.push(
      `**A table fed one row at a time**: ${BASE_ROWS} rows of ${DIM}-d vectors, then ${ADDS} one-row \`add()\`s and ${UPDATES} one-row \`update()\`s; \`search(v).limit(10)\` p50 and \`countRows("id > 100")\` p50, and disk, against the same rows bulk-loaded into a new table (ratio to fresh in brackets). optimize() is called with \`cleanupOlderThan: new Date()\` (LanceDB's idiom for pruning now; the default keeps 7 days). Automatic maintenance runs with \`retentionSeconds: 0\` and no optimize() call.`,
      "",
      "| system | state | fragments | search p50 | countRows p50 | disk | bars (vs fresh) |",
      "| --- | --- | --- | --- | --- | --- | --- |",
      ...fedResults.flatMap(fedRows),
      "",
      "| system | add() p50 | add() mean | update() p50 |",
      "| --- | --- | --- | --- |",
      ...fedResults.map((r) => `| ${r.system} (${r.mode}) | ${ms(r.addP50)} | ${ms(r.addMean)} | ${ms(r.updateP50)} |`),
      "",
    );
    if (off && auto) {
      lines.push(
        `Per-add latency with automatic maintenance on vs off: p50 ${x(auto.addP50, off.addP50)}, mean ${x(auto.addMean, off.addMean)} (${bar(auto.addP50 / off.addP50, 1.2)}).`,
        "",
      );
    }
  }
  if (Object.keys(compactResults).length) {
    const lance = compactResults["lancedb.optimize"];
    lines.push(
      `**Compaction of ${COMPACT_ROWS.toLocaleString("en")} rows in ${COMPACT_FRAGMENTS} fragments** (id, category, price, text):`,
      "",
      "| call | time | vs LanceDB optimize() |",
      "| --- | --- | --- |",
      ...Object.entries(compactResults).map(
        ([call, t]) => `| ${call}() | ${ms(t)} | ${lance ? `${x(t, lance)}${call.startsWith("quiver") ? ` (${bar(t / lance, 0.5)})` : ""}` : ""} |`,
      ),
      "",
    );
  }
  lines.push("<!-- /maintenance -->", "");
  const section = lines.join("\n");
  console.log(`\n${section}`);
  if (!args["no-markdown"]) writeSection("maintenance", "MAINTENANCE.md", section);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exit(1);
});
