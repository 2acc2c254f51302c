// Every type the engine stores, with nulls, through both doors: apache-arrow tables in and out,
// and plain objects (with an explicit schema) in and out.
import {
  Binary,
  Bool,
  DateDay,
  type DataType,
  Field,
  FixedSizeList,
  Float16,
  Float32,
  Float64,
  Int16,
  Int32,
  Int64,
  Int8,
  LargeBinary,
  LargeUtf8,
  List,
  Schema,
  Struct,
  Table,
  TimestampMicrosecond,
  TimestampMillisecond,
  TimestampNanosecond,
  TimestampSecond,
  Uint16,
  Uint32,
  Uint64,
  Uint8,
  Utf8,
  vectorFromArray,
} from "apache-arrow";
import { describe, expect, it } from "vitest";
import { connect } from "../dist/index.js";

const vec = (type: DataType, dim: number) => new FixedSizeList(dim, new Field("item", type, true));
const bytes = (...b: number[]) => new Uint8Array(b);
const day = (iso: string) => new Date(`${iso}T00:00:00Z`);

/** Each column: its type and three values, the middle one null. */
const columns: [string, DataType, unknown[]][] = [
  ["bool", new Bool(), [true, null, false]],
  ["i8", new Int8(), [-128, null, 127]],
  ["i16", new Int16(), [-32768, null, 32767]],
  ["i32", new Int32(), [-2147483648, null, 2147483647]],
  ["i64", new Int64(), [-(2n ** 63n), null, 2n ** 63n - 1n]],
  ["u8", new Uint8(), [0, null, 255]],
  ["u16", new Uint16(), [0, null, 65535]],
  ["u32", new Uint32(), [0, null, 4294967295]],
  ["u64", new Uint64(), [0n, null, 2n ** 64n - 1n]],
  ["f16", new Float16(), [1.5, null, -2]],
  ["f32", new Float32(), [1.5, null, -3.25]],
  ["f64", new Float64(), [Math.PI, null, -1e300]],
  ["utf8", new Utf8(), ["héllo", null, ""]],
  ["large_utf8", new LargeUtf8(), ["wide", null, "x".repeat(1000)]],
  ["binary", new Binary(), [bytes(0, 1, 255), null, bytes()]],
  ["large_binary", new LargeBinary(), [bytes(9), null, bytes(1, 2)]],
  ["date", new DateDay(), [day("2024-02-29"), null, day("1969-12-31")]],
  ["ts_s", new TimestampSecond(), [new Date(1_700_000_000_000), null, new Date(0)]],
  ["ts_ms", new TimestampMillisecond(), [new Date(1_700_000_000_123), null, new Date(-1000)]],
  ["ts_us", new TimestampMicrosecond(), [new Date(1_700_000_000_123), null, new Date(5)]],
  ["ts_ns", new TimestampNanosecond(), [new Date(1_700_000_000_123), null, new Date(7)]],
  ["ts_tz", new TimestampMillisecond("Europe/Paris"), [new Date(86_400_000), null, new Date(1)]],
  ["vec_f32", vec(new Float32(), 3), [new Float32Array([1, 2, 3]), null, new Float32Array([-1, 0, 0.5])]],
  ["vec_f64", vec(new Float64(), 2), [new Float64Array([1e-300, 2]), null, new Float64Array([3, 4])]],
  ["vec_f16", vec(new Float16(), 2), [new Float32Array([1, 2]), null, new Float32Array([0, -1])]],
  ["vec_u8", vec(new Uint8(), 4), [new Uint8Array([0, 1, 254, 255]), null, new Uint8Array([7, 7, 7, 7])]],
  ["vec_i8", vec(new Int8(), 2), [new Int8Array([-128, 127]), null, new Int8Array([0, -1])]],
  ["list_i32", new List(new Field("item", new Int32(), true)), [[1, null, 3], null, []]],
  ["list_utf8", new List(new Field("item", new Utf8(), true)), [["a", "b"], null, [""]]],
  [
    "struct",
    new Struct([
      new Field("x", new Float64(), true),
      new Field("tags", new List(new Field("item", new Utf8(), true)), true),
      new Field("inner", new Struct([new Field("flag", new Bool(), true)]), true),
    ]),
    [{ x: 1.5, tags: ["t"], inner: { flag: true } }, null, { x: null, tags: null, inner: { flag: null } }],
  ],
];

const schema = new Schema(columns.map(([name, type]) => new Field(name, type, true)));

/** A value as plain data, so Arrow values and JS values compare with toEqual. */
function normalize(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value.getTime();
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number>);
  if (typeof value === "object") {
    const v = value as { toArray?: () => unknown; toJSON?: () => unknown };
    if (typeof v.toJSON === "function" && !Array.isArray(value) && !(Symbol.iterator in value)) return normalize(v.toJSON());
    if (typeof v.toArray === "function") return Array.from(v.toArray() as Iterable<unknown>, normalize);
    if (Array.isArray(value)) return value.map(normalize);
    return Object.fromEntries(Object.entries(value).map(([k, x]) => [k, normalize(x)]));
  }
  return value;
}

function columnsOf(table: Table) {
  return Object.fromEntries(
    table.schema.fields.map((f) => {
      const child = table.getChild(f.name)!;
      return [f.name, Array.from({ length: table.numRows }, (_, i) => normalize(child.get(i)))];
    }),
  );
}

describe("round trip of every supported type", () => {
  const arrowIn = new Table(
    Object.fromEntries(columns.map(([name, type, values]) => [name, vectorFromArray(values, type)])),
  );

  it("through apache-arrow tables", async () => {
    const db = await connect("memory://");
    const t = await db.createTable("arrow", arrowIn);
    await t.add(arrowIn.batches);
    const out = await t.toArrow();
    expect(out.schema.fields.map((f) => `${f.name}: ${f.type}`)).toEqual(
      arrowIn.schema.fields.map((f) => `${f.name}: ${f.type}`),
    );
    const expected = columnsOf(arrowIn);
    const doubled = Object.fromEntries(Object.entries(expected).map(([k, v]) => [k, [...v, ...v]]));
    expect(columnsOf(out)).toEqual(doubled);
    expect(normalize(expected.u64)).toEqual([0n, null, 2n ** 64n - 1n]);
    expect(expected.ts_ns).toEqual([1_700_000_000_123, null, 7]);
    const taken = await t.takeOffsets([5, 0]);
    expect(columnsOf(taken)).toEqual(
      Object.fromEntries(Object.entries(expected).map(([k, v]) => [k, [v[2], v[0]]])),
    );
  });

  it("through plain objects with an explicit schema", async () => {
    const db = await connect("memory://");
    const rows = [0, 1, 2].map((i) => Object.fromEntries(columns.map(([name, , values]) => [name, values[i]])));
    const t = await db.createTable("objects", rows, { schema });
    const back = await t.query().toArray();
    expect(back.map((r) => normalize(r))).toEqual(rows.map((r) => normalize(r)));
    expect(back[0].i64).toBe(-(2n ** 63n));
    expect(back[0].ts_us).toEqual(new Date(1_700_000_000_123));
    expect(back[0].vec_f32).toBeInstanceOf(Float32Array);
    expect(back[0].vec_f16).toEqual(new Float32Array([1, 2]));
    expect(back[0].date).toEqual(day("2024-02-29"));
    expect(back[0].binary).toEqual(bytes(0, 1, 255));
    expect(back[1]).toEqual(Object.fromEntries(columns.map(([name]) => [name, null])));
  });
});

describe("vector search rows", () => {
  it("come the same whether built from plain columns or decoded from Arrow", async () => {
    const n = 40;
    const at = <T>(f: (i: number) => T) => Array.from({ length: n }, (_, i) => f(i));
    const plain: [string, DataType, unknown[]][] = [
      ["bool", new Bool(), at((i) => i % 3 === 0)],
      ["i8", new Int8(), at((i) => (i % 2 ? -128 : 127) + (i % 2 ? i : -i))],
      ["i16", new Int16(), at((i) => -32768 + i)],
      ["i32", new Int32(), at((i) => 2147483647 - i)],
      ["i64", new Int64(), at((i) => -(2n ** 63n) + BigInt(i))],
      ["u8", new Uint8(), at((i) => 255 - i)],
      ["u16", new Uint16(), at((i) => 65535 - i)],
      ["u32", new Uint32(), at((i) => 4294967295 - i)],
      ["u64", new Uint64(), at((i) => 2n ** 64n - 1n - BigInt(i))],
      ["f32", new Float32(), at((i) => i / 8 - 1.5)],
      ["f64", new Float64(), at((i) => Math.PI * i)],
      ["utf8", new Utf8(), at((i) => `héllo ${i}`)],
      ["large_utf8", new LargeUtf8(), at((i) => "x".repeat(i))],
      ["vec", vec(new Float32(), 4), at((i) => new Float32Array([i, i / 2, -i, 1 / (i + 1)]))],
    ];
    // A column with nulls and one without a plain form: results holding them come through Arrow.
    const others: [string, DataType, unknown[]][] = [
      ["note", new Utf8(), at((i) => (i % 2 ? null : `n${i}`))],
      ["half", new Float16(), at((i) => i / 4)],
    ];
    const arrowIn = new Table(
      Object.fromEntries([...plain, ...others].map(([name, type, values]) => [name, vectorFromArray(values, type)])),
    );
    const db = await connect("memory://");
    const t = await db.createTable("plain", arrowIn);
    const q = [3, 1.5, -3, 0.25];
    const names = plain.map(([name]) => name);
    // The engine answers in plain columns only where every column has a plain form.
    const native = (columns: string[]) => t.native().vectorSearch(Float64Array.from(q), { k: 15, columns, plain: true }, false);
    const direct = await native(names);
    expect(direct.plain?.map((c) => c.name)).toEqual([...names, "_distance"]);
    expect(direct.data ?? null).toBeNull();
    for (const extra of ["note", "half"]) {
      const viaArrow = await native([...names, extra]);
      expect(viaArrow.plain ?? null).toBeNull();
      expect(viaArrow.data).toBeInstanceOf(Buffer);
    }
    const drop = (rows: Record<string, unknown>[], key: string) => rows.map(({ [key]: _, ...rest }) => rest);
    for (const options of [undefined, { bigIntAsNumber: true }]) {
      const fromPlain = await t.search(q).select(names).limit(15).toArray(options);
      expect(fromPlain).toHaveLength(15);
      for (const extra of ["note", "half"]) {
        const fromArrow = await t.search(q).select([...names, extra]).limit(15).toArray(options);
        expect(fromPlain).toEqual(drop(fromArrow, extra));
      }
      expect(fromPlain[0].vec).toEqual(new Float32Array([3, 1.5, -3, 0.25]));
      expect(typeof fromPlain[0].i64).toBe(options ? "number" : "bigint");
    }
    // Aliases name the plain columns as they name Arrow's.
    const aliased = await t.search(q).select({ id: "i32", v: "vec" }).limit(3).toArray();
    expect(aliased.map((r) => Object.keys(r))).toEqual([["id", "v", "_distance"], ["id", "v", "_distance"], ["id", "v", "_distance"]]);
    expect(aliased[0]).toEqual({ id: 2147483647 - 3, v: new Float32Array([3, 1.5, -3, 0.25]), _distance: 0 });
  });
});
