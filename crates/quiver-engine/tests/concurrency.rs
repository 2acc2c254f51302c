//! Optimistic concurrency: concurrent appends all land exactly once with a linear history;
//! commuting operations rebase; truly conflicting ones fail with a typed error; two processes
//! appending to one local table lose nothing.

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use quiver_engine::table::MergeInsert;
use quiver_engine::{
    batches_stream, ConnectOptions, Database, Error, ScanOptions, Table, WriteParams,
};

const DIM: i32 = 4;

/// Versions are contiguous appends, each adding whole appends of `rows_per_append` rows (one
/// or more: appends queued through one connection share a version).
async fn check_linear_history(table: &Table, initial_rows: u64, rows_per_append: u64) {
    let history = table.list_versions().await.expect("versions");
    let versions: Vec<u64> = history.iter().map(|v| v.version).collect();
    assert_eq!(
        versions,
        (1..=history.len() as u64).collect::<Vec<_>>(),
        "versions are contiguous"
    );
    let mut rows = initial_rows;
    for info in &history[1..] {
        assert_eq!(info.operation, "append");
        let snapshot = table.clone();
        snapshot.checkout(info.version).await.expect("checkout");
        let added = snapshot.count_rows() - rows;
        assert!(
            added > 0 && added.is_multiple_of(rows_per_append),
            "version {} holds every earlier append plus whole appends of its own (added {added})",
            info.version
        );
        rows += added;
    }
    table.checkout_latest().await.expect("latest");
}

fn assert_ids_exactly_once(ids: &[i64], expected: impl Iterator<Item = i64>) {
    let mut seen = HashSet::new();
    for id in ids {
        assert!(seen.insert(*id), "id {id} appears twice");
    }
    let expected: HashSet<i64> = expected.collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_append_at_once() {
    for uri in ["memory://", "local"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let uri = if uri == "local" {
            dir.path().to_str().expect("utf8").to_string()
        } else {
            uri.to_string()
        };
        let db = Database::connect(&uri, ConnectOptions::default())
            .await
            .expect("connect");
        let table = common::simple_table(&db, 10, DIM).await;
        let tasks = 16;
        let mut handles = Vec::new();
        for task in 0..tasks {
            // Every task has its own handle, all reading version 1.
            let t = db.open_table("t").await.expect("open");
            handles.push(tokio::spawn(async move {
                let start = 1000 + task * 10;
                t.append(
                    batches_stream(vec![common::simple_batch(start, 10, DIM)]),
                    WriteParams::default(),
                )
                .await
            }));
        }
        let mut versions = Vec::new();
        for h in handles {
            versions.push(h.await.expect("join").expect("append"));
        }
        table.checkout_latest().await.expect("latest");
        let ids = common::ids_of(&table.scan_all(ScanOptions::default()).await.expect("scan"));
        assert_ids_exactly_once(&ids, (0..10).chain(1000..1000 + tasks * 10));
        check_linear_history(&table, 10, 10).await;
        // Each append's rows arrive in the version it returned, not before.
        for (task, &version) in versions.iter().enumerate() {
            let own = 1000 + task as i64 * 10;
            for (at, present) in [(version, true), (version - 1, false)] {
                let snapshot = db.open_table_at("t", at).await.expect("open at");
                let ids = common::ids_of(
                    &snapshot
                        .scan_all(ScanOptions::default())
                        .await
                        .expect("scan"),
                );
                assert_eq!(ids.contains(&own), present, "task {task} at version {at}");
            }
        }
    }
}

#[tokio::test]
async fn commuting_operations_rebase() {
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let t1 = common::simple_table(&db, 100, DIM).await;
    let t2 = db.open_table("t").await.expect("open");
    let rows = common::row_ids_of(
        &t1.scan_all(ScanOptions {
            with_row_id: true,
            ..Default::default()
        })
        .await
        .expect("scan"),
    );

    // Delete vs delete on different rows of the same fragment.
    t1.delete_rows(&rows[0..10]).await.expect("delete 1");
    let r = t2
        .delete_rows(&rows[10..20])
        .await
        .expect("delete 2 rebases");
    assert_eq!((r.num_deleted_rows, r.version), (10, 3));
    assert_eq!(t2.count_rows(), 80);
    let ids = common::ids_of(&t2.scan_all(ScanOptions::default()).await.expect("scan"));
    assert_eq!(ids, (20..100).collect::<Vec<_>>());

    // Append vs delete, both ways.
    t1.refresh().await.expect("refresh");
    let t3 = db.open_table("t").await.expect("open");
    t1.append(
        batches_stream(vec![common::simple_batch(100, 5, DIM)]),
        WriteParams::default(),
    )
    .await
    .expect("append");
    t3.delete_rows(&rows[20..25])
        .await
        .expect("delete after append rebases");
    let t4 = db.open_table("t").await.expect("open");
    t4.delete_rows(&rows[25..30]).await.expect("delete");
    t3.append(
        batches_stream(vec![common::simple_batch(200, 5, DIM)]),
        WriteParams::default(),
    )
    .await
    .expect("append after delete rebases");
    let latest = db.open_table("t").await.expect("open");
    let ids = common::ids_of(&latest.scan_all(ScanOptions::default()).await.expect("scan"));
    let expected: Vec<i64> = (30..105).chain(200..205).collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn conflicting_operations_fail_with_typed_errors() {
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let t1 = common::simple_table(&db, 100, DIM).await;
    let t2 = db.open_table("t").await.expect("open");
    let rows = common::row_ids_of(
        &t1.scan_all(ScanOptions {
            with_row_id: true,
            ..Default::default()
        })
        .await
        .expect("scan"),
    );

    // Overlapping deletes.
    t1.delete_rows(&rows[0..10]).await.expect("delete");
    let err = t2.delete_rows(&rows[5..15]).await.unwrap_err();
    assert!(matches!(err, Error::CommitConflict(_)), "{err}");
    assert_eq!(
        t2.version(),
        1,
        "a failed commit leaves the handle where it was"
    );

    // Append after a concurrent overwrite.
    let t3 = db.open_table("t").await.expect("open");
    t1.overwrite(
        common::simple_schema(DIM),
        batches_stream(vec![common::simple_batch(0, 3, DIM)]),
        WriteParams::default(),
    )
    .await
    .expect("overwrite");
    let err = t3
        .append(
            batches_stream(vec![common::simple_batch(500, 3, DIM)]),
            WriteParams::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CommitConflict(_)), "{err}");
    let latest = db.open_table("t").await.expect("open");
    assert_eq!(
        latest.count_rows(),
        3,
        "the conflicting append left no rows behind"
    );

    // Running out of time is its own error (a commit through another connection, which this
    // one only finds by losing the publish race; commits through the same connection are
    // rebased on directly).
    let t4 = db.open_table("t").await.expect("open");
    let other = Database::from_storage(db.storage().clone(), ConnectOptions::default());
    let latest = other.open_table("t").await.expect("open");
    latest
        .append(
            batches_stream(vec![common::simple_batch(7, 1, DIM)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
    let no_retries = WriteParams {
        commit_timeout: Duration::ZERO,
        ..Default::default()
    };
    let err = t4
        .append(
            batches_stream(vec![common::simple_batch(8, 1, DIM)]),
            no_retries,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::CommitTimeout {
                attempts: 1,
                commits: 1,
                ..
            }
        ),
        "{err}"
    );
}

/// Run as a child process by `two_processes_append`: appends `QUIVER_CHILD_BATCHES` batches
/// of 10 rows starting at id `QUIVER_CHILD_START`, one commit each.
#[tokio::test]
#[ignore = "helper: run as a child process by two_processes_append"]
async fn child_appender() {
    let uri = std::env::var("QUIVER_CHILD_DB").expect("QUIVER_CHILD_DB");
    let start: i64 = std::env::var("QUIVER_CHILD_START")
        .expect("start")
        .parse()
        .expect("int");
    let batches: i64 = std::env::var("QUIVER_CHILD_BATCHES")
        .expect("batches")
        .parse()
        .expect("int");
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let table = db.open_table("t").await.expect("open");
    for b in 0..batches {
        table
            .append(
                batches_stream(vec![common::simple_batch(start + b * 10, 10, DIM)]),
                WriteParams::default(),
            )
            .await
            .expect("append");
    }
}

#[tokio::test]
async fn two_processes_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().to_str().expect("utf8").to_string();
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let table = common::simple_table(&db, 10, DIM).await;
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = [100_000i64, 200_000]
        .iter()
        .map(|start| {
            Command::new(&exe)
                .args(["--exact", "child_appender", "--ignored", "--nocapture"])
                .env("QUIVER_CHILD_DB", &uri)
                .env("QUIVER_CHILD_START", start.to_string())
                .env("QUIVER_CHILD_BATCHES", "15")
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    for mut child in children {
        assert!(
            child.wait().expect("wait").success(),
            "a child appender failed"
        );
    }
    table.refresh().await.expect("refresh");
    assert_eq!(table.version(), 31);
    let ids = common::ids_of(&table.scan_all(ScanOptions::default()).await.expect("scan"));
    assert_ids_exactly_once(
        &ids,
        (0..10).chain(100_000..100_150).chain(200_000..200_150),
    );
    check_linear_history(&table, 10, 10).await;
}

/// Concurrent commits through one connection queue behind each other (appends in batches that
/// share a version) and rebase on the ones before them directly: none loses a publish race,
/// so none needs a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_through_one_connection_never_race_each_other() {
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let table = common::simple_table(&db, 10, DIM).await;
    let writers: Vec<_> = (0..8i64)
        .map(|w| {
            let t = table.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    t.append(
                        batches_stream(vec![common::simple_batch(1_000 + w * 100 + i, 1, DIM)]),
                        WriteParams {
                            commit_timeout: Duration::ZERO,
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("append without a retry");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("join");
    }
    let latest = db.open_table("t").await.expect("open");
    assert_eq!(latest.count_rows(), 90);
    assert!(latest.version() <= 81, "{}", latest.version());
    check_linear_history(&latest, 10, 1).await;
}

/// Ids of every live row, sorted.
async fn all_ids(table: &Table) -> Vec<i64> {
    let batches = table
        .scan_all(ScanOptions {
            columns: Some(vec!["id".into()]),
            ..Default::default()
        })
        .await
        .expect("scan");
    let mut ids = common::ids_of(&batches);
    ids.sort_unstable();
    ids
}

/// A merge-insert conflicts with a concurrent commit only when that commit wrote a row holding
/// one of the merge's keys: over an append of other keys it rebases (with no time to rebase
/// in, it runs out of time instead of conflicting), over an append of one of its keys it
/// conflicts, and given time re-runs and updates the row instead of duplicating it. A
/// by-source delete covers every row, so any concurrent append conflicts with it.
#[tokio::test]
async fn merge_insert_conflicts_only_with_rows_holding_its_keys() {
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let table = common::simple_table(&db, 10, DIM).await;
    let other = Database::from_storage(db.storage().clone(), ConnectOptions::default());
    let upsert = |timeout: Option<Duration>| MergeInsert {
        on: vec!["id".into()],
        when_matched_update_all: Some(None),
        when_not_matched_insert_all: true,
        timeout,
        ..Default::default()
    };
    let schema = common::simple_schema(DIM);
    let append_elsewhere = |start: i64| {
        let other = other.clone();
        async move {
            let t = other.open_table("t").await.expect("open");
            t.append(
                batches_stream(vec![common::simple_batch(start, 1, DIM)]),
                WriteParams::default(),
            )
            .await
            .expect("append");
        }
    };

    // Another writer adds id 100; this handle, behind, upserts id 50.
    append_elsewhere(100).await;
    let err = table
        .merge_insert(
            &upsert(Some(Duration::ZERO)),
            &schema,
            vec![common::simple_batch(50, 1, DIM)],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CommitTimeout { .. }), "{err}");
    let merged = table
        .merge_insert(
            &upsert(None),
            &schema,
            vec![common::simple_batch(50, 1, DIM)],
        )
        .await
        .expect("merge over an append of another key");
    assert_eq!(merged.num_inserted_rows, 1);

    // Another writer adds id 300; this handle, behind, upserts id 300 too.
    append_elsewhere(300).await;
    let err = table
        .merge_insert(
            &upsert(Some(Duration::ZERO)),
            &schema,
            vec![common::simple_batch(300, 1, DIM)],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CommitConflict(_)), "{err}");
    append_elsewhere(301).await;
    let merged = table
        .merge_insert(
            &upsert(None),
            &schema,
            vec![common::simple_batch(300, 1, DIM)],
        )
        .await
        .expect("merge re-run over an append of its key");
    assert_eq!((merged.num_inserted_rows, merged.num_updated_rows), (0, 1));
    let mut want: Vec<i64> = (0..10).chain([50, 100, 300, 301]).collect();
    want.sort_unstable();
    assert_eq!(all_ids(&table).await, want, "no key lost or duplicated");

    // A by-source delete conflicts with any concurrent append.
    append_elsewhere(400).await;
    let err = table
        .merge_insert(
            &MergeInsert {
                when_not_matched_by_source_delete: Some(Some("id >= 1000".into())),
                ..upsert(Some(Duration::ZERO))
            },
            &schema,
            vec![common::simple_batch(2_000, 1, DIM)],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CommitConflict(_)), "{err}");
}

/// A handle behind by any number of versions catches up to the newest in one refresh (found by
/// probing forward rather than listing the history), with every row of it.
#[tokio::test]
async fn refresh_finds_the_newest_version_however_far_behind() {
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let table = common::simple_table(&db, 10, DIM).await;
    let other = Database::from_storage(db.storage().clone(), ConnectOptions::default());
    let writer = other.open_table("t").await.expect("open");
    let mut next_id = 1_000;
    for behind in [1u64, 2, 3, 5, 8, 37, 64, 65] {
        let before = table.version();
        for _ in 0..behind {
            writer
                .append(
                    batches_stream(vec![common::simple_batch(next_id, 1, DIM)]),
                    WriteParams::default(),
                )
                .await
                .expect("append");
            next_id += 1;
        }
        assert_eq!(table.refresh().await.expect("refresh"), before + behind);
        assert_eq!(table.count_rows(), 10 + (next_id - 1_000) as u64);
    }
    // Nothing new: the handle stays.
    assert_eq!(table.refresh().await.expect("refresh"), writer.version());
}

/// A handle whose table another connection dropped, and perhaps created again with a history
/// shorter, as long or longer, commits nothing: its append fails with a typed conflict, and
/// the table of that name keeps exactly its own versions and rows.
#[tokio::test]
async fn a_handle_of_a_dropped_table_commits_nothing() {
    for new_versions in [None, Some(1u64), Some(4), Some(6)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let uri = dir.path().to_str().expect("utf8").to_string();
        let (a, b) = (
            Database::connect(&uri, ConnectOptions::default())
                .await
                .expect("connect"),
            Database::connect(&uri, ConnectOptions::default())
                .await
                .expect("connect"),
        );
        let stale = common::simple_table(&a, 10, DIM).await;
        for start in [100, 200, 300] {
            stale
                .append(
                    batches_stream(vec![common::simple_batch(start, 10, DIM)]),
                    WriteParams::default(),
                )
                .await
                .expect("append");
        }
        assert_eq!(stale.version(), 4);
        b.drop_table("t").await.expect("drop");
        if let Some(versions) = new_versions {
            let fresh = common::simple_table(&b, 3, DIM).await;
            for v in 1..versions {
                fresh
                    .append(
                        batches_stream(vec![common::simple_batch(1_000 * v as i64, 1, DIM)]),
                        WriteParams::default(),
                    )
                    .await
                    .expect("append to the new table");
            }
        }
        let err = stale
            .append(
                batches_stream(vec![common::simple_batch(500, 10, DIM)]),
                WriteParams::default(),
            )
            .await
            .expect_err("a commit into a dropped table");
        assert!(
            matches!(
                &err,
                Error::TableDropped {
                    read_version: 4,
                    ..
                }
            ),
            "{new_versions:?}: {err}"
        );
        match new_versions {
            None => assert!(
                b.table_names().await.expect("names").is_empty(),
                "the dropped table stays dropped"
            ),
            Some(versions) => {
                let table = b.open_table("t").await.expect("open");
                assert_eq!(
                    common::version_numbers(&table).await,
                    (1..=versions).collect::<Vec<_>>()
                );
                assert_eq!(table.count_rows(), 3 + versions - 1);
                assert!(table.skipped_versions().is_empty(), "no junk manifest");
            }
        }
    }
}
