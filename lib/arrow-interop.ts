// Arrow objects made by another copy of apache-arrow, rebuilt in ours.
//
// An app can hold more than one apache-arrow: the ESM and the CommonJS build of one version are
// two sets of classes, and the app's dependencies may bring another version (Quiver accepts
// any >= 15 as a peer). Objects of another copy fail our copy's `instanceof` checks, and our
// IPC writer then writes nothing for them (the engine sees an empty stream). So every Arrow
// object that enters Quiver — tables, batches, schemas, fields, types — is taken as it is when
// our copy made it, and otherwise rebuilt in our copy:
//   - types, fields and schemas from their descriptions (`typeId` and each type's own
//     properties: bitWidth, precision, unit, timezone, listSize, children, dictionary, …),
//     the Arrow format's own vocabulary, the same in apache-arrow 15 to 21;
//   - Data from the very same buffers (nothing is copied: a buffer whose element type differs
//     between versions — timestamps were Int32Array pairs in 15, BigInt64Array since — is
//     viewed as the type our copy expects), with children, null bitmaps and dictionaries
//     rebuilt the same way; a dictionary shared by several batches stays shared.
// Why not serialize with the other copy's own tableToIPC: an object gives no way back to the
// functions of the module that made it, and reaching for module caches would depend on the
// module system and the bundler. Why not through rows: that loses types (integer widths,
// timestamp units, float16, dictionaries) and costs a copy of every value.
// Limits: a type our copy has no class for (Utf8View, BinaryView and LargeList, which
// apache-arrow 21.2 added, when ours is older) is refused with an InvalidArgumentError naming
// the column, the copies and the fix (Quiver stores none of them anyway); data read back from
// Quiver (toArrow(), query batches, schema()) is always made by our copy.
import {
  Binary,
  Bool,
  Data,
  DataType,
  Date_,
  Decimal,
  Dictionary,
  Duration,
  Field,
  FixedSizeBinary,
  FixedSizeList,
  Float,
  Int,
  Interval,
  LargeBinary,
  LargeUtf8,
  List,
  Map_,
  Null,
  RecordBatch,
  Schema,
  Struct,
  Table,
  Time,
  Timestamp,
  Type,
  Union,
  Utf8,
  Vector,
} from "apache-arrow";
import { describeValue } from "./check.js";
import { InvalidArgumentError, SchemaMismatchError } from "./errors.js";

// Objects of another copy are only read through the properties every version >= 15 has.
type Foreign = any;

/** Whether our copy made `x`: a real prototype-chain test, not `instanceof`, which newer
 * apache-arrow versions widen to objects of every copy. */
function ours(cls: { prototype: object }, x: unknown): boolean {
  return typeof x === "object" && x !== null && Object.prototype.isPrototypeOf.call(cls.prototype, x);
}

function isObject(x: unknown): x is object {
  return typeof x === "object" && x !== null;
}

/** What can be told about the copy of apache-arrow that made `x` (not ours), for messages. */
function copyOf(x: unknown): string {
  let marked = false;
  try {
    marked = ["DataType", "Field", "Schema", "Table", "RecordBatch", "Data"].some(
      (name) => (x as Record<symbol, unknown>)[Symbol.for(`apache-arrow/${name}`)] === true,
    );
  } catch {
    /* not an object we can read */
  }
  return marked
    ? "another copy of apache-arrow (21.2 or newer, by the marks on its objects)"
    : "another copy of apache-arrow (before 21.2, or the other module build — ESM or CommonJS — of the same version)";
}

/** The apache-arrow our code imports, for messages. */
function ourCopy(): string {
  const build = typeof __filename === "string" ? "CommonJS" : "ESM";
  const marked = (DataType.prototype as unknown as Record<symbol, unknown>)[Symbol.for("apache-arrow/DataType")] === true;
  return `the ${build} build of apache-arrow ${marked ? "21.2 or newer" : "before 21.2"}`;
}

/** Types of newer apache-arrow versions and what to build instead. */
const INSTEAD: Record<string, string> = {
  Utf8View: "Utf8 (or LargeUtf8)",
  BinaryView: "Binary (or LargeBinary)",
  LargeList: "List",
  ListView: "List",
  LargeListView: "List",
};

function safeName(t: Foreign): string {
  try {
    const name = String(t);
    return name.length > 80 ? `${name.slice(0, 80)}…` : name;
  } catch {
    return "(unnamed)";
  }
}

function unsupported(t: Foreign, path: string): never {
  const name = safeName(t);
  const base = /^[A-Za-z0-9]+/.exec(name)?.[0] ?? "";
  const instead = INSTEAD[base] ? `build the column as ${INSTEAD[base]}` : "build the column with a type Quiver stores (see the README)";
  const id = typeof t?.typeId === "number" ? t.typeId : NaN;
  const known = (Type as unknown as Record<number, string | undefined>)[id] !== undefined;
  throw new InvalidArgumentError(
    "InvalidArgument",
    known
      ? `column '${path}' has Arrow type ${name} (type id ${id}), which Quiver does not store: ${instead}`
      : `column '${path}' has Arrow type ${name} (type id ${describeValue(t?.typeId)}), made by ${copyOf(t)}, ` +
          `which the apache-arrow Quiver imports (${ourCopy()}) has no class for, so it cannot be passed on ` +
          `(nor does Quiver store it): ${instead}`,
  );
}

function malformed(what: string, path: string, x: unknown): never {
  throw new InvalidArgumentError(
    "InvalidArgument",
    `${what}${path ? ` of column '${path}'` : ""} is not an apache-arrow object Quiver can read (got ${describeValue(x)}); ` +
      "Quiver takes Tables, RecordBatches, Schemas, Fields and types of apache-arrow >= 15, from any copy of it",
  );
}

/** `t` as a type of our copy. */
export function ownType(t: unknown, path = ""): DataType {
  if (ours(DataType, t)) return t as DataType;
  const f = t as Foreign;
  if (f === null || typeof f !== "object" || typeof f.typeId !== "number") malformed("the type", path, t);
  const children = (): Field[] => {
    if (!Array.isArray(f.children)) malformed("the type", path, t);
    return f.children.map((c: Foreign) => ownField(c, path === "" ? String(c?.name) : `${path}.${String(c?.name)}`));
  };
  const item = (): Field => {
    if (!Array.isArray(f.children) || f.children.length !== 1) malformed("the type", path, t);
    return ownField(f.children[0], path);
  };
  switch (f.typeId as Type) {
    case Type.Null:
      return new Null();
    case Type.Int:
      return new Int(Boolean(f.isSigned), f.bitWidth);
    case Type.Float:
      return new Float(f.precision);
    case Type.Binary:
      return new Binary();
    case Type.Utf8:
      return new Utf8();
    case Type.LargeBinary:
      return new LargeBinary();
    case Type.LargeUtf8:
      return new LargeUtf8();
    case Type.Bool:
      return new Bool();
    case Type.Decimal:
      return new Decimal(f.scale, f.precision, f.bitWidth);
    case Type.Date:
      return new Date_(f.unit);
    case Type.Time:
      return new Time(f.unit, f.bitWidth);
    case Type.Timestamp:
      return new Timestamp(f.unit, f.timezone ?? null);
    case Type.Interval:
      return new Interval(f.unit);
    case Type.Duration:
      return new Duration(f.unit);
    case Type.FixedSizeBinary:
      return new FixedSizeBinary(f.byteWidth);
    case Type.List:
      return new List(item());
    case Type.FixedSizeList:
      return new FixedSizeList(f.listSize, item());
    case Type.Struct:
      return new Struct(children());
    case Type.Map:
      return new Map_(item() as never, Boolean(f.keysSorted));
    case Type.Union:
      return new Union(f.mode, Array.from(f.typeIds as ArrayLike<number>), children());
    case Type.Dictionary:
      return new Dictionary(ownType(f.dictionary, path), ownType(f.indices, path) as never, f.id, Boolean(f.isOrdered));
    default:
      // A type id our copy has no class for (e.g. Utf8View from apache-arrow 21.2).
      return unsupported(f, path);
  }
}

/** `f` as a field of our copy. */
export function ownField(f: unknown, path?: string): Field {
  if (ours(Field, f) && ours(DataType, (f as Field).type)) return f as Field;
  const x = f as Foreign;
  if (x === null || typeof x !== "object" || typeof x.name !== "string") malformed("the field", path ?? "", f);
  const metadata = x.metadata instanceof Map ? new Map<string, string>(x.metadata) : undefined;
  return new Field(x.name, ownType(x.type, path ?? x.name), Boolean(x.nullable), metadata);
}

/** `s` as a schema of our copy. */
export function ownSchema(s: Schema): Schema;
export function ownSchema(s: Schema | undefined): Schema | undefined;
export function ownSchema(s: Schema | undefined): Schema | undefined {
  if (s === undefined || ours(Schema, s)) return s;
  const x = s as Foreign;
  if (x === null || typeof x !== "object" || !Array.isArray(x.fields)) malformed("the schema", "", s);
  const metadata = x.metadata instanceof Map ? new Map<string, string>(x.metadata) : undefined;
  return new Schema(
    x.fields.map((f: Foreign) => ownField(f)),
    metadata,
  );
}

/** A typed array of another version, seen as the element type our copy expects (no copy). */
function asArray(buffer: unknown, Ctor: unknown, what: string, path: string): ArrayBufferView | undefined {
  if (buffer === undefined || buffer === null) return undefined;
  if (!ArrayBuffer.isView(buffer)) malformed(what, path, buffer);
  const C = Ctor as { new (b: ArrayBufferLike, offset: number, length: number): ArrayBufferView; BYTES_PER_ELEMENT?: number };
  if (typeof C !== "function" || typeof C.BYTES_PER_ELEMENT !== "number" || buffer instanceof (C as Foreign)) {
    return buffer;
  }
  const size = C.BYTES_PER_ELEMENT;
  const length = Math.floor(buffer.byteLength / size);
  if (buffer.byteOffset % size === 0) return new C(buffer.buffer, buffer.byteOffset, length);
  // Misaligned (a view into a shared buffer): copy the bytes to an aligned one.
  const copy = new Uint8Array(buffer.buffer, buffer.byteOffset, length * size).slice();
  return new C(copy.buffer, 0, length);
}

/** Rebuilds `d` (Data of another copy) as Data of our `type`; `dictionaries` keeps shared
 * dictionaries shared. */
function ownData(d: Foreign, type: DataType, path: string, dictionaries: Map<unknown, Vector>): Data {
  if (d === null || typeof d !== "object" || typeof d.length !== "number") malformed("the data", path, d);
  if (ours(Data, d) && d.type === type) return d as Data;
  const isDictionary = DataType.isDictionary(type);
  // A dictionary's `children` are its values' children; its Data has none of its own.
  const fields: Field[] = isDictionary ? [] : ((type.children ?? []) as Field[]);
  const childData: Foreign[] = Array.isArray(d.children) ? d.children : [];
  if (childData.length < fields.length) malformed("the data", path, d);
  const children = fields.map((f, i) =>
    ownData(childData[i], f.type, path === "" ? f.name : DataType.isStruct(type) ? `${path}.${f.name}` : path, dictionaries),
  );
  const valuesType = isDictionary ? (type as Dictionary).indices.ArrayType : type.ArrayType;
  const nullBitmap = asArray(d.nullBitmap, Uint8Array, "the null bitmap", path);
  const buffers = [
    asArray(d.valueOffsets, (type as Foreign).OffsetArrayType, "the offsets", path),
    asArray(d.values, valuesType, "the values", path),
    nullBitmap,
    asArray(d.typeIds, Int8Array, "the union type ids", path),
  ];
  // Null counts are recounted by our copy from the bitmap (-1: unknown), not trusted.
  const nullCount = nullBitmap && nullBitmap.byteLength > 0 ? -1 : type.typeId === Type.Null ? d.length : 0;
  let dictionary: Vector | undefined;
  if (isDictionary) {
    const foreign = d.dictionary;
    if (foreign === null || typeof foreign !== "object" || !Array.isArray(foreign.data)) malformed("the dictionary", path, foreign);
    dictionary = dictionaries.get(foreign);
    if (!dictionary) {
      const valueType = (type as Dictionary).dictionary;
      dictionary = ours(Vector, foreign) && foreign.type === valueType
        ? (foreign as Vector)
        : new Vector(foreign.data.map((c: Foreign) => ownData(c, valueType, path, dictionaries)));
      dictionaries.set(foreign, dictionary);
    }
  }
  return new Data(type, d.offset ?? 0, d.length, nullCount, buffers as never, children, dictionary);
}

/** `b` (a RecordBatch of any copy) as a batch of ours; with `schema` (ours, from the same
 * table), that schema. */
export function ownBatch(b: unknown, schema?: Schema, dictionaries: Map<unknown, Vector> = new Map()): RecordBatch {
  if (ours(RecordBatch, b) && (schema === undefined || (b as RecordBatch).schema === schema)) return b as RecordBatch;
  const x = b as Foreign;
  if (x === null || typeof x !== "object" || !isObject(x.data) || !isObject(x.schema)) {
    malformed("the RecordBatch", "", b);
  }
  const s = schema ?? ownSchema(x.schema as Schema);
  return new RecordBatch(s, ownData(x.data, new Struct(s.fields), "", dictionaries) as Data<Struct>);
}

/** The columns of `schema` as text: names, types and nullability (not dictionary ids). */
function columnsOf(schema: Schema): string {
  return schema.fields.map((f) => `${f.name}: ${f.type}${f.nullable ? "" : " not null"}`).join(", ");
}

/**
 * Batches of any copies as batches of ours, all with the first one's schema: batches built
 * apart differ in their dictionary ids at least, which our Table refuses to mix (a TypeError).
 * Dictionaries shared between them stay shared. Batches with other columns are a
 * SchemaMismatchError.
 */
export function ownBatches(batches: readonly unknown[]): RecordBatch[] {
  const dictionaries = new Map<unknown, Vector>();
  const first = ownBatch(batches[0], undefined, dictionaries);
  const schema = first.schema;
  return [
    first,
    ...batches.slice(1).map((b, i) => {
      const theirs = (b as Foreign)?.schema;
      if (!isObject(theirs)) return ownBatch(b, undefined, dictionaries); // refuses it
      const own = ours(RecordBatch, b) ? (b as RecordBatch).schema : ownSchema(theirs as Schema);
      if (own !== schema && columnsOf(own) !== columnsOf(schema)) {
        throw new SchemaMismatchError(
          "SchemaMismatch",
          `RecordBatch ${i + 1} has columns (${columnsOf(own)}) but RecordBatch 0 has (${columnsOf(schema)}); ` +
            "batches given together must have the same columns",
        );
      }
      return ownBatch(b, schema, dictionaries);
    }),
  ];
}

/** `t` (a Table of any copy) as a table of ours. */
export function ownTable(t: unknown): Table {
  if (ours(Table, t)) return t as Table;
  const x = t as Foreign;
  if (x === null || typeof x !== "object" || !Array.isArray(x.batches) || !isObject(x.schema)) {
    malformed("the Table", "", t);
  }
  const schema = ownSchema(x.schema as Schema);
  const dictionaries = new Map<unknown, Vector>();
  return new Table(schema, x.batches.map((b: Foreign) => ownBatch(b, schema, dictionaries)));
}
