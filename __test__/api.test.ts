import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Field, FixedSizeList, Float32, Int64, Schema, Table as ArrowTable, Utf8, tableFromArrays, tableToIPC } from "apache-arrow";
import { afterAll, describe, expect, it } from "vitest";
import {
  ClosedError,
  FilterError,
  connect,
  InvalidArgumentError,
  NotFoundError,
  SchemaMismatchError,
  TableExistsError,
  TableNotFoundError,
} from "../lib/index.js";

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "quiver-test-"));
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function docs(n: number, start = 0) {
  return Array.from({ length: n }, (_, i) => ({
    id: BigInt(start + i),
    vector: [start + i, (start + i) * 2, 1],
    text: `doc ${start + i}`,
    price: (start + i) * 1.5,
    tags: ["a", `t${(start + i) % 3}`],
  }));
}

describe("connection", () => {
  it("creates, lists, opens and drops tables", async () => {
    const db = await connect(join(tempDir(), "db"));
    expect(await db.tableNames()).toEqual([]);
    const t = await db.createTable("docs", docs(5));
    expect(t.name).toBe("docs");
    await db.createTable("b", docs(1));
    await db.createTable("c", docs(1));
    expect(await db.tableNames()).toEqual(["b", "c", "docs"]);
    expect(await db.tableNames({ startAfter: "b", limit: 1 })).toEqual(["c"]);
    const again = await db.openTable("docs");
    expect(await again.countRows()).toBe(5);
    await db.dropTable("b");
    expect(await db.tableNames()).toEqual(["c", "docs"]);
    await db.dropAllTables();
    expect(await db.tableNames()).toEqual([]);
    expect(db.display()).toContain("db");
  });

  it("reports typed errors with codes", async () => {
    const db = await connect("memory://");
    await db.createTable("t", docs(2));
    await expect(db.createTable("t", docs(1))).rejects.toMatchObject({ code: "TableExists" });
    await expect(db.createTable("t", docs(1))).rejects.toBeInstanceOf(TableExistsError);
    const same = await db.createTable("t", docs(9), { existOk: true });
    expect(await same.countRows()).toBe(2);
    const replaced = await db.createTable("t", docs(3), { mode: "overwrite" });
    expect(await replaced.countRows()).toBe(3);
    await expect(db.openTable("nope")).rejects.toBeInstanceOf(TableNotFoundError);
    await expect(db.openTable("../escape")).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(db.createTable("x", [])).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(connect("ftp://nowhere")).rejects.toMatchObject({ code: "InvalidArgument" });
  });

  it("refuses a write through a handle whose table another connection dropped and created again", async () => {
    const uri = join(tempDir(), "db");
    const [a, b] = [await connect(uri), await connect(uri)];
    const stale = await a.createTable("t", docs(5));
    await stale.add(docs(5, 5));
    await b.dropTable("t");
    await b.createTable("t", docs(2, 100));
    const refused = await stale.add(docs(1, 50)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(TableNotFoundError);
    expect(refused).toMatchObject({ code: "TableDropped", retryable: false });
    const fresh = await b.openTable("t");
    expect(await fresh.countRows()).toBe(2);
    expect((await fresh.listVersions()).map((v) => v.version)).toEqual([1]);
  });

  it("creates empty tables from a schema", async () => {
    const db = await connect("memory://");
    const schema = new Schema([
      new Field("id", new Int64(), false),
      new Field("vector", new FixedSizeList(2, new Field("item", new Float32(), true)), true),
    ]);
    const t = await db.createEmptyTable("e", schema);
    expect(await t.countRows()).toBe(0);
    const got = await t.schema();
    expect(got.fields.map((f) => f.name)).toEqual(["id", "vector"]);
    expect(got.fields[0].nullable).toBe(false);
    await t.add([{ id: 1n, vector: [1, 2] }]);
    expect(await t.countRows()).toBe(1);
  });

  it("closes connections and tables", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", docs(1));
    t.close();
    expect(t.isOpen()).toBe(false);
    await expect(t.countRows()).rejects.toBeInstanceOf(ClosedError);
    const t2 = await db.openTable("t");
    db.close();
    expect(db.isOpen()).toBe(false);
    expect(t2.isOpen()).toBe(false);
    await expect(db.tableNames()).rejects.toMatchObject({ code: "Closed" });
    await expect(t2.countRows()).rejects.toBeInstanceOf(ClosedError);
  });
});

describe("data in and out", () => {
  it("infers schemas from plain objects", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", [
      {
        n: 1,
        big: 2n,
        s: "x",
        b: true,
        d: new Date(1_700_000_000_000),
        v: new Float32Array([1, 2]),
        v64: new Float64Array([1, 2, 3]),
        bits: new Uint8Array([1, 255]),
        tags: ["a", "b"],
        nested: { x: 1, y: "z" },
        maybe: null,
      },
      { n: 2.5, big: 3n, s: null, b: false, d: null, v: [3, 4], v64: null, bits: null, tags: [], nested: null, maybe: "now" },
    ]);
    const schema = await t.schema();
    const types = Object.fromEntries(schema.fields.map((f) => [f.name, String(f.type)]));
    expect(types.n).toBe("Float64");
    expect(types.big).toBe("Int64");
    expect(types.s).toBe("Utf8");
    expect(types.b).toBe("Bool");
    expect(types.d).toContain("Timestamp");
    expect(types.v).toContain("FixedSizeList[2]<Float32>");
    expect(types.v64).toContain("FixedSizeList[3]<Float64>");
    expect(types.bits).toContain("FixedSizeList[2]<Uint8>");
    expect(types.tags).toContain("List<Utf8>");
    expect(types.nested).toContain("Struct");
    const rows = await t.query().toArray();
    expect(rows[0].n).toBe(1);
    expect(rows[0].big).toBe(2n);
    expect(rows[0].d).toEqual(new Date(1_700_000_000_000));
    expect(rows[0].v).toEqual(new Float32Array([1, 2]));
    expect(rows[1].v).toEqual(new Float32Array([3, 4]));
    expect(rows[0].tags).toEqual(["a", "b"]);
    expect(rows[0].nested).toEqual({ x: 1, y: "z" });
    expect(rows[1].nested).toBeNull();
    expect(rows[1].maybe).toBe("now");
    const asNumbers = await t.query().select(["big"]).toArray({ bigIntAsNumber: true });
    expect(asNumbers[0].big).toBe(2);
  });

  it("names the field and row of inconsistent data", async () => {
    const db = await connect("memory://");
    const err = await db.createTable("t", [{ a: 1 }, { a: "x" }]).catch((e) => e);
    expect(err).toBeInstanceOf(SchemaMismatchError);
    expect(err.message).toContain("'a'");
    expect(err.message).toContain("row 1");
    const vec = await db.createTable("t", [{ v: [1, 2] }, { v: [1, 2, 3] }]).catch((e) => e);
    expect(vec).toBeInstanceOf(SchemaMismatchError);
    expect(vec.message).toMatch(/'v' in row 1 is a vector of 3/);
    const t = await db.createTable("ok", [{ id: 1n, v: [1, 2] }]);
    await expect(t.add([{ id: 2n, v: [1, 2, 3] }])).rejects.toBeInstanceOf(SchemaMismatchError);
    await expect(t.add([{ id: 2n, v: [1, 2], extra: 1 }])).rejects.toThrow(/extra/);
    expect(await t.countRows()).toBe(1);
  });

  it("accepts arrow tables, batches and IPC bytes, and an explicit schema", async () => {
    const db = await connect("memory://");
    const arrow = tableFromArrays({ id: new Int32Array([1, 2, 3]), name: ["a", "b", "c"] });
    const t = await db.createTable("t", arrow);
    await t.add(arrow.batches[0]);
    await t.add(arrow.batches);
    await t.add(tableToIPC(arrow, "stream"));
    await t.add(tableToIPC(arrow, "file"));
    expect(await t.countRows()).toBe(15);
    const schema = new Schema([new Field("id", new Int64(), true), new Field("name", new Utf8(), true)]);
    const typed = await db.createTable("typed", [{ id: 5, name: "x" }], { schema });
    expect(String((await typed.schema()).fields[0].type)).toBe("Int64");
    expect((await typed.query().toArray())[0].id).toBe(5n);
    await expect(t.add(new Uint8Array([1, 2, 3]))).rejects.toBeInstanceOf(InvalidArgumentError);
    const otherSchema = new Schema([new Field("other", new Utf8(), true)]);
    await expect(t.add(new ArrowTable(otherSchema))).rejects.toBeInstanceOf(SchemaMismatchError);
    expect(await t.version()).toBe(5);
  });

  it("ingests and returns streams bigger than one batch", async () => {
    const db = await connect("memory://");
    async function* chunks() {
      for (let c = 0; c < 5; c++) yield docs(4000, c * 4000);
    }
    const t = await db.createTable("t", chunks());
    expect(await t.countRows()).toBe(20_000);
    expect(await t.version()).toBe(1);
    expect(await t.add(chunks())).toEqual({ version: 2 });
    expect(await t.countRows()).toBe(40_000);
    await t.add([docs(1, 99)[0]]);
    // A chunk that fails part-way commits nothing.
    async function* broken() {
      yield docs(10, 100_000);
      yield [{ id: 1n, vector: [1, 2], text: "short vector", price: 1, tags: [] }];
    }
    await expect(t.add(broken())).rejects.toBeInstanceOf(SchemaMismatchError);
    expect(await t.countRows()).toBe(40_001);
    await expect(db.createTable("never", broken())).rejects.toBeInstanceOf(SchemaMismatchError);
    expect(await db.tableNames()).toEqual(["t"]);
    let rows = 0;
    let batches = 0;
    for await (const batch of t.query().select(["id"])) {
      rows += batch.numRows;
      batches++;
    }
    expect(batches).toBeGreaterThan(1);
    const page = await t.query().offset(10_000).limit(3).toArray();
    expect(rows).toBe(40_001);
    expect(page.map((r) => r.id)).toEqual([10_000n, 10_001n, 10_002n]);
  });
});

describe("table", () => {
  it("queries with select, limit, offset, row ids and takes", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", docs(10));
    const rows = await t.query().select(["id", "text"]).limit(3).offset(2).withRowId().toArray();
    expect(rows.map((r) => r.id)).toEqual([2n, 3n, 4n]);
    expect(Object.keys(rows[0])).toEqual(["id", "text", "_rowid"]);
    const renamed = await t.query().select({ ident: "id" }).limit(1).toArray();
    expect(renamed).toEqual([{ ident: 0n }]);
    const taken = await t.takeRowIds([rows[2]._rowid as bigint, rows[0]._rowid as bigint]);
    expect(taken.getChild("id")?.toArray()).toEqual(new BigInt64Array([4n, 2n]));
    const byOffset = await t.takeOffsets([9, 0], ["text"]);
    expect(byOffset.getChild("text")?.toArray()).toEqual(["doc 9", "doc 0"]);
    await expect(t.takeOffsets([10])).rejects.toBeInstanceOf(NotFoundError);
    await expect(t.query().where("pricey > 3").toArray()).rejects.toBeInstanceOf(FilterError);
    expect(await t.query().limit(2).explainPlan()).toContain("limit=2");
    expect(await t.query().analyzePlan()).toMatch(/Scan: .*\[output_rows=10 iops=\d+ /);
    const arrow = await t.toArrow();
    expect(arrow.numRows).toBe(10);
  });

  it("searches vectors exactly", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", docs(50));
    const hits = await t.search([10, 20, 1]).limit(3).toArray();
    expect(hits.map((h) => h.id)).toEqual([10n, 9n, 11n]);
    expect(hits[0]._distance).toBe(0);
    const cos = await t.search(new Float32Array([1, 2, 0])).distanceType("cosine").select(["id"]).limit(2).toArray();
    expect(Object.keys(cos[0])).toEqual(["id", "_distance"]);
    const ranged = await t.vectorSearch([0, 0, 1]).distanceRange(0, 6).limit(10).toArray();
    expect(ranged.map((h) => h.id)).toEqual([0n, 1n]);
    await expect(t.search([1, 2]).toArray()).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(() => t.search([1, 2, 3]).distanceType("manhattan" as never)).toThrow(InvalidArgumentError);
  });

  it("deletes by row id and travels in time", async () => {
    const dir = join(tempDir(), "db");
    const db = await connect(dir);
    const t = await db.createTable("t", docs(5));
    expect(await t.version()).toBe(1);
    expect(await t.add(docs(2, 5))).toEqual({ version: 2 });
    const ids = (await t.query().withRowId().toArray()).map((r) => r._rowid as bigint);
    const del = await t.delete(`_rowid IN (${ids[0]}, ${ids[1]})`);
    expect(del).toEqual({ numDeletedRows: 2, version: 3 });
    await expect(t.delete("price >")).rejects.toMatchObject({ code: "Filter", kind: "syntax" });
    const versions = await t.listVersions();
    expect(versions.map((v) => v.operation)).toEqual(["create", "append", "delete"]);
    expect(versions[0].timestamp).toBeInstanceOf(Date);
    await t.checkout(1);
    expect(await t.countRows()).toBe(5);
    await expect(t.add(docs(1))).rejects.toMatchObject({ code: "ReadOnlyVersion" });
    expect(await t.restore()).toBe(4);
    expect(await t.countRows()).toBe(5);
    await t.checkout(3);
    await t.checkoutLatest();
    expect(await t.version()).toBe(4);
    const old = await db.openTable("t", { version: 2 });
    expect(await old.countRows()).toBe(7);
    const stats = await t.stats();
    expect(stats).toMatchObject({ numRows: 5, version: 4, numVersions: 4 });
    expect(stats.dataBytes).toBeGreaterThan(0);
    expect(await t.add(docs(1, 100), { mode: "overwrite" })).toEqual({ version: 5 });
    expect(await t.countRows()).toBe(1);
  });

  it("sees commits of another connection at once", async () => {
    const dir = join(tempDir(), "db");
    const a = await connect(dir);
    const b = await connect(dir);
    const ta = await a.createTable("t", docs(3));
    const tb = await b.openTable("t");
    await ta.add(docs(2, 3));
    expect(await tb.countRows()).toBe(5);
    const lazy = await connect(dir, { readConsistencyInterval: Infinity });
    const tl = await lazy.openTable("t");
    await ta.add(docs(1, 10));
    expect(await tl.countRows()).toBe(5);
    await tl.checkoutLatest();
    expect(await tl.countRows()).toBe(6);
  });
});

describe("README", () => {
  it("the example runs as written", async () => {
    const db = await connect("memory://");
    const table = await db.createTable("docs", [
      { id: 1n, vector: [0.1, 0.2, 0.3], text: "hello", price: 10.5, tags: ["a"] },
      { id: 2n, vector: [0.3, 0.1, 0.9], text: "world", price: 3.0, tags: [] },
    ]);
    await table.add([{ id: 3n, vector: [0.2, 0.2, 0.2], text: "again", price: 7, tags: ["b"] }]);
    const hits = await table.search([0.1, 0.2, 0.25]).select(["id", "text"]).limit(2).toArray();
    expect(hits[0]).toMatchObject({ id: 1n, text: "hello" });
    expect(hits[0]._distance as number).toBeCloseTo(0.0025, 6);
    let rows = 0;
    for await (const batch of table.query().select(["id", "price"])) rows += batch.numRows;
    expect(rows).toBe(3);
    await table.checkout(1);
    expect(await table.restore()).toBe(3);
  });
});
