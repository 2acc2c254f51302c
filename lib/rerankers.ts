// Rerankers: how a hybrid query fuses its vector and full-text results (and how a vector-only
// or text-only query can be re-ordered). Built-in ones work on row ids and ranks or scores;
// a custom one gets both result sets as Arrow batches.
import { type Field, Float32, makeData, makeVector, RecordBatch, type Schema, Struct, Table as ArrowTable, vectorFromArray } from "apache-arrow";
import { invalid } from "./check.js";

/** Name of the fused score column (higher is better). */
export const RELEVANCE = "_relevance_score";

/**
 * A reranker: fuses the results of a vector search and of a full-text search for `query` into
 * one result, best first, with a `_relevance_score` column. `vectorResults` carry
 * `_distance`, `ftsResults` `_score`, both `_rowid`; one of them is empty when the query has
 * only the other part. It may return a RecordBatch, several, or an apache-arrow Table.
 */
export interface Reranker {
  rerankHybrid(
    query: string,
    vectorResults: RecordBatch,
    ftsResults: RecordBatch,
  ): Promise<RecordBatch | RecordBatch[] | ArrowTable> | RecordBatch | RecordBatch[] | ArrowTable;
}

/** A built-in reranker: fuses from ids, ranks and scores alone (no columns needed). */
export interface BuiltinReranker extends Reranker {
  /** @internal Relevance per row id: `vector` and `fts` hold ids best first, with distances or scores. */
  fuse(vector: Ranked, fts: Ranked): Map<bigint, number>;
}

/** @internal One side's results: ids best first and their distances (vector) or scores (FTS). */
export interface Ranked {
  ids: bigint[];
  values: number[];
}

/**
 * Reciprocal rank fusion: a row's relevance is the sum, over the result lists holding it, of
 * `1 / (k + rank)`, rank counted from 0 for each list's best (as LanceDB computes it).
 */
export class RRFReranker implements BuiltinReranker {
  readonly k: number;

  private constructor(k: number) {
    this.k = k;
  }

  /** `k` (default 60) damps the lead of top ranks. */
  static create(k = 60): RRFReranker {
    if (typeof k !== "number" || !Number.isFinite(k) || k <= 0) invalid("RRFReranker k", "a positive number", k);
    return new RRFReranker(k);
  }

  /** @internal */
  fuse(vector: Ranked, fts: Ranked): Map<bigint, number> {
    const out = new Map<bigint, number>();
    for (const list of [vector, fts]) {
      list.ids.forEach((id, rank) => out.set(id, (out.get(id) ?? 0) + 1 / (this.k + rank)));
    }
    return out;
  }

  rerankHybrid(query: string, vectorResults: RecordBatch, ftsResults: RecordBatch): RecordBatch {
    return rerankBatches(this, vectorResults, ftsResults);
  }
}

/**
 * A weighted sum of normalised scores: `weight × v + (1 − weight) × f`. `v` is the vector
 * side's similarity, `1 − (d − min d) / (max d − min d)` over the vector results' distances
 * (1 when they are all equal), 0 for a row only the text search found; `f` is
 * `(s − min s) / (max s − min s)` over the text results' BM25 scores (1 when all equal), 0
 * for a row only the vector search found.
 */
export class LinearCombinationReranker implements BuiltinReranker {
  readonly weight: number;

  private constructor(weight: number) {
    this.weight = weight;
  }

  /** `weight` (default 0.7) of the vector side, in [0, 1]. */
  static create(weight = 0.7): LinearCombinationReranker {
    if (typeof weight !== "number" || !(weight >= 0 && weight <= 1)) invalid("LinearCombinationReranker weight", "a number in [0, 1]", weight);
    return new LinearCombinationReranker(weight);
  }

  /** @internal */
  fuse(vector: Ranked, fts: Ranked): Map<bigint, number> {
    const out = new Map<bigint, number>();
    const scaled = (values: number[], invert: boolean): number[] => {
      // (A loop, not Math.min(...values): spreading a large result overflows the stack.)
      let min = Infinity;
      let max = -Infinity;
      for (const v of values) {
        if (v < min) min = v;
        if (v > max) max = v;
      }
      return values.map((v) => {
        const unit = max > min ? (v - min) / (max - min) : 0;
        return invert ? 1 - unit : max > min ? unit : 1;
      });
    };
    scaled(vector.values, true).forEach((v, i) => out.set(vector.ids[i], this.weight * v));
    scaled(fts.values, false).forEach((f, i) => {
      const id = fts.ids[i];
      out.set(id, (out.get(id) ?? 0) + (1 - this.weight) * f);
    });
    return out;
  }

  rerankHybrid(query: string, vectorResults: RecordBatch, ftsResults: RecordBatch): RecordBatch {
    return rerankBatches(this, vectorResults, ftsResults);
  }
}

/** The ids and distances or scores of one side's results. */
export function ranked(batch: RecordBatch | ArrowTable, value: "_distance" | "_score"): Ranked {
  const ids = batch.getChild("_rowid");
  const values = batch.getChild(value);
  const out: Ranked = { ids: [], values: [] };
  if (!ids || !values) return out;
  for (let i = 0; i < batch.numRows; i++) {
    out.ids.push(ids.get(i) as bigint);
    out.values.push(Number(values.get(i)));
  }
  return out;
}

/** Ids by relevance, best first (ties: the order the lists gave them). */
export function byRelevance(relevance: Map<bigint, number>): bigint[] {
  const order = [...relevance.keys()];
  const position = new Map(order.map((id, i) => [id, i]));
  return order.sort((a, b) => relevance.get(b)! - relevance.get(a)! || position.get(a)! - position.get(b)!);
}

/** A built-in reranker over Arrow batches (as a custom caller would call it). */
function rerankBatches(reranker: BuiltinReranker, vectorResults: RecordBatch, ftsResults: RecordBatch): RecordBatch {
  const relevance = reranker.fuse(ranked(vectorResults, "_distance"), ranked(ftsResults, "_score"));
  const order = byRelevance(relevance);
  // Each id's row on each side.
  const sides = [vectorResults, ftsResults].map((batch) => {
    const at = new Map<bigint, number>();
    const ids = batch.getChild("_rowid");
    for (let i = 0; ids && i < batch.numRows; i++) at.set(ids.get(i) as bigint, i);
    return { batch, at };
  });
  const fields = new Map<string, Field>();
  for (const { batch } of sides) for (const f of batch.schema.fields) if (!fields.has(f.name)) fields.set(f.name, f);
  const columns: Record<string, ReturnType<typeof vectorFromArray>> = {};
  for (const [name, field] of fields) {
    const values = order.map((id) => {
      // The vector side's value, else the text side's.
      for (const { batch, at } of sides) {
        const child = batch.getChild(name);
        const i = at.get(id);
        if (child && i !== undefined) return child.get(i);
      }
      return null;
    });
    columns[name] = vectorFromArray(values, field.type);
  }
  columns[RELEVANCE] = makeVector(Float32Array.from(order.map((id) => relevance.get(id)!))) as never;
  const table = new ArrowTable(columns as never);
  return table.batches[0] ?? emptyBatch(table.schema);
}

/** Checks a reranker argument. */
export function rerankerArg(reranker: unknown): Reranker {
  if (reranker === null || typeof reranker !== "object" || typeof (reranker as Reranker).rerankHybrid !== "function") {
    invalid("rerank()", "RRFReranker.create(), LinearCombinationReranker.create() or an object with rerankHybrid(query, vectorResults, ftsResults)", reranker);
  }
  return reranker as Reranker;
}

/** Whether `reranker` is one of ours (fuses from ids, ranks and scores). */
export function isBuiltin(reranker: Reranker): reranker is BuiltinReranker {
  return typeof (reranker as BuiltinReranker).fuse === "function";
}

/** A float column for a fused result. */
export function floatColumn(values: (number | null)[]): ReturnType<typeof vectorFromArray> {
  return vectorFromArray(values, new Float32());
}

/** A batch of no rows with `schema`. */
export function emptyBatch(schema: Schema): RecordBatch {
  const children = schema.fields.map((f) => makeData({ type: f.type, length: 0, nullCount: 0 } as never));
  return new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: 0, nullCount: 0, children }));
}
