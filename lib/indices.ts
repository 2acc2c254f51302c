// Index configuration as createIndex takes it: vector indexes (Index.ivfPq, Index.ivfFlat) and
// scalar indexes (Index.btree, Index.bitmap, Index.labelList).
import { integerArg, invalid } from "./check.js";
import { type FtsOptions, tokenizerOptions } from "./fts.js";
import type { NativeTokenizerOptions } from "./native.js";
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
  /**
   * Recall@10 the default search settings aim at (default 0.95). The build measures recall
   * on a sample of the table's own vectors and stores the cheapest `nprobes` and
   * `refineFactor` reaching it (see `IndexStats.calibration`).
   */
  targetRecall?: number;
}

/** Options of an IVF_RQ index: RaBitQ codes of each row's residual from its partition centroid. */
export interface IvfRqOptions {
  /** Partitions (k-means centroids). Default: round(√rows). */
  numPartitions?: number;
  /**
   * Bits per dimension, 1 to 8 (default 1: the sign of each randomly rotated value, so a
   * 384-d vector takes 48 bytes plus 16 bytes of factors). More bits estimate distances better.
   */
  numBits?: number;
  /** l2 (default), cosine or dot. */
  distanceType?: DistanceType;
  /** Most k-means iterations (default 50). */
  maxIterations?: number;
  /** Training rows per partition (default 256). */
  sampleRate?: number;
  /** Recall@10 the default `nprobes` and `refineFactor` aim at (default 0.95); see `IvfPqOptions.targetRecall`. */
  targetRecall?: number;
}

/** Options of an IVF_FLAT index (partitions holding the vectors themselves). */
export interface IvfFlatOptions {
  numPartitions?: number;
  /** l2 (default), cosine, dot, or hamming for uint8 binary vectors. */
  distanceType?: DistanceType;
  maxIterations?: number;
  sampleRate?: number;
  /** Recall@10 the default `nprobes` aims at (default 0.95); see `IvfPqOptions.targetRecall`. */
  targetRecall?: number;
}

/** Options of an IVF_HNSW_SQ index: an HNSW graph per partition over 8-bit scalar-quantized vectors. */
export interface HnswSqOptions {
  /** Partitions (one graph each). Default: one per million rows; 1 means one graph for the table. */
  numPartitions?: number;
  /** l2 (default), cosine or dot. */
  distanceType?: DistanceType;
  /** Links per node on the upper layers (layer 0 has 2m). Default 20. */
  m?: number;
  /** Candidates kept while linking a node during the build. Default 300. */
  efConstruction?: number;
  /** Most k-means iterations when there are several partitions (default 50). */
  maxIterations?: number;
  /** Training rows per partition (default 256; the quantizer's ranges use at least 32,768 rows). */
  sampleRate?: number;
  /** Recall@10 the default `ef` aims at (default 0.95); see `IvfPqOptions.targetRecall`. */
  targetRecall?: number;
}

/** Options of an IVF_HNSW_PQ index: an HNSW graph per partition over PQ codes (smaller than hnswSq's 8-bit codes). */
export interface HnswPqOptions extends HnswSqOptions {
  /** Sub-vectors per vector (each becomes one byte). Default: dimension / 8 (a divisor of the dimension). */
  numSubVectors?: number;
}

/** Progress of an index build. */
export interface IndexProgress {
  /** Vector indexes: sample, kmeans, pq (IVF_PQ, IVF_HNSW_PQ), encode, graph (IVF_HNSW_SQ, IVF_HNSW_PQ), calibrate, write. B-trees: sort, write. Bitmaps and label lists: collect, write. FTS: tokenize (rows done), write. */
  phase: "sample" | "kmeans" | "pq" | "encode" | "graph" | "calibrate" | "sort" | "collect" | "tokenize" | "write";
  done: number;
  total: number;
}

/** Index types. */
export type IndexType = "IVF_PQ" | "IVF_FLAT" | "IVF_HNSW_SQ" | "IVF_HNSW_PQ" | "IVF_RQ" | "BTREE" | "BITMAP" | "LABEL_LIST" | "FTS";

/** How `createIndex` builds an index. */
export class Index {
  /** @internal */
  readonly type: IndexType;
  /** @internal */
  readonly options: IvfPqOptions & HnswSqOptions;
  /** @internal FTS: tokenizer options (checked) and positions. */
  readonly fts?: { tokenizer: NativeTokenizerOptions; withPosition?: boolean };

  private constructor(type: IndexType, options: IvfPqOptions & HnswSqOptions, fts?: Index["fts"]) {
    this.type = type;
    this.options = options;
    this.fts = fts;
  }

  /**
   * A full-text index (BM25): each row's text split into tokens (see `TokenizerOptions`; the
   * defaults are LanceDB's), posting lists of the rows holding each token in compressed
   * blocks that carry score bounds, so top-k queries skip what cannot rank. For string
   * columns and lists of strings. `withPosition: true` keeps token positions, which
   * `PhraseQuery` needs. Rows added later are searched (tokenized at query time) until
   * `optimize()` indexes them.
   */
  static fts(options: FtsOptions = {}): Index {
    if (options === null || typeof options !== "object") invalid("Index.fts() options", "an object", options);
    const { withPosition, ...tokenizer } = options;
    if (withPosition !== undefined && typeof withPosition !== "boolean") invalid("withPosition", "true or false", withPosition);
    return new Index("FTS", {}, { tokenizer: tokenizerOptions(tokenizer, "Index.fts() options"), withPosition });
  }

  /** IVF with product quantization: compact, fast, approximate (refined by exact distances). */
  static ivfPq(options: IvfPqOptions = {}): Index {
    return new Index("IVF_PQ", checkOptions(options, "ivfPq"));
  }

  /**
   * HNSW graphs over 8-bit scalar-quantized vectors (one graph per partition; by default one
   * per million rows): the fastest search at high recall, re-ranked by exact distances. Its
   * default `ef` is calibrated at build time; `query.ef(n)` sets it.
   */
  static hnswSq(options: HnswSqOptions = {}): Index {
    return new Index("IVF_HNSW_SQ", checkOptions(options, "hnswSq"));
  }

  /**
   * IVF with RaBitQ codes (Gao & Long, 2024): each row's residual, randomly rotated, kept as
   * `numBits` per dimension (default 1). Distances are estimated without bias, each with an
   * error bound that drops candidates before the exact re-rank reads their vectors.
   */
  static ivfRq(options: IvfRqOptions = {}): Index {
    if (options !== null && typeof options === "object" && options.numBits !== undefined) {
      integerArg(options.numBits, "numBits", { min: 1, max: 8, expected: "an integer from 1 to 8" });
    }
    return new Index("IVF_RQ", checkOptions(options, "ivfRq"));
  }

  /**
   * HNSW graphs over PQ codes (one graph per partition; by default one per million rows),
   * linked by code-to-code distances and searched with the query's lookup table, re-ranked
   * by exact distances. Its codes are an eighth of hnswSq's at 8 dimensions per sub-vector
   * (the graph's links are the same size); its default `ef` and `refineFactor` are
   * calibrated at build time; `query.ef(n)` sets `ef`.
   */
  static hnswPq(options: HnswPqOptions = {}): Index {
    return new Index("IVF_HNSW_PQ", checkOptions(options, "hnswPq"));
  }

  /** IVF without quantization: exact distances within the probed partitions. */
  static ivfFlat(options: IvfFlatOptions = {}): Index {
    return new Index("IVF_FLAT", checkOptions(options, "ivfFlat"));
  }

  /**
   * A B-tree: the column's values sorted with their rows, in pages read on demand. Answers
   * `=`, `<`, `<=`, `>`, `>=`, `BETWEEN`, `IN`, `IS [NOT] NULL` and `LIKE 'prefix%'`. For
   * columns of many distinct values (ids, timestamps, prices, names). Takes booleans,
   * integers, floats, dates, times, timestamps, durations, strings and binaries.
   */
  static btree(): Index {
    return new Index("BTREE", {});
  }

  /**
   * A bitmap: one compressed bitmap of rows per distinct value. Answers `=`, `IN`,
   * `IS [NOT] NULL` and ranges over few values. For columns of few distinct values
   * (categories, statuses, flags); at most 1,000,000 distinct values. Same types as btree.
   */
  static bitmap(): Index {
    return new Index("BITMAP", {});
  }

  /**
   * A label list: one bitmap per value found in a list column's lists. Answers
   * `array_has(col, v)`, `array_has_any(col, [...])` and `array_has_all(col, [...])`. For
   * list columns (tags, labels) of the types btree takes.
   */
  static labelList(): Index {
    return new Index("LABEL_LIST", {});
  }
}

const POSITIVE = ["numPartitions", "numSubVectors", "numBits", "maxIterations", "sampleRate", "m", "efConstruction"] as const;

function checkOptions(options: IvfPqOptions & HnswSqOptions, what: string): IvfPqOptions & HnswSqOptions {
  if (options === null || typeof options !== "object") invalid(`Index.${what}() options`, "an object", options);
  for (const key of POSITIVE) {
    const v = options[key];
    if (v !== undefined) integerArg(v, key, { min: 1, max: 0xffff_ffff, expected: "a positive integer below 2^32" });
  }
  const r = options.targetRecall;
  if (r !== undefined && !(typeof r === "number" && r > 0 && r <= 1)) invalid("targetRecall", "a number in (0, 1]", r);
  const d = options.distanceType;
  if (d !== undefined && !["l2", "cosine", "dot", "hamming"].includes(d)) invalid("distanceType", "l2, cosine, dot or hamming", d);
  return { ...options };
}

/** Options of `table.createIndex(column, options)`. */
export interface CreateIndexOptions {
  /**
   * Default: picked by the column — vector columns `Index.ivfRq()` (`Index.ivfPq()` above
   * 4,096 dimensions), list columns `Index.labelList()`, columns of at most 1,000 distinct
   * values (and at most one per 10 rows) `Index.bitmap()`, other columns `Index.btree()`.
   */
  config?: Index;
  /** Replace an existing index on the column or of the same name (default true). */
  replace?: boolean;
  /** Default `${column}_idx`. */
  name?: string;
  /** Called as the build progresses (from the event loop; it never blocks the build). */
  progress?: (progress: IndexProgress) => void;
}

/** An index as `listIndices()` and `indexStats()` describe it. */
export interface IndexStats {
  name: string;
  indexType: IndexType;
  columns: string[];
  /** Vector indexes: the distance they were trained for. */
  distanceType?: DistanceType;
  /** Vector indexes. */
  numPartitions?: number;
  /** Vector indexes (0 for IVF_FLAT). */
  numSubVectors?: number;
  /** Vector indexes. */
  numBits?: number;
  /** Bitmaps and label lists: distinct values; FTS: distinct terms (summed over segments). */
  numDistinctValues?: number;
  /** B-trees: pages of the file. */
  numPages?: number;
  /** Graph indexes: links per node, and the build's candidate list. */
  m?: number;
  efConstruction?: number;
  /** Live rows the index covers. */
  numIndexedRows: number;
  /** Live rows added since the build (scanned, or searched exactly, until `optimize()`). */
  numUnindexedRows: number;
  /** Bytes of the index file. */
  sizeBytes: number;
  /** Vector indexes built on 1,000 rows or more: what the build measured (see `IvfPqOptions.targetRecall`). */
  calibration?: IndexCalibration;
}

/**
 * How a vector index calibrated its default search settings: `sampleQueries` rows of the
 * table searched as queries (themselves excluded) against their exact top `k`, at growing
 * `nprobes` and refine factors.
 */
export interface IndexCalibration {
  /** The recall the defaults aim at. */
  targetRecall: number;
  sampleQueries: number;
  /** Neighbours per query recall is measured at (10). */
  k: number;
  /**
   * The default setting: the cheapest on the curve reaching `targetRecall` by three standard
   * errors of the sample's estimate (`recall − 3·recallStdErr ≥ targetRecall`), so unseen
   * queries reach it too. `nprobes: 0` means
   * exact search: no index setting reached the target (data the index's codes cannot tell
   * apart) or the one that did was estimated to cost more than a scan, so searches with no explicit settings return the exact answer, as `explainPlan()` says.
   */
  nprobes: number;
  /** Graph indexes only: the search's candidate list. */
  ef?: number;
  /** IVF_PQ and graph indexes. */
  refineFactor?: number;
  /** Measured recall@k of the default setting. */
  recall: number;
  /**
   * Index settings on the cost/recall frontier, cheapest first, then exact search (`nprobes: 0`,
   * recall 1) unless a setting was perfect; `query.targetRecall(r)` picks among them.
   */
  curve: {
    nprobes: number;
    ef?: number;
    refineFactor?: number;
    recall: number;
    /** Standard error of `recall` over the sample; a default must clear its target by two. */
    recallStdErr: number;
    estimatedCostUs: number;
  }[];
}
