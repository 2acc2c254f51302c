// Deterministic clustered vectors with exact ground truth, generated inside the test so the
// suite needs nothing beside the repository. The same model as the engine's tests
// (crates/quiver-engine/tests/common/clustered.rs): broad regions, overlapping cluster centres
// around them, a few dominant directions per cluster plus isotropic noise — so a query's true
// neighbours spread over several IVF partitions, as on real embeddings. Ground truth: squared
// L2 in float64 over the float32 data, ties broken by the smaller row id.

export interface Clustered {
  dim: number;
  /** n × dim, row-major. */
  base: Float32Array;
  /** q × dim, row-major. */
  queries: Float32Array;
  /** q × k exact nearest rows, nearest first. */
  gt: Uint32Array;
  /** q × k exact nearest rows among those with `category < 10` (10% of rows). */
  gtFiltered: Uint32Array;
  /** 0..99 per row, independent of the clusters. */
  category: Int32Array;
  k: number;
}

const MASK64 = (1n << 64n) - 1n;

/** SplitMix64: seedable, identical on every platform. */
class Rng {
  private state: bigint;
  constructor(seed: number, stream: number) {
    this.state = (BigInt(seed) ^ ((BigInt(stream) * 0x9e3779b97f4a7c15n) & MASK64)) & MASK64;
  }
  private next(): bigint {
    this.state = (this.state + 0x9e3779b97f4a7c15n) & MASK64;
    let z = this.state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    return z ^ (z >> 31n);
  }
  /** Uniform in (0, 1). */
  uniform(): number {
    return (Number(this.next() >> 11n) + 0.5) / 2 ** 53;
  }
  below(n: number): number {
    return Math.floor(this.uniform() * n) % n;
  }
  gauss(): number {
    const u1 = this.uniform();
    const u2 = this.uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
}

const NOISE = 0.4;

export function generateClustered(n: number, dim: number, q: number, k: number, seed = 42): Clustered {
  const clusters = Math.max(Math.floor(n / 100), 8);
  const supers = Math.max(Math.ceil(clusters / 10), 1);
  const rank = Math.min(16, Math.max(2, Math.floor(dim / 8)));
  const scale = 1 / Math.sqrt(dim);
  const model = new Rng(seed, 1);
  const superCentres = Float64Array.from({ length: supers * dim }, () => model.gauss() * scale);
  const centres = new Float64Array(clusters * dim);
  for (let c = 0; c < clusters; c++) {
    const s = c % supers;
    for (let j = 0; j < dim; j++) centres[c * dim + j] = superCentres[s * dim + j] + 0.3 * model.gauss() * scale;
  }
  const bases = Float64Array.from({ length: clusters * rank * dim }, () => model.gauss() * scale);
  const spreads = Float64Array.from({ length: clusters }, () => 0.3 + 0.4 * model.uniform());

  const sample = (rng: Rng, out: Float32Array, row: number) => {
    const c = rng.below(clusters);
    const zScale = spreads[c] / Math.sqrt(rank);
    const z = Array.from({ length: rank }, () => rng.gauss() * zScale);
    const noise = NOISE / Math.sqrt(dim);
    for (let j = 0; j < dim; j++) {
      let v = centres[c * dim + j];
      for (let r = 0; r < rank; r++) v += z[r] * bases[(c * rank + r) * dim + j];
      out[row * dim + j] = v + rng.gauss() * noise;
    }
  };
  const base = new Float32Array(n * dim);
  const rows = new Rng(seed, 2);
  for (let i = 0; i < n; i++) sample(rows, base, i);
  const queries = new Float32Array(q * dim);
  const queryRng = new Rng(seed, 3);
  for (let i = 0; i < q; i++) sample(queryRng, queries, i);
  const categoryRng = new Rng(seed, 4);
  const category = Int32Array.from({ length: n }, () => categoryRng.below(100));

  const gt = new Uint32Array(q * k);
  const gtFiltered = new Uint32Array(q * k);
  const dist = new Float64Array(n);
  const byDistance = (a: number, b: number) => dist[a] - dist[b] || a - b;
  for (let qi = 0; qi < q; qi++) {
    for (let i = 0; i < n; i++) {
      let d = 0;
      for (let j = 0; j < dim; j++) {
        const x = base[i * dim + j] - queries[qi * dim + j];
        d += x * x;
      }
      dist[i] = d;
    }
    const all = Array.from({ length: n }, (_, i) => i).sort(byDistance);
    gt.set(all.slice(0, k), qi * k);
    gtFiltered.set(all.filter((i) => category[i] < 10).slice(0, k), qi * k);
  }
  return { dim, base, queries, gt, gtFiltered, category, k };
}
