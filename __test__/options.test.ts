// The options and error classes not exercised by api.test.ts: vector query options, explicit
// streams, cache sizes, and the errors a damaged folder, a blocked path or a lost race give.
import { readdirSync, rmSync, writeFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  CommitConflictError,
  connect,
  CorruptionError,
  InvalidArgumentError,
  IoError,
  QuiverError,
} from "../dist/index.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tempDir() {
  const dir = mkdtempSync(join(tmpdir(), "quiver-opts-"));
  dirs.push(dir);
  return dir;
}

const twoVectorRows = Array.from({ length: 50 }, (_, i) => ({
  id: BigInt(i),
  a: [i, 0],
  b: [0, 100 - i, 1],
}));

describe("vector query options", () => {
  it("searches the named column and accepts the index options on exact search", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", twoVectorRows);
    await expect(t.search([1, 2]).limit(1).toArray()).rejects.toBeInstanceOf(InvalidArgumentError);
    const onA = await t.search([10, 0]).column("a").select(["id"]).limit(2).toArray();
    expect(onA.map((r) => r.id)).toEqual([10n, 9n]);
    const onB = await t.vectorSearch([0, 97, 1]).column("b").select(["id"]).limit(1).toArray();
    expect(onB[0].id).toBe(3n);
    const tuned = await t
      .search([10, 0])
      .column("a")
      .nprobes(20)
      .refineFactor(2)
      .ef(64)
      .postfilter()
      .bypassVectorIndex()
      .distanceType("l2")
      .select(["id"])
      .limit(2)
      .toArray();
    expect(tuned).toEqual(onA.map(({ id, _distance }) => ({ id, _distance })));
    expect(() => t.search([1, 2]).nprobes(-1)).toThrow(InvalidArgumentError);
    expect(() => t.search([1, 2]).refineFactor(1.5)).toThrow(InvalidArgumentError);
    expect(() => t.search([1, 2]).distanceType("manhattan" as never)).toThrow(/distanceType/);
    expect(() => t.search([])).toThrow(InvalidArgumentError);
    await expect(t.search([1, 2, 3]).column("a").toArray()).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(t.search([1, 2]).column("nope").toArray()).rejects.toBeInstanceOf(QuiverError);
    expect(await t.search([10, 0]).column("a").explainPlan()).toContain("column=a");
  });

  it("builders are immutable: each call returns a new query", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", twoVectorRows);
    const base = t.search([10, 0]).column("a").select(["id"]);
    const one = base.limit(1);
    const three = base.limit(3);
    expect((await one.toArray()).length).toBe(1);
    expect((await three.toArray()).length).toBe(3);
    expect((await base.toArray()).length).toBe(10);
    const dot = base.distanceType("dot").limit(1);
    expect((await dot.toArray())[0].id).toBe(49n);
    expect((await base.limit(1).toArray())[0].id).toBe(10n);
  });

  it("streams vector results and query results as record batches", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", twoVectorRows);
    let hits = 0;
    for await (const batch of t.search([0, 0]).column("a").limit(5).stream()) hits += batch.numRows;
    expect(hits).toBe(5);
    const stream = t.query().select(["id"]).stream();
    let rows = 0;
    for await (const batch of stream) {
      expect(batch.schema.fields.map((f) => f.name)).toEqual(["id"]);
      rows += batch.numRows;
    }
    expect(rows).toBe(50);
  });
});

describe("connection options", () => {
  it("takes a metadata cache size and rejects nonsense options", async () => {
    const dir = tempDir();
    const small = await connect(dir, { metadataCacheBytes: 1024, readConsistencyInterval: 0 });
    const t = await small.createTable("t", twoVectorRows);
    expect(await t.countRows()).toBe(50);
    expect((await t.search([3, 0]).column("a").limit(1).toArray())[0].id).toBe(3n);
    await expect(connect(dir, { metadataCacheBytes: -5 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(connect(dir, { readConsistencyInterval: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(connect("s3x://bucket/path")).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it("memoryMap ranks exactly as the default reads do, and takes only booleans", async () => {
    const dir = tempDir();
    const rows = Array.from({ length: 3000 }, (_, i) => ({
      id: BigInt(i),
      vector: Array.from({ length: 32 }, (_, j) => Math.sin(i * 0.7 + j * 1.3)),
      category: i % 10,
    }));
    const plain = await connect(dir);
    const t = await plain.createTable("t", rows);
    await t.delete("id % 9 = 4");
    const mapped = await (await connect(dir, { memoryMap: true })).openTable("t");
    const q = rows[17].vector.map((v) => v * 0.9);
    for (const where of [undefined, "category < 5"]) {
      const run = (table: typeof t) => {
        const query = table.search(q).select(["id"]).limit(25);
        return (where ? query.where(where) : query).toArray();
      };
      const [a, b] = [await run(t), await run(mapped)];
      expect(b).toEqual(a);
      expect(a.length).toBe(25);
    }
    await expect(connect(dir, { memoryMap: "yes" as never })).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe("error classes from the engine", () => {
  it("CorruptionError for a damaged data file, with committed data intact elsewhere", async () => {
    const dir = tempDir();
    const db = await connect(dir);
    const t = await db.createTable("t", twoVectorRows);
    const healthy = await db.createTable("healthy", twoVectorRows);
    const dataDir = join(dir, "t.quiver", "data");
    const [file] = readdirSync(dataDir);
    const bytes = readFileSync(join(dataDir, file));
    bytes[bytes.length - 20] ^= 0xff; // inside the footer
    writeFileSync(join(dataDir, file), bytes);
    const reopened = await connect(dir);
    const err = await (await reopened.openTable("t")).query().toArray().catch((e) => e);
    expect(err).toBeInstanceOf(CorruptionError);
    expect(err.code).toBe("Corruption");
    expect(err.retryable).toBe(false);
    expect(await healthy.countRows()).toBe(50);
    expect((await (await reopened.openTable("healthy")).query().toArray()).length).toBe(50);
  });

  it("IoError when the database path cannot be written", async () => {
    const file = join(tempDir(), "not-a-folder");
    writeFileSync(file, "x");
    const db = await connect(file).catch((e) => e);
    const err = db instanceof Error ? db : await db.createTable("t", twoVectorRows).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IoError);
    expect(err.code).toBe("Io");
    expect(err.retryable).toBe(true);
  });

  /** Handles on one table from two connections that never refresh on their own. */
  async function twoWriters() {
    const dir = tempDir();
    const first = await connect(dir, { readConsistencyInterval: Infinity });
    const second = await connect(dir, { readConsistencyInterval: Infinity });
    await first.createTable("t", twoVectorRows);
    return [await first.openTable("t"), await second.openTable("t")];
  }

  it("two writers deleting the same rows both succeed: the second re-runs on the newer version", async () => {
    const [a, b] = await twoWriters();
    const ids = (await a.query().withRowId().limit(3).toArray()).map((r) => r._rowid as bigint);
    const list = ids.join(", ");
    expect((await a.delete(`_rowid IN (${list})`)).numDeletedRows).toBe(3);
    const again = await b.delete(`_rowid IN (${list})`);
    expect(again).toEqual({ numDeletedRows: 0, version: 2 });
    expect(await b.countRows()).toBe(47);
  });

  it("an upsert rebases over other writers' rows unless they hold its keys; timeoutMs bounds the retrying", async () => {
    const [a, b] = await twoWriters();
    const row = (id: number) => ({ ...twoVectorRows[0], id: BigInt(id) });
    const upsert = (t: typeof a) => t.mergeInsert("id").whenMatchedUpdateAll().whenNotMatchedInsertAll();
    // b adds id 100; a, behind, upserts id 60: no conflict, only a lost race, and with no time
    // to rebase in, a runs out of time.
    await b.add([row(100)]);
    const late = await upsert(a)
      .execute([row(60)], { timeoutMs: 0 })
      .catch((e) => e);
    expect(late).toBeInstanceOf(CommitConflictError);
    expect(late.code).toBe("CommitTimeout");
    expect(late.retryable).toBe(true);
    expect(late.message).toMatch(/gave up after \d+ ms and 1 attempts: other writers committed 1 versions/);
    expect(await upsert(a).execute([row(60)])).toMatchObject({ numInsertedRows: 1, numUpdatedRows: 0 });
    // b adds id 200; a upserts id 200: a true conflict, and given time a re-runs and updates it.
    await b.add([row(200)]);
    const conflict = await upsert(a)
      .execute([row(200)], { timeoutMs: 0 })
      .catch((e) => e);
    expect(conflict).toBeInstanceOf(CommitConflictError);
    expect(conflict.code).toBe("CommitConflict");
    expect(await upsert(a).execute([row(200)], { timeoutMs: 5_000 })).toMatchObject({ numInsertedRows: 0, numUpdatedRows: 1 });
    await a.checkoutLatest();
    expect(await a.countRows("id >= 60")).toBe(3);
    // Bad timeouts are refused before anything is written.
    for (const timeoutMs of [-1, Number.NaN, "10"]) {
      await expect(a.add([row(300)], { timeoutMs } as never)).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(a.delete("id = 1", { timeoutMs } as never)).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(a.update({ values: { id: 7n }, where: "id = 1", timeoutMs } as never)).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(upsert(a).execute([row(300)], { timeoutMs } as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    expect(await a.countRows()).toBe(53);
    expect(await a.delete("id = 1", { timeoutMs: Number.POSITIVE_INFINITY })).toMatchObject({ numDeletedRows: 1 });
  });

  it("async writers of two connections upsert, update and append their own rows without one failure", async () => {
    const dir = tempDir();
    // Maintenance off: it would outlive the test (the soak test runs it).
    const seed = await connect(dir, { maintenance: false });
    await seed.createTable("c", [{ id: 0n, owner: 0, c: 0 }]);
    const writers = [];
    for (const conn of [await connect(dir, { maintenance: false }), await connect(dir, { maintenance: false })]) {
      for (let w = 0; w < 4; w++) {
        const owner = writers.length + 1;
        const t = await conn.openTable("c");
        writers.push(
          (async () => {
            const base = owner * 1_000;
            for (let i = 0; i < 6; i++) {
              await t.add([{ id: BigInt(base + 100 + i), owner, c: 0 }]);
              await t.mergeInsert("id").whenMatchedUpdateAll().whenNotMatchedInsertAll().execute([{ id: BigInt(base), owner, c: i }]);
              await t.update({ where: `id = ${base}`, valuesSql: { c: "c + 1" } });
            }
          })(),
        );
      }
    }
    const results = await Promise.allSettled(writers);
    expect(results.filter((r) => r.status === "rejected")).toEqual([]);
    const t = await seed.openTable("c");
    expect(await t.countRows()).toBe(1 + 8 * 7);
    for (let owner = 1; owner <= 8; owner++) {
      const [row] = await t.query().where(`id = ${owner * 1_000}`).toArray();
      // The last upsert set 5, the update after it added one.
      expect(Number(row.c)).toBe(6);
    }
  });

  it("CommitConflictError when an append races an overwrite", async () => {
    const [a, b] = await twoWriters();
    await b.add(twoVectorRows.slice(0, 5), { mode: "overwrite" });
    const err = await a.add(twoVectorRows.slice(0, 1)).catch((e) => e);
    expect(err).toBeInstanceOf(CommitConflictError);
    expect(err.retryable).toBe(true);
    await a.checkoutLatest();
    expect(await a.countRows()).toBe(5);
  });
});

describe("large in-memory data", () => {
  it("is written in chunks but committed as one version, and errors name the right row", async () => {
    const db = await connect("memory://");
    const rows = Array.from({ length: 40_000 }, (_, i) => ({ id: BigInt(i), v: [i, 1] }));
    const t = await db.createTable("t", rows);
    expect(await t.version()).toBe(1);
    expect(await t.countRows()).toBe(40_000);
    const arrow = await t.toArrow();
    expect(arrow.batches.length).toBeGreaterThan(1);
    expect(await t.add(arrow)).toEqual({ version: 2 });
    expect(await t.countRows()).toBe(80_000);
    const bad = rows.map((r, i) => (i === 35_001 ? { id: r.id, v: [1, 2, 3] } : r));
    const err = await t.add(bad).catch((e) => e);
    expect(err.message).toContain("row 35001");
    expect(await t.version()).toBe(2);
    expect(await t.countRows()).toBe(80_000);
    const ids = (await t.query().select(["id"]).offset(39_999).limit(2).toArray()).map((r) => r.id);
    expect(ids).toEqual([39_999n, 0n]);
  });
});
