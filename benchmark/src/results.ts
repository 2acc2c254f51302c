// The benchmark history: every measurement of every run, stored in a Quiver table (default
// ~/.quiver-bench, or QUIVER_BENCH_URI). The schema follows lance-bench: testbed, build under
// test, benchmark name and parameters, raw values, summary, units, throughput, timestamp.
import os from "node:os";
import path from "node:path";
import {
  Bool,
  Field,
  Float64,
  Int32,
  List,
  Schema,
  Struct,
  TimestampMillisecond,
  Utf8,
} from "apache-arrow";
import { connect, TableNotFoundError, type Connection } from "quiverdb";
import type { Build, Testbed } from "./env.js";
import type { Summary } from "./stats.js";

export const RESULTS_TABLE = "results";

export interface ResultRecord {
  run_id: string;
  timestamp: Date;
  testbed: Testbed;
  build: Build;
  /** "quiver", "lancedb", or "quiver-engine" for imported criterion benchmarks. */
  system: string;
  system_version: string;
  benchmark: string;
  dataset: string;
  size: string;
  /** JSON of the workload's parameters. */
  params: string;
  unit: string;
  higher_is_better: boolean;
  values: number[];
  summary: Summary | null;
  throughput: number | null;
  throughput_unit: string | null;
  peak_rss_bytes: number | null;
  /** "ok", or "n/a" when the system cannot run the workload (see note). */
  status: string;
  note: string | null;
}

const utf8 = (name: string, nullable = false) => new Field(name, new Utf8(), nullable);
const f64 = (name: string, nullable = false) => new Field(name, new Float64(), nullable);

export const resultsSchema = new Schema([
  utf8("run_id"),
  new Field("timestamp", new TimestampMillisecond(), false),
  new Field(
    "testbed",
    new Struct([utf8("host"), utf8("cpu_model"), new Field("cpu_cores", new Int32(), false), f64("memory_bytes"), utf8("os")]),
    false,
  ),
  new Field(
    "build",
    new Struct([
      utf8("package"),
      utf8("version"),
      utf8("git_commit"),
      new Field("commit_time", new TimestampMillisecond(), true),
      new Field("dirty", new Bool(), false),
    ]),
    false,
  ),
  utf8("system"),
  utf8("system_version"),
  utf8("benchmark"),
  utf8("dataset"),
  utf8("size"),
  utf8("params"),
  utf8("unit"),
  new Field("higher_is_better", new Bool(), false),
  new Field("values", new List(new Field("item", new Float64(), false)), false),
  new Field(
    "summary",
    new Struct([
      f64("min"),
      f64("max"),
      f64("mean"),
      f64("median"),
      f64("q1"),
      f64("q3"),
      f64("stddev"),
      new Field("iterations", new Int32(), false),
    ]),
    true,
  ),
  f64("throughput", true),
  utf8("throughput_unit", true),
  f64("peak_rss_bytes", true),
  utf8("status"),
  utf8("note", true),
]);

export function historyUri(): string {
  return process.env.QUIVER_BENCH_URI ?? path.join(os.homedir(), ".quiver-bench");
}

export async function openHistory(uri = historyUri()): Promise<Connection> {
  return connect(uri);
}

/** Appends records to the history (creating the table on first use). */
export async function storeResults(db: Connection, records: ResultRecord[]): Promise<void> {
  if (records.length === 0) return;
  const rows = records.map((r) => ({ ...r }) as Record<string, unknown>);
  const table = await db.openTable(RESULTS_TABLE).catch((e: unknown) => {
    if (e instanceof TableNotFoundError) return null;
    throw e;
  });
  if (table === null) await db.createTable(RESULTS_TABLE, rows, { schema: resultsSchema });
  else await table.add(rows);
}

/** Every stored record, oldest first. */
export async function loadResults(db: Connection): Promise<ResultRecord[]> {
  if (!(await db.tableNames()).includes(RESULTS_TABLE)) return [];
  const table = await db.openTable(RESULTS_TABLE);
  const rows = (await table.query().toArray()) as unknown as ResultRecord[];
  return rows.sort((a, b) => a.timestamp.getTime() - b.timestamp.getTime());
}
