// Typed errors. Every error Quiver throws is a QuiverError with a stable `code`; the native
// layer prefixes its messages with `[Code]`, which `toQuiverError` turns into the subclass.

/** Base class of every error Quiver throws. */
export class QuiverError extends Error {
  /** Stable, machine-readable error code. */
  readonly code: string;
  /** Whether retrying the same call may succeed. */
  readonly retryable: boolean;

  constructor(code: string, message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options?.retryable ?? false;
  }
}

export class TableNotFoundError extends QuiverError {}
export class TableExistsError extends QuiverError {}
export class SchemaMismatchError extends QuiverError {}
export class InvalidArgumentError extends QuiverError {}
/**
 * What is wrong with a SQL filter or expression. `tooComplex`: nested deeper than the engine's
 * limit (256 levels of parentheses, `NOT`s or operators); flat `OR` / `AND` chains and `IN`
 * lists may be any length.
 */
export type FilterErrorKind = "syntax" | "unknownColumn" | "typeMismatch" | "unsupported" | "invalidValue" | "tooComplex";

const FILTER_KINDS: Record<string, FilterErrorKind> = {
  "syntax error": "syntax",
  "unknown column": "unknownColumn",
  "type mismatch": "typeMismatch",
  unsupported: "unsupported",
  "invalid value": "invalidValue",
  "too complex": "tooComplex",
};

/**
 * A SQL filter or expression that does not parse or does not fit the table. `kind` says which
 * problem; `position` (1-based) points at where it starts in the SQL text, when known.
 */
export class FilterError extends QuiverError {
  readonly kind: FilterErrorKind;
  readonly position?: { line: number; column: number };

  constructor(code: string, message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super(code, message, options);
    const kind = /^([a-z ]+):/.exec(message);
    this.kind = (kind && FILTER_KINDS[kind[1]]) ?? "unsupported";
    const at = /\(at line (\d+), column (\d+)\)$/.exec(message);
    if (at) this.position = { line: Number(at[1]), column: Number(at[2]) };
  }
}
export class CommitConflictError extends QuiverError {}
export class CorruptionError extends QuiverError {}
export class IoError extends QuiverError {}
export class ClosedError extends QuiverError {}
export class NotFoundError extends QuiverError {}
export class InternalError extends QuiverError {}
/**
 * The object store lacks something Quiver needs to keep commits safe: it does not honour
 * conditional writes (`If-None-Match: *`), so two writers could both publish one version.
 */
export class UnsupportedStoreError extends QuiverError {}

type ErrorClass = new (code: string, message: string, options?: { cause?: unknown; retryable?: boolean }) => QuiverError;

const CLASSES: Record<string, [ErrorClass, boolean]> = {
  TableNotFound: [TableNotFoundError, false],
  // The table a handle read was dropped (perhaps created again) before its write committed.
  TableDropped: [TableNotFoundError, false],
  TableExists: [TableExistsError, false],
  SchemaMismatch: [SchemaMismatchError, false],
  InvalidArgument: [InvalidArgumentError, false],
  Filter: [FilterError, false],
  CommitConflict: [CommitConflictError, true],
  CommitTimeout: [CommitConflictError, true],
  Corruption: [CorruptionError, false],
  Io: [IoError, true],
  AccessDenied: [IoError, false],
  Closed: [ClosedError, false],
  VersionNotFound: [NotFoundError, false],
  MissingFile: [NotFoundError, false],
  RowNotFound: [NotFoundError, false],
  IndexNotFound: [NotFoundError, false],
  TagNotFound: [NotFoundError, false],
  TagExists: [InvalidArgumentError, false],
  ReadOnlyVersion: [InvalidArgumentError, false],
  Internal: [InternalError, false],
  UnsupportedStore: [UnsupportedStoreError, false],
};

/** Turns anything thrown by the native layer into a typed QuiverError. */
export function toQuiverError(error: unknown): QuiverError {
  if (error instanceof QuiverError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const match = /^\[(\w+)\] ([\s\S]*)$/.exec(message);
  if (match) {
    const [cls, retryable] = CLASSES[match[1]] ?? [InternalError, false];
    return new cls(match[1], match[2], { cause: error, retryable });
  }
  return new InternalError("Internal", message, { cause: error });
}

/** Awaits a native call, rethrowing its failure as a typed error. */
export async function native<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw toQuiverError(e);
  }
}

/** Runs a synchronous native call, rethrowing its failure as a typed error. */
export function nativeSync<T>(call: () => T): T {
  try {
    return call();
  } catch (e) {
    throw toQuiverError(e);
  }
}
