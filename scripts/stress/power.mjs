// The simulated power-loss campaign of the engine (crates/quiver-engine/tests/power_loss.rs),
// run with many cuts: the store keeps only what was flushed, cuts the power at a random write
// or flush, and the table must open with every acknowledged commit ("full") or at some
// committed state ("process"). The test binary is the one `npm test` builds.
import { spawnSync } from "node:child_process";

/** Runs `cuts` cuts per durability; returns the campaign's figure lines and whether it passed. */
export function runPowerLoss({ cuts, seed }) {
  const started = Date.now();
  const run = spawnSync(
    "cargo",
    ["test", "--quiet", "-p", "quiver-engine", "--test", "power_loss", "--", "--nocapture", "--test-threads", "1"],
    {
      env: { ...process.env, QUIVER_POWER_CUTS: String(cuts), QUIVER_POWER_SEED: String(seed) },
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  const output = `${run.stdout ?? ""}${run.stderr ?? ""}`;
  return {
    passed: run.status === 0,
    seconds: Math.round((Date.now() - started) / 1000),
    // (cargo's --quiet progress dots share the line)
    lines: output.match(/\w+ durability: Figures \{[^}]*\}/g) ?? [],
    output,
  };
}
