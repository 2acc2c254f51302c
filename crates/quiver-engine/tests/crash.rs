//! Crash safety: a writer process that dies after writing data files but before committing,
//! one that dies while writing its manifest, and one killed at random moments of a write
//! loop, all leave the table readable at its last committed version with no partial rows, and
//! the next write succeeds.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::InstrumentedStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use quiver_engine::storage::{Storage, StorageOptions};
use quiver_engine::table::{CleanupOptions, CompactionOptions, UpdateValue};
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, ScanOptions, Table, WriteParams,
};

const DIM: i32 = 16;
const ROWS_PER_APPEND: usize = 100;

/// Run as a child process by the tests below; `QUIVER_CRASH_MODE` picks how it dies.
#[tokio::test]
#[ignore = "helper: run as a child process by the crash tests"]
async fn crashing_writer() {
    let dir = std::env::var("QUIVER_CRASH_DB").expect("QUIVER_CRASH_DB");
    let mode = std::env::var("QUIVER_CRASH_MODE").expect("QUIVER_CRASH_MODE");
    let torn_manifest = mode == "during_manifest";
    // A store whose manifest write is torn: half the bytes reach the staging file the local
    // store publishes from, then the process dies before the publish.
    let store = InstrumentedStore::new(Arc::new(LocalFileSystem::new())).with_put_hook(Box::new(
        move |path, payload| {
            if torn_manifest && path.as_ref().ends_with(".manifest") {
                let bytes: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
                let staging = format!("/{path}#1");
                let _ = std::fs::write(staging, &bytes[..bytes.len() / 2]);
                std::process::abort();
            }
        },
    ));
    let root = Path::from_absolute_path(&dir).expect("path");
    let storage = Storage::from_store(Arc::new(store), root, StorageOptions::default(), &dir);
    let db = Database::from_storage(storage, ConnectOptions::default());
    let table = db.open_table("t").await.expect("open");
    let mut params = WriteParams {
        page_size: 4096,
        ..Default::default()
    };
    if mode == "before_commit" {
        params.before_commit = Some(Arc::new(|| std::process::abort()));
    }
    let mut next: i64 = std::env::var("QUIVER_CRASH_FIRST_ID")
        .expect("first id")
        .parse()
        .expect("int");
    if std::env::var("QUIVER_CRASH_OP").as_deref() == Ok("update") {
        // Every update rewrites every row's text to one generation's value.
        loop {
            let value = UpdateValue::Sql(format!("'gen {next}'"));
            table
                .update(None, vec![("text".to_string(), value)])
                .await
                .expect("update");
            next += 1;
        }
    }
    let maintain = std::env::var("QUIVER_CRASH_OP").as_deref() == Ok("maintain");
    for round in 0u64.. {
        table
            .append(
                batches_stream(vec![common::simple_batch(next, ROWS_PER_APPEND, DIM)]),
                params.clone(),
            )
            .await
            .expect("append");
        next += ROWS_PER_APPEND as i64;
        if maintain && round % 2 == 1 {
            table
                .compact_files(CompactionOptions {
                    num_threads: Some(2),
                    ..Default::default()
                })
                .await
                .expect("compact");
            table
                .cleanup_old_versions(CleanupOptions {
                    before: Some(std::time::SystemTime::now()),
                    ..Default::default()
                })
                .await
                .expect("cleanup");
        }
    }
}

fn spawn_writer(dir: &str, mode: &str, first_id: i64) -> std::process::Child {
    spawn(dir, mode, first_id, "append")
}

fn spawn_maintainer(dir: &str, first_id: i64) -> std::process::Child {
    spawn(dir, "loop", first_id, "maintain")
}

fn spawn_updater(dir: &str, mode: &str, first_generation: i64) -> std::process::Child {
    spawn(dir, mode, first_generation, "update")
}

fn spawn(dir: &str, mode: &str, first_id: i64, op: &str) -> std::process::Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "crashing_writer", "--ignored", "--nocapture"])
        .env("QUIVER_CRASH_DB", dir)
        .env("QUIVER_CRASH_MODE", mode)
        .env("QUIVER_CRASH_OP", op)
        .env("QUIVER_CRASH_FIRST_ID", first_id.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer")
}

async fn setup() -> (tempfile::TempDir, String, Table) {
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().to_str().expect("utf8").to_string();
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let table = db
        .create_table(
            "t",
            common::simple_schema(DIM),
            batches_stream(vec![common::simple_batch(0, 50, DIM)]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
    (dir, uri, table)
}

/// The table opens; its rows are whole appends only (50 initial rows, appends of 100 by the
/// writer, `checks` earlier appends of 10 by this check), each present once; and it accepts a
/// write.
async fn check_consistent_and_writable(uri: &str, checks: i64) -> u64 {
    let db = Database::connect(uri, ConnectOptions::default())
        .await
        .expect("connect");
    let table = db.open_table("t").await.expect("table opens after a crash");
    let version = table.version();
    let ids = common::ids_of(&table.scan_all(ScanOptions::default()).await.expect("scan"));
    assert_eq!(ids.len() as u64, table.count_rows());
    let unique: std::collections::HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no row appears twice");
    let writer_rows = ids.len() as i64 - 50 - 10 * checks;
    assert!(
        writer_rows >= 0 && writer_rows % ROWS_PER_APPEND as i64 == 0,
        "version {version} holds a partial append ({} rows)",
        ids.len()
    );
    let next = table
        .append(
            batches_stream(vec![common::simple_batch(-1000 * (checks + 1), 10, DIM)]),
            WriteParams::default(),
        )
        .await
        .expect("the next write succeeds");
    assert_eq!(next, version + 1);
    version
}

#[tokio::test]
async fn killed_after_data_files_before_commit() {
    let (dir, uri, _table) = setup().await;
    let status = spawn_writer(&uri, "before_commit", 1_000_000)
        .wait()
        .expect("wait");
    assert!(!status.success(), "the writer died");
    // It did write a data file...
    let data_files = std::fs::read_dir(dir.path().join("t.quiver/data"))
        .expect("data dir")
        .count();
    assert_eq!(
        data_files, 2,
        "the dead writer left its uncommitted data file"
    );
    // ...which no version references.
    assert_eq!(check_consistent_and_writable(&uri, 0).await, 1);
}

#[tokio::test]
async fn killed_while_writing_the_manifest() {
    let (dir, uri, _table) = setup().await;
    let status = spawn_writer(&uri, "during_manifest", 1_000_000)
        .wait()
        .expect("wait");
    assert!(!status.success(), "the writer died");
    let torn = std::fs::read_dir(dir.path().join("t.quiver/_versions"))
        .expect("versions dir")
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().contains('#'));
    assert!(torn, "the torn manifest write left its staging file");
    assert_eq!(check_consistent_and_writable(&uri, 0).await, 1);
}

#[tokio::test]
async fn killed_at_random_moments() {
    let (_dir, uri, _table) = setup().await;
    let mut last_version = 1;
    for (checks, delay_ms) in [30u64, 55, 80, 110, 150].into_iter().enumerate() {
        let mut child = spawn_writer(&uri, "loop", 1_000_000 * (checks as i64 + 1));
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().expect("kill");
        let _ = child.wait();
        let version = check_consistent_and_writable(&uri, checks as i64).await;
        assert!(version >= last_version);
        last_version = version + 1;
    }
}

/// Appends, compactions and cleanups killed at random moments: the table opens at whole
/// appends, and every version cleanup kept still reads every row (no file a kept version
/// references was deleted).
#[tokio::test]
async fn compaction_and_cleanup_killed_at_random_moments() {
    let (_dir, uri, _table) = setup().await;
    for (checks, delay_ms) in [40u64, 70, 95, 130, 170, 220, 260, 300]
        .into_iter()
        .enumerate()
    {
        let mut child = spawn_maintainer(&uri, 1_000_000 * (checks as i64 + 1));
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().expect("kill");
        let _ = child.wait();
        check_consistent_and_writable(&uri, checks as i64).await;
        let db = Database::connect(&uri, ConnectOptions::default())
            .await
            .expect("connect");
        let table = db.open_table("t").await.expect("open");
        for v in table.list_versions().await.expect("versions") {
            let old = db
                .open_table_at("t", v.version)
                .await
                .expect("kept version");
            let rows = old
                .scan_all(ScanOptions::default())
                .await
                .unwrap_or_else(|e| panic!("version {} lost a file: {e}", v.version));
            let n: usize = rows.iter().map(|b| b.num_rows()).sum();
            assert_eq!(n as u64, old.count_rows());
        }
    }
    // The killed processes did compact and clean up between their appends.
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let table = db.open_table("t").await.expect("open");
    let appends = (table.count_rows() - 50 - 80) / ROWS_PER_APPEND as u64 + 8;
    assert!(
        table.stats().num_fragments < appends,
        "{} fragments for {appends} appends",
        table.stats().num_fragments
    );
    assert!(table.list_versions().await.expect("versions").len() < table.version() as usize);
}

/// After an update was interrupted: the 50 rows are each present once, and every row holds
/// the text of one and the same generation (or the original text: no update committed); the
/// next update succeeds. Returns the version read.
async fn check_update_atomic(uri: &str) -> u64 {
    let db = Database::connect(uri, ConnectOptions::default())
        .await
        .expect("connect");
    let table = db.open_table("t").await.expect("table opens after a crash");
    let version = table.version();
    let batches = table.scan_all(ScanOptions::default()).await.expect("scan");
    let mut ids = common::ids_of(&batches);
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..50).collect::<Vec<_>>(),
        "version {version}: rows lost or doubled"
    );
    let texts: std::collections::HashSet<String> = batches
        .iter()
        .flat_map(|b| {
            let texts = b
                .column_by_name("text")
                .expect("text")
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .expect("utf8")
                .clone();
            (0..arrow_array::Array::len(&texts))
                .map(move |i| texts.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let untouched = texts.len() == 50 && texts.iter().all(|t| t.starts_with("row "));
    assert!(
        untouched || (texts.len() == 1 && texts.iter().all(|t| t.starts_with("gen "))),
        "version {version} shows a partial update: {} distinct texts",
        texts.len()
    );
    let next = table
        .update(
            None,
            vec![("text".into(), UpdateValue::Sql("'after'".into()))],
        )
        .await
        .expect("the next update succeeds");
    assert_eq!(next.rows_updated, 50);
    version
}

#[tokio::test]
async fn update_killed_while_writing_the_manifest() {
    let (_dir, uri, _table) = setup().await;
    let status = spawn_updater(&uri, "during_manifest", 0)
        .wait()
        .expect("wait");
    assert!(!status.success(), "the updater died");
    // Its new fragment and deletion vector were written; no version names them.
    assert_eq!(check_update_atomic(&uri).await, 1);
}

#[tokio::test]
async fn update_killed_at_random_moments() {
    let (_dir, uri, _table) = setup().await;
    let mut last_version = 1;
    for (round, delay_ms) in [40u64, 70, 100, 140].into_iter().enumerate() {
        let mut child = spawn_updater(&uri, "loop", 1000 * round as i64);
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().expect("kill");
        let _ = child.wait();
        let version = check_update_atomic(&uri).await;
        assert!(version >= last_version);
        last_version = version + 1;
    }
    // The killed updaters did commit some updates: the kills landed mid-loop.
    assert!(
        last_version > 1 + 4 + 1,
        "no updater committed (version {last_version})"
    );
}
