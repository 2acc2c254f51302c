// Vector index configuration: Index.ivfPq(...) and Index.ivfFlat(...), as createIndex takes them.
import { integerArg, invalid } from "./check.js";
import type { DistanceType } from "./query.js";

/** Options of an IVF_PQ index. Every field is optional; the defaults give good recall. */
export interface IvfPqOptions {
  /** Partitions (k-means centroids). Default: round(√rows). */
  numPartitions?: number;
  /** Sub-vectors per vector (each becomes one byte). Default: dimension / 8 (a divisor of the dimension). */
  numSubVectors?: number;
  /** Bits per code: 8 (the only value supported). */
  numBits?: number;
  /** l2 (default), cosine or dot. */
  distanceType?: DistanceType;
  /** Most k-means iterations (default 50; training stops earlier when it converges). */
  maxIterations?: number;
  /** Training rows per partition (default 256): k-means trains on sampleRate × numPartitions rows. */
  sampleRate?: number;
}

/** Options of an IVF_FLAT index (partitions holding the vectors themselves). */
export interface IvfFlatOptions {
  numPartitions?: number;
  /** l2 (default), cosine, dot, or hamming for uint8 binary vectors. */
  distanceType?: DistanceType;
  maxIterations?: number;
  sampleRate?: number;
}

/** Progress of an index build. */
export interface IndexProgress {
  phase: "sample" | "kmeans" | "pq" | "encode" | "write";
  done: number;
  total: number;
}

/** How `createIndex` builds an index. */
export class Index {
  /** @internal */
  readonly type: "IVF_PQ" | "IVF_FLAT";
  /** @internal */
  readonly options: IvfPqOptions;

  private constructor(type: "IVF_PQ" | "IVF_FLAT", options: IvfPqOptions) {
    this.type = type;
    this.options = options;
  }

  /** IVF with product quantization: compact, fast, approximate (refined by exact distances). */
  static ivfPq(options: IvfPqOptions = {}): Index {
    return new Index("IVF_PQ", checkOptions(options, "ivfPq"));
  }

  /** IVF without quantization: exact distances within the probed partitions. */
  static ivfFlat(options: IvfFlatOptions = {}): Index {
    return new Index("IVF_FLAT", checkOptions(options, "ivfFlat"));
  }
}

const POSITIVE = ["numPartitions", "numSubVectors", "numBits", "maxIterations", "sampleRate"] as const;

function checkOptions(options: IvfPqOptions, what: string): IvfPqOptions {
  if (options === null || typeof options !== "object") invalid(`Index.${what}() options`, "an object", options);
  for (const key of POSITIVE) {
    const v = options[key];
    if (v !== undefined) integerArg(v, key, { min: 1, max: 0xffff_ffff, expected: "a positive integer below 2^32" });
  }
  const d = options.distanceType;
  if (d !== undefined && !["l2", "cosine", "dot", "hamming"].includes(d)) invalid("distanceType", "l2, cosine, dot or hamming", d);
  return { ...options };
}

/** Options of `table.createIndex(column, options)`. */
export interface CreateIndexOptions {
  /** Default: `Index.ivfPq()`. */
  config?: Index;
  /** Replace an existing index on the column or of the same name (default true). */
  replace?: boolean;
  /** Default `${column}_idx`. */
  name?: string;
  /** Called as the build progresses (from the event loop; it never blocks the build). */
  progress?: (progress: IndexProgress) => void;
}

/** A vector index as `listIndices()` and `indexStats()` describe it. */
export interface IndexStats {
  name: string;
  /** IVF_PQ or IVF_FLAT. */
  indexType: string;
  columns: string[];
  distanceType: DistanceType;
  numPartitions: number;
  /** 0 for IVF_FLAT. */
  numSubVectors: number;
  numBits: number;
  /** Live rows the index covers. */
  numIndexedRows: number;
  /** Live rows added since the build (searched exactly until `optimize()`). */
  numUnindexedRows: number;
}

