// Streaming writes commit one version or nothing: an (async) iterable that throws part-way, a
// chunk the engine refuses, or a native writer dropped without finish() leave the table as it
// was, and the next write works.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { tableToIPC } from "apache-arrow";
import { type Connection, connect, QuiverError, SchemaMismatchError, type Table, TableNotFoundError } from "../dist/index.js";

const run = promisify(execFile);
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "quiver-writers-"));
  dirs.push(dir);
  return dir;
}

const rows = (count: number, start = 0) =>
  Array.from({ length: count }, (_, i) => ({ id: BigInt(start + i), vector: [i % 7, 1, 2, 3], text: `row ${start + i}` }));

/** 3 chunks of 4,000 rows, then a throw. */
async function* failingHalfway(error: Error, start = 1000) {
  for (let c = 0; c < 3; c++) {
    yield rows(4000, start + c * 4000);
    await new Promise((r) => setTimeout(r, 1));
  }
  throw error;
}

async function snapshot(table: Table) {
  await table.checkoutLatest();
  return { version: await table.version(), rows: await table.countRows(), versions: (await table.listVersions()).length };
}

for (const where of ["local", "memory"] as const) {
  describe(`streamed writes that fail part-way commit nothing (${where})`, () => {
    const open = async (): Promise<Connection> => connect(where === "local" ? tempDir() : "memory://");

    it("table.add(async iterable) that throws halfway", async () => {
      const db = await open();
      const table = await db.createTable("t", rows(10));
      await table.add(rows(5, 10));
      const before = await snapshot(table);
      const error = new Error("source failed");
      await expect(table.add(failingHalfway(error))).rejects.toBe(error);
      expect(await snapshot(table)).toEqual(before);
      // A fresh handle (and, locally, a fresh connection) sees the same.
      expect(await snapshot(await db.openTable("t"))).toEqual(before);
      expect(await table.add(rows(3, 100))).toEqual({ version: before.version + 1 });
      expect(await table.countRows()).toBe(before.rows + 3);
      const ids = (await table.query().select(["id"]).toArray()).map((r) => Number(r.id)).sort((a, b) => a - b);
      expect(ids).toEqual([...Array.from({ length: 15 }, (_, i) => i), 100, 101, 102]);
    });

    it("table.add(sync iterable) that throws halfway, and one that throws at once", async () => {
      const db = await open();
      const table = await db.createTable("t", rows(10));
      const before = await snapshot(table);
      const error = new Error("sync source failed");
      function* sync() {
        yield rows(100, 1000);
        yield rows(100, 2000);
        throw error;
      }
      await expect(table.add(sync())).rejects.toBe(error);
      async function* atOnce(): AsyncGenerator<ReturnType<typeof rows>> {
        throw error;
      }
      await expect(table.add(atOnce())).rejects.toBe(error);
      expect(await snapshot(table)).toEqual(before);
      expect(await table.add(rows(1, 50))).toEqual({ version: before.version + 1 });
    });

    it("createTable(async iterable) that throws halfway creates no table", async () => {
      const db = await open();
      await db.createTable("other", rows(1));
      const error = new Error("source failed");
      await expect(db.createTable("t", failingHalfway(error))).rejects.toBe(error);
      expect(await db.tableNames()).toEqual(["other"]);
      await expect(db.openTable("t")).rejects.toBeInstanceOf(TableNotFoundError);
      // The name is free: a later create works and starts at version 1.
      const table = await db.createTable("t", rows(7));
      expect(await snapshot(table)).toEqual({ version: 1, rows: 7, versions: 1 });
    });

    it("createTable(async iterable, { mode: 'overwrite' }) that throws halfway keeps the old table", async () => {
      const db = await open();
      const table = await db.createTable("t", rows(10));
      await table.add(rows(2, 10));
      const before = await snapshot(table);
      const error = new Error("source failed");
      await expect(db.createTable("t", failingHalfway(error), { mode: "overwrite" })).rejects.toBe(error);
      expect(await snapshot(table)).toEqual(before);
      await table.add(rows(1, 20));
      expect(await snapshot(table)).toEqual({ version: before.version + 1, rows: 13, versions: before.versions + 1 });
    });

    it("a chunk the engine refuses commits nothing and closes the source", async () => {
      const db = await open();
      const table = await db.createTable("t", rows(10));
      const before = await snapshot(table);
      let closed = false;
      async function* source() {
        try {
          yield rows(4000, 1000);
          yield [{ id: 1n, vector: [1, 2], text: "short vector" }];
          yield rows(10, 9000);
        } finally {
          closed = true;
        }
      }
      await expect(table.add(source())).rejects.toBeInstanceOf(SchemaMismatchError);
      expect(closed).toBe(true);
      expect(await snapshot(table)).toEqual(before);
      expect(await table.add(rows(1, 50))).toEqual({ version: before.version + 1 });
    });
  });
}

describe("streams of IPC bytes", () => {
  it("take IPC stream chunks (passed to the engine as they are) mixed with rows", async () => {
    const db = await connect("memory://");
    const table = await db.createTable("t", rows(2));
    const bytes = tableToIPC(await (await db.createTable("src", rows(3, 10))).toArrow(), "stream");
    async function* bytesThenRows() {
      yield bytes;
      yield rows(2, 20);
      yield bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    }
    expect(await table.add(bytesThenRows() as never)).toEqual({ version: 2 });
    expect(await table.countRows()).toBe(2 + 3 + 2 + 3);
    const created = await db.createTable("u", bytesThenRows() as never);
    expect(await created.countRows()).toBe(8);
    // Damaged bytes in the middle of a stream: nothing lands.
    async function* damaged() {
      yield rows(2, 30);
      yield bytes.slice(0, bytes.length - 20);
    }
    await expect(table.add(damaged() as never)).rejects.toBeInstanceOf(QuiverError);
    expect(await table.countRows()).toBe(10);
  });
});

describe("an abandoned native writer", () => {
  it("commits nothing when garbage-collected before finish() (child process, --expose-gc)", async () => {
    const dir = tempDir();
    const fixture = new URL("./fixtures/abandoned-writer.mjs", import.meta.url);
    const { stdout } = await run(process.execPath, ["--expose-gc", fixture.pathname, dir], { timeout: 60_000 });
    const r = JSON.parse(stdout.trim().split("\n").pop() ?? "{}");
    expect(r.before).toEqual({ rows: 1, version: 1 });
    // The writer really was collected, and its chunk of 5 rows never landed.
    expect(r.collected).toBe(true);
    expect(r.after).toEqual(r.before);
    // The next write is the next version; a finished writer (the control) does commit.
    expect(r.addedVersion).toBe(2);
    expect(r.later).toEqual({ rows: 2, version: 2 });
    expect(r.controlVersion).toBe(3);
    expect(r.final).toEqual({ rows: 4, version: 3 });
    // And after the process is gone, the table reads the same from here.
    const db = await connect(dir);
    const table = await db.openTable("t");
    expect(await table.countRows()).toBe(4);
    expect((await table.query().select(["id"]).toArray()).map((row) => Number(row.id)).sort((a, b) => a - b)).toEqual([
      0, 100, 200, 201,
    ]);
    db.close();
  });
});
