// Arguments of the wrong kind: every public method that takes a number refuses a Symbol, an
// object (also one without a prototype, or whose toString throws), a bigint where none is
// allowed and NaN with an InvalidArgumentError that names the argument, never with a TypeError
// thrown while formatting the message.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeValue } from "../lib/check.js";
import {
  connect,
  type Connection,
  Index,
  InvalidArgumentError,
  NotFoundError,
  QuiverError,
  SchemaMismatchError,
  type Table,
} from "../lib/index.js";

const throwing = {
  toString() {
    throw new Error("toString must not be called");
  },
  valueOf() {
    throw new Error("valueOf must not be called");
  },
};

/** Values that are not numbers, named for the test output. */
const NOT_NUMBERS: Array<[string, unknown]> = [
  ["a Symbol", Symbol("seven")],
  ["an object", { n: 7 }],
  ["an object with no prototype", Object.create(null)],
  ["an object whose toString throws", throwing],
  ["an array", [7]],
  ["a string", "7"],
  ["a bigint", 7n],
  ["NaN", NaN],
];

/** Runs `call` (sync or async) and expects an InvalidArgumentError whose message matches `what`. */
async function refused(call: () => unknown, what: RegExp): Promise<void> {
  let error: unknown;
  try {
    await call();
  } catch (e) {
    error = e;
  }
  expect(error, `expected an InvalidArgumentError matching ${what}`).toBeInstanceOf(InvalidArgumentError);
  expect((error as Error).message).toMatch(what);
}

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

let db: Connection;
let table: Table;

beforeAll(async () => {
  db = await connect("memory://");
  table = await db.createTable(
    "t",
    Array.from({ length: 20 }, (_, i) => ({ id: BigInt(i), vector: [i, 1, 0], price: i * 1.5 })),
  );
});

describe("describeValue", () => {
  it("shows any value without throwing", () => {
    expect(describeValue(Symbol("x"))).toBe("Symbol(x) (a symbol)");
    expect(describeValue(7n)).toBe("7n (a bigint)");
    expect(describeValue(NaN)).toBe("NaN");
    expect(describeValue(-0)).toBe("-0");
    expect(describeValue("abc")).toBe("'abc'");
    expect(describeValue("x".repeat(100))).toMatch(/^'x{60}…'$/);
    expect(describeValue({})).toBe("an object");
    expect(describeValue(Object.create(null))).toBe("an object with no prototype");
    expect(describeValue(throwing)).toBe("an object");
    expect(describeValue(new Map())).toBe("a Map");
    expect(describeValue(new Int32Array(2))).toBe("an Int32Array");
    expect(describeValue([1, 2])).toBe("an array of 2 values");
    expect(describeValue(() => 1)).toBe("a function");
    expect(describeValue(null)).toBe("null");
    expect(describeValue(undefined)).toBe("undefined");
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    expect(describeValue(revoked.proxy)).toBe("a value that cannot be shown");
  });
});

describe.each(NOT_NUMBERS)("%s where a number is expected", (_name, bad) => {
  const n = bad as number;

  it("connect options", async () => {
    const dir = mkdtempSync(join(tmpdir(), "quiver-args-"));
    dirs.push(dir);
    await refused(() => connect(dir, { readConsistencyInterval: n }), /readConsistencyInterval must be a number of seconds/);
    await refused(() => connect(dir, { metadataCacheBytes: n }), /metadataCacheBytes must be a whole number of bytes/);
    await refused(() => connect(dir, { indexCacheBytes: n }), /indexCacheBytes must be a whole number of bytes/);
  });

  it("tableNames, openTable", async () => {
    await refused(() => db.tableNames({ limit: n }), /limit must be a non-negative integer/);
    await refused(() => db.openTable("t", { version: n }), /version must be a positive integer/);
  });

  it("checkout, restore, takeOffsets, takeRowIds", async () => {
    // A string is a tag name (LanceDB's checkout(version | tag)): an unknown one is a NotFoundError.
    if (typeof bad === "string") await expect(table.checkout(n as never)).rejects.toBeInstanceOf(NotFoundError);
    else await refused(() => table.checkout(n), /version must be a positive integer/);
    await refused(() => table.restore(n), /version must be a positive integer/);
    await refused(() => table.takeOffsets([0, n]), /offset 1 must be a non-negative integer/);
    if (typeof bad !== "bigint") await refused(() => table.takeRowIds([0n, n]), /row id 1 must be a non-negative integer/);
  });

  it("query limit and offset", () => {
    return Promise.all([
      refused(() => table.query().limit(n), /limit must be a non-negative integer/),
      refused(() => table.query().offset(n), /offset must be a non-negative integer/),
      refused(() => table.search([1, 2, 3]).limit(n), /limit must be a non-negative integer/),
    ]);
  });

  it("vector search settings", async () => {
    const q = table.search([1, 2, 3]);
    await refused(() => q.nprobes(n), /nprobes must be a non-negative integer/);
    await refused(() => q.refineFactor(n), /refineFactor must be a non-negative integer/);
    await refused(() => q.ef(n), /ef must be a non-negative integer/);
    await refused(() => q.distanceRange(n), /distanceRange\(\) lower bound must be a number/);
    await refused(() => q.distanceRange(0, n), /distanceRange\(\) upper bound must be a number/);
  });

  it("query vector elements", async () => {
    await refused(() => table.search([1, n, 3]), /element 1 of the query vector must be a finite number/);
    await refused(() => table.search([1, 2, Infinity]), /element 2 of the query vector must be a finite number, got Infinity/);
  });

  it("Index.ivfPq and Index.ivfFlat options", async () => {
    for (const key of ["numPartitions", "numSubVectors", "numBits", "maxIterations", "sampleRate"] as const) {
      await refused(() => Index.ivfPq({ [key]: n }), new RegExp(`${key} must be a positive integer`));
    }
    await refused(() => Index.ivfFlat({ numPartitions: n }), /numPartitions must be a positive integer/);
  });

  it("vector elements and numeric columns of rows are a SchemaMismatchError, not a TypeError", async () => {
    if (typeof bad === "number") return; // NaN is a number: stored as it is
    const vector = await table.add([{ id: 100n, vector: [1, bad, 3], price: 1 }]).catch((e: unknown) => e);
    expect(vector).toBeInstanceOf(SchemaMismatchError);
    expect((vector as Error).message).toMatch(/field 'vector' in row 0: vector element 1 is .*, not a number/);
    if (typeof bad !== "bigint") {
      const scalar = await table.add([{ id: 100n, vector: [1, 2, 3], price: bad }]).catch((e: unknown) => e);
      expect(scalar).toBeInstanceOf(SchemaMismatchError);
      expect((scalar as Error).message).toMatch(/field 'price' in row 0 is .*, not a number/);
    }
    expect(await table.countRows()).toBe(20);
  });
});

describe("other arguments of the wrong kind", () => {
  const WRONG: unknown[] = [Symbol("s"), { a: 1 }, Object.create(null), throwing, 5n];

  it("names and modes", async () => {
    for (const bad of WRONG) {
      const s = bad as string;
      await refused(() => db.openTable(s), /the table name must be a non-empty string/);
      await refused(() => db.createTable(s, [{ a: 1 }]), /the table name must be a non-empty string/);
      await refused(() => db.dropTable(s), /the table name must be a non-empty string/);
      await refused(() => db.createTable("x", [{ a: 1 }], { mode: s as never }), /mode must be 'create' or 'overwrite', got /);
      await refused(() => table.add([{ id: 1n }], { mode: s as never }), /mode must be 'append' or 'overwrite', got /);
      await refused(() => table.search([1, 2, 3]).distanceType(s as never), /distanceType must be l2, cosine, dot or hamming, got /);
      await refused(() => Index.ivfPq({ distanceType: s as never }), /distanceType must be l2, cosine, dot or hamming, got /);
      await refused(() => table.search([1, 2, 3]).column(s), /column\(\) must be a non-empty string/);
      await refused(() => table.query().select([s]), /select\(\) column 0 must be a column name/);
      await refused(() => table.query().select({ alias: s }), /select\(\{ alias: .* \}\): only plain column names/);
      await refused(() => table.indexStats(s), /index name must be a non-empty string/);
      await refused(() => table.dropIndex(s), /index name must be a non-empty string/);
      await refused(() => table.createIndex("vector", { name: s }), /the index name must be a non-empty string/);
      await refused(() => table.alterColumns([{ path: "price", rename: s }]), /rename of 'price' must be a string/);
      await refused(() => table.alterColumns([{ path: "price", nullable: s as never }]), /nullable of 'price' must be true or false/);
      await refused(() => table.alterColumns([{ path: "price", dataType: s as never }]), /dataType of 'price' must be an Arrow type/);
      await refused(() => connect("memory://", { memoryMap: s as never }), /memoryMap must be true or false/);
      await refused(() => db.tableNames({ startAfter: s }), /startAfter must be a table name/);
    }
  });

  it("options that are not objects", async () => {
    for (const bad of [Symbol("s"), 5, 5n, "x"]) {
      const o = bad as never;
      await refused(() => connect("memory://", o), /connect\(\) options must be an object/);
      await refused(() => db.tableNames(o), /tableNames\(\) options must be an object/);
      await refused(() => db.createTable("x", [{ a: 1 }], o), /createTable\(\) options must be an object/);
      await refused(() => table.add([{ id: 1n }], o), /add\(\) options must be an object/);
      await refused(() => Index.ivfPq(o), /Index.ivfPq\(\) options must be an object/);
    }
  });

  it("arrays that are not arrays, vectors that are not vectors", async () => {
    for (const bad of WRONG) {
      await refused(() => table.takeOffsets(bad as never), /takeOffsets\(\) offsets must be an array/);
      await refused(() => table.takeRowIds(bad as never), /takeRowIds\(\) ids must be an array/);
      await refused(() => table.search(bad as never), /search\(\) vector must be number\[\] or a typed array/);
    }
    await refused(() => table.takeRowIds([-1n]), /row id 0 must be a non-negative integer/);
    await refused(() => table.takeRowIds([2n ** 64n]), /row id 0 must be a non-negative integer/);
    await refused(() => table.takeOffsets([0], [Symbol("c")] as never), /takeOffsets\(\) columns must be an array of column names/);
    await refused(() => table.search(new BigInt64Array(3) as never), /element 0 of the query vector must be a finite number, got 0n/);
  });

  it("allowed non-finite values still work", async () => {
    expect(await table.search([1, 2, 3]).distanceRange(-Infinity, Infinity).limit(3).toArray()).toHaveLength(3);
    const dir = mkdtempSync(join(tmpdir(), "quiver-args-"));
    dirs.push(dir);
    expect((await connect(dir, { readConsistencyInterval: Infinity })).isOpen()).toBe(true);
    expect((await table.takeRowIds([0n, 1])).numRows).toBe(2);
  });

  it("every error above is a QuiverError, and so is a bad value in a typed column", async () => {
    const err = await table.add([{ id: "1" as never, vector: [1, 2, 3], price: 1 }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QuiverError);
    expect((err as Error).message).toMatch(/field 'id' in row 0 is '1', not a number or bigint \(the column is Int64\)/);
  });
});
