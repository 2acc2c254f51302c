// One system × one workload in its own process, so its memory is measured alone. Prints one
// line `@@result <json>` on stdout.
import { loadColumns, type Columns, type DatasetInfo, type Size } from "./datasets.js";
import { loadQueries } from "./queries.js";
import { loadDriver, type System, type SystemName } from "./systems.js";
import { arrowTableOf, BENCH_TABLE, workload, type Measurement } from "./workloads.js";

export interface WorkerSpec {
  system: SystemName;
  /** A workload name, or "prepare" to (re)create the prepared table. */
  workload: string;
  dataset: DatasetInfo;
  size: Size;
  dbDir: string;
  scratch: string;
  iterations: number;
}

export interface WorkerResult {
  system_version: string;
  status: "ok" | "n/a";
  note: string | null;
  measurement: Measurement | null;
  peak_rss_bytes: number;
}

/** Whether an error says the system cannot do this yet (rather than that something broke). */
function unsupported(error: unknown): string | null {
  const e = error as { code?: string; message?: string };
  if (e && e.code === "InvalidArgument" && /not supported yet/.test(e.message ?? "")) {
    return e.message!.split("\n")[0];
  }
  return null;
}

const notOpen = new Proxy({} as System, {
  get() {
    throw new Error("this workload runs without the prepared table open");
  },
});

async function main(): Promise<WorkerResult> {
  const spec = JSON.parse(process.argv[2]) as WorkerSpec;
  const driver = await loadDriver(spec.system);
  let columns: Columns | null = null;
  const loadCols = () => (columns ??= loadColumns(spec.dataset));
  const result = (status: WorkerResult["status"], note: string | null, measurement: Measurement | null): WorkerResult => ({
    system_version: driver.version,
    status,
    note,
    measurement,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
  });

  if (spec.workload === "prepare") {
    const system = await driver.connect(spec.dbDir);
    await system.createTable(BENCH_TABLE, arrowTableOf(loadCols()));
    system.close();
    return result("ok", null, null);
  }

  const w = workload(spec.workload);
  let system = notOpen;
  if (w.needsTable) {
    system = await driver.connect(spec.dbDir);
    await system.openTable(BENCH_TABLE);
  }
  try {
    const measurement = await w.run(
      {
        driver,
        system,
        dbDir: spec.dbDir,
        scratch: spec.scratch,
        columns: loadCols,
        queries: (count) => loadQueries(spec.dataset, loadCols(), count),
        size: spec.size,
      },
      spec.iterations,
    );
    return result("ok", null, measurement);
  } catch (error) {
    const why = unsupported(error);
    if (why === null) throw error;
    return result("n/a", why, null);
  } finally {
    if (system !== notOpen) system.close();
  }
}

main().then(
  (r) => {
    process.stdout.write(`@@result ${JSON.stringify(r)}\n`);
  },
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
