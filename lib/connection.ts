// Connections: where tables live.
import type { Schema } from "apache-arrow";
import { type Data, type DataStream, inMemoryChunks, isDataStream, schemaToIPC, toIPC } from "./arrow.js";
import { writeStream } from "./stream.js";
import { integerArg, invalid, nameArg } from "./check.js";
import { type MaintenanceOptions, nativeMaintenance } from "./maintenance.js";
import { ClosedError, InvalidArgumentError, native, nativeSync } from "./errors.js";
import { binding, type NativeConnection, type NativeSession } from "./native.js";
import { Table } from "./table.js";

export interface ConnectOptions {
  /**
   * Seconds between checks for commits made by other connections or processes. The default,
   * 0, checks before every read (one small request), so another process's writes are visible
   * at once; `Infinity` never checks (call `checkoutLatest()` to move forward).
   */
  readConsistencyInterval?: number;
  /** Byte budget of the metadata cache (file metadata, deletion vectors, manifests; default 1 GiB). */
  metadataCacheBytes?: number;
  /** Byte budget of the index cache (loaded indexes and their parts; default 2 GiB). */
  indexCacheBytes?: number;
  /**
   * Caches shared with other connections (see `Session`); the connection then has no caches
   * of its own, and `metadataCacheBytes` / `indexCacheBytes` belong to the session.
   */
  session?: Session;
  /**
   * Local databases only: exact search reads vector pages through memory maps of the data
   * files instead of copying them out with `pread` — about 1.6× faster on data in the page
   * cache. Off by default because of what a mapping does when a file changes under it: if
   * another program truncates or rewrites a data file in place while it is mapped, or the disk
   * fails under the mapping, the OS ends the process (SIGBUS) where the default fails one query
   * with a typed error. Quiver itself never modifies a data file once written.
   */
  memoryMap?: boolean;
  /**
   * Automatic maintenance (on by default): after writes settle, small fragments are compacted,
   * indexes brought up to date and versions older than the retention (7 days) cleaned up, in
   * the background, never blocking a write. `false` turns it off; settings tune it. See
   * `MaintenanceOptions`.
   */
  maintenance?: boolean | MaintenanceOptions;
  /**
   * What an acknowledged write survives. `"full"` (default): every file a commit writes, the
   * manifest that publishes it and their folder entries are flushed to disk (fsync) before
   * the promise resolves, so a commit that resolved survives power loss or an OS crash.
   * `"process"`: nothing is flushed on commit — a resolved commit survives the process being
   * killed, but a power cut may take back the last seconds of commits (the table still opens,
   * at an older version). For bulk loads and scratch data. Cloud stores are durable by their
   * API either way; memory:// has nothing to flush.
   */
  durability?: "full" | "process";
  /**
   * Largest share of a table's rows (above 0, at most 1; default 0.25) that a scalar index
   * (BTREE, BITMAP, LABEL_LIST) may select for a filter to be answered through it; a less
   * selective predicate is scanned instead, which is then cheaper. 1 uses an index whenever
   * one can answer.
   */
  scalarIndexMaxShare?: number;
  /**
   * Settings of an `s3://` database (local and memory databases take none, and refuse them):
   * `region`, `endpoint`, `accessKeyId`, `secretAccessKey`, `sessionToken`, `allowHttp`,
   * `virtualHostedStyleRequest`, `timeout`, `connectTimeout`, `maxRetries`, `retryTimeout`,
   * the throttle's `quiver_aimd_*` keys, or any `aws_*` key of object_store's S3
   * configuration (as LanceDB takes them). Unset ones fall back to the `AWS_*` environment
   * variables, then to the shared credentials file (`~/.aws/credentials`, `AWS_PROFILE`),
   * then to web-identity, container and instance credentials. An unknown key is an
   * `InvalidArgumentError` naming the accepted ones. See the README's S3 section.
   */
  storageOptions?: Record<string, string | number | boolean>;
}

export interface CreateTableOptions {
  /** create (default): fail if the table exists; overwrite: replace it. */
  mode?: "create" | "overwrite";
  /** With mode create: open the existing table instead of failing. */
  existOk?: boolean;
  /** Schema for the data (required for empty data; overrides inference). */
  schema?: Schema;
}

/**
 * Byte-sized caches (metadata: file metadata, deletion vectors, manifests; index: loaded
 * indexes and their parts) that several connections share, so that two connections to one
 * database, or to several, stay within one memory budget and reuse each other's entries.
 * Defaults: 1 GiB of metadata, 2 GiB of indexes, 256 MiB of S3 data blocks.
 *
 * ```ts
 * const session = new Session({ indexCacheBytes: 512 * 2 ** 20 });
 * const a = await connect("data/a", { session });
 * const b = await connect("s3://bucket/b", { session, storageOptions });
 * session.sizeBytes();
 * ```
 */
export class Session {
  /** @internal */
  readonly inner: NativeSession;

  /**
   * `dataCacheBytes` (default 256 MiB) bounds the blocks of S3 data files kept so that warm
   * searches fetch their rows without a round trip (local files have the OS page cache).
   */
  constructor(options: { metadataCacheBytes?: number; indexCacheBytes?: number; dataCacheBytes?: number } = {}) {
    if (options === null || typeof options !== "object") invalid("Session options", "an object", options);
    for (const key of ["metadataCacheBytes", "indexCacheBytes", "dataCacheBytes"] as const) {
      const bytes = options[key];
      if (bytes !== undefined) integerArg(bytes, key, { expected: "a whole number of bytes >= 0" });
    }
    this.inner = new binding.NativeSession(options.metadataCacheBytes, options.indexCacheBytes, options.dataCacheBytes);
  }

  /** Bytes the caches hold now. */
  sizeBytes(): number {
    return this.inner.sizeBytes();
  }

  /** Entries the caches hold now (approximate while queries run). */
  approxNumItems(): number {
    return this.inner.approxNumItems();
  }
}

export class Connection {
  private readonly inner: NativeConnection;
  /** The shared session this connection's caches are (undefined: caches of its own). */
  readonly session?: Session;

  /** @internal */
  constructor(inner: NativeConnection, session?: Session) {
    this.inner = inner;
    this.session = session;
  }

  private native(): NativeConnection {
    if (!this.inner.isOpen()) throw new ClosedError("Closed", `connection to '${this.inner.uri()}' is closed`);
    return this.inner;
  }

  /** The URI this connection was opened with. */
  get uri(): string {
    return this.inner.uri();
  }

  /** Table names, sorted; page with `startAfter` and `limit`. */
  async tableNames(options: { startAfter?: string; limit?: number } = {}): Promise<string[]> {
    if (options === null || typeof options !== "object") invalid("tableNames() options", "an object", options);
    if (options.startAfter !== undefined && typeof options.startAfter !== "string") {
      invalid("startAfter", "a table name", options.startAfter);
    }
    if (options.limit !== undefined) integerArg(options.limit, "limit");
    const c = this.native();
    let names = await native(() => c.tableNames());
    if (options.startAfter !== undefined) names = names.filter((n) => n > (options.startAfter as string));
    if (options.limit !== undefined) names = names.slice(0, options.limit);
    return names;
  }

  /**
   * Opens a table at its latest version, or pinned (read-only) at `version`. When the newest
   * versions are damaged (a power cut before their files reached the disk, or files removed
   * outside Quiver), the table opens at the newest intact version: the skipped ones are
   * reported by a process warning (`QuiverRecoveryWarning`) and `stats().skippedVersions`,
   * and the next write builds on the intact version. Nothing is deleted. An explicit
   * `version` that is damaged fails with a `CorruptionError`.
   */
  async openTable(name: string, options: { version?: number } = {}): Promise<Table> {
    nameArg(name, "the table name");
    if (options === null || typeof options !== "object") invalid("openTable() options", "an object", options);
    if (options.version !== undefined) integerArg(options.version, "version", { min: 1 });
    const c = this.native();
    const table = new Table(await native(() => c.openTable(name, options.version)));
    table.warnIfRecovered();
    return table;
  }

  /**
   * Creates a table from rows, Arrow data, IPC bytes or a stream of batches. Arrow tables,
   * batches and schemas may come from any apache-arrow >= 15, not only the copy Quiver imports.
   */
  async createTable(name: string, data: Data | DataStream, options: CreateTableOptions = {}): Promise<Table> {
    nameArg(name, "the table name");
    if (options === null || typeof options !== "object") invalid("createTable() options", "an object", options);
    const mode = options.mode ?? "create";
    if (mode !== "create" && mode !== "overwrite") invalid("mode", "'create' or 'overwrite'", mode);
    const nativeMode = mode === "create" && options.existOk ? "exist_ok" : mode;
    const c = this.native();
    if (isDataStream(data)) {
      await writeStream(data, options.schema, options.schema, (first) => c.createTableWriter(name, first, nativeMode));
      return this.openTable(name);
    }
    const chunks = inMemoryChunks(data, options.schema);
    if (chunks) {
      await writeStream(chunks, undefined, undefined, (first) => c.createTableWriter(name, first, nativeMode));
      return this.openTable(name);
    }
    const bytes =
      Array.isArray(data) && data.length === 0 ? schemaToIPC(requireSchema(options.schema)) : toIPC(data, options.schema);
    return new Table(await native(() => c.createTable(name, bytes, nativeMode)));
  }

  /** Creates a table with no rows. */
  async createEmptyTable(name: string, schema: Schema, options: Omit<CreateTableOptions, "schema"> = {}): Promise<Table> {
    return this.createTable(name, [], { ...options, schema });
  }

  /** Deletes a table and all its versions. */
  async dropTable(name: string): Promise<void> {
    nameArg(name, "the table name");
    const c = this.native();
    await native(() => c.dropTable(name));
  }

  /** Deletes every table. */
  async dropAllTables(): Promise<void> {
    for (const name of await this.tableNames()) await this.dropTable(name);
  }

  isOpen(): boolean {
    return this.inner.isOpen();
  }

  /** Closes the connection and its tables; later calls throw ClosedError. */
  close(): void {
    nativeSync(() => this.inner.close());
  }

  display(): string {
    return `Connection(${this.inner.uri()}${this.inner.isOpen() ? "" : ", closed"})`;
  }

  toString(): string {
    return this.display();
  }
}

function requireSchema(schema: Schema | undefined): Schema {
  if (!schema) {
    throw new InvalidArgumentError("InvalidArgument", "no rows given; pass { schema } to create an empty table");
  }
  return schema;
}

function storageOptionsArg(options: unknown): Record<string, string> | undefined {
  if (options === undefined) return undefined;
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    invalid("storageOptions", "an object of string values", options);
  }
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(options as Record<string, unknown>)) {
    if (value === undefined) continue;
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
      invalid(`storageOptions.${key}`, "a string, number or boolean", value);
    }
    out[key] = String(value);
  }
  return out;
}

/**
 * Opens the database at `uri`: a local folder (created on first write), `file://…`,
 * `s3://bucket/prefix` (see `storageOptions`) or `memory://`.
 */
export async function connect(uri: string, options: ConnectOptions = {}): Promise<Connection> {
  if (typeof uri !== "string" || uri === "") {
    throw new InvalidArgumentError("InvalidArgument", "connect() takes a URI: a folder path, file://…, s3://bucket/prefix or memory://");
  }
  if (options === null || typeof options !== "object") invalid("connect() options", "an object", options);
  const interval = options.readConsistencyInterval;
  if (interval !== undefined && (typeof interval !== "number" || Number.isNaN(interval) || interval < 0)) {
    invalid("readConsistencyInterval", "a number of seconds >= 0 (or Infinity)", interval);
  }
  for (const key of ["metadataCacheBytes", "indexCacheBytes"] as const) {
    const bytes = options[key];
    if (bytes !== undefined) integerArg(bytes, key, { expected: "a whole number of bytes >= 0" });
  }
  if (options.memoryMap !== undefined && typeof options.memoryMap !== "boolean") {
    invalid("memoryMap", "true or false", options.memoryMap);
  }
  if (options.durability !== undefined && options.durability !== "full" && options.durability !== "process") {
    invalid("durability", '"full" or "process"', options.durability);
  }
  const share = options.scalarIndexMaxShare;
  if (share !== undefined && (typeof share !== "number" || !(share > 0 && share <= 1))) {
    invalid("scalarIndexMaxShare", "a number above 0 and at most 1", share);
  }
  const storageOptions = storageOptionsArg(options.storageOptions);
  if (options.session !== undefined && !(options.session instanceof Session)) {
    invalid("session", "a Session", options.session);
  }
  if (options.session !== undefined && (options.metadataCacheBytes !== undefined || options.indexCacheBytes !== undefined)) {
    throw new InvalidArgumentError(
      "InvalidArgument",
      "cache sizes go to the shared session, not to connect: pass metadataCacheBytes and indexCacheBytes to new Session() instead",
    );
  }
  const maintenance = nativeMaintenance(options.maintenance, "maintenance");
  const inner = await native(() =>
    binding.connect(
      uri,
      {
        memoryMap: options.memoryMap,
        readConsistencyInterval: interval,
        metadataCacheBytes: options.metadataCacheBytes,
        indexCacheBytes: options.indexCacheBytes,
        maintenance: maintenance.options,
        durability: options.durability,
        scalarIndexMaxShare: share,
        storageOptions,
        sessionId: options.session?.inner.id,
      },
      maintenance.onEvent,
    ),
  );
  return new Connection(inner, options.session);
}


