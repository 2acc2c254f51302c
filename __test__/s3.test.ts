// s3:// databases against a real S3 API (moto's server on loopback, started by
// support/s3-setup.ts), directly and through a proxy that injects faults.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  connect,
  Index,
  InvalidArgumentError,
  IoError,
  QuiverError,
  Session,
  UnsupportedStoreError,
  type Connection,
  type Table,
} from "../dist/index.js";
// @ts-expect-error: a plain ESM script without types
import { createBucket, s3Options, startProxy } from "../scripts/s3-server.mjs";

const run = promisify(execFile);
const appender = new URL("./fixtures/s3-appender.mjs", import.meta.url);
const endpoint = inject("s3Endpoint");
let bucketNo = 0;

/** A fresh bucket; returns its s3:// URI and the options to reach it through `via`. */
async function freshBucket(via: string = endpoint) {
  const bucket = `quiver-test-${process.pid}-${bucketNo++}`;
  await createBucket(endpoint, bucket);
  return { uri: `s3://${bucket}/db`, storageOptions: s3Options(via) as Record<string, string> };
}

function rows(from: number, n: number) {
  return Array.from({ length: n }, (_, i) => {
    const id = from + i;
    return { id, v: [Math.sin(id), Math.cos(id), id % 7, (id * 13) % 11], s: `row ${id} ${id % 2 ? "odd" : "even"}` };
  });
}

async function ids(table: Table, where?: string) {
  let q = table.query().select(["id"]);
  if (where) q = q.where(where);
  return (await q.toArray()).map((r) => Number(r.id)).sort((a, b) => a - b);
}

describe("s3:// databases", () => {
  let db: Connection;
  let uri: string;
  let storageOptions: Record<string, string>;
  beforeAll(async () => {
    ({ uri, storageOptions } = await freshBucket());
    db = await connect(uri, { storageOptions, maintenance: false });
  });
  afterAll(() => db.close());

  it("does every table operation", async () => {
    const t = await db.createTable("ops", rows(0, 300));
    expect(await db.tableNames()).toEqual(["ops"]);
    await t.add(rows(300, 100));
    expect(await t.countRows()).toBe(400);
    expect((await t.delete("id >= 390")).numDeletedRows).toBe(10);
    await t.update({ where: "id = 5", values: { s: "five" } });
    await t.mergeInsert("id").whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(rows(385, 10));
    expect(await ids(t, "id >= 380")).toEqual(Array.from({ length: 15 }, (_, i) => 380 + i));
    expect((await t.query().where("id = 5").select(["s"]).toArray())[0].s).toBe("five");

    await t.addColumns([{ name: "twice", valueSql: "id * 2" }]);
    await t.alterColumns([{ path: "twice", rename: "double" }]);
    await t.dropColumns(["double"]);
    expect(Object.keys((await t.query().limit(1).toArray())[0]).sort()).toEqual(["id", "s", "v"]);

    await t.createIndex("v", { config: Index.ivfFlat({ numPartitions: 4 }) });
    await t.createIndex("id");
    await t.createIndex("s", { config: Index.fts() });
    const near = await t.search([Math.sin(7), Math.cos(7), 0, 3]).limit(1).toArray();
    expect(Number(near[0].id)).toBe(7);
    expect(await ids(t, "id BETWEEN 10 AND 12")).toEqual([10, 11, 12]);
    const text = await t.search("five", "fts").select(["id"]).toArray();
    expect(text.map((r) => Number(r.id))).toEqual([5]);
    expect((await t.listIndices()).map((i) => i.indexType).sort()).toEqual(["BTREE", "FTS", "IVF_FLAT"]);

    const version = await t.version();
    await t.tags().create("before-delete", version);
    await t.delete("id < 100");
    expect(await t.countRows()).toBe(295);
    await t.checkout("before-delete");
    expect(await t.countRows()).toBe(395);
    await t.checkoutLatest();
    await t.restore(version);
    expect(await t.countRows()).toBe(395);
    expect((await t.tags().list())["before-delete"].version).toBe(version);

    await t.add(rows(1000, 5));
    await t.add(rows(1005, 5));
    const stats = await t.optimize({ cleanupOlderThan: new Date(Date.now() + 1000) });
    expect(stats.compaction.fragmentsRemoved).toBeGreaterThan(0);
    expect(await t.countRows()).toBe(405);
    expect(Number((await t.search([Math.sin(1003), Math.cos(1003), 1003 % 7, (1003 * 13) % 11]).limit(1).toArray())[0].id)).toBe(1003);

    // A second connection sees it all; dropping removes it.
    const other = await connect(uri, { storageOptions, maintenance: false });
    expect(await (await other.openTable("ops")).countRows()).toBe(405);
    other.close();
    await db.dropTable("ops");
    expect(await db.tableNames()).toEqual([]);
  });

  it("two processes committing to one table lose and duplicate nothing", async () => {
    await db.createTable("shared", rows(0, 1));
    const args = (start: number) => [appender.pathname, uri, JSON.stringify(storageOptions), String(start), "15"];
    const [a, b] = await Promise.all([run(process.execPath, args(1000)), run(process.execPath, args(2000))]);
    const appended = [...JSON.parse(a.stdout), ...JSON.parse(b.stdout)];
    expect(appended).toHaveLength(30);
    const t = await db.openTable("shared");
    const want = [0, ...Array.from({ length: 15 }, (_, i) => 1000 + i), ...Array.from({ length: 15 }, (_, i) => 2000 + i)];
    expect(await ids(t)).toEqual(want);
    expect((await t.listVersions()).length).toBe(31);
  });

  it("rejects unknown options, bad values and options for local databases", async () => {
    const bad = (options: Record<string, unknown>, target = uri) =>
      connect(target, { storageOptions: options as Record<string, string> });
    await expect(bad({ ...storageOptions, acessKeyId: "x" })).rejects.toThrow(InvalidArgumentError);
    await expect(bad({ ...storageOptions, acessKeyId: "x" })).rejects.toThrow(/accepted: region, endpoint, accessKeyId/);
    await expect(bad({ ...storageOptions, timeout: "soon" })).rejects.toThrow(/duration/);
    await expect(bad({ ...storageOptions, quiver_aimd_decrease_factor: 3 })).rejects.toThrow(/below 1/);
    await expect(bad({ region: { nested: true } })).rejects.toThrow(/storageOptions.region/);
    await expect(bad({ region: "eu-west-1" }, "memory://")).rejects.toThrow(/apply to s3:\/\/ databases/);
    await expect(connect("gs://bucket/x")).rejects.toThrow(/unsupported URI scheme 'gs:\/\/'/);
    // LanceDB's snake_case keys are accepted too.
    const lance = await connect(uri, {
      storageOptions: { aws_endpoint: endpoint, aws_access_key_id: "testing", aws_secret_access_key: "testing", aws_region: "us-east-1", allow_http: "true" },
    });
    expect(Array.isArray(await lance.tableNames())).toBe(true);
    lance.close();
  });
});

/** The longest chain of requests each sent after the one before it was answered. */
function sequentialRoundTrips(requests: { start: number; end: number }[]): number {
  const sorted = [...requests].sort((a, b) => a.start - b.start);
  const depth: number[] = [];
  sorted.forEach((r, i) => {
    depth.push(1 + Math.max(0, ...sorted.slice(0, i).map((q, j) => (q.end <= r.start ? depth[j] : 0))));
  });
  return Math.max(0, ...depth);
}

describe("s3:// round trips", () => {
  it.each([
    ["IVF_PQ", () => Index.ivfPq({ numPartitions: 8, numSubVectors: 2 })],
    ["the default index (IVF_RQ)", () => undefined],
  ])("with %s, a warm search sends no request; a cold one waits for three", async (_, config) => {
    const proxy = await startProxy(endpoint);
    try {
      const { uri, storageOptions } = await freshBucket(proxy.endpoint);
      const setup = await connect(uri, { storageOptions, maintenance: false });
      const t = await setup.createTable("t", rows(0, 3000));
      await t.createIndex("v", { config: config() });
      setup.close();
      const session = new Session();
      const db = await connect(uri, { storageOptions, maintenance: false, readConsistencyInterval: Infinity, session });
      const opened = proxy.counts.requests;
      const table = await db.openTable("t");
      expect(proxy.counts.requests - opened).toBe(2); // the versions' listing, the manifest
      const query = [Math.sin(42), Math.cos(42), 0, 9];
      const before = proxy.counts.requests;
      const timeline: { start: number; end: number }[] = [];
      proxy.faults.timeline = timeline;
      // S3-like latency: requests sent together overlap by far more than this process's
      // scheduling jitter under load (the proxy shares its event loop), so only requests that
      // waited for another's answer count as another round trip.
      proxy.faults.latencyMs = 40;
      const cold = await table.search(query).limit(3).toArray();
      proxy.faults.latencyMs = 0;
      proxy.faults.timeline = undefined;
      expect(proxy.counts.requests - before).toBeLessThanOrEqual(8);
      // Index open (both ends at once, beside the data files' footers), the probed
      // partitions, then the refine and the returned rows together.
      expect(sequentialRoundTrips(timeline)).toBeLessThanOrEqual(3);
      const warmStart = proxy.counts.requests;
      const warm = await table.search(query).limit(3).toArray();
      expect(proxy.counts.requests).toBe(warmStart);
      expect(warm.map((r) => r.id)).toEqual(cold.map((r) => r.id));
      expect(session.sizeBytes()).toBeGreaterThan(0);
      db.close();
    } finally {
      await proxy.close();
    }
  });
});

describe("s3:// through faults", () => {
  it("succeeds through throttling and dropped connections, and never shows half a version", async () => {
    const proxy = await startProxy(endpoint);
    try {
      const { uri, storageOptions } = await freshBucket(proxy.endpoint);
      const options = { ...storageOptions, maxRetries: "30", retryTimeout: "60" };
      const db = await connect(uri, { storageOptions: options, maintenance: false });
      const t = await db.createTable("t", rows(0, 50));
      proxy.faults.slowDown = 0.2;
      proxy.faults.reset = 0.05;
      let expected = 50;
      for (let i = 0; i < 12; i++) {
        try {
          if (i % 3 === 2) {
            expected -= (await t.delete(`id = ${i}`)).numDeletedRows;
          } else {
            await t.add(rows(1000 + i * 10, 10));
            expected += 10;
          }
        } catch (e) {
          // Only a typed, retryable error may come out; and then nothing changed.
          expect(e).toBeInstanceOf(QuiverError);
          expect((e as QuiverError).retryable).toBe(true);
        }
        expect(await t.countRows()).toBe(expected);
      }
      for (let q = 0; q < 40; q++) {
        const hit = await t.search([Math.sin(1005), Math.cos(1005), 1005 % 7, (1005 * 13) % 11]).limit(1).toArray();
        expect(Number(hit[0].id)).toBe(1005);
      }
      expect(proxy.counts.slowDowns).toBeGreaterThan(0);
      expect(proxy.counts.resets).toBeGreaterThan(0);
      // Every version in the history opens whole.
      proxy.faults.slowDown = 0;
      proxy.faults.reset = 0;
      for (const v of await t.listVersions()) {
        const old = await db.openTable("t", { version: v.version });
        expect(await old.countRows()).toBeGreaterThan(0);
      }
      db.close();
    } finally {
      await proxy.close();
    }
  });

  it("a request that keeps failing ends in a retryable IoError", async () => {
    const proxy = await startProxy(endpoint);
    try {
      const { uri, storageOptions } = await freshBucket(proxy.endpoint);
      const db = await connect(uri, { storageOptions: { ...storageOptions, maxRetries: "2" }, maintenance: false });
      const t = await db.createTable("t", rows(0, 5));
      proxy.faults.slowDown = 1;
      const err = await t.add(rows(5, 5)).then(
        () => null,
        (e) => e,
      );
      expect(err).toBeInstanceOf(IoError);
      expect(err.retryable).toBe(true);
      proxy.faults.slowDown = 0;
      expect(await t.countRows()).toBe(5);
      db.close();
    } finally {
      await proxy.close();
    }
  });

  it("a store that ignores If-None-Match is refused before the first commit", async () => {
    const proxy = await startProxy(endpoint, { stripConditional: true });
    try {
      const { uri, storageOptions } = await freshBucket(proxy.endpoint);
      const db = await connect(uri, { storageOptions, maintenance: false });
      const err = await db.createTable("t", rows(0, 5)).then(
        () => null,
        (e) => e,
      );
      expect(err).toBeInstanceOf(UnsupportedStoreError);
      expect(String(err.message)).toMatch(/does not honour conditional writes/);
      expect(await db.tableNames()).toEqual([]);
      db.close();
    } finally {
      await proxy.close();
    }
  });
});

