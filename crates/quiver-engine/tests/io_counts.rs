//! Random access costs, counted at the object store: `take` of a fixed-width column (vectors
//! included) is at most one ranged read per non-adjacent row and reads only those rows' bytes;
//! a variable-width column is at most two reads per row. Projection reads only the projected
//! columns' bytes. On a cloud store, a search's result rows cost no read after its refine.
//! A vector index build reads its column once; a scan opens the next fragment ahead.

mod common;

use std::sync::Arc;

use common::InstrumentedStore;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use quiver_engine::storage::{Storage, StorageOptions};
use quiver_engine::table::indices::{create_index, CreateIndexOptions, VectorIndexParams};
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, ScanOptions, WriteParams,
};

const DIM: i32 = 128;
const ROWS: usize = 20_000;

/// A database over an in-memory store that counts requests and bytes.
fn counted_db() -> (Arc<InstrumentedStore>, Database) {
    let store = Arc::new(InstrumentedStore::new(Arc::new(InMemory::new())));
    let storage = Storage::from_store(
        store.clone(),
        Path::default(),
        StorageOptions::default(),
        "count://",
    );
    let db = Database::from_storage(storage, ConnectOptions::default());
    (store, db)
}

async fn fixture() -> (Arc<InstrumentedStore>, quiver_engine::Table) {
    let (store, db) = counted_db();
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

/// A vector index build reads the vector column once: the sampling scan's batches are kept
/// for the encoding (a column this size is well within what a build keeps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_index_build_reads_the_column_once() {
    let (store, table) = fixture().await;
    let before = store.snapshot();
    let options = CreateIndexOptions {
        config: Some(
            VectorIndexParams {
                num_partitions: Some(16),
                ..Default::default()
            }
            .into(),
        ),
        ..Default::default()
    };
    create_index(&table, "vector", options)
        .await
        .expect("build");
    let bytes = store.snapshot().1 - before.1;
    let column_bytes = (ROWS * DIM as usize * 4 + ROWS * 8) as u64;
    assert!(
        bytes >= column_bytes && bytes < column_bytes * 3 / 2,
        "{bytes} bytes read to build on a {column_bytes}-byte vector column"
    );
}

/// A scan over several fragments requests the next fragment's pages while it reads one (no
/// round trip waited at the boundary), and a scan whose limit ends within a fragment reads
/// nothing of the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_open_the_next_fragment_ahead_but_not_past_a_limit() {
    let (store, db) = counted_db();
    let rows = 5_000;
    let table = common::simple_table(&db, rows, DIM).await;
    table
        .append(
            batches_stream(vec![common::simple_batch(rows as i64, rows, DIM)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
    let fragment_bytes = (rows * DIM as usize * 4) as u64;
    let options = |limit| ScanOptions {
        columns: Some(vec!["vector".into()]),
        batch_size: 100,
        limit,
        ..Default::default()
    };

    let before = store.snapshot().1;
    let (_, mut stream) = table.scan(options(None)).expect("scan");
    let first = stream.next().await.expect("a batch").expect("read");
    assert_eq!(first.num_rows(), 100);
    // The second fragment's page arrives while the first batch is held (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.snapshot().1 - before < 2 * fragment_bytes && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let bytes = store.snapshot().1 - before;
    assert!(
        bytes >= 2 * fragment_bytes,
        "{bytes} bytes read after the first batch; both fragments' vectors are {}",
        2 * fragment_bytes
    );
    let mut read = first.num_rows();
    while let Some(batch) = stream.next().await {
        read += batch.expect("read").num_rows();
    }
    assert_eq!(read, 2 * rows, "every row once");

    let before = store.snapshot().1;
    let limited = table
        .scan_all(options(Some(rows as u64 - 100)))
        .await
        .expect("limited scan");
    assert_eq!(
        limited.iter().map(|b| b.num_rows()).sum::<usize>(),
        rows - 100
    );
    let bytes = store.snapshot().1 - before;
    assert!(
        bytes < fragment_bytes * 3 / 2,
        "{bytes} bytes read for a limit within one {fragment_bytes}-byte fragment"
    );
}

/// A selective range filter over a sorted column reads only the pages its statistics allow,
/// and the returned columns only at the matching rows.
#[tokio::test]
async fn range_filters_skip_pages_by_statistics() {
    let (store, db) = counted_db();
    let table = db
        .create_table(
            "sorted",
            common::simple_schema(DIM),
            batches_stream(vec![common::simple_batch(0, ROWS, DIM)]),
            CreateMode::Create,
            WriteParams {
                page_size: 4096,
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let full = table
        .count_rows_where("id >= 0")
        .await
        .expect("warm-up count");
    assert_eq!(full, ROWS as u64);

    let before = store.snapshot();
    assert_eq!(
        table.count_rows_where("id >= 0").await.expect("count"),
        ROWS as u64
    );
    let after_full = store.snapshot();
    let selective = "id >= 10000 AND id < 10100";
    assert_eq!(table.count_rows_where(selective).await.expect("count"), 100);
    let after_selective = store.snapshot();
    let full_bytes = after_full.1 - before.1;
    let selective_bytes = after_selective.1 - after_full.1;
    assert!(full_bytes >= ROWS as u64 * 8, "{full_bytes}");
    assert!(
        selective_bytes * 20 < full_bytes,
        "selective filter read {selective_bytes} bytes, full {full_bytes}"
    );

    // Late materialisation: the vectors of the 100 matches, not the whole column.
    let before = store.snapshot();
    let batches = table
        .scan_all(ScanOptions {
            columns: Some(vec!["vector".into()]),
            filter: Some(table.parse_filter(selective).expect("parse")),
            ..Default::default()
        })
        .await
        .expect("scan");
    let after = store.snapshot();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 100);
    let vector_bytes = (DIM as u64) * 4;
    let read = after.1 - before.1;
    assert!(
        read < 100 * vector_bytes + 16 * 4096,
        "read {read} bytes for 100 vectors of {vector_bytes} bytes"
    );

    // Nothing can match: no page is read at all.
    let before = store.snapshot();
    assert_eq!(table.count_rows_where("id < 0").await.expect("count"), 0);
    assert_eq!(store.snapshot().0, before.0);
}

/// On a cloud store an indexed search takes the returned columns of its refine candidates
/// beside the refine, so returning the results reads nothing more: one round trip, not two
/// in turn. Elsewhere the results are taken after (a local read costs no round trip).
#[tokio::test]
async fn cloud_search_takes_its_rows_beside_the_refine() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use quiver_engine::query::{analyze_search, VectorSearch};
    use quiver_engine::table::indices::{create_index, CreateIndexOptions, VectorIndexParams};

    const D: i32 = 16;
    let search = VectorSearch {
        query: (0..D).map(|j| 4321.0 + f64::from(j) / 1000.0).collect(),
        k: 5,
        refine_factor: Some(4),
        columns: Some(vec!["id".into(), "text".into()]),
        with_row_id: true,
        ..Default::default()
    };
    for cloud in [true, false] {
        let store = Arc::new(InstrumentedStore::new(Arc::new(InMemory::new())));
        let storage = Storage::from_store(
            store,
            Path::default(),
            StorageOptions::default(),
            if cloud { "s3://counted" } else { "count://" },
        );
        let storage = if cloud {
            storage.checking_conditional_puts()
        } else {
            storage
        };
        let db = Database::from_storage(storage, ConnectOptions::default());
        let batches = (0..4)
            .map(|i| common::simple_batch(i * 2_000, 2_000, D))
            .collect();
        let table = db
            .create_table(
                "t",
                common::simple_schema(D),
                batches_stream(batches),
                CreateMode::Create,
                WriteParams::default(),
            )
            .await
            .expect("create");
        let options = CreateIndexOptions {
            config: Some(VectorIndexParams::default().into()),
            ..Default::default()
        };
        create_index(&table, "vector", options)
            .await
            .expect("index");
        let (batch, plan) = analyze_search(&table, &search).await.expect("search");
        let take_reads = plan
            .find("Take")
            .and_then(|t| t.metrics.as_ref())
            .expect("a measured Take")
            .iops;
        if cloud {
            assert_eq!(take_reads, 0, "{}", plan.render(true, None));
        } else {
            assert!(take_reads > 0, "{}", plan.render(true, None));
        }
        // The right rows, nearest first, each with its own text and row address.
        let ids: Vec<i64> = batch
            .column_by_name("id")
            .expect("id")
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(ids[0], 4321);
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![4319, 4320, 4321, 4322, 4323]);
        let texts = batch
            .column_by_name("text")
            .expect("text")
            .as_string::<i32>();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(texts.value(i), format!("row {id}"));
        }
        let distances = batch
            .column_by_name("_distance")
            .expect("distances")
            .as_primitive::<arrow_array::types::Float32Type>()
            .values()
            .to_vec();
        assert!(distances.windows(2).all(|w| w[0] <= w[1]), "{distances:?}");
        assert_eq!(batch.column_by_name("_rowid").expect("row ids").len(), 5);
    }
}

/// On a cloud store a string take reads, beside the offsets, where each value would lie if
/// the page's values were of equal length, and only the values found elsewhere in a second
/// round: whatever the lengths (even, or a few huge ones skewing every position) and however
/// many pages the rows span, the values taken are the right ones, and with even lengths in
/// one page no second round is needed. (The one page holds some 1.5 MB of strings of 6 to
/// 69 bytes, more than the 1 MiB a cloud take reads whole.)
#[tokio::test]
async fn cloud_string_takes_guess_where_values_lie() {
    use arrow_array::{Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    for (skewed, page_size) in [
        (false, None),
        (true, None),
        (false, Some(4096)),
        (true, Some(4096)),
    ] {
        let store = Arc::new(InstrumentedStore::new(Arc::new(InMemory::new())));
        let storage = Storage::from_store(
            store.clone(),
            Path::default(),
            StorageOptions::default(),
            "s3://strings",
        )
        .checking_conditional_puts();
        let db = Database::from_storage(storage, ConnectOptions::default());
        let text = |i: usize| -> Option<String> {
            match i {
                _ if i % 97 == 5 => None,
                _ if skewed && i % 1000 == 7 => Some("x".repeat(200_000)),
                _ => Some(format!("row {i} {}", "y".repeat(i * 7919 % 60))),
            }
        };
        let n = 40_000;
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let column = StringArray::from_iter((0..n).map(text));
        let batch = arrow_array::RecordBatch::try_new(schema.clone(), vec![Arc::new(column)])
            .expect("batch");
        let table = db
            .create_table(
                "t",
                schema,
                batches_stream(vec![batch]),
                CreateMode::Create,
                WriteParams {
                    page_size: page_size.unwrap_or(WriteParams::default().page_size),
                    ..Default::default()
                },
            )
            .await
            .expect("create");
        table.take(&[0], None, false).await.expect("warm-up take");
        let rows: Vec<u64> = (0..60u64)
            .map(|i| (i * 7919 * 13 + 11) % n as u64)
            .collect();
        let before = store.snapshot().0;
        let taken = table.take(&rows, None, false).await.expect("take");
        let reads = store.snapshot().0 - before;
        let got = taken
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("strings");
        for (i, &r) in rows.iter().enumerate() {
            let want = text(r as usize);
            assert_eq!(got.is_valid(i), want.is_some(), "row {r}");
            if let Some(want) = want {
                assert_eq!(got.value(i), want, "row {r}");
            }
        }
        if !skewed && page_size.is_none() {
            // One round: the offsets and the guesses, each coalesced into a read or two (a
            // second round would read the 60 values, ~12 KiB apart, one by one).
            assert!(reads <= 3, "{reads} reads");
        }
    }
}

/// On a cloud store a row's columns are read together: the small columns' last pages lie side
/// by side at the end of the file (the writer flushes them after the large ones), and a take's
/// column reads are gathered into one request set per file, so one row costs one request for
/// its vector and one for everything else, however many small columns it has. Those small
/// pages are read whole and cached, so later rows of the file cost only their vector's.
#[tokio::test]
async fn cloud_row_take_reads_small_columns_in_one_request() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_array::{Float64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    let store = Arc::new(InstrumentedStore::new(Arc::new(InMemory::new())));
    let storage = Storage::from_store(
        store.clone(),
        Path::default(),
        StorageOptions::default(),
        "s3://rows",
    )
    .checking_conditional_puts();
    let db = Database::from_storage(storage, ConnectOptions::default());
    // One add() of the S3 benchmark's size: every small column's page lies within the cloud
    // coalesce gap of the next.
    let n = 10_000usize;
    let simple = common::simple_batch(0, n, DIM);
    let mut fields: Vec<Field> = simple
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("category", DataType::Utf8, false));
    fields.push(Field::new("price", DataType::Float64, false));
    // About 900 KB for the file: larger than the coalesce gap, so rows far apart in it are
    // not read along with each other.
    fields.push(Field::new("body", DataType::Utf8, false));
    let body = |i: usize| format!("body of row {i} {}", "b".repeat(72));
    let schema = Arc::new(Schema::new(fields));
    let mut columns = simple.columns().to_vec();
    columns.push(Arc::new(StringArray::from_iter_values(
        (0..n).map(|i| format!("category {}", i % 13)),
    )));
    columns.push(Arc::new(Float64Array::from_iter_values(
        (0..n).map(|i| i as f64 / 4.0),
    )));
    columns.push(Arc::new(StringArray::from_iter_values((0..n).map(body))));
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
    let table = db
        .create_table(
            "t",
            schema,
            batches_stream(vec![batch]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
    let before = store.snapshot().0;
    table.take(&[0], None, false).await.expect("first take");
    let reads = store.snapshot().0 - before;
    assert!(reads <= 3, "first take: {reads} reads");
    for row in [1_234u64, 6_789, 9_999] {
        let before = store.snapshot().0;
        let taken = table.take(&[row], None, false).await.expect("take");
        let reads = store.snapshot().0 - before;
        assert_eq!(reads, 1, "row {row}: {reads} reads");
        let id = taken
            .column_by_name("id")
            .expect("id")
            .as_primitive::<Int64Type>();
        assert_eq!(id.value(0), row as i64);
        let text = taken
            .column_by_name("text")
            .expect("text")
            .as_string::<i32>();
        assert_eq!(text.value(0), format!("row {row}"));
        let category = taken
            .column_by_name("category")
            .expect("category")
            .as_string::<i32>();
        assert_eq!(category.value(0), format!("category {}", row % 13));
        let price = taken
            .column_by_name("price")
            .expect("price")
            .as_primitive::<Float64Type>();
        assert_eq!(price.value(0), row as f64 / 4.0);
        let taken_body = taken
            .column_by_name("body")
            .expect("body")
            .as_string::<i32>();
        assert_eq!(taken_body.value(0), body(row as usize));
    }
}

#[tokio::test]
async fn cleanup_with_nothing_to_remove_reads_no_manifest() {
    let (store, db) = counted_db();
    let table = common::fed_table(&db, "t", DIM, 10, 30).await;
    // Default retention: the listings show every version and file is younger than it.
    let before = store.snapshot();
    let stats = table
        .cleanup_old_versions(quiver_engine::table::CleanupOptions::default())
        .await
        .expect("cleanup");
    let (reads, _) = store.snapshot();
    assert_eq!(stats, quiver_engine::table::CleanupStats::default());
    assert_eq!(
        reads - before.0,
        0,
        "manifests read for a cleanup with nothing to do"
    );
    // Everything superseded: the manifests are read and the old versions go.
    let stats = table
        .cleanup_old_versions(quiver_engine::table::CleanupOptions {
            before: Some(std::time::SystemTime::now() + std::time::Duration::from_secs(1)),
            ..Default::default()
        })
        .await
        .expect("cleanup");
    assert_eq!(stats.old_versions_removed, 30);
    assert_eq!(table.count_rows(), 40);
}
