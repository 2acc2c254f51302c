//! Property tests: random batches of every supported type, with nulls, survive
//! write → scan → take (random subsets, random order), across many small pages and files.

mod common;

use std::sync::Arc;

use arrow_array::{RecordBatch, UInt32Array};
use proptest::prelude::*;
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, ScanOptions, WriteParams,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn take_expected(batch: &RecordBatch, rows: &[u64]) -> RecordBatch {
    let idx = UInt32Array::from_iter_values(rows.iter().map(|&r| r as u32));
    let columns = batch
        .columns()
        .iter()
        .map(|c| arrow_select::take::take(c.as_ref(), &idx, None).expect("take"))
        .collect();
    RecordBatch::try_new(batch.schema(), columns).expect("taken batch")
}

async fn round_trip(
    seed: u64,
    batches: usize,
    rows: usize,
    null_rate: f64,
    page_size: usize,
    rows_per_file: u64,
) {
    let schema = common::all_types_schema();
    let input: Vec<RecordBatch> = (0..batches)
        .map(|b| common::random_batch(&schema, rows, seed * 31 + b as u64, null_rate))
        .collect();
    let expected = common::concat(&schema, &input);
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let params = WriteParams {
        page_size,
        max_rows_per_file: rows_per_file,
        ..Default::default()
    };
    let table = db
        .create_table(
            "t",
            schema.clone(),
            batches_stream(input),
            CreateMode::Create,
            params,
        )
        .await
        .expect("create");
    assert_eq!(table.count_rows(), expected.num_rows() as u64);

    // Full scan, with row ids, in small batches.
    let scanned = table
        .scan_all(ScanOptions {
            batch_size: 37,
            with_row_id: true,
            ..Default::default()
        })
        .await
        .expect("scan");
    let scanned = common::concat(&scanned[0].schema(), &scanned);
    assert_eq!(scanned.num_rows(), expected.num_rows());
    for (i, field) in schema.fields().iter().enumerate() {
        assert_eq!(
            scanned.column(i).as_ref(),
            expected.column(i).as_ref(),
            "column {}",
            field.name()
        );
    }
    let row_ids = scanned
        .column(schema.fields().len())
        .as_any()
        .downcast_ref::<arrow_array::UInt64Array>()
        .expect("row ids")
        .values()
        .to_vec();

    // Take a random subset in random order, with repeats.
    let mut rng = StdRng::seed_from_u64(seed);
    let n = expected.num_rows();
    let mut positions: Vec<u64> = (0..rng.random_range(1..=n.min(60)))
        .map(|_| rng.random_range(0..n as u64))
        .collect();
    positions.shuffle(&mut rng);
    let addresses: Vec<u64> = positions.iter().map(|&p| row_ids[p as usize]).collect();
    let taken = table.take(&addresses, None, false).await.expect("take");
    let want = take_expected(&expected, &positions);
    for (i, field) in schema.fields().iter().enumerate() {
        assert_eq!(
            taken.column(i).as_ref(),
            want.column(i).as_ref(),
            "take of column {}",
            field.name()
        );
    }

    // Projection in a different order.
    let cols = vec!["utf8".to_string(), "vec_f32".to_string(), "i8".to_string()];
    let projected = table
        .take(&addresses, Some(&cols), false)
        .await
        .expect("projected take");
    assert_eq!(projected.schema().field(0).name(), "utf8");
    assert_eq!(
        projected.column(1).as_ref(),
        want.column_by_name("vec_f32").expect("col").as_ref()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_type_round_trips(
        seed in 0u64..1_000_000,
        batches in 1usize..4,
        rows in 1usize..300,
        null_rate in prop_oneof![Just(0.0), Just(0.2), Just(1.0)],
        page_size in prop_oneof![Just(4096usize), Just(64 * 1024)],
        rows_per_file in prop_oneof![Just(97u64), Just(1u64 << 20)],
    ) {
        runtime().block_on(round_trip(seed, batches, rows, null_rate, page_size, rows_per_file));
    }
}

#[test]
fn large_pages_and_many_rows_round_trip() {
    runtime().block_on(round_trip(7, 2, 5_000, 0.1, 8 * 1024 * 1024, 1 << 20));
}

#[test]
fn empty_table_scans_empty() {
    runtime().block_on(async {
        let schema = common::all_types_schema();
        let db = Database::connect("memory://", ConnectOptions::default())
            .await
            .expect("connect");
        let table = db
            .create_table(
                "e",
                schema.clone(),
                batches_stream(vec![]),
                CreateMode::Create,
                WriteParams::default(),
            )
            .await
            .expect("create");
        assert_eq!(table.count_rows(), 0);
        assert!(table
            .scan_all(ScanOptions::default())
            .await
            .expect("scan")
            .is_empty());
        assert_eq!(table.schema(), Arc::clone(&schema));
    });
}
