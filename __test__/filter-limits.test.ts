// Filters of any length, and deep ones refused with a typed error: run in a child process
// (fixtures/filter-limits.mjs), so that a stack overflow, which aborts the process, fails the
// test with the child's exit status instead of killing the runner.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FilterError, toQuiverError } from "../dist/errors.js";

const run = promisify(execFile);
const fixture = new URL("./fixtures/filter-limits.mjs", import.meta.url);

interface Outcome {
  ok: boolean;
  value?: unknown;
  name?: string;
  typed?: boolean;
  code?: string;
  kind?: string;
  message?: string;
  ms: number;
}

let results: Record<string, Outcome> = {};
let dir = "";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "quiver-filter-limits-"));
  // A crash (non-zero exit, or a signal) rejects here, failing every test with its stderr.
  const { stdout } = await run(process.execPath, [fixture.pathname, dir], { timeout: 170_000, maxBuffer: 16 << 20 });
  results = JSON.parse(stdout.trim().split("\n").pop() ?? "{}") as Record<string, Outcome>;
}, 180_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function value(name: string): unknown {
  const r = results[name];
  expect(r, name).toBeDefined();
  expect(r.ok, `${name}: ${r.name} ${r.message}`).toBe(true);
  return r.value;
}

describe("filters of any length (child process)", () => {
  it("counts rows with 1,000-, 10,000- and 100,000-term OR chains", () => {
    expect(value("or1000")).toBe(1000);
    expect(value("or10000")).toBe(2000);
    expect(value("or100000")).toBe(2000);
    expect(value("orStrings1000")).toBe(667);
    expect(value("in100000")).toBe(1000);
    expect(value("mixed")).toBe(1000);
  });

  it("counts rows with a 100,000-term AND chain of inequalities", () => {
    expect(value("and100000")).toBe(1333);
  });

  it("queries with where() of 100,000-term chains", () => {
    expect(value("where100000")).toEqual({ count: 400, exact: true });
    expect(value("whereAnd100000")).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it("updates and deletes with 1,000-term OR chains", () => {
    expect(value("update1000")).toBe(1000);
    expect(value("delete1000")).toEqual({ deleted: 1000, left: 1000, evenOnly: true });
    expect(value("countAfter")).toBe(1000);
  });

  it("takes time linear in the number of terms (100,000 terms well under 20 s)", () => {
    for (const name of ["or100000", "and100000", "in100000", "where100000", "whereAnd100000"]) {
      expect(results[name].ms, name).toBeLessThan(20_000);
    }
  });

  it("answers 10,000-deep parentheses, NOTs, + chains and calls, or refuses them with a FilterError", () => {
    const deep = Object.keys(results).filter((k) => k.startsWith("deep."));
    expect(deep.length).toBe(21);
    for (const name of deep) {
      const r = results[name];
      if (r.ok) {
        expect(r.value, name).toBe(0);
      } else {
        expect(r.name, `${name}: ${r.message}`).toBe("FilterError");
        expect(r.code, name).toBe("Filter");
        expect(["tooComplex", "syntax"], `${name}: ${r.kind} ${r.message}`).toContain(r.kind);
      }
    }
    // Nesting past the limit is the engine's typed refusal, naming the limit.
    for (const name of ["deep.parens.count", "deep.nots.count", "deep.plus.count"]) {
      const r = results[name];
      if (!r.ok && r.kind === "tooComplex") expect(r.message).toContain("256");
    }
  });

  it("negates with an odd run of 10,001 NOTs, or refuses it as tooComplex", () => {
    const r = results.notsOdd;
    if (r.ok) expect(r.value).toBe(1999);
    else expect([r.name, r.kind]).toEqual(["FilterError", "tooComplex"]);
  });

  it("accepts 200 levels of parentheses and refuses 300 as tooComplex", () => {
    expect(value("parens200")).toBe(1);
    const r = results.parens300;
    expect(r.ok).toBe(false);
    expect(r.kind).toBe("tooComplex");
    expect(r.message).toContain("256");
  });
});

it("maps the engine's 'too complex' filter errors to kind tooComplex", () => {
  const e = toQuiverError(new Error("[Filter] too complex: the expression is nested more than 256 levels deep (at line 1, column 9)"));
  expect(e).toBeInstanceOf(FilterError);
  expect((e as FilterError).kind).toBe("tooComplex");
  expect((e as FilterError).position).toEqual({ line: 1, column: 9 });
});
