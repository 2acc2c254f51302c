// Summary statistics of a benchmark's raw samples, as stored in the results table.

export interface Summary {
  min: number;
  max: number;
  mean: number;
  median: number;
  q1: number;
  q3: number;
  /** Sample standard deviation (n − 1); 0 for a single sample. */
  stddev: number;
  iterations: number;
}

/** The p-quantile (0..1) of sorted values, linearly interpolated between closest ranks. */
export function quantile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const pos = (sorted.length - 1) * p;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) throw new Error("cannot summarize zero samples");
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  const mean = sorted.reduce((s, v) => s + v, 0) / n;
  const variance = n > 1 ? sorted.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1) : 0;
  return {
    min: sorted[0],
    max: sorted[n - 1],
    mean,
    median: quantile(sorted, 0.5),
    q1: quantile(sorted, 0.25),
    q3: quantile(sorted, 0.75),
    stddev: Math.sqrt(variance),
    iterations: n,
  };
}

/** Median absolute deviation from the median. */
export function mad(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const med = quantile(sorted, 0.5);
  const deviations = sorted.map((v) => Math.abs(v - med)).sort((a, b) => a - b);
  return quantile(deviations, 0.5);
}

/** A fixed-seed generator, so both systems get the same rows and queries every run. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
