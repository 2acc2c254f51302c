// A table: rows, versions and queries.
import type { Schema, Table as ArrowTable } from "apache-arrow";
import { type Data, type DataStream, fromIPC, inMemoryChunks, isDataStream, isRowArray, toIPC } from "./arrow.js";
import { ClosedError, InvalidArgumentError, native, nativeSync } from "./errors.js";
import type { NativeTable } from "./native.js";
import { writeStream } from "./stream.js";
import { Query, type QueryTarget, type VectorLike, type VectorQuery, vectorQuery } from "./query.js";

/** One committed version of a table. */
export interface Version {
  version: number;
  timestamp: Date;
  /** create, append, overwrite, delete or restore */
  operation: string;
}

/** Size facts about the checked-out version. */
export interface TableStats {
  numRows: number;
  numDeletedRows: number;
  numFragments: number;
  /** Bytes of data files. */
  dataBytes: number;
  version: number;
  /** Committed versions in the table's history. */
  numVersions: number;
}

export interface AddOptions {
  /** append (default) or overwrite (replace all rows, and the schema). */
  mode?: "append" | "overwrite";
  /** Schema for plain-object rows (otherwise inferred). */
  schema?: Schema;
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

  /** Live rows, or the rows matching a SQL filter (e.g. `"category = 'a' AND price < 10"`). */
  async countRows(filter?: string): Promise<number> {
    if (filter !== undefined) sqlText(filter, "countRows");
    const t = this.native();
    return native(() => t.countRows(filter));
  }

  /** Adds rows; returns the new version. */
  async add(data: Data | DataStream, options: AddOptions = {}): Promise<number> {
    const mode = options.mode ?? "append";
    if (mode !== "append" && mode !== "overwrite") {
      throw new InvalidArgumentError("InvalidArgument", `mode must be 'append' or 'overwrite', got '${mode}'`);
    }
    const t = this.native();
    // Plain objects appended to a table take its schema, not a fresh inference.
    const schemaFor = async (chunk: unknown) =>
      options.schema ?? (isRowArray(chunk) && mode === "append" ? await this.schema() : undefined);
    if (isDataStream(data)) {
      const rowSchema = options.schema ?? (mode === "append" ? await this.schema() : undefined);
      return writeStream(data, options.schema, rowSchema, (first) => t.addWriter(first, mode));
    }
    // One schema lookup (a native call) serves both paths.
    const schema = await schemaFor(data);
    const chunks = inMemoryChunks(data, schema);
    if (chunks) return writeStream(chunks, undefined, undefined, (first) => t.addWriter(first, mode));
    const bytes = toIPC(data, schema);
    return native(() => t.add(bytes, mode));
  }

  /**
   * Deletes the rows matching a SQL filter, as one new version (none when nothing matches).
   * `"_rowid IN (…)"` deletes rows by the ids `withRowId()` returned.
   */
  async delete(filter: string): Promise<{ numDeletedRows: number; version: number }> {
    sqlText(filter, "delete");
    const t = this.native();
    const [numDeletedRows, version] = await native(() => t.delete(filter));
    return { numDeletedRows, version };
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

  /** Pins the handle to an old version (read-only until checkoutLatest or restore). */
  async checkout(version: number): Promise<void> {
    const t = this.native();
    await native(() => t.checkout(version));
  }

  async checkoutLatest(): Promise<void> {
    const t = this.native();
    await native(() => t.checkoutLatest());
  }

  /** Makes `version` (default: the checked-out one) the newest version; returns it. */
  async restore(version?: number): Promise<number> {
    const t = this.native();
    return native(() => t.restore(version));
  }

  async stats(): Promise<TableStats> {
    const t = this.native();
    const [s, versions] = await Promise.all([native(() => t.stats()), native(() => t.listVersions())]);
    return { ...s, numVersions: versions.length };
  }

  /** A query over all rows. */
  query(): Query {
    return new Query(this);
  }

  /** A vector search (exact until vector indexes land). */
  search(vector: VectorLike): VectorQuery {
    return vectorQuery(this, vector);
  }

  /** Same as `search`. */
  vectorSearch(vector: VectorLike): VectorQuery {
    return vectorQuery(this, vector);
  }

  /** Rows by `_rowid`, in the order given. */
  async takeRowIds(ids: Array<bigint | number>, columns?: string[]): Promise<ArrowTable> {
    const big = ids.map((id) => {
      if (typeof id === "bigint") return id;
      if (Number.isSafeInteger(id) && id >= 0) return BigInt(id);
      throw new InvalidArgumentError("InvalidArgument", `row ids are non-negative integers, got ${id}`);
    });
    const t = this.native();
    return fromIPC(await native(() => t.takeRowIds(big, columns)));
  }

  /** Rows by position (0-based, in scan order), in the order given. */
  async takeOffsets(offsets: number[], columns?: string[]): Promise<ArrowTable> {
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

/** Checks that a SQL argument is a non-empty string. */
function sqlText(text: unknown, method: string): string {
  if (typeof text !== "string" || text.trim() === "") {
    throw new InvalidArgumentError("InvalidArgument", `${method}() takes a non-empty SQL predicate string`);
  }
  return text;
}
