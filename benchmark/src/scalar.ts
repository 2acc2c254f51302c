// Scalar indexes side by side: Quiver and LanceDB on the same 1M rows (id int64 unique in
// random order, category int32 of 100 values, tags list<utf8> of 1–5 of 1,000 labels, price
// float64, a 128-d vector), each with its own matching indexes (BTREE on id and price, BITMAP
// on category, LABEL_LIST on tags, IVF_PQ on the vector). Measures index build time and size,
// query p50s (point lookup, 0.1% range, filtered count, label query, vector search with a 1%
// prefilter at recall@10 >= 0.95), a predicate no index helps (Quiver with vs without
// indexes), and the peak memory of a B-tree build on 10M rows in a process of its own.
// Writes benchmark/SCALAR.md and its section of BENCHMARKS.md.
//
//   npm run bench:scalar [-- --rows 1000000 --big-rows 10000000 --no-markdown]
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  type Data,
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int32,
  Int64,
  List,
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
import { quantile, rng } from "./stats.js";

const { values: args } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    "big-rows": { type: "string", default: "10000000" },
    "no-markdown": { type: "boolean", default: false },
    // Internal: the child processes of the 10M-row B-tree measurement.
    "child-create": { type: "string" },
    "child-index": { type: "string" },
  },
});
const ROWS = Number(args.rows);
const BIG_ROWS = Number(args["big-rows"]);
const DIM = 128;
const BATCH = 100_000;
const LABELS = 1_000;
const CATEGORIES = 100;
const RUNS = 40;
const WARMUP = 5;
const VECTOR_QUERIES = 40;
/** Quiver's sort budget of a B-tree build (crates/quiver-engine/src/index/btree.rs), and the
 * memory budget of the whole build stated in the README: the sort buffer plus write buffers
 * (8 MiB per file being written) and one page per sorted run. */
const SORT_BUDGET_MIB = 128;
const BUILD_BUDGET_MIB = 192;


/** A random permutation of 0..n (ids in no particular order, as hashes or imported keys are). */
function permutation(n: number, random: () => number): Float64Array {
  const ids = new Float64Array(n);
  for (let i = 0; i < n; i++) ids[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  return ids;
}

interface Dataset {
  table: ArrowTable;
  ids: Float64Array;
  category: Int32Array;
  price: Float64Array;
  tags: string[][];
  vectors: Float32Array;
}

function dataset(n: number): Dataset {
  const random = rng(42);
  const ids = permutation(n, random);
  const category = Int32Array.from({ length: n }, () => Math.floor(random() * CATEGORIES));
  const price = Float64Array.from({ length: n }, () => Math.floor(random() * 1_000_000) / 1000);
  const tags = Array.from({ length: n }, () => {
    const count = 1 + Math.floor(random() * 5);
    const set = new Set<string>();
    while (set.size < count) set.add(`label${Math.floor(random() * LABELS)}`);
    return [...set];
  });
  // Vectors around 256 centres, so IVF partitions mean something.
  const centres = Float32Array.from({ length: 256 * DIM }, () => random() * 2 - 1);
  const vectors = new Float32Array(n * DIM);
  for (let i = 0; i < n; i++) {
    const c = Math.floor(random() * 256) * DIM;
    for (let d = 0; d < DIM; d++) vectors[i * DIM + d] = centres[c + d] + (random() - 0.5) * 0.6;
  }
  const vectorType = new FixedSizeList(DIM, new Field("item", new Float32(), true));
  const tagsType = new List(new Field("item", new Utf8(), true));
  const schema = new Schema([
    new Field("id", new Int64(), false),
    new Field("category", new Int32(), true),
    new Field("tags", tagsType, true),
    new Field("price", new Float64(), true),
    new Field("vector", vectorType, true),
  ]);
  const batches: RecordBatch[] = [];
  for (let start = 0; start < n; start += BATCH) {
    const end = Math.min(n, start + BATCH);
    const len = end - start;
    const children: Data[] = [
      makeData({ type: new Int64(), length: len, data: BigInt64Array.from(ids.subarray(start, end), (v) => BigInt(v)) } as never),
      makeData({ type: new Int32(), length: len, data: category.subarray(start, end) } as never),
      vectorFromArray(tags.slice(start, end), tagsType).data[0],
      makeData({ type: new Float64(), length: len, data: price.subarray(start, end) } as never),
      makeData({
        type: vectorType,
        length: len,
        nullCount: 0,
        child: makeData({ type: new Float32(), length: len * DIM, data: vectors.subarray(start * DIM, end * DIM) } as never),
      } as never),
    ];
    const data = makeData({ type: new Struct(schema.fields), length: len, nullCount: 0, children } as never);
    batches.push(new RecordBatch(schema, data as never));
  }
  return { table: new ArrowTable(batches), ids, category, price, tags, vectors };
}

interface QueryApi {
  where(filter: string): QueryApi;
  select(columns: string[]): QueryApi;
  limit(n: number): QueryApi;
  nprobes?(n: number): QueryApi;
  refineFactor?(n: number): QueryApi;
  toArray(): Promise<Record<string, unknown>[]>;
}
interface TableApi {
  createIndex(column: string, options: { config: unknown }): Promise<unknown>;
  countRows(filter?: string): Promise<number>;
  query(): QueryApi;
  search(vector: number[]): QueryApi;
  listIndices(): Promise<{ name: string; sizeBytes?: number }[]>;
  close(): void;
}
interface DbApi {
  createTable(name: string, data: ArrowTable): Promise<TableApi>;
  close(): void;
}
interface IndexKinds {
  btree(): unknown;
  bitmap(): unknown;
  labelList(): unknown;
  ivfPq(options: { numPartitions?: number; numSubVectors?: number }): unknown;
}
interface System {
  name: "quiver" | "lancedb";
  label: string;
  connect(dir: string): Promise<DbApi>;
  index: IndexKinds;
  /** Bytes of a table's index files. */
  indexBytes(dir: string, table: TableApi): Promise<number>;
}

/** Bytes of the files under `dir` (0 when it does not exist). */
function folderBytes(dir: string): number {
  let total = 0;
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e);
    const s = statSync(p);
    total += s.isDirectory() ? folderBytes(p) : s.size;
  }
  return total;
}

async function loadSystems(): Promise<{ systems: System[]; versions: string }> {
  // LanceDB warns on every search that selects columns without `_distance`.
  process.env.LANCEDB_LOG ??= "error";
  const q = await import("quiverdb");
  const l = await import("@lancedb/lancedb");
  const quiver: System = {
    name: "quiver",
    label: "Quiver",
    connect: (dir) => q.connect(dir, { maintenance: false }) as unknown as Promise<DbApi>,
    index: q.Index as unknown as IndexKinds,
    indexBytes: async (_dir, table) => (await table.listIndices()).reduce((s, i) => s + (i.sizeBytes ?? 0), 0),
  };
  const lancedb: System = {
    name: "lancedb",
    label: "LanceDB",
    connect: (dir) => l.connect(dir) as unknown as Promise<DbApi>,
    index: l.Index as unknown as IndexKinds,
    indexBytes: async (dir) => folderBytes(path.join(dir, "t.lance", "_indices")),
  };
  return {
    systems: [quiver, lancedb],
    versions: `quiver ${q.version()}, lancedb ${installedVersion("@lancedb/lancedb")}`,
  };
}

function p50(values: number[]): number {
  return quantile([...values].sort((a, b) => a - b), 0.5);
}

/** p50 of `f` over RUNS runs after WARMUP, each run given its run number. */
async function latency(f: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < WARMUP; i++) await f(i);
  const values: number[] = [];
  for (let i = 0; i < RUNS; i++) values.push(await timedMs(() => f(WARMUP + i)));
  return p50(values);
}

interface Measured {
  build: Record<string, number>;
  size: Record<string, number>;
  queries: Record<string, number>;
  counts: Record<string, number>;
  vector: { p50: number; recall: number; setting: string };
}

const SCALAR_INDEXES: [string, keyof IndexKinds][] = [
  ["id", "btree"],
  ["price", "btree"],
  ["category", "bitmap"],
  ["tags", "labelList"],
];

/** Exact top 10 of `query` among rows of category `k`, by squared l2. */
function exactTop10(data: Dataset, query: Float32Array, k: number): number[] {
  const best: [number, number][] = [];
  for (let i = 0; i < data.ids.length; i++) {
    if (data.category[i] !== k) continue;
    let d = 0;
    for (let j = 0; j < DIM; j++) {
      const diff = data.vectors[i * DIM + j] - query[j];
      d += diff * diff;
    }
    best.push([d, data.ids[i]]);
  }
  best.sort((a, b) => a[0] - b[0]);
  return best.slice(0, 10).map((b) => b[1]);
}

async function measure(system: System, data: Dataset, dir: string): Promise<Measured> {
  const db = await system.connect(dir);
  console.log(`${system.label}: writing ${ROWS.toLocaleString("en")} rows …`);
  const table = await db.createTable("t", data.table);
  const build: Record<string, number> = {};
  const size: Record<string, number> = {};
  for (const [column, kind] of SCALAR_INDEXES) {
    const before = await system.indexBytes(dir, table);
    const config = (system.index[kind] as () => unknown)();
    build[column] = await timedMs(() => table.createIndex(column, { config }));
    size[column] = (await system.indexBytes(dir, table)) - before;
    console.log(`  ${kind} on ${column}: ${ms(build[column])}, ${(size[column] / 1e6).toFixed(2)} MB`);
  }
  const random = rng(7);
  const n = data.ids.length;
  const pick = () => data.ids[Math.floor(random() * n)];
  const queries: Record<string, number> = {};
  const counts: Record<string, number> = {};
  const pointIds = Array.from({ length: WARMUP + RUNS }, pick);
  queries.point = await latency(async (i) => {
    const rows = await table.query().where(`id = ${pointIds[i]}`).select(["id", "category", "price"]).toArray();
    if (rows.length !== 1) throw new Error(`${system.name}: id = ${pointIds[i]} gave ${rows.length} rows`);
  });
  const lows = Array.from({ length: WARMUP + RUNS }, () => Math.floor(random() * 999) + random());
  queries.range = await latency(async (i) => {
    const rows = await table.query().where(`price >= ${lows[i]} AND price < ${lows[i] + 1}`).select(["id"]).toArray();
    counts.range = (counts.range ?? 0) + rows.length;
  });
  const cats = Array.from({ length: WARMUP + RUNS }, () => Math.floor(random() * CATEGORIES));
  queries.count = await latency(async (i) => {
    counts.count = (counts.count ?? 0) + (await table.countRows(`category = ${cats[i]}`));
  });
  const labelPairs = Array.from({ length: WARMUP + RUNS }, () => [
    Math.floor(random() * LABELS),
    Math.floor(random() * LABELS),
  ]);
  queries.labels = await latency(async (i) => {
    const [a, b] = labelPairs[i];
    const rows = await table.query().where(`array_has_any(tags, ['label${a}', 'label${b}'])`).select(["id"]).toArray();
    counts.labels = (counts.labels ?? 0) + rows.length;
  });
  // A predicate no index answers (a function of a column, and a range too wide to use one).
  queries.unhelped = await latency(async (i) => {
    counts.unhelped = (counts.unhelped ?? 0) + (await table.countRows(`id % 97 = ${i % 97} AND price > 100`));
  });

  // Vector search with a 1% prefilter, on the vector index; the cheapest of a few settings
  // that reaches recall@10 >= 0.95 on this system.
  console.log(`  ivfPq on vector …`);
  build.vector = await timedMs(() => table.createIndex("vector", { config: system.index.ivfPq({ numPartitions: 1000, numSubVectors: 16 }) }));
  const vrandom = rng(99);
  const vq = Array.from({ length: VECTOR_QUERIES }, () => {
    const row = Math.floor(vrandom() * n);
    const q = Float32Array.from({ length: DIM }, (_, d) => data.vectors[row * DIM + d] + (vrandom() - 0.5) * 0.1);
    return { q, k: Math.floor(vrandom() * CATEGORIES) };
  });
  const truth = vq.map(({ q, k }) => exactTop10(data, q, k));
  const settings: [string, number | undefined, number | undefined][] = [
    ["defaults", undefined, undefined],
    ["nprobes 50, refine 10", 50, 10],
    ["nprobes 200, refine 10", 200, 10],
    ["nprobes 1000, refine 10", 1000, 10],
  ];
  let vector = { p50: Number.NaN, recall: 0, setting: "none reached 0.95" };
  for (const [name, nprobes, refine] of settings) {
    const run = async (i: number) => {
      let query = table.search(Array.from(vq[i % VECTOR_QUERIES].q)).where(`category = ${vq[i % VECTOR_QUERIES].k}`).limit(10);
      if (nprobes !== undefined && query.nprobes) query = query.nprobes(nprobes);
      if (refine !== undefined && query.refineFactor) query = query.refineFactor(refine);
      return (await query.select(["id"]).toArray()).map((r) => Number(r.id));
    };
    let hits = 0;
    for (let i = 0; i < VECTOR_QUERIES; i++) {
      const got = new Set(await run(i));
      hits += truth[i].filter((id) => got.has(id)).length;
    }
    const recall = hits / (VECTOR_QUERIES * 10);
    console.log(`  vector search, ${name}: recall@10 ${recall.toFixed(3)}`);
    if (recall >= 0.95) {
      vector = { p50: await latency(run), recall, setting: name };
      break;
    }
  }
  const total = await system.indexBytes(dir, table);
  size.vector = total - Object.values(size).reduce((a, b) => a + b, 0);
  table.close();
  db.close();
  return { build, size, queries, counts, vector };
}

/** Quiver without indexes on the same rows: the predicate no index helps, and a baseline. */
async function quiverPlain(data: Dataset, dir: string): Promise<number> {
  const q = await import("quiverdb");
  const db = await q.connect(dir, { maintenance: false });
  const table = await db.createTable("t", data.table);
  const value = await latency(async (i) => table.countRows(`id % 97 = ${i % 97} AND price > 100`));
  table.close();
  db.close();
  return value;
}

/** Peak memory of a B-tree build on BIG_ROWS random int64 values, in a process of its own:
 * one child writes the table, another opens it and builds the index. */
function bigBuild(): { baselineMiB: number; peakMiB: number; seconds: number } {
  const dir = mkdtempSync(path.join(tmpdir(), "quiver-bench-btree-"));
  const self = fileURLToPath(import.meta.url);
  try {
    const create = spawnSync(process.execPath, [self, "--child-create", dir, "--big-rows", String(BIG_ROWS)], { stdio: ["ignore", "pipe", "inherit"] });
    if (create.status !== 0) throw new Error("the 10M-row table could not be written");
    const run = spawnSync(process.execPath, [self, "--child-index", dir], { stdio: ["ignore", "pipe", "inherit"] });
    if (run.status !== 0) throw new Error("the 10M-row B-tree build failed");
    return JSON.parse(run.stdout.toString().trim().split("\n").pop() ?? "{}");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function childCreate(dir: string): Promise<void> {
  const q = await import("quiverdb");
  const db = await q.connect(dir, { maintenance: false, durability: "process" });
  const random = rng(5);
  const ids = permutation(BIG_ROWS, random);
  const schema = new Schema([new Field("id", new Int64(), false)]);
  const batch = (start: number) => {
    const end = Math.min(BIG_ROWS, start + 1_000_000);
    const data = makeData({
      type: new Struct(schema.fields),
      length: end - start,
      nullCount: 0,
      children: [makeData({ type: new Int64(), length: end - start, data: BigInt64Array.from(ids.subarray(start, end), (v) => BigInt(v)) } as never)],
    } as never);
    return new ArrowTable([new RecordBatch(schema, data as never)]);
  };
  const table = await db.createTable("big", batch(0));
  for (let start = 1_000_000; start < BIG_ROWS; start += 1_000_000) await table.add(batch(start));
  table.close();
  db.close();
}

/** The peak resident size of this process: VmHWM on Linux (ru_maxrss would include the
 * parent's size at fork, which survives exec), ru_maxrss elsewhere. */
function peakResidentBytes(): number {
  try {
    const status = readFileSync("/proc/self/status", "utf8");
    const kib = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
    if (kib) return Number(kib) * 1024;
  } catch {
    /* not Linux */
  }
  return process.resourceUsage().maxRSS * 1024;
}

async function childIndex(dir: string): Promise<void> {
  const q = await import("quiverdb");
  const db = await q.connect(dir, { maintenance: false });
  const table = await db.openTable("big");
  await table.countRows();
  const baseline = process.memoryUsage().rss;
  const seconds = (await timedMs(() => table.createIndex("id", { config: q.Index.btree() }))) / 1000;
  const peak = peakResidentBytes();
  console.log(JSON.stringify({ baselineMiB: baseline / 2 ** 20, peakMiB: peak / 2 ** 20, seconds }));
  table.close();
  db.close();
}

const row = (cells: string[]) => `| ${cells.join(" | ")} |`;

async function main(): Promise<void> {
  if (args["child-create"]) return childCreate(args["child-create"]);
  if (args["child-index"]) return childIndex(args["child-index"]);
  const { systems, versions } = await loadSystems();
  const started = new Date();
  console.log(`generating ${ROWS.toLocaleString("en")} rows …`);
  const data = dataset(ROWS);
  const results: Record<string, Measured> = {};
  for (const system of systems) {
    const dir = mkdtempSync(path.join(tmpdir(), `quiver-bench-scalar-${system.name}-`));
    try {
      results[system.name] = await measure(system, data, dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const plainDir = mkdtempSync(path.join(tmpdir(), "quiver-bench-scalar-plain-"));
  let plain: number;
  try {
    plain = await quiverPlain(data, plainDir);
  } finally {
    rmSync(plainDir, { recursive: true, force: true });
  }
  console.log(`B-tree build on ${BIG_ROWS.toLocaleString("en")} rows …`);
  const big = bigBuild();

  const q = results.quiver;
  const l = results.lancedb;
  for (const key of ["range", "count", "labels", "unhelped"]) {
    if (q.counts[key] !== l.counts[key]) throw new Error(`${key}: Quiver found ${q.counts[key]} rows, LanceDB ${l.counts[key]}`);
  }
  const queryRows: [string, string, number][] = [
    ["point", "`where id = X` (1 row)", 0.5],
    ["range", "`price` range selecting 0.1% of rows", 0.5],
    ["count", "`countRows(\"category = k\")` (1%)", 0.5],
    ["labels", "`array_has_any(tags, [a, b])`", 0.5],
  ];
  const buildTotal = (m: Measured) => SCALAR_INDEXES.reduce((s, [c]) => s + m.build[c], 0);
  const sizeTotal = (m: Measured) => SCALAR_INDEXES.reduce((s, [c]) => s + m.size[c], 0);
  const mb = (b: number) => `${(b / 1e6).toFixed(2)} MB`;
  const lines = [
    "<!-- scalar -->",
    "## Scalar indexes",
    "",
    generatedLine("npm run bench:scalar", started, `${versions}; folders under ${tmpdir()}`),
    "",
    `${ROWS.toLocaleString("en")} rows: id int64 unique (random order), category int32 of ${CATEGORIES} values, tags list<utf8> of 1–5 of ${LABELS.toLocaleString("en")} labels, price float64, a ${DIM}-d vector. Each system builds its own indexes: BTREE on id and price, BITMAP on category, LABEL_LIST on tags, IVF_PQ (1,000 partitions, 16 sub-vectors) on the vector. Query figures are p50 of ${RUNS} runs after ${WARMUP} warm-up runs; both systems return the same rows (checked). Ratios are Quiver / LanceDB; below 1 favours Quiver.`,
    "",
    "| query | Quiver p50 | LanceDB p50 | ratio | bar |",
    "| --- | --- | --- | --- | --- |",
    ...queryRows.map(([key, label, limit]) =>
      row([label, ms(q.queries[key]), ms(l.queries[key]), x(q.queries[key], l.queries[key]), bar(q.queries[key] / l.queries[key], limit)]),
    ),
    row([
      `vector search, top 10, 1% prefilter (\`category = k\`), recall@10 ≥ 0.95 (Quiver: ${q.vector.setting}, ${q.vector.recall.toFixed(3)}; LanceDB: ${l.vector.setting}, ${l.vector.recall.toFixed(3)})`,
      ms(q.vector.p50),
      ms(l.vector.p50),
      x(q.vector.p50, l.vector.p50),
      bar(q.vector.p50 / l.vector.p50, 0.5),
    ]),
    "",
    "| index | Quiver build | LanceDB build | ratio | Quiver size | LanceDB size | ratio |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...SCALAR_INDEXES.map(([column, kind]) =>
      row([`${kind} on ${column}`, ms(q.build[column]), ms(l.build[column]), x(q.build[column], l.build[column]), mb(q.size[column]), mb(l.size[column]), x(q.size[column], l.size[column])]),
    ),
    row(["**scalar indexes, all four**", ms(buildTotal(q)), ms(buildTotal(l)), x(buildTotal(q), buildTotal(l)), mb(sizeTotal(q)), mb(sizeTotal(l)), x(sizeTotal(q), sizeTotal(l))]),
    row(["IVF_PQ on vector", ms(q.build.vector), ms(l.build.vector), x(q.build.vector, l.build.vector), mb(q.size.vector), mb(l.size.vector), x(q.size.vector, l.size.vector)]),
    "",
    `Scalar index build: ${x(buildTotal(q), buildTotal(l))} of LanceDB (${bar(buildTotal(q) / buildTotal(l), 0.5)}); size on disk: ${x(sizeTotal(q), sizeTotal(l))} (${bar(sizeTotal(q) / sizeTotal(l), 1.2)}).`,
    "",
    `A predicate no index helps (\`countRows("id % 97 = k AND price > 100")\`: a function of a column, and a range over 90% of rows): Quiver with its indexes ${ms(q.queries.unhelped)}, without indexes ${ms(plain)}: ${x(q.queries.unhelped, plain)} (${bar(q.queries.unhelped / plain, 1.05)}); LanceDB with its indexes ${ms(l.queries.unhelped)}.`,
    "",
    `B-tree build on ${BIG_ROWS.toLocaleString("en")} random int64 values, in a process of its own: ${big.seconds.toFixed(1)} s; resident memory ${big.baselineMiB.toFixed(0)} MiB after opening the table, peak ${big.peakMiB.toFixed(0)} MiB during the build (+${(big.peakMiB - big.baselineMiB).toFixed(0)} MiB). The build sorts (value, row) pairs in a buffer of ${SORT_BUDGET_MIB} MiB and spills sorted runs beyond it; its stated budget is ${BUILD_BUDGET_MIB} MiB (${big.peakMiB - big.baselineMiB <= BUILD_BUDGET_MIB ? "met" : "**not met**"}).`,
    "",
    "<!-- /scalar -->",
    "",
  ];
  const section = lines.join("\n");
  console.log(`\n${section}`);
  if (!args["no-markdown"]) writeSection("scalar", "SCALAR.md", section);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.stack : error);
  process.exit(1);
});
