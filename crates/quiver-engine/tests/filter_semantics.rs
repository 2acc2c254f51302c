//! The SQL filter semantics, as one table: filter text → ids of the matching rows of a fixture
//! covering every filterable type and NULLs. Every case runs through every read path (one
//! fragment or many small ones; one-pass scans, late-materialised scans, `take` of sparse
//! matches; counts) — without indexes, with a B-tree or a bitmap on every scalar column and a
//! label list on every list column, with indexes covering only some fragments, and after
//! deletions — and all must agree.

use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, FixedSizeListArray, Float32Array, Float64Array,
    Int32Array, Int64Array, Int8Array, LargeStringArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray, TimestampMillisecondArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use quiver_engine::table::indices::{create_index, CreateIndexOptions, IndexConfig};
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, ScanOptions, Table, WriteParams,
};

const CASES: &[(&str, &[i32])] = &[
    // comparisons
    ("id = 3", &[3]),
    ("id != 3", &[0, 1, 2, 4, 5, 6, 7, 8, 9]),
    ("id <> 3", &[0, 1, 2, 4, 5, 6, 7, 8, 9]),
    ("id < 2", &[0, 1]),
    ("id <= 2", &[0, 1, 2]),
    ("id > 7", &[8, 9]),
    ("id >= 7", &[7, 8, 9]),
    ("7 <= id", &[7, 8, 9]),
    // NULLs and three-valued logic
    ("i8 > 0", &[0, 3, 4, 7, 9]),
    ("NOT i8 > 0", &[1, 5, 6]),
    ("i8 > 0 OR i8 IS NULL", &[0, 2, 3, 4, 7, 8, 9]),
    ("i8 IS NULL", &[2, 8]),
    ("i8 IS NOT NULL", &[0, 1, 3, 4, 5, 6, 7, 9]),
    ("i8 = 1000", &[]),
    ("i8 < 1000", &[0, 1, 3, 4, 5, 6, 7, 9]),
    ("NULL = NULL", &[]),
    ("i8 = NULL", &[]),
    ("true", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    ("1 = 1 AND id = 0", &[0]),
    ("coalesce(i8, 0) = 0", &[2, 6, 8]),
    // BETWEEN and IN
    ("i64 BETWEEN 20 AND 50", &[1, 2, 4]),
    ("i64 NOT BETWEEN 20 AND 50", &[0, 5, 6, 7, 8, 9]),
    ("i64 IN (10, 70, 1000)", &[0, 6]),
    ("i64 NOT IN (10, 70)", &[1, 2, 4, 5, 7, 8, 9]),
    ("i64 IN (10, NULL)", &[0]),
    ("i64 NOT IN (10, NULL)", &[]),
    (
        "id IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)",
        &[1, 2, 3, 4, 5, 6, 7, 8, 9],
    ),
    (
        "name IN ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'alice', 'bobby')",
        &[0, 9],
    ),
    (
        "name NOT IN ('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'alice', 'bobby')",
        &[1, 3, 4, 5, 6, 7, 8],
    ),
    // unsigned and floats
    ("u32 > 3000000000", &[9]),
    ("u32 = 4", &[3]),
    ("u32 + 1 > 5", &[5, 6, 7, 8, 9]),
    ("f32 = 0.1", &[0]),
    ("f32 > 1", &[1, 4, 5, 7, 8]), // NaN sorts above every number, as in PostgreSQL
    ("f32 < 0", &[3]),
    // arithmetic
    ("f64 * 2 > 15", &[7, 8, 9]),
    ("f64 + i64 > 100", &[9]),
    ("id % 3 = 0", &[0, 3, 6, 9]),
    ("id / 2 = 2", &[4, 5]),
    ("-id < -7", &[8, 9]),
    ("abs(i8) = 1", &[0, 1]),
    ("abs(f32 - 1) < 0.6", &[1]),
    // strings
    ("name = 'alice'", &[0]),
    ("name LIKE 'a%'", &[0, 7, 8]),
    ("name LIKE 'a\\_b'", &[7]),
    ("name LIKE 'a_b'", &[7, 8]),
    ("name NOT LIKE 'a%'", &[1, 3, 4, 5, 6, 9]),
    ("name ILIKE 'b%'", &[1, 9]),
    ("lower(name) = 'bob'", &[1]),
    ("upper(name) = 'ÉMILE'", &[5]),
    ("length(name) = 5", &[0, 3, 5, 9]),
    ("char_length(name) = 0", &[6]),
    ("starts_with(name, 'bo')", &[9]),
    ("ends_with(name, 'e')", &[0, 4, 5]),
    ("contains(name, '%')", &[8]),
    ("regexp_match(name, '^[a-c]')", &[0, 3, 7, 8, 9]),
    ("regexp_match(name, '^b', 'i')", &[1, 9]),
    ("name IS NULL", &[2]),
    ("big > 'x2'", &[2, 4, 5, 6, 8, 9]),
    ("big IN ('z', 'y')", &[6, 8]),
    // booleans
    ("flag", &[0, 3, 4, 8, 9]),
    ("flag = true", &[0, 3, 4, 8, 9]),
    ("NOT flag", &[1, 5, 7]),
    ("flag IS TRUE", &[0, 3, 4, 8, 9]),
    ("flag IS NOT TRUE", &[1, 2, 5, 6, 7]),
    ("flag IS FALSE", &[1, 5, 7]),
    ("flag IS NOT FALSE", &[0, 2, 3, 4, 6, 8, 9]),
    ("flag AND i8 > 0", &[0, 3, 4, 9]),
    ("flag OR id = 2", &[0, 2, 3, 4, 8, 9]),
    ("id > 2 AND id < 6 AND NOT (id = 4)", &[3, 5]),
    ("(id < 2 OR id > 7) AND flag", &[0, 8, 9]),
    // dates and timestamps
    ("d = DATE '2024-01-03'", &[2]),
    ("d >= '2024-01-08'", &[7, 8, 9]),
    ("d < DATE '2024-01-03' OR d IS NULL", &[0, 1, 4]),
    ("ts > TIMESTAMP '2024-01-31 17:30:00'", &[6, 8, 9]),
    ("ts < '2024-01-31 13:00:00'", &[0]),
    (
        "ts_naive >= TIMESTAMP '2024-01-31 12:05:00'",
        &[5, 6, 7, 8, 9],
    ),
    // casts
    ("CAST(id AS STRING) = '7'", &[7]),
    ("CAST(f64 AS INT) = 7", &[6]),
    ("CAST(name AS VARCHAR) = 'dave'", &[4]),
    // struct fields and quoted names
    ("s.a > 5", &[5, 6, 7, 8, 9]),
    ("s.b = 'p'", &[0, 5, 8]),
    ("s.a IS NULL", &[2, 3]),
    ("\"Order Count\" >= 16", &[8, 9]),
    ("`Order Count` = 4", &[2]),
    ("\"select\" = 0", &[9]),
    // lists
    ("array_has(tags, 'a')", &[0, 4, 6, 9]),
    ("array_has_any(tags, ['c', 'd'])", &[3, 5, 7, 9]),
    ("array_has_all(tags, ['a', 'b'])", &[0, 9]),
    ("array_length(tags) = 0", &[1]),
    ("array_length(nums) >= 2", &[0, 5, 6, 7]),
    ("array_has(nums, 1)", &[0, 4, 7]),
];

fn fixture() -> RecordBatch {
    let mut tags = ListBuilder::new(StringBuilder::new());
    for row in [
        Some(vec![Some("a"), Some("b")]),
        Some(vec![]),
        None,
        Some(vec![Some("c")]),
        Some(vec![Some("a")]),
        Some(vec![Some("b"), Some("c")]),
        Some(vec![Some("a"), None]),
        Some(vec![Some("d")]),
        None,
        Some(vec![Some("a"), Some("b"), Some("c")]),
    ] {
        match row {
            Some(items) => {
                for item in items {
                    tags.values().append_option(item);
                }
                tags.append(true);
            }
            None => tags.append(false),
        }
    }
    let mut nums = ListBuilder::new(Int32Builder::new());
    for row in [
        Some(vec![Some(1), Some(2)]),
        Some(vec![Some(3)]),
        Some(vec![]),
        None,
        Some(vec![Some(1)]),
        Some(vec![Some(2), Some(2)]),
        Some(vec![Some(5), Some(6), Some(7)]),
        Some(vec![Some(1), Some(3)]),
        Some(vec![Some(9)]),
        Some(vec![None]),
    ] {
        match row {
            Some(items) => {
                for item in items {
                    nums.values().append_option(item);
                }
                nums.append(true);
            }
            None => nums.append(false),
        }
    }
    let struct_fields = Fields::from(vec![
        Field::new("a", DataType::Int32, true),
        Field::new("b", DataType::Utf8, true),
    ]);
    let s = StructArray::new(
        struct_fields.clone(),
        vec![
            Arc::new(Int32Array::from(vec![
                Some(1),
                Some(2),
                Some(3),
                None,
                Some(5),
                Some(6),
                Some(7),
                Some(8),
                Some(9),
                Some(10),
            ])) as ArrayRef,
            Arc::new(StringArray::from(vec![
                Some("p"),
                Some("q"),
                Some("x"),
                Some("r"),
                None,
                Some("p"),
                Some("q"),
                Some("r"),
                Some("p"),
                Some("q"),
            ])),
        ],
        Some(vec![true, true, false, true, true, true, true, true, true, true].into()),
    );
    let day0 = 19723; // 2024-01-01
    let ts0_ms = 1_706_702_400_000i64; // 2024-01-31 12:00:00 UTC
    let vectors = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        2,
        Arc::new(Float32Array::from_iter_values((0..20).map(|v| v as f32))),
        None,
    );
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int32Array::from_iter_values(0..10))),
        (
            "i8",
            Arc::new(Int8Array::from(vec![
                Some(1),
                Some(-1),
                None,
                Some(5),
                Some(127),
                Some(-128),
                Some(0),
                Some(3),
                None,
                Some(2),
            ])),
        ),
        (
            "i64",
            Arc::new(Int64Array::from(vec![
                Some(10),
                Some(20),
                Some(30),
                None,
                Some(50),
                Some(60),
                Some(70),
                Some(80),
                Some(90),
                Some(100),
            ])),
        ),
        (
            "u32",
            Arc::new(UInt32Array::from(vec![
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                None,
                Some(6),
                Some(7),
                Some(8),
                Some(9),
                Some(4_000_000_000),
            ])),
        ),
        (
            "f32",
            Arc::new(Float32Array::from(vec![
                Some(0.1),
                Some(1.5),
                None,
                Some(-2.5),
                Some(f32::NAN),
                Some(3.0),
                Some(0.0),
                Some(100.25),
                Some(2.0),
                None,
            ])),
        ),
        (
            "f64",
            Arc::new(Float64Array::from(vec![
                Some(1.0),
                Some(2.0),
                Some(3.0),
                Some(4.0),
                Some(5.0),
                None,
                Some(7.5),
                Some(8.0),
                Some(9.0),
                Some(10.0),
            ])),
        ),
        (
            "name",
            Arc::new(StringArray::from(vec![
                Some("alice"),
                Some("Bob"),
                None,
                Some("carol"),
                Some("dave"),
                Some("Émile"),
                Some(""),
                Some("a_b"),
                Some("a%b"),
                Some("bobby"),
            ])),
        ),
        (
            "big",
            Arc::new(LargeStringArray::from(vec![
                Some("x1"),
                Some("x2"),
                Some("y1"),
                None,
                Some("x3"),
                Some("y2"),
                Some("z"),
                Some("x10"),
                Some("y"),
                Some("zz"),
            ])),
        ),
        (
            "flag",
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
                Some(true),
                Some(false),
                None,
                Some(false),
                Some(true),
                Some(true),
            ])),
        ),
        (
            "d",
            Arc::new(Date32Array::from(
                (0..10)
                    .map(|i| (i != 4).then_some(day0 + i))
                    .collect::<Vec<_>>(),
            )),
        ),
        (
            "ts",
            Arc::new(
                TimestampMillisecondArray::from(
                    (0..10)
                        .map(|i| (i != 7).then_some(ts0_ms + i * 3_600_000))
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
        ),
        (
            "ts_naive",
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                (0..10).map(|i| ts0_ms * 1000 + i * 60_000_000),
            )),
        ),
        ("tags", Arc::new(tags.finish())),
        ("nums", Arc::new(nums.finish())),
        ("s", Arc::new(s)),
        (
            "Order Count",
            Arc::new(Int32Array::from_iter_values((0..10).map(|i| i * 2))),
        ),
        (
            "select",
            Arc::new(Int32Array::from_iter_values((0..10).map(|i| 9 - i))),
        ),
        ("vec", Arc::new(vectors)),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| {
            let nullable = !matches!(*name, "id" | "Order Count" | "select" | "ts_naive");
            Field::new(*name, a.data_type().clone(), nullable)
        })
        .collect();
    assert!(matches!(
        fields[11].data_type(),
        DataType::Timestamp(TimeUnit::Microsecond, None)
    ));
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .expect("fixture")
}

/// Builds the fixture table with at most `rows_per_file` rows per fragment.
async fn table(rows_per_file: u64) -> Table {
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let batch = fixture();
    db.create_table(
        "fixture",
        batch.schema(),
        batches_stream(vec![batch]),
        CreateMode::Create,
        WriteParams {
            max_rows_per_file: rows_per_file,
            ..Default::default()
        },
    )
    .await
    .expect("create")
}

async fn ids(
    table: &Table,
    filter: &str,
    columns: Option<Vec<String>>,
    batch_size: usize,
) -> Vec<i32> {
    let batches = table
        .scan_all(ScanOptions {
            columns,
            filter: Some(table.parse_filter(filter).expect("parse")),
            batch_size,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{filter}: {e}"));
    let mut out: Vec<i32> = batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("id")
                .expect("id column")
                .as_primitive::<Int32Type>()
                .values()
                .to_vec()
        })
        .collect();
    out.sort_unstable();
    out
}

/// Every read path: (description, rows per fragment, projection, batch size).
const PATHS: &[(&str, u64, Option<&[&str]>, usize)] = &[
    ("one fragment, id only", 1 << 20, Some(&["id"]), 8192),
    ("one fragment, all columns", 1 << 20, None, 8192),
    ("3-row fragments, id only", 3, Some(&["id"]), 8192),
    (
        "3-row fragments, id and vec, batches of 2",
        3,
        Some(&["vec", "id"]),
        2,
    ),
    ("1-row fragments, all columns", 1, None, 8192),
];

#[tokio::test]
async fn every_case_matches_on_every_path() {
    let mut failures = Vec::new();
    for (path, rows_per_file, columns, batch_size) in PATHS {
        let t = table(*rows_per_file).await;
        let columns = columns.map(|c| c.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        for (filter, expected) in CASES {
            let got = ids(&t, filter, columns.clone(), *batch_size).await;
            if got != *expected {
                failures.push(format!(
                    "[{path}] {filter}: expected {expected:?}, got {got:?}"
                ));
            }
            let count = t.count_rows_where(filter).await.expect("count");
            if count != expected.len() as u64 {
                failures.push(format!(
                    "[{path}] count {filter}: expected {}, got {count}",
                    expected.len()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn row_id_filters_and_deleted_rows() {
    let t = table(4).await;
    // Fragment 1 holds ids 4..8; its first row has address 1 << 32.
    let base = 1u64 << 32;
    let filter = format!("_rowid = {base} OR _rowid IN ({}, 3)", base + 2);
    assert_eq!(ids(&t, &filter, None, 8192).await, vec![3, 4, 6]);
    let deleted = t
        .delete("id IN (4, 9) OR name IS NULL")
        .await
        .expect("delete");
    assert_eq!(deleted.num_deleted_rows, 3);
    assert_eq!(ids(&t, &filter, None, 8192).await, vec![3, 6]);
    assert_eq!(
        ids(&t, "id >= 0", Some(vec!["id".into()]), 8192).await,
        vec![0, 1, 3, 5, 6, 7, 8]
    );
    assert_eq!(t.count_rows_where("flag").await.expect("count"), 3);
    // Nothing matches: no new version.
    let version = t.version();
    let none = t.delete("id > 100").await.expect("delete nothing");
    assert_eq!((none.num_deleted_rows, none.version), (0, version));
}

/// Which indexes a table of the fixture gets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Indexes {
    BTree,
    Bitmap,
    /// B-trees built over the first half of the rows; the rest appended after.
    Partial,
}

fn index_config(field: &Field, mode: Indexes) -> Option<IndexConfig> {
    match field.data_type() {
        DataType::List(_) | DataType::LargeList(_) => Some(IndexConfig::LabelList),
        DataType::FixedSizeList(_, _) | DataType::Struct(_) => None,
        _ if mode == Indexes::Bitmap => Some(IndexConfig::Bitmap),
        _ => Some(IndexConfig::BTree),
    }
}

/// The fixture with indexes on every column that takes one; the connection uses an index
/// whenever one answers (however unselective), so every case goes through them.
async fn indexed_table(rows_per_file: u64, mode: Indexes) -> Table {
    let db = Database::connect(
        "memory://",
        ConnectOptions {
            scalar_index_max_share: Some(1.0),
            ..Default::default()
        },
    )
    .await
    .expect("connect");
    let batch = fixture();
    let params = || WriteParams {
        max_rows_per_file: rows_per_file,
        ..Default::default()
    };
    let first = if mode == Indexes::Partial {
        batch.slice(0, 5)
    } else {
        batch.clone()
    };
    let t = db
        .create_table(
            "fixture",
            batch.schema(),
            batches_stream(vec![first]),
            CreateMode::Create,
            params(),
        )
        .await
        .expect("create");
    for field in batch.schema().fields() {
        let Some(config) = index_config(field, mode) else {
            continue;
        };
        create_index(
            &t,
            field.name(),
            CreateIndexOptions {
                config: Some(config),
                replace: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("index on {}: {e}", field.name()));
    }
    if mode == Indexes::Partial {
        t.append(batches_stream(vec![batch.slice(5, 5)]), params())
            .await
            .expect("append");
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_matches_with_every_index_kind() {
    let mut failures = Vec::new();
    for mode in [Indexes::BTree, Indexes::Bitmap, Indexes::Partial] {
        for rows_per_file in [1 << 20, 3] {
            let t = indexed_table(rows_per_file, mode).await;
            let plan = t
                .explain_scan(&ScanOptions {
                    filter: Some(t.parse_filter("id = 3 OR name = 'alice'").expect("parse")),
                    ..Default::default()
                })
                .await
                .expect("explain")
                .render(true, None);
            assert!(plan.contains("ScalarIndexQuery"), "{mode:?}: {plan}");
            for (filter, expected) in CASES {
                for columns in [Some(vec!["id".to_string()]), None] {
                    let got = ids(&t, filter, columns.clone(), 8192).await;
                    if got != *expected {
                        failures.push(format!(
                            "[{mode:?}, {rows_per_file}] {filter}: expected {expected:?}, got {got:?}"
                        ));
                    }
                }
                let count = t.count_rows_where(filter).await.expect("count");
                if count != expected.len() as u64 {
                    failures.push(format!(
                        "[{mode:?}, {rows_per_file}] count {filter}: expected {}, got {count}",
                        expected.len()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_rows_never_come_back_through_an_index() {
    for mode in [Indexes::BTree, Indexes::Bitmap] {
        let t = indexed_table(4, mode).await;
        let gone = [0, 3, 9];
        t.delete("id IN (0, 3, 9)").await.expect("delete");
        for (filter, expected) in CASES {
            let expected: Vec<i32> = expected
                .iter()
                .copied()
                .filter(|i| !gone.contains(i))
                .collect();
            assert_eq!(
                ids(&t, filter, None, 8192).await,
                expected,
                "{mode:?} {filter}"
            );
            let count = t.count_rows_where(filter).await.expect("count");
            assert_eq!(count, expected.len() as u64, "{mode:?} count {filter}");
        }
    }
}
