// The writer child of the kill -9 harness: opens one local table and writes a random mix of
// add / streamed add / update / delete / mergeInsert / createIndex / optimize until its parent
// kills it with SIGKILL. argv = [dir, table, logPath, seed].
//
// The log (JSON lines, each fsync'd) holds, per operation, an `intent` record written BEFORE
// the call (the exact effect it will have if it lands) and an `ack` record written only AFTER
// the call resolved. So at a kill, every acknowledged write must be in the table, and the one
// operation with an intent and no ack may or may not have landed, whole.
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, Index } from "../../dist/index.js";
import { row } from "./kill-model.mjs";
import { Rng } from "./rng.mjs";

const [dir, tableName, logPath, seed] = process.argv.slice(2);
const rng = new Rng("kill-writer", seed);
// A child its parent forgot must not write forever.
setTimeout(() => process.exit(4), 60_000).unref();

const log = openSync(logPath, "a");
function record(entry) {
  writeSync(log, `${JSON.stringify(entry, (_, v) => (typeof v === "bigint" ? Number(v) : v))}\n`);
  fsyncSync(log);
}

const db = await connect(dir);
const table = await db.openTable(tableName);
// The starting state is read from the table (the parent has just checked it against its model).
const rows = new Map();
for (const r of await table.query().select(["id", "n"]).toArray()) rows.set(Number(r.id), Number(r.n));
let indexed = (await table.listIndices()).length > 0;
let nextId = Math.max(-1, ...rows.keys()) + 1;

const idList = (ids) => ids.join(", ");
const existing = () => [...rows.keys()];

/** Picks the next operation: its name, its exact effect, and how to run and check it. */
function plan() {
  const size = rows.size;
  const op = rng.weighted({
    add: 30,
    addStream: 5,
    update: size > 0 ? 20 : 0,
    delete: size > 20 ? 15 : 0,
    mergeInsert: 20,
    createIndex: size >= 300 ? (indexed ? 1 : 6) : 0,
    optimize: indexed ? 6 : 1,
  });
  switch (op) {
    case "add": {
      const ids = Array.from({ length: rng.int(1, 30) }, () => nextId++);
      return {
        op,
        effect: { insert: ids },
        run: () => table.add(ids.map((id) => row(id, 0))),
        check: (r) => typeof r.version === "number",
      };
    }
    case "addStream": {
      const ids = Array.from({ length: rng.int(2, 5) * 60 }, () => nextId++);
      async function* chunks() {
        for (let i = 0; i < ids.length; i += 60) {
          yield ids.slice(i, i + 60).map((id) => row(id, 0));
          await sleep(rng.int(0, 5));
        }
      }
      return { op, effect: { insert: ids }, run: () => table.add(chunks()), check: (r) => typeof r.version === "number" };
    }
    case "update": {
      let ids;
      let where;
      if (rng.chance(0.7)) {
        ids = rng.sample(existing(), rng.int(1, 20));
        where = `id IN (${idList(ids)})`;
      } else {
        // A range: its exact effect is the model's ids inside it.
        const lo = rng.int(0, nextId);
        const hi = lo + rng.int(1, 80);
        ids = existing().filter((id) => id >= lo && id < hi);
        where = `id >= ${lo} AND id < ${hi}`;
      }
      return {
        op,
        effect: { inc: ids },
        run: () => table.update({ where, valuesSql: { n: "n + 1" } }),
        check: (r) => r.rowsUpdated === ids.length,
      };
    }
    case "delete": {
      const ids = rng.sample(existing(), rng.int(1, Math.min(15, Math.floor(size / 10))));
      const where = rng.chance(0.5) ? `id IN (${idList(ids)})` : ids.map((id) => `id = ${id}`).join(" OR ");
      return { op, effect: { del: ids }, run: () => table.delete(where), check: (r) => r.numDeletedRows === ids.length };
    }
    case "mergeInsert": {
      const matched = rng.sample(existing(), rng.int(0, 15));
      const fresh = Array.from({ length: rng.int(0, 15) }, () => nextId++);
      if (matched.length + fresh.length === 0) fresh.push(nextId++);
      const source = [...matched.map((id) => row(id, rows.get(id) + 1)), ...fresh.map((id) => row(id, 0))];
      return {
        op,
        effect: { inc: matched, insert: fresh },
        run: () => table.mergeInsert("id").whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(rng.sample(source, source.length)),
        check: (r) => r.numUpdatedRows === matched.length && r.numInsertedRows === fresh.length && r.numDeletedRows === 0,
      };
    }
    case "createIndex": {
      const numPartitions = rng.int(2, 8);
      return {
        op,
        effect: { index: true },
        run: () =>
          table.createIndex("v", {
            config: Index.ivfPq({ numPartitions, numSubVectors: rng.pick([1, 2, 4]), distanceType: "l2", maxIterations: 10 }),
            replace: true,
          }),
        check: (r) => r.numIndexedRows > 0,
      };
    }
    case "optimize":
      return { op, effect: {}, run: () => table.optimize(), check: () => true };
    default:
      throw new Error(`unknown op ${op}`);
  }
}

process.stdout.write("ready\n");
for (let seq = 0; ; seq++) {
  const step = plan();
  record({ t: "intent", seq, op: step.op, effect: step.effect });
  let result;
  try {
    result = await step.run();
  } catch (e) {
    record({ t: "error", seq, op: step.op, name: e?.constructor?.name, code: e?.code, message: String(e?.message).slice(0, 1000) });
    closeSync(log);
    process.exit(3);
  }
  record({ t: "ack", seq, op: step.op });
  if (!step.check(result)) {
    record({ t: "mismatch", seq, op: step.op, result });
    closeSync(log);
    process.exit(5);
  }
  // Apply to the child's own model, for the next plans.
  for (const id of step.effect.del ?? []) rows.delete(id);
  for (const id of step.effect.inc ?? []) rows.set(id, rows.get(id) + 1);
  for (const id of step.effect.insert ?? []) rows.set(id, 0);
  if (step.effect.index) indexed = true;
  if (rng.chance(0.3)) await sleep(rng.int(0, 10));
}
