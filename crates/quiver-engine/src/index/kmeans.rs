//! k-means, for IVF partitions and PQ codebooks: k-means++ seeding on a subsample, then Lloyd
//! iterations whose assignment step is the blocked ‖x‖² + ‖c‖² − 2x·c kernel (or, for short
//! vectors, the transposed kernel), spread over rows with rayon, stopping early once the
//! objective improves by less than a relative tolerance.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::linalg;

/// Rows assigned per parallel task (and per blocked distance computation).
const ROW_CHUNK: usize = 256;
/// Vectors shorter than this are compared with centroids through the transposed kernel.
const SHORT_VECTOR: usize = 32;

/// What to train.
#[derive(Debug, Clone, Copy)]
pub struct KMeansParams {
    pub k: usize,
    pub max_iterations: usize,
    /// Stop when an iteration improves the objective by less than this fraction.
    pub tolerance: f64,
    pub seed: u64,
}

/// Trained centroids (`k × dim`, row-major).
#[derive(Debug, Clone)]
pub struct KMeans {
    pub centroids: Vec<f32>,
    pub iterations: usize,
}

/// Centroids in the form the fast assignment kernel takes.
enum Prepared {
    /// Row-major centroids (long vectors: blocked matrix form).
    Rows,
    /// `dim × k` transposed centroids (short vectors).
    Transposed(Vec<f32>),
}

fn prepare(centroids: &[f32], dim: usize) -> Prepared {
    if dim >= SHORT_VECTOR {
        return Prepared::Rows;
    }
    let k = centroids.len() / dim.max(1);
    let mut t = vec![0f32; centroids.len()];
    for (j, c) in centroids.chunks_exact(dim).enumerate() {
        for (d, &v) in c.iter().enumerate() {
            t[d * k + j] = v;
        }
    }
    Prepared::Transposed(t)
}

/// The nearest centroid of every `dim`-wide row of `data` (squared l2) into `assignment`, its
/// distance into `distances`.
pub fn assign(
    data: &[f32],
    dim: usize,
    centroids: &[f32],
    assignment: &mut [u32],
    distances: &mut [f32],
) {
    let prepared = prepare(centroids, dim);
    assign_prepared(data, dim, centroids, &prepared, assignment, distances);
}

fn assign_prepared(
    data: &[f32],
    dim: usize,
    centroids: &[f32],
    prepared: &Prepared,
    assignment: &mut [u32],
    distances: &mut [f32],
) {
    let kernels = linalg::kernels();
    let k = centroids.len() / dim.max(1);
    data.par_chunks(ROW_CHUNK * dim)
        .zip(assignment.par_chunks_mut(ROW_CHUNK))
        .zip(distances.par_chunks_mut(ROW_CHUNK))
        .for_each(|((rows, assigned), dists)| {
            let mut table = vec![0f32; (rows.len() / dim) * k];
            match prepared {
                Prepared::Rows => {
                    // Sizes agree by construction; an error here would be a bug, caught below
                    // as an all-zero table rather than a panic.
                    let _ = kernels.l2_matrix(rows, centroids, dim, &mut table);
                }
                Prepared::Transposed(t) => {
                    for (row, out) in rows.chunks_exact(dim).zip(table.chunks_exact_mut(k)) {
                        kernels.l2_transposed(row, t, out);
                    }
                }
            }
            for ((distances_of_row, a), d) in table.chunks_exact(k).zip(assigned).zip(dists) {
                let (best, best_distance) = argmin(distances_of_row);
                *a = best as u32;
                *d = best_distance;
            }
        });
}

/// Index and value of the smallest entry (NaN never wins).
pub fn argmin(values: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::INFINITY);
    for (i, &v) in values.iter().enumerate() {
        if v < best.1 {
            best = (i, v);
        }
    }
    best
}

/// k-means++ seeding on at most `16 k` rows (at least 4,096): each next centroid is drawn
/// with probability proportional to its squared distance to the nearest one chosen so far.
fn seed_centroids(data: &[f32], dim: usize, k: usize, rng: &mut StdRng) -> Vec<f32> {
    let n = data.len() / dim;
    let take = n.min((16 * k).max(4096));
    // A random subsample (a strided pick from a random start keeps it cheap and spread out).
    let stride = (n / take).max(1);
    let start = rng.random_range(0..stride);
    let sample: Vec<&[f32]> = (0..take)
        .map(|i| (start + i * stride).min(n - 1))
        .map(|r| &data[r * dim..(r + 1) * dim])
        .collect();
    let kernels = linalg::kernels();
    let mut centroids = Vec::with_capacity(k * dim);
    let first = sample[rng.random_range(0..sample.len())];
    centroids.extend_from_slice(first);
    let mut nearest: Vec<f32> = sample.par_iter().map(|r| kernels.l2(r, first)).collect();
    for _ in 1..k {
        let total: f64 = nearest.iter().map(|&d| d as f64).sum();
        let pick = if total > 0.0 && total.is_finite() {
            let mut target = rng.random::<f64>() * total;
            let mut chosen = sample.len() - 1;
            for (i, &d) in nearest.iter().enumerate() {
                target -= d as f64;
                if target <= 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        } else {
            rng.random_range(0..sample.len())
        };
        let chosen = sample[pick];
        centroids.extend_from_slice(chosen);
        nearest
            .par_iter_mut()
            .zip(sample.par_iter())
            .for_each(|(d, r)| *d = d.min(kernels.l2(r, chosen)));
    }
    centroids
}

/// Trains `params.k` centroids on the `dim`-wide rows of `data` (`k` is clamped to the number
/// of rows). `on_iteration(done)` is called after each Lloyd iteration.
pub fn train(
    data: &[f32],
    dim: usize,
    params: KMeansParams,
    mut on_iteration: impl FnMut(usize),
) -> KMeans {
    let n = data.len() / dim.max(1);
    let k = params.k.clamp(1, n.max(1));
    if n == 0 {
        return KMeans {
            centroids: vec![0.0; dim],
            iterations: 0,
        };
    }
    let mut rng = StdRng::seed_from_u64(params.seed);
    let mut centroids = seed_centroids(data, dim, k, &mut rng);
    let mut assignment = vec![0u32; n];
    let mut distances = vec![0f32; n];
    let mut previous = f64::INFINITY;
    let mut iterations = 0;
    for iteration in 0..params.max_iterations {
        let prepared = prepare(&centroids, dim);
        assign_prepared(
            data,
            dim,
            &centroids,
            &prepared,
            &mut assignment,
            &mut distances,
        );
        let objective: f64 = distances.par_iter().map(|&d| d as f64).sum();
        iterations = iteration + 1;
        let converged = previous.is_finite()
            && (previous - objective) <= params.tolerance * previous.max(f64::MIN_POSITIVE);
        update_centroids(data, dim, k, &assignment, &mut centroids);
        on_iteration(iterations);
        if converged {
            break;
        }
        previous = objective;
    }
    KMeans {
        centroids,
        iterations,
    }
}

/// Moves each centroid to the mean of its rows; an empty centroid takes half of the largest
/// cluster (both moved slightly apart), so no partition stays empty.
fn update_centroids(data: &[f32], dim: usize, k: usize, assignment: &[u32], centroids: &mut [f32]) {
    let (sums, counts) = data
        .par_chunks(ROW_CHUNK * dim)
        .zip(assignment.par_chunks(ROW_CHUNK))
        .fold(
            || (vec![0f64; k * dim], vec![0u64; k]),
            |(mut sums, mut counts), (rows, assigned)| {
                for (row, &c) in rows.chunks_exact(dim).zip(assigned) {
                    let c = c as usize;
                    counts[c] += 1;
                    for (s, &v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(row) {
                        *s += v as f64;
                    }
                }
                (sums, counts)
            },
        )
        .reduce(
            || (vec![0f64; k * dim], vec![0u64; k]),
            |(mut a, mut ac), (b, bc)| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                ac.iter_mut().zip(&bc).for_each(|(x, y)| *x += y);
                (a, ac)
            },
        );
    let mut counts = counts;
    for c in 0..k {
        if counts[c] > 0 {
            let inv = 1.0 / counts[c] as f64;
            for (dst, s) in centroids[c * dim..(c + 1) * dim]
                .iter_mut()
                .zip(&sums[c * dim..(c + 1) * dim])
            {
                *dst = (s * inv) as f32;
            }
        }
    }
    const EPS: f32 = 1.0 / 1024.0;
    for empty in 0..k {
        if counts[empty] > 0 {
            continue;
        }
        let (largest, _) = counts
            .iter()
            .enumerate()
            .max_by_key(|(_, &c)| c)
            .unwrap_or((0, &0));
        if counts[largest] < 2 {
            continue;
        }
        for d in 0..dim {
            let v = centroids[largest * dim + d];
            let sign = if d % 2 == 0 { 1.0 } else { -1.0 };
            centroids[empty * dim + d] = v * (1.0 + sign * EPS) + sign * EPS;
            centroids[largest * dim + d] = v * (1.0 - sign * EPS) - sign * EPS;
        }
        counts[empty] = counts[largest] / 2;
        counts[largest] -= counts[empty];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points around `centers` (deterministic jitter).
    fn blobs(centers: &[[f32; 3]], per: usize) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut out = Vec::new();
        for _ in 0..per {
            for c in centers {
                for &v in c {
                    out.push(v + rng.random_range(-0.1f32..0.1));
                }
            }
        }
        out
    }

    #[test]
    fn finds_separated_clusters() {
        let centers = [
            [0.0, 0.0, 0.0],
            [10.0, 0.0, 0.0],
            [0.0, 10.0, 5.0],
            [5.0, 5.0, -8.0],
        ];
        let data = blobs(&centers, 50);
        let params = KMeansParams {
            k: 4,
            max_iterations: 30,
            tolerance: 1e-6,
            seed: 1,
        };
        let mut calls = 0;
        let model = train(&data, 3, params, |_| calls += 1);
        assert_eq!(calls, model.iterations);
        for c in &centers {
            let nearest = model
                .centroids
                .chunks_exact(3)
                .map(|m| linalg::l2(m, c))
                .fold(f32::INFINITY, f32::min);
            assert!(nearest < 0.05, "no centroid near {c:?}: {nearest}");
        }
    }

    #[test]
    fn more_centroids_than_rows_and_duplicates_do_not_panic() {
        let data = vec![1.0f32; 3 * 5];
        let params = KMeansParams {
            k: 10,
            max_iterations: 5,
            tolerance: 1e-4,
            seed: 3,
        };
        let model = train(&data, 3, params, |_| {});
        assert_eq!(model.centroids.len(), 5 * 3);
        assert!(model.centroids.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn assignment_matches_brute_force_for_short_and_long_vectors() {
        for dim in [4usize, 48] {
            let mut rng = StdRng::seed_from_u64(dim as u64);
            let data: Vec<f32> = (0..300 * dim)
                .map(|_| rng.random_range(-1f32..1.0))
                .collect();
            let centroids: Vec<f32> = (0..7 * dim).map(|_| rng.random_range(-1f32..1.0)).collect();
            let mut assigned = vec![0u32; 300];
            let mut distances = vec![0f32; 300];
            assign(&data, dim, &centroids, &mut assigned, &mut distances);
            for (i, row) in data.chunks_exact(dim).enumerate() {
                let all: Vec<f32> = centroids
                    .chunks_exact(dim)
                    .map(|c| linalg::l2(row, c))
                    .collect();
                let (best, d) = argmin(&all);
                assert!((d - distances[i]).abs() < 1e-3, "dim {dim} row {i}");
                assert!(
                    assigned[i] as usize == best || (all[assigned[i] as usize] - d).abs() < 1e-4
                );
            }
        }
    }
}
