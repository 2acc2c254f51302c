//! Random access costs, counted at the object store: `take` of a fixed-width column (vectors
//! included) is at most one ranged read per non-adjacent row and reads only those rows' bytes;
//! a variable-width column is at most two reads per row. Projection reads only the projected
//! columns' bytes.

mod common;

use std::sync::Arc;

use common::InstrumentedStore;
use object_store::memory::InMemory;
use object_store::path::Path;
use quiver_engine::storage::{Storage, StorageOptions};
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, ScanOptions, WriteParams,
};

const DIM: i32 = 128;
const ROWS: usize = 20_000;

async fn fixture() -> (Arc<InstrumentedStore>, quiver_engine::Table) {
    let store = Arc::new(InstrumentedStore::new(Arc::new(InMemory::new())));
    let storage = Storage::from_store(
        store.clone(),
        Path::default(),
        StorageOptions::default(),
        "count://",
    );
    let db = Database::from_storage(storage, ConnectOptions::default());
    let batches = (0..4)
        .map(|i| common::simple_batch(i * 5_000, 5_000, DIM))
        .collect();
    let table = db
        .create_table(
            "t",
            common::simple_schema(DIM),
            batches_stream(batches),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
    // Load file metadata once so the counts below are the rows' own reads.
    table.take(&[0], None, false).await.expect("warm-up take");
    (store, table)
}

/// Rows far enough apart that no two are coalesced (4 KiB gap, 512-byte vectors).
fn spread_rows(n: u64) -> Vec<u64> {
    (0..n).map(|i| (i * 7919 * 13) % ROWS as u64).collect()
}

#[tokio::test]
async fn vector_take_is_one_read_per_row() {
    let (store, table) = fixture().await;
    let rows = spread_rows(100);
    let cols = vec!["vector".to_string()];
    let before = store.snapshot();
    let batch = table.take(&rows, Some(&cols), false).await.expect("take");
    let (reads, bytes) = store.snapshot();
    let (reads, bytes) = (reads - before.0, bytes - before.1);
    assert_eq!(batch.num_rows(), 100);
    assert!(reads <= 100, "{reads} reads for 100 vectors");
    let vector_bytes = 100 * DIM as u64 * 4;
    assert!(
        bytes <= vector_bytes * 2,
        "{bytes} bytes read for {vector_bytes} bytes of vectors"
    );
    // The values are the right ones, in the order asked.
    let vectors = batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::FixedSizeListArray>()
        .expect("vectors");
    for (i, &r) in rows.iter().enumerate() {
        let v = vectors.value(i);
        let v = v
            .as_any()
            .downcast_ref::<arrow_array::Float32Array>()
            .expect("f32");
        assert_eq!(v.value(0), r as f32);
    }
}

#[tokio::test]
async fn adjacent_rows_coalesce() {
    let (store, table) = fixture().await;
    let rows: Vec<u64> = (1000..1100).collect();
    let cols = vec!["vector".to_string(), "id".to_string()];
    let before = store.snapshot();
    table.take(&rows, Some(&cols), false).await.expect("take");
    let reads = store.snapshot().0 - before.0;
    assert!(
        reads <= 4,
        "{reads} reads for 100 adjacent rows of two columns"
    );
}

#[tokio::test]
async fn string_take_is_at_most_two_reads_per_row() {
    let (store, table) = fixture().await;
    let rows = spread_rows(50);
    let cols = vec!["text".to_string()];
    let before = store.snapshot();
    let batch = table.take(&rows, Some(&cols), false).await.expect("take");
    let reads = store.snapshot().0 - before.0;
    assert!(reads <= 100, "{reads} reads for 50 strings");
    let texts = batch
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .expect("strings");
    for (i, &r) in rows.iter().enumerate() {
        assert_eq!(texts.value(i), format!("row {r}"));
    }
}

#[tokio::test]
async fn projected_scan_reads_only_projected_columns() {
    let (store, table) = fixture().await;
    let before = store.snapshot();
    let batches = table
        .scan_all(ScanOptions {
            columns: Some(vec!["id".into()]),
            ..Default::default()
        })
        .await
        .expect("scan");
    let bytes = store.snapshot().1 - before.1;
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), ROWS);
    let id_bytes = ROWS as u64 * 8;
    // The vectors alone are 10 MB; reading ids must stay near their own 160 KB.
    assert!(
        bytes < id_bytes + 64 * 1024,
        "{bytes} bytes read for {id_bytes} bytes of ids"
    );
}
