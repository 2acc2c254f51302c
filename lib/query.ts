// Query builders. Each call returns a new builder; nothing runs until a terminal call
// (toArrow, toArray, stream, explainPlan, analyzePlan).
import { Field, Float32, RecordBatch, Schema, Table as ArrowTable } from "apache-arrow";
import { ownBatch, ownBatches, ownTable } from "./arrow-interop.js";
import { batchFromIPC, fromIPC, type Row, tableToRows, type ToArrayOptions } from "./arrow.js";
import { describeValue, integerArg, invalid, nameArg, numberArg } from "./check.js";
import { InvalidArgumentError, native } from "./errors.js";
import { type FullTextQuery, ftsNodes, queryText } from "./fts.js";
import type {
  NativeFtsNode,
  NativePlainColumn,
  NativeScanOptions,
  NativeSearchOptions,
  NativeSearchResult,
  NativeTable,
  NativeTextSearchOptions,
} from "./native.js";
import { byRelevance, emptyBatch, floatColumn, isBuiltin, RELEVANCE, type Ranked, ranked, type Reranker, rerankerArg, RRFReranker } from "./rerankers.js";

/** What a query asks for. */
interface QueryState {
  filter?: string;
  columns?: string[];
  renames?: Record<string, string>;
  limit?: number;
  offset?: number;
  withRowId: boolean;
  /** A full-text query (flattened): the query ranks rows by BM25, or is hybrid with a vector. */
  fts?: NativeFtsNode[];
  /** The full-text search applies `filter` to its best rows instead of ranking only matches. */
  ftsPostfilter?: boolean;
  reranker?: Reranker;
}

/** Vector-search settings. */
interface SearchState {
  vector: Float64Array;
  column?: string;
  /** Unset: the index's distance type when the column has an index, else l2. */
  distanceType?: DistanceType;
  nprobes?: number;
  refineFactor?: number;
  ef?: number;
  targetRecall?: number;
  postfilter: boolean;
  bypassVectorIndex: boolean;
  lower?: number;
  upper?: number;
}

export type DistanceType = "l2" | "cosine" | "dot" | "hamming";

/** The vector a search starts from. */
export type VectorLike = number[] | Float32Array | Float64Array | Uint8Array | Int8Array;

/** How a table handle is reached from a query (the table checks it is open). */
export interface QueryTarget {
  native(): NativeTable;
}

/** Most a u32 argument of the engine takes (vector search k, nprobes, refineFactor). */
const U32_MAX = 0xffff_ffff;
/** Bytes of batches the call that starts a scan brings back with it (see `Query.batches`). */
const PREFETCH_BYTES = 4 * 1024 * 1024;

/** A plain query: a scan with optional projection, limit and offset. Results (tables and
 * batches) are made by the apache-arrow that Quiver imports, whatever copy made the input. */
export class Query implements AsyncIterable<RecordBatch> {
  protected readonly target: QueryTarget;
  protected readonly state: QueryState;

  constructor(target: QueryTarget, state: QueryState = { withRowId: false }) {
    this.target = target;
    this.state = state;
  }

  protected with(patch: Partial<QueryState>): this {
    const Ctor = this.constructor as new (target: QueryTarget, state: QueryState, ...rest: unknown[]) => this;
    return new Ctor(this.target, { ...this.state, ...patch }, ...this.extraState());
  }

  protected extraState(): unknown[] {
    return [];
  }

  /**
   * Keeps rows matching a SQL predicate, e.g. `"price > 10 AND category IN ('a', 'b')"`.
   * See the README for the filter language. Errors are `FilterError`s with a position.
   */
  where(predicate: string): this {
    if (typeof predicate !== "string" || predicate.trim() === "") {
      throw new InvalidArgumentError("InvalidArgument", "where() takes a non-empty SQL predicate string");
    }
    return this.with({ filter: predicate });
  }

  /** Columns to return: names, or `{ alias: column }` to rename. */
  select(columns: string[] | Record<string, string>): this {
    if (Array.isArray(columns)) {
      const bad = columns.findIndex((c) => typeof c !== "string");
      if (bad >= 0) invalid(`select() column ${bad}`, "a column name", columns[bad]);
      return this.with({ columns: [...columns], renames: undefined });
    }
    if (columns === null || typeof columns !== "object") {
      invalid("select() columns", "an array of names or an { alias: column } object", columns);
    }
    const entries = Object.entries(columns);
    for (const [alias, expr] of entries) {
      if (typeof expr !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(expr)) {
        throw new InvalidArgumentError(
          "InvalidArgument",
          `select({ ${alias}: ${describeValue(expr)} }): only plain column names can be selected until SQL expressions are supported`,
        );
      }
    }
    return this.with({ columns: entries.map(([, c]) => c), renames: Object.fromEntries(entries.map(([a, c]) => [c, a])) });
  }

  /** At most `n` rows. */
  limit(n: number): this {
    return this.with({ limit: integerArg(n, "limit") });
  }

  /** Skips the first `n` rows. */
  offset(n: number): this {
    return this.with({ offset: integerArg(n, "offset") });
  }

  /** Adds the `_rowid` column (stable row address, usable with `takeRowIds`). */
  withRowId(): this {
    return this.with({ withRowId: true });
  }

  /**
   * Ranks rows by BM25 relevance to `query` (results carry `_score`, best first; `limit`
   * defaults to 10). A string matches its terms (tokenized as the column's index does) in
   * `columns`: by default the column with a full-text index (every such column when there are
   * several); a `MatchQuery`, `PhraseQuery`, `BoostQuery`, `MultiMatchQuery` or `BooleanQuery`
   * says more. `where()` filters first. With `nearestTo()` the query is hybrid.
   */
  fullTextSearch(query: string | FullTextQuery, options?: { columns?: string | string[] }): this {
    if (options !== undefined && (options === null || typeof options !== "object")) invalid("fullTextSearch() options", "an object", options);
    let columns = options?.columns;
    if (typeof columns === "string") columns = [columns];
    if (columns !== undefined) {
      if (!Array.isArray(columns)) invalid("fullTextSearch() columns", "a column name or an array of them", columns);
      columns.forEach((c, i) => nameArg(c, `fullTextSearch() column ${i}`));
    }
    if (typeof query !== "string" && (query === null || typeof query !== "object")) {
      invalid("fullTextSearch() query", "a string or a full-text query object", query);
    }
    return this.with({ fts: ftsNodes(query, columns) });
  }

  /** The nearest rows to `vector`; after `fullTextSearch()`, a hybrid query. */
  nearestTo(vector: VectorLike): VectorQuery {
    const v = vectorQuery(this.target, vector);
    return new VectorQuery(this.target, { ...this.state }, v.searchState());
  }

  /**
   * How results are fused or re-ordered: `RRFReranker.create()` (the default of hybrid
   * queries), `LinearCombinationReranker.create()`, or your own object with
   * `rerankHybrid(query, vectorResults, ftsResults)`. Works on hybrid, full-text-only and
   * vector-only queries (the missing side's results are empty). Results gain
   * `_relevance_score`.
   */
  rerank(reranker?: Reranker): this {
    return this.with({ reranker: reranker === undefined ? RRFReranker.create() : rerankerArg(reranker) });
  }

  protected textOptions(withRowId: boolean, columns = this.state.columns): NativeTextSearchOptions {
    if (this.state.limit !== undefined && this.state.limit > U32_MAX) invalid("limit of a full-text search", `at most ${U32_MAX}`, this.state.limit);
    return {
      nodes: this.state.fts!,
      k: this.state.limit ?? 10,
      offset: this.state.offset,
      columns,
      withRowId: this.state.withRowId || withRowId,
      filter: this.state.filter,
      postfilter: this.state.ftsPostfilter,
    };
  }

  /** Runs the full-text search (re-ranked when `rerank()` asked). */
  protected async runText(): Promise<ArrowTable> {
    const t = this.target.native();
    const reranker = this.state.reranker;
    const options = this.textOptions(reranker !== undefined);
    const found = fromIPC(await native(() => t.textSearch(options)));
    if (!reranker) return found;
    const fts = found.batches[0] ?? emptyBatch(found.schema);
    const vector = emptyBatch(swapColumn(found.schema, "_score", "_distance"));
    const out = await applyReranker(reranker, queryText(options.nodes), vector, fts, this.state.limit ?? 10);
    return this.state.withRowId ? out : dropColumn(out, "_rowid");
  }

  protected rename(table: ArrowTable): ArrowTable {
    const renames = this.state.renames;
    if (!renames) return table;
    const columns: Record<string, ReturnType<ArrowTable["getChild"]>> = {};
    for (const f of table.schema.fields) columns[renames[f.name] ?? f.name] = table.getChild(f.name);
    return new ArrowTable(columns as never);
  }

  /** Runs the query and returns an apache-arrow Table. */
  async toArrow(): Promise<ArrowTable> {
    if (this.state.fts) return this.rename(await this.runText());
    const batches: RecordBatch[] = [];
    let schema: ArrowTable["schema"] | undefined;
    for await (const batch of this.batches((s) => (schema = s))) batches.push(batch);
    if (batches.length > 0) return new ArrowTable(batches);
    // No rows: still return the right schema.
    return this.rename(new ArrowTable(schema as never));
  }

  /** Runs the query and returns rows as plain objects. */
  async toArray(options?: ToArrayOptions): Promise<Row[]> {
    checkToArrayOptions(options);
    return tableToRows(await this.toArrow(), options);
  }

  /** Runs the query, yielding apache-arrow RecordBatches one at a time. */
  async *stream(): AsyncGenerator<RecordBatch> {
    if (this.state.fts) {
      yield* (await this.toArrow()).batches;
      return;
    }
    yield* this.batches();
  }

  /**
   * The batches of the query. The first ones (up to PREFETCH_BYTES) come back with the call
   * that starts the scan, so a small result costs one call across the JS boundary; the rest
   * are read one batch per call. `onSchema` receives the result's schema.
   */
  private async *batches(onSchema?: (schema: ArrowTable["schema"]) => void): AsyncGenerator<RecordBatch> {
    const table = this.target.native();
    const stream = await native(() => table.scanEager(this.scanOptions(), PREFETCH_BYTES));
    let done = false;
    try {
      const first = stream.takePrefetched();
      if (first !== null) {
        const prefetched = fromIPC(first.data);
        onSchema?.(prefetched.schema);
        done = first.done;
        for (const batch of prefetched.batches) {
          if (batch.numRows > 0) yield this.state.renames ? this.rename(new ArrowTable([batch])).batches[0] : batch;
        }
      }
      while (!done) {
        const bytes = await native(() => stream.next());
        if (bytes === null) {
          done = true;
          return;
        }
        const batch = batchFromIPC(bytes);
        if (batch === null) {
          done = true;
          return;
        }
        yield this.state.renames ? this.rename(new ArrowTable([batch])).batches[0] : batch;
      }
    } finally {
      if (!done) await stream.cancel();
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<RecordBatch> {
    return this.stream();
  }

  /**
   * The engine's plan for this query, without running it: an indented tree of the operators
   * that will run (root first, inputs indented below), e.g. a `Limit` over a `Scan` with its
   * projection and a pushed-down `Filter` showing how many fragments page statistics prune.
   * `verbose` adds every setting.
   */
  async explainPlan(verbose = false): Promise<string> {
    verboseArg(verbose, "explainPlan");
    const table = this.target.native();
    if (this.state.fts) return native(() => table.planTextSearch(this.textOptions(false), verbose, false));
    return native(() => table.planScan(this.scanOptions(), verbose, false));
  }

  /**
   * Runs the query and returns the plan it ran, each operator followed by what it measured for
   * this query alone — `[output_rows iops bytes_read indices_loaded parts_loaded
   * index_comparisons elapsed]` — and a `Total:` line.
   */
  async analyzePlan(verbose = false): Promise<string> {
    verboseArg(verbose, "analyzePlan");
    const table = this.target.native();
    if (this.state.fts) return native(() => table.planTextSearch(this.textOptions(false), verbose, true));
    return native(() => table.planScan(this.scanOptions(), verbose, true));
  }

  protected scanOptions(): NativeScanOptions {
    return {
      filter: this.state.filter,
      columns: this.state.columns,
      limit: this.state.limit,
      offset: this.state.offset,
      withRowId: this.state.withRowId,
    };
  }
}

/**
 * What `table.search(text)` returns: a full-text query (see `Query.fullTextSearch`). The
 * settings of a vector search (`nprobes()`, `distanceType()`, …) are typed errors here, not
 * missing methods, so code that builds queries from varied input fails cleanly.
 */
export class TextQuery extends Query {
  private notVector(method: string): never {
    throw new InvalidArgumentError(
      "InvalidArgument",
      `${method}() applies to vector searches; this is a full-text search (search(text)). For a hybrid query use search(vector).fullTextSearch(text)`,
    );
  }

  column(_name: string): this {
    return this.notVector("column");
  }

  distanceType(_type: DistanceType): this {
    return this.notVector("distanceType");
  }

  nprobes(_n: number): this {
    return this.notVector("nprobes");
  }

  refineFactor(_n: number): this {
    return this.notVector("refineFactor");
  }

  targetRecall(_recall: number): this {
    return this.notVector("targetRecall");
  }

  ef(_n: number): this {
    return this.notVector("ef");
  }

  /**
   * Applies `where()` after ranking: the best rows of the whole table are found, then those
   * not matching the filter dropped, so fewer than `limit` rows may come back. Without it the
   * filter is a prefilter: only matching rows are ranked.
   */
  postfilter(): this {
    return this.with({ ftsPostfilter: true });
  }

  bypassVectorIndex(): this {
    return this.notVector("bypassVectorIndex");
  }

  distanceRange(_lower?: number, _upper?: number): this {
    return this.notVector("distanceRange");
  }
}

/** A vector query: nearest rows to a vector; results carry `_distance`. */
export class VectorQuery extends Query {
  private readonly search: SearchState;

  constructor(target: QueryTarget, state: QueryState, search: SearchState) {
    super(target, state);
    this.search = search;
  }

  protected override extraState(): unknown[] {
    return [this.search];
  }

  /** @internal */
  searchState(): SearchState {
    return this.search;
  }

  /** Whether the query fuses or re-ranks (hybrid, or `rerank()`). */
  private get fused(): boolean {
    return this.state.fts !== undefined || this.state.reranker !== undefined;
  }

  private withSearch(patch: Partial<SearchState>): this {
    const Ctor = this.constructor as new (target: QueryTarget, state: QueryState, search: SearchState) => this;
    return new Ctor(this.target, this.state, { ...this.search, ...patch });
  }

  /** The vector column to search (needed when the table has several). */
  column(name: string): this {
    return this.withSearch({ column: nameArg(name, "column()") });
  }

  /**
   * l2 (squared Euclidean), cosine (1 − similarity), dot (negative inner product: smaller is
   * closer), hamming (differing bits of uint8 vectors). Default: the index's type when the
   * column has an index (also with `bypassVectorIndex()`), else l2. A type other than the
   * index's searches exactly.
   */
  distanceType(type: DistanceType): this {
    if (!["l2", "cosine", "dot", "hamming"].includes(type)) invalid("distanceType", "l2, cosine, dot or hamming", type);
    return this.withSearch({ distanceType: type });
  }

  /**
   * Partitions an IVF index probes at least (more when a filter leaves too few rows).
   * Default: the setting the index calibrated at build time for its target recall (0.95
   * unless built with another `targetRecall`), or 20 for an index built on under 1,000 rows.
   */
  nprobes(n: number): this {
    return this.withSearch({ nprobes: integerArg(n, "nprobes", { max: U32_MAX }) });
  }

  /**
   * Re-ranks `limit × n` index candidates by exact distance, read from the stored vectors
   * (IVF_PQ default: the index's calibrated factor, or 4 without calibration; IVF_FLAT
   * distances are exact already).
   */
  refineFactor(n: number): this {
    return this.withSearch({ refineFactor: integerArg(n, "refineFactor", { max: U32_MAX }) });
  }

  /**
   * The recall this search should reach: picks, among the settings the index measured at
   * build time (`indexStats().calibration.curve`), the cheapest with at least this recall
   * (the best one when none reaches it). Explicit `nprobes()` / `refineFactor()` win.
   */
  targetRecall(recall: number): this {
    if (!(typeof recall === "number" && recall > 0 && recall <= 1)) invalid("targetRecall", "a number in (0, 1]", recall);
    return this.withSearch({ targetRecall: recall });
  }

  /**
   * Candidate list of a graph index's search (IVF_HNSW_SQ and IVF_HNSW_PQ only; larger is
   * slower and finds more of the true neighbours). Default: the setting the index calibrated
   * at build time. No effect on IVF_PQ / IVF_RQ / IVF_FLAT or exact search.
   */
  ef(n: number): this {
    return this.withSearch({ ef: integerArg(n, "ef", { max: U32_MAX }) });
  }

  /**
   * Filter after ranking instead of before: the `limit` nearest rows are found first and those
   * not matching `where()` are dropped, so fewer than `limit` rows may come back. In a hybrid
   * query both searches filter this way.
   */
  postfilter(): this {
    return this.withSearch({ postfilter: true });
  }

  /** Always search exactly, ignoring indexes. */
  bypassVectorIndex(): this {
    return this.withSearch({ bypassVectorIndex: true });
  }

  /** Keep results with lower <= _distance < upper (either may be left out, or be ±Infinity). */
  distanceRange(lower?: number, upper?: number): this {
    if (lower !== undefined) numberArg(lower, "distanceRange() lower bound", { finite: false });
    if (upper !== undefined) numberArg(upper, "distanceRange() upper bound", { finite: false });
    return this.withSearch({ lower, upper });
  }

  override async toArrow(): Promise<ArrowTable> {
    if (this.fused) return this.rename(await this.runFused());
    return this.rename(fromIPC((await this.run(false)).data!));
  }

  /** Runs the search and returns rows as plain objects. */
  override async toArray(options?: ToArrayOptions): Promise<Row[]> {
    checkToArrayOptions(options);
    if (this.fused) return tableToRows(await this.toArrow(), options);
    // Plain columns where the result allows: no Arrow decode for a handful of rows.
    const result = await this.run(true);
    if (result.plain) return plainRows(result.plain, this.state.renames, options);
    return tableToRows(this.rename(fromIPC(result.data!)), options);
  }

  /**
   * Hybrid (or re-ranked vector) search: both searches run at once; a built-in reranker fuses
   * their row ids and ranks, then the fused top rows are read in one take; a custom one gets
   * both result sets whole.
   */
  private async runFused(): Promise<ArrowTable> {
    this.checkSearch();
    const t = this.target.native();
    const k = this.state.limit ?? 10;
    const reranker = this.state.reranker ?? RRFReranker.create();
    const nodes = this.state.fts;
    const builtin = isBuiltin(reranker);
    const columns = builtin ? [] : this.state.columns;
    const vectorSide = native(async () => {
      const r = await t.vectorSearch(this.search.vector, { ...this.searchOptions(false), columns, withRowId: true }, false);
      return fromIPC(r.data!);
    });
    const textOptions = { ...this.textOptions(true, columns), offset: undefined, k, postfilter: this.search.postfilter };
    const textSide = nodes ? native(() => t.textSearch(textOptions)).then(fromIPC) : null;
    const [vector, text] = await Promise.all([vectorSide, textSide]);
    if (!builtin) {
      const vb = vector.batches[0] ?? emptyBatch(vector.schema);
      const fb = text ? (text.batches[0] ?? emptyBatch(text.schema)) : emptyBatch(swapColumn(vector.schema, "_distance", "_score"));
      const out = await applyReranker(reranker, queryText(nodes ?? []), vb, fb, k);
      return this.state.withRowId ? out : dropColumn(out, "_rowid");
    }
    const v = ranked(vector, "_distance");
    const f: Ranked = text ? ranked(text, "_score") : { ids: [], values: [] };
    const relevance = reranker.fuse(v, f);
    const ids = byRelevance(relevance).slice(0, k);
    const rows = fromIPC(await native(() => t.takeRowIds(ids, this.state.columns, this.state.withRowId)));
    const valueOf = (side: Ranked) => {
      const m = new Map(side.ids.map((id, i) => [id, side.values[i]]));
      return ids.map((id) => m.get(id) ?? null);
    };
    const out: Record<string, unknown> = {};
    for (const field of rows.schema.fields) out[field.name] = rows.getChild(field.name);
    out._distance = floatColumn(valueOf(v));
    out._score = floatColumn(valueOf(f));
    out[RELEVANCE] = floatColumn(ids.map((id) => relevance.get(id)!));
    return new ArrowTable(out as never);
  }

  /** Runs the search; `plain` asks for plain columns where every column has a plain form. */
  private async run(plain: boolean): Promise<NativeSearchResult> {
    this.checkSearch();
    const table = this.target.native();
    // Inline (on this thread, see `takeInline`) only without a filter (evaluating one can take
    // a while) and while this table's searches are cheap: neither may hold up the event loop.
    const inline = this.state.filter === undefined && (searchCost.get(table) ?? 0) <= INLINE_MAX_MS && takeInline();
    const started = performance.now();
    let waited = true;
    const result = await native(async () => {
      const r = table.vectorSearch(this.search.vector, this.searchOptions(plain), inline);
      waited = r instanceof Promise;
      if (!waited) noteSearchCost(table, performance.now() - started, false);
      return r;
    });
    if (waited) noteSearchCost(table, performance.now() - started, true);
    return result;
  }

  private checkSearch(): void {
    if (this.state.offset !== undefined && this.state.offset > 0) {
      throw new InvalidArgumentError("InvalidArgument", "offset() is not supported on vector searches; raise limit() instead");
    }
    if (this.state.limit !== undefined && this.state.limit > U32_MAX) {
      invalid("limit of a vector search", `at most ${U32_MAX}`, this.state.limit);
    }
  }

  private searchOptions(plain = false): NativeSearchOptions {
    return {
      column: this.search.column,
      k: this.state.limit ?? 10,
      distanceType: this.search.distanceType,
      columns: this.state.columns,
      withRowId: this.state.withRowId,
      lowerBound: this.search.lower,
      upperBound: this.search.upper,
      filter: this.state.filter,
      postfilter: this.search.postfilter,
      nprobes: this.search.nprobes,
      refineFactor: this.search.refineFactor,
      bypassVectorIndex: this.search.bypassVectorIndex,
      targetRecall: this.search.targetRecall,
      ef: this.search.ef,
      plain,
    };
  }

  /**
   * Runs the search and returns the plan it ran with what each operator measured for this
   * search alone: the index used (`indices_loaded`, `parts_loaded` on a cache miss,
   * `index_comparisons`), refinement and exact search (`rows_ranked`), the final take, I/O and
   * time per operator, and a `Total:` line.
   */
  override async analyzePlan(verbose = false): Promise<string> {
    verboseArg(verbose, "analyzePlan");
    this.checkSearch();
    const table = this.target.native();
    const vector = native(() => table.planVectorSearch(this.search.vector, this.searchOptions(), verbose, true));
    if (!this.fused) return vector;
    const text = this.state.fts ? native(() => table.planTextSearch(this.textOptions(true), verbose, true)) : null;
    return this.fusedPlan(await vector, text && (await text));
  }

  private fusedPlan(vector: string, text: string | null): string {
    const reranker = this.state.reranker ?? RRFReranker.create();
    const name = isBuiltin(reranker) ? reranker.constructor.name : "custom reranker";
    const indent = (plan: string) => plan.split("\n").filter((l) => l !== "").map((l) => `  ${l}`).join("\n");
    const parts = [`Rerank: ${name}, limit=${this.state.limit ?? 10}`, indent(vector)];
    if (text !== null) parts.push(indent(text));
    return parts.join("\n");
  }

  override async *stream(): AsyncGenerator<RecordBatch> {
    yield* (await this.toArrow()).batches;
  }

  /**
   * The engine's plan for this search, without running it: the index and its settings
   * (type, distance, nprobes, refine), exact search of fragments the index does not cover (or
   * of everything, with the reason), prefilter or postfilter, top-k and the final take.
   */
  override async explainPlan(verbose = false): Promise<string> {
    verboseArg(verbose, "explainPlan");
    this.checkSearch();
    const table = this.target.native();
    const vector = native(() => table.planVectorSearch(this.search.vector, this.searchOptions(), verbose, false));
    if (!this.fused) return vector;
    const text = this.state.fts ? native(() => table.planTextSearch(this.textOptions(true), verbose, false)) : null;
    return this.fusedPlan(await vector, text && (await text));
  }
}

function checkToArrayOptions(options: ToArrayOptions | undefined): void {
  if (options === undefined) return;
  if (options === null || typeof options !== "object") invalid("toArray() options", "an object", options);
  if (options.bigIntAsNumber !== undefined && typeof options.bigIntAsNumber !== "boolean") {
    invalid("bigIntAsNumber", "true or false", options.bigIntAsNumber);
  }
}

/** Rows from plain columns, as `tableToRows` makes them from the same columns in Arrow. */
function plainRows(columns: NativePlainColumn[], renames: Record<string, string> | undefined, options: ToArrayOptions = {}): Row[] {
  const asNumber = options.bigIntAsNumber === true;
  const names = columns.map((c) => renames?.[c.name] ?? c.name);
  const values = columns.map((c): ArrayLike<unknown> => {
    if (c.numbers) return c.numbers;
    if (c.strings) return c.strings;
    if (c.booleans) return c.booleans;
    const big = c.int64 ?? c.uint64;
    if (big) return asNumber ? Array.from(big, Number) : big;
    const vectors = c.vectors!;
    const d = c.dim!;
    return Array.from({ length: vectors.length / d }, (_, i) => vectors.slice(i * d, (i + 1) * d));
  });
  const n = columns.length === 0 ? 0 : values[0].length;
  const rows: Row[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const row: Row = {};
    for (let c = 0; c < columns.length; c++) row[names[c]] = values[c][i];
    rows[i] = row;
  }
  return rows;
}

/** `verbose` of explainPlan/analyzePlan: a boolean (anything else failed in the napi conversion). */
function verboseArg(verbose: unknown, method: string): void {
  if (typeof verbose !== "boolean") invalid(`${method}() verbose`, "true or false", verbose);
}

/** Inline searches may hold the event loop this long (ms) before it turns again. */
const INLINE_BUDGET_MS = 4;
let inlineTaken = false;
let turnStarted: number | null = null;

/**
 * Whether a search started now may run on this thread until it would wait (see the native
 * `vectorSearch`): an indexed search over cached index parts then costs no thread hops.
 * Only the first search of a synchronous stretch of code may: a loop awaiting one search at a
 * time gets every search inline (each resumes after the flag's reset), while a burst
 * (`Promise.all(queries.map(...))`) runs its first inline and the rest in parallel on the
 * engine's threads. Inline searches stop after INLINE_BUDGET_MS without the event loop
 * turning, so a long loop of searches still lets timers and I/O run.
 */
function takeInline(): boolean {
  if (inlineTaken) return false;
  const now = performance.now();
  if (turnStarted === null) {
    turnStarted = now;
    setImmediate(() => {
      turnStarted = null;
    });
  } else if (now - turnStarted > INLINE_BUDGET_MS) {
    return false;
  }
  inlineTaken = true;
  queueMicrotask(() => {
    inlineTaken = false;
  });
  return true;
}

/** Tables whose searches recently cost more than this (ms) search off this thread. */
const INLINE_MAX_MS = 1;
/** Each table's recent search cost (ms, moving average). */
const searchCost = new WeakMap<object, number>();

/** Records a search's cost. A search that waited (`waited`: an index load, other searches in
 * flight) counts at most twice INLINE_MAX_MS, so a cold start passes in a few searches. */
function noteSearchCost(table: object, ms: number, waited: boolean): void {
  const cost = waited ? Math.min(ms, 2 * INLINE_MAX_MS) : ms;
  const before = searchCost.get(table);
  searchCost.set(table, before === undefined ? cost : 0.75 * before + 0.25 * cost);
}

/** Builds the initial vector query of `table.search(vector)`. */
export function vectorQuery(target: QueryTarget, vector: VectorLike): VectorQuery {
  if (!(Array.isArray(vector) || (ArrayBuffer.isView(vector) && !(vector instanceof DataView)))) {
    invalid("search() vector", "number[] or a typed array", vector);
  }
  // (A hole of a sparse array reads as undefined, caught below.)
  const source = vector as ArrayLike<unknown>;
  if (source.length === 0) {
    throw new InvalidArgumentError("InvalidArgument", "the query vector must be a non-empty array of numbers");
  }
  const values = new Float64Array(source.length);
  for (let i = 0; i < source.length; i++) {
    const v = source[i];
    if (typeof v !== "number" || !Number.isFinite(v)) invalid(`element ${i} of the query vector`, "a finite number", v);
    values[i] = v;
  }
  return new VectorQuery(target, { withRowId: false }, { vector: values, postfilter: false, bypassVectorIndex: false });
}

/** `schema` with the column `from` replaced by a float column `to` (the empty side of a one-sided rerank). */
function swapColumn(schema: Schema, from: string, to: string): Schema {
  return new Schema([...schema.fields.filter((f) => f.name !== from), new Field(to, new Float32(), true)]);
}

/** `table` without column `name`. */
function dropColumn(table: ArrowTable, name: string): ArrowTable {
  if (!table.schema.fields.some((f) => f.name === name)) return table;
  return table.select(table.schema.fields.map((f) => f.name).filter((n) => n !== name));
}

/** Runs a reranker and keeps its best `k` rows. */
async function applyReranker(reranker: Reranker, query: string, vector: RecordBatch, fts: RecordBatch, k: number): Promise<ArrowTable> {
  const out = await reranker.rerankHybrid(query, vector, fts);
  // (A reranker may build its result with another copy of apache-arrow.)
  let table: ArrowTable;
  const o = out as unknown as { batches?: unknown; data?: unknown };
  if (out !== null && typeof out === "object" && Array.isArray(o.batches)) table = ownTable(out);
  else if (Array.isArray(out) && out.length > 0) table = new ArrowTable(ownBatches(out));
  else if (out !== null && typeof out === "object" && o.data !== undefined) table = new ArrowTable([ownBatch(out)]);
  else {
    throw new InvalidArgumentError("InvalidArgument", `the reranker's rerankHybrid() must return a RecordBatch, an array of them or an apache-arrow Table; it returned ${describeValue(out)}`);
  }
  return table.numRows > k ? table.slice(0, k) : table;
}
