// Full-text search side by side: Quiver and LanceDB on the same texts with the same tokenizer
// settings (simple tokenizer, lowercase, no stemming, no stop words, no folding, positions
// kept), on the pydocs paragraphs (39,454) and on a corpus of Debian package descriptions
// (benchmark/fts-corpus.py). Measures the FTS index build and size, query p50 per class
// (single terms, OR of 3, AND of 3, phrases; top 10), whether both return the same top-10
// sets, and on pydocs a hybrid query (vector + text, RRF) with each system's IVF_HNSW_SQ
// index. tantivy (PyPI, benchmark/fts-tantivy.py) runs the same queries as a reference line.
// Writes benchmark/FTS.md and its section of BENCHMARKS.md.
//
//   npm run bench:fts [-- --corpus pydocs,debian --queries 200 --no-markdown]
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { gunzipSync } from "node:zlib";
import { Field, FixedSizeList, Float32, Int32, makeData, RecordBatch, Schema, Struct, Table as ArrowTable, Utf8, vectorFromArray } from "apache-arrow";
import { dataRoot, decodeHalf } from "./datasets.js";
import { installedVersion, repoRoot } from "./env.js";
import { bar, generatedLine, ms, timedMs, writeSection, x } from "./section.js";
import { quantile, rng } from "./stats.js";

const { values: args } = parseArgs({
  options: {
    corpus: { type: "string", default: "pydocs,debian" },
    queries: { type: "string", default: "200" },
    "no-markdown": { type: "boolean", default: false },
  },
});
const QUERIES = Number(args.queries);
const CLASSES = ["single", "or3", "and3", "phrase"] as const;
type QueryClass = (typeof CLASSES)[number];
const SETTINGS = { baseTokenizer: "simple", lowercase: true, stem: false, removeStopWords: false, asciiFolding: false, withPosition: true } as const;
const STOP = new Set(
  "a an and are as at be but by for from has have in is it its of on or that the this to was were will with you your not can if then than into about also may more such these those which when where who how what there their they we our all any each other only some".split(
    " ",
  ),
);

interface Corpus {
  name: string;
  texts: string[];
  queries: Record<QueryClass, string[]>;
  /** pydocs: row vectors and query vectors (384-d) for the hybrid query. */
  vectors?: { dim: number; base: Float32Array; queries: Float32Array };
}

const words = (text: string) => (text.toLowerCase().match(/[\p{Alphabetic}\p{N}]+/gu) ?? []).filter((w) => w.length <= 40);

/** Queries of each class: mid-frequency words (not stop words, 3+ characters) and phrases of consecutive ones. */
function makeQueries(texts: string[], n: number): Record<QueryClass, string[]> {
  const random = rng(18);
  const df = new Map<string, number>();
  const tokenized = texts.map(words);
  for (const doc of tokenized) for (const w of new Set(doc)) df.set(w, (df.get(w) ?? 0) + 1);
  const usable = (w: string) => w.length >= 3 && !STOP.has(w) && (df.get(w) ?? 0) >= 20 && (df.get(w) ?? 0) <= Math.max(40, texts.length / 10);
  const pool = [...df.keys()].filter(usable).sort();
  const pick = () => pool[Math.floor(random() * pool.length)];
  const phrase = (): string => {
    for (;;) {
      const doc = tokenized[Math.floor(random() * tokenized.length)];
      const len = 2 + Math.floor(random() * 2);
      if (doc.length < len) continue;
      const start = Math.floor(random() * (doc.length - len + 1));
      const run = doc.slice(start, start + len);
      if (run.every((w) => w.length >= 3 && !STOP.has(w)) && run.some(usable)) return run.join(" ");
    }
  };
  return {
    single: Array.from({ length: n }, pick),
    or3: Array.from({ length: n }, () => [pick(), pick(), pick()].join(" ")),
    // Words that occur together, so AND finds rows: three of one document's usable words.
    and3: Array.from({ length: n }, () => {
      for (;;) {
        const doc = [...new Set(tokenized[Math.floor(random() * tokenized.length)].filter(usable))];
        if (doc.length < 3) continue;
        const chosen = new Set<string>();
        while (chosen.size < 3) chosen.add(doc[Math.floor(random() * doc.length)]);
        return [...chosen].join(" ");
      }
    }),
    phrase: Array.from({ length: n }, phrase),
  };
}

function pydocs(): Corpus | null {
  const src = path.join(repoRoot, "..", "shared", "data", "pydocs-minilm-384");
  if (!existsSync(path.join(src, "texts.jsonl.gz"))) return null;
  const lines = (file: string) =>
    gunzipSync(readFileSync(path.join(src, file)))
      .toString("utf8")
      .split("\n")
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as string);
  const texts = lines("texts.jsonl.gz");
  const bytes = readFileSync(path.join(src, "base.f16"));
  const n = bytes.readUInt32LE(4);
  const dim = bytes.readUInt32LE(8);
  const base = new Float32Array(n * dim);
  for (let i = 0; i < n * dim; i++) base[i] = decodeHalf(bytes.readUInt16LE(12 + 2 * i));
  const q = readFileSync(path.join(src, "queries.f32"));
  const queries = new Float32Array(q.buffer.slice(q.byteOffset + 12, q.byteOffset + q.byteLength));
  const corpus: Corpus = { name: "pydocs", texts: texts.slice(0, n), queries: makeQueries(texts.slice(0, n), QUERIES), vectors: { dim, base, queries } };
  saveForTantivy(corpus);
  return corpus;
}

function debian(): Corpus | null {
  const dir = path.join(dataRoot, "fts-corpus");
  if (!existsSync(path.join(dir, "texts.jsonl"))) {
    console.error("debian: no corpus; run `python3 benchmark/fts-corpus.py` first");
    return null;
  }
  const texts = readFileSync(path.join(dir, "texts.jsonl"), "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => {
      const v = JSON.parse(l) as string | { text: string };
      return typeof v === "string" ? v : v.text;
    });
  const corpus: Corpus = { name: "debian", texts, queries: makeQueries(texts, QUERIES) };
  saveForTantivy(corpus);
  return corpus;
}

/** The texts and queries as fts-tantivy.py reads them. */
function saveForTantivy(corpus: Corpus): void {
  const dir = path.join(dataRoot, `fts-${corpus.name}-run`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "texts.jsonl"), corpus.texts.map((t) => JSON.stringify(t)).join("\n") + "\n");
  // fts-tantivy.py's format (benchmark/fts_queries.py): terms per query, the operator per class.
  const op: Record<QueryClass, string> = { single: "or", or3: "or", and3: "and", phrase: "phrase" };
  const classes = Object.fromEntries(CLASSES.map((c) => [c, { op: op[c], queries: corpus.queries[c].map((q) => ({ terms: q.split(" ") })) }]));
  writeFileSync(path.join(dir, "queries.json"), JSON.stringify({ format: "quiver-fts-queries/1", classes }));
}

function table(corpus: Corpus): ArrowTable {
  const n = corpus.texts.length;
  const fields: Field[] = [new Field("id", new Int32(), false), new Field("text", new Utf8(), true)];
  const children: unknown[] = [makeData({ type: new Int32(), length: n, data: Int32Array.from({ length: n }, (_, i) => i) } as never), vectorFromArray(corpus.texts, new Utf8()).data[0]];
  if (corpus.vectors) {
    const { dim, base } = corpus.vectors;
    const type = new FixedSizeList(dim, new Field("item", new Float32(), true));
    fields.push(new Field("vector", type, true));
    children.push(makeData({ type, length: n, nullCount: 0, child: makeData({ type: new Float32(), length: n * dim, data: base }) } as never) as never);
  }
  const schema = new Schema(fields);
  return new ArrowTable([new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: n, nullCount: 0, children } as never) as never)]);
}

function folderBytes(dir: string): number {
  if (!existsSync(dir)) return 0;
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? folderBytes(p) : statSync(p).size;
  }
  return total;
}

interface Hit {
  id: number;
  score: number;
}

/** One system's handle on a table, with the calls the benchmark makes. */
interface Side {
  name: "quiver" | "lancedb";
  build(): Promise<void>;
  indexBytes(): Promise<number>;
  query(cls: QueryClass, text: string): Promise<Hit[]>;
  vectorIndex(): Promise<void>;
  hybrid(vector: Float32Array, text: string): Promise<unknown[]>;
}

async function sides(corpus: Corpus, root: string): Promise<Side[]> {
  const q = await import("../../dist/index.js");
  // LanceDB warns on every query that selects columns without `_score`.
  process.env.LANCEDB_LOG ??= "error";
  const l = await import("@lancedb/lancedb");
  const data = table(corpus);
  const hits = (rows: Record<string, unknown>[]) => rows.map((r) => ({ id: Number(r.id), score: Number(r._score) }));
  const qdir = path.join(root, "quiver");
  const qdb = await q.connect(qdir, { maintenance: false });
  const qt = await qdb.createTable("docs", data);
  const ldir = path.join(root, "lancedb");
  const ldb = await l.connect(ldir);
  const lt = await ldb.createTable("docs", data);
  const lrrf = await l.rerankers.RRFReranker.create();
  const quiver: Side = {
    name: "quiver",
    build: async () => void (await qt.createIndex("text", { config: q.Index.fts(SETTINGS) })),
    indexBytes: async () => (await qt.indexStats("text_idx")).sizeBytes,
    query: async (cls, text) => {
      const query =
        cls === "phrase"
          ? new q.PhraseQuery(text, "text")
          : new q.MatchQuery(text, "text", { fuzziness: 0, operator: cls === "and3" ? q.Operator.And : q.Operator.Or });
      return hits(await qt.query().fullTextSearch(query).select(["id"]).limit(10).toArray());
    },
    vectorIndex: async () => void (await qt.createIndex("vector", { config: q.Index.hnswSq() })),
    hybrid: (vector, text) => qt.query().nearestTo(vector).fullTextSearch(text).rerank(q.RRFReranker.create()).select(["id"]).limit(10).toArray(),
  };
  const lancedb: Side = {
    name: "lancedb",
    build: async () => void (await lt.createIndex("text", { config: l.Index.fts(SETTINGS as never) })),
    indexBytes: async () => folderBytes(path.join(ldir, "docs.lance", "_indices")),
    query: async (cls, text) => {
      const query =
        cls === "phrase"
          ? new l.PhraseQuery(text, "text")
          : new l.MatchQuery(text, "text", { fuzziness: 0, operator: cls === "and3" ? l.Operator.And : l.Operator.Or });
      return hits(await lt.query().fullTextSearch(query).select(["id"]).limit(10).toArray());
    },
    vectorIndex: async () => void (await lt.createIndex("vector", { config: l.Index.hnswSq() })),
    hybrid: (vector, text) => lt.query().nearestTo(vector).fullTextSearch(text).rerank(lrrf).select(["id"]).limit(10).toArray(),
  };
  return [quiver, lancedb];
}

/** Whether two top-10 lists hold the same rows, but for rows tied with the k-th score. */
function sameTop(a: Hit[], b: Hit[]): boolean {
  if (a.length !== b.length) return false;
  if (a.length === 0) return true;
  const kth = Math.min(a[a.length - 1].score, b[b.length - 1].score);
  const tol = 1e-4 * Math.max(1, Math.abs(kth));
  const above = (l: Hit[]) => new Set(l.filter((h) => h.score > kth + tol).map((h) => h.id));
  const sa = above(a);
  const sb = above(b);
  return sa.size === sb.size && [...sa].every((id) => sb.has(id));
}

const p50 = (v: number[]) => quantile([...v].sort((a, b) => a - b), 0.5);

interface Result {
  corpus: string;
  docs: number;
  build: Record<string, number>;
  size: Record<string, number>;
  p50: Record<string, Record<QueryClass, number>>;
  same: Record<QueryClass, number>;
  hybrid?: Record<string, number>;
  tantivy?: { version: string; build_seconds: number; index_bytes: number; p50: Record<string, number> } | null;
}

async function measure(corpus: Corpus): Promise<Result> {
  const root = mkdtempSync(path.join(tmpdir(), `quiver-bench-fts-${corpus.name}-`));
  try {
    const [quiver, lancedb] = await sides(corpus, root);
    const result: Result = {
      corpus: corpus.name,
      docs: corpus.texts.length,
      build: {},
      size: {},
      p50: { quiver: {} as Record<QueryClass, number>, lancedb: {} as Record<QueryClass, number> },
      same: {} as Record<QueryClass, number>,
    };
    for (const side of [quiver, lancedb]) {
      result.build[side.name] = await timedMs(() => side.build());
      result.size[side.name] = await side.indexBytes();
      console.error(`${corpus.name} ${side.name}: build ${ms(result.build[side.name])}, index ${(result.size[side.name] / 2 ** 20).toFixed(1)} MiB`);
    }
    for (const cls of CLASSES) {
      const queries = corpus.queries[cls];
      // Warm-up pass, then interleaved timing: each query on one system, then on the other.
      for (const text of queries) for (const side of [quiver, lancedb]) await side.query(cls, text);
      const times: Record<string, number[]> = { quiver: [], lancedb: [] };
      let same = 0;
      let shown = 0;
      for (const text of queries) {
        const got: Record<string, Hit[]> = {};
        for (const side of [quiver, lancedb]) {
          const start = process.hrtime.bigint();
          got[side.name] = await side.query(cls, text);
          times[side.name].push(Number(process.hrtime.bigint() - start) / 1e6);
        }
        if (sameTop(got.quiver, got.lancedb)) same++;
        else if (shown++ < 3) {
          const top = (hits: Hit[]) => hits.map((h) => `${h.id}:${h.score.toFixed(3)}`).join(" ");
          console.error(`  differs on ${JSON.stringify(text)}\n    quiver  ${top(got.quiver)}\n    lancedb ${top(got.lancedb)}`);
        }
      }
      result.p50.quiver[cls] = p50(times.quiver);
      result.p50.lancedb[cls] = p50(times.lancedb);
      result.same[cls] = same / queries.length;
      console.error(`${corpus.name} ${cls}: quiver ${ms(result.p50.quiver[cls])}, lancedb ${ms(result.p50.lancedb[cls])}, same top-10 ${(100 * result.same[cls]).toFixed(1)}%`);
    }
    if (corpus.vectors) {
      const { dim, queries } = corpus.vectors;
      for (const side of [quiver, lancedb]) await side.vectorIndex();
      const count = Math.min(QUERIES, queries.length / dim);
      const texts = corpus.queries.or3;
      const vector = (i: number) => queries.subarray(i * dim, (i + 1) * dim);
      for (let i = 0; i < count; i++) for (const side of [quiver, lancedb]) await side.hybrid(vector(i), texts[i]);
      const times: Record<string, number[]> = { quiver: [], lancedb: [] };
      for (let i = 0; i < count; i++) {
        for (const side of [quiver, lancedb]) {
          const start = process.hrtime.bigint();
          await side.hybrid(vector(i), texts[i]);
          times[side.name].push(Number(process.hrtime.bigint() - start) / 1e6);
        }
      }
      result.hybrid = { quiver: p50(times.quiver), lancedb: p50(times.lancedb) };
      console.error(`${corpus.name} hybrid: quiver ${ms(result.hybrid.quiver)}, lancedb ${ms(result.hybrid.lancedb)}`);
    }
    result.tantivy = tantivy(corpus);
    return result;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** tantivy's figures on the same texts and queries (null when it is not installed). */
function tantivy(corpus: Corpus): Result["tantivy"] {
  const dir = path.join(dataRoot, `fts-${corpus.name}-run`);
  const run = spawnSync(
    "python3",
    [path.join(repoRoot, "benchmark", "fts-tantivy.py"), "--texts", path.join(dir, "texts.jsonl"), "--queries", path.join(dir, "queries.json")],
    { encoding: "utf8", maxBuffer: 1 << 28 },
  );
  if (run.status !== 0) {
    console.error(`tantivy: not run (${(run.stderr || run.error?.message || "").trim().split("\n").at(-1)})`);
    return null;
  }
  const out = JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "{}") as {
    package_version: string;
    build_s: number;
    index_bytes: number;
    classes: Record<string, { p50_ms: number }>;
  };
  const p50s: Record<string, number> = {};
  for (const [cls, v] of Object.entries(out.classes ?? {})) p50s[cls] = v.p50_ms;
  return { version: out.package_version, build_seconds: out.build_s, index_bytes: out.index_bytes, p50: p50s };
}

const LABELS: Record<QueryClass, string> = { single: "single term", or3: "OR of 3 terms", and3: "AND of 3 terms", phrase: "phrase (2–3 words)" };

function markdown(results: Result[], started: Date, versions: string): string {
  const lines = [
    "<!-- fts -->",
    "## Full-text search (BM25) side by side",
    "",
    generatedLine("npm run bench:fts", started, versions),
    "",
    `Both systems index the same texts with the same tokenizer settings (simple tokenizer, lowercase, no stemming, no stop words, no ASCII folding, positions kept) and run the same ${QUERIES} queries per class for the top 10, interleaved one query at a time after a warm-up pass. "Same top-10" counts queries whose result sets are equal but for rows tied with the 10th score. tantivy (PyPI) runs the same texts and queries from \`benchmark/fts-tantivy.py\` as a reference line (a Python process: its latencies include the Python call).`,
    "",
  ];
  for (const r of results) {
    const q = r.p50.quiver;
    const l = r.p50.lancedb;
    lines.push(`### ${r.corpus}: ${r.docs.toLocaleString("en")} documents`, "");
    lines.push("| | Quiver | LanceDB | ratio | bar | same top-10 | tantivy |", "|---|---|---|---|---|---|---|");
    const tv = r.tantivy;
    lines.push(
      `| FTS index build | ${ms(r.build.quiver)} | ${ms(r.build.lancedb)} | ${x(r.build.quiver, r.build.lancedb)} | ${bar(r.build.quiver / r.build.lancedb, 0.5)} | | ${tv ? ms(tv.build_seconds * 1000) : "–"} |`,
    );
    lines.push(
      `| index size | ${(r.size.quiver / 2 ** 20).toFixed(1)} MiB | ${(r.size.lancedb / 2 ** 20).toFixed(1)} MiB | ${x(r.size.quiver, r.size.lancedb)} | ${bar(r.size.quiver / r.size.lancedb, 1.0)} | | ${tv && tv.index_bytes ? `${(tv.index_bytes / 2 ** 20).toFixed(1)} MiB` : "–"} |`,
    );
    for (const cls of CLASSES) {
      lines.push(
        `| p50, ${LABELS[cls]} | ${ms(q[cls])} | ${ms(l[cls])} | ${x(q[cls], l[cls])} | ${bar(q[cls] / l[cls], 0.5)} | ${(100 * r.same[cls]).toFixed(1)}% | ${tv?.p50[cls] !== undefined ? ms(tv.p50[cls]) : "–"} |`,
      );
    }
    if (r.hybrid) {
      lines.push(
        `| p50, hybrid (vector + OR of 3, RRF; IVF_HNSW_SQ each) | ${ms(r.hybrid.quiver)} | ${ms(r.hybrid.lancedb)} | ${x(r.hybrid.quiver, r.hybrid.lancedb)} | ${bar(r.hybrid.quiver / r.hybrid.lancedb, 0.5)} | | |`,
      );
    }
    lines.push("");
  }
  lines.push("<!-- /fts -->", "");
  return lines.join("\n");
}

async function main(): Promise<void> {
  const started = new Date();
  const wanted = new Set(args.corpus.split(","));
  const results: Result[] = [];
  for (const [name, load] of [
    ["pydocs", pydocs],
    ["debian", debian],
  ] as const) {
    if (!wanted.has(name)) continue;
    const corpus = load();
    if (!corpus) {
      console.error(`${name}: not found, skipped`);
      continue;
    }
    results.push(await measure(corpus));
  }
  const q = await import("../../dist/index.js");
  const versions = `quiver ${q.version()}, lancedb ${installedVersion("@lancedb/lancedb")}`;
  const section = markdown(results, started, versions);
  console.log(section);
  writeFileSync(path.join(dataRoot, "fts-results.json"), JSON.stringify(results, null, 2));
  if (!args["no-markdown"]) writeSection("fts", "FTS.md", section);
}

await main();
