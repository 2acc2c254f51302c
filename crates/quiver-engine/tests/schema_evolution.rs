//! Schema evolution: add (SQL or all-NULL), alter (rename, nullability, widening casts) and
//! drop columns, each one version; old versions keep their own schema; data files are never
//! rewritten; concurrent writers either rebase, re-run, or conflict.

mod common;

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray, StructArray,
};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use common::{item, vector_type};
use quiver_engine::{
    batches_stream, ColumnAlteration, ConnectOptions, CreateMode, Database, Error, NewColumns,
    ScanOptions, Table, WriteParams,
};

fn meta_type() -> DataType {
    DataType::Struct(Fields::from(vec![
        Field::new("color", DataType::Utf8, true),
        Field::new("size", DataType::Int32, true),
    ]))
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("qty", DataType::Int32, true),
        Field::new("vec", vector_type(DataType::Float32, 2), true),
        Field::new("meta", meta_type(), true),
    ]))
}

/// Rows `ids`: qty = id % 7 (NULL when id % 5 == 0), vec = [id, -id], meta = {c{id%3}, id}.
fn rows(ids: std::ops::Range<i64>) -> RecordBatch {
    let qty = Int32Array::from_iter(ids.clone().map(|i| (i % 5 != 0).then_some((i % 7) as i32)));
    let values = Float32Array::from_iter_values(ids.clone().flat_map(|i| [i as f32, -i as f32]));
    let vec = arrow_array::FixedSizeListArray::try_new(
        item(DataType::Float32),
        2,
        Arc::new(values),
        None,
    )
    .expect("vectors");
    let colors: ArrayRef = Arc::new(StringArray::from_iter_values(
        ids.clone().map(|i| format!("c{}", i % 3)),
    ));
    let sizes: ArrayRef = Arc::new(Int32Array::from_iter_values(ids.clone().map(|i| i as i32)));
    let DataType::Struct(fields) = meta_type() else {
        unreachable!()
    };
    let meta = StructArray::try_new(fields, vec![colors, sizes], None).expect("struct");
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(qty),
            Arc::new(vec),
            Arc::new(meta),
        ],
    )
    .expect("batch")
}

async fn memory_db() -> Database {
    Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect")
}

/// A table of ids 0..300 in three fragments of 100 rows, with ids 10..20 deleted.
async fn table(db: &Database) -> Table {
    let params = WriteParams {
        max_rows_per_file: 100,
        ..WriteParams::default()
    };
    let t = db
        .create_table(
            "t",
            schema(),
            batches_stream(vec![rows(0..300)]),
            CreateMode::Create,
            params,
        )
        .await
        .expect("create");
    t.delete("id >= 10 AND id < 20").await.expect("delete");
    t
}

/// All rows, sorted by id, as one batch.
async fn sorted(t: &Table, filter: Option<&str>) -> RecordBatch {
    let options = ScanOptions {
        filter: filter.map(|f| t.parse_filter(f).expect("filter")),
        ..ScanOptions::default()
    };
    let batches = t.scan_all(options).await.expect("scan");
    let batch = arrow_select::concat::concat_batches(&t.schema(), &batches).expect("concat");
    let ids = batch.column_by_name("id").expect("id").clone();
    let order = arrow_ord::sort::sort_to_indices(&ids, None, None).expect("sort");
    arrow_select::take::take_record_batch(&batch, &order).expect("take")
}

/// Live ids (0..300 without 10..20) for which `pred` holds.
fn live(pred: impl Fn(i64) -> bool) -> u64 {
    (0..300i64)
        .filter(|i| !(10..20).contains(i) && pred(*i))
        .count() as u64
}

fn qty_is(i: i64, q: i64) -> bool {
    i % 5 != 0 && i % 7 == q
}

fn ids(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column_by_name("id")
        .expect("id")
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

fn data_files(t: &Table) -> Vec<Vec<String>> {
    t.manifest()
        .fragments()
        .iter()
        .map(|f| f.files.iter().map(|d| d.path.clone()).collect())
        .collect()
}

#[tokio::test]
async fn add_columns_from_sql_writes_new_files_only() {
    let db = memory_db().await;
    let t = table(&db).await;
    let before = t.version();
    let files_before = data_files(&t);
    let version = t
        .add_columns(NewColumns::Sql(vec![
            ("double_qty".into(), "qty * 2".into()),
            ("label".into(), "upper(meta.color) || ''".into()),
        ]))
        .await;
    // `||` is not in the filter language: the whole call fails and changes nothing.
    assert!(matches!(version, Err(Error::Filter(_))), "{version:?}");
    assert_eq!(t.version(), before);

    let version = t
        .add_columns(NewColumns::Sql(vec![
            ("double_qty".into(), "qty * 2".into()),
            ("label".into(), "upper(meta.color)".into()),
            ("big".into(), "id > 250".into()),
            ("rid".into(), "_rowid".into()),
        ]))
        .await
        .expect("add");
    assert_eq!(version, before + 1);
    let files_after = data_files(&t);
    for (old, new) in files_before.iter().zip(&files_after) {
        assert_eq!(&new[..old.len()], old.as_slice(), "existing files kept");
        assert_eq!(new.len(), old.len() + 1, "one new file per fragment");
    }
    let names: Vec<String> = t
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        [
            "id",
            "qty",
            "vec",
            "meta",
            "double_qty",
            "label",
            "big",
            "rid"
        ]
    );
    assert_eq!(
        t.schema()
            .field_with_name("double_qty")
            .unwrap()
            .data_type(),
        &DataType::Int32,
        "an int32 column times an integer literal stays int32"
    );

    let all = sorted(&t, None).await;
    assert_eq!(all.num_rows(), 290);
    let doubled = all
        .column_by_name("double_qty")
        .unwrap()
        .as_primitive::<Int32Type>();
    let label = all.column_by_name("label").unwrap().as_string::<i32>();
    let big = all.column_by_name("big").unwrap().as_boolean();
    let rid = all.column_by_name("rid").unwrap();
    let with_ids = t
        .scan_all(ScanOptions {
            with_row_id: true,
            columns: Some(vec!["id".into()]),
            ..ScanOptions::default()
        })
        .await
        .expect("scan");
    let mut expected_rids: Vec<(i64, u64)> = with_ids
        .iter()
        .flat_map(|b| {
            let i = b.column(0).as_primitive::<Int64Type>().values().to_vec();
            let r = b
                .column(1)
                .as_primitive::<arrow_array::types::UInt64Type>()
                .values()
                .to_vec();
            i.into_iter().zip(r)
        })
        .collect();
    expected_rids.sort();
    for (row, id) in ids(&all).into_iter().enumerate() {
        if id % 5 == 0 {
            assert!(doubled.is_null(row), "NULL qty gives NULL");
        } else {
            assert_eq!(doubled.value(row) as i64, 2 * (id % 7));
        }
        assert_eq!(label.value(row), format!("C{}", id % 3));
        assert_eq!(big.value(row), id > 250);
        assert_eq!(
            rid.as_primitive::<arrow_array::types::UInt64Type>()
                .value(row),
            expected_rids[row].1
        );
    }

    // Filters, takes and updates see the new columns.
    assert_eq!(
        t.count_rows_where("double_qty = 12").await.unwrap(),
        live(|i| qty_is(i, 6))
    );
    let row = t
        .take(&[expected_rids[0].1], Some(&["label".to_string()]), false)
        .await
        .unwrap();
    assert_eq!(row.column(0).as_string::<i32>().value(0), "C0");
    let updated = t
        .update(
            Some("id = 1"),
            vec![(
                "label".into(),
                quiver_engine::table::UpdateValue::Sql("'one'".into()),
            )],
        )
        .await
        .unwrap();
    assert_eq!(updated.rows_updated, 1);
    assert_eq!(t.count_rows_where("label = 'one'").await.unwrap(), 1);

    // The version before still reads its own schema.
    let old = db.open_table_at("t", before).await.expect("old");
    assert_eq!(old.schema().fields().len(), 4);
    assert_eq!(sorted(&old, None).await.num_columns(), 4);
    let err = old.count_rows_where("double_qty = 12").await.unwrap_err();
    assert!(matches!(err, Error::Filter(_)), "{err}");
}

#[tokio::test]
async fn add_all_null_columns() {
    let db = memory_db().await;
    let t = table(&db).await;
    let added = Arc::new(Schema::new(vec![
        Field::new("note", DataType::Utf8, true),
        Field::new("emb", vector_type(DataType::Float32, 8), true),
        Field::new("extra", meta_type(), true),
    ]));
    t.add_columns(NewColumns::AllNull(added))
        .await
        .expect("add");
    let all = sorted(&t, None).await;
    for name in ["note", "emb", "extra"] {
        let column = all.column_by_name(name).unwrap();
        assert_eq!(column.null_count(), 290, "{name}");
    }
    assert_eq!(t.count_rows_where("note IS NULL").await.unwrap(), 290);

    // New rows must carry the new columns (with values).
    let mut columns: Vec<ArrayRef> = rows(300..302).columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec![Some("hi"), None])));
    columns.push(arrow_array::new_null_array(
        &vector_type(DataType::Float32, 8),
        2,
    ));
    columns.push(arrow_array::new_null_array(&meta_type(), 2));
    let batch = RecordBatch::try_new(t.schema(), columns).unwrap();
    t.append(batches_stream(vec![batch]), WriteParams::default())
        .await
        .expect("append");
    assert_eq!(t.count_rows_where("note = 'hi'").await.unwrap(), 1);
    let err = t
        .append(batches_stream(vec![rows(400..401)]), WriteParams::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("note"), "{err}");

    let version = t.version();
    let not_null = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
    let err = t
        .add_columns(NewColumns::AllNull(not_null))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must be nullable"), "{err}");
    let twice = Arc::new(Schema::new(vec![Field::new("note", DataType::Int32, true)]));
    let err = t.add_columns(NewColumns::AllNull(twice)).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = t
        .add_columns(NewColumns::Sql(vec![("n".into(), "NULL".into())]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("CAST"), "{err}");
    let err = t
        .add_columns(NewColumns::Sql(vec![("n".into(), "nope + 1".into())]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(t.version(), version, "failed calls commit nothing");
}

#[tokio::test]
async fn rename_top_level_and_nested() {
    let db = memory_db().await;
    let t = table(&db).await;
    let before = t.version();
    t.alter_columns(&[
        ColumnAlteration {
            path: "qty".into(),
            rename: Some("quantity".into()),
            ..Default::default()
        },
        ColumnAlteration {
            path: "meta.color".into(),
            rename: Some("colour".into()),
            ..Default::default()
        },
    ])
    .await
    .expect("rename");
    assert_eq!(t.version(), before + 1);
    assert_eq!(
        t.count_rows_where("quantity = 3").await.unwrap(),
        live(|i| qty_is(i, 3))
    );
    assert_eq!(
        t.count_rows_where("meta.colour = 'c1'").await.unwrap(),
        live(|i| i % 3 == 1)
    );
    assert!(matches!(
        t.count_rows_where("qty = 3").await,
        Err(Error::Filter(_))
    ));
    let all = sorted(&t, Some("id < 3")).await;
    let meta = all.column_by_name("meta").unwrap().as_struct();
    assert_eq!(meta.column_names(), ["colour", "size"]);
    assert_eq!(meta.column(0).as_string::<i32>().value(2), "c2");
    let taken = t
        .take(
            &[6],
            Some(&["meta".to_string(), "quantity".to_string()]),
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        taken.column(0).as_struct().column_names(),
        ["colour", "size"]
    );
    assert_eq!(taken.column(1).as_primitive::<Int32Type>().value(0), 6);

    // Appending uses the new names; the old version still has the old ones.
    let mut columns = rows(300..310).columns().to_vec();
    columns[3] =
        quiver_engine::schema::relabel(columns[3].clone(), t.schema().field(3).data_type())
            .expect("relabel");
    let renamed = RecordBatch::try_new(t.schema(), columns).expect("relabelled rows");
    t.append(batches_stream(vec![renamed]), WriteParams::default())
        .await
        .expect("append renamed");
    assert_eq!(
        t.count_rows_where("meta.colour = 'c1'").await.unwrap(),
        live(|i| i % 3 == 1) + 3
    );
    let old = db.open_table_at("t", before).await.unwrap();
    assert_eq!(
        old.count_rows_where("qty = 3").await.unwrap(),
        live(|i| qty_is(i, 3))
    );
    assert_eq!(
        sorted(&old, None)
            .await
            .column_by_name("meta")
            .unwrap()
            .as_struct()
            .column_names(),
        ["color", "size"]
    );

    let err = t
        .alter_columns(&[ColumnAlteration {
            path: "quantity".into(),
            rename: Some("id".into()),
            ..Default::default()
        }])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = t
        .alter_columns(&[ColumnAlteration {
            path: "meta.weight".into(),
            rename: Some("w".into()),
            ..Default::default()
        }])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("colour, size"), "{err}");
}

#[tokio::test]
async fn nullability_changes() {
    let db = memory_db().await;
    let t = table(&db).await;
    // `qty` holds NULLs (also in rows that are deleted): cannot become NOT NULL.
    let err = t
        .alter_columns(&[ColumnAlteration {
            path: "qty".into(),
            nullable: Some(false),
            ..Default::default()
        }])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("hold NULL"), "{err}");
    // `vec` holds none.
    t.alter_columns(&[ColumnAlteration {
        path: "vec".into(),
        nullable: Some(false),
        ..Default::default()
    }])
    .await
    .expect("not null");
    assert!(!t.schema().field_with_name("vec").unwrap().is_nullable());
    let mut columns = rows(300..301).columns().to_vec();
    columns[2] = arrow_array::new_null_array(&vector_type(DataType::Float32, 2), 1);
    let nulls = RecordBatch::try_new(schema(), columns).unwrap();
    let err = t
        .append(batches_stream(vec![nulls]), WriteParams::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not nullable"), "{err}");
    // `id` is NOT NULL and may become nullable.
    t.alter_columns(&[ColumnAlteration {
        path: "id".into(),
        nullable: Some(true),
        ..Default::default()
    }])
    .await
    .expect("nullable");
    assert!(t.schema().field_with_name("id").unwrap().is_nullable());
    assert_eq!(sorted(&t, None).await.num_rows(), 290);
}

#[tokio::test]
async fn widening_casts_rewrite_only_that_column() {
    let db = memory_db().await;
    let t = table(&db).await;
    let before = t.version();
    let sizes_before: Vec<u64> = t
        .manifest()
        .fragments()
        .iter()
        .map(|f| f.files[0].size_bytes)
        .collect();
    t.alter_columns(&[
        ColumnAlteration {
            path: "qty".into(),
            data_type: Some(DataType::Int64),
            rename: Some("qty64".into()),
            ..Default::default()
        },
        ColumnAlteration {
            path: "vec".into(),
            data_type: Some(vector_type(DataType::Float64, 2)),
            ..Default::default()
        },
    ])
    .await
    .expect("cast");
    let schema = t.schema();
    assert_eq!(schema.field(1).name(), "qty64");
    assert_eq!(schema.field(1).data_type(), &DataType::Int64);
    assert_eq!(
        schema.field(2).data_type(),
        &vector_type(DataType::Float64, 2)
    );
    for (fragment, size) in t.manifest().fragments().iter().zip(&sizes_before) {
        assert_eq!(fragment.files.len(), 2, "one new file with both columns");
        assert_eq!(fragment.files[0].size_bytes, *size);
    }
    let all = sorted(&t, None).await;
    let qty = all.column(1).as_primitive::<Int64Type>();
    let vec = all.column(2).as_fixed_size_list();
    for (row, id) in ids(&all).into_iter().enumerate() {
        assert_eq!(qty.is_null(row), id % 5 == 0);
        if id % 5 != 0 {
            assert_eq!(qty.value(row), id % 7);
        }
        let v = vec.value(row);
        assert_eq!(
            v.as_primitive::<Float64Type>().values(),
            &[id as f64, -(id as f64)]
        );
    }
    assert_eq!(
        t.count_rows_where("qty64 = 3").await.unwrap(),
        live(|i| qty_is(i, 3))
    );
    // The old version reads the old files with the old types.
    let old = db.open_table_at("t", before).await.unwrap();
    assert_eq!(old.schema().field(1).data_type(), &DataType::Int32);
    assert_eq!(
        sorted(&old, None).await.column(1).data_type(),
        &DataType::Int32
    );

    let version = t.version();
    for (path, to) in [
        ("qty64", DataType::Int32),
        ("id", DataType::Float32),
        ("meta", DataType::Utf8),
        ("meta.size", DataType::Int64),
    ] {
        let err = t
            .alter_columns(&[ColumnAlteration {
                path: path.into(),
                data_type: Some(to),
                ..Default::default()
            }])
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("widening") || err.to_string().contains("top-level"),
            "{path}: {err}"
        );
    }
    assert_eq!(t.version(), version);
}

#[tokio::test]
async fn drop_columns_is_metadata_only() {
    let db = memory_db().await;
    let t = table(&db).await;
    let before = t.version();
    let files = data_files(&t);
    t.drop_columns(&["qty".into(), "meta".into()])
        .await
        .expect("drop");
    assert_eq!(data_files(&t), files);
    let names: Vec<String> = t
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "vec"]);
    assert_eq!(sorted(&t, None).await.num_columns(), 2);
    assert!(t.count_rows_where("qty = 1").await.is_err());

    // Re-adding a dropped name makes a new column: it does not resurrect the old values.
    t.add_columns(NewColumns::AllNull(Arc::new(Schema::new(vec![
        Field::new("qty", DataType::Int32, true),
    ]))))
    .await
    .expect("re-add");
    assert_eq!(t.count_rows_where("qty IS NULL").await.unwrap(), 290);

    let old = db.open_table_at("t", before).await.unwrap();
    assert_eq!(
        old.count_rows_where("qty = 3").await.unwrap(),
        live(|i| qty_is(i, 3))
    );

    for names in [
        vec!["nope".to_string()],
        vec!["meta.color".into()],
        vec!["id".into(), "vec".into(), "qty".into()],
    ] {
        assert!(t.drop_columns(&names).await.is_err(), "{names:?}");
    }
    // Restoring the old version brings its schema back.
    t.restore(Some(before)).await.expect("restore");
    assert_eq!(
        t.count_rows_where("meta.color = 'c0'").await.unwrap(),
        live(|i| i % 3 == 0)
    );
}

#[tokio::test]
async fn evolved_schema_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap().to_string();
    {
        let db = Database::connect(&uri, ConnectOptions::default())
            .await
            .unwrap();
        let t = table(&db).await;
        t.add_columns(NewColumns::Sql(vec![("q2".into(), "qty + 1".into())]))
            .await
            .unwrap();
        t.alter_columns(&[ColumnAlteration {
            path: "q2".into(),
            rename: Some("qty_plus".into()),
            data_type: Some(DataType::Float64),
            ..Default::default()
        }])
        .await
        .unwrap();
        t.drop_columns(&["vec".into()]).await.unwrap();
    }
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .unwrap();
    let t = db.open_table("t").await.unwrap();
    let names: Vec<String> = t
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "qty", "meta", "qty_plus"]);
    assert_eq!(
        t.count_rows_where("qty_plus = 4.0").await.unwrap(),
        live(|i| qty_is(i, 3))
    );
    let versions = t.list_versions().await.unwrap();
    let ops: Vec<&str> = versions.iter().map(|v| v.operation.as_str()).collect();
    assert_eq!(
        ops,
        [
            "create",
            "delete",
            "add_columns",
            "alter_columns",
            "drop_columns"
        ]
    );
}

#[tokio::test]
async fn concurrent_appends_and_added_columns_leave_no_gaps() {
    for round in 0..4 {
        let db = memory_db().await;
        let t = table(&db).await;
        let adder = db.open_table("t").await.unwrap();
        let appender = db.open_table("t").await.unwrap();
        let add = adder.add_columns(NewColumns::Sql(vec![(
            "q2".into(),
            "coalesce(qty, 0) + 1".into(),
        )]));
        let append = appender.append(
            batches_stream(vec![rows(1000 + round * 10..1010 + round * 10)]),
            WriteParams::default(),
        );
        let (added, appended) = tokio::join!(add, append);
        added.expect("add_columns re-runs on a concurrent append");
        match appended {
            Ok(_) | Err(Error::CommitConflict(_)) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
        t.checkout_latest().await.unwrap();
        let all = sorted(&t, None).await;
        let q2 = all.column_by_name("q2").expect("q2 present");
        assert_eq!(
            q2.null_count(),
            0,
            "every row, appended ones included, has q2"
        );
        let expected = 290 + if appended_ok(&t).await { 10 } else { 0 };
        assert_eq!(all.num_rows(), expected);
    }
}

async fn appended_ok(t: &Table) -> bool {
    t.count_rows_where("id >= 1000").await.unwrap() > 0
}

#[tokio::test]
async fn deletes_rebase_over_schema_changes() {
    let db = memory_db().await;
    let t = table(&db).await;
    let other = db.open_table("t").await.unwrap();
    t.alter_columns(&[ColumnAlteration {
        path: "qty".into(),
        rename: Some("q".into()),
        ..Default::default()
    }])
    .await
    .unwrap();
    // `other` still reads the version before the rename: its delete picks rows by the old
    // name and rebases onto the renamed schema (deletion vectors address stored rows).
    let deleted = other.delete("qty = 3").await.unwrap();
    assert_eq!(deleted.num_deleted_rows, live(|i| qty_is(i, 3)));
    assert_eq!(other.count_rows_where("q = 3").await.unwrap(), 0);
    t.checkout_latest().await.unwrap();
    assert_eq!(t.count_rows_where("q = 3").await.unwrap(), 0);
    assert_eq!(
        t.count_rows_where("q IS NULL").await.unwrap(),
        live(|i| i % 5 == 0)
    );
}
