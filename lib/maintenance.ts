// Keeping tables lean: optimize(), compactFiles(), cleanupOldVersions() and automatic
// maintenance — their options, results and argument checks.
import { integerArg, invalid } from "./check.js";

/** Progress of a long maintenance step (the same shape as `createIndex`'s). */
export interface MaintenanceProgress {
  /** compaction: `rewrite`, `commit`; cleanup: `read_versions`, `delete`. */
  phase: "rewrite" | "commit" | "read_versions" | "delete";
  done: number;
  total: number;
}

/** What `compactFiles()` (and the compaction step of `optimize()`) rewrites. */
export interface CompactionOptions {
  /**
   * Rows per compacted fragment (default 1,048,576, LanceDB's `targetRowsPerFragment`).
   * Fragments with fewer live rows are merged with adjacent ones.
   */
  targetRowsPerFragment?: number;
  /** Bytes per compacted fragment, about (default 2 GiB). */
  maxBytesPerFragment?: number;
  /** Rewrite fragments without their deleted rows once enough are deleted (default true). */
  materializeDeletions?: boolean;
  /** Share of deleted rows at which a fragment is rewritten (default 0.1). */
  materializeDeletionsThreshold?: number;
  /** Fragment groups rewritten at once (default: the machine's cores). */
  numThreads?: number;
  progress?: (progress: MaintenanceProgress) => void;
}

/** What `cleanupOldVersions()` removes. */
export interface CleanupOptions {
  /**
   * Remove versions superseded (no longer the latest) before this date. Default: 7 days ago,
   * as LanceDB. The latest version and tagged versions are always kept.
   */
  olderThan?: Date;
  /**
   * Also remove unreferenced files younger than 7 days (by default they are kept: they may
   * belong to a write in progress). Only safe when nothing else writes to the table.
   */
  deleteUnverified?: boolean;
  progress?: (progress: MaintenanceProgress) => void;
}

/** What `optimize()` does: index refresh, compaction, then cleanup. */
export interface OptimizeOptions extends Omit<CompactionOptions, "progress"> {
  /** Remove versions superseded before this date (default: 7 days ago). */
  cleanupOlderThan?: Date;
  /** See `CleanupOptions.deleteUnverified`. */
  deleteUnverified?: boolean;
  progress?: (progress: MaintenanceProgress) => void;
}

/** What a compaction did. */
export interface CompactionStats {
  fragmentsRemoved: number;
  fragmentsAdded: number;
  /** Data and deletion files the new version no longer references. */
  filesRemoved: number;
  /** Data and deletion files the new version references that the old one did not. */
  filesAdded: number;
  /** Live rows rewritten. */
  rowsRewritten: number;
  /** The version committed (the current one when nothing needed compacting). */
  version: number;
}

/** What a cleanup removed. */
export interface RemovalStats {
  bytesRemoved: number;
  oldVersionsRemoved: number;
  /** Files other than manifests. */
  filesRemoved: number;
}

/** What the index step of `optimize()` did. */
export interface IndexOptimizeStats {
  /** Indexes rewritten. */
  indexesOptimized: number;
  /** Rows newly added to an index. */
  rowsAdded: number;
  /** Entries of deleted rows removed from an index. */
  rowsRemoved: number;
  version: number;
}

/** What `optimize()` did (LanceDB's shape, plus the index step). */
export interface OptimizeStats {
  compaction: CompactionStats;
  prune: RemovalStats;
  indexes: IndexOptimizeStats;
  /** The version after the last step. */
  version: number;
}

/** Something automatic maintenance did. */
export interface MaintenanceEvent {
  table: string;
  kind: "compaction" | "index" | "cleanup" | "error";
  /** The table's version after it. */
  version: number;
  compaction?: CompactionStats;
  cleanup?: RemovalStats;
  /** For `error`: what went wrong (maintenance carries on at the next write). */
  error?: string;
}

/**
 * Automatic maintenance: after writes settle, compaction and cleanup run in the background
 * when thresholds are crossed. On by default.
 */
export interface MaintenanceOptions {
  /** Default true. */
  enabled?: boolean;
  /**
   * Compact while writes continue once this many fragments are small (default 8); once writes
   * pause, two small fragments are enough.
   */
  smallFragments?: number;
  /** Compact when a fragment's deleted share reaches this (default 0.1). */
  deletedShare?: number;
  /**
   * Clean up versions superseded more than this many seconds ago, and their files (default
   * 7 days). Time travel reaches back this far.
   */
  retentionSeconds?: number;
  /** Writes this close together (seconds) are maintained together (default 0.25). */
  quietSeconds?: number;
  /** While writes continue, maintenance runs at least this often (seconds, default 2). */
  maxDelaySeconds?: number;
  /** Rows per compacted fragment (default 1,048,576). */
  targetRowsPerFragment?: number;
  /** Called (on the event loop) after each compaction, index refresh, cleanup or error. */
  onEvent?: (event: MaintenanceEvent) => void;
}

/** What automatic maintenance did for a table through this connection. */
export interface MaintenanceActivity {
  rounds: number;
  compactions: number;
  cleanups: number;
  indexRefreshes: number;
  errors: number;
  /** A round is running or waiting for writes to settle. */
  active: boolean;
  /** When the last round ended (null: none yet). */
  lastRun: Date | null;
}

function progressArg<T>(progress: unknown): ((p: T) => void) | undefined {
  if (progress === undefined) return undefined;
  if (typeof progress !== "function") invalid("progress", "a function", progress);
  const callback = progress as (p: T) => void;
  return (p: T) => {
    // A throwing callback must not take the work (or the process) down.
    try {
      callback(p);
    } catch {
      /* the caller's error; the work goes on */
    }
  };
}

function shareArg(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !(value >= 0 && value <= 1)) invalid(name, "a number between 0 and 1", value);
  return value;
}

function secondsArg(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || Number.isNaN(value) || value < 0) invalid(name, "a number of seconds >= 0", value);
  return value;
}

function dateArg(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) invalid(name, "a valid Date", value);
  return value.getTime();
}

function objectArg(value: unknown, name: string): Record<string, unknown> {
  if (value === null || typeof value !== "object") invalid(name, "an object", value);
  return value as Record<string, unknown>;
}

/** @internal */
export function nativeCompaction(options: CompactionOptions, name: string) {
  objectArg(options, name);
  const { targetRowsPerFragment, maxBytesPerFragment, numThreads } = options;
  if (targetRowsPerFragment !== undefined) {
    integerArg(targetRowsPerFragment, "targetRowsPerFragment", { min: 1, expected: "a whole number of rows >= 1" });
  }
  if (maxBytesPerFragment !== undefined) {
    integerArg(maxBytesPerFragment, "maxBytesPerFragment", { min: 1, expected: "a whole number of bytes >= 1" });
  }
  if (numThreads !== undefined) integerArg(numThreads, "numThreads", { min: 1, expected: "a whole number >= 1" });
  if (options.materializeDeletions !== undefined && typeof options.materializeDeletions !== "boolean") {
    invalid("materializeDeletions", "true or false", options.materializeDeletions);
  }
  return {
    targetRowsPerFragment,
    maxBytesPerFragment,
    materializeDeletions: options.materializeDeletions,
    materializeDeletionsThreshold: shareArg(options.materializeDeletionsThreshold, "materializeDeletionsThreshold"),
    numThreads,
  };
}

/** @internal */
export function nativeCleanup(olderThan: unknown, deleteUnverified: unknown, dateName: string) {
  if (deleteUnverified !== undefined && typeof deleteUnverified !== "boolean") {
    invalid("deleteUnverified", "true or false", deleteUnverified);
  }
  return { olderThanMs: dateArg(olderThan, dateName), deleteUnverified: deleteUnverified as boolean | undefined };
}

/** @internal */
export function maintenanceProgress(
  progress: unknown,
): ((p: { phase: string; done: number; total: number }) => void) | undefined {
  const report = progressArg<MaintenanceProgress>(progress);
  return report ? (p) => report(p as MaintenanceProgress) : undefined;
}

/** @internal */
export function nativeMaintenance(value: boolean | MaintenanceOptions | undefined, name: string) {
  if (value === undefined || value === true) return { options: { enabled: true }, onEvent: undefined };
  if (value === false) return { options: { enabled: false }, onEvent: undefined };
  const o = objectArg(value, name) as MaintenanceOptions;
  if (o.enabled !== undefined && typeof o.enabled !== "boolean") invalid(`${name}.enabled`, "true or false", o.enabled);
  if (o.smallFragments !== undefined) {
    integerArg(o.smallFragments, "smallFragments", { min: 2, expected: "a whole number >= 2" });
  }
  if (o.targetRowsPerFragment !== undefined) {
    integerArg(o.targetRowsPerFragment, "targetRowsPerFragment", { min: 1, expected: "a whole number of rows >= 1" });
  }
  const deletedShare = shareArg(o.deletedShare, "deletedShare");
  if (deletedShare === 0) invalid("deletedShare", "a number above 0 and at most 1", deletedShare);
  const onEvent = progressArg<MaintenanceEvent>(o.onEvent);
  return {
    options: {
      enabled: o.enabled ?? true,
      smallFragments: o.smallFragments,
      deletedShare,
      retentionSeconds: secondsArg(o.retentionSeconds, "retentionSeconds"),
      quietSeconds: secondsArg(o.quietSeconds, "quietSeconds"),
      maxDelaySeconds: secondsArg(o.maxDelaySeconds, "maxDelaySeconds"),
      targetRowsPerFragment: o.targetRowsPerFragment,
    },
    onEvent: onEvent
      ? (e: MaintenanceEvent) => {
          // Options the native side leaves null read as absent.
          const event: MaintenanceEvent = { table: e.table, kind: e.kind, version: e.version };
          if (e.compaction) event.compaction = e.compaction;
          if (e.cleanup) event.cleanup = e.cleanup;
          if (e.error) event.error = e.error;
          onEvent(event);
        }
      : undefined,
  };
}
