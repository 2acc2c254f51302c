// Scalar indexes (BTREE, BITMAP, LABEL_LIST) through the Node API: the kind createIndex picks,
// answers equal to an unindexed table's for filters a program generates, plans that name the
// index, optimize() folding new rows in, and typed errors.
import { describe, expect, it } from "vitest";
import { connect, Index, InvalidArgumentError, type Table } from "../lib/index.js";

function rows(from: number, to: number) {
  return Array.from({ length: to - from }, (_, j) => {
    const i = from + j;
    return {
      id: i,
      category: i % 17 === 3 ? null : `c${i % 12}`,
      price: (i * 37) % 1000 / 10,
      tags: i % 13 === 0 ? null : [`t${i % 7}`, `t${(i % 5) + 10}`],
      name: `user-${String((i * 7919) % 50_000).padStart(5, "0")}`,
      when: new Date(Date.UTC(2024, 0, 1) + i * 60_000),
      vector: [i % 3, (i * 7) % 5, 1],
    };
  });
}

async function pair(n: number): Promise<{ indexed: Table; plain: Table }> {
  const indexed = await (await connect("memory://", { scalarIndexMaxShare: 1 })).createTable("t", rows(0, n));
  const plain = await (await connect("memory://")).createTable("t", rows(0, n));
  return { indexed, plain };
}

async function ids(t: Table, where: string): Promise<number[]> {
  const found = await t.query().where(where).select(["id"]).toArray();
  return found.map((r) => Number(r.id)).sort((a, b) => a - b);
}

// A small generator of filters, as a program building queries would produce them.
function filters(seed: number, count: number): string[] {
  let s = seed;
  const next = (m: number) => {
    s = (s * 1_103_515_245 + 12_345) % 2_147_483_648;
    return s % m;
  };
  const leaf = (): string => {
    switch (next(9)) {
      case 0:
        return `id = ${next(6000)}`;
      case 1:
        return `id BETWEEN ${next(3000)} AND ${3000 + next(3000)}`;
      case 2:
        return `category = 'c${next(14)}'`;
      case 3:
        return `category IN ('c${next(12)}', 'c${next(12)}')`;
      case 4:
        return `price >= ${next(1000) / 10}`;
      case 5:
        return `array_has(tags, 't${next(8)}')`;
      case 6:
        return `array_has_any(tags, ['t${next(8)}', 't${10 + next(6)}'])`;
      case 7:
        return `name LIKE 'user-0${next(5)}%'`;
      default:
        return next(2) === 0 ? "category IS NULL" : "tags IS NOT NULL";
    }
  };
  return Array.from({ length: count }, () => {
    const a = leaf();
    switch (next(4)) {
      case 0:
        return a;
      case 1:
        return `${a} AND ${leaf()}`;
      case 2:
        return `${a} OR ${leaf()}`;
      default:
        return `(${a} OR ${leaf()}) AND id % 3 = ${next(3)}`;
    }
  });
}

describe("scalar indexes", () => {
  it("createIndex picks the kind by the column and says what it built", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", rows(0, 5000));
    expect((await t.createIndex("id")).indexType).toBe("BTREE");
    expect((await t.createIndex("category")).indexType).toBe("BITMAP");
    expect((await t.createIndex("tags")).indexType).toBe("LABEL_LIST");
    expect((await t.createIndex("when")).indexType).toBe("BTREE");
    const name = await t.createIndex("name", { config: Index.bitmap(), name: "names" });
    expect(name).toMatchObject({ name: "names", indexType: "BITMAP", columns: ["name"], numIndexedRows: 5000 });
    expect(name.numDistinctValues).toBe(5000);
    const stats = await t.indexStats("category_idx");
    expect(stats).toMatchObject({ indexType: "BITMAP", numDistinctValues: 12, numUnindexedRows: 0 });
    expect(stats.sizeBytes).toBeGreaterThan(0);
    expect(stats.distanceType).toBeUndefined();
    expect((await t.listIndices()).map((i) => i.indexType).sort()).toEqual(["BITMAP", "BITMAP", "BTREE", "BTREE", "LABEL_LIST"]);
  });

  it("answers generated filters exactly as an unindexed table does", async () => {
    const { indexed, plain } = await pair(6000);
    await indexed.createIndex("id", { config: Index.btree() });
    await indexed.createIndex("category", { config: Index.bitmap() });
    await indexed.createIndex("price", { config: Index.btree() });
    await indexed.createIndex("tags", { config: Index.labelList() });
    await indexed.createIndex("name", { config: Index.btree() });
    for (const where of filters(7, 60)) {
      expect(await ids(indexed, where), where).toEqual(await ids(plain, where));
      expect(await indexed.countRows(where), where).toBe(await plain.countRows(where));
    }
    // Rows added later and rows deleted, before and after optimize().
    for (const t of [indexed, plain]) {
      await t.add(rows(6000, 6500));
      await t.delete("id % 10 = 4");
    }
    for (const where of filters(11, 30)) {
      expect(await ids(indexed, where), where).toEqual(await ids(plain, where));
    }
    expect((await indexed.indexStats("id_idx")).numUnindexedRows).toBe(450);
    await indexed.optimize();
    expect((await indexed.indexStats("tags_idx")).numUnindexedRows).toBe(0);
    for (const where of filters(13, 30)) {
      expect(await ids(indexed, where), where).toEqual(await ids(plain, where));
    }
  });

  it("shows in plans which index served which part", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", rows(0, 40_000));
    await t.createIndex("id");
    await t.createIndex("tags");
    const plan = await t.query().where("id = 1234 AND price > 1").explainPlan(true);
    expect(plan).toContain("ScalarIndexQuery");
    expect(plan).toContain("index=id_idx");
    expect(plan).toContain("exact=false");
    const analyzed = await t.query().where("array_has(tags, 't3') AND id < 2000").analyzePlan();
    expect(analyzed).toContain("type=LABEL_LIST");
    expect(analyzed).toContain("parts_loaded=");
    // Not selective: scanned.
    expect(await t.query().where("id > 100").explainPlan()).not.toContain("ScalarIndexQuery");
    // Prefilter of a vector search through the index.
    const hits = await t.search([1, 2, 1]).where("id BETWEEN 100 AND 120").limit(5).toArray();
    expect(hits.every((h) => Number(h.id) >= 100 && Number(h.id) <= 120)).toBe(true);
    expect(hits).toHaveLength(5);
  });

  it("refuses columns an index cannot take, with the reason", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("t", rows(0, 100));
    await expect(t.createIndex("tags", { config: Index.btree() })).rejects.toThrow(InvalidArgumentError);
    await expect(t.createIndex("id", { config: Index.labelList() })).rejects.toThrow(/list columns/);
    await expect(t.createIndex("vector", { config: Index.bitmap() })).rejects.toThrow(/BITMAP/);
    await expect(t.createIndex("id", { config: {} as Index })).rejects.toThrow(InvalidArgumentError);
    await expect(connect("memory://", { scalarIndexMaxShare: 0 })).rejects.toThrow(InvalidArgumentError);
    await expect(connect("memory://", { scalarIndexMaxShare: 1.5 })).rejects.toThrow(/scalarIndexMaxShare/);
  });
});
