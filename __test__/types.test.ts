// The public type declarations are part of the API: this snapshot makes every change to them
// deliberate (update with `npx vitest run -u` after `npm run build:ts`).
import { readdirSync, readFileSync } from "node:fs";
import { expect, it } from "vitest";

function declarations(folder: string): string {
  const dist = new URL(folder, import.meta.url);
  return readdirSync(dist)
    .filter((f) => f.endsWith(".d.ts"))
    .sort()
    .map((f) => `// ---- ${f}\n${readFileSync(new URL(f, dist), "utf8")}`)
    .join("\n");
}

it("public type declarations match the snapshot", async () => {
  await expect(declarations("../dist/")).toMatchFileSnapshot("./__snapshots__/public-api.d.ts.snap");
});

it("the CommonJS build declares the same API as the ESM build", () => {
  expect(declarations("../dist/cjs/")).toBe(declarations("../dist/"));
});
