// addColumns(), alterColumns() and dropColumns() as a user calls them: SQL and all-NULL
// columns, renames (also of struct members), nullability, widening casts, drops, and old
// versions that keep their own schema, across a reopen.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Field, FixedSizeList, Float32, Float64, Int64, Schema, Utf8 } from "apache-arrow";
import { afterAll, describe, expect, it } from "vitest";
import { connect, FilterError, InvalidArgumentError } from "../dist/index.js";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function items(n: number) {
  return Array.from({ length: n }, (_, id) => ({
    id,
    price: id % 4 === 0 ? null : id * 1.5,
    meta: { color: `c${id % 3}`, size: id },
    vector: [id, 1],
  }));
}

const names = async (t: { schema(): Promise<Schema> }) => (await t.schema()).fields.map((f) => f.name);

describe("addColumns()", () => {
  it("computes columns from SQL, one version, old version unchanged", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", items(20));
    const { version } = await t.addColumns([
      { name: "price2", valueSql: "price * 2" },
      { name: "label", valueSql: "upper(meta.color)" },
    ]);
    expect(version).toBe(2);
    expect(await names(t)).toEqual(["id", "price", "meta", "vector", "price2", "label"]);
    const rows = await t.query().where("id < 5").select(["id", "price2", "label"]).toArray();
    rows.sort((a, b) => (a.id as number) - (b.id as number));
    expect(rows.map((r) => [r.id, r.price2, r.label])).toEqual([
      [0, null, "C0"],
      [1, 3, "C1"],
      [2, 6, "C2"],
      [3, 9, "C0"],
      [4, null, "C1"],
    ]);
    expect(await t.countRows("label = 'C0'")).toBe(7);
    const [v] = (await t.listVersions()).slice(-1);
    expect(v.operation).toBe("add_columns");
    await t.checkout(1);
    expect(await names(t)).toEqual(["id", "price", "meta", "vector"]);
    await expect(t.countRows("label = 'C0'")).rejects.toBeInstanceOf(FilterError);
  });

  it("adds all-NULL columns from Arrow fields or a schema", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", items(5));
    await t.addColumns(new Field("note", new Utf8(), true));
    await t.addColumns(new Schema([new Field("emb", new FixedSizeList(4, new Field("item", new Float32(), true)), true)]));
    expect(await t.countRows("note IS NULL AND emb IS NULL")).toBe(5);
    await t.add([{ ...items(6)[5], note: "hi", emb: [1, 2, 3, 4] }]);
    expect(await t.countRows("note = 'hi'")).toBe(1);
  });

  it("rejects bad columns without committing", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", items(5));
    await expect(t.addColumns([{ name: "x", valueSql: "nope + 1" }])).rejects.toBeInstanceOf(FilterError);
    await expect(t.addColumns([{ name: "price", valueSql: "1" }])).rejects.toThrow(/already exists/);
    await expect(t.addColumns(new Field("y", new Int64(), false))).rejects.toThrow(/nullable/);
    await expect(t.addColumns([] as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(t.addColumns([{ name: "z" }] as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(await t.version()).toBe(1);
  });
});

describe("alterColumns()", () => {
  it("renames columns and struct members, old versions keep old names", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", items(10));
    await t.alterColumns([
      { path: "price", rename: "cost" },
      { path: "meta.color", rename: "colour" },
    ]);
    expect(await t.countRows("cost > 3 AND meta.colour = 'c1'")).toBe(1);
    const [row] = await t.query().where("id = 4").toArray();
    expect(row.meta).toEqual({ colour: "c1", size: 4 });
    await t.checkout(1);
    expect(await t.countRows("price > 3 AND meta.color = 'c1'")).toBe(1);
  });

  it("widens types and changes nullability", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", items(10));
    await t.addColumns([{ name: "n", valueSql: "CAST(id AS INT)" }]);
    await t.alterColumns([
      { path: "vector", dataType: new FixedSizeList(2, new Field("item", new Float64(), true)) },
      { path: "n", dataType: "int64", nullable: false },
    ]);
    const schema = await t.schema();
    expect(String(schema.fields[4].type)).toBe("Int64");
    expect(schema.fields[4].nullable).toBe(false);
    expect(String(schema.fields[3].type)).toContain("Float64");
    expect(await t.countRows("n = 7")).toBe(1);
    const [row] = await t.query().where("id = 3").toArray();
    expect(Array.from(row.vector as Float64Array)).toEqual([3, 1]);
    await expect(t.alterColumns([{ path: "price", dataType: "int32" }])).rejects.toThrow(/widening/);
    await expect(t.alterColumns([{ path: "price", nullable: false }])).rejects.toThrow(/hold NULL/);
    await expect(t.alterColumns([{ path: "price", dataType: "decimal" }])).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(t.alterColumns([{ path: "nope", rename: "x" }])).rejects.toThrow(/id, price, meta, vector/);
  });
});

describe("dropColumns()", () => {
  it("drops columns from the schema only; the schema survives reopen", async () => {
    const dir = mkdtempSync(join(tmpdir(), "quiver-schema-"));
    dirs.push(dir);
    {
      const db = await connect(dir);
      const t = await db.createTable("t", items(10));
      await t.addColumns([{ name: "double", valueSql: "id * 2" }]);
      await t.dropColumns(["price", "meta"]);
      expect(await names(t)).toEqual(["id", "vector", "double"]);
      await expect(t.dropColumns(["id", "vector", "double"])).rejects.toThrow(/every column/);
      db.close();
    }
    const db = await connect(dir);
    const t = await db.openTable("t");
    expect(await names(t)).toEqual(["id", "vector", "double"]);
    expect(await t.countRows("double = 18")).toBe(1);
    expect((await t.listVersions()).map((v) => v.operation)).toEqual(["create", "add_columns", "drop_columns"]);
    await t.checkout(2);
    expect(await t.countRows("price > 10")).toBe(2);
  });
});
