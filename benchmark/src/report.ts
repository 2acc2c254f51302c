// `npm run bench:report [--out file.html]`: a self-contained HTML page with one SVG chart per
// benchmark and dataset, plotting each system's median over the stored runs (oldest left), so
// trends and the Quiver–LanceDB gap show at a glance.
import { writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { repoRoot } from "./env.js";
import { historyUri, loadResults, openHistory, type ResultRecord } from "./results.js";
import { runsOf, shortCommit } from "./select.js";

const COLORS: Record<string, string> = { quiver: "#1f6feb", lancedb: "#e8590c", "quiver-engine": "#2f9e44" };
const W = 560;
const H = 240;
const PAD = { left: 64, right: 16, top: 28, bottom: 40 };

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** One chart: x = run index among `runIds`, y = median, one polyline per system. */
export function chart(title: string, runIds: string[], records: ResultRecord[]): string {
  const points = records.filter((r) => r.status === "ok" && r.summary);
  const maxY = Math.max(...points.map((r) => r.summary!.median)) * 1.1 || 1;
  const x = (i: number) => PAD.left + (runIds.length > 1 ? (i / (runIds.length - 1)) * (W - PAD.left - PAD.right) : (W - PAD.left - PAD.right) / 2);
  const y = (v: number) => H - PAD.bottom - (v / maxY) * (H - PAD.top - PAD.bottom);
  const unit = points[0]?.unit ?? "";
  const parts: string[] = [
    `<text x="${PAD.left}" y="18" font-weight="600">${esc(title)}</text>`,
    `<line x1="${PAD.left}" y1="${H - PAD.bottom}" x2="${W - PAD.right}" y2="${H - PAD.bottom}" stroke="#999"/>`,
    `<line x1="${PAD.left}" y1="${PAD.top}" x2="${PAD.left}" y2="${H - PAD.bottom}" stroke="#999"/>`,
  ];
  for (const f of [0, 0.5, 1]) {
    const v = maxY * f;
    parts.push(`<text x="${PAD.left - 6}" y="${y(v) + 4}" text-anchor="end" font-size="10">${esc(v.toPrecision(3))}</text>`);
  }
  parts.push(`<text x="12" y="${H / 2}" font-size="10" transform="rotate(-90 12 ${H / 2})">median (${esc(unit)})</text>`);
  const systems = [...new Set(points.map((r) => r.system))];
  systems.forEach((system, s) => {
    const color = COLORS[system] ?? "#666";
    const series = points
      .filter((r) => r.system === system)
      .map((r) => ({ i: runIds.indexOf(r.run_id), r }))
      .filter((p) => p.i >= 0)
      .sort((a, b) => a.i - b.i);
    if (series.length > 1) {
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${series.map((p) => `${x(p.i)},${y(p.r.summary!.median)}`).join(" ")}"/>`);
    }
    for (const p of series) {
      const tip = `${system} ${p.r.system_version} @ ${shortCommit(p.r)} ${p.r.timestamp.toISOString()}: median ${p.r.summary!.median.toPrecision(4)} ${unit} (q1 ${p.r.summary!.q1.toPrecision(3)}, q3 ${p.r.summary!.q3.toPrecision(3)})`;
      parts.push(`<circle cx="${x(p.i)}" cy="${y(p.r.summary!.median)}" r="3" fill="${color}"><title>${esc(tip)}</title></circle>`);
    }
    parts.push(`<rect x="${W - 150}" y="${8 + s * 14}" width="10" height="10" fill="${color}"/><text x="${W - 135}" y="${17 + s * 14}" font-size="11">${esc(system)}</text>`);
  });
  const labelEvery = Math.max(1, Math.ceil(runIds.length / 8));
  runIds.forEach((id, i) => {
    if (i % labelEvery !== 0) return;
    const r = records.find((rec) => rec.run_id === id);
    if (r) parts.push(`<text x="${x(i)}" y="${H - PAD.bottom + 14}" text-anchor="middle" font-size="9">${esc(shortCommit(r))}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">${parts.join("")}</svg>`;
}

export function reportHtml(records: ResultRecord[]): string {
  const runIds = runsOf(records).map((r) => r.run_id);
  const groups = new Map<string, ResultRecord[]>();
  for (const r of records) {
    const key = r.dataset ? `${r.benchmark} — ${r.dataset}` : r.benchmark;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const charts = [...groups]
    .sort(([a], [b]) => a.localeCompare(b))
    .filter(([, rs]) => rs.some((r) => r.status === "ok"))
    .map(([title, rs]) => `<figure>${chart(title, runIds, rs)}</figure>`);
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Quiver benchmark history</title>
<style>body{font-family:sans-serif;margin:24px}figure{display:inline-block;margin:8px;border:1px solid #ddd;padding:4px}</style>
</head><body>
<h1>Quiver benchmark history</h1>
<p>${runIds.length} runs, ${records.length} results. Each chart: median per run (oldest left; lower is better for times); hover a point for details.</p>
${charts.join("\n")}
</body></html>
`;
}

async function main() {
  const { values: args } = parseArgs({ options: { out: { type: "string" } } });
  const db = await openHistory();
  const records = await loadResults(db);
  db.close();
  if (records.length === 0) {
    console.error(`no results stored in ${historyUri()} yet: run \`npm run bench\` first`);
    process.exit(1);
  }
  const out = args.out ?? path.join(repoRoot, "benchmark", "report.html");
  writeFileSync(out, reportHtml(records));
  console.log(`wrote ${out}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
