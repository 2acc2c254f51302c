// Data in and out: plain objects, apache-arrow tables and batches, and Arrow IPC bytes become
// IPC stream bytes for the engine; IPC bytes from the engine become apache-arrow tables or
// plain objects. Arrow objects are duck-typed, and those made by another copy of apache-arrow
// (another version >= 15, or the other module build of one version) are rebuilt in ours first
// (arrow-interop.ts), so our IPC writer can serialize them. Everything this module returns —
// tables and batches decoded from the engine included — is made by the apache-arrow that
// Quiver imports.
import {
  Binary,
  Bool,
  DataType,
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int64,
  Int8,
  List,
  makeData,
  makeVector,
  Precision,
  RecordBatch,
  RecordBatchReader,
  Schema,
  Struct,
  Table,
  tableFromIPC,
  tableToIPC,
  TimestampMillisecond,
  Uint8,
  Utf8,
  vectorFromArray,
  type Vector,
} from "apache-arrow";
import { ownBatch, ownBatches, ownSchema, ownTable } from "./arrow-interop.js";
import { describeValue } from "./check.js";
import { InvalidArgumentError, SchemaMismatchError } from "./errors.js";

/** One row as a plain object. */
export type Row = Record<string, unknown>;

/** Anything Quiver accepts as rows. */
export type Data =
  | Row[]
  | Table
  | RecordBatch
  | RecordBatch[]
  | Uint8Array
  | ArrayBuffer;

/** Rows arriving over time: batches or arrays of objects. */
export type DataStream = AsyncIterable<RecordBatch | Row[]> | Iterable<RecordBatch | Row[]>;

function isArrowTable(x: unknown): x is Table {
  return typeof x === "object" && x !== null && "batches" in x && "schema" in x && "numRows" in x;
}

function isArrowBatch(x: unknown): x is RecordBatch {
  return typeof x === "object" && x !== null && "schema" in x && "numRows" in x && "data" in x && !("batches" in x);
}

/** Whether `x` is a non-empty array of plain-object rows. */
export function isRowArray(x: unknown): x is Row[] {
  return Array.isArray(x) && x.length > 0 && !isArrowBatch(x[0]);
}

/** Whether `x` is a stream of batches or row arrays rather than data in memory. */
export function isDataStream(x: unknown): x is DataStream {
  if (x === null || typeof x !== "object") return false;
  if (Array.isArray(x) || x instanceof Uint8Array || x instanceof ArrayBuffer || isArrowTable(x) || isArrowBatch(x)) return false;
  return Symbol.asyncIterator in x || Symbol.iterator in x;
}

// ---------------------------------------------------------------------------------------------
// Schema inference

type Kind =
  | { t: "float64" }
  | { t: "int64" }
  | { t: "utf8" }
  | { t: "bool" }
  | { t: "timestamp" }
  | { t: "vector"; element: "float32" | "float64" | "uint8" | "int8"; dim: number }
  | { t: "list_utf8" }
  | { t: "struct"; fields: Map<string, Kind | null> };

function describeKind(k: Kind): string {
  switch (k.t) {
    case "vector":
      return `a vector of ${k.dim} ${k.element}`;
    case "list_utf8":
      return "a list of strings";
    case "struct":
      return "an object";
    default:
      return `a ${k.t} value`;
  }
}

function kindOf(value: unknown, path: string, row: number): Kind | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "bigint") return { t: "int64" };
  if (typeof value === "number") return { t: "float64" };
  if (typeof value === "string") return { t: "utf8" };
  if (typeof value === "boolean") return { t: "bool" };
  if (value instanceof Date) return { t: "timestamp" };
  if (value instanceof Float32Array) return { t: "vector", element: "float32", dim: value.length };
  if (value instanceof Float64Array) return { t: "vector", element: "float64", dim: value.length };
  if (value instanceof Uint8Array) return { t: "vector", element: "uint8", dim: value.length };
  if (value instanceof Int8Array) return { t: "vector", element: "int8", dim: value.length };
  if (Array.isArray(value)) {
    // Array.from: a hole of a sparse array is undefined here, not skipped (and stored as NaN).
    if (value.length > 0 && Array.from(value).every((v) => typeof v === "number")) {
      return { t: "vector", element: "float32", dim: value.length };
    }
    if (value.every((v) => typeof v === "string" || v === null || v === undefined)) return { t: "list_utf8" };
    throw new SchemaMismatchError(
      "SchemaMismatch",
      `field '${path}' in row ${row} is an array mixing types; use numbers (a vector) or strings (a list)`,
    );
  }
  if (typeof value === "object") {
    const fields = new Map<string, Kind | null>();
    for (const [k, v] of Object.entries(value as Row)) fields.set(k, kindOf(v, `${path}.${k}`, row));
    return { t: "struct", fields };
  }
  throw new SchemaMismatchError("SchemaMismatch", `field '${path}' in row ${row} has unsupported type ${typeof value}`);
}

function merge(a: Kind | null, b: Kind | null, path: string, row: number): Kind | null {
  if (a === null) return b;
  if (b === null) return a;
  if (a.t === "vector" && b.t === "vector") {
    if (a.dim !== b.dim) {
      throw new SchemaMismatchError(
        "SchemaMismatch",
        `field '${path}' in row ${row} is a vector of ${b.dim} values but earlier rows have ${a.dim}; every vector in a column must have the same length`,
      );
    }
    if (a.element !== b.element) {
      throw new SchemaMismatchError("SchemaMismatch", `field '${path}' in row ${row} is ${describeKind(b)} but earlier rows have ${describeKind(a)}`);
    }
    return a;
  }
  // An empty number array looks like a list of strings; a real vector elsewhere decides.
  if (a.t === "struct" && b.t === "struct") {
    for (const [k, v] of b.fields) a.fields.set(k, merge(a.fields.get(k) ?? null, v, `${path}.${k}`, row));
    return a;
  }
  if (a.t !== b.t) {
    throw new SchemaMismatchError("SchemaMismatch", `field '${path}' in row ${row} is ${describeKind(b)} but earlier rows have ${describeKind(a)}`);
  }
  return a;
}

function arrowType(k: Kind | null, path: string): DataType {
  if (k === null) {
    throw new SchemaMismatchError(
      "SchemaMismatch",
      `field '${path}' is null or undefined in every row, so its type cannot be inferred; pass a schema`,
    );
  }
  switch (k.t) {
    case "float64":
      return new Float64();
    case "int64":
      return new Int64();
    case "utf8":
      return new Utf8();
    case "bool":
      return new Bool();
    case "timestamp":
      return new TimestampMillisecond();
    case "list_utf8":
      return new List(new Field("item", new Utf8(), true));
    case "vector": {
      const element = { float32: new Float32(), float64: new Float64(), uint8: new Uint8(), int8: new Int8() }[k.element];
      return new FixedSizeList(k.dim, new Field("item", element, true));
    }
    case "struct":
      return new Struct([...k.fields].map(([name, v]) => new Field(name, arrowType(v, `${path}.${name}`), true)));
  }
}

/** Every row must be a plain object: not null, not an array, not a hole of a sparse array. */
function checkRows(rows: Row[], firstRow = 0): void {
  for (let i = 0; i < rows.length; i++) {
    const row: unknown = rows[i];
    if (row === null || typeof row !== "object" || Array.isArray(row)) {
      throw new InvalidArgumentError("InvalidArgument", `row ${firstRow + i} is not an object, got ${describeValue(row)}`);
    }
  }
}

/** Infers an Arrow schema from plain objects (see the README for the rules). */
export function inferSchema(rows: Row[]): Schema {
  if (rows.length === 0) {
    throw new InvalidArgumentError("InvalidArgument", "cannot infer a schema from zero rows; pass a schema");
  }
  checkRows(rows);
  const columns = new Map<string, Kind | null>();
  rows.forEach((row, i) => {
    for (const [key, value] of Object.entries(row)) {
      columns.set(key, merge(columns.get(key) ?? null, kindOf(value, key, i), key, i));
    }
  });
  return new Schema([...columns].map(([name, k]) => new Field(name, arrowType(k, name), true)));
}

// ---------------------------------------------------------------------------------------------
// Building columns

/** The typed array holding a vector column's elements, when it has one. */
function elementArray(element: DataType) {
  if (DataType.isFloat(element)) {
    if (element.precision === Precision.SINGLE) return Float32Array;
    if (element.precision === Precision.DOUBLE) return Float64Array;
    return null;
  }
  if (DataType.isInt(element) && element.bitWidth === 8) return element.isSigned ? Int8Array : Uint8Array;
  return null;
}

/** Builds a vector column straight into one flat typed array (no per-element builder). */
function typedVector(type: FixedSizeList, values: unknown[], name: string, firstRow: number): Vector {
  const dim = type.listSize;
  const element = type.children[0].type;
  const Ctor = elementArray(element);
  if (Ctor === null) return vectorFromArray(values, type);
  const flat = new Ctor(values.length * dim);
  const valid = new Uint8Array(Math.ceil(values.length / 8));
  let nulls = 0;
  values.forEach((v, i) => {
    if (v === null || v === undefined) {
      nulls++;
      return;
    }
    const arr = v as ArrayLike<number>;
    if (typeof arr !== "object" || !(Array.isArray(arr) || ArrayBuffer.isView(arr)) || arr.length !== dim) {
      throw new SchemaMismatchError(
        "SchemaMismatch",
        `field '${name}' in row ${firstRow + i} must be a vector of ${dim} numbers, got ${describeValue(arr)}`,
      );
    }
    // Typed arrays hold numbers already (bigint ones excepted); array elements are checked,
    // as a typed array would turn a string into NaN and throw a TypeError for a symbol.
    const bad =
      arr instanceof BigInt64Array || arr instanceof BigUint64Array
        ? 0
        : Array.isArray(arr)
          ? arr.findIndex((x) => typeof x !== "number")
          : -1;
    if (bad >= 0) {
      throw new SchemaMismatchError(
        "SchemaMismatch",
        `field '${name}' in row ${firstRow + i}: vector element ${bad} is ${describeValue(arr[bad])}, not a number`,
      );
    }
    flat.set(arr, i * dim);
    valid[i >> 3] |= 1 << (i & 7);
  });
  const child = makeData({ type: element, length: flat.length, data: flat } as never);
  const data = makeData({
    type,
    length: values.length,
    nullCount: nulls,
    nullBitmap: nulls > 0 ? valid : undefined,
    child,
  } as never);
  return makeVector(data);
}

function coerce(value: unknown, type: DataType, name: string, row: number): unknown {
  if (value === undefined) return null;
  if (value === null) return null;
  // Builders would store a string as NaN and throw a bare TypeError for a symbol or a bigint.
  const numeric = DataType.isFloat(type) || DataType.isInt(type);
  const wide = DataType.isInt(type) && type.bitWidth === 64;
  if (numeric && typeof value !== "number" && !(wide && typeof value === "bigint")) {
    throw new SchemaMismatchError(
      "SchemaMismatch",
      `field '${name}' in row ${row} is ${describeValue(value)}, not a number${wide ? " or bigint" : ""} (the column is ${type})`,
    );
  }
  if (type instanceof Int64 || (DataType.isInt(type) && type.bitWidth === 64)) {
    if (typeof value === "number") {
      if (!Number.isInteger(value)) {
        throw new SchemaMismatchError("SchemaMismatch", `field '${name}' in row ${row} is ${describeValue(value)}, not an integer`);
      }
      return BigInt(value);
    }
  }
  if (DataType.isTimestamp(type) && typeof value === "number") return new Date(value);
  return value;
}

function column(field: Field, rows: Row[], firstRow: number): Vector {
  const name = field.name;
  const values = DataType.isFixedSizeList(field.type)
    ? rows.map((r) => r[name])
    : rows.map((r, i) => coerce(r[name], field.type, name, firstRow + i));
  try {
    if (DataType.isFixedSizeList(field.type)) return typedVector(field.type, values, name, firstRow);
    return vectorFromArray(values, field.type);
  } catch (e) {
    if (e instanceof SchemaMismatchError) throw e;
    const reason = e instanceof Error ? e.message : describeValue(e);
    throw new SchemaMismatchError("SchemaMismatch", `field '${name}' cannot be built as ${field.type}: ${reason}`, {
      cause: e,
    });
  }
}

/** Builds an Arrow table from plain objects, with `schema` or an inferred one. `firstRow` is
 * the index of `rows[0]` in the caller's data, for error messages. */
export function rowsToTable(rows: Row[], schema?: Schema, firstRow = 0): Table {
  schema = ownSchema(schema);
  checkRows(rows, firstRow);
  const target = schema ?? inferSchema(rows);
  if (schema) {
    const known = new Set(schema.fields.map((f) => f.name));
    rows.forEach((row, i) => {
      for (const key of Object.keys(row)) {
        if (!known.has(key)) {
          throw new SchemaMismatchError(
            "SchemaMismatch",
            `row ${firstRow + i} has field '${key}', which is not in the schema`,
          );
        }
      }
    });
  }
  const vectors = target.fields.map((f) => column(f, rows, firstRow));
  const length = rows.length;
  const data = makeData({
    type: new Struct(target.fields),
    length,
    nullCount: 0,
    children: vectors.map((v) => v.data[0]),
  } as never);
  return new Table([new RecordBatch(target, data as never)]);
}

/** Any accepted in-memory data as an apache-arrow Table. */
export function toArrowTable(data: Data, schema?: Schema): Table {
  schema = ownSchema(schema);
  if (data instanceof ArrayBuffer) data = new Uint8Array(data);
  if (data instanceof Uint8Array) {
    let table: Table;
    try {
      table = tableFromIPC(data);
    } catch (e) {
      throw new InvalidArgumentError("InvalidArgument", `bytes are not Arrow IPC (stream or file): ${(e as Error).message}`, { cause: e });
    }
    if (table.schema.fields.length === 0) {
      throw new InvalidArgumentError("InvalidArgument", "bytes are not Arrow IPC (stream or file): no schema found");
    }
    return table;
  }
  if (isArrowTable(data)) return ownTable(data);
  if (isArrowBatch(data)) return new Table([ownBatch(data)]);
  if (Array.isArray(data)) {
    if (data.length > 0 && data.every(isArrowBatch)) return new Table(ownBatches(data));
    if (data.length === 0) {
      if (!schema) throw new InvalidArgumentError("InvalidArgument", "no rows given; pass a schema to create an empty table");
      return new Table(schema);
    }
    return rowsToTable(data as Row[], schema);
  }
  throw new InvalidArgumentError(
    "InvalidArgument",
    "data must be an array of objects, an apache-arrow Table or RecordBatch(es), Arrow IPC bytes, or an async iterable of batches",
  );
}

/** Rows per chunk when in-memory data is written as a stream. */
const CHUNK_ROWS = 16_384;

/**
 * In-memory data big enough to be worth streaming, as a lazy sequence of Arrow chunks: the
 * engine writes one chunk while the next is converted, and no single IPC buffer holds it all.
 * Null for data that is small, or already IPC bytes (sent as they are).
 */
export function inMemoryChunks(data: Data, schema?: Schema): Iterable<Table | RecordBatch> | null {
  if (data instanceof Uint8Array || data instanceof ArrayBuffer) return null;
  schema = ownSchema(schema);
  if (isRowArray(data)) {
    if (data.length <= CHUNK_ROWS) return null;
    const rows = data;
    const target = schema ?? inferSchema(rows);
    return (function* () {
      for (let start = 0; start < rows.length; start += CHUNK_ROWS) {
        yield rowsToTable(rows.slice(start, start + CHUNK_ROWS), target, start);
      }
    })();
  }
  if (schema) return null;
  // Batches of another apache-arrow copy are rebuilt in ours (no values copied) before slicing.
  const batches = isArrowTable(data)
    ? ownTable(data).batches
    : isArrowBatch(data)
      ? [ownBatch(data)]
      : Array.isArray(data) && data.length > 0 && data.every(isArrowBatch)
        ? ownBatches(data)
        : null;
  if (batches === null || batches.reduce((n, b) => n + b.numRows, 0) <= CHUNK_ROWS) return null;
  return (function* () {
    for (const batch of batches) {
      for (let start = 0; start < batch.numRows; start += CHUNK_ROWS) {
        yield start === 0 && batch.numRows <= CHUNK_ROWS ? batch : batch.slice(start, start + CHUNK_ROWS);
      }
    }
  })();
}

/** IPC stream bytes of any accepted in-memory data. */
export function toIPC(data: Data, schema?: Schema): Uint8Array {
  const bytes = ipcStreamBytes(data);
  return bytes ?? tableToIPC(toArrowTable(data, schema), "stream");
}

/**
 * IPC bytes given by the caller as the engine takes them, an IPC stream (null when `data` is
 * not bytes). They are never decoded in JS: apache-arrow reads flatbuffers unverified, and one
 * flipped bit can make it allocate until the process dies or loop forever (found by the
 * random-input campaign), whereas the engine verifies every message and refuses bad bytes with
 * an InvalidArgumentError. A stream passes as it is; the file format is re-framed as a stream
 * without decoding anything (see `fileToStream`); bytes that fit neither go to the engine,
 * which says so.
 */
export function ipcStreamBytes(data: unknown): Uint8Array | null {
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data instanceof Uint8Array ? data : null;
  if (bytes === null) return null;
  return fileToStream(bytes) ?? bytes;
}

const ARROW_MAGIC = [0x41, 0x52, 0x52, 0x4f, 0x57, 0x31]; // "ARROW1"

/**
 * The IPC file format as an IPC stream, or null when `bytes` are not a well-framed file. A file
 * is `ARROW1`, padding, encapsulated messages, a Footer flatbuffer, its int32 length and
 * `ARROW1`; the Footer holds the schema (as a Schema table, not a message: apache-arrow writes
 * no schema message into the body) and the blocks (offset, metadata length, body length) of the
 * dictionary and record batch messages. The stream is a Schema message built around a copy of
 * the Footer (its `header` points at the Footer's Schema table; flatbuffer offsets are
 * relative, so the copy needs no rewriting), the blocks' bytes as they are, and the end marker.
 * Only offsets and lengths are read here, each bounds-checked; the engine verifies the rest.
 */
function fileToStream(bytes: Uint8Array): Uint8Array | null {
  const n = bytes.length;
  const magicAt = (at: number) => ARROW_MAGIC.every((b, i) => bytes[at + i] === b);
  if (n < 8 + 10 || !magicAt(0) || !magicAt(n - 6)) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, n);
  const footerLength = view.getInt32(n - 10, true);
  const footerStart = n - 10 - footerLength;
  if (footerLength < 8 || footerStart < 8) return null;
  const footer = bytes.subarray(footerStart, n - 10);
  const fv = new DataView(footer.buffer, footer.byteOffset, footer.length);
  const u32 = (at: number) => (at >= 0 && at + 4 <= footer.length ? fv.getUint32(at, true) : -1);
  // The root table, its vtable, and the position of field `i` (-1 when absent or out of range).
  const table = u32(0);
  if (table < 0 || table + 4 > footer.length) return null;
  const vtable = table - fv.getInt32(table, true);
  if (vtable < 0 || vtable + 4 > footer.length) return null;
  const vtableSize = fv.getUint16(vtable, true);
  const field = (i: number) => {
    const slot = vtable + 4 + 2 * i;
    if (4 + 2 * i + 2 > vtableSize || slot + 2 > footer.length) return -1;
    const off = fv.getUint16(slot, true);
    return off === 0 ? -1 : table + off;
  };
  const version = field(0) >= 0 && field(0) + 2 <= footer.length ? fv.getInt16(field(0), true) : 4;
  const schemaRef = field(1);
  if (schemaRef < 0 || u32(schemaRef) < 0) return null;
  const schemaTable = schemaRef + u32(schemaRef);
  if (schemaTable >= footer.length) return null;
  // Dictionary blocks (field 2), then record batch blocks (field 3): 24-byte structs.
  const blocks: Uint8Array[] = [];
  for (const f of [2, 3]) {
    const ref = field(f);
    if (ref < 0) continue;
    if (u32(ref) < 0) return null;
    const vector = ref + u32(ref);
    const count = u32(vector);
    if (count < 0 || vector + 4 + count * 24 > footer.length) return null;
    for (let b = 0; b < count; b++) {
      const at = vector + 4 + b * 24;
      const offset = Number(fv.getBigInt64(at, true));
      const metaLength = fv.getInt32(at + 8, true);
      const bodyLength = Number(fv.getBigInt64(at + 16, true));
      const end = offset + metaLength + bodyLength;
      if (!(offset >= 8 && metaLength > 0 && bodyLength >= 0 && Number.isSafeInteger(end) && end <= footerStart)) return null;
      blocks.push(bytes.subarray(offset, end));
    }
  }
  // The Schema message: root offset, a vtable of 4 fields (version, header_type, header,
  // bodyLength absent), the table, then the Footer copy, placed to end at an 8-byte boundary
  // (flatbuffers are aligned from their end).
  const copyAt = 32 + ((8 - (footer.length % 8)) % 8);
  const size = copyAt + footer.length;
  const message = new Uint8Array(size);
  const mv = new DataView(message.buffer);
  const T = 16;
  mv.setUint32(0, T, true);
  [12, 12, 4, 6, 8, 0].forEach((v, i) => mv.setUint16(4 + 2 * i, v, true));
  mv.setInt32(T, T - 4, true); // vtable at 4
  mv.setInt16(T + 4, version, true);
  mv.setUint8(T + 6, 1); // MessageHeader.Schema
  mv.setUint32(T + 8, copyAt + schemaTable - (T + 8), true);
  message.set(footer, copyAt);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setUint32(0, 0xffffffff, true);
  new DataView(prefix.buffer).setInt32(4, size, true);
  const end = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
  const parts = [prefix, message, ...blocks, end];
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** An empty IPC stream carrying only `schema`. */
export function schemaToIPC(schema: Schema): Uint8Array {
  return tableToIPC(new Table(ownSchema(schema)), "stream");
}

/** Decodes IPC stream bytes from the engine (into a table of the apache-arrow Quiver imports). */
export function fromIPC(bytes: Uint8Array): Table {
  return tableFromIPC(bytes);
}

/** Decodes one IPC message holding a single batch. */
export function batchFromIPC(bytes: Uint8Array): RecordBatch | null {
  const reader = RecordBatchReader.from(bytes);
  const next = reader.next();
  return next.done ? null : (next.value as RecordBatch);
}

/** Options of `toArray()`. */
export interface ToArrayOptions {
  /** Return int64/uint64 values as JS numbers instead of bigint (precision above 2^53 is lost). */
  bigIntAsNumber?: boolean;
}

function plain(value: unknown, type: DataType, options: ToArrayOptions): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === "bigint") return options.bigIntAsNumber ? Number(value) : value;
  if (DataType.isTimestamp(type) || DataType.isDate(type)) {
    return value instanceof Date ? value : new Date(Number(value));
  }
  if (DataType.isFixedSizeList(type)) {
    const element = type.children[0].type;
    // apache-arrow hands out float16 as raw bits; users get the numbers, widened to float32.
    if (DataType.isFloat(element) && element.precision === Precision.HALF) {
      return Float32Array.from(value as Iterable<number>);
    }
    return (value as { toArray(): unknown }).toArray();
  }
  if (DataType.isList(type)) {
    const child = type.children[0].type;
    return Array.from(value as Iterable<unknown>, (x) => plain(x, child, options));
  }
  if (DataType.isStruct(type)) {
    const out: Row = {};
    const obj = value as Record<string, unknown>;
    for (const f of type.children) out[f.name] = plain(obj[f.name], f.type, options);
    return out;
  }
  return value;
}

/** The values of one column as JS values, chunk by chunk: numbers read straight from the
 * chunk's typed array (a `get` per row costs a chunk search and a visitor call), other types
 * through the chunk's getter and `plain`. */
function columnValues(vector: Vector | null, type: DataType, n: number, options: ToArrayOptions): unknown[] {
  const out: unknown[] = new Array(n);
  if (!vector) return out.fill(null);
  const direct = DataType.isInt(type) || (DataType.isFloat(type) && type.precision !== Precision.HALF);
  const asNumber = options.bigIntAsNumber === true;
  let at = 0;
  for (const data of vector.data) {
    const len = data.length;
    if (direct) {
      const values = data.values as ArrayLike<number | bigint>;
      const nullable = data.nullCount > 0;
      for (let j = 0; j < len; j++) {
        if (nullable && !data.getValid(j)) {
          out[at + j] = null;
          continue;
        }
        const v = values[j];
        out[at + j] = asNumber && typeof v === "bigint" ? Number(v) : v;
      }
    } else {
      const chunk = makeVector(data);
      for (let j = 0; j < len; j++) out[at + j] = plain(chunk.get(j), type, options);
    }
    at += len;
  }
  return out;
}

/** Rows of `table` as plain objects: vectors as typed arrays (Float32Array for float32 and
 * float16),
 * int64 as bigint (or number with `bigIntAsNumber`), timestamps as Date, lists as arrays. */
export function tableToRows(table: Table, options: ToArrayOptions = {}): Row[] {
  const fields = table.schema.fields;
  const n = table.numRows;
  const columns = fields.map((f) => columnValues(table.getChild(f.name), f.type, n, options));
  const rows: Row[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const row: Row = {};
    for (let c = 0; c < fields.length; c++) row[fields[c].name] = columns[c][i];
    rows[i] = row;
  }
  return rows;
}
