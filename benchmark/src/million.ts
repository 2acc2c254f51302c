// A million vectors: 1M × 384 rows of the anisotropic overlapping mixture (./vectors.ts,
// generated here deterministically), each system and index in its own process so peak
// resident memory is its own: the table loaded in batches of 100K, the index built at its
// defaults (build time), then 100 held-out queries one at a time at the index's default
// settings (recall@10 against Quiver's exact search, p50). Quiver IVF_RQ (the default),
// IVF_PQ and IVF_HNSW_SQ; LanceDB IVF_PQ and IVF_HNSW_SQ. Writes benchmark/MILLION.md and its
// section of BENCHMARKS.md.
//
//   npm run bench:million [-- --rows 1000000 --queries 100 --only quiver:ivfRq,lancedb:ivfPq]
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Field, FixedSizeList, Float32, Int32, makeData, RecordBatch, Schema, Struct, Table as ArrowTable } from "apache-arrow";
import { installedVersion } from "./env.js";
import { generatedLine, ms, writeSection, x } from "./section.js";
import { quantile } from "./stats.js";
import { K, mixtureChunks } from "./vectors.js";

const { values: args } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    queries: { type: "string", default: "100" },
    only: { type: "string" },
    child: { type: "string" },
    dir: { type: "string" },
    truth: { type: "string" },
    "no-markdown": { type: "boolean", default: false },
  },
});
const ROWS = Number(args.rows);
const QUERIES = Number(args.queries);
const DIM = 384;
const BATCH = 100_000;
const SEED = 11;
const SYSTEMS = ["quiver:ivfRq", "quiver:ivfPq", "quiver:hnswSq", "lancedb:ivfPq", "lancedb:hnswSq"] as const;

interface Measured {
  system: string;
  loadS: number;
  buildS: number;
  peakRssBytes: number;
  recall: number;
  p50: number;
  setting: string;
}

function batchTable(values: Float32Array, first: number): ArrowTable {
  const n = values.length / DIM;
  const listType = new FixedSizeList(DIM, new Field("item", new Float32(), true));
  const vectors = makeData({ type: listType, length: n, nullCount: 0, child: makeData({ type: new Float32(), length: n * DIM, data: values }) });
  const ids = makeData({ type: new Int32(), length: n, data: Int32Array.from({ length: n }, (_, i) => first + i) });
  const schema = new Schema([new Field("id", new Int32(), false), new Field("vector", listType, false)]);
  return new ArrowTable([new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: n, nullCount: 0, children: [ids, vectors] }))]);
}

/** The table's rows in batches, then the queries (the generator's next rows, held out). */
function* data(): Generator<{ rows?: Float32Array; queries?: Float32Array }, void, unknown> {
  let produced = 0;
  const queries = new Float32Array(QUERIES * DIM);
  for (const chunk of mixtureChunks(ROWS + QUERIES, DIM, SEED, BATCH)) {
    const n = chunk.length / DIM;
    const rows = Math.max(0, Math.min(n, ROWS - produced));
    if (rows > 0) yield { rows: chunk.subarray(0, rows * DIM) };
    if (rows < n) queries.set(chunk.subarray(rows * DIM), (produced + rows - ROWS) * DIM);
    produced += n;
  }
  yield { queries };
}

/** VmHWM on Linux (ru_maxrss would include the parent's size at fork). */
function peakResidentBytes(): number {
  try {
    const kib = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
    if (kib) return Number(kib) * 1024;
  } catch {
    /* not Linux */
  }
  return process.resourceUsage().maxRSS * 1024;
}

interface SearchTable {
  add(data: ArrowTable): Promise<unknown>;
  createIndex(column: string, options?: { config: unknown }): Promise<unknown>;
  search(v: Float32Array): { select(c: string[]): { limit(n: number): { toArray(): Promise<Record<string, unknown>[]> } } };
}

async function child(system: string, dir: string, truthFile: string): Promise<Measured> {
  const [engine, kind] = system.split(":");
  let table: SearchTable | undefined;
  let queries: Float32Array = new Float32Array(0);
  let loadMs = 0;
  let config: unknown;
  let exact: ((v: Float32Array) => Promise<number[]>) | undefined;
  let describe = async () => "defaults";
  const started = process.hrtime.bigint();
  if (engine === "quiver") {
    const q = await import("quiverdb");
    const db = await q.connect(dir);
    for (const part of data()) {
      if (part.queries) queries = part.queries;
      else if (!table) table = (await db.createTable("t", batchTable(part.rows!, 0))) as unknown as SearchTable;
      else await table.add(batchTable(part.rows!, await (table as unknown as { countRows(): Promise<number> }).countRows()));
    }
    config = (q.Index as unknown as Record<string, () => unknown>)[kind]();
    const t = table as unknown as import("quiverdb").Table;
    exact = async (v) => (await t.search(v).bypassVectorIndex().select(["id"]).limit(K).toArray()).map((r) => Number(r.id));
    describe = async () => {
      const c = (await t.indexStats("vector_idx")).calibration;
      if (!c) return "defaults";
      if (c.nprobes === 0) return "calibrated: exact search";
      return c.ef !== undefined ? `calibrated ef ${c.ef}, refine ${c.refineFactor}` : `calibrated nprobes ${c.nprobes}, refine ${c.refineFactor}`;
    };
  } else {
    const l = await import("@lancedb/lancedb");
    const db = await l.connect(dir);
    for (const part of data()) {
      if (part.queries) queries = part.queries;
      else if (!table) table = (await db.createTable("t", batchTable(part.rows!, 0) as never)) as unknown as SearchTable;
      else await table.add(batchTable(part.rows!, await (table as unknown as { countRows(): Promise<number> }).countRows()) as never);
    }
    config = (l.Index as unknown as Record<string, () => unknown>)[kind]();
  }
  loadMs = Number(process.hrtime.bigint() - started) / 1e6;
  if (!table) throw new Error("no rows");
  if (exact && !readFileSync(truthFile, "utf8").trim()) {
    // The first Quiver process computes the ground truth, exactly, before any index exists.
    const truth: number[][] = [];
    for (let i = 0; i < QUERIES; i++) truth.push(await exact(queries.subarray(i * DIM, (i + 1) * DIM)));
    writeFileSync(truthFile, JSON.stringify(truth));
  }
  const buildStart = process.hrtime.bigint();
  await table.createIndex("vector", { config });
  const buildS = Number(process.hrtime.bigint() - buildStart) / 1e9;
  const truth: number[][] = JSON.parse(readFileSync(truthFile, "utf8"));
  const times: number[] = [];
  let hits = 0;
  for (let i = -5; i < QUERIES; i++) {
    const v = queries.subarray(Math.max(i, 0) * DIM, (Math.max(i, 0) + 1) * DIM);
    const start = process.hrtime.bigint();
    const got = (await table.search(v).select(["id"]).limit(K).toArray()).map((r) => Number(r.id));
    const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
    if (i < 0) continue;
    times.push(elapsed);
    hits += got.filter((id) => truth[i].includes(id)).length;
  }
  times.sort((a, b) => a - b);
  return {
    system,
    loadS: loadMs / 1000,
    buildS,
    peakRssBytes: peakResidentBytes(),
    recall: hits / (QUERIES * K),
    p50: quantile(times, 0.5),
    setting: await describe(),
  };
}

async function main() {
  if (args.child) {
    const result = await child(args.child, args.dir!, args.truth!);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const started = new Date();
  const systems = args.only ? args.only.split(",") : [...SYSTEMS];
  const work = mkdtempSync(path.join(tmpdir(), "million-"));
  const truthFile = path.join(work, "truth.json");
  writeFileSync(truthFile, "");
  const self = fileURLToPath(import.meta.url);
  const results: Measured[] = [];
  try {
    // Quiver first: its first process writes the ground truth.
    for (const system of [...systems].sort((a, b) => Number(b.startsWith("quiver")) - Number(a.startsWith("quiver")))) {
      const dir = path.join(work, system.replace(":", "-"));
      console.log(`${system}…`);
      const run = spawnSync(process.execPath, [self, "--child", system, "--dir", dir, "--truth", truthFile, "--rows", String(ROWS), "--queries", String(QUERIES)], {
        stdio: ["ignore", "pipe", "inherit"],
        maxBuffer: 1 << 20,
      });
      if (run.status !== 0) throw new Error(`${system} failed (${run.status})`);
      const r: Measured = JSON.parse(run.stdout.toString().trim().split("\n").at(-1)!);
      console.log(r);
      results.push(r);
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  const lines = [
    "| system / index | load | build | peak RSS (load, build, search) | defaults: recall@10 / p50 |",
    "| --- | --- | --- | --- | --- |",
    ...results.map((r) => `| ${r.system} | ${r.loadS.toFixed(1)} s | ${r.buildS.toFixed(1)} s | ${gib(r.peakRssBytes)} | ${r.recall.toFixed(3)} / ${ms(r.p50)} (${r.setting}) |`),
  ];
  const find = (s: string) => results.find((r) => r.system === s);
  const pairs: [string, string][] = [
    ["quiver:ivfRq", "lancedb:ivfPq"],
    ["quiver:ivfPq", "lancedb:ivfPq"],
    ["quiver:hnswSq", "lancedb:hnswSq"],
  ];
  lines.push("");
  for (const [a, b] of pairs) {
    const [qa, lb] = [find(a), find(b)];
    if (qa && lb) lines.push(`- ${a} vs ${b}: build ${x(qa.buildS, lb.buildS)}, peak RSS ${x(qa.peakRssBytes, lb.peakRssBytes)}, p50 ${x(qa.p50, lb.p50)}`);
  }
  const q = await import("quiverdb");
  const section = [
    "<!-- million -->",
    `## ${ROWS.toLocaleString("en")} × ${DIM}: builds and memory`,
    "",
    generatedLine("npm run bench:million", started, `quiver ${q.version()}, lancedb ${installedVersion("@lancedb/lancedb")}`),
    `The anisotropic overlapping mixture, ${ROWS.toLocaleString("en")} rows loaded in batches of ${BATCH.toLocaleString("en")}; each system and index in its own process (peak RSS is that process's VmHWM). ${QUERIES} held-out queries one at a time at each index's defaults; recall@10 against Quiver's exact search.`,
    "",
    ...lines,
    "<!-- /million -->",
    "",
  ].join("\n");
  if (!args["no-markdown"]) writeSection("million", "MILLION.md", section);
  else console.log(section);
}

await main();
