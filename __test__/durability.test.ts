// Durability as an app sees it: the `durability` connect option, and a table whose newest
// versions are damaged (as a power cut leaves them) opening at its newest intact version,
// with a warning, `stats().skippedVersions`, and writes that carry on from there. (Power
// cuts themselves are simulated in the engine's tests: crates/quiver-engine/tests/power_loss.rs.)
import { mkdtempSync, readdirSync, rmSync, statSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { connect, CorruptionError, InvalidArgumentError, type Table } from "../lib/index.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "quiver-durable-"));
  dirs.push(dir);
  return dir;
}

const rows = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({ id: from + i, vector: [from + i, 1, 2, 3] }));

/** The most recently written file of a folder. */
function newest(folder: string): string {
  const files = readdirSync(folder).map((f) => join(folder, f));
  return files.reduce((a, b) => (statSync(a).mtimeMs >= statSync(b).mtimeMs ? a : b));
}

/** Collects process warnings of type QuiverRecoveryWarning while `body` runs. */
async function recoveryWarnings(body: () => Promise<void>): Promise<Error[]> {
  const seen: Error[] = [];
  const listener = (w: Error) => {
    if (w.name === "QuiverRecoveryWarning") seen.push(w);
  };
  process.on("warning", listener);
  try {
    await body();
    // Warnings are emitted on the next tick.
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off("warning", listener);
  }
  return seen;
}

describe("durability", () => {
  it("accepts full and process, and refuses anything else", async () => {
    for (const durability of ["full", "process"] as const) {
      const db = await connect(tempDir(), { durability, maintenance: false });
      const t = await db.createTable("t", rows(0, 10));
      await t.add(rows(10, 5));
      expect(await t.countRows()).toBe(15);
      db.close();
    }
    await expect(connect(tempDir(), { durability: "fsync" as never })).rejects.toThrow(InvalidArgumentError);
    await expect(connect(tempDir(), { durability: "fsync" as never })).rejects.toThrow(/"full" or "process"/);
  });

  it("opens at the newest intact version when the newest is damaged, and writes on from there", async () => {
    const dir = tempDir();
    const db = await connect(dir, { maintenance: false });
    const t = await db.createTable("t", rows(0, 10));
    await t.add(rows(10, 10)); // version 2
    await new Promise((r) => setTimeout(r, 20)); // distinct file times
    await t.add(rows(20, 10)); // version 3
    db.close();
    // Version 3's data file lost its tail, as a power cut before it reached the disk leaves it.
    const damaged = newest(join(dir, "t.quiver", "data"));
    truncateSync(damaged, Math.floor(statSync(damaged).size / 2));

    const again = await connect(dir, { maintenance: false });
    let table: Table | undefined;
    const warnings = await recoveryWarnings(async () => {
      table = await again.openTable("t");
    });
    expect(warnings).toHaveLength(1);
    expect(warnings[0].message).toMatch(/version 3/);
    if (!table) throw new Error("not opened");
    expect(await table.version()).toBe(2);
    expect(await table.countRows()).toBe(20);
    const stats = await table.stats();
    expect(stats.skippedVersions.map((s) => s.version)).toEqual([3]);
    expect(stats.skippedVersions[0].reason).toMatch(/bytes where/);
    // Reading the damaged version explicitly is a typed error.
    await expect(again.openTable("t", { version: 3 })).rejects.toThrow(CorruptionError);
    await expect(table.checkout(3)).rejects.toThrow(CorruptionError);
    await table.checkoutLatest();
    expect(await table.version()).toBe(2);
    // The next write builds on version 2 and numbers past the damaged one.
    const { version } = await table.add(rows(100, 1));
    expect(version).toBe(4);
    const fresh = await again.openTable("t");
    expect((await fresh.stats()).skippedVersions).toEqual([]);
    const ids = (await fresh.query().select(["id"]).toArray()).map((r) => Number(r.id)).sort((a, b) => a - b);
    expect(ids).toEqual([...Array.from({ length: 20 }, (_, i) => i), 100]);
    // Nothing valid was removed: version 1 and 2 still read.
    await fresh.checkout(1);
    expect(await fresh.countRows()).toBe(10);
    again.close();
  });

  it("opens when the newest manifest itself is torn", async () => {
    const dir = tempDir();
    const db = await connect(dir, { durability: "process", maintenance: false });
    const t = await db.createTable("t", rows(0, 5));
    await t.add(rows(5, 5));
    db.close();
    // Manifest names sort newest first.
    const versions = join(dir, "t.quiver", "_versions");
    const first = readdirSync(versions).sort()[0];
    truncateSync(join(versions, first), 10);
    const again = await connect(dir, { maintenance: false });
    const table = await again.openTable("t");
    expect(await table.version()).toBe(1);
    expect(await table.countRows()).toBe(5);
    expect((await table.stats()).skippedVersions[0].reason).toMatch(/corrupt|truncated|checksum/i);
    again.close();
  });
});
