// Regression detection between two runs of one benchmark. The noise threshold comes from the
// samples themselves: the standard error of each median, estimated robustly from the MAD
// (σ ≈ 1.4826·MAD; the median's standard error ≈ 1.2533·σ/√n), combined for the two runs.
// A change is a regression when the median moved the wrong way by more than `sigmas` of that
// combined error. A run with a single sample has no noise estimate of its own; it borrows the
// other run's, and two single-sample runs cannot be compared (reported as "unknown").
import { mad, quantile } from "./stats.js";

export type Verdict = "regression" | "improvement" | "unchanged" | "unknown";

export interface Comparison {
  previousMedian: number;
  latestMedian: number;
  /** latest / previous. */
  ratio: number;
  /** The absolute change of the median needed to call it a regression or improvement. */
  threshold: number;
  verdict: Verdict;
}

function medianStandardError(values: readonly number[]): number {
  return (1.2533 * 1.4826 * mad(values)) / Math.sqrt(values.length);
}

export function compareSamples(
  previous: readonly number[],
  latest: readonly number[],
  options: { higherIsBetter?: boolean; sigmas?: number } = {},
): Comparison {
  const sigmas = options.sigmas ?? 4;
  const previousMedian = quantile([...previous].sort((a, b) => a - b), 0.5);
  const latestMedian = quantile([...latest].sort((a, b) => a - b), 0.5);
  const sePrev = previous.length > 1 ? medianStandardError(previous) : Number.NaN;
  const seLatest = latest.length > 1 ? medianStandardError(latest) : Number.NaN;
  const a = Number.isNaN(sePrev) ? seLatest : sePrev;
  const b = Number.isNaN(seLatest) ? sePrev : seLatest;
  const threshold = sigmas * Math.sqrt(a * a + b * b);
  const ratio = latestMedian / previousMedian;
  if (Number.isNaN(threshold)) return { previousMedian, latestMedian, ratio, threshold, verdict: "unknown" };
  const worse = options.higherIsBetter ? previousMedian - latestMedian : latestMedian - previousMedian;
  const verdict: Verdict = worse > threshold ? "regression" : -worse > threshold ? "improvement" : "unchanged";
  return { previousMedian, latestMedian, ratio, threshold, verdict };
}
