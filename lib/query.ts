// Query builders. Each call returns a new builder; nothing runs until a terminal call
// (toArrow, toArray, stream, explainPlan, analyzePlan).
import { type RecordBatch, Table as ArrowTable } from "apache-arrow";
import { batchFromIPC, fromIPC, type Row, tableToRows, type ToArrayOptions } from "./arrow.js";
import { describeValue, integerArg, invalid, nameArg, numberArg } from "./check.js";
import { InvalidArgumentError, native } from "./errors.js";
import type { NativeTable } from "./native.js";

/** What a query asks for. */
interface QueryState {
  filter?: string;
  columns?: string[];
  renames?: Record<string, string>;
  limit?: number;
  offset?: number;
  withRowId: boolean;
}

/** Vector-search settings. */
interface SearchState {
  vector: number[];
  column?: string;
  /** Unset: the index's distance type when the column has an index, else l2. */
  distanceType?: DistanceType;
  nprobes?: number;
  refineFactor?: number;
  ef?: number;
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

  protected rename(table: ArrowTable): ArrowTable {
    const renames = this.state.renames;
    if (!renames) return table;
    const columns: Record<string, ReturnType<ArrowTable["getChild"]>> = {};
    for (const f of table.schema.fields) columns[renames[f.name] ?? f.name] = table.getChild(f.name);
    return new ArrowTable(columns as never);
  }

  /** Runs the query and returns an apache-arrow Table. */
  async toArrow(): Promise<ArrowTable> {
    const batches: RecordBatch[] = [];
    for await (const batch of this.stream()) batches.push(batch);
    if (batches.length > 0) return new ArrowTable(batches);
    // No rows: still return the right schema.
    const stream = await this.openStream();
    const schema = fromIPC(stream.schema()).schema;
    await stream.cancel();
    return this.rename(new ArrowTable(schema));
  }

  /** Runs the query and returns rows as plain objects. */
  async toArray(options?: ToArrayOptions): Promise<Row[]> {
    return tableToRows(await this.toArrow(), options);
  }

  protected async openStream() {
    const table = this.target.native();
    return native(() =>
      table.scan({
        filter: this.state.filter,
        columns: this.state.columns,
        limit: this.state.limit,
        offset: this.state.offset,
        withRowId: this.state.withRowId,
      }),
    );
  }

  /** Runs the query, yielding apache-arrow RecordBatches one at a time. */
  async *stream(): AsyncGenerator<RecordBatch> {
    const stream = await this.openStream();
    try {
      for (;;) {
        const bytes = await native(() => stream.next());
        if (bytes === null) return;
        const batch = batchFromIPC(bytes);
        if (batch === null) return;
        yield this.state.renames ? this.rename(new ArrowTable([batch])).batches[0] : batch;
      }
    } finally {
      await stream.cancel();
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<RecordBatch> {
    return this.stream();
  }

  /** A description of how the query runs. */
  async explainPlan(): Promise<string> {
    const s = this.state;
    const lines = [
      `Scan ${this.target.native().name}: columns=${s.columns ? `[${s.columns.join(", ")}]` : "*"}` +
        `${s.withRowId ? " +_rowid" : ""}`,
    ];
    if (s.filter !== undefined) {
      lines.push(`  Filter: ${s.filter} (pushed into the scan: pages pruned by statistics, other columns read only where rows match)`);
    }
    if (s.offset !== undefined || s.limit !== undefined) {
      lines.push(`  Slice: offset=${s.offset ?? 0} limit=${s.limit ?? "none"}`);
    }
    return lines.join("\n");
  }

  /** Runs the query and returns its plan with execution metrics. */
  async analyzePlan(): Promise<string> {
    const table = this.target.native();
    const before = table.ioStats();
    const started = performance.now();
    let rows = 0;
    let batches = 0;
    for await (const batch of this.stream()) {
      rows += batch.numRows;
      batches++;
    }
    const elapsed = performance.now() - started;
    const after = table.ioStats();
    return [
      await this.explainPlan(),
      `Metrics: rows=${rows} batches=${batches} elapsed_ms=${elapsed.toFixed(2)} ` +
        `io_ops=${after.readOps - before.readOps} bytes_read=${after.readBytes - before.readBytes} ` +
        `indexes_loaded=0 index_comparisons=0`,
    ].join("\n");
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

  /** Partitions an IVF index probes (default 20; more when a filter leaves too few rows). */
  nprobes(n: number): this {
    return this.withSearch({ nprobes: integerArg(n, "nprobes", { max: U32_MAX }) });
  }

  /**
   * Re-ranks `limit × n` index candidates by exact distance, read from the stored vectors
   * (IVF_PQ default 4; IVF_FLAT distances are exact already).
   */
  refineFactor(n: number): this {
    return this.withSearch({ refineFactor: integerArg(n, "refineFactor", { max: U32_MAX }) });
  }

  /** Search breadth of a graph index (no effect on exact search). */
  ef(n: number): this {
    return this.withSearch({ ef: integerArg(n, "ef", { max: U32_MAX }) });
  }

  /**
   * Filter after ranking instead of before: the `limit` nearest rows are found first and those
   * not matching `where()` are dropped, so fewer than `limit` rows may come back.
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
    return (await this.run()).table;
  }

  /** Runs the search: the result table and how the engine ran it. */
  private async run(): Promise<{ table: ArrowTable; index: string | null; partitionsProbed: number; exactRows: number }> {
    if (this.state.offset !== undefined && this.state.offset > 0) {
      throw new InvalidArgumentError("InvalidArgument", "offset() is not supported on vector searches; raise limit() instead");
    }
    if (this.state.limit !== undefined && this.state.limit > U32_MAX) {
      invalid("limit of a vector search", `at most ${U32_MAX}`, this.state.limit);
    }
    const table = this.target.native();
    const result = await native(() =>
      table.vectorSearch(this.search.vector, {
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
      }),
    );
    return {
      table: this.rename(fromIPC(result.data)),
      index: result.index ?? null,
      partitionsProbed: result.partitionsProbed,
      exactRows: result.exactRows,
    };
  }

  /** Runs the search and returns its plan with execution metrics (index, partitions, rows ranked exactly, I/O). */
  override async analyzePlan(): Promise<string> {
    const table = this.target.native();
    const before = table.ioStats();
    const started = performance.now();
    const run = await this.run();
    const elapsed = performance.now() - started;
    const after = table.ioStats();
    return [
      await this.explainPlan(),
      `Metrics: rows=${run.table.numRows} elapsed_ms=${elapsed.toFixed(2)} ` +
        `io_ops=${after.readOps - before.readOps} bytes_read=${after.readBytes - before.readBytes} ` +
        `index=${run.index ?? "none"} partitions_probed=${run.partitionsProbed} exact_rows=${run.exactRows}`,
    ].join("\n");
  }

  override async *stream(): AsyncGenerator<RecordBatch> {
    yield* (await this.toArrow()).batches;
  }

  override async explainPlan(): Promise<string> {
    const s = this.search;
    const table = this.target.native();
    const k = this.state.limit ?? 10;
    const indices = s.bypassVectorIndex ? [] : await native(() => table.listIndices());
    const index = indices.find((i) => s.column === undefined || i.columns.includes(s.column));
    const usable = index !== undefined && (s.distanceType === undefined || s.distanceType === index.distanceType);
    const lines = usable
      ? [
          `IndexSearch ${table.name}: index=${index.name} (${index.indexType}, ${index.distanceType}) k=${k} ` +
            `nprobes=${s.nprobes ?? 20} refineFactor=${s.refineFactor ?? (index.indexType === "IVF_PQ" ? 4 : "none")}`,
          `  ExactSearch of ${index.numUnindexedRows} rows not yet indexed, merged with the index results`,
        ]
      : [
          `ExactSearch ${table.name}: column=${s.column ?? "(inferred)"} distance=${s.distanceType ?? "l2"} k=${k} ` +
            (index ? "(the index has another distance type)" : s.bypassVectorIndex ? "(index bypassed)" : "(no vector index)"),
        ];
    if (this.state.filter !== undefined) {
      lines.push(
        s.postfilter
          ? `  Postfilter: ${this.state.filter} (applied to the top k; may return fewer)`
          : `  Prefilter: ${this.state.filter} (only matching rows are ranked)`,
      );
    }
    return lines.join("\n");
  }
}

/** Builds the initial vector query of `table.search(vector)`. */
export function vectorQuery(target: QueryTarget, vector: VectorLike): VectorQuery {
  if (!(Array.isArray(vector) || (ArrayBuffer.isView(vector) && !(vector instanceof DataView)))) {
    invalid("search() vector", "number[] or a typed array", vector);
  }
  const values = Array.from(vector as ArrayLike<unknown>);
  if (values.length === 0) {
    throw new InvalidArgumentError("InvalidArgument", "the query vector must be a non-empty array of numbers");
  }
  const bad = values.findIndex((v) => typeof v !== "number" || !Number.isFinite(v));
  if (bad >= 0) invalid(`element ${bad} of the query vector`, "a finite number", values[bad]);
  return new VectorQuery(
    target,
    { withRowId: false },
    { vector: values as number[], postfilter: false, bypassVectorIndex: false },
  );
}
