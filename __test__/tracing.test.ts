// Trace events: every event of the performance guide's tables with its documented fields,
// through a JS subscription and through QUIVER_LOG / QUIVER_LOG_FILE in a child process.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { connect, Index, InvalidArgumentError, subscribeEvents, type TraceEvent } from "../dist/index.js";

const run = promisify(execFile);
const fixture = new URL("./fixtures/traced-ops.mjs", import.meta.url).pathname;
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tempDir() {
  const d = mkdtempSync(join(tmpdir(), "quiver-trace-"));
  dirs.push(d);
  return d;
}
/** Events are delivered on the JS thread after the call that caused them returns. */
const settle = () => new Promise((r) => setTimeout(r, 50));

describe("trace events", () => {
  it("a subscription receives every event of the guide's tables with its fields", async () => {
    const events: TraceEvent[] = [];
    const sub = subscribeEvents((e) => events.push(e));
    try {
      const dir = tempDir();
      const db = await connect(dir, { maintenance: false });
      const rows = Array.from({ length: 20_000 }, (_, i) => ({ id: i, tag: `t${i % 7}`, v: [Math.sin(i), Math.cos(i), i % 3, 1] }));
      const t = await db.createTable("t", rows);
      await t.delete("id < 10");
      await t.createIndex("v", { config: Index.ivfFlat({ numPartitions: 4 }) });
      await t.createIndex("id");
      // A second connection starts with cold caches: the indexes open and load parts.
      const cold = await (await connect(dir, { maintenance: false })).openTable("t");
      await cold.search([0, 1, 0, 1]).limit(5).toArray();
      await cold.query().where("id = 4242").toArray();
      await cold.query().limit(10).toArray();
      writeFileSync(join(dir, "t.quiver", "data", "stray.qvd"), "not referenced by any version");
      await t.add(rows.slice(0, 5).map((r) => ({ ...r, id: r.id + 1000 })));
      await t.cleanupOldVersions({ olderThan: new Date(Date.now() + 1000), deleteUnverified: true });
      await settle();

      const of = (target: string, type?: string) =>
        events.filter((e) => e.target === target && (type === undefined || e.fields.type === type));
      for (const e of events.filter((e) => e.target.startsWith("quiver::"))) {
        expect(e.level).toBe("INFO");
        expect(typeof e.timestamp).toBe("number");
      }
      const audit = of("quiver::file_audit");
      const seen = new Set(audit.map((e) => `${e.fields.mode}/${e.fields.type}`));
      for (const kind of ["manifest", "data file", "index file", "deletion file"]) {
        expect(seen, kind).toContain(`create/${kind}`);
      }
      expect(seen).toContain("delete/manifest");
      expect(seen).toContain("delete_unverified/data file");
      for (const e of audit) expect(typeof e.fields.path).toBe("string");

      expect(of("quiver::io_events", "open_vector_index").length).toBeGreaterThan(0);
      expect(of("quiver::io_events", "open_scalar_index").length).toBeGreaterThan(0);
      expect(of("quiver::io_events", "load_vector_part").length).toBeGreaterThan(0);
      expect(of("quiver::io_events", "load_scalar_part").length).toBeGreaterThan(0);
      for (const e of of("quiver::io_events")) expect(typeof e.fields.path).toBe("string");

      const runs = of("quiver::execution", "plan_run");
      expect(new Set(runs.map((e) => e.fields.plan))).toEqual(new Set(["vector_search", "scan"]));
      for (const e of runs) {
        for (const f of ["output_rows", "iops", "bytes_read", "indices_loaded", "parts_loaded", "index_comparisons"]) {
          expect(typeof e.fields[f], f).toBe("number");
        }
      }
      const search = runs.find((e) => e.fields.plan === "vector_search")!;
      expect(search.fields.output_rows).toBe(5);
      expect(search.fields.indices_loaded).toBe(1);
      expect(search.fields.iops as number).toBeGreaterThan(0);
      // A filter a scalar index answered reports the index and the parts it loaded.
      const lookup = runs.find((e) => e.fields.plan === "scan" && e.fields.output_rows === 1)!;
      expect(lookup.fields.indices_loaded).toBe(1);
      expect(lookup.fields.parts_loaded as number).toBeGreaterThan(0);

      // Cache hits are not I/O events: the same search again opens and loads nothing.
      const before = of("quiver::io_events").length;
      await cold.search([0, 1, 0, 1]).limit(5).toArray();
      await settle();
      expect(of("quiver::io_events").length).toBe(before);
      db.close();
    } finally {
      sub.unsubscribe();
    }
  });

  it("unsubscribing stops delivery; levels and listeners are checked", async () => {
    const events: TraceEvent[] = [];
    const sub = subscribeEvents((e) => events.push(e), { level: "warn" });
    const db = await connect("memory://", { maintenance: false });
    await db.createTable("t", [{ id: 1 }]);
    await settle();
    expect(events.filter((e) => e.level === "INFO")).toEqual([]);
    sub.unsubscribe();
    sub.unsubscribe();
    // Call sites decide once per change of subscriptions: after an "info" one ends, nothing
    // arrives; a new one receives again.
    const t = await db.createTable("v", [{ id: 1, vector: [1, 0] }, { id: 2, vector: [0, 1] }]);
    const first: TraceEvent[] = [];
    const info = subscribeEvents((e) => first.push(e), { level: "info" });
    await t.search([1, 0]).limit(1).toArray();
    await settle();
    info.unsubscribe();
    const runs = (list: TraceEvent[]) => list.filter((e) => e.fields.type === "plan_run").length;
    expect(runs(first)).toBe(1);
    await t.search([1, 0]).limit(1).toArray();
    await settle();
    expect(runs(first)).toBe(1);
    const second: TraceEvent[] = [];
    const again = subscribeEvents((e) => second.push(e), { level: "info" });
    await t.search([1, 0]).limit(1).toArray();
    await settle();
    again.unsubscribe();
    expect(runs(second)).toBe(1);
    expect(() => subscribeEvents((() => {}) as never, { level: "loud" as never })).toThrow(InvalidArgumentError);
    expect(() => subscribeEvents("nope" as never)).toThrow(InvalidArgumentError);
  });

  it("QUIVER_LOG writes the events to QUIVER_LOG_FILE, creating its folders", async () => {
    const dir = tempDir();
    const log = join(dir, "logs", "nested", "quiver.log");
    await run(process.execPath, [fixture, join(dir, "db")], {
      env: { ...process.env, QUIVER_LOG: "info", QUIVER_LOG_FILE: log, QUIVER_LOG_TS_PRECISION: "ms" },
    });
    const text = readFileSync(log, "utf8");
    for (const needle of ["quiver::file_audit", 'mode="create"', "quiver::io_events", "quiver::execution", 'type="plan_run"', "output_rows="]) {
      expect(text, needle).toContain(needle);
    }
    // Millisecond timestamps, no colours in a file.
    expect(text).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /m);
    expect(text).not.toContain("\u001b[");
  });

  it("a QUIVER_LOG_FILE that cannot be created falls back to stderr", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, "a-file"), "");
    const { stderr } = await run(process.execPath, [fixture, join(dir, "db")], {
      env: { ...process.env, QUIVER_LOG: "quiver::execution=info", QUIVER_LOG_FILE: join(dir, "a-file", "x.log"), QUIVER_LOG_STYLE: "never" },
    });
    expect(stderr).toContain("logging to stderr");
    expect(stderr).toContain("quiver::execution");
    expect(stderr).not.toContain("quiver::file_audit");
    expect(existsSync(join(dir, "a-file", "x.log"))).toBe(false);
  });

  it("a subscription does not keep the process alive", async () => {
    const started = Date.now();
    await run(process.execPath, [fixture, tempDir(), "subscribe-only"], { timeout: 20_000 });
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
