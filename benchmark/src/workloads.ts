// The workloads, each run in a child process per system (src/worker.ts) so memory figures do
// not mix. A workload that a system cannot run yet reports "n/a" with the reason.
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
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
import type { Columns, Size } from "./datasets.js";
import { FILTER, type QuerySet, recallAt } from "./queries.js";
import type { Driver, SearchOptions, System } from "./systems.js";

export const BENCH_TABLE = "bench";

export interface Measurement {
  unit: string;
  values: number[];
  /** Rows (and bytes) each sample processed, for throughput. */
  rowsPerSample?: number;
  /** What `rowsPerSample` counts (default rows). */
  throughputUnit?: string;
  bytesPerSample?: number;
  params: Record<string, unknown>;
}

export interface WorkloadContext {
  driver: Driver;
  /** The prepared table, open (for workloads with needsTable). */
  system: System;
  /** The folder holding the prepared table. */
  dbDir: string;
  /** Dataset columns (loaded only for workloads that need them). */
  columns: () => Columns;
  /** Up to `count` query vectors with exact ground truth. */
  queries: (count: number) => QuerySet;
  /** A scratch database folder for ingest runs. */
  scratch: string;
  size: Size;
}

export interface Workload {
  name: string;
  description: string;
  /** Fresh process per sample (cold start); the runner launches `iterations` processes. */
  perProcess?: boolean;
  /** Opens the prepared table before running. */
  needsTable: boolean;
  iterations: Record<Size, number>;
  /** Datasets it runs on (default: every one); workloads on their own synthetic data run once. */
  datasets?: string[];
  /** Lower-is-better bar Quiver must meet against LanceDB, as a ratio of medians. */
  bar?: { metric: "median" | "throughput" | "peak_rss"; ratio: number; text: string };
  run(ctx: WorkloadContext, iterations: number): Promise<Measurement>;
}

const BATCH_ROWS = 10_000;

/** The dataset as an apache-arrow table: id int64, vector fixed_size_list<float32>, category
 * int32, price float64, text utf8; in batches of 10,000 rows. */
export function arrowTableOf(cols: Columns): ArrowTable {
  const vectorType = new FixedSizeList(cols.d, new Field("item", new Float32(), true));
  const schema = new Schema([
    new Field("id", new Int64(), false),
    new Field("vector", vectorType, false),
    new Field("category", new Int32(), false),
    new Field("price", new Float64(), false),
    new Field("text", new Utf8(), false),
  ]);
  const batches: RecordBatch[] = [];
  for (let start = 0; start < cols.n; start += BATCH_ROWS) {
    const end = Math.min(cols.n, start + BATCH_ROWS);
    const length = end - start;
    const ids = BigInt64Array.from({ length }, (_, i) => BigInt(start + i));
    const flat = cols.vectors.subarray(start * cols.d, end * cols.d);
    const children = [
      makeData({ type: new Int64(), length, data: ids } as never),
      makeData({
        type: vectorType,
        length,
        child: makeData({ type: new Float32(), length: flat.length, data: flat } as never),
      } as never),
      makeData({ type: new Int32(), length, data: cols.category.subarray(start, end) } as never),
      makeData({ type: new Float64(), length, data: cols.price.subarray(start, end) } as never),
      vectorFromArray(cols.text.slice(start, end), new Utf8()).data[0],
    ];
    const data = makeData({ type: new Struct(schema.fields), length, nullCount: 0, children } as never);
    batches.push(new RecordBatch(schema, data as never));
  }
  return new ArrowTable(batches);
}

/** The dataset as plain objects, as an app would hold them (vectors as number[]). */
export function objectRowsOf(cols: Columns): Record<string, unknown>[] {
  return Array.from({ length: cols.n }, (_, i) => ({
    id: i,
    vector: Array.from(cols.vectors.subarray(i * cols.d, (i + 1) * cols.d)),
    category: cols.category[i],
    price: cols.price[i],
    text: cols.text[i],
  }));
}

function rawBytes(cols: Columns): number {
  const textBytes = cols.text.reduce((s, t) => s + Buffer.byteLength(t), 0);
  return cols.n * (8 + 4 * cols.d + 4 + 8 + 4) + textBytes;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** A seeded generator of row positions, identical for both systems. */
function positions(seed: number, count: number, n: number): number[] {
  let s = seed >>> 0 || 1;
  return Array.from({ length: count }, () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  });
}

async function ingest(ctx: WorkloadContext, iterations: number, data: ArrowTable | Record<string, unknown>[], cols: Columns) {
  const values: number[] = [];
  // One untimed warm-up ingest first (JIT, allocator and page cache), as for every workload.
  for (let i = -1; i < iterations; i++) {
    rmSync(ctx.scratch, { recursive: true, force: true });
    flushDirtyPages();
    const target = await ctx.driver.connect(ctx.scratch);
    const seconds = (await timed(() => target.createTable("ingest", data))) / 1000;
    if (i >= 0) values.push(seconds);
    target.close();
  }
  rmSync(ctx.scratch, { recursive: true, force: true });
  return { unit: "s", values, rowsPerSample: cols.n, bytesPerSample: rawBytes(cols), params: { rows: cols.n, dim: cols.d } };
}

/** Writes back dirty pages left by earlier steps (preparing tables, the other system's
 * ingest), so each timed write starts from the same state instead of competing with them. */
export function flushDirtyPages() {
  try {
    execFileSync("sync");
  } catch {
    // No `sync` (not a Unix): samples are noisier, not wrong.
  }
}

async function repeat(iterations: number, fn: (i: number) => Promise<unknown>, warmup = 1): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn(-1 - i);
  const values: number[] = [];
  for (let i = 0; i < iterations; i++) values.push(await timed(() => fn(i)));
  return values;
}

/** Seconds per scan of the prepared table; throughput counts every row of the table. */
async function timedScans(
  ctx: WorkloadContext,
  iterations: number,
  scan: { columns?: string[]; filter?: string },
): Promise<Measurement> {
  const n = await ctx.system.countRows();
  const values = (await repeat(iterations, () => ctx.system.scan(scan))).map((ms) => ms / 1000);
  return { unit: "s", values, rowsPerSample: n, params: { rows: n, ...scan } };
}

/** Queries per search workload (each query is one sample). */
const SEARCH_QUERIES: Record<Size, number> = { small: 50, medium: 200, full: 200 };

/** A setting at which LanceDB 0.39 reaches recall@10 ≥ 0.95 on the reference data; both
 * systems run it in the tuned workloads. */
const TUNED: Pick<SearchOptions, "nprobes" | "refineFactor"> = { nprobes: 20, refineFactor: 10 };

/** Settings each system tries, cheapest first, in the matched-recall workload. */
const RECALL_LADDER: Record<System["name"], Pick<SearchOptions, "nprobes" | "refineFactor">[]> = {
  quiver: [
    { nprobes: 5, refineFactor: 4 },
    { nprobes: 10, refineFactor: 4 },
    { nprobes: 20, refineFactor: 4 },
    { nprobes: 30, refineFactor: 4 },
    { nprobes: 40, refineFactor: 4 },
    { nprobes: 60, refineFactor: 10 },
    { nprobes: 100, refineFactor: 10 },
  ],
  lancedb: [
    { nprobes: 5, refineFactor: 10 },
    { nprobes: 10, refineFactor: 10 },
    { nprobes: 20, refineFactor: 10 },
    { nprobes: 40, refineFactor: 10 },
    { nprobes: 60, refineFactor: 20 },
    { nprobes: 100, refineFactor: 20 },
  ],
};
/** Recall@10 the matched-recall workload asks for. */
const TARGET_RECALL = 0.95;

/** Builds the default index on the prepared table unless one exists (untimed). */
async function ensureIndex(ctx: WorkloadContext): Promise<void> {
  if (!(await ctx.system.hasVectorIndex())) await ctx.system.createVectorIndex();
}

/** Per-query latency (ms) of single searches, and their recall@10. */
async function searchLatency(ctx: WorkloadContext, options: Omit<SearchOptions, "k">, warmup = 5): Promise<Measurement> {
  await ensureIndex(ctx);
  const queries = ctx.queries(SEARCH_QUERIES[ctx.size]);
  const query = (q: number) => queries.vectors.subarray(q * queries.d, (q + 1) * queries.d);
  const results: number[][] = new Array(queries.count);
  const values = await repeat(
    queries.count,
    async (i) => {
      const ids = await ctx.system.search(query(i < 0 ? -1 - i : i), { k: 10, ...options });
      if (i >= 0) results[i] = ids;
    },
    warmup,
  );
  const truth = options.filter ? queries.gtFiltered : queries.gt;
  const recall = recallAt(10, results, truth);
  return { unit: "ms", values, params: { k: 10, queries: queries.count, ...options, recall_at_10: Number(recall.toFixed(4)) } };
}

const VECTOR_WORKLOADS: Workload[] = [
  {
    name: "index_build",
    description: "createIndex(\"vector\") IVF_PQ at each system's defaults, on the prepared table",
    needsTable: true,
    iterations: { small: 1, medium: 1, full: 1 },
    bar: { metric: "median", ratio: 0.5, text: "time ≤ 0.5×" },
    async run(ctx, iterations) {
      const values = await repeat(iterations, () => ctx.system.createVectorIndex(), 0);
      return { unit: "s", values: values.map((ms) => ms / 1000), params: { index: "IVF_PQ", defaults: true } };
    },
  },
  {
    name: "search_default",
    description: "search(q).limit(10) at each system's default settings (recall@10 shown)",
    needsTable: true,
    iterations: { small: 1, medium: 1, full: 1 },
    async run(ctx) {
      return searchLatency(ctx, {});
    },
  },
  {
    name: "search_tuned",
    description: "search(q).nprobes(20).refineFactor(10).limit(10): the same setting for both",
    needsTable: true,
    iterations: { small: 1, medium: 1, full: 1 },
    async run(ctx) {
      return searchLatency(ctx, TUNED);
    },
  },
  {
    name: "search_recall95",
    description: `search(q).limit(10) at each system's cheapest setting reaching recall@10 ≥ ${TARGET_RECALL} (setting shown in params)`,
    needsTable: true,
    iterations: { small: 1, medium: 1, full: 1 },
    bar: { metric: "median", ratio: 0.33, text: "p50 ≤ 0.33×" },
    async run(ctx) {
      await ensureIndex(ctx);
      const queries = ctx.queries(SEARCH_QUERIES[ctx.size]);
      const query = (q: number) => queries.vectors.subarray(q * queries.d, (q + 1) * queries.d);
      const ladder = RECALL_LADDER[ctx.system.name];
      let chosen = ladder[ladder.length - 1];
      for (const setting of ladder) {
        const results: number[][] = [];
        for (let q = 0; q < queries.count; q++) results.push(await ctx.system.search(query(q), { k: 10, ...setting }));
        if (recallAt(10, results, queries.gt) >= TARGET_RECALL) {
          chosen = setting;
          break;
        }
      }
      const measured = await searchLatency(ctx, chosen);
      return { ...measured, params: { ...measured.params, target_recall: TARGET_RECALL } };
    },
  },
  {
    name: "search_filtered",
    description: `search(q).where("${FILTER}").limit(10) (prefilter, ~10% of rows) at default settings`,
    needsTable: true,
    iterations: { small: 1, medium: 1, full: 1 },
    async run(ctx) {
      return searchLatency(ctx, { filter: FILTER });
    },
  },
  {
    name: "search_qps",
    description: "throughput with 8 searches in flight (tuned settings)",
    needsTable: true,
    iterations: { small: 2, medium: 5, full: 5 },
    bar: { metric: "throughput", ratio: 2, text: "queries/s ≥ 2×" },
    async run(ctx, iterations) {
      await ensureIndex(ctx);
      const queries = ctx.queries(SEARCH_QUERIES[ctx.size]);
      const query = (q: number) => queries.vectors.subarray(q * queries.d, (q + 1) * queries.d);
      const inFlight = 8;
      const values = await repeat(iterations, async () => {
        let next = 0;
        const worker = async () => {
          while (next < queries.count) await ctx.system.search(query(next++), { k: 10, ...TUNED });
        };
        await Promise.all(Array.from({ length: inFlight }, worker));
      });
      return {
        unit: "s",
        values: values.map((ms) => ms / 1000),
        rowsPerSample: queries.count,
        throughputUnit: "queries/s",
        params: { in_flight: inFlight, queries: queries.count, ...TUNED },
      };
    },
  },
  {
    name: "exact_search",
    description: "search(q).bypassVectorIndex().limit(10): exact top 10 over every row",
    needsTable: true,
    iterations: { small: 1, medium: 1, full: 1 },
    run: (ctx) => exactSearch(ctx, ctx.system),
  },
  {
    name: "exact_search_mmap",
    description: "exact_search with Quiver connected with memoryMap: true (LanceDB has no such option: as exact_search)",
    needsTable: true,
    iterations: { small: 1, medium: 1, full: 1 },
    async run(ctx) {
      const mapped = await ctx.driver.connect(ctx.dbDir, { memoryMap: true });
      await mapped.openTable(BENCH_TABLE);
      try {
        return await exactSearch(ctx, mapped);
      } finally {
        mapped.close();
      }
    },
  },
];

/** Exact top 10 of a tenth of the search queries (two warm-up queries first), with recall. */
async function exactSearch(ctx: WorkloadContext, system: System): Promise<Measurement> {
  const queries = ctx.queries(SEARCH_QUERIES[ctx.size] / 10);
  const query = (q: number) => queries.vectors.subarray(q * queries.d, (q + 1) * queries.d);
  const results: number[][] = new Array(queries.count);
  const values = await repeat(
    queries.count,
    async (i) => {
      const ids = await system.search(query(Math.max(i, 0)), { k: 10, exact: true });
      if (i >= 0) results[i] = ids;
    },
    2,
  );
  const n = await system.countRows();
  return {
    unit: "ms",
    values,
    params: { k: 10, queries: queries.count, rows: n, recall_at_10: Number(recallAt(10, results, queries.gt).toFixed(4)) },
  };
}

export const WORKLOADS: Workload[] = [
  {
    name: "ingest_arrow",
    description: "create a table from an apache-arrow Table",
    needsTable: false,
    // Writes of ~300 MB vary by ±40% from one to the next on a small VM: more samples.
    iterations: { small: 2, medium: 7, full: 1 },
    bar: { metric: "throughput", ratio: 2, text: "rows/s ≥ 2×" },
    async run(ctx, iterations) {
      const cols = ctx.columns();
      return ingest(ctx, iterations, arrowTableOf(cols), cols);
    },
  },
  {
    name: "ingest_objects",
    description: "create a table from plain JS objects (vectors as number[])",
    needsTable: false,
    iterations: { small: 2, medium: 2, full: 1 },
    async run(ctx, iterations) {
      const cols = ctx.columns();
      return ingest(ctx, iterations, objectRowsOf(cols), cols);
    },
  },
  {
    name: "cold_open",
    description: "connect + open table + first query (10 rows) in a fresh process",
    perProcess: true,
    needsTable: false,
    iterations: { small: 3, medium: 10, full: 10 },
    bar: { metric: "median", ratio: 0.5, text: "time ≤ 0.5×" },
    async run(ctx) {
      const start = performance.now();
      const fresh = await ctx.driver.connect(ctx.dbDir);
      await fresh.openTable(BENCH_TABLE);
      await fresh.scan({ limit: 10 });
      const ms = performance.now() - start;
      fresh.close();
      return { unit: "ms", values: [ms], params: {} };
    },
  },
  {
    name: "full_scan",
    description: "stream every column of every row",
    needsTable: true,
    iterations: { small: 3, medium: 5, full: 3 },
    bar: { metric: "throughput", ratio: 1.5, text: "rows/s ≥ 1.5×" },
    async run(ctx, iterations) {
      return timedScans(ctx, iterations, {});
    },
  },
  {
    name: "projected_scan",
    description: "stream the id and price columns",
    needsTable: true,
    iterations: { small: 3, medium: 5, full: 3 },
    bar: { metric: "throughput", ratio: 1.5, text: "rows/s ≥ 1.5×" },
    async run(ctx, iterations) {
      return timedScans(ctx, iterations, { columns: ["id", "price"] });
    },
  },
  {
    name: "filtered_scan",
    description: "stream id, price where category < 10 (~10% of rows)",
    needsTable: true,
    iterations: { small: 3, medium: 5, full: 3 },
    async run(ctx, iterations) {
      return timedScans(ctx, iterations, { columns: ["id", "price"], filter: "category < 10" });
    },
  },
  {
    name: "take_1000",
    description: "fetch 1,000 random whole rows by row id",
    needsTable: true,
    iterations: { small: 10, medium: 30, full: 30 },
    async run(ctx, iterations) {
      const ids = await ctx.system.rowIds();
      const sets = Array.from({ length: iterations + 1 }, (_, i) => positions(1000 + i, 1000, ids.length).map((p) => ids[p]));
      const values = await repeat(iterations, (i) => ctx.system.takeRowIds(sets[i + 1]));
      return { unit: "ms", values, params: { rows: 1000 } };
    },
  },
  {
    name: "take_1",
    description: "fetch one random whole row by row id",
    needsTable: true,
    iterations: { small: 50, medium: 200, full: 200 },
    bar: { metric: "median", ratio: 0.5, text: "p50 ≤ 0.5×" },
    async run(ctx, iterations) {
      const ids = await ctx.system.rowIds();
      const picks = positions(7, iterations + 5, ids.length).map((p) => ids[p]);
      const values = await repeat(iterations, (i) => ctx.system.takeRowIds([picks[i + 5]]), 5);
      return { unit: "ms", values, params: { rows: 1 } };
    },
  },
  {
    name: "point_query",
    description: "where(\"id = X\") for a random X, no index",
    needsTable: true,
    iterations: { small: 10, medium: 30, full: 20 },
    async run(ctx, iterations) {
      const n = await ctx.system.countRows();
      const picks = positions(11, iterations + 1, n);
      const values = await repeat(iterations, (i) => ctx.system.scan({ filter: `id = ${picks[i + 1]}` }));
      return { unit: "ms", values, params: { filter: "id = X" } };
    },
  },
  {
    name: "count_filter",
    description: "countRows(\"category < 10\")",
    needsTable: true,
    iterations: { small: 5, medium: 10, full: 10 },
    async run(ctx, iterations) {
      const values = await repeat(iterations, () => ctx.system.countRows("category < 10"));
      return { unit: "ms", values, params: { filter: "category < 10" } };
    },
  },
  {
    name: "delete_filtered",
    description: "delete(\"category = k\") (~1% of rows) on a copy of the table, a new k each time",
    needsTable: false,
    iterations: { small: 3, medium: 5, full: 5 },
    async run(ctx, iterations) {
      const target = await scratchCopy(ctx);
      const values = await repeat(iterations, (i) => target.delete(`category = ${50 + i}`));
      target.close();
      rmSync(ctx.scratch, { recursive: true, force: true });
      return { unit: "ms", values, params: { filter: "category = k" } };
    },
  },
  {
    name: "update_filtered",
    description: "update({ where: \"category = k\", valuesSql: { price: \"price * 1.1\" } }) (~1% of rows) on a copy of the table",
    needsTable: false,
    iterations: { small: 3, medium: 5, full: 5 },
    async run(ctx, iterations) {
      const target = await scratchCopy(ctx);
      const values = await repeat(iterations, (i) => target.update(`category = ${50 + i}`, { price: "price * 1.1" }));
      target.close();
      rmSync(ctx.scratch, { recursive: true, force: true });
      return { unit: "ms", values, params: { filter: "category = k", valuesSql: "price * 1.1" } };
    },
  },
  {
    name: "merge_insert",
    description: "mergeInsert(\"id\") upsert of a source (half existing keys, half new) into a scalar table, fresh table each time",
    needsTable: false,
    datasets: ["clustered"],
    iterations: { small: 2, medium: 3, full: 3 },
    async run(ctx, iterations) {
      const { target: targetRows, source: sourceRows } = MERGE_SIZES[ctx.size];
      const targetData = scalarTable(0, targetRows);
      // Half the source updates existing keys (spread over the table), half inserts new ones.
      const source = scalarTable(targetRows - sourceRows / 2, sourceRows, 2);
      const values: number[] = [];
      for (let i = -1; i < iterations; i++) {
        rmSync(ctx.scratch, { recursive: true, force: true });
        const target = await ctx.driver.connect(ctx.scratch);
        await target.createTable("merge", targetData);
        const seconds = (await timed(() => target.upsert("id", source))) / 1000;
        if ((await target.countRows()) !== targetRows + sourceRows / 2) throw new Error("merge_insert lost or doubled rows");
        if (i >= 0) values.push(seconds);
        target.close();
      }
      rmSync(ctx.scratch, { recursive: true, force: true });
      return {
        unit: "s",
        values,
        rowsPerSample: sourceRows,
        params: { target_rows: targetRows, source_rows: sourceRows, matched: sourceRows / 2 },
      };
    },
  },
  {
    name: "serve",
    description: "a serving process: open, 100 single-row takes, 10 takes of 1,000 rows, 3 projected scans",
    needsTable: true,
    iterations: { small: 1, medium: 3, full: 3 },
    bar: { metric: "peak_rss", ratio: 1, text: "peak RSS ≤ 1×" },
    async run(ctx, iterations) {
      const ids = await ctx.system.rowIds();
      const values = await repeat(
        iterations,
        async (i) => {
          const picks = positions(100 + i, 100 + 10 * 1000, ids.length).map((p) => ids[p]);
          for (let k = 0; k < 100; k++) await ctx.system.takeRowIds([picks[k]]);
          for (let k = 0; k < 10; k++) await ctx.system.takeRowIds(picks.slice(100 + k * 1000, 100 + (k + 1) * 1000));
          for (let k = 0; k < 3; k++) await ctx.system.scan({ columns: ["id", "price"] });
        },
        0,
      );
      return { unit: "ms", values, params: { takes1: 100, takes1000: 10, scans: 3 } };
    },
  },
  ...VECTOR_WORKLOADS,
];

/** Target and source rows of the merge_insert workload (the reference: 1M × 100K). */
const MERGE_SIZES: Record<Size, { target: number; source: number }> = {
  small: { target: 100_000, source: 10_000 },
  medium: { target: 1_000_000, source: 100_000 },
  full: { target: 1_000_000, source: 100_000 },
};

/** Rows `start..start + n` of a scalar table: id int64, category int32, price float64, text. */
function scalarTable(start: number, n: number, version = 1): ArrowTable {
  const schema = new Schema([
    new Field("id", new Int64(), false),
    new Field("category", new Int32(), false),
    new Field("price", new Float64(), false),
    new Field("text", new Utf8(), false),
  ]);
  const batches: RecordBatch[] = [];
  for (let from = 0; from < n; from += BATCH_ROWS) {
    const length = Math.min(BATCH_ROWS, n - from);
    const first = start + from;
    const children = [
      makeData({ type: new Int64(), length, data: BigInt64Array.from({ length }, (_, i) => BigInt(first + i)) } as never),
      makeData({ type: new Int32(), length, data: Int32Array.from({ length }, (_, i) => (first + i) % 100) } as never),
      makeData({ type: new Float64(), length, data: Float64Array.from({ length }, (_, i) => version * (first + i) * 0.01) } as never),
      vectorFromArray(
        Array.from({ length }, (_, i) => `item ${first + i} v${version}`),
        new Utf8(),
      ).data[0],
    ];
    const data = makeData({ type: new Struct(schema.fields), length, nullCount: 0, children } as never);
    batches.push(new RecordBatch(schema, data as never));
  }
  return new ArrowTable(batches);
}

/** A fresh copy of the dataset's table in the scratch folder (not timed), open. */
async function scratchCopy(ctx: WorkloadContext): Promise<System> {
  rmSync(ctx.scratch, { recursive: true, force: true });
  const target = await ctx.driver.connect(ctx.scratch);
  await target.createTable("mutate", arrowTableOf(ctx.columns()));
  return target;
}

export function workload(name: string): Workload {
  const found = WORKLOADS.find((w) => w.name === name);
  if (!found) throw new Error(`unknown workload '${name}'; known: ${WORKLOADS.map((w) => w.name).join(", ")}`);
  return found;
}
