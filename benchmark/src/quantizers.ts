// Quiver's vector quantizers side by side at equal bytes per vector: IVF_PQ (one byte per
// sub-vector) against IVF_RQ (RaBitQ, bits per dimension plus 16 bytes of factors), on pydocs
// (real), the overlapping anisotropic mixture and the uniform sphere (./vectors.ts). For each
// index: build time, bytes per vector of its file, recall@10 and p50 one query at a time at the
// calibrated defaults, and the codes' own ranking (nprobes 20, no re-rank beyond k, and re-rank
// of 10 × k). Writes benchmark/QUANTIZERS.md and its section of BENCHMARKS.md.
//
//   npm run bench:rq [-- --rows 50000 --queries 200 --no-markdown]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { generatedLine, ms, timedMs, writeSection } from "./section.js";
import { quantile } from "./stats.js";
import { arrowTable, type Dataset, groundTruth, K, type Point, recall, vectorDatasets } from "./vectors.js";

const { values: args } = parseArgs({
  options: {
    rows: { type: "string", default: "50000" },
    queries: { type: "string", default: "200" },
    "no-markdown": { type: "boolean", default: false },
  },
});
const ROWS = Number(args.rows);
const QUERIES = Number(args.queries);

interface Config {
  label: string;
  /** Code bytes per vector (RaBitQ: with its 16 bytes of factors). */
  codeBytes: number;
  index: (q: typeof import("quiverdb")) => import("quiverdb").Index;
}

/** Pairs of about equal code bytes: PQ with d/8, d/4 and d/2 sub-vectors (and d/6), RaBitQ
 * with 1, 2 and 4 bits. */
function configs(d: number): Config[] {
  const pq = (m: number): Config => ({ label: `IVF_PQ ${m} sub-vectors`, codeBytes: m, index: (q) => q.Index.ivfPq({ numSubVectors: m }) });
  const rq = (bits: number): Config => ({
    label: `IVF_RQ ${bits} bit${bits > 1 ? "s" : ""}`,
    codeBytes: (bits * d) / 8 + 16,
    index: (q) => q.Index.ivfRq({ numBits: bits }),
  });
  const out = [pq(d / 8), rq(1)];
  if (d % 6 === 0) out.push(pq(d / 6));
  out.push(pq(d / 4), rq(2), pq(d / 2), rq(4));
  return out;
}

interface Row {
  config: Config;
  buildS: number;
  fileBytesPerRow: number;
  calibrated: string;
  points: Point[];
}

type Search = (v: Float32Array) => Promise<number[]>;

/** Builds every config's index on its own table, then measures them interleaved (each query
 * runs on every index in turn), so drift of the machine over the run touches all alike. */
async function measure(ds: Dataset, truth: number[][], configs: Config[]): Promise<Row[]> {
  const q = await import("quiverdb");
  const dir = mkdtempSync(path.join(tmpdir(), "rq-bench-"));
  try {
    const db = await q.connect(dir);
    const data = arrowTable(ds);
    const rows: Row[] = [];
    const searches: Search[][] = [];
    for (const config of configs) {
      console.log(`${ds.name}: building ${config.label}…`);
      const t = await db.createTable(`t${rows.length}`, data);
      const buildS = (await timedMs(() => t.createIndex("vector", { config: config.index(q) }))) / 1000;
      const stats = await t.indexStats("vector_idx");
      const c = stats.calibration;
      const calibrated = c?.nprobes === 0 ? "calibrated: exact search" : `calibrated nprobes ${c?.nprobes}, refine ${c?.refineFactor}`;
      const ids = async (s: { toArray(): Promise<Record<string, unknown>[]> }) => (await s.toArray()).map((r) => Number(r.id));
      searches.push([
        (v) => ids(t.search(v).select(["id"]).limit(K)),
        (v) => ids(t.search(v).select(["id"]).nprobes(20).refineFactor(1).limit(K)),
        (v) => ids(t.search(v).select(["id"]).nprobes(20).refineFactor(10).limit(K)),
      ]);
      rows.push({ config, buildS, fileBytesPerRow: stats.sizeBytes / ds.n, calibrated, points: [] });
    }
    for (let s = 0; s < 3; s++) {
      const found: number[][][] = configs.map(() => []);
      const times: number[][] = configs.map(() => []);
      const queries = ds.queries.length / ds.d;
      for (let i = -5; i < queries; i++) {
        const v = ds.queries.subarray(Math.max(i, 0) * ds.d, (Math.max(i, 0) + 1) * ds.d);
        for (let c = 0; c < configs.length; c++) {
          const start = process.hrtime.bigint();
          const got = await searches[c][s](v);
          const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
          if (i >= 0) {
            found[c].push(got);
            times[c].push(elapsed);
          }
        }
      }
      for (let c = 0; c < configs.length; c++) {
        times[c].sort((a, b) => a - b);
        rows[c].points.push({ setting: "", recall: recall(found[c], truth), p50: quantile(times[c], 0.5) });
      }
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const started = new Date();
  const lines: string[] = [];
  for (const ds of await vectorDatasets(ROWS, QUERIES)) {
    console.log(`${ds.name}: ground truth…`);
    const truth = groundTruth(ds, () => true);
    lines.push(`### ${ds.name}`, "");
    lines.push(
      "| index | code bytes / vector | file bytes / row | build | calibrated defaults: recall@10 / p50 | nprobes 20, refine 1: recall / p50 | nprobes 20, refine 10: recall / p50 |",
      "| --- | --- | --- | --- | --- | --- | --- |",
    );
    for (const r of await measure(ds, truth, configs(ds.d))) {
      const cell = (p: Point) => `${p.recall.toFixed(3)} / ${ms(p.p50)}`;
      const [defaults, codesOnly, refined] = r.points;
      lines.push(
        `| ${r.config.label} | ${r.config.codeBytes} | ${r.fileBytesPerRow.toFixed(0)} | ${r.buildS.toFixed(1)} s | ${cell(defaults)} (${r.calibrated}) | ${cell(codesOnly)} | ${cell(refined)} |`,
      );
      console.log(lines.at(-1));
    }
    lines.push("");
  }
  const q = await import("quiverdb");
  const section = [
    "<!-- quantizers -->",
    "## Quantizers at equal bytes: IVF_PQ vs IVF_RQ (RaBitQ)",
    "",
    generatedLine("npm run bench:rq", started, `quiver ${q.version()}`),
    `${QUERIES} queries, one at a time from Node (p50 of each), k = 10. Code bytes: PQ one byte per sub-vector; RaBitQ bits × dimensions / 8, plus 16 bytes of per-row factors. File bytes per row also hold the row address (8 bytes) and the model. "refine 1" ranks by the codes alone; "refine 10" re-ranks 100 candidates exactly (RaBitQ first drops those its error bound rules out).`,
    "",
    ...lines,
    "<!-- /quantizers -->",
    "",
  ].join("\n");
  if (!args["no-markdown"]) writeSection("quantizers", "QUANTIZERS.md", section);
  else console.log(section);
}

await main();
