// The concurrent-writers soak: P processes × W async writers on one local table for S seconds,
// each writer touching only its own rows — appends of new rows, upserts (mergeInsert on id) of
// its own old and new ids, increments of a counter with update, deletes — while one writer
// now and then builds a vector index or runs optimize(), and automatic maintenance runs as it
// does by default. Writers never touch each other's rows, so no operation truly conflicts:
// every one must succeed (retries against other writers are the engine's job), and at the end
// the table must hold exactly the rows every writer's own model says, with exact counters.
//
//   node scripts/stress/soak.mjs [--seconds 30] [--processes 2] [--writers 8] [--seed 1] [--dir D] [--trace]
//
// Memory must stay bounded too: no process may peak above MAX_RSS_MB (--trace prints each
// process's memory and the table's shape every 10 s).
//
// Exported as runSoak() for scripts/stress/index.mjs and the 30-second test in npm test.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { connect, Index } from "../../dist/index.js";
import { row, schema } from "./kill-model.mjs";
import { Rng } from "./rng.mjs";

const TABLE = "soak";
/** Ids of writer g are g * SPAN + 1, g * SPAN + 2, … */
const SPAN = 1_000_000;
/**
 * Highest peak resident memory a writer process may reach: the default cache budgets (1 GiB of
 * metadata, 2 GiB of indexes, 256 MiB of blocks) and the runtime. A cache that under-charges
 * what it holds, or anything else that grows with the history, crosses it within minutes.
 */
const MAX_RSS_MB = 4096;

/** One child process: `writers` writers (global numbers first, first + 1, …) until `until`. */
async function child(dir, first, writers, until, seed, trace) {
  const db = await connect(dir);
  if (trace) traceMemory(db, first, until);
  const runs = [];
  for (let w = 0; w < writers; w++) runs.push(writer(db, first + w, until, seed));
  const results = await Promise.all(runs);
  db.close();
  // maxRSS is in KiB.
  const peakRssMb = Math.round(process.resourceUsage().maxRSS / 1024);
  process.stdout.write(`${JSON.stringify({ writers: results, peakRssMb })}\n`);
}

/** `--trace`: the process's memory every 10 s, and (from the first child) the table's shape. */
function traceMemory(db, first, until) {
  const started = Date.now();
  const mb = (bytes) => Math.round(bytes / 2 ** 20);
  const table = first === 0 ? db.openTable(TABLE) : undefined;
  const timer = setInterval(async () => {
    const at = Math.round((Date.now() - started) / 1000);
    let line = `[soak ${first}] ${at} s: rss ${mb(process.memoryUsage().rss)} MiB`;
    if (table && Date.now() < until - 10_000) {
      const stats = await (await table).stats();
      line += `, ${stats.numFragments} fragments, ${stats.numRows} rows, version ${stats.version}`;
    }
    process.stderr.write(`${line}\n`);
  }, 10_000);
  timer.unref();
}

/** One writer's loop; returns its model (id → counter), counts and failures. */
async function writer(db, number, until, seed) {
  const table = await db.openTable(TABLE);
  const rng = new Rng("soak", seed, number);
  const rows = new Map();
  let next = number * SPAN + 1;
  const ops = {};
  const failures = [];
  const latencies = [];
  const maintainer = number === 0;
  let lastHeavy = Date.now();
  while (Date.now() < until) {
    const heavy = maintainer && Date.now() - lastHeavy > 5_000;
    const op = heavy
      ? rng.pick(["createIndex", "optimize"])
      : rng.weighted({ append: 3, upsert: 3, update: rows.size > 0 ? 3 : 0, delete: rows.size > 4 ? 1 : 0 });
    const started = performance.now();
    try {
      switch (op) {
        case "append": {
          const ids = Array.from({ length: rng.int(1, 4) }, () => next++);
          await table.add(ids.map((id) => row(id, 0)));
          for (const id of ids) rows.set(id, 0);
          break;
        }
        case "upsert": {
          const old = rng.sample([...rows.keys()], rng.int(0, 2));
          const fresh = Array.from({ length: rng.int(0, 2) }, () => next++);
          if (old.length + fresh.length === 0) fresh.push(next++);
          const counters = new Map([...old, ...fresh].map((id) => [id, rng.int(0, 1_000)]));
          const r = await table
            .mergeInsert("id")
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute([...counters].map(([id, n]) => row(id, n)));
          if (r.numUpdatedRows !== old.length || r.numInsertedRows !== fresh.length) {
            throw new Error(`upsert of ${old.length} old and ${fresh.length} new ids reported ${JSON.stringify(r)}`);
          }
          for (const [id, n] of counters) rows.set(id, n);
          break;
        }
        case "update": {
          const id = rng.pick([...rows.keys()]);
          const r = await table.update({ where: `id = ${id}`, valuesSql: { n: "n + 1" } });
          if (r.rowsUpdated !== 1) throw new Error(`update of id ${id} updated ${r.rowsUpdated} rows`);
          rows.set(id, rows.get(id) + 1);
          break;
        }
        case "delete": {
          const id = rng.pick([...rows.keys()]);
          const r = await table.delete(`id = ${id}`);
          if (r.numDeletedRows !== 1) throw new Error(`delete of id ${id} deleted ${r.numDeletedRows} rows`);
          rows.delete(id);
          break;
        }
        case "createIndex":
          lastHeavy = Date.now();
          if ((await table.countRows()) >= 300) {
            await table.createIndex("v", {
              config: Index.ivfPq({ numPartitions: 4, numSubVectors: 2, distanceType: "l2", maxIterations: 5 }),
              replace: true,
            });
          }
          break;
        case "optimize":
          lastHeavy = Date.now();
          await table.optimize();
          break;
      }
      ops[op] = (ops[op] ?? 0) + 1;
      latencies.push(performance.now() - started);
    } catch (e) {
      failures.push(`${op}: ${e?.code ?? ""} ${e?.message ?? e}`.slice(0, 400));
    }
  }
  table.close();
  return { number, rows: [...rows], ops, failures, latencies };
}

/**
 * Runs the soak in `dir` (a temporary folder when omitted) and checks the table against the
 * writers' models. Returns the figures; `passed` is false on any failed operation, lost,
 * duplicated or unexpected row, wrong counter, or a process whose memory peaked above
 * MAX_RSS_MB. `trace` prints memory and the table's shape every 10 s.
 */
export async function runSoak({ seconds = 30, processes = 2, writers = 8, seed = "1", dir, trace = false } = {}) {
  const folder = dir ?? mkdtempSync(join(tmpdir(), "quiver-soak-"));
  const db = await connect(folder);
  await db.createEmptyTable(TABLE, schema);
  const until = Date.now() + seconds * 1000;
  const started = Date.now();
  const self = fileURLToPath(import.meta.url);
  const children = Array.from({ length: processes }, (_, p) =>
    new Promise((resolve, reject) => {
      const c = spawn(process.execPath, [self, "--child", folder, String(p * writers), String(writers), String(until), seed, trace ? "trace" : ""], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      let out = "";
      c.stdout.on("data", (d) => {
        out += d;
      });
      c.on("error", reject);
      c.on("close", (code) => {
        if (code !== 0) return reject(new Error(`soak child ${p} exited with ${code}`));
        try {
          resolve(JSON.parse(out.trim().split("\n").pop()));
        } catch (e) {
          reject(new Error(`soak child ${p} printed no results: ${e}`));
        }
      });
    }),
  );
  const reports = await Promise.all(children);
  const results = reports.flatMap((r) => r.writers);
  const peakRssMb = Math.max(...reports.map((r) => r.peakRssMb));
  const elapsed = (Date.now() - started) / 1000;

  const expected = new Map();
  for (const r of results) for (const [id, n] of r.rows) expected.set(id, n);
  const table = await db.openTable(TABLE);
  const seen = new Map();
  let duplicated = 0;
  let wrongCounters = 0;
  let unexpected = 0;
  for (const r of await table.query().select(["id", "n"]).toArray()) {
    const id = Number(r.id);
    if (seen.has(id)) duplicated++;
    seen.set(id, Number(r.n));
    if (!expected.has(id)) unexpected++;
    else if (expected.get(id) !== Number(r.n)) wrongCounters++;
  }
  const lost = [...expected.keys()].filter((id) => !seen.has(id)).length;
  const version = await table.version();
  db.close();
  const ops = {};
  for (const r of results) for (const [op, n] of Object.entries(r.ops)) ops[op] = (ops[op] ?? 0) + n;
  const failures = results.flatMap((r) => r.failures);
  const latencies = results.flatMap((r) => r.latencies).sort((a, b) => a - b);
  const quantile = (q) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : 0);
  const total = Object.values(ops).reduce((a, b) => a + b, 0);
  if (!dir) rmSync(folder, { recursive: true, force: true });
  return {
    seconds: Math.round(elapsed),
    processes,
    writers,
    operations: total,
    perSecond: Math.round(total / elapsed),
    ops,
    p50Ms: Number(quantile(0.5).toFixed(1)),
    p99Ms: Number(quantile(0.99).toFixed(1)),
    rows: seen.size,
    version,
    failures: failures.length,
    failureExamples: failures.slice(0, 10),
    lost,
    duplicated,
    wrongCounters,
    unexpected,
    peakRssMb,
    passed:
      failures.length === 0 && lost === 0 && duplicated === 0 && wrongCounters === 0 && unexpected === 0 && peakRssMb <= MAX_RSS_MB,
  };
}

const invokedDirectly = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (invokedDirectly && process.argv[2] === "--child") {
  const [dir, first, writers, until, seed, trace] = process.argv.slice(3);
  // A child its parent forgot must not write forever.
  setTimeout(() => process.exit(4), Number(until) - Date.now() + 120_000).unref();
  await child(dir, Number(first), Number(writers), Number(until), seed, trace === "trace");
} else if (invokedDirectly) {
  const { values } = parseArgs({
    options: {
      seconds: { type: "string", default: "30" },
      processes: { type: "string", default: "2" },
      writers: { type: "string", default: "8" },
      seed: { type: "string", default: "1" },
      dir: { type: "string" },
      trace: { type: "boolean", default: false },
    },
  });
  const result = await runSoak({
    seconds: Number(values.seconds),
    processes: Number(values.processes),
    writers: Number(values.writers),
    seed: values.seed,
    dir: values.dir,
    trace: values.trace,
  });
  console.log(JSON.stringify(result, null, 2));
  process.exit(result.passed ? 0 : 1);
}
