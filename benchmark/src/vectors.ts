// Vector datasets the index benchmarks (bench:graph, bench:rq) share: pydocs (real MiniLM
// embeddings with held-out queries, when ../shared/data has them) and two hard sets generated
// here deterministically — an anisotropic Gaussian mixture with heavy overlap and points
// uniform on the 384-d sphere — with exact ground truth, an Arrow table of each, and the
// one-query-at-a-time and 8-in-flight measurements.
import { readFileSync } from "node:fs";
import path from "node:path";
import { Field, FixedSizeList, Float32, Int32, makeData, RecordBatch, Schema, Struct, Table as ArrowTable } from "apache-arrow";
import { ensureDataset, loadColumns } from "./datasets.js";
import { quantile } from "./stats.js";

export const K = 10;

export interface Dataset {
  name: string;
  n: number;
  d: number;
  base: Float32Array;
  category: Int32Array;
  queries: Float32Array;
}

/** A deterministic generator (mulberry32) and standard normals from it. */
export function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(next() + 1e-12)) * Math.cos(2 * Math.PI * next());
  return { next, normal };
}

export function sphere(n: number, d: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    let norm = 0;
    for (let j = 0; j < d; j++) {
      const v = r.normal();
      out[i * d + j] = v;
      norm += v * v;
    }
    norm = Math.sqrt(norm);
    for (let j = 0; j < d; j++) out[i * d + j] /= norm;
  }
  return out;
}

/** An anisotropic Gaussian mixture with heavy overlap: 32 centres drawn close together, each
 * cluster stretched along its own random axis scales (0.05 to 2), rows assigned at random. */
export function mixture(n: number, d: number, seed: number): Float32Array {
  const out = new Float32Array(n * d);
  let at = 0;
  for (const chunk of mixtureChunks(n, d, seed, 65_536)) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** The rows of [`mixture`], the same values, in chunks of `chunk` rows (for tables larger
 * than one array should hold). */
export function* mixtureChunks(n: number, d: number, seed: number, chunk: number): Generator<Float32Array> {
  const r = rng(seed);
  const clusters = 32;
  const centres = Array.from({ length: clusters }, () => Float32Array.from({ length: d }, () => 0.5 * r.normal()));
  const scales = Array.from({ length: clusters }, () => Float32Array.from({ length: d }, () => 0.05 + 1.95 * r.next() ** 2));
  for (let start = 0; start < n; start += chunk) {
    const rows = Math.min(chunk, n - start);
    const out = new Float32Array(rows * d);
    for (let i = 0; i < rows; i++) {
      const c = Math.floor(r.next() * clusters);
      for (let j = 0; j < d; j++) out[i * d + j] = centres[c][j] + scales[c][j] * r.normal();
    }
    yield out;
  }
}

export function categories(n: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, () => Math.floor(r.next() * 100));
}

/** Exact top-k ids among rows `keep` admits, per query (squared l2). */
export function groundTruth(ds: Dataset, keep: (i: number) => boolean): number[][] {
  const { n, d, base, queries } = ds;
  const out: number[][] = [];
  for (let q = 0; q < queries.length / d; q++) {
    const best: { id: number; dist: number }[] = [];
    for (let i = 0; i < n; i++) {
      if (!keep(i)) continue;
      let s = 0;
      for (let j = 0; j < d; j++) {
        const t = queries[q * d + j] - base[i * d + j];
        s += t * t;
      }
      if (best.length < K || s < best[best.length - 1].dist) {
        best.push({ id: i, dist: s });
        best.sort((a, b) => a.dist - b.dist);
        if (best.length > K) best.pop();
      }
    }
    out.push(best.map((b) => b.id));
  }
  return out;
}

export function recall(found: number[][], truth: number[][]): number {
  let hits = 0;
  found.forEach((ids, q) => (hits += ids.filter((id) => truth[q].includes(id)).length));
  return hits / (truth.length * K);
}

export function arrowTable(ds: Dataset): ArrowTable {
  const item = new Field("item", new Float32(), true);
  const listType = new FixedSizeList(ds.d, item);
  const values = makeData({ type: new Float32(), length: ds.n * ds.d, data: ds.base });
  const vectors = makeData({ type: listType, length: ds.n, nullCount: 0, child: values });
  const ids = makeData({ type: new Int32(), length: ds.n, data: Int32Array.from({ length: ds.n }, (_, i) => i) });
  const cats = makeData({ type: new Int32(), length: ds.n, data: ds.category });
  const schema = new Schema([new Field("id", new Int32(), false), new Field("category", new Int32(), false), new Field("vector", listType, false)]);
  const struct = makeData({ type: new Struct(schema.fields), length: ds.n, nullCount: 0, children: [ids, cats, vectors] });
  return new ArrowTable([new RecordBatch(schema, struct)]);
}

export interface Point {
  setting: string;
  recall: number;
  p50: number;
}

/** One query at a time: ids found and the median latency. */
export async function run(search: (q: Float32Array) => Promise<number[]> | number[], ds: Dataset, truth: number[][], setting: string): Promise<Point> {
  const found: number[][] = [];
  const times: number[] = [];
  for (let q = -5; q < ds.queries.length / ds.d; q++) {
    const query = ds.queries.subarray(Math.max(q, 0) * ds.d, (Math.max(q, 0) + 1) * ds.d);
    const start = process.hrtime.bigint();
    const ids = await search(query);
    const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
    if (q >= 0) {
      found.push(ids);
      times.push(elapsed);
    }
  }
  times.sort((a, b) => a - b);
  return { setting, recall: recall(found, truth), p50: quantile(times, 0.5) };
}

export async function qps(search: (q: Float32Array) => Promise<unknown>, ds: Dataset): Promise<number> {
  const queries = ds.queries.length / ds.d;
  let next = 0;
  const start = process.hrtime.bigint();
  const worker = async () => {
    while (next < queries) {
      const q = next++;
      await search(ds.queries.subarray(q * ds.d, (q + 1) * ds.d));
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return queries / (Number(process.hrtime.bigint() - start) / 1e9);
}

/** pydocs (when present), the mixture and the sphere, `rows` rows each generated, `queries` queries each. */
export async function vectorDatasets(rows: number, queries: number): Promise<Dataset[]> {
  const [QUERIES, SPHERE_ROWS] = [queries, rows];
  const datasets: Dataset[] = [];
  const pydocs = await ensureDataset("pydocs", "medium");
  if (pydocs) {
    const c = loadColumns(pydocs);
    // The 1,000 held-out paragraphs of the set (not among the rows).
    // (12-byte header: magic, rows, columns; then f32 rows.)
    const held = readFileSync(path.join(pydocs.dir, "query.f32bin"));
    const queries = new Float32Array(held.buffer.slice(held.byteOffset + 12, held.byteOffset + 12 + QUERIES * c.d * 4));
    datasets.push({ name: `pydocs ${c.n}×${c.d} (real)`, n: c.n, d: c.d, base: c.vectors, category: categories(c.n, 5), queries });
  }
  const mixed = mixture(SPHERE_ROWS + QUERIES, 384, 7);
  datasets.push({
    name: `mixture ${SPHERE_ROWS}×384 (anisotropic, overlapping)`,
    n: SPHERE_ROWS,
    d: 384,
    base: mixed.subarray(0, SPHERE_ROWS * 384),
    category: categories(SPHERE_ROWS, 3),
    queries: mixed.subarray(SPHERE_ROWS * 384),
  });
  datasets.push({
    name: `sphere ${SPHERE_ROWS}×384 (uniform)`,
    n: SPHERE_ROWS,
    d: 384,
    base: sphere(SPHERE_ROWS, 384, 1),
    category: categories(SPHERE_ROWS, 2),
    queries: sphere(QUERIES, 384, 99),
  });
  return datasets;
}
