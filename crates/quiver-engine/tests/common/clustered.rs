//! Deterministic clustered vectors with exact ground truth, generated inside the test so the
//! suite needs nothing beside the repository.
//!
//! The model is a two-level Gaussian mixture with local low-rank structure, close to what
//! sentence embeddings look like to an IVF index: `supers` broad regions, `clusters` centres
//! spread around them, and within each cluster a few dominant directions plus isotropic noise.
//! Clusters overlap, so a query's true neighbours spread over several partitions, as on real
//! data (well-separated blobs would make any index look perfect). Queries come from the same
//! model through another random stream. Ground truth is exact: squared L2 in f64 over the f32
//! data, ties broken by the smaller row id.

use rayon::prelude::*;

/// A generated dataset.
pub struct Clustered {
    pub dim: usize,
    /// `n × dim` row-major.
    pub base: Vec<f32>,
    /// `q × dim` row-major.
    pub queries: Vec<f32>,
    /// `q × k`: the exact nearest rows of each query, nearest first.
    pub gt: Vec<u32>,
    /// `q × k`: the same among rows with `category < 10` (10% of the rows).
    pub gt_filtered: Vec<u32>,
    /// One category in 0..100 per row, independent of the clusters.
    pub category: Vec<i32>,
    /// Ground-truth entries per query.
    pub k: usize,
}

/// SplitMix64: tiny, seedable and identical on every platform (a test's data must not change
/// when a dependency changes its generator).
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n
    }

    fn gauss(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

struct Model {
    dim: usize,
    rank: usize,
    centres: Vec<f64>,
    /// Per cluster, `rank × dim` directions.
    bases: Vec<f64>,
    /// Per cluster, the spread along its directions.
    spreads: Vec<f64>,
}

const NOISE: f64 = 0.4;

impl Model {
    fn new(dim: usize, clusters: usize, seed: u64) -> Self {
        let supers = clusters.div_ceil(10).max(1);
        let rank = (dim / 8).clamp(2, 16).min(dim);
        let mut rng = Rng::new(seed, 1);
        let scale = 1.0 / (dim as f64).sqrt();
        let super_centres: Vec<f64> = (0..supers * dim).map(|_| rng.gauss() * scale).collect();
        let mut centres = Vec::with_capacity(clusters * dim);
        for c in 0..clusters {
            let s = c % supers;
            for j in 0..dim {
                centres.push(super_centres[s * dim + j] + 0.3 * rng.gauss() * scale);
            }
        }
        // Directions of about unit length; a cluster's spread is its points' typical distance
        // from its centre along them.
        let bases = (0..clusters * rank * dim)
            .map(|_| rng.gauss() * scale)
            .collect();
        let spreads = (0..clusters).map(|_| 0.3 + 0.4 * rng.uniform()).collect();
        Model {
            dim,
            rank,
            centres,
            bases,
            spreads,
        }
    }

    fn clusters(&self) -> usize {
        self.centres.len() / self.dim
    }

    fn sample(&self, rng: &mut Rng, out: &mut Vec<f32>) {
        let (dim, rank) = (self.dim, self.rank);
        let c = rng.below(self.clusters());
        let z_scale = self.spreads[c] / (rank as f64).sqrt();
        let z: Vec<f64> = (0..rank).map(|_| rng.gauss() * z_scale).collect();
        let noise = NOISE / (dim as f64).sqrt();
        for j in 0..dim {
            let mut v = self.centres[c * dim + j];
            for (r, zr) in z.iter().enumerate() {
                v += zr * self.bases[(c * rank + r) * dim + j];
            }
            out.push((v + rng.gauss() * noise) as f32);
        }
    }
}

/// `n` rows and `q` queries of `dim` dimensions, with the exact top `k` of each query.
pub fn generate(n: usize, dim: usize, q: usize, k: usize, seed: u64) -> Clustered {
    let model = Model::new(dim, (n / 100).max(8), seed);
    let mut rng = Rng::new(seed, 2);
    let mut base = Vec::with_capacity(n * dim);
    for _ in 0..n {
        model.sample(&mut rng, &mut base);
    }
    let mut rng = Rng::new(seed, 3);
    let mut queries = Vec::with_capacity(q * dim);
    for _ in 0..q {
        model.sample(&mut rng, &mut queries);
    }
    let mut rng = Rng::new(seed, 4);
    let category: Vec<i32> = (0..n).map(|_| rng.below(100) as i32).collect();
    let top = |query: &[f32], keep: &dyn Fn(usize) -> bool| -> Vec<u32> {
        let mut scored: Vec<(f64, u32)> = (0..n)
            .filter(|&i| keep(i))
            .map(|i| {
                let row = &base[i * dim..(i + 1) * dim];
                let d: f64 = row
                    .iter()
                    .zip(query)
                    .map(|(&a, &b)| {
                        let x = a as f64 - b as f64;
                        x * x
                    })
                    .sum();
                (d, i as u32)
            })
            .collect();
        let k = k.min(scored.len());
        let cmp = |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if k < scored.len() {
            scored.select_nth_unstable_by(k, cmp);
            scored.truncate(k);
        }
        scored.sort_unstable_by(cmp);
        scored.into_iter().map(|(_, i)| i).collect()
    };
    let per_query: Vec<(Vec<u32>, Vec<u32>)> = (0..q)
        .into_par_iter()
        .map(|qi| {
            let query = &queries[qi * dim..(qi + 1) * dim];
            (top(query, &|_| true), top(query, &|i| category[i] < 10))
        })
        .collect();
    let mut gt = Vec::with_capacity(q * k);
    let mut gt_filtered = Vec::with_capacity(q * k);
    for (all, filtered) in per_query {
        gt.extend(all);
        gt_filtered.extend(filtered);
    }
    Clustered {
        dim,
        base,
        queries,
        gt,
        gt_filtered,
        category,
        k,
    }
}
