//! Update and merge-insert: before/after checks (NULLs, every column type), atomicity, and
//! concurrent writers (no lost updates, no duplicate keys).

mod common;

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::concat::concat_batches;
use quiver_engine::table::{MergeInsert, UpdateValue};
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, Error, ScanOptions, Table, WriteParams,
};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("price", DataType::Float64, true),
        Field::new("name", DataType::Utf8, true),
    ]))
}

fn rows(ids: std::ops::Range<i64>, price: f64) -> RecordBatch {
    let n = (ids.end - ids.start) as usize;
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(Float64Array::from_iter_values(
                ids.clone().map(|i| price + i as f64),
            )),
            Arc::new(StringArray::from_iter(
                ids.map(|i| (i % 4 != 0).then(|| format!("n{i}"))),
            )),
        ],
    )
    .inspect(|b| assert_eq!(b.num_rows(), n))
    .expect("batch")
}

async fn db() -> Database {
    Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect")
}

async fn table(db: &Database, name: &str, batch: RecordBatch) -> Table {
    db.create_table(
        name,
        batch.schema(),
        batches_stream(vec![batch]),
        CreateMode::Create,
        WriteParams::default(),
    )
    .await
    .expect("create")
}

/// (id, price, name) of every row, sorted by id.
async fn contents(t: &Table) -> Vec<(i64, Option<f64>, Option<String>)> {
    let batches = t.scan_all(ScanOptions::default()).await.expect("scan");
    let mut out = Vec::new();
    for b in &batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let prices = b.column(1).as_primitive::<Float64Type>();
        let names = b.column(2).as_string::<i32>();
        for i in 0..b.num_rows() {
            out.push((
                ids.value(i),
                prices.is_valid(i).then(|| prices.value(i)),
                names.is_valid(i).then(|| names.value(i).to_string()),
            ));
        }
    }
    out.sort_by_key(|r| r.0);
    out
}

fn sql(column: &str, text: &str) -> (String, UpdateValue) {
    (column.to_string(), UpdateValue::Sql(text.to_string()))
}

#[tokio::test]
async fn update_with_expressions_literals_and_nulls() {
    let db = db().await;
    let t = table(&db, "t", rows(0..10, 100.0)).await;
    let before = contents(&t).await;
    let name: ArrayRef = Arc::new(StringArray::from(vec!["cheap"]));
    let r = t
        .update(
            Some("id < 3 OR name IS NULL"),
            vec![
                sql("price", "price * 2 + id"),
                ("name".into(), UpdateValue::Literal(name)),
            ],
        )
        .await
        .expect("update");
    assert_eq!((r.rows_updated, r.version), (5, 2)); // ids 0, 1, 2, 4, 8
    let after = contents(&t).await;
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old.0, new.0);
        if [0, 1, 2, 4, 8].contains(&old.0) {
            assert_eq!(new.1, Some(old.1.unwrap() * 2.0 + old.0 as f64));
            assert_eq!(new.2.as_deref(), Some("cheap"));
        } else {
            assert_eq!(old, new);
        }
    }
    // Set to NULL, and nothing matches: no version.
    let r = t
        .update(Some("id = 9"), vec![sql("price", "NULL")])
        .await
        .expect("null");
    assert_eq!(r.rows_updated, 1);
    assert_eq!(contents(&t).await[9].1, None);
    let r = t
        .update(Some("id > 100"), vec![sql("price", "1")])
        .await
        .expect("none");
    assert_eq!((r.rows_updated, r.version), (0, 3));
    // The old version still reads the old values.
    t.checkout(1).await.expect("checkout");
    assert_eq!(contents(&t).await, before);
}

#[tokio::test]
async fn update_errors_change_nothing() {
    let db = db().await;
    let t = table(&db, "t", rows(0..10, 1.0)).await;
    let before = contents(&t).await;
    let cases = [
        t.update(None, vec![sql("id", "NULL")]).await, // not nullable
        t.update(None, vec![sql("nope", "1")]).await,
        t.update(None, vec![sql("price", "name")]).await, // string into float... castable? checked below
        t.update(Some("nope = 1"), vec![sql("price", "1")]).await,
        t.update(None, vec![]).await,
    ];
    assert!(
        matches!(cases[0], Err(Error::SchemaMismatch(_))),
        "{:?}",
        cases[0]
    );
    assert!(
        matches!(cases[1], Err(Error::InvalidArgument(_))),
        "{:?}",
        cases[1]
    );
    // 'n1' does not parse as a float: the cast fails while writing, before any commit.
    assert!(cases[2].is_err(), "{:?}", cases[2]);
    assert!(matches!(cases[3], Err(Error::Filter(_))), "{:?}", cases[3]);
    assert!(matches!(cases[4], Err(Error::InvalidArgument(_))));
    assert_eq!(t.version(), 1);
    assert_eq!(contents(&t).await, before);
}

#[tokio::test]
async fn identity_update_of_every_type_keeps_every_value() {
    let db = db().await;
    let schema = common::all_types_schema();
    let batch = common::random_batch(&schema, 300, 7, 0.2);
    let t = db
        .create_table(
            "all",
            schema.clone(),
            batches_stream(vec![batch.clone()]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
    let values = schema
        .fields()
        .iter()
        .map(|f| sql(f.name(), &format!("\"{}\"", f.name())))
        .collect();
    let r = t.update(None, values).await.expect("update");
    assert_eq!(r.rows_updated, 300);
    let after = t.scan_all(ScanOptions::default()).await.expect("scan");
    let after = concat_batches(&schema, &after).expect("concat");
    assert_eq!(after, batch);
    assert_eq!(t.stats().num_fragments, 1);
}

#[tokio::test]
async fn merge_insert_upserts_and_deletes_by_source() {
    let db = db().await;
    let t = table(&db, "t", rows(0..10, 0.0)).await;
    let spec = MergeInsert {
        on: vec!["id".into()],
        when_matched_update_all: Some(None),
        when_not_matched_insert_all: true,
        ..Default::default()
    };
    let r = t
        .merge_insert(&spec, &schema(), vec![rows(5..15, 1000.0)])
        .await
        .expect("upsert");
    assert_eq!(
        (r.num_updated_rows, r.num_inserted_rows, r.num_deleted_rows),
        (5, 5, 0)
    );
    let c = contents(&t).await;
    assert_eq!(c.len(), 15);
    assert_eq!(c[4].1, Some(4.0));
    assert_eq!(c[5].1, Some(1005.0));
    assert_eq!(c[14].1, Some(1014.0));

    // Conditional update: only where the source is cheaper.
    let cheaper = MergeInsert {
        on: vec!["id".into()],
        when_matched_update_all: Some(Some("source.price < target.price".into())),
        ..Default::default()
    };
    let r = t
        .merge_insert(&cheaper, &schema(), vec![rows(0..15, 2.5)])
        .await
        .expect("conditional");
    assert_eq!(r.num_updated_rows, 10); // ids 5..15 were 1000+
    assert_eq!(contents(&t).await[7].1, Some(9.5));

    // Delete target rows the source does not have, among those matching a filter.
    let prune = MergeInsert {
        on: vec!["id".into()],
        when_not_matched_by_source_delete: Some(Some("id >= 10".into())),
        ..Default::default()
    };
    let r = t
        .merge_insert(&prune, &schema(), vec![rows(0..12, 0.0)])
        .await
        .expect("by source");
    assert_eq!(r.num_deleted_rows, 3);
    assert_eq!(t.count_rows(), 12);

    // Duplicate source keys are an error and change nothing.
    let version = t.version();
    let dup = concat_batches(&schema(), &[rows(0..2, 0.0), rows(1..2, 0.0)]).expect("dup");
    let err = t.merge_insert(&spec, &dup.schema(), vec![dup]).await;
    assert!(
        matches!(err, Err(Error::InvalidArgument(ref m)) if m.contains("same key")),
        "{err:?}"
    );
    assert_eq!(t.version(), version);

    // A source of other columns is refused even when it has no rows: read as "no keys", it
    // would let whenNotMatchedBySourceDelete delete every row.
    let other = Schema::new(vec![Field::new("a", DataType::Int32, true)]);
    for spec in [&prune, &spec] {
        let err = t.merge_insert(spec, &other, Vec::new()).await;
        assert!(matches!(err, Err(Error::SchemaMismatch(_))), "{err:?}");
    }
    assert_eq!((t.version(), t.count_rows()), (version, 12));
}

#[tokio::test]
async fn concurrent_merge_inserts_of_the_same_keys_never_duplicate_rows() {
    let db = db().await;
    table(&db, "t", rows(0..100, 0.0)).await;
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let t = db.open_table("t").await.expect("open");
            let spec = MergeInsert {
                on: vec!["id".into()],
                when_matched_update_all: Some(None),
                when_not_matched_insert_all: true,
                ..Default::default()
            };
            // Every writer upserts ids 90..110: 10 existing, 10 new.
            t.merge_insert(
                &spec,
                &schema(),
                vec![rows(90..110, writer as f64 * 1000.0)],
            )
            .await
        }));
    }
    for task in tasks {
        task.await.expect("join").expect("merge");
    }
    let t = db.open_table("t").await.expect("open");
    let c = contents(&t).await;
    let ids: Vec<i64> = c.iter().map(|r| r.0).collect();
    assert_eq!(ids, (0..110).collect::<Vec<_>>(), "no duplicates, no loss");
}

#[tokio::test]
async fn concurrent_updates_and_deletes_lose_nothing() {
    let db = db().await;
    table(&db, "t", rows(0..200, 0.0)).await;
    let mut tasks = Vec::new();
    for writer in 0..6i64 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let t = db.open_table("t").await.expect("open");
            if writer % 2 == 0 {
                // Increments every row: lost updates would show as a smaller total.
                t.update(None, vec![sql("price", "price + 1")])
                    .await
                    .map(|_| ())
            } else {
                t.delete(&format!("id = {}", writer)).await.map(|_| ())
            }
        }));
    }
    for task in tasks {
        task.await.expect("join").expect("mutation");
    }
    let t = db.open_table("t").await.expect("open");
    let c = contents(&t).await;
    assert_eq!(c.len(), 197);
    for (id, price, _) in c {
        assert_eq!(
            price,
            Some(id as f64 + 3.0),
            "row {id} saw every increment once"
        );
    }
}

/// One side of a concurrent pair.
#[derive(Clone, Copy, Debug)]
enum Mutation {
    /// price + 1 on every row.
    IncrementAll,
    /// Deletes ids < 50 and ids ≥ 195.
    DeleteEnds,
    /// Upserts ids 190..210 with price 1000 + id.
    Upsert,
}

impl Mutation {
    async fn run(self, t: &Table) {
        let result = match self {
            Mutation::IncrementAll => t
                .update(None, vec![sql("price", "price + 1")])
                .await
                .map(|_| ()),
            Mutation::DeleteEnds => t.delete("id < 50 OR id >= 195").await.map(|_| ()),
            Mutation::Upsert => {
                let spec = MergeInsert {
                    on: vec!["id".into()],
                    when_matched_update_all: Some(None),
                    when_not_matched_insert_all: true,
                    ..Default::default()
                };
                t.merge_insert(&spec, &schema(), vec![rows(190..210, 1000.0)])
                    .await
                    .map(|_| ())
            }
        };
        result.unwrap_or_else(|e| panic!("{self:?} failed: {e}"));
    }

    /// Applies the mutation to a model of the table (id → price).
    fn apply(self, model: &mut std::collections::BTreeMap<i64, f64>) {
        match self {
            Mutation::IncrementAll => model.values_mut().for_each(|p| *p += 1.0),
            Mutation::DeleteEnds => model.retain(|&id, _| (50..195).contains(&id)),
            Mutation::Upsert => {
                for id in 190..210 {
                    model.insert(id, 1000.0 + id as f64);
                }
            }
        }
    }
}

/// Each pair of different mutations, run at once from two handles, ends in the state of one
/// of the two serial orders: nothing lost, nothing doubled.
#[tokio::test]
async fn every_mutation_pair_serialises() {
    use Mutation::*;
    for (a, b) in [
        (IncrementAll, Upsert),
        (DeleteEnds, Upsert),
        (IncrementAll, DeleteEnds),
    ] {
        for round in 0..3 {
            let db = db().await;
            table(&db, "t", rows(0..200, 0.0)).await;
            let (ta, tb) = (
                db.open_table("t").await.expect("open"),
                db.open_table("t").await.expect("open"),
            );
            tokio::join!(a.run(&ta), b.run(&tb));
            let got: std::collections::BTreeMap<i64, f64> =
                contents(&db.open_table("t").await.expect("open"))
                    .await
                    .into_iter()
                    .map(|(id, price, _)| (id, price.expect("price")))
                    .collect();
            let initial: std::collections::BTreeMap<i64, f64> =
                (0..200).map(|i| (i, i as f64)).collect();
            let serial = |first: Mutation, second: Mutation| {
                let mut m = initial.clone();
                first.apply(&mut m);
                second.apply(&mut m);
                m
            };
            assert!(
                got == serial(a, b) || got == serial(b, a),
                "{a:?} ∥ {b:?} (round {round}) matches neither serial order"
            );
        }
    }
}
