import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Worker } from "node:worker_threads";
import { afterAll, describe, expect, it } from "vitest";
import { connect } from "../dist/index.js";

const run = promisify(execFile);
const fixture = new URL("./fixtures/appender.mjs", import.meta.url);
const mutator = new URL("./fixtures/mutator.mjs", import.meta.url);
const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

async function freshTable() {
  const dir = mkdtempSync(join(tmpdir(), "quiver-proc-"));
  dirs.push(dir);
  const db = await connect(dir);
  const table = await db.createTable("t", [{ id: 0n, vector: [0, 1] }]);
  return { dir, db, table };
}

async function ids(table: Awaited<ReturnType<typeof freshTable>>["table"]) {
  return (await table.query().select(["id"]).toArray()).map((r) => r.id as bigint).sort((a, b) => (a < b ? -1 : 1));
}

describe("several processes and threads", () => {
  it("two processes appending to one folder see each other's commits", async () => {
    const { dir, table } = await freshTable();
    await Promise.all([
      run(process.execPath, [fixture.pathname, dir, "1000", "10"]),
      run(process.execPath, [fixture.pathname, dir, "2000", "10"]),
    ]);
    const got = await ids(table);
    const want = [0n, ...Array.from({ length: 10 }, (_, i) => 1000n + BigInt(i)), ...Array.from({ length: 10 }, (_, i) => 2000n + BigInt(i))];
    expect(got).toEqual(want);
    // Every append landed once (automatic maintenance may have added compactions).
    const history = await table.listVersions();
    expect(history.filter((v) => v.operation !== "compact").length).toBe(21);
  });

  it("two processes updating, upserting and deleting lose nothing and double nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "quiver-proc-"));
    dirs.push(dir);
    const db = await connect(dir);
    // Rows 0..10 are incremented; rows 1000..1048 are deleted (by tag), each by one call.
    const initial = [...range(0, 10), ...range(1000, 1048)].map((id) => ({ id, n: 0, owner: "init" }));
    const table = await db.createTable("t", initial);
    const mutate = async (op: string, tag: number) => {
      const { stdout } = await run(process.execPath, [mutator.pathname, dir, op, "4", String(tag)]);
      return JSON.parse(stdout) as { ok: number; conflicts: number; deleted: number[] };
    };
    const pairs = [
      ["increment", "increment"],
      ["increment", "upsert"],
      ["upsert", "upsert"],
      ["delete", "upsert"],
      ["delete", "increment"],
      ["delete", "delete"],
    ];
    let increments = 0;
    const deleted: number[] = [];
    let tag = 0;
    for (const [a, b] of pairs) {
      const results = await Promise.all([mutate(a, tag++), mutate(b, tag++)]);
      for (const [op, r] of [
        [a, results[0]],
        [b, results[1]],
      ] as const) {
        expect(r.ok + r.conflicts).toBe(4);
        if (op === "increment") increments += r.ok;
        deleted.push(...r.deleted);
      }
    }
    await table.checkoutLatest();
    const rows = await table.query().select(["id", "n"]).toArray();
    const ids = rows.map((r) => Number(r.id)).sort((x, y) => x - y);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.filter((id) => id >= 100 && id < 110)).toEqual(range(100, 110));
    expect(ids.filter((id) => id >= 1000)).toEqual(range(1000, 1048).filter((id) => !deleted.includes(id)));
    expect(increments).toBeGreaterThan(0);
    for (const r of rows.filter((r) => Number(r.id) < 10)) expect(Number(r.n)).toBe(increments);
  }, 120_000);

  it("works from worker_threads using tables at once", async () => {
    const { dir, table } = await freshTable();
    const workers = [100, 200, 300].map(
      (start) =>
        new Promise<void>((resolve, reject) => {
          const w = new Worker(fixture, { workerData: [dir, start, 5] });
          w.once("message", () => resolve());
          w.once("error", reject);
          w.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`worker exited with ${code}`))));
        }),
    );
    await Promise.all(workers);
    expect((await ids(table)).length).toBe(16);
  });

  it("does not keep the event loop alive after close", async () => {
    const { dir } = await freshTable();
    const script = `
      import { connect } from ${JSON.stringify(new URL("../dist/index.js", import.meta.url).href)};
      const db = await connect(${JSON.stringify(dir)});
      const t = await db.openTable("t");
      await t.search([0, 1]).limit(1).toArray();
      db.close();
    `;
    const started = Date.now();
    await run(process.execPath, ["--input-type=module", "-e", script], { timeout: 20_000 });
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it("exits after rerankers ran, JS ones included, without closing anything (LanceDB #3269)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "quiver-proc-"));
    dirs.push(dir);
    const script = `
      import { connect, Index, LinearCombinationReranker } from ${JSON.stringify(new URL("../dist/index.js", import.meta.url).href)};
      const db = await connect(${JSON.stringify(dir)});
      const t = await db.createTable("docs", [
        { id: 0, text: "a rust vector database", vector: [0, 1] },
        { id: 1, text: "python bindings", vector: [1, 0] },
        { id: 2, text: "rust and python", vector: [1, 1] },
      ]);
      await t.createIndex("text", { config: Index.fts() });
      let calls = 0;
      const custom = { rerankHybrid: async (query, vectorResults, ftsResults) => { calls++; await new Promise((r) => setTimeout(r, 5)); return ftsResults; } };
      const hybrid = await t.search([0, 1]).fullTextSearch("rust").rerank(custom).limit(3).toArray();
      const ftsOnly = await t.search("python").rerank(custom).limit(3).toArray();
      const linear = await t.search([0, 1]).fullTextSearch("rust").rerank(LinearCombinationReranker.create()).limit(3).toArray();
      console.log(JSON.stringify({ calls, hybrid: hybrid.length, ftsOnly: ftsOnly.length, linear: linear.length }));
    `;
    const started = Date.now();
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], { timeout: 30_000 });
    expect(JSON.parse(stdout)).toEqual({ calls: 2, hybrid: 2, ftsOnly: 2, linear: 3 });
    expect(Date.now() - started).toBeLessThan(30_000);
  }, 40_000);
});
