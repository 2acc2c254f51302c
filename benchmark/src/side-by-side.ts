// The side-by-side view of one run: Quiver and LanceDB per dataset and workload, their ratio,
// who leads, and the bars of the benchmark issue. Rendered for the terminal and as Markdown.
import type { ResultRecord } from "./results.js";
import { WORKLOADS } from "./workloads.js";

export interface Row {
  dataset: string;
  workload: string;
  quiver: ResultRecord | undefined;
  lancedb: ResultRecord | undefined;
}

export function pairRows(records: ResultRecord[]): Row[] {
  const rows: Row[] = [];
  for (const r of records) {
    if (r.system !== "quiver" && r.system !== "lancedb") continue;
    const dataset = `${r.dataset}`;
    let row = rows.find((x) => x.dataset === dataset && x.workload === r.benchmark);
    if (!row) {
      row = { dataset, workload: r.benchmark, quiver: undefined, lancedb: undefined };
      rows.push(row);
    }
    row[r.system] = r;
  }
  return rows;
}

function fmtNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const abs = Math.abs(v);
  if (abs >= 1e6) return `${(v / 1e6).toFixed(2)} M`;
  if (abs >= 1e4) return `${(v / 1e3).toFixed(1)} K`;
  if (abs >= 100) return v.toFixed(0);
  if (abs >= 10) return v.toFixed(1);
  if (abs >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

function value(r: ResultRecord | undefined): string {
  if (!r) return "—";
  if (r.status !== "ok" || !r.summary) return r.status;
  const recall = (JSON.parse(r.params || "{}") as { recall_at_10?: number }).recall_at_10;
  return `${fmtNumber(r.summary.median)} ${r.unit}${recall === undefined ? "" : ` (recall ${recall.toFixed(3)})`}`;
}

/** MB/s of a workload that records the bytes each sample moved (ingest). */
export function megabytesPerSecond(r: ResultRecord): number | null {
  const bytes = (JSON.parse(r.params || "{}") as { bytes_per_sample?: number }).bytes_per_sample;
  if (!bytes || !r.summary || r.unit !== "s") return null;
  return bytes / r.summary.median / 1e6;
}

function throughput(r: ResultRecord | undefined): string {
  if (!r || r.throughput === null) return "";
  const mbps = megabytesPerSecond(r);
  return `${fmtNumber(r.throughput)} ${r.throughput_unit ?? ""}${mbps === null ? "" : `, ${fmtNumber(mbps)} MB/s`}`;
}

function rss(r: ResultRecord | undefined): string {
  return r?.peak_rss_bytes ? `${(r.peak_rss_bytes / 2 ** 20).toFixed(0)} MiB` : "";
}

/** Quiver's median time over LanceDB's (lower is better for Quiver). */
export function timeRatio(row: Row): number | null {
  const q = row.quiver?.summary?.median;
  const l = row.lancedb?.summary?.median;
  if (row.quiver?.status !== "ok" || row.lancedb?.status !== "ok" || q === undefined || l === undefined) return null;
  return q / l;
}

export function barVerdict(row: Row): string {
  const bar = WORKLOADS.find((w) => w.name === row.workload)?.bar;
  if (!bar) return "";
  const q = row.quiver;
  const l = row.lancedb;
  if (q?.status !== "ok" || l?.status !== "ok") return `${bar.text}: n/a`;
  let ratio: number;
  let pass: boolean;
  if (bar.metric === "throughput") {
    ratio = (q.throughput ?? 0) / (l.throughput ?? Number.NaN);
    pass = ratio >= bar.ratio;
  } else if (bar.metric === "peak_rss") {
    ratio = (q.peak_rss_bytes ?? 0) / (l.peak_rss_bytes ?? Number.NaN);
    pass = ratio <= bar.ratio;
  } else {
    ratio = timeRatio(row) ?? Number.NaN;
    pass = ratio <= bar.ratio;
  }
  return `${bar.text}: ${ratio.toFixed(2)}× ${pass ? "met" : "NOT met"}`;
}

const HEADERS = ["dataset", "workload", "Quiver", "LanceDB", "Q/L time", "leads", "Quiver thrpt", "LanceDB thrpt", "Quiver RSS", "LanceDB RSS", "bar"];

function cells(row: Row): string[] {
  const ratio = timeRatio(row);
  return [
    row.dataset,
    row.workload,
    value(row.quiver),
    value(row.lancedb),
    ratio === null ? "n/a" : `${ratio.toFixed(2)}×`,
    ratio === null ? "" : ratio < 1 ? "Quiver" : "LanceDB",
    throughput(row.quiver),
    throughput(row.lancedb),
    rss(row.quiver),
    rss(row.lancedb),
    barVerdict(row),
  ];
}

export function terminalTable(rows: Row[]): string {
  const data = [HEADERS, ...rows.map(cells)];
  const widths = HEADERS.map((_, c) => Math.max(...data.map((r) => r[c].length)));
  const line = (r: string[]) => r.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd();
  return [line(data[0]), widths.map((w) => "-".repeat(w)).join("  "), ...data.slice(1).map(line)].join("\n");
}

export function markdownTable(rows: Row[]): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  return [
    `| ${HEADERS.join(" | ")} |`,
    `| ${HEADERS.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${cells(r).map(esc).join(" | ")} |`),
  ].join("\n");
}

export function notes(rows: Row[]): string[] {
  const out: string[] = [];
  for (const row of rows) {
    for (const r of [row.quiver, row.lancedb]) {
      if (r && r.status !== "ok" && r.note) out.push(`${r.system} ${row.dataset}/${row.workload}: ${r.status} — ${r.note}`);
    }
  }
  return out;
}
