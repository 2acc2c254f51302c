// Vector indexes through the Node API, on clustered vectors from ../shared/data/gen-vectors.mjs.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, Index, type IndexProgress, InvalidArgumentError, NotFoundError, type Table } from "../lib/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const generator = join(here, "../../shared/data/gen-vectors.mjs");
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "quiver-index-"));
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const N = 20_000;
const D = 64;
let base: Float32Array;
let queries: Float32Array;
let gt: Uint32Array;
let gtFiltered: Uint32Array;
let category: Int32Array;

function matrix(file: string): { rows: number; cols: number; data: ArrayBuffer } {
  const bytes = readFileSync(file);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const rows = view.getUint32(4, true);
  const cols = view.getUint32(8, true);
  return { rows, cols, data: bytes.buffer.slice(bytes.byteOffset + 12, bytes.byteOffset + bytes.byteLength) };
}

beforeAll(() => {
  expect(existsSync(generator), `${generator} is needed to generate the test vectors`).toBe(true);
  const out = join(tempDir(), "data");
  // The generator runs only when started by its real path (it compares the two).
  execFileSync(process.execPath, [realpathSync(generator), "--n", String(N), "--d", String(D), "--q", "200", "--out", out], {
    stdio: "ignore",
  });
  expect(existsSync(join(out, "manifest.json")), "gen-vectors.mjs wrote nothing").toBe(true);
  base = new Float32Array(matrix(join(out, "base.f32bin")).data);
  queries = new Float32Array(matrix(join(out, "query.f32bin")).data);
  gt = new Uint32Array(matrix(join(out, "gt.u32bin")).data);
  gtFiltered = new Uint32Array(matrix(join(out, "gt_cat_lt10.u32bin")).data);
  category = new Int32Array(matrix(join(out, "category.i32bin")).data);
}, 60_000);

function rows(from: number, to: number) {
  return Array.from({ length: to - from }, (_, j) => {
    const i = from + j;
    return { id: BigInt(i), vector: Array.from(base.subarray(i * D, (i + 1) * D)), category: category[i] };
  });
}

function query(q: number): Float32Array {
  return queries.subarray(q * D, (q + 1) * D);
}

async function recall(table: Table, truth: Uint32Array, where?: string, queriesRun = 100): Promise<number> {
  let hits = 0;
  for (let q = 0; q < queriesRun; q++) {
    let search = table.search(query(q)).limit(10);
    if (where) search = search.where(where);
    const got = await search.toArray();
    expect(got).toHaveLength(10);
    const want = new Set(Array.from(truth.subarray(q * 100, q * 100 + 10), (v) => BigInt(v)));
    hits += got.filter((r) => want.has(r.id as bigint)).length;
  }
  return hits / (queriesRun * 10);
}

describe("vector indexes", () => {
  it("builds IVF_PQ with progress, searches with good recall, prefilters, and reports stats", async () => {
    const dir = join(tempDir(), "db");
    const db = await connect(dir);
    const table = await db.createTable("vecs", rows(0, N));
    const seen: IndexProgress[] = [];
    const stats = await table.createIndex("vector", {
      config: Index.ivfPq({ distanceType: "l2" }),
      progress: (p) => seen.push(p),
    });
    expect(stats).toMatchObject({
      name: "vector_idx",
      indexType: "IVF_PQ",
      columns: ["vector"],
      distanceType: "l2",
      numPartitions: Math.round(Math.sqrt(N)),
      numSubVectors: D / 8,
      numBits: 8,
      numIndexedRows: N,
      numUnindexedRows: 0,
    });
    // Progress arrives through the event loop: let queued calls run.
    await new Promise((r) => setTimeout(r, 50));
    for (const phase of ["sample", "kmeans", "pq", "encode", "write"]) {
      const of = seen.filter((p) => p.phase === phase);
      expect(of.length, phase).toBeGreaterThan(0);
      expect(of.at(-1)!.done).toBe(of.at(-1)!.total);
    }
    expect(await table.listIndices()).toEqual([stats]);
    expect(await table.indexStats("vector_idx")).toEqual(stats);

    expect(await recall(table, gt)).toBeGreaterThanOrEqual(0.9);
    expect(await recall(table, gtFiltered, "category < 10")).toBeGreaterThanOrEqual(0.9);
    const plan = await table.search(query(0)).nprobes(32).refineFactor(10).explainPlan();
    expect(plan).toContain("IndexSearch vecs: index=vector_idx (IVF_PQ, l2)");
    expect(plan).toContain("nprobes=32 refineFactor=10");
    const analyzed = await table.search(query(0)).nprobes(32).refineFactor(10).analyzePlan();
    expect(analyzed).toMatch(/Metrics: rows=10 .* index=vector_idx partitions_probed=32 exact_rows=100/);

    // Exact search stays available and matches the ground truth.
    const exact = await table.search(query(3)).bypassVectorIndex().limit(10).toArray();
    expect(exact.map((r) => r.id)).toEqual(Array.from(gt.subarray(300, 310), (v) => BigInt(v)));
    expect(await table.search(query(3)).bypassVectorIndex().explainPlan()).toContain("index bypassed");
    expect(await table.search(query(3)).bypassVectorIndex().analyzePlan()).toContain(`index=none partitions_probed=0 exact_rows=${N}`);

    // Appended rows are found at once; optimize indexes them without retraining.
    const fresh = { id: 999_999n, vector: Array.from(query(7)), category: 1 };
    await table.add([fresh]);
    expect((await table.indexStats("vector_idx")).numUnindexedRows).toBe(1);
    const hit = await table.search(query(7)).limit(1).toArray();
    expect(hit[0].id).toBe(999_999n);
    expect(hit[0]._distance).toBeCloseTo(0, 5);
    await table.delete("id = 999999");
    expect((await table.search(query(7)).limit(1).toArray())[0].id).not.toBe(999_999n);
    await table.add([fresh]);
    const optimized = await table.optimize();
    expect(optimized).toMatchObject({ indexesOptimized: 1, rowsAdded: 1 });
    expect((await table.indexStats("vector_idx")).numUnindexedRows).toBe(0);
    expect((await table.search(query(7)).limit(1).toArray())[0].id).toBe(999_999n);

    // A new connection (empty caches) finds and uses the index.
    const reopened = await (await connect(dir)).openTable("vecs");
    expect((await reopened.listIndices()).map((i) => i.name)).toEqual(["vector_idx"]);
    expect(await recall(reopened, gt, undefined, 20)).toBeGreaterThanOrEqual(0.9);

    await table.dropIndex("vector_idx");
    expect(await table.listIndices()).toEqual([]);
    await expect(table.indexStats("vector_idx")).rejects.toBeInstanceOf(NotFoundError);
    await expect(table.dropIndex("vector_idx")).rejects.toBeInstanceOf(NotFoundError);
    expect(await table.search(query(0)).explainPlan()).toContain("(no vector index)");
  }, 120_000);

  it("builds IVF_FLAT for cosine and takes the index's distance type", async () => {
    const db = await connect("memory://");
    const table = await db.createTable("flat", rows(0, 5_000));
    const stats = await table.createIndex("vector", { config: Index.ivfFlat({ distanceType: "cosine", numPartitions: 16 }) });
    expect(stats).toMatchObject({ indexType: "IVF_FLAT", distanceType: "cosine", numPartitions: 16, numSubVectors: 0 });
    const viaIndex = await table.search(query(1)).nprobes(16).limit(5).toArray();
    const exact = await table.search(query(1)).distanceType("cosine").bypassVectorIndex().limit(5).toArray();
    expect(viaIndex.map((r) => r.id)).toEqual(exact.map((r) => r.id));
    expect(viaIndex[0]._distance).toBeCloseTo(exact[0]._distance as number, 5);
    // Another distance type than the index's searches exactly.
    expect(await table.search(query(1)).distanceType("l2").explainPlan()).toContain("another distance type");
    // replace: false refuses to rebuild; the default replaces.
    await expect(table.createIndex("vector", { replace: false })).rejects.toBeInstanceOf(InvalidArgumentError);
    expect((await table.createIndex("vector", { name: "v2" })).indexType).toBe("IVF_PQ");
    expect((await table.listIndices()).map((i) => i.name)).toEqual(["v2"]);
  }, 60_000);

  it("rejects bad configurations with typed errors", async () => {
    const db = await connect("memory://");
    const table = await db.createTable("bad", rows(0, 300));
    expect(() => Index.ivfPq({ numPartitions: 0 })).toThrow(InvalidArgumentError);
    expect(() => Index.ivfPq({ distanceType: "manhattan" as never })).toThrow(InvalidArgumentError);
    await expect(table.createIndex("vector", { config: Index.ivfPq({ numBits: 4 }) })).rejects.toThrow(/numBits/);
    await expect(table.createIndex("vector", { config: Index.ivfPq({ numSubVectors: 7 }) })).rejects.toThrow(/numSubVectors/);
    await expect(table.createIndex("vector", { config: Index.ivfPq({ distanceType: "hamming" }) })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
    await expect(table.createIndex("id")).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(table.createIndex("nope")).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(table.createIndex("vector", { config: {} as never })).rejects.toBeInstanceOf(InvalidArgumentError);
    // A throwing progress callback does not break the build.
    const stats = await table.createIndex("vector", {
      progress: () => {
        throw new Error("callback bug");
      },
    });
    expect(stats.numIndexedRows).toBe(300);
    const empty = await db.createEmptyTable("empty", (await table.schema()));
    await expect(empty.createIndex("vector")).rejects.toThrow(/no rows/);
  }, 60_000);
});
