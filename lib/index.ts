// quiverdb: an embedded vector database for Node.js. Public API.
import { binding } from "./native.js";

export { connect, Connection, Session, type ConnectOptions, type CreateTableOptions } from "./connection.js";
export {
  Table,
  MergeInsertBuilder,
  type AddColumnsSql,
  type AddOptions,
  type AddResult,
  type ColumnAlteration,
  type MergeResult,
  type SkippedVersion,
  type TableStats,
  type TagContents,
  Tags,
  type UpdateOptions,
  type Version,
  type WriteOptions,
} from "./table.js";
export {
  Index,
  type CreateIndexOptions,
  type IndexProgress,
  type IndexStats,
  type IndexCalibration,
  type IndexType,
  type IvfFlatOptions,
  type HnswSqOptions,
  type HnswPqOptions,
  type IvfRqOptions,
  type IvfPqOptions,
} from "./indices.js";
export type {
  CleanupOptions,
  CompactionOptions,
  CompactionStats,
  IndexOptimizeStats,
  MaintenanceActivity,
  MaintenanceEvent,
  MaintenanceOptions,
  MaintenanceProgress,
  OptimizeOptions,
  OptimizeStats,
  RemovalStats,
} from "./maintenance.js";
export {
  tokenize,
  type Token,
  type TokenizerOptions,
  type FtsOptions,
  type FullTextQuery,
  type MatchQueryOptions,
  MatchQuery,
  PhraseQuery,
  BoostQuery,
  MultiMatchQuery,
  BooleanQuery,
  Occur,
  Operator,
} from "./fts.js";
export { type Reranker, RRFReranker, LinearCombinationReranker } from "./rerankers.js";
export { subscribeEvents, type TraceEvent, type TraceLevel, type EventSubscription } from "./events.js";
export { Query, TextQuery, VectorQuery, type DistanceType, type VectorLike } from "./query.js";
export { inferSchema, type Data, type DataStream, type Row, type ToArrayOptions } from "./arrow.js";
export {
  QuiverError,
  TableNotFoundError,
  TableExistsError,
  SchemaMismatchError,
  InvalidArgumentError,
  FilterError,
  type FilterErrorKind,
  CommitConflictError,
  CorruptionError,
  IoError,
  ClosedError,
  NotFoundError,
  InternalError,
  UnsupportedStoreError,
} from "./errors.js";

/** Version of the native engine (equals the npm package version). */
export function version(): string {
  return binding.version();
}

/** Major.minor version of the data file format this build writes. */
export function formatVersion(): string {
  return binding.formatVersion();
}
