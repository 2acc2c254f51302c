// What durable commits cost, side by side: Quiver with `durability: "full"` and with
// `"process"`, and LanceDB with its defaults; single-row add() latency, bulk ingest, and
// concurrent single-row adds to one table (where queued commits can share flushes). Each run
// gets a fresh folder under the OS temporary folder (set TMPDIR to measure another disk).
// Writes benchmark/DURABILITY.md (appended to BENCHMARKS.md by every suite run) and updates
// the section in BENCHMARKS.md.
//
//   npm run bench:durability [-- --no-markdown]
import { mkdtempSync, rmSync, statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  type Data,
  Field,
  FixedSizeList,
  Float32,
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
import { quantile, summarize } from "./stats.js";
import { flushDirtyPages } from "./workloads.js";

const { values: args } = parseArgs({
  options: { "no-markdown": { type: "boolean", default: false } },
});
const BASE_ROWS = 1_000;
const SMALL_DIM = 64;
const WARMUP_ADDS = 20;
const ADDS = 500;
const BULK_ROWS = 200_000;
const BULK_BATCH = 10_000;
const BULK_DIM = 128;
const WRITERS = 8;
const WRITER_ADDS = 100;
const ROUNDS = 2;
const TMPFS_MAGIC = 0x01021994;

interface TableApi {
  add(data: ArrowTable): Promise<unknown>;
  countRows(): Promise<number>;
  close(): void;
}
interface DbApi {
  createTable(name: string, data: ArrowTable): Promise<TableApi>;
  close(): void;
}
type SystemName = "full" | "process" | "lancedb";
interface System {
  name: SystemName;
  connect(dir: string): Promise<DbApi>;
}
const NAMES: SystemName[] = ["full", "process", "lancedb"];
const LABELS: Record<SystemName, string> = {
  full: 'Quiver, durability "full"',
  process: 'Quiver, durability "process"',
  lancedb: "LanceDB (defaults)",
};

async function loadSystems(): Promise<{ systems: System[]; versions: string }> {
  const q = await import("quiverdb");
  const l = await import("@lancedb/lancedb");
  // Automatic maintenance off: background compaction would land in some adds' timings.
  const quiver = (durability: "full" | "process"): System => ({
    name: durability,
    connect: (dir) => q.connect(dir, { durability, maintenance: false }),
  });
  return {
    systems: [quiver("full"), quiver("process"), { name: "lancedb", connect: (dir) => l.connect(dir) }],
    versions: `quiver ${q.version()}, lancedb ${installedVersion("@lancedb/lancedb")}`,
  };
}

/** Rows with ids `start..start+n`: a random `d`-d float32 vector each and, with `text`, a short
 * note. */
function vectorRows(start: number, n: number, d: number, text: boolean): ArrowTable {
  const vectorType = new FixedSizeList(d, new Field("item", new Float32(), true));
  const fields: Field[] = [new Field("id", new Int64(), false), new Field("vector", vectorType, false)];
  const vectors = new Float32Array(n * d);
  for (let i = 0; i < vectors.length; i++) vectors[i] = Math.random() * 2 - 1;
  const children: Data[] = [
    makeData({ type: new Int64(), length: n, data: BigInt64Array.from({ length: n }, (_, i) => BigInt(start + i)) } as never),
    makeData({
      type: vectorType,
      length: n,
      nullCount: 0,
      child: makeData({ type: new Float32(), length: n * d, data: vectors } as never),
    } as never),
  ];
  if (text) {
    fields.push(new Field("text", new Utf8(), false));
    children.push(vectorFromArray(Array.from({ length: n }, (_, i) => `note ${start + i}`), new Utf8()).data[0]);
  }
  const schema = new Schema(fields);
  const data = makeData({ type: new Struct(schema.fields), length: n, nullCount: 0, children } as never);
  return new ArrowTable([new RecordBatch(schema, data as never)]);
}

/** Every table the runs add, built once before any timing; all systems get the same rows. */
interface Rows {
  base: ArrowTable;
  warmup: ArrowTable[];
  adds: ArrowTable[];
  writers: ArrowTable[][];
  bulkSeed: ArrowTable;
  bulk: ArrowTable[];
}

function prepare(): Rows {
  let next = 0;
  const take = (n: number, d: number, text: boolean) => {
    const t = vectorRows(next, n, d, text);
    next += n;
    return t;
  };
  const one = () => take(1, SMALL_DIM, true);
  return {
    base: take(BASE_ROWS, SMALL_DIM, true),
    warmup: Array.from({ length: WARMUP_ADDS }, one),
    adds: Array.from({ length: ADDS }, one),
    writers: Array.from({ length: WRITERS }, () => Array.from({ length: WRITER_ADDS }, one)),
    bulkSeed: take(1, BULK_DIM, false),
    bulk: Array.from({ length: BULK_ROWS / BULK_BATCH }, () => take(BULK_BATCH, BULK_DIM, false)),
  };
}

// Each timed part starts after flushDirtyPages(), so it does not pay for writes left in the
// page cache by the setup or by the system that ran before it.

/** Milliseconds of each one-row add() to a table of BASE_ROWS rows, after WARMUP_ADDS untimed. */
async function singleAdds(db: DbApi, rows: Rows): Promise<number[]> {
  const table = await db.createTable("single", rows.base);
  for (const row of rows.warmup) await table.add(row);
  flushDirtyPages();
  const values: number[] = [];
  for (const row of rows.adds) values.push(await timedMs(() => table.add(row)));
  table.close();
  return values;
}

/** Milliseconds to add BULK_ROWS rows, BULK_BATCH per add(), to a one-row table; then the
 * same plus a `sync`: the time until the rows are on disk, which "process" defers. */
async function bulkIngest(db: DbApi, rows: Rows): Promise<number[]> {
  const table = await db.createTable("bulk", rows.bulkSeed);
  flushDirtyPages();
  const total = await timedMs(async () => {
    for (const batch of rows.bulk) await table.add(batch);
  });
  const started = performance.now();
  flushDirtyPages();
  const onDisk = total + (performance.now() - started);
  table.close();
  return [total, onDisk];
}

/** Wall milliseconds of WRITERS loops, run at once on one Table, each awaiting WRITER_ADDS
 * one-row adds in turn. */
async function concurrentAdds(db: DbApi, rows: Rows): Promise<number[]> {
  const table = await db.createTable("concurrent", rows.base);
  for (const row of rows.warmup) await table.add(row);
  flushDirtyPages();
  const total = await timedMs(() =>
    Promise.all(
      rows.writers.map(async (writer) => {
        for (const row of writer) await table.add(row);
      }),
    ),
  );
  // Commits that share a flush must each still land.
  const expected = BASE_ROWS + WARMUP_ADDS + WRITERS * WRITER_ADDS;
  const count = await table.countRows();
  if (count !== expected) throw new Error(`concurrent adds left ${count} rows, expected ${expected}`);
  table.close();
  return [total];
}

const SCENARIOS = { single: singleAdds, bulk: bulkIngest, concurrent: concurrentAdds };
type Scenario = keyof typeof SCENARIOS;

/** Runs `f` on a new connection in a new temporary folder, removed afterwards. */
async function inFreshFolder(system: System, f: (db: DbApi) => Promise<number[]>): Promise<number[]> {
  const dir = mkdtempSync(path.join(tmpdir(), `quiver-bench-durability-${system.name}-`));
  try {
    const db = await system.connect(dir);
    const values = await f(db);
    db.close();
    return values;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function latency(values: number[]): { p50: number; p90: number; mean: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: quantile(sorted, 0.5), p90: quantile(sorted, 0.9), mean: summarize(values).mean };
}

const per = <T>(f: (name: SystemName) => T) =>
  Object.fromEntries(NAMES.map((name) => [name, f(name)])) as Record<SystemName, T>;
const row = (cells: string[]) => `| ${cells.join(" | ")} |`;
const seconds = (v: number) => `${(v / 1000).toFixed(2)} s`;
const perSecond = (count: number, v: number) => Math.round(count / (v / 1000)).toLocaleString("en");

async function main(): Promise<void> {
  const { systems, versions } = await loadSystems();
  // On tmpfs an fsync costs nothing, so "full" would measure no flushing: say so.
  const onTmpfs = process.platform === "linux" && statfsSync(tmpdir()).type === TMPFS_MAGIC;
  if (onTmpfs) console.warn(`warning: ${tmpdir()} is tmpfs; set TMPDIR to a folder on disk`);
  const rows = prepare();
  const started = new Date();
  const results = per(() => ({ single: [], bulk: [], concurrent: [] }) as Record<Scenario, number[]>);
  const bulkOnDisk = per((): number[] => []);
  for (let round = 1; round <= ROUNDS; round++) {
    // Every other round reverses the order, so drift (page cache, the VM's neighbours) falls
    // on every system alike.
    const order = round % 2 === 1 ? systems : [...systems].reverse();
    for (const scenario of Object.keys(SCENARIOS) as Scenario[]) {
      for (const system of order) {
        console.log(`round ${round}/${ROUNDS}, ${scenario}: ${LABELS[system.name]} …`);
        let values = await inFreshFolder(system, (db) => SCENARIOS[scenario](db, rows));
        if (scenario === "bulk") {
          bulkOnDisk[system.name].push(values[1]);
          values = [values[0]];
        }
        results[system.name][scenario].push(...values);
        console.log(`  ${values.length > 1 ? `p50 ${ms(latency(values).p50)}` : ms(values[0])}`);
      }
    }
  }

  // Latencies pool both rounds' samples; bulk and concurrent keep the fastest round.
  const single = per((name) => latency(results[name].single));
  const bulk = per((name) => Math.min(...results[name].bulk));
  const toDisk = per((name) => Math.min(...bulkOnDisk[name]));
  const concurrent = per((name) => Math.min(...results[name].concurrent));
  const vsProcess = (name: SystemName, v: Record<SystemName, number>) =>
    name === "lancedb" ? "" : x(v[name], v.process);
  const p50 = per((name) => single[name].p50);
  const adds = WRITERS * WRITER_ADDS;
  const lines = [
    "<!-- durability -->",
    "## Durability",
    "",
    generatedLine(
      "npm run bench:durability",
      started,
      `${versions}; folders under ${tmpdir()}${onTmpfs ? " (tmpfs: fsync costs nothing there)" : ""}`,
    ),
    "",
    `What a commit that survives power loss costs. With \`durability: "full"\`, the data files, deletion and index files and the manifest are fsync'd, with their folders, before \`add()\` resolves; with \`"process"\`, nothing is flushed on commit. Quiver runs with automatic maintenance off, LanceDB with its defaults. Every run gets a fresh table in a fresh folder; dirty pages are written back (\`sync\`) before each timed part. ${ROUNDS} rounds, systems interleaved (reversed every other round); latencies pool the rounds' samples, bulk and concurrent figures are the fastest round. Ratios below 1 favour the row's system.`,
    "",
    `**Single-row \`add()\`**: a table of ${BASE_ROWS.toLocaleString("en")} rows (id, ${SMALL_DIM}-d vector, text), ${WARMUP_ADDS} untimed adds, then ${ADDS} timed one-row \`add()\`s per round.`,
    "",
    "| system | p50 | p90 | mean | p50 vs process | p50 vs LanceDB |",
    "| --- | --- | --- | --- | --- | --- |",
    ...NAMES.map((name) => {
      const l = single[name];
      return row([LABELS[name], ms(l.p50), ms(l.p90), ms(l.mean), vsProcess(name, p50), x(l.p50, p50.lancedb)]);
    }),
    "",
    `**Bulk ingest**: ${BULK_ROWS.toLocaleString("en")} rows (id, ${BULK_DIM}-d vector) in ${BULK_ROWS / BULK_BATCH} \`add()\`s of ${BULK_BATCH.toLocaleString("en")} rows to a one-row table.`,
    "",
    "| system | time | rows/s | vs process | vs LanceDB | until on disk (+ `sync`) | on disk vs process |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...NAMES.map((name) =>
      row([
        LABELS[name],
        seconds(bulk[name]),
        perSecond(BULK_ROWS, bulk[name]),
        vsProcess(name, bulk),
        x(bulk[name], bulk.lancedb),
        seconds(toDisk[name]),
        vsProcess(name, toDisk),
      ]),
    ),
    "",
    `**Concurrent single-row adds**: ${WRITERS} writers at once (\`Promise.all\`) on one \`Table\` of ${BASE_ROWS.toLocaleString("en")} rows and ${WARMUP_ADDS} untimed adds, each awaiting ${WRITER_ADDS} one-row \`add()\`s in turn; ${adds} adds in all.`,
    "",
    "| system | wall time | adds/s | vs process | vs LanceDB |",
    "| --- | --- | --- | --- | --- |",
    ...NAMES.map((name) =>
      row([
        LABELS[name],
        ms(concurrent[name]),
        perSecond(adds, concurrent[name]),
        vsProcess(name, concurrent),
        x(concurrent[name], concurrent.lancedb),
      ]),
    ),
    "",
    `Durable single-row \`add()\` p50: ${x(p50.full, p50.process)} of process (${bar(p50.full / p50.process, 2)}).`,
    `Durable bulk ingest: ${x(bulk.full, bulk.process)} of process (${bar(bulk.full / bulk.process, 1.1)}); until the rows are on disk: ${x(toDisk.full, toDisk.process)} of process.`,
    "",
    "<!-- /durability -->",
    "",
  ];
  const section = lines.join("\n");
  console.log(`\n${section}`);
  if (!args["no-markdown"]) writeSection("durability", "DURABILITY.md", section);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exit(1);
});
