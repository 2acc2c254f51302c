// The public type declarations are part of the API: this snapshot makes every change to them
// deliberate (update with `npx vitest run -u` after `npm run build:ts`).
import { readdirSync, readFileSync } from "node:fs";
import { expect, it } from "vitest";

it("public type declarations match the snapshot", async () => {
  const dist = new URL("../dist/", import.meta.url);
  const files = readdirSync(dist)
    .filter((f) => f.endsWith(".d.ts"))
    .sort();
  const text = files.map((f) => `// ---- ${f}\n${readFileSync(new URL(f, dist), "utf8")}`).join("\n");
  await expect(text).toMatchFileSnapshot("./__snapshots__/public-api.d.ts.snap");
});
