// The native addon's surface, as the napi binding (src/) defines it.
import loadedBinding from "#native";
import type { TokenizerOptions } from "./fts.js";
import type { IndexCalibration } from "./indices.js";

export interface NativeVersion {
  version: number;
  timestamp: number;
  operation: string;
}

export interface NativeTableStats {
  numRows: number;
  numDeletedRows: number;
  numFragments: number;
  dataBytes: number;
  version: number;
  fragmentsTiny: number;
  fragmentsSmall: number;
  fragmentsMedium: number;
  fragmentsLarge: number;
  numSmallFragments: number;
  compactableFragments: number;
  versions: number;
  versionsPastRetention: number;
  unindexedRows: number;
  reasons: string[];
  maintenance?: {
    rounds: number;
    compactions: number;
    cleanups: number;
    indexRefreshes: number;
    errors: number;
    active: boolean;
    lastRoundMicros: number;
  } | null;
  skippedVersions: NativeSkippedVersion[];
}

export interface NativeSkippedVersion {
  version: number;
  reason: string;
}

type NativeProgress = (progress: { phase: string; done: number; total: number }) => void;

export interface NativeCompactionOptions {
  targetRowsPerFragment?: number;
  maxBytesPerFragment?: number;
  materializeDeletions?: boolean;
  materializeDeletionsThreshold?: number;
  numThreads?: number;
}

export interface NativeCleanupOptions {
  olderThanMs?: number;
  deleteUnverified?: boolean;
}

export interface NativeMaintenanceOptions {
  enabled?: boolean;
  smallFragments?: number;
  deletedShare?: number;
  retentionSeconds?: number;
  quietSeconds?: number;
  maxDelaySeconds?: number;
  targetRowsPerFragment?: number;
}

// biome-ignore lint: the native side hands events over as plain objects.
type NativeMaintenanceListener = (event: any) => void;

export interface NativeScanOptions {
  columns?: string[];
  limit?: number;
  offset?: number;
  withRowId?: boolean;
  batchSize?: number;
  filter?: string;
}

/** One result column as plain values; exactly one value field is set. */
export interface NativePlainColumn {
  name: string;
  numbers?: Float64Array | null;
  int64?: BigInt64Array | null;
  uint64?: BigUint64Array | null;
  booleans?: boolean[] | null;
  strings?: string[] | null;
  /** Fixed-size lists of float32, `dim` values a row. */
  vectors?: Float32Array | null;
  dim?: number | null;
}

export interface NativeSearchResult {
  /** Arrow IPC bytes, unless the rows came as `plain` columns. */
  data?: Buffer | null;
  plain?: NativePlainColumn[] | null;
}

export interface NativeSearchOptions {
  column?: string;
  k: number;
  distanceType?: string;
  columns?: string[];
  withRowId?: boolean;
  lowerBound?: number;
  upperBound?: number;
  filter?: string;
  postfilter?: boolean;
  nprobes?: number;
  refineFactor?: number;
  bypassVectorIndex?: boolean;
  targetRecall?: number;
  ef?: number;
  plain?: boolean;
}

export interface NativeBatchStream {
  next(): Promise<Buffer | null>;
  takePrefetched(): { data: Buffer; done: boolean } | null;
  schema(): Buffer;
  cancel(): Promise<void>;
}

export interface NativeWriter {
  write(data: Uint8Array): Promise<void>;
  finish(): Promise<number>;
  abort(): Promise<void>;
}

export interface NativeIndexInfo {
  name: string;
  indexType: string;
  columns: string[];
  distanceType?: string | null;
  numPartitions?: number | null;
  numSubVectors?: number | null;
  numBits?: number | null;
  numDistinctValues?: number | null;
  numPages?: number | null;
  m?: number | null;
  efConstruction?: number | null;
  numIndexedRows: number;
  numUnindexedRows: number;
  sizeBytes: number;
  calibration?: IndexCalibration | null;
}

export interface NativeTable {
  readonly name: string;
  isOpen(): boolean;
  close(): void;
  schema(): Promise<Buffer>;
  countRows(filter?: string): Promise<number>;
  add(data: Uint8Array, mode: string, timeoutMs?: number): Promise<number>;
  addWriter(schema: Uint8Array, mode: string, timeoutMs?: number): Promise<NativeWriter>;
  delete(filter: string, timeoutMs?: number): Promise<number[]>;
  update(
    filter: string | undefined,
    sqlColumns: string[],
    sqlValues: string[],
    values?: Uint8Array,
    timeoutMs?: number,
  ): Promise<number[]>;
  mergeInsert(
    on: string[],
    options: {
      whenMatchedUpdateAll: boolean;
      matchedWhere?: string;
      whenNotMatchedInsertAll: boolean;
      whenNotMatchedBySourceDelete: boolean;
      bySourceWhere?: string;
      timeoutMs?: number;
    },
    data: Uint8Array,
  ): Promise<{ numInsertedRows: number; numUpdatedRows: number; numDeletedRows: number; version: number }>;
  addColumnsSql(names: string[], sqls: string[]): Promise<number>;
  addColumnsNull(schema: Uint8Array): Promise<number>;
  alterColumns(
    alterations: { path: string; rename?: string; nullable?: boolean; dataType?: Uint8Array }[],
  ): Promise<number>;
  dropColumns(names: string[]): Promise<number>;
  version(): Promise<number>;
  listVersions(): Promise<NativeVersion[]>;
  checkout(version: number): Promise<void>;
  checkoutLatest(): Promise<number>;
  skippedVersions(): NativeSkippedVersion[];
  listTags(): Promise<{ name: string; version: number }[]>;
  tagVersion(name: string): Promise<number>;
  createTag(name: string, version: number): Promise<void>;
  updateTag(name: string, version: number): Promise<void>;
  deleteTag(name: string): Promise<void>;
  checkoutTag(name: string): Promise<number>;
  restore(version?: number): Promise<number>;
  stats(): Promise<NativeTableStats>;
  scan(options: NativeScanOptions): Promise<NativeBatchStream>;
  scanEager(options: NativeScanOptions, maxBytes: number): Promise<NativeBatchStream>;
  planScan(options: NativeScanOptions, verbose: boolean, analyze: boolean): Promise<string>;
  takeRowIds(ids: bigint[], columns?: string[], withRowId?: boolean): Promise<Buffer>;
  takeOffsets(offsets: number[], columns?: string[], withRowId?: boolean): Promise<Buffer>;
  vectorSearch(query: Float64Array, options: NativeSearchOptions, inline: boolean): NativeSearchResult | Promise<NativeSearchResult>;
  planVectorSearch(query: Float64Array, options: NativeSearchOptions, verbose: boolean, analyze: boolean): Promise<string>;
  textSearch(options: NativeTextSearchOptions): Promise<Buffer>;
  planTextSearch(options: NativeTextSearchOptions, verbose: boolean, analyze: boolean): Promise<string>;
  tokenize(text: string, column: string): Promise<{ text: string; position: number }[]>;
  createIndex(
    column: string,
    options: {
      indexType?: string;
      distanceType?: string;
      numPartitions?: number;
      numSubVectors?: number;
      numBits?: number;
      maxIterations?: number;
      sampleRate?: number;
      targetRecall?: number;
      m?: number;
      efConstruction?: number;
      name?: string;
      replace?: boolean;
      fts?: NativeTokenizerOptions;
      withPosition?: boolean;
    },
    progress?: (progress: { phase: string; done: number; total: number }) => void,
  ): Promise<NativeIndexInfo>;
  listIndices(): Promise<NativeIndexInfo[]>;
  indexStats(name: string): Promise<NativeIndexInfo>;
  dropIndex(name: string): Promise<number>;
  optimize(
    compaction?: NativeCompactionOptions,
    cleanup?: NativeCleanupOptions,
    progress?: NativeProgress,
  ): Promise<unknown>;
  compactFiles(options?: NativeCompactionOptions, progress?: NativeProgress): Promise<unknown>;
  cleanupOldVersions(
    options?: NativeCleanupOptions,
    progress?: NativeProgress,
  ): Promise<{ bytesRemoved: number; oldVersionsRemoved: number; filesRemoved: number }>;
  setMaintenance(options?: NativeMaintenanceOptions, onEvent?: NativeMaintenanceListener): void;
  ioStats(): { readOps: number; readBytes: number; writeOps: number; writeBytes: number };
}

export interface NativeConnection {
  uri(): string;
  isOpen(): boolean;
  close(): void;
  tableNames(): Promise<string[]>;
  openTable(name: string, version?: number): Promise<NativeTable>;
  createTable(name: string, data: Uint8Array, mode: string): Promise<NativeTable>;
  createTableWriter(name: string, schema: Uint8Array, mode: string): Promise<NativeWriter>;
  dropTable(name: string): Promise<void>;
}

/** One node of a flattened full-text query (children before parents, the root last). */
export interface NativeFtsNode {
  kind: "match" | "phrase" | "boost" | "multi_match" | "boolean";
  column?: string;
  columns?: string[];
  text?: string;
  boost?: number;
  fuzziness?: string;
  maxExpansions?: number;
  operator?: string;
  prefixLength?: number;
  slop?: number;
  negativeBoost?: number;
  boosts?: number[];
  children?: number[];
  occurs?: string[];
}

export interface NativeTextSearchOptions {
  nodes: NativeFtsNode[];
  k: number;
  offset?: number;
  columns?: string[];
  withRowId?: boolean;
  filter?: string;
  postfilter?: boolean;
}

/** Tokenizer options as the binding takes them (checked by `tokenizerOptions`). */
export type NativeTokenizerOptions = Omit<TokenizerOptions, "baseTokenizer"> & { baseTokenizer?: string };

export interface NativeSession {
  readonly id: number;
  sizeBytes(): number;
  approxNumItems(): number;
}

export interface NativeBinding {
  version(): string;
  formatVersion(): string;
  tokenize(text: string, options?: NativeTokenizerOptions): { text: string; position: number }[];
  subscribeEvents(
    callback: (event: {
      level: string;
      target: string;
      fields: Record<string, number | boolean | string>;
      timestamp: number;
    }) => void,
    level?: string,
  ): number;
  unsubscribeEvents(id: number): void;
  NativeSession: new (metadataCacheBytes?: number, indexCacheBytes?: number, dataCacheBytes?: number) => NativeSession;
  connect(
    uri: string,
    options?: {
      readConsistencyInterval?: number;
      metadataCacheBytes?: number;
      indexCacheBytes?: number;
      memoryMap?: boolean;
      maintenance?: NativeMaintenanceOptions;
      durability?: string;
      scalarIndexMaxShare?: number;
      storageOptions?: Record<string, string>;
      sessionId?: number;
    },
    onMaintenance?: NativeMaintenanceListener,
  ): Promise<NativeConnection>;
}

export const binding = loadedBinding as NativeBinding;
