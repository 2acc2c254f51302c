//! Scalar indexes as a user meets them: the kind `create_index` picks, answers equal to a
//! scan's through appends, deletions, compaction and `optimize` (which folds new rows in and
//! drops deleted ones without a rebuild), the planner's choice between index and scan, plans
//! naming the index, typed errors for columns an index cannot take, and a damaged index file
//! that costs speed, not answers.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{
    ArrayRef, FixedSizeListArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, StructArray,
};
use arrow_schema::{DataType, Field, Fields, Schema};
use quiver_engine::query::{search, VectorSearch};
use quiver_engine::table::indices::{
    create_index, index_stats, list_indices, optimize_indices, CreateIndexOptions, IndexConfig,
};
use quiver_engine::table::{CompactionOptions, MergeInsert};
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, Error, ScanOptions, Table, WriteParams,
};

/// Rows `start..start + n`: a unique id, a category of 10 values, a price, a label list, a
/// name, a 4-d vector and a struct.
fn batch(start: i64, n: usize) -> RecordBatch {
    let ids: Vec<i64> = (start..start + n as i64).collect();
    let mut tags = ListBuilder::new(StringBuilder::new());
    for &i in &ids {
        if i % 11 == 0 {
            tags.append(false);
            continue;
        }
        for l in [i % 7, i % 5 + 100] {
            tags.values().append_value(format!("l{l}"));
        }
        tags.append(true);
    }
    let vectors: Vec<f32> = ids
        .iter()
        .flat_map(|&i| [(i % 13) as f32, (i % 7) as f32, (i % 3) as f32, 1.0])
        .collect();
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from(ids.clone()))),
        (
            "category",
            Arc::new(Int32Array::from_iter(
                ids.iter().map(|i| (i % 13 != 5).then_some((i % 10) as i32)),
            )),
        ),
        (
            "price",
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|&i| (i * 37 % 1000) as f64 / 10.0),
            )),
        ),
        ("tags", Arc::new(tags.finish())),
        (
            "name",
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("n{:05}", i * 7919 % 100_000)),
            )),
        ),
        (
            "vector",
            Arc::new(FixedSizeListArray::new(
                item,
                4,
                Arc::new(Float32Array::from(vectors)),
                None,
            )),
        ),
        (
            "meta",
            Arc::new(StructArray::new(
                Fields::from(vec![Field::new("x", DataType::Int64, false)]),
                vec![Arc::new(Int64Array::from(ids.clone())) as ArrayRef],
                None,
            )),
        ),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), *name != "id"))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .expect("batch")
}

async fn connect(share: Option<f64>) -> Database {
    Database::connect(
        "memory://",
        ConnectOptions {
            scalar_index_max_share: share,
            ..Default::default()
        },
    )
    .await
    .expect("connect")
}

async fn table(db: &Database, name: &str, rows: usize, per_file: u64) -> Table {
    let b = batch(0, rows);
    db.create_table(
        name,
        b.schema(),
        batches_stream(vec![b]),
        CreateMode::Create,
        WriteParams {
            max_rows_per_file: per_file,
            ..Default::default()
        },
    )
    .await
    .expect("create")
}

async fn ids(t: &Table, filter: &str) -> Vec<i64> {
    let batches = t
        .scan_all(ScanOptions {
            columns: Some(vec!["id".into()]),
            filter: Some(t.parse_filter(filter).expect("parse")),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{filter}: {e}"));
    let mut out: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    out.sort_unstable();
    out
}

/// Filters a user writes, answered by each kind of index.
const FILTERS: &[&str] = &[
    "id = 1234",
    "id IN (5, 77, 4999, 123456)",
    "id BETWEEN 100 AND 140",
    "id > 4990",
    "id < 3 OR id >= 4998",
    "category = 3",
    "category IN (1, 2) AND id < 500",
    "category IS NULL",
    "category IS NOT NULL AND id < 50",
    "price >= 99.5",
    "price < 0.3",
    "name = 'n07919'",
    "name LIKE 'n0001%'",
    "name LIKE 'n000_1%'",
    "array_has(tags, 'l3')",
    "array_has_any(tags, ['l6', 'l104'])",
    "array_has_all(tags, ['l1', 'l101'])",
    "array_has(tags, 'l3') AND category = 4",
    "tags IS NULL",
    "id != 7 AND id < 20",
    "NOT (category = 3) AND id < 30",
    "category NOT IN (1, 2, 3) AND price < 50",
    "NOT (id BETWEEN 10 AND 4990)",
    "name NOT IN ('n07919', 'n15838') AND id < 40",
];

fn config(kind: &str) -> CreateIndexOptions {
    CreateIndexOptions {
        config: Some(match kind {
            "btree" => IndexConfig::BTree,
            "bitmap" => IndexConfig::Bitmap,
            _ => IndexConfig::LabelList,
        }),
        replace: true,
        ..Default::default()
    }
}

async fn index_all(t: &Table) {
    for (column, kind) in [
        ("id", "btree"),
        ("category", "bitmap"),
        ("price", "btree"),
        ("name", "btree"),
        ("tags", "labels"),
    ] {
        create_index(t, column, config(kind))
            .await
            .unwrap_or_else(|e| panic!("{column}: {e}"));
    }
}

/// Every filter, answered against `reference` (the same rows without indexes).
async fn agree(t: &Table, reference: &Table, when: &str) {
    for filter in FILTERS {
        let want = ids(reference, filter).await;
        assert_eq!(ids(t, filter).await, want, "{when}: {filter}");
        assert_eq!(
            t.count_rows_where(filter).await.expect("count"),
            want.len() as u64,
            "{when}: count {filter}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_a_scan_through_appends_deletes_compaction_and_optimize() {
    let db = connect(Some(1.0)).await;
    let plain = connect(None).await;
    let t = table(&db, "t", 5_000, 1_000).await;
    let reference = table(&plain, "t", 5_000, 1_000).await;
    index_all(&t).await;
    agree(&t, &reference, "built").await;

    // Rows appended after the build are found by scanning the fragments no index covers.
    for target in [&t, &reference] {
        target
            .append(
                batches_stream(vec![batch(5_000, 300)]),
                WriteParams::default(),
            )
            .await
            .expect("append");
    }
    let stats = index_stats(&t, "id_idx").expect("stats");
    assert_eq!(
        (stats.num_indexed_rows, stats.num_unindexed_rows),
        (5_000, 300)
    );
    agree(&t, &reference, "appended").await;

    // Deleted rows never come back.
    for target in [&t, &reference] {
        target
            .delete("id % 9 = 0 OR category = 3")
            .await
            .expect("delete");
    }
    agree(&t, &reference, "deleted").await;

    // optimize folds the new rows in and drops the deleted ones, without a rebuild.
    let done = optimize_indices(&t).await.expect("optimize");
    assert_eq!(done.indexes_optimized, 5);
    assert!(done.rows_added >= 5 * 200, "{done:?}");
    assert!(done.rows_removed > 0, "{done:?}");
    for info in list_indices(&t).expect("list") {
        assert_eq!(info.num_unindexed_rows, 0, "{}", info.name);
    }
    agree(&t, &reference, "optimized").await;
    // Nothing left to do: no new version.
    let again = optimize_indices(&t).await.expect("optimize again");
    assert_eq!(again.indexes_optimized, 0);

    // Compaction moves rows; indexes read through its address map, then fold it in.
    for target in [&t, &reference] {
        target
            .compact_files(CompactionOptions {
                target_rows_per_fragment: 4_000,
                ..Default::default()
            })
            .await
            .expect("compact");
    }
    agree(&t, &reference, "compacted").await;
    let done = optimize_indices(&t).await.expect("fold maps");
    assert_eq!(done.indexes_optimized, 5, "maps folded into every index");
    agree(&t, &reference, "maps folded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planner_uses_selective_indexes_and_scans_otherwise() {
    let db = connect(None).await;
    let t = table(&db, "t", 40_000, 10_000).await;
    index_all(&t).await;
    let plan = |filter: &str| {
        let t = t.clone();
        let filter = filter.to_string();
        async move {
            t.explain_scan(&ScanOptions {
                filter: Some(t.parse_filter(&filter).expect("parse")),
                ..Default::default()
            })
            .await
            .expect("explain")
            .render(true, None)
        }
    };
    let selective = plan("id = 1234").await;
    assert!(selective.contains("ScalarIndexQuery"), "{selective}");
    assert!(selective.contains("index=id_idx"), "{selective}");
    assert!(selective.contains("exact=true"), "{selective}");
    let labels = plan("array_has_any(tags, ['l6'])").await;
    assert!(labels.contains("type=LABEL_LIST"), "{labels}");
    // Half the rows: a scan is cheaper than reading half the pages.
    let wide = plan("id > 20000").await;
    assert!(!wide.contains("ScalarIndexQuery"), "{wide}");
    // `!=` is never answered by an index (lance#2937).
    let not_equal = plan("id != 7").await;
    assert!(!not_equal.contains("ScalarIndexQuery"), "{not_equal}");
    // NOT is answered by the other values when they are few.
    let few_others = plan("category NOT IN (0, 1, 2, 3, 4, 5, 6, 7, 8)").await;
    assert!(
        few_others.contains("query=not in (9 values)"),
        "{few_others}"
    );
    let many_others = plan("category != 3").await;
    assert!(!many_others.contains("ScalarIndexQuery"), "{many_others}");
    let nine: Vec<i64> = (0..40_000).filter(|i| i % 10 == 9 && i % 13 != 5).collect();
    assert_eq!(
        ids(&t, "category NOT IN (0, 1, 2, 3, 4, 5, 6, 7, 8)").await,
        nine
    );
    assert_eq!(ids(&t, "NOT (category < 9)").await, nine);
    // Part of an AND: the index narrows, the rest is rechecked.
    let mixed = plan("id < 100 AND price * 2 > 10").await;
    assert!(mixed.contains("exact=false"), "{mixed}");
    assert!(mixed.contains("rows_rechecked=100"), "{mixed}");
    assert_eq!(
        ids(&t, "id < 100 AND price * 2 > 10").await.len() as u64,
        t.count_rows_where("id < 100 AND price * 2 > 10")
            .await
            .expect("count")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_index_picks_the_kind_by_type_and_data() {
    let db = connect(None).await;
    let t = table(&db, "t", 20_000, 1 << 20).await;
    let kind = |column: &'static str| {
        let t = t.clone();
        async move {
            create_index(&t, column, CreateIndexOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{column}: {e}"))
                .index_type
        }
    };
    assert_eq!(kind("id").await, "BTREE");
    assert_eq!(kind("category").await, "BITMAP");
    assert_eq!(kind("tags").await, "LABEL_LIST");
    assert_eq!(kind("name").await, "BTREE");
    assert_eq!(kind("vector").await, "IVF_RQ");
    // A vector index and a scalar index on different columns live side by side.
    let all = list_indices(&t).expect("list");
    assert_eq!(all.len(), 5);
    let bitmap = all
        .iter()
        .find(|i| i.name == "category_idx")
        .expect("bitmap");
    assert_eq!(bitmap.details.num_distinct_values, Some(10));
    assert!(bitmap.size_bytes > 0);

    // Types an index cannot take are refused with the reason.
    for (column, config, needle) in [
        ("meta", None, "meta"),
        ("tags", Some(IndexConfig::BTree), "BTREE"),
        ("id", Some(IndexConfig::LabelList), "list columns"),
        ("vector", Some(IndexConfig::Bitmap), "BITMAP"),
    ] {
        let err = create_index(
            &t,
            column,
            CreateIndexOptions {
                config,
                replace: true,
                ..Default::default()
            },
        )
        .await
        .expect_err(column);
        assert!(
            matches!(err, Error::InvalidArgument(ref m) if m.contains(needle)),
            "{column}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_search_prefilters_through_an_index() {
    let db = connect(None).await;
    let plain = connect(None).await;
    let t = table(&db, "t", 20_000, 5_000).await;
    let reference = table(&plain, "t", 20_000, 5_000).await;
    create_index(&t, "id", CreateIndexOptions::default())
        .await
        .expect("btree");
    for filter in ["id BETWEEN 1000 AND 1150", "id IN (3, 5, 8, 13, 21)"] {
        let query = VectorSearch {
            query: vec![3.0, 2.0, 1.0, 1.0],
            k: 10,
            filter: Some(t.parse_filter(filter).expect("parse")),
            ..Default::default()
        };
        let got = search(&t, &query).await.expect("search");
        let want = search(&reference, &query).await.expect("search");
        assert_eq!(
            got.column_by_name("id"),
            want.column_by_name("id"),
            "{filter}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_index_file_costs_speed_not_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().to_str().expect("utf-8").to_string();
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let t = table(&db, "t", 10_000, 1 << 20).await;
    create_index(&t, "id", config("btree"))
        .await
        .expect("btree");
    let want = ids(&t, "id BETWEEN 10 AND 20").await;
    assert_eq!(want.len(), 11);
    // Flip bytes in the middle of the index file (a page), through a fresh connection so no
    // page is cached.
    let index_dir = dir.path().join("t.quiver").join("_indices");
    let file = std::fs::read_dir(&index_dir)
        .expect("indices")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("index.qvi"))
        .find(|p| p.exists())
        .expect("index file");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[10] ^= 0xFF;
    std::fs::write(&file, &bytes).expect("write");
    let db2 = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let t2 = db2.open_table("t").await.expect("open");
    // The damaged page is not trusted: the scan answers.
    assert_eq!(ids(&t2, "id BETWEEN 10 AND 20").await, want);
    assert_eq!(
        t2.count_rows_where("id BETWEEN 10 AND 20")
            .await
            .expect("count"),
        11
    );
    // Damage of the footer too.
    let n = bytes.len();
    bytes[n - 5] ^= 0xFF;
    std::fs::write(&file, &bytes).expect("write");
    let t3 = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect")
        .open_table("t")
        .await
        .expect("open");
    assert_eq!(ids(&t3, "id BETWEEN 10 AND 20").await, want);
    // Rebuilding the index repairs it; nothing committed was lost.
    create_index(&t2, "id", config("btree"))
        .await
        .expect("rebuild");
    assert_eq!(ids(&t2, "id BETWEEN 10 AND 20").await, want);
    assert_eq!(t2.count_rows(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_insert_finds_its_keys_through_an_index() {
    // Every use of the index allowed, so that the keys are surely found through it.
    let db = connect(Some(1.0)).await;
    let plain = connect(None).await;
    let t = table(&db, "t", 20_000, 5_000).await;
    let reference = table(&plain, "t", 20_000, 5_000).await;
    create_index(&t, "id", config("btree"))
        .await
        .expect("btree");
    // Rows the index does not cover, and deleted rows it still holds.
    for target in [&t, &reference] {
        target
            .append(
                batches_stream(vec![batch(20_000, 100)]),
                WriteParams::default(),
            )
            .await
            .expect("append");
        target.delete("id % 1000 = 7").await.expect("delete");
    }
    let upsert = MergeInsert {
        on: vec!["id".into()],
        when_matched_update_all: Some(None),
        when_not_matched_insert_all: true,
        when_not_matched_by_source_delete: None,
        timeout: None,
    };
    // Keys matching covered rows, uncovered rows, deleted rows and no row at all.
    let keys: Vec<i64> = vec![5, 1007, 12_345, 20_050, 20_099, 30_000, 30_001];
    let source = {
        let all = batch(0, 30_002);
        let indices =
            arrow_array::UInt32Array::from(keys.iter().map(|&k| k as u32).collect::<Vec<_>>());
        arrow_select::take::take_record_batch(&all, &indices).expect("take")
    };
    let got = t
        .merge_insert(&upsert, &source.schema(), vec![source.clone()])
        .await
        .expect("merge");
    let want = reference
        .merge_insert(&upsert, &source.schema(), vec![source.clone()])
        .await
        .expect("merge");
    assert_eq!(
        (got.num_inserted_rows, got.num_updated_rows),
        (want.num_inserted_rows, want.num_updated_rows)
    );
    assert_eq!((got.num_inserted_rows, got.num_updated_rows), (3, 4));
    assert_eq!(t.count_rows(), reference.count_rows());
    for filter in ["id = 1007", "id >= 20000", "id IN (5, 12345)"] {
        assert_eq!(
            ids(&t, filter).await,
            ids(&reference, filter).await,
            "{filter}"
        );
    }
}
