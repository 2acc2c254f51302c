// Grouping of stored results into runs and series, shared by the history, compare and report
// commands.
import type { ResultRecord } from "./results.js";

export interface Run {
  run_id: string;
  timestamp: Date;
  records: ResultRecord[];
}

/** Runs, oldest first. */
export function runsOf(records: ResultRecord[]): Run[] {
  const byId = new Map<string, Run>();
  for (const r of records) {
    let run = byId.get(r.run_id);
    if (!run) {
      run = { run_id: r.run_id, timestamp: r.timestamp, records: [] };
      byId.set(r.run_id, run);
    }
    run.records.push(r);
  }
  return [...byId.values()].sort((a, b) => a.timestamp.getTime() - b.timestamp.getTime());
}

export function testbedKey(r: ResultRecord): string {
  return `${r.testbed.host}|${r.testbed.cpu_model}|${r.testbed.cpu_cores}`;
}

/** Identifies one measured quantity across runs. */
export function seriesKey(r: ResultRecord): string {
  return `${r.benchmark}|${r.dataset}|${r.system}`;
}

export function shortCommit(r: ResultRecord): string {
  return `${r.build.git_commit.slice(0, 8)}${r.build.dirty ? "+" : ""}`;
}

/** The latest run and the previous comparable one, or null. */
export function pickRuns(runs: Run[]): [Run, Run] | null {
  const latest = runs.at(-1);
  if (!latest) return null;
  const key = testbedKey(latest.records[0]);
  const size = latest.records[0].size;
  const sameKind = (run: Run) =>
    run !== latest && testbedKey(run.records[0]) === key && run.records[0].size === size &&
    run.records.some((r) => latest.records.some((l) => seriesKey(l) === seriesKey(r)));
  const previous = runs.filter(sameKind).at(-1);
  return previous ? [latest, previous] : null;
}
