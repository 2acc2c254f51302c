//! `npm run demo`: the main job on an embedded local database. Creates a table of documents
//! with 384-d embeddings, appends, scans with a projection, takes rows by address, deletes,
//! and travels back in time, printing what happens and how long it took.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder, StringBuilder};
use arrow_array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use futures::TryStreamExt;
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, ScanOptions, WriteParams,
};
use rand::{Rng, SeedableRng};

const DIM: i32 = 384;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "vector",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), DIM),
            false,
        ),
        Field::new("text", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]))
}

fn batch(start: i64, rows: usize, rng: &mut impl Rng) -> RecordBatch {
    let mut vectors =
        FixedSizeListBuilder::new(Float32Builder::with_capacity(rows * DIM as usize), DIM)
            .with_field(Arc::new(Field::new("item", DataType::Float32, true)));
    let mut tags = ListBuilder::new(StringBuilder::new());
    for i in 0..rows {
        for _ in 0..DIM {
            vectors.values().append_value(rng.random::<f32>());
        }
        vectors.append(true);
        tags.values().append_value(["news", "docs", "blog"][i % 3]);
        tags.append(true);
    }
    let ids = Int64Array::from_iter_values(start..start + rows as i64);
    let texts = StringArray::from_iter_values(
        (0..rows).map(|i| format!("document number {}", start + i as i64)),
    );
    let prices = Float64Array::from_iter_values(
        (0..rows).map(|i| ((start as usize + i) % 1000) as f64 / 10.0),
    );
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(ids),
            Arc::new(vectors.finish()),
            Arc::new(texts),
            Arc::new(prices),
            Arc::new(tags.finish()),
        ],
    )
    .expect("demo batch matches its schema")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "demo-data/quiver-demo".to_string());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let db = Database::connect(&uri, ConnectOptions::default()).await?;
    println!("Quiver demo — database at {uri}");

    let rows = 50_000;
    let batches: Vec<RecordBatch> = (0..rows / 5_000)
        .map(|b| batch(b as i64 * 5_000, 5_000, &mut rng))
        .collect();
    let t = Instant::now();
    let table = db
        .create_table(
            "docs",
            schema(),
            batches_stream(batches),
            CreateMode::Overwrite,
            WriteParams::default(),
        )
        .await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "created 'docs': {rows} rows × {DIM}-d in {:.0} ms ({:.0} rows/s), version {}",
        secs * 1000.0,
        rows as f64 / secs,
        table.version()
    );

    let v = table
        .append(
            batches_stream(vec![batch(rows as i64, 1_000, &mut rng)]),
            WriteParams::default(),
        )
        .await?;
    println!(
        "appended 1,000 rows → version {v}, {} rows",
        table.count_rows()
    );

    let t = Instant::now();
    let (_, stream) = table.scan(ScanOptions {
        columns: Some(vec!["id".into(), "price".into()]),
        ..Default::default()
    })?;
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    let scanned: usize = batches.iter().map(|b| b.num_rows()).sum();
    println!(
        "projected scan of id, price: {scanned} rows in {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );

    let addresses: Vec<u64> = (0..1_000u64)
        .map(|_| rng.random_range(0..rows as u64))
        .collect();
    let t = Instant::now();
    let taken = table.take(&addresses, None, true).await?;
    println!(
        "took 1,000 random rows (all columns) in {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
    let texts = taken
        .column(2)
        .as_any()
        .downcast_ref::<StringArray>()
        .map(|a| a.value(0).to_string());
    println!(
        "  first taken row: address {} → {:?}",
        addresses[0],
        texts.unwrap_or_default()
    );

    let deleted = table.delete_rows(&(0..10u64).collect::<Vec<_>>()).await?;
    println!(
        "deleted {} rows → version {}, {} rows",
        deleted.num_deleted_rows,
        deleted.version,
        table.count_rows()
    );

    println!("history:");
    for info in table.list_versions().await? {
        println!("  v{} {}", info.version, info.operation);
    }
    table.checkout(1).await?;
    println!("checked out v1: {} rows (read-only)", table.count_rows());
    let restored = table.restore(None).await?;
    println!(
        "restored v1 as version {restored}: {} rows",
        table.count_rows()
    );
    println!("tables: {:?}", db.table_names().await?);
    Ok(())
}
