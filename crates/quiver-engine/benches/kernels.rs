//! Distance kernels in GB/s of vectors read, per instruction set this CPU runs, beside the
//! machine's memory bandwidth (a streaming sum over a buffer far larger than the caches, on one
//! thread and on every core):
//! `cargo bench -p quiver-engine --bench kernels`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;
use quiver_engine::linalg::{available_kernels, DistanceType};

/// Rows of the batch forms: 64 MiB of f32 vectors at 768 dimensions, more than any cache.
const DIM: usize = 768;
const ROWS: usize = 64 * 1024 * 1024 / (DIM * 4);

fn data(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

fn memory_bandwidth(c: &mut Criterion) {
    let buffer: Vec<u64> = (0..(512 * 1024 * 1024 / 8) as u64).collect();
    let mut group = c.benchmark_group("memory");
    group.throughput(Throughput::Bytes((buffer.len() * 8) as u64));
    group.sample_size(10);
    group.bench_function("stream_sum_512MiB", |b| {
        b.iter(|| {
            // Eight independent sums: limited by memory, not by the add latency.
            let mut acc = [0u64; 8];
            for chunk in buffer.chunks_exact(8) {
                for (a, v) in acc.iter_mut().zip(chunk) {
                    *a = a.wrapping_add(*v);
                }
            }
            std::hint::black_box(acc)
        })
    });
    // Every core streaming its own share at once: what a parallel scan can reach.
    group.bench_function(
        format!("stream_sum_512MiB_{}_threads", rayon::current_num_threads()),
        |b| {
            use rayon::prelude::*;
            b.iter(|| {
                let per_thread = buffer.len().div_ceil(rayon::current_num_threads());
                let sums: Vec<[u64; 8]> = buffer
                    .par_chunks(per_thread)
                    .map(|share| {
                        let mut acc = [0u64; 8];
                        for chunk in share.chunks_exact(8) {
                            for (a, v) in acc.iter_mut().zip(chunk) {
                                *a = a.wrapping_add(*v);
                            }
                        }
                        acc
                    })
                    .collect();
                std::hint::black_box(sums)
            })
        },
    );
    group.finish();
}

fn batch_kernels(c: &mut Criterion) {
    let rows = data(ROWS * DIM);
    let halves: Vec<f16> = rows.iter().map(|&x| f16::from_f32(x)).collect();
    let doubles: Vec<f64> = rows.iter().map(|&x| x as f64).collect();
    let query = data(DIM);
    let query64: Vec<f64> = query.iter().map(|&x| x as f64).collect();
    let mut out = vec![0f32; ROWS];
    for kernels in available_kernels() {
        let mut group = c.benchmark_group(format!("batch/{}", kernels.isa));
        group.sample_size(10);
        for kind in [DistanceType::L2, DistanceType::Dot, DistanceType::Cosine] {
            group.throughput(Throughput::Bytes((rows.len() * 4) as u64));
            group.bench_function(BenchmarkId::new("f32", format!("{kind:?}")), |b| {
                b.iter(|| kernels.distances_f32(kind, &query, &rows, &mut out))
            });
            group.throughput(Throughput::Bytes((halves.len() * 2) as u64));
            group.bench_function(BenchmarkId::new("f16", format!("{kind:?}")), |b| {
                b.iter(|| kernels.distances_f16(kind, &query, &halves, &mut out))
            });
            group.throughput(Throughput::Bytes((doubles.len() * 8) as u64));
            group.bench_function(BenchmarkId::new("f64", format!("{kind:?}")), |b| {
                b.iter(|| kernels.distances_f64(kind, &query64, &doubles, &mut out))
            });
        }
        let bytes: Vec<u8> = rows.iter().map(|&x| (x * 255.0) as u8).collect();
        let query_bytes: Vec<u8> = query.iter().map(|&x| (x * 255.0) as u8).collect();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("u8/Hamming", |b| {
            b.iter(|| kernels.hamming_rows(&query_bytes, &bytes, &mut out))
        });
        group.finish();
    }
}

fn matrix_kernels(c: &mut Criterion) {
    // k-means assignment: 4,096 rows against 256 centroids of 768 dimensions.
    let (rows, centroids) = (4096, 256);
    let x = data(rows * DIM);
    let cents = data(centroids * DIM);
    let mut out = vec![0f32; rows * centroids];
    for kernels in available_kernels() {
        let mut group = c.benchmark_group(format!("l2_matrix/{}", kernels.isa));
        group.sample_size(10);
        // Bytes of row × centroid pairs compared (what a pairwise loop would read).
        group.throughput(Throughput::Bytes((rows * centroids * DIM * 4) as u64));
        group.bench_function("4096x256x768", |b| {
            b.iter(|| kernels.l2_matrix(&x, &cents, DIM, &mut out))
        });
        group.finish();
    }
}

criterion_group!(benches, memory_bandwidth, batch_kernels, matrix_kernels);
criterion_main!(benches);
