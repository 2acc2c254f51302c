import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { formatVersion, version } from "../lib/index.js";

describe("native addon", () => {
  it("loads and reports the package version", () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    expect(version()).toBe(pkg.version);
  });

  it("reports the data file format version", () => {
    expect(formatVersion()).toMatch(/^\d+\.\d+$/);
  });
});
