// SQL filters from the public API: where() on queries and searches, countRows(filter),
// delete(filter), typed FilterErrors with positions, and pruning visible in analyzePlan().
import { describe, expect, it } from "vitest";
import { connect, FilterError } from "../dist/index.js";

function products(n: number) {
  return Array.from({ length: n }, (_, i) => ({
    id: i,
    name: i % 7 === 0 ? null : `item ${i}`,
    category: ["books", "games", "music"][i % 3],
    price: Math.round(i * 1.25 * 100) / 100,
    inStock: i % 2 === 0,
    added: new Date(Date.UTC(2024, 0, 1 + (i % 60))),
    tags: i % 5 === 0 ? ["sale", "new"] : ["regular"],
    vector: [i % 10, (i * 3) % 10, 1],
  }));
}

describe("where()", () => {
  it("filters queries with the SQL a user writes", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("p", products(200));
    const rows = await t.query().where("category = 'games' AND price BETWEEN 10 AND 20").select(["id", "price"]).toArray();
    expect(rows.map((r) => r.id)).toEqual([10, 13, 16]);
    expect(rows.every((r) => (r.price as number) >= 10 && (r.price as number) <= 20)).toBe(true);

    expect(await t.countRows("name IS NULL")).toBe(29);
    expect(await t.countRows("inStock AND array_has(tags, 'sale')")).toBe(20);
    expect(await t.countRows("lower(category) LIKE 'b%' OR id IN (1, 2)")).toBe(69);
    expect(await t.countRows("added >= DATE '2024-02-01'")).toBe(3 * 29); // days 31..59 of each full 60
    const page = await t.query().where("id >= 100").offset(5).limit(3).select(["id"]).toArray();
    expect(page.map((r) => r.id)).toEqual([105, 106, 107]);
    const none = await t.query().where("price < 0").toArray();
    expect(none).toEqual([]);
  });

  it("prefilters vector searches so that k matching rows come back, or postfilters", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("p", products(300));
    const hits = await t.search([3, 9, 1]).where("category = 'music'").limit(10).toArray();
    expect(hits).toHaveLength(10);
    expect(hits.every((h) => h.category === "music")).toBe(true);
    const distances = hits.map((h) => h._distance as number);
    expect([...distances].sort((a, b) => a - b)).toEqual(distances);

    const post = await t.search([3, 9, 1]).where("category = 'music'").postfilter().limit(10).toArray();
    expect(post.length).toBeLessThanOrEqual(10);
    expect(post.every((h) => h.category === "music")).toBe(true);
    expect(await t.search([3, 9, 1]).where("id < 0").limit(5).toArray()).toEqual([]);
    expect(await t.search([3, 9, 1]).where("category = 'music'").explainPlan()).toContain("prefilter=category = 'music'");
  });

  it("deletes by filter as one version and leaves other rows alone", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("p", products(100));
    const result = await t.delete("category = 'books' OR name IS NULL");
    expect(result).toEqual({ numDeletedRows: 34 + 15 - 5, version: 2 });
    expect(await t.countRows()).toBe(56);
    expect(await t.countRows("category = 'books'")).toBe(0);
    expect(await t.delete("id > 1000")).toEqual({ numDeletedRows: 0, version: 2 });
    await t.checkout(1);
    expect(await t.countRows("category = 'books'")).toBe(34);
  });

  it("reports FilterErrors that say what is wrong and where", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("p", products(10));
    const unknown = await t.query().where("price > 3 AND colour = 'red'").toArray().catch((e) => e);
    expect(unknown).toBeInstanceOf(FilterError);
    expect(unknown).toMatchObject({ code: "Filter", kind: "unknownColumn", position: { line: 1, column: 15 } });
    expect(unknown.message).toMatch(/colour.*id, name, category, price/);

    const mismatch = await t.countRows("category > 3").catch((e) => e);
    expect(mismatch).toMatchObject({ kind: "typeMismatch" });
    expect(mismatch.message).toMatch(/string.*int64|int64.*string/);

    const syntax = await t.delete("(price > 3").catch((e) => e);
    expect(syntax).toMatchObject({ kind: "syntax" });
    expect(syntax.position?.line).toBe(1);

    const unsupported = await t.query().where("id IN (SELECT id FROM p)").toArray().catch((e) => e);
    expect(unsupported).toBeInstanceOf(FilterError);
    expect(await t.countRows()).toBe(10); // nothing was lost
  });

  it("skips pages whose statistics rule a range filter out (analyzePlan shows the I/O)", async () => {
    // The fragment layout is the subject: no background compaction.
    const db = await connect("memory://", { maintenance: false });
    const t = await db.createTable("p", products(500));
    // Appends make several small fragments of a sorted id column.
    for (let start = 500; start < 4000; start += 500) {
      await t.add(products(start + 500).slice(start));
    }
    const ioOf = (plan: string) => Number(/bytes_read=(\d+)/.exec(plan)?.[1]);
    const full = await t.query().where("id >= 0").select(["id"]).analyzePlan();
    const narrow = await t.query().where("id >= 1200 AND id < 1210").select(["id"]).analyzePlan();
    expect(narrow).toMatch(/Scan: .*\[output_rows=10 /);
    expect(full).toMatch(/Scan: .*\[output_rows=4000 /);
    expect(narrow).toMatch(/Filter: filter=id >= 1200 AND id < 1210 .*fragments_pruned=7\/8 /);
    expect(ioOf(narrow) * 4).toBeLessThan(ioOf(full));
  });
});
