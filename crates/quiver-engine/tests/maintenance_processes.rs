//! Compaction, cleanup, index builds, appends and deletes from separate processes on one
//! local table at once: every operation succeeds, and the table ends with exactly the rows
//! appended minus the rows deleted, each once, its index answering as exact search does.

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use quiver_engine::query::{search, VectorSearch};
use quiver_engine::table::indices::{
    create_index, CreateIndexOptions, IndexKind, VectorIndexParams,
};
use quiver_engine::table::{CleanupOptions, CompactionOptions};
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, ScanOptions, WriteParams,
};

const DIM: i32 = 8;
const INITIAL: i64 = 300;
const APPENDS: i64 = 60;

fn flat_index() -> CreateIndexOptions {
    CreateIndexOptions {
        config: Some(
            VectorIndexParams {
                kind: IndexKind::IvfFlat,
                num_partitions: Some(4),
                ..Default::default()
            }
            .into(),
        ),
        replace: true,
        ..Default::default()
    }
}

/// Run as a child process: `QUIVER_ROLE` is `writer` (one-row appends from `QUIVER_BASE`,
/// deleting every fifth one again) or `maintainer` (compactions, cleanups, index builds).
#[tokio::test]
#[ignore = "helper: run as a child process by the test below"]
async fn maintenance_worker() {
    let uri = std::env::var("QUIVER_DB").expect("QUIVER_DB");
    let role = std::env::var("QUIVER_ROLE").expect("QUIVER_ROLE");
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let table = db.open_table("t").await.expect("open");
    if role == "writer" {
        let base: i64 = std::env::var("QUIVER_BASE")
            .expect("base")
            .parse()
            .expect("int");
        for i in 0..APPENDS {
            let id = base + i;
            table
                .append(
                    batches_stream(vec![common::simple_batch(id, 1, DIM)]),
                    WriteParams::default(),
                )
                .await
                .expect("append");
            if id % 5 == 0 {
                table.delete(&format!("id = {id}")).await.expect("delete");
            }
        }
        return;
    }
    for round in 0..12 {
        table.checkout_latest().await.expect("latest");
        table
            .compact_files(CompactionOptions::default())
            .await
            .expect("compact");
        if round % 3 == 0 {
            create_index(&table, "vector", flat_index())
                .await
                .expect("index build");
        }
        table
            .cleanup_old_versions(CleanupOptions {
                before: Some(SystemTime::now()),
                ..Default::default()
            })
            .await
            .expect("cleanup");
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

fn spawn(uri: &str, role: &str, base: i64) -> std::process::Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "maintenance_worker", "--ignored", "--nocapture"])
        .env("QUIVER_DB", uri)
        .env("QUIVER_ROLE", role)
        .env("QUIVER_BASE", base.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker")
}

#[tokio::test]
async fn maintenance_and_writes_from_three_processes_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().to_str().expect("utf-8").to_string();
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let t = db
        .create_table(
            "t",
            common::simple_schema(DIM),
            batches_stream(vec![common::simple_batch(0, INITIAL as usize, DIM)]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
    create_index(&t, "vector", flat_index())
        .await
        .expect("index");
    let bases = [10_000i64, 20_000];
    let children: Vec<_> = [
        spawn(&uri, "writer", bases[0]),
        spawn(&uri, "writer", bases[1]),
        spawn(&uri, "maintainer", 0),
    ]
    .into_iter()
    .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "a worker failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    t.checkout_latest().await.expect("latest");
    let mut want: Vec<i64> = (0..INITIAL)
        .chain(
            bases
                .iter()
                .flat_map(|&b| b..b + APPENDS)
                .filter(|id| id % 5 != 0),
        )
        .collect();
    want.sort_unstable();
    let mut got = common::ids_of(&t.scan_all(ScanOptions::default()).await.expect("scan"));
    let unique: HashSet<i64> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "a row appears twice");
    got.sort_unstable();
    assert_eq!(got, want);
    for &id in &[7i64, 299, 10_001, 20_059] {
        let q = VectorSearch {
            query: (0..DIM)
                .map(|j| id as f64 + j as f64 / 1000.0 + 0.2)
                .collect(),
            k: 4,
            nprobes: Some(4),
            ..Default::default()
        };
        let indexed = search(&t, &q).await.expect("search");
        let exact = search(
            &t,
            &VectorSearch {
                bypass_index: true,
                ..q.clone()
            },
        )
        .await
        .expect("exact");
        assert_eq!(common::ids_of(&[indexed]), common::ids_of(&[exact]));
    }
}
