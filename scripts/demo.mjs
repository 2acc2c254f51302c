// `npm run demo`: the main job on an embedded local database (./data/demo). Generates a
// deterministic set of clustered 128-d embeddings with text, category and price, ingests it
// with a progress bar, runs exact vector searches, builds an IVF_PQ index (with a progress bar)
// and searches through it, takes rows, deletes, and time-travels, printing results and timings. Re-running reuses the table (pass --overwrite to rebuild).
import { connect, Index } from "../dist/index.js";

const ROWS = 50_000;
const DIM = 128;
const CLUSTERS = 64;
const CHUNK = 5_000;
const uri = "data/demo";
const overwrite = process.argv.includes("--overwrite");

// Small deterministic PRNG (mulberry32) so every run builds the same data.
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(42);
const centroids = Array.from({ length: CLUSTERS }, () => Float32Array.from({ length: DIM }, () => random() * 2 - 1));
const WORDS = ["vector", "arrow", "quiver", "search", "index", "table", "rust", "node", "fast", "embedded"];

function rowsFrom(start, count) {
  return Array.from({ length: count }, (_, k) => {
    const i = start + k;
    const c = i % CLUSTERS;
    const v = new Float32Array(DIM);
    for (let d = 0; d < DIM; d++) v[d] = centroids[c][d] + (random() - 0.5) * 0.2;
    return {
      id: BigInt(i),
      vector: v,
      text: `${WORDS[i % WORDS.length]} ${WORDS[(i * 7) % WORDS.length]} document ${i}`,
      category: c,
      price: Math.round(random() * 10_000) / 100,
    };
  });
}

function bar(done, total, started) {
  const width = 30;
  const filled = Math.round((done / total) * width);
  const rate = done / ((performance.now() - started) / 1000);
  process.stdout.write(`\r  [${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total} rows (${rate.toFixed(0)} rows/s)`);
  if (done === total) process.stdout.write("\n");
}

function printTable(rows, columns) {
  const show = (v) => (typeof v === "number" && !Number.isInteger(v) ? v.toFixed(3) : String(v));
  const cells = rows.map((r) => columns.map((c) => show(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i].length)));
  const line = (vals) => "  " + vals.map((v, i) => v.padEnd(widths[i])).join("  ");
  console.log(line(columns));
  console.log(line(widths.map((w) => "-".repeat(w))));
  cells.forEach((row) => console.log(line(row)));
}

const ms = (t) => `${(performance.now() - t).toFixed(1)} ms`;

const db = await connect(uri);
console.log(`Quiver demo — embedded database at ./${uri}`);
let table;
if ((await db.tableNames()).includes("docs") && !overwrite) {
  table = await db.openTable("docs");
  console.log(`Reusing table 'docs' (${await table.countRows()} rows, version ${await table.version()}); run with --overwrite to rebuild it.`);
} else {
  console.log(`${overwrite ? "Rebuilding" : "Creating"} table 'docs': ${ROWS} rows × ${DIM}-d embeddings in ${CLUSTERS} clusters`);
  const started = performance.now();
  async function* chunks() {
    for (let s = 0; s < ROWS; s += CHUNK) {
      yield rowsFrom(s, CHUNK);
      bar(s + CHUNK, ROWS, started);
    }
  }
  table = await db.createTable("docs", chunks(), { mode: "overwrite" });
  console.log(`  ingested in ${ms(started)}`);
}

console.log("\nExact vector search (every row ranked): 5 nearest to row 123's vector");
const probe = (await table.takeOffsets([123], ["vector"])).getChild("vector").get(0).toArray();
let t = performance.now();
const hits = await table.search(probe).bypassVectorIndex().select(["id", "text", "category", "price"]).limit(5).toArray();
console.log(`  took ${ms(t)}`);
printTable(hits, ["id", "text", "category", "price", "_distance"]);

console.log("\nBuilding an IVF_PQ index on 'vector' (defaults: √rows partitions, dim/8 sub-vectors)");
t = performance.now();
let phase = null;
const index = await table.createIndex("vector", {
  config: Index.ivfPq(),
  progress: (p) => {
    if (p.phase !== phase && phase !== null) process.stdout.write("\n");
    phase = p.phase;
    const width = 30;
    const filled = p.total > 0 ? Math.round((p.done / p.total) * width) : width;
    process.stdout.write(`\r  ${p.phase.padEnd(7)} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${p.done}/${p.total}`);
  },
});
process.stdout.write("\n");
console.log(
  `  built '${index.name}' in ${ms(t)}: ${index.numPartitions} partitions, ${index.numSubVectors} sub-vectors, ${index.numIndexedRows} rows`,
);
t = performance.now();
const indexed = await table.search(probe).select(["id", "category"]).limit(5).toArray();
console.log(`Indexed search (nprobes 20, refine 4): ${ms(t)} — same top 5 as exact: ${indexed.map((r) => r.id).join(",") === hits.map((r) => r.id).join(",")}`);
printTable(indexed, ["id", "category", "_distance"]);

t = performance.now();
const cosine = await table.search(probe).distanceType("cosine").select(["id", "category"]).limit(3).toArray();
console.log(`\nCosine search (exact: the index was trained for l2): ${ms(t)}`);
printTable(cosine, ["id", "category", "_distance"]);

t = performance.now();
const filteredHits = await table
  .search(probe)
  .where("category = 3 AND price < 50")
  .select(["id", "category", "price"])
  .limit(3)
  .toArray();
console.log(`\nFiltered search (prefilter: category = 3 AND price < 50): ${ms(t)}`);
printTable(filteredHits, ["id", "category", "price", "_distance"]);

t = performance.now();
const cheap = await table.query().where("price BETWEEN 10 AND 10.5 AND text LIKE '%3%'").select(["id", "text", "price"]).limit(4).toArray();
const cheapCount = await table.countRows("price BETWEEN 10 AND 10.5");
console.log(`\nFiltered query (price BETWEEN 10 AND 10.5 AND text LIKE '%3%'; ${cheapCount} rows in the price range): ${ms(t)}`);
printTable(cheap, ["id", "text", "price"]);

console.log("\nScalar indexes: a B-tree on 'price', and on 'category' the kind its data calls for");
t = performance.now();
const priceIndex = await table.createIndex("price", { config: Index.btree() });
const categoryIndex = await table.createIndex("category");
console.log(
  `  built '${priceIndex.name}' (${priceIndex.indexType}, ${priceIndex.numPages} pages) and '${categoryIndex.name}' (${categoryIndex.indexType}, ${categoryIndex.numDistinctValues} values) in ${ms(t)}`,
);
t = performance.now();
const indexedCount = await table.countRows("price BETWEEN 10 AND 10.5");
console.log(`  countRows("price BETWEEN 10 AND 10.5") through the B-tree: ${indexedCount} rows in ${ms(t)} (the scan said ${cheapCount})`);
const lookups = (await table.query().where("price BETWEEN 10 AND 10.5").explainPlan())
  .split("\n")
  .filter((line) => line.includes("IndexLookup"));
console.log(lookups.map((line) => `  plan: ${line.trim()}`).join("\n"));

t = performance.now();
const page = await table.query().select(["id", "text", "price"]).offset(1000).limit(3).toArray();
console.log(`\nPlain query, rows 1000-1002: ${ms(t)}`);
printTable(page, ["id", "text", "price"]);

t = performance.now();
const rowIds = (await table.query().select(["id"]).withRowId().limit(3).toArray()).map((r) => r._rowid);
const taken = await table.takeRowIds(rowIds.reverse(), ["id", "text"]);
console.log(`\nTook ${taken.numRows} rows by _rowid in ${ms(t)}: ids ${taken.getChild("id").toArray().join(", ")}`);

const before = await table.countRows();
const { numDeletedRows, version } = await table.delete(`_rowid IN (${rowIds.join(", ")}) OR price < 1`);
console.log(`Deleted ${numDeletedRows} rows → version ${version} (${before} → ${await table.countRows()} rows)`);

const versions = await table.listVersions();
console.log(`History: ${versions.map((v) => `v${v.version} ${v.operation}`).join(", ")}`);
await table.checkout(version - 1);
console.log(`Checked out v${version - 1}: ${await table.countRows()} rows (read-only)`);
const restored = await table.restore();
console.log(`Restored it as v${restored}: ${await table.countRows()} rows`);
const stats = await table.stats();
console.log(`Stats: ${stats.numRows} rows, ${stats.numFragments} fragments, ${(stats.dataBytes / 1e6).toFixed(1)} MB, ${stats.numVersions} versions`);
db.close();
