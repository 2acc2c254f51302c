// `npm run bench:import-criterion`: stores the Rust criterion results (target/criterion, from
// `npm run bench:rust`) in the history table as system "quiver-engine", one record per
// benchmark with the per-iteration times of every sample.
import { randomUUID } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { build, repoRoot, testbed } from "./env.js";
import { historyUri, openHistory, storeResults, type ResultRecord } from "./results.js";
import { summarize } from "./stats.js";

const { values: args } = parseArgs({ options: { dir: { type: "string" } } });

interface CriterionBenchmark {
  full_id: string;
  throughput: { Bytes?: number; BytesDecimal?: number; Elements?: number } | null;
}
interface CriterionSample {
  iters: number[];
  times: number[];
}

/** Every `<dir>/**\/new/` folder holding a criterion benchmark.json and sample.json. */
function findBenchmarks(dir: string): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d)) {
      const full = path.join(d, entry);
      if (!statSync(full).isDirectory()) continue;
      if (entry === "new" && existsSync(path.join(full, "sample.json")) && existsSync(path.join(full, "benchmark.json"))) {
        found.push(full);
      } else if (entry !== "base" && entry !== "report" && entry !== "change") walk(full);
    }
  };
  walk(dir);
  return found.sort();
}

/** Criterion results under `dir` as history records. */
export function criterionRecords(dir: string, common: Pick<ResultRecord, "run_id" | "timestamp" | "testbed" | "build">): ResultRecord[] {
  return findBenchmarks(dir).map((folder) => {
    const bench = JSON.parse(readFileSync(path.join(folder, "benchmark.json"), "utf8")) as CriterionBenchmark;
    const sample = JSON.parse(readFileSync(path.join(folder, "sample.json"), "utf8")) as CriterionSample;
    const values = sample.times.map((t, i) => t / sample.iters[i]);
    const summary = summarize(values);
    const perSecond = 1e9 / summary.median;
    const bytes = bench.throughput?.Bytes ?? bench.throughput?.BytesDecimal;
    const elements = bench.throughput?.Elements;
    return {
      ...common,
      size: "",
      system: "quiver-engine",
      system_version: common.build.version,
      benchmark: `criterion/${bench.full_id}`,
      dataset: "",
      params: JSON.stringify({ throughput: bench.throughput }),
      unit: "ns",
      higher_is_better: false,
      values,
      summary,
      throughput: bytes !== undefined ? bytes * perSecond : elements !== undefined ? elements * perSecond : null,
      throughput_unit: bytes !== undefined ? "bytes/s" : elements !== undefined ? "elements/s" : null,
      peak_rss_bytes: null,
      status: "ok",
      note: null,
    };
  });
}

async function main() {
  const dir = args.dir ?? path.join(repoRoot, "target", "criterion");
  if (!existsSync(dir)) {
    console.error(`no criterion results in ${dir}: run \`npm run bench:rust\` first`);
    process.exit(1);
  }
  const records = criterionRecords(dir, { run_id: randomUUID(), timestamp: new Date(), testbed: testbed(), build: build() });
  if (records.length === 0) {
    console.error(`no criterion benchmarks found under ${dir}`);
    process.exit(1);
  }
  const db = await openHistory();
  await storeResults(db, records);
  db.close();
  for (const r of records) console.log(`  ${r.benchmark}: median ${r.summary!.median.toPrecision(4)} ns`);
  console.log(`imported ${records.length} criterion benchmarks into ${historyUri()}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
