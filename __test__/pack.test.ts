// Installs the package as a new user would: `npm pack` of quiverdb and of this platform's binary
// package, `npm install` of both tarballs into an empty project in a temp folder, then scripts
// run from ESM and CommonJS (and type-checked from TypeScript in both module systems).
import { execFile } from "node:child_process";
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const repo = fileURLToPath(new URL("..", import.meta.url));
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const work = mkdtempSync(join(tmpdir(), "quiver-pack-"));
const app = join(work, "app");
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The platform triple of the addon `npm install` built here, e.g. `linux-x64-gnu`. */
function localTriple(): string {
  const addon = readdirSync(join(repo, "native")).find((f) => /^quiverdb\..+\.node$/.test(f));
  if (!addon) throw new Error("no native addon in native/: run `npm install` first");
  return addon.slice("quiverdb.".length, -".node".length);
}

async function pack(dir: string): Promise<string> {
  // --ignore-scripts: `prepare` would rebuild the addon; the test packs what is built.
  const { stdout } = await run(npm, ["pack", "--ignore-scripts", "--json", "--pack-destination", work], {
    cwd: dir,
  });
  const [info] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  packed.set(info.filename, info.files.map((f) => f.path));
  return join(work, info.filename);
}
const packed = new Map<string, string[]>();

const smokeScript = (importLine: string) => `${importLine}
(async () => {
  const db = await connect(process.argv[2]);
  const table = await db.createTable("items", [
    { id: 1, text: "apple", vector: [1, 0, 0] },
    { id: 2, text: "pear", vector: [0, 1, 0] },
  ]);
  await table.add([{ id: 3, text: "plum", vector: [0, 0, 1] }]);
  const hits = await table.search([0, 0.9, 0.1]).limit(2).toArray();
  console.log(JSON.stringify({ version: version(), rows: await table.countRows(), hits: hits.map((h) => h.text) }));
  db.close();
})();
`;

const typedScript = `import { connect, type Table, QuiverError } from "quiverdb";
export async function main(dir: string): Promise<number> {
  const db = await connect(dir);
  const table: Table = await db.createTable("t", [{ id: 1, vector: [1, 2] }]);
  const rows: Record<string, unknown>[] = await table.search([1, 2]).limit(1).toArray();
  try {
    await db.openTable("missing");
  } catch (error) {
    if (!(error instanceof QuiverError) || error.code !== "TableNotFound") throw error;
  }
  return rows.length + (await table.countRows());
}
`;

beforeAll(async () => {
  const main = await pack(repo);
  const triple = localTriple();
  const platformDir = join(work, `platform-${triple}`);
  cpSync(join(repo, "npm", triple), platformDir, { recursive: true });
  copyFileSync(join(repo, "native", `quiverdb.${triple}.node`), join(platformDir, `quiverdb.${triple}.node`));
  const platform = await pack(platformDir);

  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true }));
  await run(npm, ["install", "--no-audit", "--no-fund", "--prefer-offline", main, platform], { cwd: app });
  writeFileSync(join(app, "smoke.mjs"), smokeScript('import { connect, version } from "quiverdb";'));
  writeFileSync(join(app, "smoke.cjs"), smokeScript('const { connect, version } = require("quiverdb");'));
  writeFileSync(join(app, "typed.mts"), typedScript);
  writeFileSync(join(app, "typed.cts"), typedScript);
  writeFileSync(
    join(app, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, types: [] },
      files: ["typed.mts", "typed.cts"],
    }),
  );
}, 180_000);

describe("npm pack install", () => {
  it("packs the compiled API and loader but no binary; the platform package carries it", () => {
    const [mainFiles, platformFiles] = [...packed.values()];
    expect(mainFiles).toEqual(
      expect.arrayContaining([
        "dist/index.js",
        "dist/index.d.ts",
        "dist/cjs/index.js",
        "dist/cjs/package.json",
        "loader/native.cjs",
        "native/index.cjs",
        "package.json",
        "README.md",
      ]),
    );
    expect(mainFiles.some((f) => f.endsWith(".node"))).toBe(false);
    expect(mainFiles.some((f) => f.startsWith("lib/") || f.startsWith("src/") || f.startsWith("__test__/"))).toBe(false);
    expect(platformFiles).toContain(`quiverdb.${localTriple()}.node`);
  });

  for (const script of ["smoke.mjs", "smoke.cjs"]) {
    it(`runs from ${script.endsWith(".mjs") ? "ESM" : "CommonJS"}`, async () => {
      const dir = join(work, `db-${script}`);
      const { stdout } = await run(process.execPath, [script, dir], { cwd: app });
      expect(JSON.parse(stdout)).toEqual({ version: "0.1.0", rows: 3, hits: ["pear", "plum"] });
    });
  }

  it("type-checks from TypeScript as ESM and as CommonJS", async () => {
    const tsc = join(repo, "node_modules", "typescript", "bin", "tsc");
    const result = await run(process.execPath, [tsc, "-p", "."], { cwd: app }).catch((e: { stdout: string }) => e);
    expect(result.stdout).toBe("");
  });
});
