// Arrow objects from other copies of apache-arrow: other versions (15 and the newest, installed
// from the npm registry at test time) and the other module build of the repo's own version
// (ESM objects into the CommonJS build of Quiver and the other way round). Their Tables,
// RecordBatches, Schemas, Fields and types must work as our own copy's do.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import * as esmArrow from "apache-arrow";
import { beforeAll, describe, expect, it } from "vitest";
import * as quiver from "../lib/index.js";

const exec = promisify(execFile);

type Arrow = any;
type Quiver = typeof quiver;

// Installed copies are kept between runs; the newest is refreshed after a week.
const CACHE = join(tmpdir(), "quiver-arrow-interop");
const WEEK_MS = 7 * 24 * 3600 * 1000;

/** Installs `spec` (e.g. apache-arrow@15) into CACHE/<folder>, unless a recent copy is there. */
async function installArrow(spec: string, folder: string, maxAgeMs = Infinity): Promise<string> {
  const dir = join(CACHE, folder);
  const pkg = join(dir, "node_modules", "apache-arrow", "package.json");
  if (existsSync(pkg) && Date.now() - statSync(pkg).mtimeMs < maxAgeMs) return dir;
  mkdirSync(CACHE, { recursive: true });
  const staging = mkdtempSync(join(CACHE, `.${folder}-`));
  try {
    await exec(
      "npm",
      ["install", "--prefix", staging, "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--ignore-scripts", spec],
      { timeout: 240_000, shell: process.platform === "win32" },
    );
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    const err = e as { stderr?: string; message: string };
    throw new Error(
      `this test needs ${spec} from the npm registry, and \`npm install ${spec}\` failed ` +
        `(is the registry reachable from here?): ${(err.stderr || err.message).trim().slice(-2000)}`,
    );
  }
  rmSync(dir, { recursive: true, force: true });
  try {
    renameSync(staging, dir);
  } catch {
    rmSync(staging, { recursive: true, force: true }); // another run put its copy there first
  }
  return dir;
}

/** The CommonJS and the ESM build of the apache-arrow installed in `dir`. */
async function load(dir: string): Promise<{ version: string; cjs: Arrow; esm: Arrow }> {
  const pkg = JSON.parse(readFileSync(join(dir, "node_modules", "apache-arrow", "package.json"), "utf8"));
  const cjs = createRequire(join(dir, "package.json"))("apache-arrow");
  const esm = await import(pathToFileURL(join(dir, "node_modules", "apache-arrow", "Arrow.node.mjs")).href);
  return { version: pkg.version, cjs, esm };
}

// ---------------------------------------------------------------------------------------------
// One sample table, built the same way with any copy

function listOf(A: Arrow, item: Arrow) {
  return new A.List(new A.Field("item", item, true));
}

function sampleSchema(A: Arrow): Arrow {
  return new A.Schema([
    new A.Field("id", new A.Int64(), true),
    new A.Field("f", new A.Float64(), true),
    new A.Field("i32", new A.Int32(), true),
    new A.Field("s", new A.Utf8(), true),
    new A.Field("b", new A.Bool(), true),
    new A.Field("ts", new A.TimestampMillisecond(), true),
    new A.Field("tsus", new A.TimestampMicrosecond(), true),
    new A.Field("tags", listOf(A, new A.Utf8()), true),
    new A.Field("scores", listOf(A, new A.Float32()), true),
    new A.Field("meta", new A.Struct([new A.Field("k", new A.Int32(), true), new A.Field("name", new A.Utf8(), true)]), true),
    new A.Field("vector", new A.FixedSizeList(4, new A.Field("item", new A.Float32(), true)), true),
    new A.Field("cat", new A.Dictionary(new A.Utf8(), new A.Int32()), true),
  ]);
}

const JAN_1 = Date.UTC(2024, 0, 1);
const LEAP_DAY = Date.UTC(2000, 1, 29, 12, 30);

/** Column values of `n` rows (every third row mostly null). A table must not end with a null
 * vector: apache-arrow's builders (15 to 21 at least) then leave the FixedSizeList's values
 * short, and the engine refuses the batch as damaged, whichever copy made it. */
function sampleColumns(n: number, start = 0) {
  const rows = Array.from({ length: n }, (_, j) => start + j);
  const some = <T>(f: (i: number) => T) => rows.map((i) => (i % 3 === 1 ? null : f(i)));
  return {
    id: rows.map((i) => (i % 3 === 2 ? null : BigInt(i))),
    f: some((i) => i * 1.5 - 2.25),
    i32: some((i) => 5 - i),
    s: some((i) => `text ${i}`),
    b: rows.map((i) => (i % 3 === 2 ? null : i % 2 === 0)),
    ts: some((i) => (i % 2 === 0 ? JAN_1 : LEAP_DAY) + i),
    tsus: some((i) => LEAP_DAY + i * 1000),
    tags: rows.map((i) => (i % 3 === 1 ? [] : i % 3 === 2 ? null : ["x", `t${i}`])),
    scores: some((i) => [i, 0.5]),
    meta: some((i) => ({ k: i, name: i % 2 === 0 ? `m${i}` : null })),
    vector: some((i) => [i, i + 1, i + 2, 0.25]),
    cat: rows.map((i) => (i % 3 === 2 ? null : ["red", "green", "blue"][i % 3])),
  };
}

/** A Table of `n` rows made by apache-arrow copy `A`, as one batch. */
function sampleTable(A: Arrow, n = 6, start = 0): Arrow {
  const schema = sampleSchema(A);
  const columns = sampleColumns(n, start) as Record<string, unknown[]>;
  const vectors: Record<string, Arrow> = {};
  for (const field of schema.fields) vectors[field.name] = A.vectorFromArray(columns[field.name], field.type);
  return new A.Table(vectors);
}

/** The rows Quiver must return for sampleTable(…, n, start). */
function expectedRows(n: number, start = 0) {
  const c = sampleColumns(n, start);
  return Array.from({ length: n }, (_, j) => ({
    id: c.id[j],
    f: c.f[j],
    i32: c.i32[j],
    s: c.s[j],
    b: c.b[j],
    ts: c.ts[j] === null ? null : new Date(c.ts[j] as number),
    tsus: c.tsus[j] === null ? null : new Date(c.tsus[j] as number),
    tags: c.tags[j],
    scores: c.scores[j],
    meta: c.meta[j],
    vector: c.vector[j] === null ? null : Float32Array.from(c.vector[j] as number[]),
    cat: c.cat[j],
  }));
}

const TYPES = [
  "id: Int64",
  "f: Float64",
  "i32: Int32",
  "s: Utf8",
  "b: Bool",
  "ts: Timestamp<MILLISECOND>",
  "tsus: Timestamp<MICROSECOND>",
  "tags: List<Utf8>",
  "scores: List<Float32>",
  "meta: Struct<{k:Int32, name:Utf8}>",
  "vector: FixedSizeList[4]<Float32>",
  // Dictionary-encoded strings are stored as plain strings.
  "cat: Utf8",
];

async function types(t: quiver.Table): Promise<string[]> {
  return (await t.schema()).fields.map((f) => `${f.name}: ${f.type}`);
}

async function rows(t: quiver.Table) {
  return t.query().toArray();
}

/** Everything Quiver takes Arrow objects for, with objects of copy `A`, through quiver `q`. */
async function exercise(q: Quiver, A: Arrow) {
  const db = await q.connect("memory://");

  // createTable from a Table, then add() a RecordBatch, an array of them, a sliced table and a stream.
  const t = await db.createTable("t", sampleTable(A, 6));
  expect(await types(t)).toEqual(TYPES);
  expect(await rows(t)).toEqual(expectedRows(6));
  expect(await t.add(sampleTable(A, 4, 6).batches[0])).toEqual({ version: 2 });
  const twoBatches = [sampleTable(A, 2, 10).batches[0], sampleTable(A, 3, 12).batches[0]];
  expect(await t.add(twoBatches)).toEqual({ version: 3 });
  expect(await t.add(sampleTable(A, 11, 12).slice(3, 11))).toEqual({ version: 4 }); // rows 15-22: offsets into buffers
  async function* stream() {
    yield sampleTable(A, 2, 23).batches[0];
    yield sampleTable(A, 3, 25).batches[0];
  }
  expect(await t.add(stream())).toEqual({ version: 5 });
  expect(await rows(t)).toEqual(expectedRows(28));

  // mergeInsert with a Table as the source.
  const merged = await t.mergeInsert("s").whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(sampleTable(A, 3, 27));
  expect(merged).toMatchObject({ numUpdatedRows: 1, numInsertedRows: 2, version: 6 });

  // Big enough to be written in chunks (sliced batches of our copy).
  const big = await db.createTable("big", sampleTable(A, 40_000));
  expect(await big.countRows()).toBe(40_000);
  expect(await big.query().offset(33_333).limit(3).toArray()).toEqual(expectedRows(3, 33_333));

  // Schemas, fields and types of copy A in options.
  const schema = sampleSchema(A);
  const empty = await db.createEmptyTable("empty", schema);
  expect(await types(empty)).toEqual(TYPES);
  await empty.add(sampleTable(A, 3));
  expect(await rows(empty)).toEqual(expectedRows(3));
  const plain = [{ id: 1, s: "x", vector: [1, 2, 3, 4] }];
  const typed = await db.createTable("typed", plain, {
    schema: new A.Schema([
      new A.Field("id", new A.Int64(), true),
      new A.Field("s", new A.Utf8(), true),
      new A.Field("vector", new A.FixedSizeList(4, new A.Field("item", new A.Float32(), true)), true),
    ]),
  });
  expect(await typed.query().toArray()).toEqual([{ id: 1n, s: "x", vector: Float32Array.from([1, 2, 3, 4]) }]);
  const idAndText = () => new A.Schema([new A.Field("id", new A.Int64(), true), new A.Field("s", new A.Utf8(), true)]);
  const viaAdd = await db.createEmptyTable("via_add", idAndText());
  await viaAdd.add([{ id: 5, s: "y" }], { schema: idAndText() });
  expect(await viaAdd.query().toArray()).toEqual([{ id: 5n, s: "y" }]);
  const streamed = await db.createTable("streamed", [[{ id: 7 }]][Symbol.iterator](), {
    schema: new A.Schema([new A.Field("id", new A.Int32(), true)]),
  });
  expect(await types(streamed)).toEqual(["id: Int32"]);

  await t.addColumns(new A.Field("note", new A.Utf8(), true));
  await t.addColumns([new A.Field("n1", new A.Float64(), true)]);
  await t.addColumns(new A.Schema([new A.Field("n2", new A.Int16(), true)]));
  await t.alterColumns([{ path: "i32", dataType: new A.Int64() }]);
  expect((await types(t)).slice(-3)).toEqual(["note: Utf8", "n1: Float64", "n2: Int16"]);
  expect((await types(t))[2]).toBe("i32: Int64");
  expect((await t.query().limit(1).toArray())[0]).toMatchObject({ i32: 5n, note: null, n1: null, n2: null });

  // What comes back is made by the apache-arrow that this build of Quiver imports.
  return { arrowOut: await t.toArrow(), batch: (await t.query().limit(1).toArrow()).batches[0] };
}

// ---------------------------------------------------------------------------------------------

describe("apache-arrow 15 and the newest apache-arrow, installed from the npm registry", () => {
  const copies: Record<string, { version: string; cjs: Arrow; esm: Arrow }> = {};

  beforeAll(async () => {
    copies.v15 = await load(await installArrow("apache-arrow@15", "v15"));
    copies.latest = await load(await installArrow("apache-arrow@latest", "latest", WEEK_MS));
  }, 600_000);

  for (const which of ["v15", "latest"] as const) {
    for (const build of ["cjs", "esm"] as const) {
      it(`takes Tables, RecordBatches, Schemas and Fields of ${which === "v15" ? "apache-arrow 15" : "the newest apache-arrow"} (${build === "cjs" ? "CommonJS" : "ESM"} build)`, async () => {
        const copy = copies[which];
        expect(copy.version.startsWith(which === "v15" ? "15." : "")).toBe(true);
        const A = copy[build];
        expect(A.Table).not.toBe(esmArrow.Table);
        const { arrowOut, batch } = await exercise(quiver, A);
        expect(arrowOut).toBeInstanceOf(esmArrow.Table);
        expect(arrowOut).not.toBeInstanceOf(A.Table);
        expect(batch).toBeInstanceOf(esmArrow.RecordBatch);
      });
    }
  }

  it("refuses a type the apache-arrow Quiver imports has no class for, naming the column, both copies and the fix", async () => {
    const A = copies.latest.esm;
    expect(A.Utf8View, `apache-arrow ${copies.latest.version} has Utf8View`).toBeDefined();
    const db = await quiver.connect("memory://");
    const table = new A.Table({ id: A.vectorFromArray([1, 2], new A.Int32()), s: A.vectorFromArray(["a", "b"], new A.Utf8View()) });
    const err = await db.createTable("t", table).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(quiver.InvalidArgumentError);
    expect((err as Error).message).toMatch(/column 's' has Arrow type Utf8View/);
    expect((err as Error).message).toMatch(/21\.2 or newer/);
    expect((err as Error).message).toMatch(/build the column as Utf8/);
    const list = new A.Schema([new A.Field("l", new A.LargeList(new A.Field("item", new A.Int32(), true)), true)]);
    await expect(db.createEmptyTable("l", list)).rejects.toThrow(/column 'l' has Arrow type LargeList.*build the column as List/);
    expect(await db.tableNames()).toEqual([]);
  });
});

describe("objects that only look like apache-arrow ones", () => {
  it("refuses objects that only look like Arrow tables with an InvalidArgumentError", async () => {
    const db = await quiver.connect("memory://");
    const fake = { schema: { fields: [{ name: "a", type: { typeId: 2, bitWidth: 32, isSigned: true }, nullable: true }] }, batches: [{}], numRows: 1 };
    await expect(db.createTable("t", fake as never)).rejects.toBeInstanceOf(quiver.InvalidArgumentError);
    await expect(db.createEmptyTable("t", { fields: "nope" } as never)).rejects.toBeInstanceOf(quiver.InvalidArgumentError);
    const real = esmArrow.tableFromArrays({ a: new Int32Array([1]) }).batches[0];
    const fakeBatch = { schema: null, numRows: 1, data: {} };
    await expect(db.createTable("t", [real, fakeBatch] as never)).rejects.toThrow(/the RecordBatch is not an apache-arrow object/);
    await expect(db.createEmptyTable("t", { fields: [{ name: "a", type: Symbol("t") }] } as never)).rejects.toBeInstanceOf(
      quiver.InvalidArgumentError,
    );
  });
});

describe("the ESM and the CommonJS build of one apache-arrow", () => {
  const require = createRequire(import.meta.url);
  const cjsArrow: Arrow = require("apache-arrow");

  it("are two copies here: the test imports the ESM build", () => {
    expect(cjsArrow.Table).not.toBe(esmArrow.Table);
  });

  it("batches built apart (other dictionary ids, other copies) go together; other columns are a SchemaMismatchError", async () => {
    const db = await quiver.connect("memory://");
    const batches = [sampleTable(esmArrow, 3).batches[0], sampleTable(esmArrow, 3, 3).batches[0], sampleTable(cjsArrow, 3, 6).batches[0]];
    const t = await db.createTable("t", batches);
    expect(await rows(t)).toEqual(expectedRows(9));
    const other = esmArrow.tableFromArrays({ id: new BigInt64Array([1n]) }).batches[0];
    const err = await t.add([batches[0], other]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(quiver.SchemaMismatchError);
    expect((err as Error).message).toMatch(/RecordBatch 1 has columns \(id: Int64 not null\) but RecordBatch 0 has \(id: Int64, f: Float64/);
  });

  it("an ESM apache-arrow table works with the CommonJS build of Quiver (dist/cjs)", async () => {
    const cjsQuiver: Quiver = require("../dist/cjs/index.js");
    const { arrowOut, batch } = await exercise(cjsQuiver, esmArrow);
    expect(arrowOut).toBeInstanceOf(cjsArrow.Table);
    expect(batch).toBeInstanceOf(cjsArrow.RecordBatch);
  });

  it("a CommonJS apache-arrow table works with the ESM build of Quiver (dist/)", async () => {
    const esmQuiver: Quiver = await import("../dist/index.js");
    const { arrowOut } = await exercise(esmQuiver, cjsArrow);
    expect(arrowOut).toBeInstanceOf(esmArrow.Table);
    expect(arrowOut).not.toBeInstanceOf(cjsArrow.Table);
  });
});
