// The stress campaign (`npm run test:stress`): a kill -9 harness, a random-input campaign and a
// concurrent-writers soak against the built package (dist/), and the engine's simulated
// power-loss campaign. Not part
// of `npm test` (which runs a short power-loss campaign itself).
//
//   npm run test:stress                      all parts, full size (1,000 cycles, 100,000 calls,
//                                            1,000 power cuts per durability)
//   npm run test:stress -- --quick           all parts, quick (50 cycles, 5,000 calls, 100 cuts)
//   npm run test:stress -- --kill [--cycles N] [--max-delay MS]
//   npm run test:stress -- --fuzz [--calls N] [--hang S]
//   npm run test:stress -- --power [--cuts N]
//   npm run test:stress -- --soak [--soak-seconds S]   concurrent writers (2 processes × 8
//                                            writers, 600 s; 15 s with --quick)
//   common: --seed S (default 1), --dir PATH (default: a temporary folder), --keep, --json PATH
//
// Exits 1 when anything failed. Totals are printed at the end (and written to --json).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { arch, cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { runFuzz } from "./fuzz.mjs";
import { runKill } from "./kill.mjs";
import { runPowerLoss } from "./power.mjs";
import { runSoak } from "./soak.mjs";

const { values: args } = parseArgs({
  options: {
    kill: { type: "boolean", default: false },
    fuzz: { type: "boolean", default: false },
    power: { type: "boolean", default: false },
    soak: { type: "boolean", default: false },
    "soak-seconds": { type: "string" },
    cuts: { type: "string" },
    quick: { type: "boolean", default: false },
    cycles: { type: "string" },
    calls: { type: "string" },
    seed: { type: "string", default: "1" },
    dir: { type: "string" },
    keep: { type: "boolean", default: false },
    json: { type: "string" },
    "max-delay": { type: "string", default: "1500" },
    hang: { type: "string", default: "30" },
    help: { type: "boolean", short: "h", default: false },
  },
  strict: true,
});

if (args.help) {
  const text = (await import("node:fs")).readFileSync(new URL(import.meta.url), "utf8");
  console.log(
    text
      .split("\n")
      .filter((l) => l.startsWith("//"))
      .map((l) => l.slice(3))
      .join("\n"),
  );
  process.exit(0);
}

const positive = (text, what) => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${what} must be a positive integer, got ${text}`);
    process.exit(2);
  }
  return n;
};
const both = !args.kill && !args.fuzz && !args.power && !args.soak;
const cycles = args.cycles ? positive(args.cycles, "cycles") : args.quick ? 50 : 1000;
const calls = args.calls ? positive(args.calls, "calls") : args.quick ? 5000 : 100_000;
const cuts = args.cuts ? positive(args.cuts, "cuts") : args.quick ? 100 : 1000;
const soakSeconds = args["soak-seconds"] ? positive(args["soak-seconds"], "soak-seconds") : args.quick ? 15 : 600;
const dir = args.dir ?? mkdtempSync(join(tmpdir(), "quiver-stress-"));
const machine = `${cpus().length}-core ${cpus()[0]?.model.trim() ?? arch()}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
console.log(`quiver stress: seed ${args.seed}, folder ${dir}\n  ${machine}`);

const report = { seed: args.seed, date: new Date().toISOString(), machine };
let failed = false;

if (args.kill || both) {
  console.log(`kill -9 harness: ${cycles} cycles`);
  const k = await runKill({ cycles, seed: args.seed, dir: join(dir, "kill"), maxDelayMs: positive(args["max-delay"], "max-delay") });
  report.kill = k;
  console.log(
    [
      `kill -9 harness: ${k.cycles} cycles in ${k.seconds} s, ${k.acknowledgedWrites} acknowledged writes ` +
        `(${Object.entries(k.writesByOp)
          .map(([op, n]) => `${op} ${n}`)
          .join(", ")})`,
      `  killed mid-operation ${k.killedMidOperation} (landed ${k.inFlightLanded}), largest table ${k.maxRows} rows`,
      `  lost ${k.lost}, duplicated ${k.duplicated}, wrong counters ${k.wrongCounters}, unexpected rows ${k.unexpectedRows}, ` +
        `bad rows ${k.badRows}, failures ${k.failures}`,
    ].join("\n"),
  );
  failed ||= k.failures > 0 || k.lost > 0 || k.duplicated > 0;
}

if (args.fuzz || both) {
  console.log(`random-input campaign: ${calls} calls`);
  const f = await runFuzz({ calls, seed: args.seed, dir: join(dir, "fuzz"), hangSeconds: positive(args.hang, "hang") });
  report.fuzz = f;
  console.log(
    [
      `random-input campaign: ${f.calls} calls in ${f.seconds} s (${f.resolved} resolved, ${f.rejectedTyped} rejected with a QuiverError, ` +
        `${f.hostile} rejected with the caller's own error from a hostile input)`,
      `  by error class: ${Object.entries(f.byClass)
        .map(([c, n]) => `${c} ${n}`)
        .join(", ")}`,
      `  failures ${f.failures} (${Object.entries(f.failuresByKind)
        .map(([c, n]) => `${c} ${n}`)
        .join(", ")}), crashes ${f.crashes}, committed rows ${f.committedIntact ? "intact" : "CHANGED"}`,
    ].join("\n"),
  );
  for (const e of f.failureExamples) console.log(`  - ${e}`);
  for (const e of f.crashList) console.log(`  - crash: ${e}`);
  // InternalErrors are typed (code "Internal"), so not failures here, but each is an engine
  // panic or an unmapped error that deserves a look: list one per distinct message.
  console.log(`  internal errors (engine panics, unmapped errors): ${f.internal}`);
  for (const [kind, n] of Object.entries(f.internalByKind)) console.log(`    ${n} × ${kind}`);
  const seen = new Set();
  for (const e of f.internalExamples) {
    const key = e.slice(e.lastIndexOf("→"));
    if (!seen.has(key)) console.log(`  - ${e.slice(0, 400)}`);
    seen.add(key);
  }
  if (f.acceptedInvalid > 0) {
    console.log(`  writes to the kept table that resolved (must have changed no rows): ${f.acceptedInvalid}`);
    for (const e of f.acceptedInvalidExamples.slice(0, 5)) console.log(`  - ${e.slice(0, 400)}`);
  }
  failed ||= f.failures > 0 || f.crashes > 0 || !f.committedIntact;
}

if (args.power || both) {
  console.log(`simulated power loss: ${cuts} cuts with durability "full", ${cuts} with "process"`);
  const p = runPowerLoss({ cuts, seed: args.seed });
  report.power = { passed: p.passed, seconds: p.seconds, figures: p.lines };
  for (const line of p.lines) console.log(`  ${line}`);
  if (!p.passed) console.log(p.output.slice(-4000));
  console.log(`simulated power loss: ${p.passed ? "every promise kept" : "FAILED"} (${p.seconds} s)`);
  failed ||= !p.passed;
}

if (args.soak || both) {
  console.log(`concurrent-writers soak: 2 processes × 8 writers, ${soakSeconds} s`);
  const s = await runSoak({ seconds: soakSeconds, processes: 2, writers: 8, seed: args.seed, dir: join(dir, "soak") });
  report.soak = s;
  console.log(
    [
      `concurrent-writers soak: ${s.operations} operations in ${s.seconds} s (${s.perSecond}/s; ${Object.entries(s.ops)
        .map(([op, n]) => `${op} ${n}`)
        .join(", ")}), p50 ${s.p50Ms} ms, p99 ${s.p99Ms} ms, ${s.rows} rows at the end`,
      `  failed operations ${s.failures}, lost ${s.lost}, duplicated ${s.duplicated}, wrong counters ${s.wrongCounters}, unexpected rows ${s.unexpected}, peak memory ${s.peakRssMb} MiB per process, version ${s.version} at the end`,
    ].join("\n"),
  );
  for (const e of s.failureExamples) console.log(`  - ${e}`);
  failed ||= !s.passed;
}

if (args.json) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
if (!failed && !args.keep && !args.dir) rmSync(dir, { recursive: true, force: true });
console.log(failed ? "stress: FAILED" : "stress: passed");
process.exit(failed ? 1 : 0);
