// A table: rows, versions and queries.
import {
  Binary,
  Bool,
  type DataType,
  Field,
  Float16,
  Float32,
  Float64,
  Int8,
  Int16,
  Int32,
  Int64,
  LargeBinary,
  LargeUtf8,
  Schema,
  type Table as ArrowTable,
  Uint8,
  Uint16,
  Uint32,
  Uint64,
  Utf8,
} from "apache-arrow";
import {
  type Data,
  type DataStream,
  fromIPC,
  inMemoryChunks,
  isDataStream,
  isRowArray,
  type Row,
  rowsToTable,
  schemaToIPC,
  toIPC,
} from "./arrow.js";
import { ownField, ownType } from "./arrow-interop.js";
import { integerArg, invalid, nameArg } from "./check.js";
import { ClosedError, InvalidArgumentError, native, nativeSync } from "./errors.js";
import type { NativeTable } from "./native.js";
import { writeStream } from "./stream.js";
import { type FullTextQuery, type Token, type TokenizerOptions, tokenize } from "./fts.js";
import { type CreateIndexOptions, Index, type IndexProgress, type IndexStats } from "./indices.js";
import {
  type CleanupOptions,
  type CompactionOptions,
  type CompactionStats,
  type MaintenanceActivity,
  type MaintenanceOptions,
  maintenanceProgress,
  nativeCleanup,
  nativeCompaction,
  nativeMaintenance,
  type OptimizeOptions,
  type OptimizeStats,
  type RemovalStats,
} from "./maintenance.js";
import { Query, type QueryTarget, TextQuery, type VectorLike, type VectorQuery, vectorQuery } from "./query.js";

/** One committed version of a table. */
export interface Version {
  version: number;
  timestamp: Date;
  /** create, append, overwrite, delete, update, merge_insert, restore, add_columns, alter_columns or drop_columns */
  operation: string;
}

/** Size facts about the checked-out version, and whether maintenance would help. */
export interface TableStats {
  numRows: number;
  numDeletedRows: number;
  numFragments: number;
  /** Bytes of data files. */
  dataBytes: number;
  version: number;
  /** Versions stored (the history cleanup has not removed). */
  numVersions: number;
  fragmentStats: {
    numFragments: number;
    /** Fragments below the compaction target (1,048,576 rows). */
    numSmallFragments: number;
    /** Fragments by live rows: tiny < 1,024 ≤ small < 65,536 ≤ medium < 1,048,576 ≤ large. */
    sizeClasses: { tiny: number; small: number; medium: number; large: number };
  };
  maintenance: {
    /** Whether `optimize()` would help; `reasons` says how. */
    advised: boolean;
    reasons: string[];
    /** Fragments a default compaction would rewrite. */
    compactableFragments: number;
    /** Versions superseded more than 7 days ago (a default cleanup removes them). */
    versionsPastRetention: number;
    /** Live rows no index covers yet (searched exactly until optimized). */
    unindexedRows: number;
    /** What automatic maintenance did for this table (null when it is off). */
    automatic: MaintenanceActivity | null;
  };
  /**
   * Damaged versions the last open or `checkoutLatest()` skipped, oldest first: empty unless
   * the newest versions could not be read (see `Connection.openTable`).
   */
  skippedVersions: SkippedVersion[];
}

/** A damaged version opening a table skipped. */
export interface SkippedVersion {
  version: number;
  /** What is wrong with it (a file missing or short, a manifest failing its checksum). */
  reason: string;
}

/** What `add()` did (LanceDB's `AddResult`). */
export interface AddResult {
  /**
   * The table version the rows were committed as (appends made at once through one connection
   * commit together, and share it).
   */
  version: number;
}

/**
 * How long a write keeps going against other writers. A commit that loses the race to another
 * writer's rebases onto it and tries again, and an operation that truly conflicts (a delete
 * or update of the same rows, an upsert of the same keys) re-runs against the newer version,
 * with backoff, until `timeoutMs` has passed; then it fails with a retryable
 * `CommitConflictError` (code `CommitTimeout`) saying how long it tried and how many versions
 * other writers committed meanwhile.
 */
export interface WriteOptions {
  /** Milliseconds, 0 or more (0 tries once; `Infinity`, no limit). Default 30,000. */
  timeoutMs?: number;
}

export interface AddOptions extends WriteOptions {
  /** append (default) or overwrite (replace all rows, and the schema). */
  mode?: "append" | "overwrite";
  /** Schema for plain-object rows (otherwise inferred). */
  schema?: Schema;
}

/** Per native table: the schema rows were last converted with, and its IPC bytes. */
const rowSchemas = new WeakMap<NativeTable, { bytes: Buffer; schema: Schema }>();

/**
 * The schema plain-object rows are converted with: the table's, decoded only when it changed
 * since the last call (decoding it on every `add()` of one row was about 5% of the add's CPU
 * in a profile of one writer). Callers must not modify it.
 */
async function rowSchema(t: NativeTable): Promise<Schema> {
  const bytes = await native(() => t.schema());
  const cached = rowSchemas.get(t);
  if (cached?.bytes.equals(bytes)) return cached.schema;
  const schema = fromIPC(bytes).schema;
  rowSchemas.set(t, { bytes, schema });
  return schema;
}

export class Table implements QueryTarget {
  private readonly inner: NativeTable;

  /** @internal */
  constructor(inner: NativeTable) {
    this.inner = inner;
  }

  /** @internal */
  native(): NativeTable {
    if (!this.inner.isOpen()) {
      throw new ClosedError("Closed", `table '${this.inner.name}' is closed`);
    }
    return this.inner;
  }

  get name(): string {
    return this.inner.name;
  }

  /** The table's schema. */
  async schema(): Promise<Schema> {
    const t = this.native();
    return fromIPC(await native(() => t.schema())).schema;
  }

  /**
   * Builds an index on `column` and commits it as a new version: a vector index on vector
   * columns, a scalar index (btree, bitmap, label list) on others, picked by the column's
   * type and data unless `config` says which. Rows added later are found (scanned, or
   * searched exactly) until `optimize()` folds them in.
   */
  async createIndex(column: string, options: CreateIndexOptions = {}): Promise<IndexStats> {
    if (typeof column !== "string" || column === "") {
      throw new InvalidArgumentError("InvalidArgument", "createIndex() takes a column name");
    }
    if (options === null || typeof options !== "object") {
      throw new InvalidArgumentError("InvalidArgument", "createIndex() options must be an object");
    }
    const config = options.config;
    if (config !== undefined && !(config instanceof Index)) {
      throw new InvalidArgumentError(
        "InvalidArgument",
        "config must come from Index.ivfPq(), Index.ivfFlat(), Index.hnswSq(), Index.hnswPq(), Index.ivfRq(), Index.btree(), Index.bitmap(), Index.labelList() or Index.fts()",
      );
    }
    const { progress } = options;
    if (progress !== undefined && typeof progress !== "function") invalid("progress", "a function", progress);
    if (options.name !== undefined) nameArg(options.name, "the index name");
    if (options.replace !== undefined && typeof options.replace !== "boolean") invalid("replace", "true or false", options.replace);
    const t = this.native();
    const o = config?.options ?? {};
    const report = progress
      ? (p: { phase: string; done: number; total: number }) => {
          // A throwing callback must not take the build (or the process) down.
          try {
            progress(p as IndexProgress);
          } catch {
            /* the caller's error; the build goes on */
          }
        }
      : undefined;
    const info = await native(() =>
      t.createIndex(
        column,
        {
          indexType: config?.type,
          distanceType: o.distanceType,
          numPartitions: o.numPartitions,
          numSubVectors: o.numSubVectors,
          numBits: o.numBits,
          maxIterations: o.maxIterations,
          sampleRate: o.sampleRate,
          targetRecall: o.targetRecall,
          m: o.m,
          efConstruction: o.efConstruction,
          name: options.name,
          replace: options.replace,
          fts: config?.fts?.tokenizer,
          withPosition: config?.fts?.withPosition,
        },
        report,
      ),
    );
    return info as IndexStats;
  }

  /** Every index of the checked-out version. */
  async listIndices(): Promise<IndexStats[]> {
    const t = this.native();
    return (await native(() => t.listIndices())) as IndexStats[];
  }

  /** One index by name (`NotFoundError` when there is none). */
  async indexStats(name: string): Promise<IndexStats> {
    nameArg(name, "indexStats() index name");
    const t = this.native();
    return (await native(() => t.indexStats(name))) as IndexStats;
  }

  /** Removes an index (a new version; older versions keep it). */
  async dropIndex(name: string): Promise<number> {
    nameArg(name, "dropIndex() index name");
    const t = this.native();
    return native(() => t.dropIndex(name));
  }

  /**
   * Keeps the table lean in one call: brings every index up to date (rows added since its
   * build are encoded without retraining, deleted rows dropped), compacts small fragments and
   * fragments with many deleted rows into fragments of up to `targetRowsPerFragment` rows, then
   * removes versions superseded before `cleanupOlderThan` (default 7 days ago; the latest and
   * tagged versions are kept) and every file no kept version needs.
   */
  async optimize(options: OptimizeOptions = {}): Promise<OptimizeStats> {
    const compaction = nativeCompaction(options, "optimize() options");
    const cleanup = nativeCleanup(options.cleanupOlderThan, options.deleteUnverified, "cleanupOlderThan");
    const progress = maintenanceProgress(options.progress);
    const t = this.native();
    return (await native(() => t.optimize(compaction, cleanup, progress))) as OptimizeStats;
  }

  /**
   * Rewrites small fragments, fragments with many deleted rows and fragments holding data of
   * dropped or re-typed columns into fewer, fuller ones, as one new version. Indexes keep
   * working without a rebuild; row ids (`_rowid`) of moved rows change.
   */
  async compactFiles(options: CompactionOptions = {}): Promise<CompactionStats> {
    const compaction = nativeCompaction(options, "compactFiles() options");
    const progress = maintenanceProgress(options.progress);
    const t = this.native();
    return (await native(() => t.compactFiles(compaction, progress))) as CompactionStats;
  }

  /**
   * Removes versions superseded before `olderThan` (default 7 days ago), except the latest and
   * tagged ones, and every file no kept version references. A handle reading a removed version
   * keeps its place but may find its files gone: call `checkoutLatest()`.
   */
  async cleanupOldVersions(options: CleanupOptions = {}): Promise<RemovalStats> {
    if (options === null || typeof options !== "object") invalid("cleanupOldVersions() options", "an object", options);
    const cleanup = nativeCleanup(options.olderThan, options.deleteUnverified, "olderThan");
    const progress = maintenanceProgress(options.progress);
    const t = this.native();
    return native(() => t.cleanupOldVersions(cleanup, progress));
  }

  /**
   * This table's automatic maintenance on this connection: `false` turns it off, `true` or
   * settings turn it on (replacing the connection's), `null` goes back to the connection's.
   */
  setMaintenance(settings: boolean | MaintenanceOptions | null): void {
    const t = this.native();
    if (settings === null) {
      nativeSync(() => t.setMaintenance(undefined, undefined));
      return;
    }
    const { options, onEvent } = nativeMaintenance(settings, "setMaintenance() settings");
    nativeSync(() => t.setMaintenance(options, onEvent));
  }

  /** Live rows, or the rows matching a SQL filter (e.g. `"category = 'a' AND price < 10"`). */
  async countRows(filter?: string): Promise<number> {
    if (filter !== undefined) sqlText(filter, "countRows");
    const t = this.native();
    return native(() => t.countRows(filter));
  }

  /**
   * Adds rows: plain objects, an apache-arrow Table or RecordBatch(es) — made by any apache-arrow
   * >= 15, not only the copy Quiver imports — Arrow IPC bytes, or a stream of batches or row
   * arrays. All of it commits as one version: `{ version }`.
   */
  async add(data: Data | DataStream, options: AddOptions = {}): Promise<AddResult> {
    if (options === null || typeof options !== "object") invalid("add() options", "an object", options);
    const mode = options.mode ?? "append";
    if (mode !== "append" && mode !== "overwrite") invalid("mode", "'append' or 'overwrite'", mode);
    const timeoutMs = checkTimeout(options.timeoutMs);
    const t = this.native();
    // Plain objects appended to a table take its schema, not a fresh inference.
    const schemaFor = async (chunk: unknown) =>
      options.schema ?? (isRowArray(chunk) && mode === "append" ? await rowSchema(t) : undefined);
    if (isDataStream(data)) {
      const streamSchema = options.schema ?? (mode === "append" ? await rowSchema(t) : undefined);
      return { version: await writeStream(data, options.schema, streamSchema, (first) => t.addWriter(first, mode, timeoutMs)) };
    }
    // One schema lookup (a native call) serves both paths.
    const schema = await schemaFor(data);
    const chunks = inMemoryChunks(data, schema);
    if (chunks) return { version: await writeStream(chunks, undefined, undefined, (first) => t.addWriter(first, mode, timeoutMs)) };
    const bytes = toIPC(data, schema);
    return { version: await native(() => t.add(bytes, mode, timeoutMs)) };
  }

  /**
   * Deletes the rows matching a SQL filter, as one new version (none when nothing matches).
   * `"_rowid IN (…)"` deletes rows by the ids `withRowId()` returned.
   */
  async delete(filter: string, options: WriteOptions = {}): Promise<{ numDeletedRows: number; version: number }> {
    sqlText(filter, "delete");
    if (options === null || typeof options !== "object") invalid("delete() options", "an object", options);
    const timeoutMs = checkTimeout(options.timeoutMs);
    const t = this.native();
    const [numDeletedRows, version] = await native(() => t.delete(filter, timeoutMs));
    return { numDeletedRows, version };
  }

  /**
   * Sets columns of the rows matching `where` (every row when omitted), as one new version.
   * `values` are JavaScript values, converted to each column's type; `valuesSql` are SQL
   * expressions over the old row, e.g. `{ price: "price * 1.1" }`.
   */
  async update(options: UpdateOptions): Promise<{ rowsUpdated: number; version: number }> {
    if (options === null || typeof options !== "object") {
      throw new InvalidArgumentError("InvalidArgument", "update() takes { where?, values?, valuesSql? }");
    }
    const { where, values, valuesSql } = options;
    const timeoutMs = checkTimeout(options.timeoutMs);
    if (where !== undefined) sqlText(where, "update");
    if (values !== undefined && (values === null || typeof values !== "object")) invalid("update() values", "an object", values);
    if (valuesSql !== undefined && (valuesSql === null || typeof valuesSql !== "object")) {
      invalid("update() valuesSql", "an object", valuesSql);
    }
    const sqlEntries = Object.entries(valuesSql ?? {});
    for (const [column, expr] of sqlEntries) {
      if (typeof expr !== "string" || expr.trim() === "") {
        throw new InvalidArgumentError("InvalidArgument", `valuesSql.${column} must be a SQL expression string`);
      }
    }
    const valueNames = Object.keys(values ?? {});
    if (sqlEntries.length === 0 && valueNames.length === 0) {
      throw new InvalidArgumentError("InvalidArgument", "update() needs values or valuesSql with at least one column");
    }
    let literals: Uint8Array | undefined;
    if (values && valueNames.length > 0) {
      const schema = await this.schema();
      const fields = valueNames.map((name) => {
        const field = schema.fields.find((f) => f.name === name);
        if (!field) {
          throw new InvalidArgumentError(
            "InvalidArgument",
            `update sets column '${name}', which does not exist; the columns are: ${schema.fields.map((f) => f.name).join(", ")}`,
          );
        }
        // Nullability is the engine's to check, with a message naming the column.
        return field.clone({ nullable: true });
      });
      literals = toIPC(rowsToTable([values as Row], new Schema(fields)));
    }
    const t = this.native();
    const [rowsUpdated, version] = await native(() =>
      t.update(
        where,
        sqlEntries.map(([c]) => c),
        sqlEntries.map(([, e]) => e),
        literals,
        timeoutMs,
      ),
    );
    return { rowsUpdated, version };
  }

  /**
   * Starts an upsert keyed on `on`: chain `whenMatchedUpdateAll()`, `whenNotMatchedInsertAll()`
   * and/or `whenNotMatchedBySourceDelete()`, then `execute(data)`.
   */
  mergeInsert(on: string | string[]): MergeInsertBuilder {
    const keys = typeof on === "string" ? [on] : on;
    // Array.from turns the holes of a sparse array into undefined (every, map and forEach skip them).
    if (!Array.isArray(keys) || keys.length === 0 || !Array.from(keys).every((k) => typeof k === "string")) {
      throw new InvalidArgumentError("InvalidArgument", "mergeInsert() takes a key column name or an array of names");
    }
    return new MergeInsertBuilder(this, [...keys]);
  }

  /**
   * Adds columns, as one new version. Give `[{ name, valueSql }]` to compute each column from
   * a SQL expression over the existing ones (e.g. `"price * qty"`), or an Arrow `Field`,
   * `Field[]` or `Schema` to add nullable columns that are NULL in every row. Existing data
   * files are not rewritten: the new values go into new files beside them.
   */
  async addColumns(newColumns: AddColumnsSql[] | Field | Field[] | Schema): Promise<{ version: number }> {
    const t = this.native();
    // Array.from turns the holes of a sparse array into undefined (every, map and forEach skip them).
    const sqlColumns: unknown[] = Array.isArray(newColumns) ? Array.from(newColumns as unknown[]) : [];
    if (sqlColumns.length > 0 && sqlColumns.every(isSqlColumn)) {
      const names = sqlColumns.map((c) => c.name);
      const sqls = sqlColumns.map((c) => c.valueSql);
      return { version: await native(() => t.addColumnsSql(names, sqls)) };
    }
    const fields: unknown[] = isSchema(newColumns) ? newColumns.fields : Array.isArray(newColumns) ? Array.from(newColumns as unknown[]) : [newColumns];
    if (fields.length === 0 || !fields.every(isField)) {
      throw new InvalidArgumentError(
        "InvalidArgument",
        "addColumns() takes [{ name, valueSql }, …] or an Arrow Field, Field[] or Schema",
      );
    }
    // Fields of another apache-arrow copy are rebuilt in ours.
    const schema = schemaToIPC(new Schema(fields.map((f) => ownField(f))));
    return { version: await native(() => t.addColumnsNull(schema)) };
  }

  /**
   * Renames columns (`path` may name a struct member, `"meta.color"`), changes their
   * nullability, or widens their type (`dataType`: an Arrow type or a name such as `"int64"`;
   * only casts that keep every value, e.g. int32 → int64, float32 → float64), as one new version.
   */
  async alterColumns(alterations: ColumnAlteration[]): Promise<{ version: number }> {
    if (!Array.isArray(alterations) || alterations.length === 0) {
      throw new InvalidArgumentError("InvalidArgument", "alterColumns() takes a non-empty array of { path, rename?, nullable?, dataType? }");
    }
    // Array.from visits the holes of a sparse array (as undefined), which map would skip.
    const native_ = Array.from(alterations, (a: ColumnAlteration | undefined) => {
      if (a === null || typeof a !== "object" || typeof a.path !== "string" || a.path === "") {
        throw new InvalidArgumentError("InvalidArgument", "each alteration needs a column `path` string");
      }
      if (a.rename !== undefined && typeof a.rename !== "string") {
        invalid(`rename of '${a.path}'`, "a string", a.rename);
      }
      if (a.nullable !== undefined && typeof a.nullable !== "boolean") {
        invalid(`nullable of '${a.path}'`, "true or false", a.nullable);
      }
      return {
        path: a.path,
        rename: a.rename,
        nullable: a.nullable,
        dataType:
          a.dataType === undefined
            ? undefined
            : schemaToIPC(new Schema([new Field("type", dataTypeOf(a.dataType, a.path), true)])),
      };
    });
    const t = this.native();
    return { version: await native(() => t.alterColumns(native_)) };
  }

  /**
   * Drops top-level columns, as one new version. Only the schema changes: older versions still
   * read them, and their space is reclaimed by compaction.
   */
  async dropColumns(names: string[]): Promise<{ version: number }> {
    if (!Array.isArray(names) || names.length === 0 || !Array.from(names).every((n) => typeof n === "string")) {
      throw new InvalidArgumentError("InvalidArgument", "dropColumns() takes a non-empty array of column names");
    }
    const t = this.native();
    return { version: await native(() => t.dropColumns(names)) };
  }

  /** The version this handle reads. */
  async version(): Promise<number> {
    const t = this.native();
    return native(() => t.version());
  }

  async listVersions(): Promise<Version[]> {
    const t = this.native();
    const versions = await native(() => t.listVersions());
    return versions.map((v) => ({ version: v.version, timestamp: new Date(v.timestamp), operation: v.operation }));
  }

  /**
   * Pins the handle to an old version, given by number or by tag name (read-only until
   * checkoutLatest or restore).
   */
  async checkout(version: number | string): Promise<void> {
    const t = this.native();
    if (typeof version === "string") {
      const tag = nameArg(version, "checkout() tag");
      await native(() => t.checkoutTag(tag));
      return;
    }
    integerArg(version, "version", { min: 1 });
    await native(() => t.checkout(version));
  }

  /** Names for versions (see {@link Tags}). */
  tags(): Tags {
    return new Tags(() => this.native());
  }

  /**
   * Moves to the newest intact version (damaged newer ones are skipped and reported, as
   * `Connection.openTable` does).
   */
  async checkoutLatest(): Promise<void> {
    const t = this.native();
    await native(() => t.checkoutLatest());
    this.warnIfRecovered();
  }

  /** @internal Emits a process warning naming the damaged versions the handle skipped. */
  warnIfRecovered(): void {
    const skipped = this.inner.skippedVersions();
    if (skipped.length === 0) return;
    const list = skipped.map((s) => `version ${s.version} (${s.reason})`).join("; ");
    process.emitWarning(
      `table '${this.inner.name}' opened at its newest intact version; skipped damaged ${list}. ` +
        "The next write builds on the intact version; nothing was deleted.",
      { type: "QuiverRecoveryWarning", code: "QUIVER_SKIPPED_VERSIONS" },
    );
  }

  /** Makes `version` (default: the checked-out one) the newest version; returns it. */
  async restore(version?: number): Promise<number> {
    if (version !== undefined) integerArg(version, "version", { min: 1 });
    const t = this.native();
    return native(() => t.restore(version));
  }

  async stats(): Promise<TableStats> {
    const t = this.native();
    const s = await native(() => t.stats());
    const m = s.maintenance;
    return {
      numRows: s.numRows,
      numDeletedRows: s.numDeletedRows,
      numFragments: s.numFragments,
      dataBytes: s.dataBytes,
      version: s.version,
      numVersions: s.versions,
      fragmentStats: {
        numFragments: s.numFragments,
        numSmallFragments: s.numSmallFragments,
        sizeClasses: {
          tiny: s.fragmentsTiny,
          small: s.fragmentsSmall,
          medium: s.fragmentsMedium,
          large: s.fragmentsLarge,
        },
      },
      maintenance: {
        advised: s.reasons.length > 0,
        reasons: s.reasons,
        compactableFragments: s.compactableFragments,
        versionsPastRetention: s.versionsPastRetention,
        unindexedRows: s.unindexedRows,
        automatic: m
          ? {
              rounds: m.rounds,
              compactions: m.compactions,
              cleanups: m.cleanups,
              indexRefreshes: m.indexRefreshes,
              errors: m.errors,
              active: m.active,
              lastRun: m.lastRoundMicros > 0 ? new Date(m.lastRoundMicros / 1000) : null,
            }
          : null,
      },
      skippedVersions: s.skippedVersions.map((v) => ({ version: v.version, reason: v.reason })),
    };
  }

  /** A query over all rows. */
  query(): Query {
    return new Query(this);
  }

  /**
   * A vector search (the nearest rows to `vector`, through the column's index), or with a
   * string or full-text query object a full-text search (BM25, see `Query.fullTextSearch`;
   * `ftsColumns` names the columns). `queryType` `"vector"` and `"hybrid"` need a vector (this
   * version has no embedding functions to make one from text); for hybrid search call
   * `search(vector).fullTextSearch(text)`.
   */
  search(vector: VectorLike): VectorQuery;
  search(query: string | FullTextQuery, queryType?: "auto" | "fts", ftsColumns?: string | string[]): TextQuery;
  search(query: VectorLike | string | FullTextQuery, queryType: "auto" | "fts" | "vector" | "hybrid" = "auto", ftsColumns?: string | string[]): TextQuery | VectorQuery {
    if (!["auto", "fts", "vector", "hybrid"].includes(queryType)) invalid("search() queryType", '"auto", "fts", "vector" or "hybrid"', queryType);
    const text = typeof query === "string" || (query !== null && typeof query === "object" && typeof (query as FullTextQuery).toNodes === "function");
    if (!text) {
      if (queryType === "fts") invalid("search() query of queryType fts", "a string or a full-text query object", query);
      return vectorQuery(this, query as VectorLike);
    }
    if (queryType === "vector" || queryType === "hybrid") {
      throw new InvalidArgumentError(
        "InvalidArgument",
        `search(text, "${queryType}") needs an embedding function to turn the text into a vector, which this version does not have; pass the vector: search(vector)${queryType === "hybrid" ? ".fullTextSearch(text)" : ""}`,
      );
    }
    return new TextQuery(this).fullTextSearch(query as string | FullTextQuery, ftsColumns === undefined ? undefined : { columns: ftsColumns });
  }

  /**
   * The tokens of `text` with their positions: as the full-text index on `column` makes them
   * (`{ column }`), or as an index with these tokenizer options would.
   */
  async tokenize(text: string, options: { column: string } | TokenizerOptions = {}): Promise<Token[]> {
    if (typeof text !== "string") invalid("tokenize() text", "a string", text);
    if (options !== null && typeof options === "object" && "column" in options) {
      const column = nameArg((options as { column: string }).column, "tokenize() column");
      const t = this.native();
      return native(() => t.tokenize(text, column));
    }
    return tokenize(text, options as TokenizerOptions);
  }

  /** Same as `search`. */
  vectorSearch(vector: VectorLike): VectorQuery {
    return vectorQuery(this, vector);
  }

  /** Rows by `_rowid`, in the order given. */
  async takeRowIds(ids: Array<bigint | number>, columns?: string[]): Promise<ArrowTable> {
    if (!Array.isArray(ids)) invalid("takeRowIds() ids", "an array of row ids", ids);
    const big = Array.from(ids, (id: unknown, i) => {
      if (typeof id === "bigint" && id >= 0n && id < 2n ** 64n) return id;
      if (typeof id === "number" && Number.isSafeInteger(id) && id >= 0) return BigInt(id);
      return invalid(`row id ${i}`, "a non-negative integer (number or bigint)", id);
    });
    columnsArg(columns, "takeRowIds");
    const t = this.native();
    return fromIPC(await native(() => t.takeRowIds(big, columns)));
  }

  /** Rows by position (0-based, in scan order), in the order given. */
  async takeOffsets(offsets: number[], columns?: string[]): Promise<ArrowTable> {
    if (!Array.isArray(offsets)) invalid("takeOffsets() offsets", "an array of row positions", offsets);
    for (let i = 0; i < offsets.length; i++) integerArg(offsets[i], `offset ${i}`);
    columnsArg(columns, "takeOffsets");
    const t = this.native();
    return fromIPC(await native(() => t.takeOffsets(offsets, columns)));
  }

  /** All rows as an apache-arrow Table. */
  async toArrow(): Promise<ArrowTable> {
    return this.query().toArrow();
  }

  isOpen(): boolean {
    return this.inner.isOpen();
  }

  /** Releases the handle; later calls throw ClosedError. */
  close(): void {
    nativeSync(() => this.inner.close());
  }

  display(): string {
    return `Table(${this.inner.name}${this.inner.isOpen() ? "" : ", closed"})`;
  }

  toString(): string {
    return this.display();
  }
}

/** Options of `Table.update`. */
export interface UpdateOptions extends WriteOptions {
  /** SQL filter of the rows to update; all rows when omitted. */
  where?: string;
  /** New values as JavaScript values, by column. */
  values?: Record<string, unknown>;
  /** New values as SQL expressions over the old row, by column. */
  valuesSql?: Record<string, string>;
}

/** Counts and version of a merge-insert. */
export interface MergeResult {
  numInsertedRows: number;
  numUpdatedRows: number;
  numDeletedRows: number;
  version: number;
}

interface MergeState {
  matched?: { where?: string };
  insert: boolean;
  bySource?: { where?: string };
}

/** An upsert being built; each call returns a new builder. */
export class MergeInsertBuilder {
  readonly #table: Table;
  readonly #on: string[];
  readonly #state: MergeState;

  constructor(table: Table, on: string[], state: MergeState = { insert: false }) {
    this.#table = table;
    this.#on = on;
    this.#state = state;
  }

  /** Replaces matched rows by their source rows; with `where` (SQL over `target.col` and `source.col`), only where it holds. */
  whenMatchedUpdateAll(options: { where?: string } = {}): MergeInsertBuilder {
    if (options === null || typeof options !== "object") invalid("whenMatchedUpdateAll() options", "an object", options);
    if (options.where !== undefined) sqlText(options.where, "whenMatchedUpdateAll");
    return new MergeInsertBuilder(this.#table, this.#on, { ...this.#state, matched: { where: options.where } });
  }

  /** Inserts source rows whose key matches no row of the table. */
  whenNotMatchedInsertAll(): MergeInsertBuilder {
    return new MergeInsertBuilder(this.#table, this.#on, { ...this.#state, insert: true });
  }

  /** Deletes table rows whose key is not in the source; with `where`, only those matching it. */
  whenNotMatchedBySourceDelete(options: { where?: string } = {}): MergeInsertBuilder {
    if (options === null || typeof options !== "object") invalid("whenNotMatchedBySourceDelete() options", "an object", options);
    if (options.where !== undefined) sqlText(options.where, "whenNotMatchedBySourceDelete");
    return new MergeInsertBuilder(this.#table, this.#on, { ...this.#state, bySource: { where: options.where } });
  }

  /**
   * Runs the upsert with `data` as the source, as one new version. Duplicate source keys are an
   * error. It conflicts only with concurrent writes of rows holding its keys (and re-runs
   * then); with `whenNotMatchedBySourceDelete`, which covers every row, with any rows added.
   */
  async execute(data: Data, options: WriteOptions = {}): Promise<MergeResult> {
    if (options === null || typeof options !== "object") invalid("execute() options", "an object", options);
    const timeoutMs = checkTimeout(options.timeoutMs);
    const schema = isRowArray(data) ? await rowSchema(this.#table.native()) : undefined;
    const bytes = toIPC(data, schema);
    const t = this.#table.native();
    return native(() =>
      t.mergeInsert(
        this.#on,
        {
          whenMatchedUpdateAll: this.#state.matched !== undefined,
          matchedWhere: this.#state.matched?.where,
          whenNotMatchedInsertAll: this.#state.insert,
          whenNotMatchedBySourceDelete: this.#state.bySource !== undefined,
          bySourceWhere: this.#state.bySource?.where,
          timeoutMs,
        },
        bytes,
      ),
    );
  }
}

/** A write's `timeoutMs`: a number of milliseconds, 0 or more (Infinity allowed). */
function checkTimeout(timeoutMs: unknown): number | undefined {
  if (timeoutMs === undefined) return undefined;
  if (typeof timeoutMs !== "number" || Number.isNaN(timeoutMs) || timeoutMs < 0) {
    invalid("timeoutMs", "a number of milliseconds, 0 or more", timeoutMs);
  }
  return timeoutMs;
}

/** Checks that a SQL argument is a non-empty string. */
/** A column computed by a SQL expression over the existing columns. */
export interface AddColumnsSql {
  name: string;
  /** e.g. `"price * qty"`, `"lower(title)"`, `"CAST(NULL AS BIGINT)"` */
  valueSql: string;
}

/** A change to one column; what is left out stays as it is. */
export interface ColumnAlteration {
  /** A top-level column, or `"parent.child"` for a struct member. */
  path: string;
  rename?: string;
  /** `true` allows NULLs; `false` requires that no stored row holds one. */
  nullable?: boolean;
  /** A wider type: an Arrow type, or a name such as `"int64"`, `"float64"`, `"large_utf8"`. */
  dataType?: string | DataType;
}

const TYPE_NAMES: Record<string, () => DataType> = {
  int8: () => new Int8(),
  int16: () => new Int16(),
  int32: () => new Int32(),
  int64: () => new Int64(),
  uint8: () => new Uint8(),
  uint16: () => new Uint16(),
  uint32: () => new Uint32(),
  uint64: () => new Uint64(),
  float16: () => new Float16(),
  float32: () => new Float32(),
  float: () => new Float32(),
  float64: () => new Float64(),
  double: () => new Float64(),
  utf8: () => new Utf8(),
  string: () => new Utf8(),
  large_utf8: () => new LargeUtf8(),
  large_string: () => new LargeUtf8(),
  binary: () => new Binary(),
  large_binary: () => new LargeBinary(),
  bool: () => new Bool(),
  boolean: () => new Bool(),
};

function dataTypeOf(type: string | DataType, path: string): DataType {
  if (typeof type === "string") {
    const make = TYPE_NAMES[type.toLowerCase()];
    if (!make) {
      throw new InvalidArgumentError(
        "InvalidArgument",
        `unknown dataType '${type}' for '${path}'; use an Arrow type or one of: ${Object.keys(TYPE_NAMES).join(", ")}`,
      );
    }
    return make();
  }
  if (type === null || typeof type !== "object" || typeof (type as DataType).typeId !== "number") {
    invalid(`dataType of '${path}'`, "an Arrow type or a type name", type);
  }
  // A type of another apache-arrow copy is rebuilt in ours.
  return ownType(type, path);
}

function isSqlColumn(x: unknown): x is AddColumnsSql {
  return (
    typeof x === "object" &&
    x !== null &&
    typeof (x as AddColumnsSql).name === "string" &&
    typeof (x as AddColumnsSql).valueSql === "string"
  );
}

// Duck-typed, so Arrow objects from another copy of apache-arrow work too.
function isField(x: unknown): x is Field {
  return typeof x === "object" && x !== null && typeof (x as Field).name === "string" && "type" in x && "nullable" in x;
}

function isSchema(x: unknown): x is Schema {
  return typeof x === "object" && x !== null && Array.isArray((x as Schema).fields) && !("name" in x);
}

/** Checks an optional list of column names. */
function columnsArg(columns: unknown, method: string): void {
  if (columns !== undefined && !(Array.isArray(columns) && Array.from(columns).every((c) => typeof c === "string"))) {
    invalid(`${method}() columns`, "an array of column names", columns);
  }
}

function sqlText(text: unknown, method: string): string {
  if (typeof text !== "string" || text.trim() === "") {
    throw new InvalidArgumentError("InvalidArgument", `${method}() takes a non-empty SQL predicate string`);
  }
  return text;
}

/** What a tag names. */
export interface TagContents {
  version: number;
}

/**
 * Names for versions, like git tags: `create("v1", 3)`, then `table.checkout("v1")`. A tag is
 * a small file under the table's folder; creating one never commits a version, and of two
 * writers creating the same name exactly one succeeds. Names: letters, digits, `.`, `_`, `-`.
 */
export class Tags {
  constructor(private readonly table: () => NativeTable) {}

  /** Every tag and its version. */
  async list(): Promise<Record<string, TagContents>> {
    const t = this.table();
    const tags = await native(() => t.listTags());
    return Object.fromEntries(tags.map((tag) => [tag.name, { version: tag.version }]));
  }

  /** The version `tag` names (a NotFoundError when there is no such tag). */
  async getVersion(tag: string): Promise<number> {
    const name = nameArg(tag, "tag");
    const t = this.table();
    return native(() => t.tagVersion(name));
  }

  /** Names `version` (which must exist) `tag`; an InvalidArgumentError if the tag exists. */
  async create(tag: string, version: number): Promise<void> {
    const name = nameArg(tag, "tag");
    integerArg(version, "version", { min: 1 });
    const t = this.table();
    await native(() => t.createTag(name, version));
  }

  /** Moves the existing `tag` to `version`. */
  async update(tag: string, version: number): Promise<void> {
    const name = nameArg(tag, "tag");
    integerArg(version, "version", { min: 1 });
    const t = this.table();
    await native(() => t.updateTag(name, version));
  }

  /** Removes `tag` (the version stays). */
  async delete(tag: string): Promise<void> {
    const name = nameArg(tag, "tag");
    const t = this.table();
    await native(() => t.deleteTag(name));
  }
}
