//! Storage engine benchmarks on a 768-d vector table (id, vector, text, price), local disk:
//! write throughput (MB/s and rows/s), full scan, projected scan of a scalar column, and a
//! random take of 1,000 vectors by row address. `cargo bench -p quiver-engine --bench storage`.

use std::sync::Arc;

use arrow_array::{
    FixedSizeListArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures::TryStreamExt;
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, ScanOptions, Table, WriteParams,
};
use rand::{Rng, SeedableRng};

const DIM: i32 = 768;
const ROWS: usize = 20_000;
const BATCH: usize = 2_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "vector",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), DIM),
            true,
        ),
        Field::new("text", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
    ]))
}

fn batches() -> Vec<RecordBatch> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    (0..ROWS / BATCH)
        .map(|b| {
            let start = (b * BATCH) as i64;
            let values = Float32Array::from_iter_values(
                (0..BATCH * DIM as usize).map(|_| rng.random::<f32>()),
            );
            let vectors = FixedSizeListArray::try_new(
                Arc::new(Field::new("item", DataType::Float32, true)),
                DIM,
                Arc::new(values),
                None,
            )
            .expect("vectors");
            RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(Int64Array::from_iter_values(start..start + BATCH as i64)),
                    Arc::new(vectors),
                    Arc::new(StringArray::from_iter_values(
                        (0..BATCH).map(|i| format!("document {}", start + i as i64)),
                    )),
                    Arc::new(Float64Array::from_iter_values(
                        (0..BATCH).map(|i| i as f64 * 0.5),
                    )),
                ],
            )
            .expect("batch")
        })
        .collect()
}

fn data_bytes(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .map(|b| b.get_array_memory_size() as u64)
        .sum()
}

async fn write(db: &Database, batches: Vec<RecordBatch>) -> Table {
    db.create_table(
        "bench",
        schema(),
        batches_stream(batches),
        CreateMode::Overwrite,
        WriteParams::default(),
    )
    .await
    .expect("create")
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().to_str().expect("utf8").to_string();
    let db = rt
        .block_on(Database::connect(&uri, ConnectOptions::default()))
        .expect("connect");
    let input = batches();
    let bytes = data_bytes(&input);

    let mut group = c.benchmark_group("write");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("768d_20k_rows_MBps", |b| {
        b.iter_batched(
            || input.clone(),
            |batches| rt.block_on(write(&db, batches)),
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("768d_20k_rows_rowsps", |b| {
        b.iter_batched(
            || input.clone(),
            |batches| rt.block_on(write(&db, batches)),
            BatchSize::LargeInput,
        )
    });
    group.finish();

    let table = rt.block_on(write(&db, input));
    let mut group = c.benchmark_group("scan");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("full", |b| {
        b.iter(|| {
            rt.block_on(async { table.scan_all(ScanOptions::default()).await.expect("scan") })
        })
    });
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("projected_price", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (_, s) = table
                    .scan(ScanOptions {
                        columns: Some(vec!["price".into()]),
                        ..Default::default()
                    })
                    .expect("scan");
                s.try_collect::<Vec<_>>().await.expect("batches")
            })
        })
    });
    group.finish();

    // Row addresses depend on fragment ids, which every overwrite above advanced.
    let addresses: Vec<u64> = rt
        .block_on(table.scan_all(ScanOptions {
            columns: Some(vec![]),
            with_row_id: true,
            ..Default::default()
        }))
        .expect("row ids")
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow_array::UInt64Array>()
                .expect("u64")
                .values()
                .to_vec()
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut group = c.benchmark_group("take");
    group.throughput(Throughput::Elements(1000));
    let cols = vec!["vector".to_string()];
    group.bench_function("random_1000_vectors", |b| {
        b.iter_batched(
            || {
                (0..1000)
                    .map(|_| addresses[rng.random_range(0..ROWS)])
                    .collect::<Vec<u64>>()
            },
            |rows| {
                rt.block_on(table.take(&rows, Some(&cols), false))
                    .expect("take")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(storage, benches);
criterion_main!(storage);
