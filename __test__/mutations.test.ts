// update() and mergeInsert() as a user calls them: JS values and SQL expressions, NULLs,
// vectors, conditions, counts, versions, and concurrent upserts that never duplicate keys.
import { describe, expect, it } from "vitest";
import { connect, FilterError, SchemaMismatchError } from "../dist/index.js";

function items(ids: number[], price = 10) {
  return ids.map((id) => ({
    id,
    name: id % 3 === 0 ? null : `item ${id}`,
    price: price + id,
    when: new Date(Date.UTC(2024, 0, 1 + id)),
    tags: [`t${id % 2}`],
    vector: [id, 0, 1],
  }));
}

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

describe("update()", () => {
  it("sets JS values and SQL expressions on matching rows, as one version", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", items(range(0, 10)));
    const r = await t.update({ where: "id >= 7", valuesSql: { price: "price * 2" }, values: { name: "late", vector: [9, 9, 9] } });
    expect(r).toEqual({ rowsUpdated: 3, version: 2 });
    const rows = await t.query().where("id >= 6").select(["id", "name", "price", "vector"]).toArray();
    rows.sort((a, b) => (a.id as number) - (b.id as number));
    expect(rows.map((r) => [r.id, r.name, r.price])).toEqual([
      [6, null, 16],
      [7, "late", 34],
      [8, "late", 36],
      [9, "late", 38],
    ]);
    expect(Array.from(rows[3].vector as Float32Array)).toEqual([9, 9, 9]);
    await t.update({ values: { name: null, when: new Date(Date.UTC(2030, 0, 1)) } });
    expect(await t.countRows("name IS NULL")).toBe(10);
    expect(await t.countRows("when = TIMESTAMP '2030-01-01 00:00:00'")).toBe(10);
    expect(await t.countRows()).toBe(10);
    await t.checkout(1);
    expect(await t.countRows("price > 30")).toBe(0);
  });

  it("rejects bad updates with typed errors and changes nothing", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", items(range(0, 5)));
    await expect(t.update({ where: "nope > 1", values: { price: 1 } })).rejects.toBeInstanceOf(FilterError);
    await expect(t.update({ valuesSql: { price: "price +" } })).rejects.toMatchObject({ kind: "syntax" });
    await expect(t.update({ values: { colour: "red" } })).rejects.toThrow(/colour.*id, name, price/);
    await expect(t.update({ values: { vector: [1, 2] } })).rejects.toBeInstanceOf(SchemaMismatchError);
    await expect(t.update({})).rejects.toThrow(/values or valuesSql/);
    expect(await t.version()).toBe(1);
  });
});

describe("mergeInsert()", () => {
  it("upserts, updates conditionally and deletes by source", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", items(range(0, 10)));
    const r = await t.mergeInsert("id").whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(items(range(5, 15), 100));
    expect(r).toEqual({ numInsertedRows: 5, numUpdatedRows: 5, numDeletedRows: 0, version: 2 });
    expect(await t.countRows()).toBe(15);
    expect(await t.countRows("price >= 100")).toBe(10);

    const cheaper = await t
      .mergeInsert(["id"])
      .whenMatchedUpdateAll({ where: "source.price < target.price" })
      .execute(items(range(0, 15), 50));
    expect(cheaper.numUpdatedRows).toBe(10);

    const pruned = await t.mergeInsert("id").whenNotMatchedBySourceDelete({ where: "id >= 12" }).execute(items(range(0, 12)));
    expect(pruned).toMatchObject({ numDeletedRows: 3, numInsertedRows: 0 });
    expect(await t.countRows()).toBe(12);

    const dup = await t.mergeInsert("id").whenNotMatchedInsertAll().execute(items([20, 20])).catch((e) => e);
    expect(dup.message).toMatch(/same key/);
    expect(await t.countRows()).toBe(12);
  });

  it("concurrent upserts of the same keys never duplicate rows", async () => {
    const db = await connect("memory://");
    await db.createTable("t", items(range(0, 50)));
    const handles = await Promise.all(range(0, 6).map(() => db.openTable("t")));
    await Promise.all(
      handles.map((h, i) => h.mergeInsert("id").whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(items(range(45, 60), i * 1000))),
    );
    const t = await db.openTable("t");
    const ids = (await t.query().select(["id"]).toArray()).map((r) => r.id as number).sort((a, b) => a - b);
    expect(ids).toEqual(range(0, 60));
  });
});
