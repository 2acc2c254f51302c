//! Damaged files: flipping any byte of, or truncating, a data file, a manifest or a deletion
//! file yields a typed error (or, for bytes no reader uses, the exact original rows) — never a
//! panic, never wrong rows.

mod common;

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use quiver_engine::storage::Storage;
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, Error, ScanOptions, WriteParams,
};

fn is_damage_error(e: &Error) -> bool {
    matches!(e, Error::Corrupt { .. } | Error::IncompatibleVersion { .. })
}

/// A small table in a named memory store: 40 rows, a few column types, one delete.
async fn fixture(name: &str) -> (Storage, Vec<RecordBatch>) {
    let uri = format!("memory://{name}");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("vector", common::vector_type(DataType::Float32, 3), true),
        Field::new("text", DataType::Utf8, true),
        Field::new("tags", DataType::List(common::item(DataType::Utf8)), true),
    ]));
    let batch = common::random_batch(&schema, 40, 3, 0.1);
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
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
    table.delete_rows(&[3, 7]).await.expect("delete");
    let expected = table.scan_all(ScanOptions::default()).await.expect("scan");
    (Storage::from_uri(&uri).expect("storage"), expected)
}

async fn find(storage: &Storage, folder: &str) -> object_store::path::Path {
    storage
        .list(&storage.path(&format!("t.quiver/{folder}")))
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.location)
        .min() // manifests sort newest first; the other folders hold one file
        .expect("a file")
}

/// Opens the table fresh (no caches) and scans it. When opening skipped the newest version
/// as damaged, the result is the typed error of reading that version explicitly.
async fn read_back(uri: &str) -> Result<Vec<RecordBatch>, Error> {
    let db = Database::connect(uri, ConnectOptions::default()).await?;
    let table = db.open_table("t").await?;
    if let Some(skipped) = table.skipped_versions().last() {
        assert!(table.version() < skipped.version);
        let err = match db.open_table_at("t", skipped.version).await {
            Ok(t) => t
                .scan_all(ScanOptions::default())
                .await
                .expect_err("damaged"),
            Err(e) => e,
        };
        return Err(err);
    }
    table.scan_all(ScanOptions::default()).await
}

/// Flips every byte of `path` in turn (and truncates it at several lengths), checking what a
/// fresh reader sees each time.
async fn damage_every_byte(name: &str, folder: &str, unused_bytes_allowed: bool) {
    let (storage, expected) = fixture(name).await;
    let uri = format!("memory://{name}");
    let path = find(&storage, folder).await;
    let original = storage.read_all(&path).await.expect("read");
    let mut undetected = 0;
    for i in 0..original.len() {
        let mut bad = original.to_vec();
        bad[i] ^= 0x5A;
        storage.put(&path, Bytes::from(bad)).await.expect("put");
        match read_back(&uri).await {
            Err(e) => assert!(
                is_damage_error(&e),
                "byte {i} of {folder}: untyped error {e}"
            ),
            Ok(batches) => {
                assert!(
                    unused_bytes_allowed,
                    "byte {i} of {folder}: damage went unnoticed"
                );
                assert_eq!(batches, expected, "byte {i} of {folder}: wrong rows");
                undetected += 1;
            }
        }
    }
    for len in [0, 1, original.len() / 2, original.len() - 1] {
        storage
            .put(&path, original.slice(..len))
            .await
            .expect("put");
        let err = read_back(&uri).await.expect_err("truncated file must fail");
        assert!(
            is_damage_error(&err),
            "truncated {folder} to {len}: untyped error {err}"
        );
    }
    storage.put(&path, original).await.expect("restore");
    assert_eq!(read_back(&uri).await.expect("intact"), expected);
    // Header and alignment padding are the only bytes no reader depends on.
    assert!(
        undetected < 200,
        "{undetected} undetected flips in {folder}"
    );
}

#[tokio::test]
async fn damaged_data_file() {
    damage_every_byte("corrupt-data", "data", true).await;
}

#[tokio::test]
async fn damaged_manifest() {
    damage_every_byte("corrupt-manifest", "_versions", false).await;
}

#[tokio::test]
async fn damaged_deletion_file() {
    damage_every_byte("corrupt-deletion", "_deletions", false).await;
}

#[tokio::test]
async fn missing_data_file_is_a_clear_error() {
    let (storage, _) = fixture("missing-data").await;
    let path = find(&storage, "data").await;
    storage.delete(&path).await.expect("delete");
    let err = read_back("memory://missing-data")
        .await
        .expect_err("must fail");
    // Every version needs the file: none is intact, and the error names it.
    assert!(
        matches!(&err, Error::Corrupt { reason, .. } if reason.contains("'data/")),
        "{err}"
    );
}

/// Row ids and distances of an exact search over every row of table `t` in the local folder
/// `uri`, through a fresh connection (no caches, no maps).
async fn exact_all(uri: &str, memory_map: bool) -> Result<Vec<(u64, f32)>, Error> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, UInt64Type};
    let options = ConnectOptions {
        storage: Some(quiver_engine::storage::StorageOptions {
            memory_map,
            ..Default::default()
        }),
        ..Default::default()
    };
    let db = Database::connect(uri, options).await?;
    let table = db.open_table("t").await?;
    let search = quiver_engine::query::VectorSearch {
        query: vec![0.25; 4],
        k: 100,
        columns: Some(Vec::new()),
        with_row_id: true,
        ..Default::default()
    };
    let found = quiver_engine::query::search(&table, &search).await?;
    let ids = found
        .column_by_name("_rowid")
        .expect("row ids")
        .as_primitive::<UInt64Type>();
    let distances = found
        .column_by_name("_distance")
        .expect("distances")
        .as_primitive::<Float32Type>();
    Ok(ids
        .values()
        .iter()
        .copied()
        .zip(distances.values().iter().copied())
        .collect())
}

/// Exact search on a local store streams vector pages through a small buffer and checks each
/// page's checksum once it has passed: flipping any byte of the data file (or truncating it)
/// gives a typed error or the original results, never wrong ones. The same through memory
/// maps (each fresh connection maps the file as it is then).
#[tokio::test]
async fn damaged_vectors_under_streamed_exact_search() {
    for memory_map in [false, true] {
        damaged_vectors(memory_map).await;
    }
}

async fn damaged_vectors(memory_map: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().to_str().expect("utf-8 path").to_string();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "vector",
        common::vector_type(DataType::Float32, 4),
        false,
    )]));
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(9);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![common::random_array(
            schema.field(0).data_type(),
            60,
            &mut rng,
            0.0,
        )],
    )
    .expect("batch");
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
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
    table.delete_rows(&[5]).await.expect("delete");
    let expected = exact_all(&uri, memory_map).await.expect("intact search");
    assert_eq!(expected.len(), 59);
    let data = dir.path().join("t.quiver/data");
    let file = std::fs::read_dir(&data)
        .expect("data folder")
        .map(|e| e.expect("entry").path())
        .next()
        .expect("a data file");
    let original = std::fs::read(&file).expect("read");
    let mut undetected = 0;
    for i in 0..original.len() {
        let mut bad = original.clone();
        bad[i] ^= 0x5A;
        std::fs::write(&file, &bad).expect("write");
        match exact_all(&uri, memory_map).await {
            Err(e) => assert!(is_damage_error(&e), "byte {i}: untyped error {e}"),
            Ok(found) => {
                assert_eq!(found, expected, "byte {i}: wrong results");
                undetected += 1;
            }
        }
    }
    for len in [0, original.len() / 2, original.len() - 1] {
        std::fs::write(&file, &original[..len]).expect("write");
        let err = exact_all(&uri, memory_map)
            .await
            .expect_err("truncated file must fail");
        assert!(
            is_damage_error(&err),
            "truncated to {len}: untyped error {err}"
        );
    }
    std::fs::write(&file, &original).expect("restore");
    assert_eq!(exact_all(&uri, memory_map).await.expect("intact"), expected);
    assert!(undetected < 200, "{undetected} undetected flips");
}
