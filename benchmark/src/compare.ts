// `npm run bench:compare [--fail-on-regression]`: the latest run against the previous run of
// the same size on the same testbed. Regressions are judged against the noise of the samples
// (src/regression.ts), not a fixed percentage; only Quiver's own results can fail the command.
import { parseArgs } from "node:util";
import { compareSamples } from "./regression.js";
import { historyUri, loadResults, openHistory, type ResultRecord } from "./results.js";
import { pickRuns, runsOf, seriesKey, shortCommit } from "./select.js";

const { values: args } = parseArgs({
  options: {
    "fail-on-regression": { type: "boolean", default: false },
    sigmas: { type: "string", default: "4" },
  },
});

async function main() {
  const db = await openHistory();
  const runs = runsOf(await loadResults(db));
  db.close();
  const pair = pickRuns(runs);
  if (!pair) {
    console.log(`need two runs of the same size on this testbed in ${historyUri()} to compare`);
    return;
  }
  const [latest, previous] = pair;
  const prevBySeries = new Map(previous.records.map((r) => [seriesKey(r), r] as [string, ResultRecord]));
  console.log(
    `latest ${latest.timestamp.toISOString()} (${shortCommit(latest.records[0])}) vs previous ` +
      `${previous.timestamp.toISOString()} (${shortCommit(previous.records[0])}), size ${latest.records[0].size}\n`,
  );
  console.log("benchmark              dataset                 system         previous      latest        ratio   noise±      verdict");
  let regressions = 0;
  for (const r of latest.records) {
    const p = prevBySeries.get(seriesKey(r));
    if (!p || r.status !== "ok" || p.status !== "ok") continue;
    const c = compareSamples(p.values, r.values, { higherIsBetter: r.higher_is_better, sigmas: Number(args.sigmas) });
    const counts = r.system !== "lancedb" && c.verdict === "regression";
    if (counts) regressions++;
    console.log(
      `${r.benchmark.padEnd(22)} ${r.dataset.padEnd(23)} ${r.system.padEnd(14)} ` +
        `${`${c.previousMedian.toPrecision(4)} ${r.unit}`.padEnd(13)} ${`${c.latestMedian.toPrecision(4)} ${r.unit}`.padEnd(13)} ` +
        `${c.ratio.toFixed(3).padEnd(7)} ${c.threshold.toPrecision(2).padEnd(11)} ${c.verdict}${counts ? " ◀" : ""}`,
    );
  }
  console.log(`\n${regressions} regression(s) in Quiver beyond the noise of the samples`);
  if (regressions > 0 && args["fail-on-regression"]) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
