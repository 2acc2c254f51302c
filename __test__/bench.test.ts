// The benchmark suite's own parts: summary statistics, the regression detector, the results
// table, the criterion importer, the report, and a smoke run of the whole suite at size small
// (no performance assertion: it checks that every workload runs or says n/a, and that results
// land in the history).
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { connect } from "../dist/index.js";
import { criterionRecords } from "../benchmark/dist/import-criterion.js";
import { compareSamples } from "../benchmark/dist/regression.js";
import { reportHtml } from "../benchmark/dist/report.js";
import { loadResults, storeResults, type ResultRecord } from "../benchmark/dist/results.js";
import { pickRuns, runsOf } from "../benchmark/dist/select.js";
import { summarize } from "../benchmark/dist/stats.js";
import { WORKLOADS } from "../benchmark/dist/workloads.js";

const run = promisify(execFile);
const repo = fileURLToPath(new URL("..", import.meta.url));
const work = mkdtempSync(join(tmpdir(), "quiver-bench-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function record(overrides: Partial<ResultRecord> = {}): ResultRecord {
  const values = overrides.values ?? [1.5, 2.5, 2];
  return {
    run_id: "run-1",
    timestamp: new Date(1_700_000_000_000),
    testbed: { host: "h", cpu_model: "cpu", cpu_cores: 2, memory_bytes: 2 ** 34, os: "Linux" },
    build: { package: "quiverdb", version: "0.1.0", git_commit: "abc123", commit_time: new Date(1_699_999_000_000), dirty: true },
    system: "quiver",
    system_version: "0.1.0",
    benchmark: "take_1",
    dataset: "clustered 5000×128",
    size: "small",
    params: JSON.stringify({ rows: 1 }),
    unit: "ms",
    higher_is_better: false,
    values,
    summary: values.length > 0 ? summarize(values) : null,
    throughput: null,
    throughput_unit: null,
    peak_rss_bytes: 1234567,
    status: "ok",
    note: null,
    ...overrides,
  };
}

describe("summary statistics", () => {
  it("match hand-computed values", () => {
    const s = summarize([4, 1, 10, 3, 2]);
    expect(s).toEqual({ min: 1, max: 10, mean: 4, median: 3, q1: 2, q3: 4, stddev: Math.sqrt(12.5), iterations: 5 });
    const even = summarize([1, 2, 3, 4]);
    expect(even.median).toBe(2.5);
    expect(even.q1).toBe(1.75);
    expect(even.q3).toBe(3.25);
    expect(even.stddev).toBeCloseTo(Math.sqrt(5 / 3), 12);
    expect(summarize([7])).toEqual({ min: 7, max: 7, mean: 7, median: 7, q1: 7, q3: 7, stddev: 0, iterations: 1 });
    expect(() => summarize([])).toThrow();
  });
});

describe("regression detector", () => {
  // A deterministic noisy series around `level`, spread ±3%.
  const series = (level: number, seed: number) =>
    Array.from({ length: 15 }, (_, i) => level * (1 + 0.03 * Math.sin(seed * 7.1 + i * 2.3)));

  it("calls a same-level series unchanged and a shifted one a regression or improvement", () => {
    expect(compareSamples(series(10, 1), series(10, 2)).verdict).toBe("unchanged");
    const slower = compareSamples(series(10, 1), series(11.5, 2));
    expect(slower.verdict).toBe("regression");
    expect(slower.ratio).toBeCloseTo(1.15, 1);
    expect(compareSamples(series(10, 1), series(8.5, 2)).verdict).toBe("improvement");
    expect(compareSamples(series(10, 1), series(11.5, 2), { higherIsBetter: true }).verdict).toBe("improvement");
  });

  it("derives its threshold from the noise, not a fixed percentage", () => {
    const quiet = (level: number) => Array.from({ length: 15 }, (_, i) => level * (1 + 0.001 * Math.sin(i * 2.3)));
    // A 2% slowdown: a regression when the samples are quiet, noise when they are noisy.
    expect(compareSamples(quiet(10), quiet(10.2)).verdict).toBe("regression");
    expect(compareSamples(series(10, 1), series(10.2, 2)).verdict).toBe("unchanged");
    expect(compareSamples([10], [12]).verdict).toBe("unknown");
  });
});

describe("results table", () => {
  it("round-trips records through a Quiver table", async () => {
    const db = await connect("memory://");
    const first = [record(), record({ system: "lancedb", system_version: "0.39.0", peak_rss_bytes: null })];
    const failed = record({ run_id: "run-2", timestamp: new Date(1_700_000_100_000), status: "n/a", note: "not yet", values: [], summary: null });
    await storeResults(db, first);
    await storeResults(db, [failed]);
    const back = await loadResults(db);
    expect(back).toEqual([...first, failed]);
    expect(runsOf(back).map((r) => r.run_id)).toEqual(["run-1", "run-2"]);
  });

  it("picks the previous run of the same size on the same testbed", () => {
    const a = record({ run_id: "a", timestamp: new Date(1) });
    const other = record({ run_id: "b", timestamp: new Date(2), testbed: { ...a.testbed, host: "elsewhere" } });
    const big = record({ run_id: "c", timestamp: new Date(3), size: "medium" });
    const latest = record({ run_id: "d", timestamp: new Date(4) });
    const pair = pickRuns(runsOf([a, other, big, latest]));
    expect(pair?.map((r) => r.run_id)).toEqual(["d", "a"]);
    expect(pickRuns(runsOf([latest]))).toBeNull();
  });
});

describe("criterion import and report", () => {
  it("reads criterion sample files into records with per-iteration times", () => {
    const dir = join(work, "criterion", "scan", "full", "new");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "benchmark.json"), JSON.stringify({ full_id: "scan/full", throughput: { Bytes: 1000 } }));
    writeFileSync(join(dir, "sample.json"), JSON.stringify({ iters: [1, 2, 4], times: [100, 300, 400] }));
    const [r] = criterionRecords(join(work, "criterion"), {
      run_id: "x",
      timestamp: new Date(),
      testbed: record().testbed,
      build: record().build,
    });
    expect(r.benchmark).toBe("criterion/scan/full");
    expect(r.values).toEqual([100, 150, 100]);
    expect(r.summary?.median).toBe(100);
    expect(r.throughput).toBeCloseTo(1000 / 100e-9, 0);
    expect(r.throughput_unit).toBe("bytes/s");
  });

  it("plots every benchmark with results as an SVG chart", () => {
    const html = reportHtml([
      record(),
      record({ system: "lancedb" }),
      record({ run_id: "run-2", timestamp: new Date(1_700_000_100_000), values: [3, 3, 3] }),
      record({ benchmark: "count_filter", status: "n/a", values: [], summary: null }),
    ]);
    expect(html.match(/<svg/g)?.length).toBe(1);
    expect(html).toContain("<polyline");
    expect(html).toContain("take_1 — clustered 5000×128");
    expect(html).not.toContain("count_filter");
  });
});

describe("suite smoke run", () => {
  it("runs every workload at size small for both systems and stores the results", async () => {
    const uri = join(work, "history");
    const markdown = join(work, "BENCHMARKS.md");
    const env = { ...process.env, QUIVER_BENCH_URI: uri };
    const { stdout } = await run(
      process.execPath,
      ["benchmark/dist/run.js", "--size", "small", "--datasets", "clustered", "--markdown", markdown],
      { cwd: repo, env, maxBuffer: 16 * 1024 * 1024 },
    );
    for (const w of WORKLOADS) expect(stdout).toContain(w.name);
    expect(readFileSync(markdown, "utf8")).toContain("| dataset | workload | Quiver | LanceDB |");
    const db = await connect(uri);
    const stored = await loadResults(db);
    db.close();
    expect(stored.length).toBe(WORKLOADS.length * 2);
    for (const system of ["quiver", "lancedb"]) {
      const mine = stored.filter((r) => r.system === system);
      expect(mine.every((r) => r.status === "ok" || (r.status === "n/a" && r.note))).toBe(true);
      expect(mine.filter((r) => r.status === "ok").every((r) => r.values.length > 0 && r.summary !== null)).toBe(true);
    }
    expect(stored.find((r) => r.system === "lancedb")?.system_version).toBe("0.39.0");
    const history = await run(process.execPath, ["benchmark/dist/history.js", "take_1"], { cwd: repo, env });
    expect(history.stdout).toContain("take_1 — clustered 5000×128 — quiver");
    const compare = await run(process.execPath, ["benchmark/dist/compare.js"], { cwd: repo, env });
    expect(compare.stdout).toContain("need two runs");
  }, 300_000);
});

describe("side-by-side table", () => {
  it("shows ingest MB/s from the bytes each sample moved", async () => {
    const { megabytesPerSecond, markdownTable, pairRows } = await import("../benchmark/dist/side-by-side.js");
    const ingest = record({
      benchmark: "ingest_arrow",
      unit: "s",
      values: [2, 2, 2],
      params: JSON.stringify({ rows: 1000, bytes_per_sample: 4e6 }),
      throughput: 500,
      throughput_unit: "rows/s",
    });
    expect(megabytesPerSecond(ingest)).toBe(2);
    const table = markdownTable(pairRows([ingest, { ...ingest, system: "lancedb", values: [4, 4, 4], summary: summarize([4, 4, 4]), throughput: 250 }]));
    expect(table).toContain("500 rows/s, 2.00 MB/s");
    expect(table).toContain("| 0.50× | Quiver |");
    expect(table).toContain("rows/s ≥ 2×: 2.00× met");
  });
});
