// `npm run bench:history [name]`: a benchmark's median across commits, per dataset and system.
// Without a name, lists the stored benchmarks.
import { parseArgs } from "node:util";
import { historyUri, loadResults, openHistory } from "./results.js";
import { seriesKey, shortCommit } from "./select.js";

const { positionals, values: args } = parseArgs({
  allowPositionals: true,
  options: { system: { type: "string" }, limit: { type: "string", default: "30" } },
});

async function main() {
  const db = await openHistory();
  const records = await loadResults(db);
  db.close();
  if (records.length === 0) {
    console.log(`no results stored in ${historyUri()} yet: run \`npm run bench\` first`);
    return;
  }
  const name = positionals[0];
  if (!name) {
    const counts = new Map<string, number>();
    for (const r of records) counts.set(r.benchmark, (counts.get(r.benchmark) ?? 0) + 1);
    console.log(`benchmarks in ${historyUri()} (name: results):`);
    for (const [b, c] of [...counts].sort()) console.log(`  ${b}: ${c}`);
    console.log("\nnpm run bench:history -- <name> prints one benchmark's history");
    return;
  }
  const matching = records.filter((r) => r.benchmark === name && (!args.system || r.system === args.system));
  if (matching.length === 0) {
    console.error(`no results for benchmark '${name}'; run without a name to list them`);
    process.exitCode = 1;
    return;
  }
  const series = new Map<string, typeof matching>();
  for (const r of matching) series.set(seriesKey(r), [...(series.get(seriesKey(r)) ?? []), r]);
  const limit = Number(args.limit);
  for (const [key, rs] of series) {
    const [, dataset, system] = key.split("|");
    console.log(`\n${name} — ${dataset || "(no dataset)"} — ${system}`);
    console.log("  date                 commit     version   median          p25..p75                 n   throughput");
    for (const r of rs.slice(-limit)) {
      const s = r.summary;
      const cells = s
        ? [`${s.median.toPrecision(4)} ${r.unit}`.padEnd(15), `${s.q1.toPrecision(3)}..${s.q3.toPrecision(3)}`.padEnd(24), String(s.iterations).padStart(3)]
        : [r.status.padEnd(15), "".padEnd(24), "".padStart(3)];
      const thr = r.throughput !== null ? `${r.throughput.toPrecision(4)} ${r.throughput_unit}` : "";
      console.log(`  ${r.timestamp.toISOString().slice(0, 19)}  ${shortCommit(r).padEnd(9)}  ${r.system_version.padEnd(8)}  ${cells.join(" ")}  ${thr}`);
    }
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
