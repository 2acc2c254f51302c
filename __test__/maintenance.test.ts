// Tables that live for years, as a Node app uses them: optimize(), compactFiles() and
// cleanupOldVersions() with their result shapes and progress, stats() advice, tags surviving
// cleanup, indexes surviving compaction, and automatic maintenance on a connection.
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { connect, Index, InvalidArgumentError, type MaintenanceEvent, NotFoundError, type Table } from "../lib/index.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "quiver-maint-"));
  dirs.push(dir);
  return dir;
}

function diskBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += statSync(join(entry.parentPath, entry.name)).size;
  }
  return total;
}

const DIM = 16;
function vector(i: number): number[] {
  return Array.from({ length: DIM }, (_, j) => Math.sin(i * 0.37 + j * 1.3));
}
function row(i: number) {
  return { id: BigInt(i), vector: vector(i), text: `note ${i}` };
}

/** 200 rows, then `singles` one-row adds and every tenth of them updated. */
async function fedTable(db: Awaited<ReturnType<typeof connect>>, singles: number): Promise<Table> {
  const t = await db.createTable(
    "notes",
    Array.from({ length: 200 }, (_, i) => row(i)),
  );
  for (let i = 0; i < singles; i++) {
    await t.add([row(1000 + i)]);
    if (i % 10 === 0) await t.update({ where: `id = ${1000 + i}`, valuesSql: { text: "'edited'" } });
  }
  return t;
}

async function ids(t: Table): Promise<bigint[]> {
  return (await t.query().select(["id"]).toArray()).map((r) => r.id as bigint);
}

describe("optimize, compaction and cleanup", () => {
  it("shrink a table fed one row at a time back to its bulk-loaded shape", async () => {
    const dir = tempDir();
    const db = await connect(dir, { maintenance: false });
    const t = await fedTable(db, 120);
    const before = await ids(t);
    const stats = await t.stats();
    expect(stats.numFragments).toBeGreaterThan(100);
    expect(stats.fragmentStats.sizeClasses.tiny).toBe(stats.numFragments);
    expect(stats.maintenance.advised).toBe(true);
    expect(stats.maintenance.reasons.join(" ")).toMatch(/compaction would merge/);
    expect(stats.maintenance.automatic).toBeNull();
    expect(stats.numVersions).toBe(await t.version());

    const phases = new Set<string>();
    const result = await t.optimize({ cleanupOlderThan: new Date(Date.now() + 1000), progress: (p) => phases.add(p.phase) });
    expect(result.compaction.fragmentsAdded).toBe(1);
    expect(result.compaction.fragmentsRemoved).toBe(stats.numFragments);
    expect(result.compaction.filesRemoved).toBeGreaterThanOrEqual(stats.numFragments);
    expect(result.compaction.filesAdded).toBe(1);
    expect(result.prune.oldVersionsRemoved).toBe(stats.numVersions);
    expect(result.prune.bytesRemoved).toBeGreaterThan(0);
    expect(result.indexes).toMatchObject({ indexesOptimized: 0 });
    expect(result.version).toBe(await t.version());
    expect([...phases]).toEqual(expect.arrayContaining(["rewrite", "commit", "read_versions", "delete"]));

    expect(await ids(t)).toEqual(before);
    expect(await t.countRows("text = 'edited'")).toBe(12);
    const after = await t.stats();
    expect(after.numFragments).toBe(1);
    expect(after.numVersions).toBe(1);
    expect(after.maintenance.advised).toBe(false);
    expect((await t.listVersions()).map((v) => v.operation)).toEqual(["compact"]);

    // The same rows bulk-loaded take about the same disk.
    const fresh = await connect(tempDir(), { maintenance: false });
    const bulk = await fresh.createTable("notes", await t.query().toArray());
    expect(await bulk.countRows()).toBe(await t.countRows());
    expect(diskBytes(join(dir, "notes.quiver"))).toBeLessThan(1.2 * diskBytes(join(fresh.uri, "notes.quiver")));
  }, 60_000);

  it("run as separate steps, keep tagged versions, and check their arguments", async () => {
    const db = await connect(tempDir(), { maintenance: false });
    const t = await fedTable(db, 30);
    await t.tags().create("release", 10);
    const old = await db.openTable("notes");
    await old.checkout(10);
    const tagged = await ids(old);

    // The 200-row fragment is at the target already; the 30 one-row ones merge.
    const compaction = await t.compactFiles({ targetRowsPerFragment: 100 });
    expect(compaction.fragmentsAdded).toBe(1);
    expect((await t.stats()).numFragments).toBe(2);
    expect(compaction.rowsRewritten).toBe(30);

    const kept = await t.cleanupOldVersions();
    expect(kept).toEqual({ bytesRemoved: 0, oldVersionsRemoved: 0, filesRemoved: 0 });
    const removed = await t.cleanupOldVersions({ olderThan: new Date(Date.now() + 1000) });
    expect(removed.oldVersionsRemoved).toBeGreaterThan(30);
    const versions = (await t.listVersions()).map((v) => v.version);
    expect(versions).toEqual([10, await t.version()]);
    await t.checkout("release");
    expect(await ids(t)).toEqual(tagged);
    await t.checkoutLatest();

    await expect(t.compactFiles({ targetRowsPerFragment: 0 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(t.compactFiles({ materializeDeletionsThreshold: 2 })).rejects.toBeInstanceOf(InvalidArgumentError);
    // @ts-expect-error a date is required
    await expect(t.cleanupOldVersions({ olderThan: "yesterday" })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(t.optimize({ cleanupOlderThan: new Date(Number.NaN) })).rejects.toBeInstanceOf(InvalidArgumentError);
    // @ts-expect-error a boolean is required
    await expect(t.cleanupOldVersions({ deleteUnverified: "yes" })).rejects.toBeInstanceOf(InvalidArgumentError);
  }, 60_000);

  it("leave a reader of a removed version a NotFoundError until it checks out the latest", async () => {
    // A store shared by two connections, where a removed file is gone at once.
    const uri = "memory://maintenance-readers";
    const db = await connect(uri, { maintenance: false });
    const t = await fedTable(db, 5);
    const reader = await (await connect(uri, { maintenance: false })).openTable("notes");
    await reader.checkout(3);
    expect(await reader.countRows()).toBe(201);
    await t.optimize({ cleanupOlderThan: new Date(Date.now() + 1000) });
    expect((await t.listVersions()).length).toBe(1);
    await expect(reader.query().toArray()).rejects.toBeInstanceOf(NotFoundError);
    await expect(reader.query().toArray()).rejects.toThrow(/checkout_latest|cleanup/);
    await reader.checkoutLatest();
    expect(await reader.countRows()).toBe(205);
  }, 60_000);

  it("keep a vector index answering exactly through compaction, without a rebuild", async () => {
    const db = await connect(tempDir(), { maintenance: false });
    const t = await fedTable(db, 0);
    await t.createIndex("vector", { config: Index.ivfFlat({ numPartitions: 4 }) });
    for (let i = 0; i < 40; i++) await t.add([row(5000 + i)]);
    await t.delete("id % 7 = 0");
    await t.compactFiles({ materializeDeletionsThreshold: 0.01 });
    const [index] = await t.listIndices();
    expect(index.numIndexedRows + index.numUnindexedRows).toBe(await t.countRows());
    for (const probe of [3, 150, 5003, 5039]) {
      const q = vector(probe).map((v) => v + 0.01);
      const viaIndex = await t.search(q).nprobes(4).limit(5).toArray();
      const exact = await t.search(q).bypassVectorIndex().limit(5).toArray();
      expect(viaIndex.map((r) => r.id)).toEqual(exact.map((r) => r.id));
    }
    const optimized = await t.optimize();
    expect(optimized.indexes.rowsAdded).toBeGreaterThan(0);
    expect((await t.listIndices())[0].numUnindexedRows).toBe(0);
  }, 60_000);
});

describe("automatic maintenance", () => {
  it("compacts and cleans up in the background while a connection writes, and stops on close", async () => {
    const events: MaintenanceEvent[] = [];
    const db = await connect(tempDir(), {
      maintenance: { quietSeconds: 0.05, maxDelaySeconds: 0.3, retentionSeconds: 0, onEvent: (e) => events.push(e) },
    });
    const t = await fedTable(db, 150);
    const before = await ids(t);
    const settle = async () => {
      for (let i = 0; i < 300; i++) {
        await new Promise((r) => setTimeout(r, 20));
        const s = await t.stats();
        if (s.maintenance.automatic && !s.maintenance.automatic.active) return s;
      }
      throw new Error("maintenance never settled");
    };
    const settled = await settle();
    expect(settled.numFragments).toBeLessThanOrEqual(2);
    expect(settled.numVersions).toBeLessThanOrEqual(3);
    expect(settled.maintenance.automatic?.compactions).toBeGreaterThanOrEqual(1);
    expect(settled.maintenance.automatic?.errors).toBe(0);
    expect(settled.maintenance.automatic?.lastRun).toBeInstanceOf(Date);
    expect(await ids(t)).toEqual(before);
    const kinds = new Set(events.map((e) => e.kind));
    expect(kinds).toContain("compaction");
    expect(kinds).toContain("cleanup");
    expect(events.find((e) => e.kind === "compaction")?.compaction?.fragmentsRemoved).toBeGreaterThan(1);

    // Per table: off for this one.
    t.setMaintenance(false);
    for (let i = 0; i < 5; i++) await t.add([row(9000 + i)]);
    await new Promise((r) => setTimeout(r, 200));
    expect((await t.stats()).numFragments).toBeGreaterThanOrEqual(5);
    t.setMaintenance(null);
    await t.add([row(9100)]);
    const again = await settle();
    expect(again.numFragments).toBeLessThanOrEqual(2);

    const rounds = again.maintenance.automatic?.rounds;
    db.close();
    const reopened = await connect(db.uri, { maintenance: false });
    const other = await reopened.openTable("notes");
    for (let i = 0; i < 5; i++) await other.add([row(9200 + i)]);
    await new Promise((r) => setTimeout(r, 200));
    expect((await other.stats()).numFragments).toBeGreaterThanOrEqual(5);
    expect(events.filter((e) => e.kind === "error")).toEqual([]);
    expect(rounds).toBeGreaterThan(0);
  }, 60_000);

  it("rejects bad settings", async () => {
    const dir = tempDir();
    await expect(connect(dir, { maintenance: { smallFragments: 1 } })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(connect(dir, { maintenance: { deletedShare: 0 } })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(connect(dir, { maintenance: { retentionSeconds: -1 } })).rejects.toBeInstanceOf(InvalidArgumentError);
    // @ts-expect-error a function is required
    await expect(connect(dir, { maintenance: { onEvent: 3 } })).rejects.toBeInstanceOf(InvalidArgumentError);
    const db = await connect(dir);
    const t = await db.createTable("t", [{ id: 1n }]);
    expect(() => t.setMaintenance({ targetRowsPerFragment: 0 })).toThrow(InvalidArgumentError);
  });
});
