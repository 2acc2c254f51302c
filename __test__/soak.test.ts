// The concurrent-writers soak, 30 seconds of it (the 10-minute run is part of
// `npm run test:stress`): 2 processes × 8 async writers on one local table, each appending,
// upserting, incrementing and deleting only its own rows while one of them now and then builds
// an index or optimizes and automatic maintenance runs. No operation may fail, and the table
// must end exactly as the writers' own models say.
import { describe, expect, it } from "vitest";
import { runSoak } from "../scripts/stress/soak.mjs";

describe("concurrent writers", () => {
  it("2 processes × 8 writers for 30 s: no failed operation, nothing lost or duplicated, exact counters", async () => {
    const result = await runSoak({ seconds: 30, processes: 2, writers: 8, seed: "npm-test" });
    expect(result.failureExamples).toEqual([]);
    expect(result).toMatchObject({ failures: 0, lost: 0, duplicated: 0, wrongCounters: 0, unexpected: 0, passed: true });
    // Every kind of write ran.
    for (const op of ["append", "upsert", "update", "delete"]) expect(result.ops[op]).toBeGreaterThan(0);
  }, 240_000);
});
