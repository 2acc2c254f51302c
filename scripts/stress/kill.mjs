// The kill -9 harness. Each cycle starts a writer child (kill-writer.mjs) on one local table,
// SIGKILLs it after a random delay, then, in this process, opens the table and checks it
// against the child's log: every acknowledged write present exactly once (no lost rows, no
// duplicated ids, counters equal to the acknowledged increments), the one operation in flight
// at the kill either wholly present or wholly absent, the index there if its build was
// acknowledged; countRows, searches (exact, indexed, prefiltered) work; the next write works.
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "../../dist/index.js";
import { apply, DIM, row, schema, tagOf, vec } from "./kill-model.mjs";
import { Rng } from "./rng.mjs";

const writer = new URL("./kill-writer.mjs", import.meta.url);

/** Reads a writer's log: the state after its acknowledged writes, and the op in flight. */
function readLog(path, start) {
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch {
    /* killed before the first record */
  }
  const lines = text.split("\n");
  // A record is complete only with its newline; the last piece is a torn write (or empty).
  lines.pop();
  let state = start;
  let pending = null;
  let acks = 0;
  const byOp = {};
  const problems = [];
  for (const [i, line] of lines.entries()) {
    let entry;
    try {
      entry = JSON.parse(line);
    } catch {
      problems.push(`log line ${i + 1} does not parse: ${line.slice(0, 200)}`);
      continue;
    }
    if (entry.t === "intent") {
      if (pending) problems.push(`intent ${entry.seq} while ${pending.seq} is unacknowledged`);
      pending = entry;
    } else if (entry.t === "ack") {
      if (!pending || pending.seq !== entry.seq) {
        problems.push(`ack ${entry.seq} without its intent`);
        continue;
      }
      state = apply(state, pending.effect);
      acks++;
      byOp[entry.op] = (byOp[entry.op] ?? 0) + 1;
      pending = null;
    } else if (entry.t === "error") {
      problems.push(`the writer's ${entry.op} #${entry.seq} failed: ${entry.name} [${entry.code}] ${entry.message}`);
      // A rejected write must have changed nothing.
      pending = null;
    } else if (entry.t === "mismatch") {
      problems.push(`the writer's ${entry.op} #${entry.seq} returned ${JSON.stringify(entry.result)}, not what its effect says`);
    }
  }
  return { state, pending, acks, byOp, problems };
}

/** Compares the rows read with an expected state. */
function diff(actual, expected, hasIndex) {
  const d = { lost: 0, duplicated: 0, wrongCounters: 0, unexpected: 0, index: hasIndex !== expected.indexed, examples: [] };
  for (const [id, ns] of actual) {
    if (ns.length > 1) {
      d.duplicated += ns.length - 1;
      if (d.examples.length < 5) d.examples.push(`id ${id} is there ${ns.length} times (n = ${ns.join(", ")})`);
    }
    if (!expected.rows.has(id)) {
      d.unexpected++;
      if (d.examples.length < 5) d.examples.push(`id ${id} should not be there`);
    } else if (ns[0] !== expected.rows.get(id)) {
      d.wrongCounters++;
      if (d.examples.length < 5) d.examples.push(`id ${id} has n = ${ns[0]}, expected ${expected.rows.get(id)}`);
    }
  }
  for (const id of expected.rows.keys()) {
    if (!actual.has(id)) {
      d.lost++;
      if (d.examples.length < 5) d.examples.push(`id ${id} is missing`);
    }
  }
  d.total = d.lost + d.duplicated + d.wrongCounters + d.unexpected + (d.index ? 1 : 0);
  return d;
}

function waitExit(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

/**
 * Runs `cycles` kill cycles under `dir`. Returns the totals; `print` receives progress lines.
 */
export async function runKill({ cycles, seed, dir, maxDelayMs = 1500, cyclesPerTable = 20, print = console.log }) {
  const rng = new Rng("kill", seed);
  mkdirSync(join(dir, "logs"), { recursive: true });
  const totals = {
    cycles: 0,
    acknowledgedWrites: 0,
    killedMidOperation: 0,
    inFlightLanded: 0,
    lost: 0,
    duplicated: 0,
    wrongCounters: 0,
    unexpectedRows: 0,
    badRows: 0,
    failures: 0,
    failureList: [],
    tables: 0,
    maxRows: 0,
    writesByOp: {},
  };
  const fail = (cycle, what) => {
    totals.failures++;
    if (totals.failureList.length < 50) totals.failureList.push({ cycle, what });
    print(`  FAIL cycle ${cycle}: ${what}`);
  };

  let db = await connect(dir);
  let table = null;
  let name = "";
  let model = null;
  const newTable = async () => {
    name = `t${totals.tables++}`;
    const ids = Array.from({ length: 50 }, (_, i) => i);
    await db.createTable(name, ids.map((id) => row(id, 0)), { schema });
    model = { rows: new Map(ids.map((id) => [id, 0])), indexed: false };
  };
  await newTable();

  const started = Date.now();
  for (let cycle = 0; cycle < cycles; cycle++) {
    if (cycle > 0 && cycle % cyclesPerTable === 0) {
      await db.dropTable(name);
      await newTable();
    }
    const logPath = join(dir, "logs", `cycle-${cycle}.jsonl`);
    const child = spawn(process.execPath, [writer.pathname, dir, name, logPath, `${seed}:${cycle}`], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (b) => {
      stderr = (stderr + b).slice(-4000);
    });
    const exited = waitExit(child);
    const ready = new Promise((resolve) => {
      const lines = createInterface({ input: child.stdout });
      lines.on("line", (l) => l === "ready" && resolve(true));
      lines.on("close", () => resolve(false));
    });
    const delay = rng.int(0, maxDelayMs);
    const gotReady = await Promise.race([ready, sleep(30_000).then(() => false)]);
    if (gotReady) await Promise.race([sleep(delay), exited]);
    child.kill("SIGKILL");
    const exit = await exited;
    totals.cycles++;

    const log = readLog(logPath, model);
    totals.acknowledgedWrites += log.acks;
    for (const [op, n] of Object.entries(log.byOp)) totals.writesByOp[op] = (totals.writesByOp[op] ?? 0) + n;
    let ok = true;
    if (exit.signal !== "SIGKILL") {
      ok = false;
      fail(cycle, `the writer exited by itself (code ${exit.code}, signal ${exit.signal}) ${stderr.trim().slice(-1500)}`);
    }
    for (const p of log.problems) {
      ok = false;
      fail(cycle, p);
    }
    if (log.pending) totals.killedMidOperation++;
    const candidates = [log.state];
    if (log.pending) candidates.push(apply(log.state, log.pending.effect));

    // Open and check, from a fresh connection, as a restarted application would.
    let check = null;
    try {
      check = await db.openTable(name);
      const reader = await connect(dir);
      const t = await reader.openTable(name);
      const rows = await t.query().select(["id", "n", "tag", "v"]).toArray();
      const actual = new Map();
      let badRows = 0;
      for (const r of rows) {
        const id = Number(r.id);
        if (!actual.has(id)) actual.set(id, []);
        actual.get(id).push(Number(r.n));
        const v = r.v;
        const want = vec(id);
        if (r.tag !== tagOf(id) || !v || v.length !== DIM || want.some((x, j) => x !== v[j])) {
          badRows++;
          if (badRows <= 3) fail(cycle, `row ${id} has the wrong tag or vector: ${r.tag} ${Array.from(v ?? [])}`);
        }
      }
      totals.badRows += badRows;
      const hasIndex = (await t.listIndices()).length > 0;
      const diffs = candidates.map((c) => diff(actual, c, hasIndex));
      const best = diffs.length > 1 && diffs[1].total < diffs[0].total ? 1 : 0;
      const d = diffs[best];
      if (d.total > 0) {
        ok = false;
        totals.lost += d.lost;
        totals.duplicated += d.duplicated;
        totals.wrongCounters += d.wrongCounters;
        totals.unexpectedRows += d.unexpected;
        const inFlight = log.pending ? `${log.pending.op} #${log.pending.seq} ${JSON.stringify(log.pending.effect).slice(0, 300)}` : "none";
        fail(
          cycle,
          `table ${name} does not match the log (in flight: ${inFlight}): lost ${d.lost}, duplicated ${d.duplicated}, ` +
            `wrong counters ${d.wrongCounters}, unexpected ${d.unexpected}${d.index ? ", index presence wrong" : ""}; ${d.examples.join("; ")}`,
        );
      } else if (best === 1 && diffs[0].total > 0) {
        totals.inFlightLanded++;
      }
      const state = candidates[best];
      totals.maxRows = Math.max(totals.maxRows, state.rows.size);

      // Reads work: counts, exact / indexed / prefiltered searches.
      const size = state.rows.size;
      const count = await t.countRows();
      if (count !== rows.length) fail(cycle, `countRows() = ${count}, the scan read ${rows.length}`);
      const incremented = [...state.rows.values()].filter((n) => n > 0).length;
      const countN = await t.countRows("n > 0");
      if (d.total === 0 && countN !== incremented) fail(cycle, `countRows('n > 0') = ${countN}, expected ${incremented}`);
      if (size > 0) {
        const probe = [...state.rows.keys()][rng.int(0, size - 1)];
        const exact = await t.search(vec(probe)).bypassVectorIndex().limit(5).toArray();
        if (exact.length !== Math.min(5, size) || exact[0]._distance !== 0) {
          fail(cycle, `exact search for row ${probe}: ${exact.length} rows, nearest at ${exact[0]?._distance}`);
        }
        // Through the index when there is one (PQ may rank a tie first: no distance-0 check).
        const indexed = await t.search(vec(probe)).limit(5).toArray();
        const sorted = indexed.every((r, i) => i === 0 || r._distance >= indexed[i - 1]._distance);
        if (indexed.length !== Math.min(5, size) || !sorted) {
          fail(cycle, `search for row ${probe}: ${indexed.length} rows, distances ${indexed.map((r) => r._distance)}`);
        }
        const filtered = await t.search(vec(probe)).where("n > 0").limit(5).toArray();
        if (d.total === 0 && filtered.length !== Math.min(5, incremented)) {
          fail(cycle, `prefiltered search: ${filtered.length} rows, ${incremented} match`);
        }
      }
      reader.close();

      // The next write works, and lands once.
      const nextId = Math.max(-1, ...actual.keys()) + 1;
      const { version } = await check.add([row(nextId, 0)]);
      const after = await check.countRows();
      if (after !== rows.length + 1) fail(cycle, `after the next write (version ${version}) countRows() = ${after}, expected ${rows.length + 1}`);
      model = d.total === 0 ? apply(state, { insert: [nextId] }) : null;
    } catch (e) {
      ok = false;
      model = null;
      fail(cycle, `checking table ${name}: ${e?.constructor?.name} [${e?.code}] ${String(e?.message).slice(0, 1000)}`);
    }
    if (ok && model) {
      rmSync(logPath, { force: true });
    } else if (!model) {
      // The table no longer matches any model: keep it (and the log) for a post-mortem and
      // go on with a fresh one.
      print(`  kept ${join(dir, name)} and ${logPath} for inspection`);
      await newTable();
    }
    if ((cycle + 1) % 10 === 0 || cycle + 1 === cycles) {
      const s = ((Date.now() - started) / 1000).toFixed(0);
      print(
        `  kill: ${cycle + 1}/${cycles} cycles, ${totals.acknowledgedWrites} acknowledged writes, ` +
          `${totals.killedMidOperation} kills mid-operation (${totals.inFlightLanded} landed), ` +
          `lost ${totals.lost}, duplicated ${totals.duplicated}, failures ${totals.failures} (${s} s)`,
      );
    }
  }
  db.close();
  totals.seconds = Math.round((Date.now() - started) / 1000);
  return totals;
}
