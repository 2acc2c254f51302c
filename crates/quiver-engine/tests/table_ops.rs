//! Whole operations on tables: create modes, append, overwrite, delete by row address,
//! versions and time travel, schema checks, names, listing and dropping.

mod common;

use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, Error, ScanOptions, Table, WriteParams,
};

const DIM: i32 = 4;

async fn db() -> Database {
    Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect")
}

async fn table_with(
    db: &Database,
    name: &str,
    batches: Vec<RecordBatch>,
    params: WriteParams,
) -> Table {
    db.create_table(
        name,
        common::simple_schema(DIM),
        batches_stream(batches),
        CreateMode::Create,
        params,
    )
    .await
    .expect("create")
}

async fn all_ids(table: &Table) -> Vec<i64> {
    common::ids_of(&table.scan_all(ScanOptions::default()).await.expect("scan"))
}

#[tokio::test]
async fn create_modes() {
    let db = db().await;
    let t = table_with(
        &db,
        "t",
        vec![common::simple_batch(0, 10, DIM)],
        WriteParams::default(),
    )
    .await;
    assert_eq!(t.version(), 1);
    let err = db
        .create_table(
            "t",
            common::simple_schema(DIM),
            batches_stream(vec![]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TableAlreadyExists(_)), "{err}");
    let same = db
        .create_table(
            "t",
            common::simple_schema(DIM),
            batches_stream(vec![common::simple_batch(100, 5, DIM)]),
            CreateMode::ExistOk,
            WriteParams::default(),
        )
        .await
        .expect("exist_ok");
    assert_eq!(same.count_rows(), 10, "exist_ok leaves the table unchanged");
    let over = db
        .create_table(
            "t",
            common::simple_schema(DIM),
            batches_stream(vec![common::simple_batch(100, 5, DIM)]),
            CreateMode::Overwrite,
            WriteParams::default(),
        )
        .await
        .expect("overwrite");
    assert_eq!(over.version(), 2);
    assert_eq!(all_ids(&over).await, (100..105).collect::<Vec<_>>());
}

#[tokio::test]
async fn append_overwrite_and_many_fragments() {
    let db = db().await;
    let params = WriteParams {
        max_rows_per_file: 300,
        page_size: 4096,
        ..Default::default()
    };
    let t = table_with(
        &db,
        "t",
        vec![common::simple_batch(0, 1000, DIM)],
        params.clone(),
    )
    .await;
    assert_eq!(
        t.manifest().fragments().len(),
        4,
        "1000 rows at 300 per file"
    );
    let v = t
        .append(
            batches_stream(vec![common::simple_batch(1000, 500, DIM)]),
            params.clone(),
        )
        .await
        .expect("append");
    assert_eq!(v, 2);
    assert_eq!(all_ids(&t).await, (0..1500).collect::<Vec<_>>());
    let stats = t.stats();
    assert_eq!(stats.num_rows, 1500);
    assert_eq!(stats.num_fragments, 6);
    assert!(stats.data_bytes > 1500 * DIM as u64 * 4);

    // Overwrite may change the schema.
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![7, 8]))])
        .expect("batch");
    let v = t
        .overwrite(
            schema.clone(),
            batches_stream(vec![batch]),
            WriteParams::default(),
        )
        .await
        .expect("overwrite");
    assert_eq!(v, 3);
    assert_eq!(t.schema(), schema);
    assert_eq!(t.count_rows(), 2);
}

#[tokio::test]
async fn scan_limit_offset_batches_and_projection() {
    let db = db().await;
    let params = WriteParams {
        max_rows_per_file: 100,
        page_size: 4096,
        ..Default::default()
    };
    let t = table_with(&db, "t", vec![common::simple_batch(0, 1000, DIM)], params).await;
    let got = t
        .scan_all(ScanOptions {
            offset: 250,
            limit: Some(333),
            batch_size: 64,
            ..Default::default()
        })
        .await
        .expect("scan");
    assert!(got.iter().all(|b| b.num_rows() <= 64));
    assert_eq!(common::ids_of(&got), (250..583).collect::<Vec<_>>());
    let only_text = t
        .scan_all(ScanOptions {
            columns: Some(vec!["text".into()]),
            limit: Some(3),
            ..Default::default()
        })
        .await
        .expect("scan");
    assert_eq!(only_text[0].schema().fields().len(), 1);
    assert_eq!(only_text[0].num_rows(), 3);
    let err = t
        .scan_all(ScanOptions {
            columns: Some(vec!["nope".into()]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("'nope' does not exist") && err.to_string().contains("id"),
        "{err}"
    );
    // Row ids only: no data columns at all.
    let ids_only = t
        .scan_all(ScanOptions {
            columns: Some(vec![]),
            with_row_id: true,
            ..Default::default()
        })
        .await
        .expect("scan");
    assert_eq!(common::row_ids_of(&ids_only).len(), 1000);
}

#[tokio::test]
async fn delete_by_row_address_and_time_travel() {
    let db = db().await;
    let params = WriteParams {
        max_rows_per_file: 100,
        ..Default::default()
    };
    let t = table_with(&db, "t", vec![common::simple_batch(0, 300, DIM)], params).await;
    let scanned = t
        .scan_all(ScanOptions {
            with_row_id: true,
            ..Default::default()
        })
        .await
        .expect("scan");
    let addresses = common::row_ids_of(&scanned);
    // Delete the even ids of the first fragment and all of the second.
    let mut doomed: Vec<u64> = addresses[0..100].iter().step_by(2).copied().collect();
    doomed.extend_from_slice(&addresses[100..200]);
    let result = t.delete_rows(&doomed).await.expect("delete");
    assert_eq!(result.num_deleted_rows, 150);
    assert_eq!(result.version, 2);
    assert_eq!(t.count_rows(), 150);
    assert_eq!(
        t.manifest().fragments().len(),
        2,
        "an emptied fragment leaves the manifest"
    );
    let ids = all_ids(&t).await;
    let expected: Vec<i64> = (1..100).step_by(2).chain(200..300).collect();
    assert_eq!(ids, expected);
    // Deleted rows cannot be taken; live ones keep their addresses.
    assert!(matches!(
        t.take(&[addresses[0]], None, false).await,
        Err(Error::RowNotFound(_))
    ));
    let live = t
        .take(&[addresses[250], addresses[1]], None, false)
        .await
        .expect("take");
    assert_eq!(common::ids_of(&[live]), vec![250, 1]);
    // Deleting again what is gone is a no-op, not a new version.
    let again = t.delete_rows(&doomed[..5]).await.expect("delete again");
    assert_eq!((again.num_deleted_rows, again.version), (0, 2));
    // Offset and limit count live rows.
    let page = t
        .scan_all(ScanOptions {
            offset: 10,
            limit: Some(5),
            ..Default::default()
        })
        .await
        .expect("scan");
    assert_eq!(common::ids_of(&page), vec![21, 23, 25, 27, 29]);

    // History, checkout (read-only), restore.
    t.append(
        batches_stream(vec![common::simple_batch(1000, 10, DIM)]),
        WriteParams::default(),
    )
    .await
    .expect("append");
    let history = t.list_versions().await.expect("versions");
    let ops: Vec<(u64, &str)> = history
        .iter()
        .map(|v| (v.version, v.operation.as_str()))
        .collect();
    assert_eq!(ops, vec![(1, "create"), (2, "delete"), (3, "append")]);
    assert!(history
        .windows(2)
        .all(|w| w[0].timestamp_micros <= w[1].timestamp_micros));
    t.checkout(1).await.expect("checkout");
    assert_eq!(t.count_rows(), 300);
    assert_eq!(all_ids(&t).await, (0..300).collect::<Vec<_>>());
    let err = t
        .append(
            batches_stream(vec![common::simple_batch(0, 1, DIM)]),
            WriteParams::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReadOnlyVersion(1)), "{err}");
    let restored = t.restore(None).await.expect("restore");
    assert_eq!(restored, 4);
    assert_eq!(t.count_rows(), 300);
    assert!(!t.is_pinned());
    t.checkout_latest().await.expect("latest");
    assert_eq!(t.version(), 4);
    assert!(matches!(
        t.checkout(99).await,
        Err(Error::VersionNotFound { version: 99, .. })
    ));
}

#[tokio::test]
async fn schema_mismatches_name_the_field() {
    let db = db().await;
    let t = table_with(
        &db,
        "t",
        vec![common::simple_batch(0, 10, DIM)],
        WriteParams::default(),
    )
    .await;
    // Vector of the wrong length.
    let wrong = common::simple_batch(0, 3, DIM + 1);
    let err = t
        .append(batches_stream(vec![wrong]), WriteParams::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SchemaMismatch(_)), "{err}");
    assert!(
        err.to_string().contains("'vector'") && err.to_string().contains("vectors of 5"),
        "{err}"
    );
    // Wrong type.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("vector", common::vector_type(DataType::Float32, DIM), true),
        Field::new("text", DataType::Utf8, true),
    ]));
    let ok = common::simple_batch(0, 2, DIM);
    let bad = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(arrow_array::StringArray::from(vec!["a", "b"])),
            ok.column(1).clone(),
            ok.column(2).clone(),
        ],
    )
    .expect("batch");
    let err = t
        .append(batches_stream(vec![bad]), WriteParams::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("'id'") && err.to_string().contains("Int64"),
        "{err}"
    );
    // Missing column.
    let short = ok.project(&[0, 1]).expect("project");
    let err = t
        .append(batches_stream(vec![short]), WriteParams::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("'text'"), "{err}");
    // Nothing was committed by the failures.
    assert_eq!(t.version(), 1);
    assert_eq!(t.count_rows(), 10);
    // Nulls in a non-nullable column.
    let nullable_schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let strict_schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let strict = db
        .create_table(
            "strict",
            strict_schema,
            batches_stream(vec![]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
    let with_null = RecordBatch::try_new(
        nullable_schema,
        vec![Arc::new(Int64Array::from(vec![Some(1), None]))],
    )
    .expect("batch");
    let err = strict
        .append(batches_stream(vec![with_null]), WriteParams::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("'id' is not nullable"), "{err}");
}

#[tokio::test]
async fn names_listing_and_drop() {
    let db = db().await;
    for bad in [
        "",
        "../x",
        "a/b",
        ".hidden",
        "x\\y",
        "a b",
        &"n".repeat(200),
    ] {
        let err = db
            .create_table(
                bad,
                common::simple_schema(DIM),
                batches_stream(vec![]),
                CreateMode::Create,
                WriteParams::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{bad:?}: {err}");
        assert!(matches!(
            db.open_table(bad).await,
            Err(Error::InvalidArgument(_))
        ));
    }
    for name in ["b", "a", "c-1.x"] {
        table_with(&db, name, vec![], WriteParams::default()).await;
    }
    assert_eq!(
        db.table_names().await.expect("names"),
        vec!["a", "b", "c-1.x"]
    );
    db.drop_table("b").await.expect("drop");
    assert_eq!(db.table_names().await.expect("names"), vec!["a", "c-1.x"]);
    assert!(matches!(
        db.open_table("b").await,
        Err(Error::TableNotFound(_))
    ));
    assert!(matches!(
        db.drop_table("b").await,
        Err(Error::TableNotFound(_))
    ));
}

#[tokio::test]
async fn local_paths_and_file_uris_and_other_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = dir.path().join("db");
    let db = Database::connect(plain.to_str().expect("utf8"), ConnectOptions::default())
        .await
        .expect("connect");
    let t = table_with(
        &db,
        "t",
        vec![common::simple_batch(0, 10, DIM)],
        WriteParams::default(),
    )
    .await;
    let uri = format!("file://{}", plain.display());
    let other = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect file://");
    let t2 = other.open_table("t").await.expect("open");
    assert_eq!(t2.count_rows(), 10);
    t.append(
        batches_stream(vec![common::simple_batch(10, 5, DIM)]),
        WriteParams::default(),
    )
    .await
    .expect("append");
    assert_eq!(
        t2.count_rows(),
        10,
        "a handle reads its version until refreshed"
    );
    assert_eq!(t2.refresh().await.expect("refresh"), 2);
    assert_eq!(t2.count_rows(), 15);
    // Named memory stores are shared within the process.
    let m1 = Database::connect("memory://shared-test", ConnectOptions::default())
        .await
        .expect("m1");
    table_with(&m1, "t", vec![], WriteParams::default()).await;
    let m2 = Database::connect("memory://shared-test", ConnectOptions::default())
        .await
        .expect("m2");
    assert_eq!(m2.table_names().await.expect("names"), vec!["t"]);
}

#[tokio::test]
async fn columns_in_another_order_are_accepted() {
    let db = db().await;
    let t = table_with(
        &db,
        "t",
        vec![common::simple_batch(0, 5, DIM)],
        WriteParams::default(),
    )
    .await;
    let batch = common::simple_batch(5, 5, DIM);
    let reordered = batch.project(&[2, 0, 1]).expect("reorder");
    t.append(batches_stream(vec![reordered]), WriteParams::default())
        .await
        .expect("append");
    assert_eq!(all_ids(&t).await, (0..10).collect::<Vec<_>>());
    // Row 7 is the third row of the second fragment.
    let texts = t
        .take(&[(1 << 32) | 2], Some(&["text".to_string()]), false)
        .await
        .expect("take");
    let texts = texts
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .expect("utf8");
    assert_eq!(texts.value(0), "row 7");
}

#[tokio::test]
async fn dropped_and_recreated_table_is_read_fresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::connect(
        dir.path().to_str().expect("utf8"),
        ConnectOptions::default(),
    )
    .await
    .expect("connect");
    let t = table_with(
        &db,
        "t",
        vec![common::simple_batch(0, 10, DIM)],
        WriteParams::default(),
    )
    .await;
    assert_eq!(t.list_versions().await.expect("versions").len(), 1);
    db.drop_table("t").await.expect("drop");
    // Same name, same version number 1, other rows: no cached manifest may leak through.
    table_with(
        &db,
        "t",
        vec![common::simple_batch(500, 3, DIM)],
        WriteParams::default(),
    )
    .await;
    let reopened = db.open_table("t").await.expect("open");
    assert_eq!(all_ids(&reopened).await, vec![500, 501, 502]);
    let pinned = db.open_table_at("t", 1).await.expect("open at v1");
    assert!(pinned.is_pinned());
    assert_eq!(pinned.count_rows(), 3);
    assert!(matches!(
        db.open_table_at("t", 2).await,
        Err(Error::VersionNotFound { .. })
    ));
    assert!(matches!(
        db.open_table_at("nope", 1).await,
        Err(Error::TableNotFound(_))
    ));
}

#[tokio::test]
async fn a_missing_local_folder_is_an_empty_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("not/yet/there");
    let db = Database::connect(path.to_str().expect("utf8"), ConnectOptions::default())
        .await
        .expect("connect");
    assert!(db.table_names().await.expect("names").is_empty());
    assert!(matches!(
        db.open_table("t").await,
        Err(Error::TableNotFound(_))
    ));
    table_with(
        &db,
        "t",
        vec![common::simple_batch(0, 2, DIM)],
        WriteParams::default(),
    )
    .await;
    assert!(
        path.join("t.quiver/_versions").is_dir(),
        "the folder is created on the first write"
    );
}

#[tokio::test]
async fn positions_map_to_row_ids_around_deletions() {
    let db = db().await;
    let params = WriteParams {
        max_rows_per_file: 10,
        ..Default::default()
    };
    let t = table_with(&db, "t", vec![common::simple_batch(0, 30, DIM)], params).await;
    let all = common::row_ids_of(
        &t.scan_all(ScanOptions {
            with_row_id: true,
            ..Default::default()
        })
        .await
        .expect("scan"),
    );
    // Delete ids 0, 3, 4 and all of the second fragment.
    let mut doomed = vec![all[0], all[3], all[4]];
    doomed.extend_from_slice(&all[10..20]);
    t.delete_rows(&doomed).await.expect("delete");
    let live = common::row_ids_of(
        &t.scan_all(ScanOptions {
            with_row_id: true,
            ..Default::default()
        })
        .await
        .expect("scan"),
    );
    let positions: Vec<u64> = (0..live.len() as u64).rev().collect();
    let got = t.row_ids_at(&positions).await.expect("positions");
    let want: Vec<u64> = positions.iter().map(|&p| live[p as usize]).collect();
    assert_eq!(got, want);
    assert!(matches!(
        t.row_ids_at(&[live.len() as u64]).await,
        Err(Error::RowNotFound(_))
    ));
}

/// Small limits are served by taking exactly the rows wanted, large ones by reading pages; both
/// must return the same rows, across fragments and deletions, with batches of at most
/// `batch_size` rows.
#[tokio::test]
async fn small_and_large_limits_agree_across_fragments_and_deletions() {
    let db = db().await;
    let params = WriteParams {
        max_rows_per_file: 700,
        page_size: 8192,
        ..Default::default()
    };
    let t = table_with(&db, "t", vec![common::simple_batch(0, 3000, DIM)], params).await;
    let all = t
        .scan_all(ScanOptions {
            with_row_id: true,
            ..Default::default()
        })
        .await
        .expect("scan");
    let addresses = common::row_ids_of(&all);
    let doomed: Vec<u64> = addresses
        .iter()
        .copied()
        .filter(|a| a % 7 == 0 || (*a >> 32) == 1)
        .collect();
    t.delete_rows(&doomed).await.expect("delete");
    let live: Vec<i64> = common::ids_of(&t.scan_all(ScanOptions::default()).await.expect("scan"));
    for (offset, limit) in [
        (0, 10),
        (5, 1),
        (650, 100),
        (1990, 1024),
        (0, 1025),
        (100, 2000),
        (2400, 50),
    ] {
        let got = t
            .scan_all(ScanOptions {
                offset,
                limit: Some(limit),
                batch_size: 300,
                with_row_id: true,
                ..Default::default()
            })
            .await
            .expect("scan");
        assert!(
            got.iter().all(|b| b.num_rows() <= 300),
            "offset {offset} limit {limit}"
        );
        let start = (offset as usize).min(live.len());
        let end = (start + limit as usize).min(live.len());
        assert_eq!(
            common::ids_of(&got),
            live[start..end].to_vec(),
            "offset {offset} limit {limit}"
        );
        assert!(common::row_ids_of(&got).iter().all(|a| !doomed.contains(a)));
    }
}
