// Benchmark datasets, generated or copied into benchmark/.data on first use:
// - "clustered": the project's deterministic clustered-vector generator
//   (../shared/data/gen-vectors.mjs, or QUIVER_SHARED_DATA/gen-vectors.mjs), with exact ground
//   truth; where that generator is not present (a bare clone), a built-in deterministic
//   Gaussian-cluster generator of the same layout stands in, marked "builtin" in every result.
// - "pydocs": 39,454 real MiniLM embeddings (384-d) of the Python docs with exact ground truth,
//   copied from ../shared/data/pydocs-minilm-384 (float16 decoded to float32).
// Both end up in one layout: base.f32bin, category.i32bin, price.f64bin, text.txt (+ ground
// truth files where the source has them) and info.json.
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import { repoRoot } from "./env.js";
import { Progress } from "./progress.js";

const run = promisify(execFile);
export const dataRoot = path.join(repoRoot, "benchmark", ".data");

export type Size = "small" | "medium" | "full";
export const SIZES: Record<Size, { clustered: { n: number; d: number }; pydocsRows: number | null }> = {
  small: { clustered: { n: 5_000, d: 128 }, pydocsRows: 5_000 },
  medium: { clustered: { n: 100_000, d: 768 }, pydocsRows: null },
  full: { clustered: { n: 1_000_000, d: 768 }, pydocsRows: null },
};

export interface DatasetInfo {
  name: "clustered" | "pydocs";
  /** Where the data came from: "gen-vectors.mjs", "builtin" or "pydocs-minilm-384". */
  source: string;
  n: number;
  d: number;
  dir: string;
}

const MAGIC = { F32V: 0x56323346, I32C: 0x43323349, F64C: 0x43343646 };

function sharedDataDir(): string {
  return process.env.QUIVER_SHARED_DATA ?? path.join(repoRoot, "..", "shared", "data");
}

function readMatrix<T extends Float32Array | Int32Array | Float64Array>(
  file: string,
  magic: number,
  Ctor: { new (buffer: ArrayBuffer): T; BYTES_PER_ELEMENT: number },
): { rows: number; cols: number; data: T } {
  const bytes = readFileSync(file);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== magic) throw new Error(`${file}: unexpected magic number`);
  const rows = view.getUint32(4, true);
  const cols = view.getUint32(8, true);
  // Copy: the payload starts at byte 12, which is not aligned for 8-byte elements.
  const payload = bytes.buffer.slice(bytes.byteOffset + 12, bytes.byteOffset + 12 + rows * cols * Ctor.BYTES_PER_ELEMENT);
  return { rows, cols, data: new Ctor(payload) };
}

function writeMatrix(file: string, magic: number, rows: number, cols: number, data: ArrayBufferView): void {
  const header = Buffer.alloc(12);
  header.writeUInt32LE(magic, 0);
  header.writeUInt32LE(rows, 4);
  header.writeUInt32LE(cols, 8);
  writeFileSync(file, Buffer.concat([header, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

/** xoshiro128**, seeded by splitmix32: a small deterministic generator for the fallback data. */
class Rng {
  private s = new Uint32Array(4);
  private spare = Number.NaN;
  constructor(seed: number) {
    let a = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      a = (a + 0x9e3779b9) | 0;
      let z = a;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }
  u32(): number {
    const s = this.s;
    const result = Math.imul(((Math.imul(s[1], 5) << 7) | (Math.imul(s[1], 5) >>> 25)) >>> 0, 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 11) | (s[3] >>> 21);
    return result;
  }
  uniform(): number {
    return (this.u32() + 0.5) / 4294967296;
  }
  normal(): number {
    if (!Number.isNaN(this.spare)) {
      const v = this.spare;
      this.spare = Number.NaN;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const theta = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  }
}

function builtinClustered(dir: string, n: number, d: number): void {
  const rng = new Rng(42);
  const clusters = Math.max(1, Math.min(1000, Math.floor(n / 50)));
  const centres = new Float32Array(clusters * d);
  for (let i = 0; i < centres.length; i++) centres[i] = rng.normal() / Math.sqrt(d);
  const base = new Float32Array(n * d);
  const category = new Int32Array(n);
  const price = new Float64Array(n);
  const words = Array.from({ length: 500 }, (_, i) => `w${i.toString(36)}`);
  const text: string[] = new Array(n);
  const progress = new Progress(`generating builtin clustered n=${n} d=${d}`, n);
  for (let r = 0; r < n; r++) {
    const c = rng.u32() % clusters;
    for (let j = 0; j < d; j++) base[r * d + j] = centres[c * d + j] + (0.3 * rng.normal()) / Math.sqrt(d);
    category[r] = rng.u32() % 100;
    price[r] = Math.round(rng.uniform() * 100_000) / 100;
    text[r] = Array.from({ length: 8 }, () => words[rng.u32() % words.length]).join(" ");
    if (r % 1000 === 0) progress.update(r);
  }
  writeMatrix(path.join(dir, "base.f32bin"), MAGIC.F32V, n, d, base);
  writeMatrix(path.join(dir, "category.i32bin"), MAGIC.I32C, n, 1, category);
  writeMatrix(path.join(dir, "price.f64bin"), MAGIC.F64C, n, 1, price);
  writeFileSync(path.join(dir, "text.txt"), text.join("\n") + "\n");
  progress.finish();
}

async function makeClustered(dir: string, n: number, d: number): Promise<string> {
  const generator = path.join(sharedDataDir(), "gen-vectors.mjs");
  if (!existsSync(generator)) {
    builtinClustered(dir, n, d);
    return "builtin";
  }
  const progress = new Progress(`generating clustered n=${n} d=${d} (gen-vectors.mjs, with ground truth)`, 1);
  // The generator runs only when started by its real path (it compares the two).
  await run(process.execPath, [realpathSync(generator), "--n", String(n), "--d", String(d), "--out", dir], {
    maxBuffer: 64 * 1024 * 1024,
  });
  progress.finish();
  return "gen-vectors.mjs";
}

export function decodeHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

function makePydocs(dir: string, rows: number | null): { n: number; d: number } | null {
  const src = path.join(sharedDataDir(), "pydocs-minilm-384");
  if (!existsSync(path.join(src, "base.f16"))) return null;
  const bytes = readFileSync(path.join(src, "base.f16"));
  const total = bytes.readUInt32LE(4);
  const d = bytes.readUInt32LE(8);
  const n = rows === null ? total : Math.min(rows, total);
  const base = new Float32Array(n * d);
  const progress = new Progress(`copying pydocs-minilm-384 (${n} rows, float16 → float32)`, n);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < d; j++) base[r * d + j] = decodeHalf(bytes.readUInt16LE(12 + 2 * (r * d + j)));
    if (r % 2000 === 0) progress.update(r);
  }
  const texts = gunzipSync(readFileSync(path.join(src, "texts.jsonl.gz")))
    .toString("utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .slice(0, n)
    .map((l) => JSON.parse(l) as string);
  // The real dataset has no category or price: derive deterministic ones so filters have work.
  const category = Int32Array.from({ length: n }, (_, i) => Math.imul(i + 1, 2654435761) >>> 0).map((h) => h % 100);
  const price = Float64Array.from({ length: n }, (_, i) => ((Math.imul(i + 7, 40503) >>> 0) % 100_000) / 100);
  writeMatrix(path.join(dir, "base.f32bin"), MAGIC.F32V, n, d, base);
  writeMatrix(path.join(dir, "category.i32bin"), MAGIC.I32C, n, 1, category);
  writeMatrix(path.join(dir, "price.f64bin"), MAGIC.F64C, n, 1, price);
  writeFileSync(path.join(dir, "text.txt"), texts.map((t) => t.replace(/\n/g, " ")).join("\n") + "\n");
  // Same header layout as the generator's files; its l2 ground truth holds for all rows only.
  copyFileSync(path.join(src, "queries.f32"), path.join(dir, "query.f32bin"));
  if (n === total) copyFileSync(path.join(src, "gt.u32"), path.join(dir, "gt.u32bin"));
  progress.finish();
  return { n, d };
}

/** The dataset for `size`, generated or copied on first use; null when its source is absent. */
export async function ensureDataset(name: DatasetInfo["name"], size: Size): Promise<DatasetInfo | null> {
  const spec = SIZES[size];
  const key = name === "clustered" ? `clustered-n${spec.clustered.n}-d${spec.clustered.d}` : `pydocs-${spec.pydocsRows ?? "all"}`;
  const dir = path.join(dataRoot, key);
  const infoFile = path.join(dir, "info.json");
  if (existsSync(infoFile)) return { ...(JSON.parse(readFileSync(infoFile, "utf8")) as DatasetInfo), dir };
  const partial = `${dir}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  let info: DatasetInfo;
  if (name === "clustered") {
    const { n, d } = spec.clustered;
    const source = await makeClustered(partial, n, d);
    info = { name, source, n, d, dir };
  } else {
    const made = makePydocs(partial, spec.pydocsRows);
    if (made === null) {
      rmSync(partial, { recursive: true, force: true });
      return null;
    }
    info = { name, source: "pydocs-minilm-384", ...made, dir };
  }
  writeFileSync(path.join(partial, "info.json"), JSON.stringify(info, null, 2));
  rmSync(dir, { recursive: true, force: true });
  renameSync(partial, dir);
  return info;
}

export interface Columns {
  n: number;
  d: number;
  vectors: Float32Array;
  category: Int32Array;
  price: Float64Array;
  text: string[];
}

export function loadColumns(info: DatasetInfo): Columns {
  const base = readMatrix(path.join(info.dir, "base.f32bin"), MAGIC.F32V, Float32Array);
  const category = readMatrix(path.join(info.dir, "category.i32bin"), MAGIC.I32C, Int32Array).data;
  const price = readMatrix(path.join(info.dir, "price.f64bin"), MAGIC.F64C, Float64Array).data;
  const text = readFileSync(path.join(info.dir, "text.txt"), "utf8").split("\n").slice(0, base.rows);
  return { n: base.rows, d: base.cols, vectors: base.data, category, price, text };
}
