// `npm run bench`: Quiver and LanceDB side by side on identical data, in one run, each system
// and workload in its own process. Prints the table, regenerates BENCHMARKS.md and appends
// every measurement to the history table.
//
//   npm run bench -- [--size small|medium|full] [--only take_1,full_scan] [--datasets clustered,pydocs]
//                    [--no-store] [--markdown PATH | --no-markdown]
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { ensureDataset, dataRoot, SIZES, type DatasetInfo, type Size } from "./datasets.js";
import { build, repoRoot, testbed } from "./env.js";
import { Progress } from "./progress.js";
import { historyUri, openHistory, storeResults, type ResultRecord } from "./results.js";
import { markdownTable, notes, pairRows, terminalTable } from "./side-by-side.js";
import { summarize } from "./stats.js";
import { SYSTEMS, type SystemName } from "./systems.js";
import type { WorkerResult, WorkerSpec } from "./worker.js";
import { WORKLOADS, type Workload } from "./workloads.js";

const execFileAsync = promisify(execFile);
const workerScript = new URL("./worker.js", import.meta.url).pathname;

const { values: args } = parseArgs({
  options: {
    size: { type: "string", default: "medium" },
    only: { type: "string" },
    datasets: { type: "string", default: "clustered,pydocs" },
    "no-store": { type: "boolean", default: false },
    markdown: { type: "string" },
    "no-markdown": { type: "boolean", default: false },
  },
});

const size = args.size as Size;
if (!(size in SIZES)) throw new Error(`--size must be small, medium or full, got '${args.size}'`);
const only = args.only?.split(",").map((s) => s.trim());
const workloads = WORKLOADS.filter((w) => !only || only.includes(w.name));
if (only && workloads.length !== only.length) {
  throw new Error(`unknown workload in --only; known: ${WORKLOADS.map((w) => w.name).join(", ")}`);
}

async function runWorker(spec: WorkerSpec): Promise<WorkerResult> {
  const { stdout } = await execFileAsync(process.execPath, [workerScript, JSON.stringify(spec)], {
    maxBuffer: 64 * 1024 * 1024,
  }).catch((e: { stderr?: string; message: string }) => {
    throw new Error(`${spec.system} ${spec.workload} failed:\n${e.stderr ?? e.message}`);
  });
  const line = stdout.split("\n").find((l) => l.startsWith("@@result "));
  if (!line) throw new Error(`${spec.system} ${spec.workload}: worker printed no result`);
  return JSON.parse(line.slice("@@result ".length)) as WorkerResult;
}

async function measure(w: Workload, system: SystemName, base: Omit<WorkerSpec, "system" | "workload" | "iterations">) {
  const iterations = w.iterations[size];
  const spec = { ...base, system, workload: w.name };
  if (!w.perProcess) return runWorker({ ...spec, iterations });
  const runs: WorkerResult[] = [];
  for (let i = 0; i < iterations; i++) runs.push(await runWorker({ ...spec, iterations: 1 }));
  const first = runs[0];
  if (first.status !== "ok" || !first.measurement) return first;
  return {
    ...first,
    measurement: { ...first.measurement, values: runs.flatMap((r) => r.measurement?.values ?? []) },
    peak_rss_bytes: Math.max(...runs.map((r) => r.peak_rss_bytes)),
  };
}

function toRecord(
  common: Pick<ResultRecord, "run_id" | "timestamp" | "testbed" | "build" | "size">,
  dataset: DatasetInfo,
  w: Workload,
  system: SystemName,
  result: WorkerResult,
): ResultRecord {
  const m = result.measurement;
  const summary = m && m.values.length > 0 ? summarize(m.values) : null;
  const seconds = summary && m ? (m.unit === "s" ? summary.median : m.unit === "ms" ? summary.median / 1000 : null) : null;
  const throughput = m?.rowsPerSample && seconds ? m.rowsPerSample / seconds : null;
  const params = { ...(m?.params ?? {}), dataset_source: dataset.source, dim: dataset.d, bytes_per_sample: m?.bytesPerSample };
  return {
    ...common,
    system,
    system_version: result.system_version,
    benchmark: w.name,
    dataset: `${dataset.name} ${dataset.n}×${dataset.d}`,
    params: JSON.stringify(params),
    unit: m?.unit ?? "",
    higher_is_better: false,
    values: m?.values ?? [],
    summary,
    throughput,
    throughput_unit: throughput === null ? null : (m?.throughputUnit ?? "rows/s"),
    peak_rss_bytes: result.status === "ok" ? result.peak_rss_bytes : null,
    status: result.status,
    note: result.note,
  };
}

async function main() {
  const started = new Date();
  const common = { run_id: randomUUID(), timestamp: started, testbed: testbed(), build: build(), size };
  const records: ResultRecord[] = [];
  const missing: string[] = [];
  for (const name of args.datasets.split(",").map((s) => s.trim()) as DatasetInfo["name"][]) {
    const dataset = await ensureDataset(name, size);
    if (!dataset) {
      missing.push(`${name}: source data not found (see benchmark/README.md)`);
      continue;
    }
    const base = {
      dataset,
      size,
      dbDir: "",
      scratch: "",
    };
    for (const system of SYSTEMS) {
      const dbDir = path.join(dataRoot, "db", `${system}-${path.basename(dataset.dir)}`);
      const progress = new Progress(`${system}: preparing ${dataset.name} table (${dataset.n} rows)`, 1);
      await runWorker({ ...base, system, workload: "prepare", dbDir, scratch: `${dbDir}-scratch`, iterations: 1 });
      progress.finish();
    }
    for (const w of workloads) {
      if (w.datasets && !w.datasets.includes(dataset.name)) continue;
      for (const system of SYSTEMS) {
        const dbDir = path.join(dataRoot, "db", `${system}-${path.basename(dataset.dir)}`);
        const progress = new Progress(`${dataset.name} ${w.name}: ${system}`, 1);
        const result = await measure(w, system, { ...base, dbDir, scratch: `${dbDir}-scratch` });
        progress.finish(result.status === "ok" ? "" : result.status);
        records.push(toRecord(common, dataset, w, system, result));
      }
    }
  }

  const rows = pairRows(records);
  const versions = [...new Set(records.map((r) => `${r.system} ${r.system_version}`))].join(", ");
  const header =
    `Quiver vs LanceDB — size ${size}, ${started.toISOString()}\n` +
    `${common.testbed.cpu_model} (${common.testbed.cpu_cores} cores, ${(common.testbed.memory_bytes / 2 ** 30).toFixed(0)} GiB), ${common.testbed.os}\n` +
    `build ${common.build.git_commit.slice(0, 10)}${common.build.dirty ? " (dirty)" : ""}; ${versions}`;
  const footnotes = [...notes(rows), ...missing];
  console.log(`\n${header}\n\n${terminalTable(rows)}\n${footnotes.map((n) => `\n- ${n}`).join("")}`);

  if (!args["no-markdown"]) {
    const file = args.markdown ?? path.join(repoRoot, "BENCHMARKS.md");
    writeFileSync(file, markdown(header, rows, footnotes));
    console.log(`\nwrote ${path.relative(process.cwd(), file) || file}`);
  }
  if (!args["no-store"]) {
    const db = await openHistory();
    await storeResults(db, records);
    db.close();
    console.log(`stored ${records.length} results in ${historyUri()} (run ${common.run_id})`);
  }
}

function markdown(header: string, rows: ReturnType<typeof pairRows>, footnotes: string[]): string {
  const [title, ...rest] = header.split("\n");
  return `# Benchmarks

Generated by \`npm run bench -- --size ${size}\` (benchmark/README.md explains the workloads).
Do not edit by hand: every run rewrites this file.

**${title}**

${rest.map((l) => `${l}  `).join("\n")}

Medians of the raw samples. *Q/L time* is Quiver's median time over LanceDB's (below 1: Quiver
is faster); *thrpt* is rows (or queries) per second; *recall* is recall@10 against the exact
top 10; *RSS* is the peak resident memory of the process that ran
the workload (each system and workload runs in its own process). The *bar* column checks the
targets of the benchmark issue.

${markdownTable(rows)}
${footnotes.length ? `\n${footnotes.map((n) => `- ${n}`).join("\n")}\n` : ""}${analysis()}`;
}

/** The hand-written analysis (settings, bars not met, profiles) and the latest maintenance,
 * durability and scalar index benchmarks (`npm run bench:maintenance`, `bench:durability`,
 * `bench:scalar`), kept across regenerations. */
function analysis(): string {
  return ["MAINTENANCE.md", "DURABILITY.md", "SCALAR.md", "GRAPH.md", "QUANTIZERS.md", "MILLION.md", "S3.md", "WRITERS.md", "ANALYSIS.md"]
    .map((name) => path.join(repoRoot, "benchmark", name))
    .filter((file) => existsSync(file))
    .map((file) => `\n${readFileSync(file, "utf8")}`)
    .join("");
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
