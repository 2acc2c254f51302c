// Query vectors and exact ground truth for the search workloads. The generator's and the real
// dataset's own ground truth is used where it matches the rows loaded; otherwise (fallback
// data, a row subset, the category filter of the real dataset) it is computed here by brute
// force in float64 once and kept beside the dataset.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Columns, DatasetInfo } from "./datasets.js";

/** Neighbours kept per query in ground-truth files. */
const GT_K = 100;

export interface QuerySet {
  count: number;
  d: number;
  vectors: Float32Array;
  /** `count × 100` row ids, nearest first (squared l2). */
  gt: Uint32Array;
  /** The same among rows with `category < 10`. */
  gtFiltered: Uint32Array;
}

function readU32Matrix(file: string): Uint32Array {
  const bytes = readFileSync(file);
  return new Uint32Array(bytes.buffer.slice(bytes.byteOffset + 12, bytes.byteOffset + bytes.byteLength));
}

function readF32Matrix(file: string): { rows: number; data: Float32Array } {
  const bytes = readFileSync(file);
  const rows = bytes.readUInt32LE(4);
  return { rows, data: new Float32Array(bytes.buffer.slice(bytes.byteOffset + 12, bytes.byteOffset + bytes.byteLength)) };
}

function writeU32Matrix(file: string, rows: number, cols: number, data: Uint32Array): void {
  const header = Buffer.alloc(12);
  header.writeUInt32LE(0x49323355, 0);
  header.writeUInt32LE(rows, 4);
  header.writeUInt32LE(cols, 8);
  writeFileSync(file, Buffer.concat([header, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

/** Exact top-100 (squared l2, float64 sums, ties by id) of each query among rows `keep` allows. */
function bruteForce(cols: Columns, queries: Float32Array, count: number, keep: (row: number) => boolean): Uint32Array {
  const d = cols.d;
  const out = new Uint32Array(count * GT_K);
  const rows: number[] = [];
  for (let r = 0; r < cols.n; r++) if (keep(r)) rows.push(r);
  const dist = new Float64Array(rows.length);
  const order = new Uint32Array(rows.length);
  for (let q = 0; q < count; q++) {
    const qo = q * d;
    for (let i = 0; i < rows.length; i++) {
      const o = rows[i] * d;
      let s = 0;
      for (let j = 0; j < d; j++) {
        const diff = cols.vectors[o + j] - queries[qo + j];
        s += diff * diff;
      }
      dist[i] = s;
      order[i] = i;
    }
    const top = Array.from(order).sort((a, b) => dist[a] - dist[b] || rows[a] - rows[b]).slice(0, GT_K);
    top.forEach((i, k) => (out[q * GT_K + k] = rows[i]));
  }
  return out;
}

/** Rows whose category is below 10 (the filtered searches' predicate). */
export const FILTER = "category < 10";

/** Up to `count` queries of the dataset with ground truth (computed and cached when missing). */
export function loadQueries(info: DatasetInfo, cols: Columns, count: number): QuerySet {
  const queryFile = path.join(info.dir, "query.f32bin");
  let vectors: Float32Array;
  let available: number;
  if (existsSync(queryFile)) {
    const m = readF32Matrix(queryFile);
    vectors = m.data;
    available = m.rows;
  } else {
    // Fallback data has no queries: perturbed copies of spread-out rows.
    available = Math.min(count, cols.n);
    vectors = new Float32Array(available * cols.d);
    for (let q = 0; q < available; q++) {
      const row = Math.floor((q * cols.n) / available);
      for (let j = 0; j < cols.d; j++) {
        vectors[q * cols.d + j] = cols.vectors[row * cols.d + j] * (1 + 0.01 * Math.sin(q + j));
      }
    }
  }
  const n = Math.min(count, available);
  const cached = (name: string, make: () => Uint32Array): Uint32Array => {
    const file = path.join(info.dir, name);
    if (existsSync(file)) {
      const gt = readU32Matrix(file);
      if (gt.length >= n * GT_K) return gt;
    }
    const gt = make();
    writeU32Matrix(file, n, GT_K, gt);
    return gt;
  };
  // The generator's files match the rows it wrote; the real dataset's only when all rows load.
  const gt = cached("gt.u32bin", () => bruteForce(cols, vectors, n, () => true));
  const gtFiltered = cached("gt_cat_lt10.u32bin", () => bruteForce(cols, vectors, n, (r) => cols.category[r] < 10));
  return { count: n, d: cols.d, vectors: vectors.subarray(0, n * cols.d), gt, gtFiltered };
}

/** Mean recall@k of `results` (ids per query) against `truth`. */
export function recallAt(k: number, results: number[][], truth: Uint32Array): number {
  let hits = 0;
  results.forEach((ids, q) => {
    const want = new Set(truth.subarray(q * GT_K, q * GT_K + k));
    hits += ids.slice(0, k).filter((id) => want.has(id)).length;
  });
  return hits / (results.length * k);
}
