// The random-input campaign's parent: runs fuzz-child.mjs, watches it (a crash or a silent
// child is a failure), and, after a crash, starts a new child at the next call so the campaign
// still makes every call. Returns the totals.
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

const child = new URL("./fuzz-child.mjs", import.meta.url);
const MAX_EXAMPLES = 40;

function merge(totals, s) {
  for (const k of ["resolved", "rejectedTyped", "hostile", "failures", "internal", "acceptedInvalid"]) totals[k] += s[k] ?? 0;
  for (const k of ["byClass", "byCategory", "failuresByKind", "internalByKind"]) {
    for (const [name, n] of Object.entries(s[k] ?? {})) totals[k][name] = (totals[k][name] ?? 0) + n;
  }
  for (const k of ["failureExamples", "internalExamples", "acceptedInvalidExamples"]) {
    for (const e of s[k] ?? []) if (totals[k].length < MAX_EXAMPLES) totals[k].push(e);
  }
}

function runSegment({ dir, seed, first, end, hangSeconds, onProgress }) {
  return new Promise((resolve) => {
    mkdirSync(dir, { recursive: true });
    const proc = spawn(process.execPath, [child.pathname, dir, String(seed), String(first), String(end), String(hangSeconds)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    let last = null;
    let done = null;
    let silentFor = 0;
    proc.stderr.on("data", (b) => {
      stderr = (stderr + b).slice(-6000);
    });
    createInterface({ input: proc.stdout }).on("line", (line) => {
      silentFor = 0;
      try {
        const record = JSON.parse(line);
        if (record.done) done = record;
        else if (record.progress) {
          last = record;
          if (record.progress % 10_000 === 0) onProgress(record.progress);
        }
      } catch {
        /* not ours */
      }
    });
    // A child that prints nothing for longer than a hung call could take is itself hung.
    const watchdog = setInterval(() => {
      silentFor += 5;
      if (silentFor > hangSeconds + 120) proc.kill("SIGKILL");
    }, 5000);
    proc.on("exit", (code, signal) => {
      clearInterval(watchdog);
      let at = null;
      let call = "";
      try {
        const text = readFileSync(join(dir, `current-${first}`), "utf8").trim();
        at = Number(text.split(" ")[0]);
        call = text.slice(text.indexOf(" ") + 1);
      } catch {
        /* died before the first call */
      }
      resolve({ code, signal, done, last, at, call, stderr, silent: silentFor > hangSeconds + 120 });
    });
  });
}

export async function runFuzz({ calls, seed, dir, hangSeconds = 30, print = console.log }) {
  const totals = {
    calls: 0,
    resolved: 0,
    rejectedTyped: 0,
    hostile: 0,
    byClass: {},
    byCategory: {},
    failures: 0,
    failuresByKind: {},
    failureExamples: [],
    internal: 0,
    internalByKind: {},
    internalExamples: [],
    acceptedInvalid: 0,
    acceptedInvalidExamples: [],
    crashes: 0,
    crashList: [],
    committedIntact: true,
    segments: 0,
  };
  const started = Date.now();
  let first = 0;
  while (first < calls && totals.crashes < 25) {
    const segDir = join(dir, `segment-${totals.segments++}`);
    const onProgress = (n) => print(`  fuzz: ${n}/${calls} calls (${Math.round((Date.now() - started) / 1000)} s)`);
    const r = await runSegment({ dir: segDir, seed, first, end: calls, hangSeconds, onProgress });
    if (r.code === 0 && r.done) {
      merge(totals, r.done);
      totals.calls += r.done.calls;
      if (!r.done.committedIntact) {
        totals.committedIntact = false;
        print(`  committed rows changed: before ${JSON.stringify(r.done.keepBefore)}, after ${JSON.stringify(r.done.keepAfter)}, reopened ${JSON.stringify(r.done.reopenedAfter)}, memory ${JSON.stringify(r.done.memBefore)} → ${JSON.stringify(r.done.memAfter)}, search ${r.done.searchWorks}`);
      }
      break;
    }
    // A crash (or a hang): count it, keep what the child reported, go on after the call.
    totals.crashes++;
    const at = Number.isInteger(r.at) && r.at >= first ? r.at : first;
    if (r.last) merge(totals, r.last.stats ?? {});
    totals.calls += at + 1 - first;
    const what =
      `${r.silent ? "silent for too long (killed)" : `exit code ${r.code}, signal ${r.signal}`} at call #${at} ${r.call.slice(0, 300)} ` +
      `(replay: node scripts/stress/fuzz-child.mjs <dir> ${seed} --only ${at}); stderr: ${r.stderr.trim().split("\n").slice(-8).join(" | ")}`;
    totals.crashList.push(what);
    print(`  CRASH ${what}`);
    first = at + 1;
  }
  totals.seconds = Math.round((Date.now() - started) / 1000);
  return totals;
}
