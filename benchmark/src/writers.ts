// Concurrent writers, side by side: commits per second, p50/p99 commit latency and failed
// operations for 1–16 async writers on one local table, in one process and split over two,
// appending one row per commit or upserting (mergeInsert on id) one of their own keys, for
// Quiver and LanceDB. Every configuration gets a fresh table in a fresh folder; writers start
// together and run for a fixed time. Writes benchmark/WRITERS.md and its section of
// BENCHMARKS.md.
//
//   npm run bench:writers [-- --seconds 4 --no-markdown]
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { installedVersion } from "./env.js";
import { generatedLine, writeSection } from "./section.js";

const { values: args, positionals } = parseArgs({
  options: {
    seconds: { type: "string", default: "4" },
    worker: { type: "boolean", default: false },
    "no-markdown": { type: "boolean", default: false },
  },
  allowPositionals: true,
});
const SECONDS = Number(args.seconds);
const WRITER_COUNTS = [1, 2, 4, 8, 16];
const SYSTEMS = ["quiver", "lancedb"] as const;
const OPS = ["append", "upsert"] as const;
type SystemName = (typeof SYSTEMS)[number];
type Op = (typeof OPS)[number];
/** Keys each upserting writer cycles through (the first round inserts, later ones update). */
const UPSERT_KEYS = 16;

interface WriterResult {
  ok: number;
  failed: number;
  latencies: number[];
  errors: string[];
}
interface Writable {
  add(rows: unknown[]): Promise<unknown>;
  mergeInsert(on: string): {
    whenMatchedUpdateAll(): { whenNotMatchedInsertAll(): { execute(rows: unknown[]): Promise<unknown> } };
  };
  close(): void;
}

async function open(system: SystemName, dir: string): Promise<{ table: () => Promise<Writable>; close(): void }> {
  if (system === "quiver") {
    const q = await import("quiverdb");
    const db = await q.connect(dir, { maintenance: false });
    return { table: async () => (await db.openTable("w")) as unknown as Writable, close: () => db.close() };
  }
  const l = await import("@lancedb/lancedb");
  const db = await l.connect(dir);
  return { table: async () => (await db.openTable("w")) as unknown as Writable, close: () => db.close() };
}

/** One process's writers: numbers first..first+count-1, from `startAt` for SECONDS. */
async function worker(system: SystemName, dir: string, op: Op, first: number, count: number, startAt: number): Promise<void> {
  const db = await open(system, dir);
  const tables = await Promise.all(Array.from({ length: count }, () => db.table()));
  await new Promise((r) => setTimeout(r, Math.max(0, startAt - Date.now())));
  const until = startAt + SECONDS * 1000;
  const results = await Promise.all(
    tables.map(async (table, w) => {
      const owner = first + w;
      const out: WriterResult = { ok: 0, failed: 0, latencies: [], errors: [] };
      for (let i = 0; Date.now() < until; i++) {
        const id = op === "append" ? owner * 1_000_000 + i + 1 : owner * 1_000_000 + (i % UPSERT_KEYS) + 1;
        const rows = [{ id: BigInt(id), owner, n: i }];
        const t = performance.now();
        try {
          if (op === "append") await table.add(rows);
          else await table.mergeInsert("id").whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(rows);
          out.ok++;
          out.latencies.push(performance.now() - t);
        } catch (e) {
          out.failed++;
          if (out.errors.length < 3) out.errors.push(String((e as Error)?.message ?? e).slice(0, 200));
        }
      }
      table.close();
      return out;
    }),
  );
  db.close();
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

interface Measured {
  perSecond: number;
  p50: number;
  p99: number;
  failed: number;
  total: number;
  errors: string[];
}

async function measure(system: SystemName, op: Op, writers: number, processes: number): Promise<Measured> {
  const dir = mkdtempSync(path.join(tmpdir(), `quiver-bench-writers-${system}-`));
  try {
    const db = await open(system, dir);
    db.close();
    if (system === "quiver") {
      const q = await import("quiverdb");
      const c = await q.connect(dir, { maintenance: false });
      await c.createTable("w", [{ id: 0n, owner: 0, n: 0 }]);
      c.close();
    } else {
      const l = await import("@lancedb/lancedb");
      const c = await l.connect(dir);
      await c.createTable("w", [{ id: 0n, owner: 0, n: 0 }]);
      c.close();
    }
    const startAt = Date.now() + 2_000;
    const self = fileURLToPath(import.meta.url);
    const per = writers / processes;
    const outputs = await Promise.all(
      Array.from(
        { length: processes },
        (_, p) =>
          new Promise<WriterResult[]>((resolve, reject) => {
            const child = spawn(
              process.execPath,
              [self, "--worker", "--seconds", String(SECONDS), system, dir, op, String(p * per + 1), String(per), String(startAt)],
              { stdio: ["ignore", "pipe", "inherit"] },
            );
            let text = "";
            child.stdout.on("data", (d) => {
              text += d;
            });
            child.on("error", reject);
            child.on("close", (code) => {
              if (code !== 0) return reject(new Error(`${system} worker exited with ${code}`));
              resolve(JSON.parse(text.trim().split("\n").pop() ?? "[]") as WriterResult[]);
            });
          }),
      ),
    );
    const all = outputs.flat();
    const latencies = all.flatMap((r) => r.latencies).sort((a, b) => a - b);
    const q = (f: number) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(f * latencies.length))] : Number.NaN);
    const ok = all.reduce((s, r) => s + r.ok, 0);
    const failed = all.reduce((s, r) => s + r.failed, 0);
    return { perSecond: ok / SECONDS, p50: q(0.5), p99: q(0.99), failed, total: ok + failed, errors: all.flatMap((r) => r.errors).slice(0, 3) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const started = new Date();
  const results = new Map<string, Measured>();
  const key = (system: SystemName, op: Op, writers: number, processes: number) => `${system}/${op}/${writers}/${processes}`;
  const layouts: [number, number][] = [];
  for (const processes of [1, 2]) for (const writers of WRITER_COUNTS) if (writers >= processes) layouts.push([writers, processes]);
  for (const op of OPS) {
    for (const [writers, processes] of layouts) {
      // Systems alternate, in turn first.
      const order = (writers + processes) % 2 === 0 ? SYSTEMS : ([...SYSTEMS].reverse() as SystemName[]);
      for (const system of order) {
        const m = await measure(system, op, writers, processes);
        results.set(key(system, op, writers, processes), m);
        console.log(
          `${op} ${writers} writers / ${processes} process(es), ${system}: ${m.perSecond.toFixed(0)}/s, p50 ${m.p50.toFixed(1)} ms, p99 ${m.p99.toFixed(1)} ms, failed ${m.failed}/${m.total}${m.errors.length ? ` (${m.errors[0]})` : ""}`,
        );
      }
    }
  }
  const cell = (m: Measured) => `${Math.round(m.perSecond).toLocaleString("en")}/s, ${m.p50.toFixed(1)} / ${m.p99.toFixed(1)} ms`;
  const failures = (m: Measured) => (m.total ? `${((100 * m.failed) / m.total).toFixed(1)}%` : "–");
  const lines = [
    "<!-- writers -->",
    "## Concurrent writers",
    "",
    generatedLine("npm run bench:writers", started, `quiver ${(await import("quiverdb")).version()}, lancedb ${installedVersion("@lancedb/lancedb")}`),
    "",
    `Async writers on one local table (a fresh one per row, with one row to start), each committing one row at a time for ${SECONDS} s after a common start: *append* adds a new row of its own, *upsert* runs \`mergeInsert("id")\` (update all, insert all) on one of its own ${UPSERT_KEYS} keys in turn. In one process the writers share one connection; over two processes, half each. Quiver runs with automatic maintenance off and its default write timeout (30 s), LanceDB with its defaults. Cells: successful commits per second, p50 / p99 latency of successful commits; failed = the share of operations that rejected.`,
    "",
    "| operation | writers | processes | Quiver | failed | LanceDB | failed | commits/s vs LanceDB |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const op of OPS) {
    for (const [writers, processes] of layouts) {
      const qm = results.get(key("quiver", op, writers, processes));
      const lm = results.get(key("lancedb", op, writers, processes));
      if (!qm || !lm) continue;
      lines.push(
        `| ${op} | ${writers} | ${processes} | ${cell(qm)} | ${failures(qm)} | ${cell(lm)} | ${failures(lm)} | ${(qm.perSecond / lm.perSecond).toFixed(2)}× |`,
      );
    }
  }
  const q8 = results.get(key("quiver", "append", 8, 1));
  const l8 = results.get(key("lancedb", "append", 8, 1));
  const q82 = results.get(key("quiver", "append", 8, 2));
  const l82 = results.get(key("lancedb", "append", 8, 2));
  const failedAll = [...results.entries()].filter(([k]) => k.startsWith("quiver/")).reduce((s, [, m]) => s + m.failed, 0);
  if (q8 && l8 && q82 && l82) {
    lines.push(
      "",
      `Bar: with 8 writers Quiver's successful appends per second ≥ 2× LanceDB's and no failures: one process ${(q8.perSecond / l8.perSecond).toFixed(2)}×, two processes ${(q82.perSecond / l82.perSecond).toFixed(2)}×; Quiver failed operations in every configuration: ${failedAll} — ${q8.perSecond >= 2 * l8.perSecond && q82.perSecond >= 2 * l82.perSecond && failedAll === 0 ? "met" : "**not met**"}.`,
    );
  }
  lines.push("", "<!-- /writers -->", "");
  const section = lines.join("\n");
  console.log(`\n${section}`);
  if (!args["no-markdown"]) writeSection("writers", "WRITERS.md", section);
}

if (args.worker) {
  const [system, dir, op, first, count, startAt] = positionals;
  worker(system as SystemName, dir, op as Op, Number(first), Number(count), Number(startAt)).catch((error: unknown) => {
    console.error(error instanceof Error ? error.stack : error);
    process.exit(1);
  });
} else {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.stack : error);
    process.exit(1);
  });
}
