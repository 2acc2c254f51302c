// Sessions: byte-sized caches shared by several connections.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { connect, Index, InvalidArgumentError, Session, subscribeEvents, type TraceEvent } from "../dist/index.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const settle = () => new Promise((r) => setTimeout(r, 50));
const rows = (n: number, tag = 0) => Array.from({ length: n }, (_, i) => ({ id: i + tag, v: [Math.sin(i), Math.cos(i), i % 3, tag] }));

describe("Session", () => {
  it("connections sharing a session share their caches", async () => {
    const dir = mkdtempSync(join(tmpdir(), "quiver-session-"));
    dirs.push(dir);
    const setup = await connect(dir, { maintenance: false });
    const t = await setup.createTable("t", rows(2000));
    await t.createIndex("v", { config: Index.ivfFlat({ numPartitions: 4 }) });
    setup.close();

    const session = new Session();
    expect(session.sizeBytes()).toBe(0);
    const events: TraceEvent[] = [];
    const sub = subscribeEvents((e) => events.push(e));
    try {
      const a = await connect(dir, { session, maintenance: false });
      expect(a.session).toBe(session);
      await (await a.openTable("t")).search([0, 1, 0, 0]).limit(3).toArray();
      await settle();
      const opened = () => events.filter((e) => e.fields.type === "open_vector_index").length;
      expect(opened()).toBe(1);
      expect(session.sizeBytes()).toBeGreaterThan(0);
      expect(session.approxNumItems()).toBeGreaterThan(1);
      // A second connection finds the index and its partitions in the shared cache.
      const b = await connect(dir, { session, maintenance: false });
      await (await b.openTable("t")).search([0, 1, 0, 0]).limit(3).toArray();
      await settle();
      expect(opened()).toBe(1);
      // One with caches of its own loads it again.
      const c = await connect(dir, { maintenance: false });
      await (await c.openTable("t")).search([0, 1, 0, 0]).limit(3).toArray();
      await settle();
      expect(opened()).toBe(2);
      [a, b, c].forEach((x) => x.close());
    } finally {
      sub.unsubscribe();
    }
  });

  it("a session of zero bytes keeps nothing, and stores never mix", async () => {
    const empty = new Session({ metadataCacheBytes: 0, indexCacheBytes: 0 });
    const db = await connect("memory://", { session: empty, maintenance: false });
    const t = await db.createTable("t", rows(50));
    await t.search([0, 1, 0, 0]).limit(1).toArray();
    expect(empty.sizeBytes()).toBe(0);

    // Two private memory:// databases share one URI but not their files or manifests.
    const shared = new Session();
    const x = await connect("memory://", { session: shared, maintenance: false });
    const y = await connect("memory://", { session: shared, maintenance: false });
    await x.createTable("t", rows(10, 100));
    await y.createTable("t", rows(20, 500));
    expect(await (await x.openTable("t")).countRows()).toBe(10);
    expect(await (await y.openTable("t")).countRows()).toBe(20);
    const ids = async (c: typeof x) => (await (await c.openTable("t")).query().select(["id"]).toArray()).map((r) => Number(r.id));
    expect((await ids(x))[0]).toBe(100);
    expect((await ids(y))[0]).toBe(500);
  });

  it("checks its arguments", async () => {
    expect(() => new Session({ indexCacheBytes: -1 })).toThrow(InvalidArgumentError);
    expect(() => new Session(null as never)).toThrow(InvalidArgumentError);
    await expect(connect("memory://", { session: {} as never })).rejects.toThrow(/session/);
    await expect(connect("memory://", { session: new Session(), indexCacheBytes: 1 })).rejects.toThrow(/new Session\(\)/);
  });
});
