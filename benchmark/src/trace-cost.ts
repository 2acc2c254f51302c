// One round of bench:s3's tracing-cost measurement, in its own process so that the build can
// differ: search latency on the local table with tracing in one state. The parent picks the
// build (NAPI_RS_NATIVE_LIBRARY_PATH names the one with every event site compiled out) and
// leaves QUIVER_LOG unset. Searches every query once to warm the caches, then times each
// again. Prints one line `@@result <json>`: the times in ms and the events delivered.
//
//   node benchmark/dist/trace-cost.js <db dir> <queries.f32> <dimension> <off|error|info>
import { readFileSync } from "node:fs";
import { timedMs } from "./section.js";

const TRACE_MODES = ["off", "error", "info"] as const;
type TraceMode = (typeof TRACE_MODES)[number];

async function main(): Promise<void> {
  const [dir, queriesFile, dimension, mode] = process.argv.slice(2);
  if (!TRACE_MODES.includes(mode as TraceMode)) throw new Error(`unknown mode ${mode}`);
  const d = Number(dimension);
  const bytes = readFileSync(queriesFile);
  const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const queries = Array.from({ length: all.length / d }, (_, i) => all.subarray(i * d, (i + 1) * d));
  const q = await import("quiverdb");
  const db = await q.connect(dir, { maintenance: false });
  const table = await db.openTable("t");
  let events = 0;
  const subscription = mode === "off" ? undefined : q.subscribeEvents(() => events++, { level: mode as "error" | "info" });
  const search = (v: Float32Array) => table.search(v).select(["id", "text"]).limit(10).toArray();
  for (const v of queries) await search(v);
  const times: number[] = [];
  for (const v of queries) times.push(await timedMs(() => search(v)));
  // Let the queued events reach the listener.
  await new Promise((resolve) => setTimeout(resolve, 50));
  subscription?.unsubscribe();
  table.close();
  db.close();
  console.log(`@@result ${JSON.stringify({ times, events })}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
