//! Compaction and cleanup: rows, order and old versions survive compaction; deletions are
//! materialized and stale column data dropped; indexes keep answering exactly through the
//! address map, also while builds and deletes race compactions; cleanup removes old versions
//! and unreferenced files but never the latest, a tagged version, or a young unverified file.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::RecordBatch;
use quiver_engine::query::{search, VectorSearch};
use quiver_engine::table::indices::{
    create_index, drop_index, index_stats, optimize_indices, CreateIndexOptions, IndexKind,
    VectorIndexParams,
};
use quiver_engine::table::{CleanupOptions, CompactionOptions, NewColumns, UpdateValue};
use quiver_engine::vocab::{BuildProgress, ProgressFn};
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, Error, ScanOptions, Table, WriteParams,
};

const DIM: i32 = 8;

async fn db(uri: &str) -> Database {
    Database::connect(uri, ConnectOptions::default())
        .await
        .expect("connect")
}

/// A table of `base` rows, then `singles` one-row appends.
async fn fed_table(db: &Database, name: &str, base: usize, singles: usize) -> Table {
    common::fed_table(db, name, DIM, base, singles).await
}

async fn ids(t: &Table) -> Vec<i64> {
    common::ids_of(&t.scan_all(ScanOptions::default()).await.expect("scan"))
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[tokio::test]
async fn compaction_merges_small_fragments_keeping_rows_order_and_old_versions() {
    let db = db("memory://").await;
    let t = fed_table(&db, "t", 100, 60).await;
    t.delete("id % 7 = 3").await.expect("delete");
    t.update(
        Some("id = 120"),
        vec![("text".into(), UpdateValue::Sql("'changed'".into()))],
    )
    .await
    .expect("update");
    let before = ids(&t).await;
    let before_version = t.version();
    // One-row fragments whose row was deleted are gone already.
    let fragments = t.stats().num_fragments;
    assert!(fragments > 50, "{fragments}");
    let m = t
        .compact_files(CompactionOptions::default())
        .await
        .expect("compact");
    assert_eq!(m.version, before_version + 1);
    assert_eq!(m.fragments_added, 1);
    assert_eq!(m.fragments_removed, fragments);
    assert_eq!(t.stats().num_fragments, 1);
    assert_eq!(t.stats().num_deleted_rows, 0);
    assert_eq!(ids(&t).await, before);
    assert_eq!(
        t.count_rows_where("text = 'changed'").await.expect("count"),
        1
    );
    let history = t.list_versions().await.expect("versions");
    assert_eq!(
        history.last().map(|v| v.operation.as_str()),
        Some("compact")
    );
    // The version before is intact and readable.
    let old = db.open_table_at("t", before_version).await.expect("old");
    assert_eq!(ids(&old).await, before);
    // Nothing left to do: no new version.
    let again = t
        .compact_files(CompactionOptions::default())
        .await
        .expect("compact again");
    assert_eq!(again.version, m.version);
    assert_eq!(again.fragments_removed, 0);
}

#[tokio::test]
async fn targets_split_output_and_large_fragments_stay() {
    let db = db("memory://").await;
    let t = fed_table(&db, "t", 0, 0).await;
    for i in 0..10 {
        t.append(
            batches_stream(vec![common::simple_batch(i * 30, 30, DIM)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
    }
    let before = ids(&t).await;
    let m = t
        .compact_files(CompactionOptions {
            target_rows_per_fragment: 100,
            ..Default::default()
        })
        .await
        .expect("compact");
    // Bins of three 30-row fragments (90 rows), the last of one is left alone.
    assert_eq!(m.fragments_removed, 9);
    assert_eq!(t.stats().num_fragments, 4);
    assert_eq!(ids(&t).await, before);
    assert!(t
        .compact_files(CompactionOptions {
            target_rows_per_fragment: 0,
            ..Default::default()
        })
        .await
        .is_err());
}

#[tokio::test]
async fn deletions_are_materialized_and_dead_column_bytes_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path().to_str().expect("utf-8")).await;
    let t = db
        .create_table(
            "t",
            common::simple_schema(DIM),
            batches_stream(vec![common::simple_batch(0, 2_000, DIM)]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
    t.add_columns(NewColumns::Sql(vec![("double".into(), "id * 2".into())]))
        .await
        .expect("add column");
    t.drop_columns(&["text".to_string()]).await.expect("drop");
    t.delete("id < 500").await.expect("delete");
    let manifest = t.manifest();
    assert_eq!(manifest.fragments()[0].files.len(), 2);
    let before = t.scan_all(ScanOptions::default()).await.expect("scan");
    let m = t
        .compact_files(CompactionOptions::default())
        .await
        .expect("compact");
    assert_eq!((m.fragments_removed, m.fragments_added), (1, 1));
    assert_eq!(m.files_removed, 3, "two data files and a deletion vector");
    assert_eq!(m.files_added, 1);
    let manifest = t.manifest();
    let f = &manifest.fragments()[0];
    assert_eq!(
        (f.files.len(), f.physical_rows, f.deletion.is_none()),
        (1, 1_500, true)
    );
    assert_eq!(f.files[0].field_ids, t.manifest().schema.field_ids);
    let after = t.scan_all(ScanOptions::default()).await.expect("scan");
    assert_eq!(
        common::concat(&t.schema(), &before),
        common::concat(&t.schema(), &after)
    );
    // Below the threshold a fragment with deletions is not rewritten on its own.
    t.delete("id < 510").await.expect("delete");
    let m = t
        .compact_files(CompactionOptions::default())
        .await
        .expect("compact");
    assert_eq!(m.fragments_removed, 0);
}

fn vector_of(id: i64) -> Vec<f64> {
    (0..DIM).map(|j| id as f64 + j as f64 / 1000.0).collect()
}

fn result_ids(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column_by_name("id")
        .expect("id")
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

/// Index search (every partition probed: exact for IVF_FLAT) equals the exact search.
async fn assert_index_exact(t: &Table, probes: &[i64]) {
    for &id in probes {
        let q = VectorSearch {
            query: vector_of(id).iter().map(|v| v + 0.3).collect(),
            k: 5,
            nprobes: Some(64),
            ..Default::default()
        };
        let indexed = search(t, &q).await.expect("search");
        let exact = search(
            t,
            &VectorSearch {
                bypass_index: true,
                ..q.clone()
            },
        )
        .await
        .expect("exact");
        assert_eq!(result_ids(&indexed), result_ids(&exact), "query near {id}");
    }
}

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

#[tokio::test]
async fn indexes_follow_compaction_without_a_rebuild() {
    let db = db("memory://").await;
    let t = fed_table(&db, "t", 300, 40).await;
    create_index(&t, "vector", flat_index())
        .await
        .expect("index");
    let index_file_count = t.manifest().proto.indices.len();
    t.delete("id % 5 = 0").await.expect("delete");
    // Rows added after the build stay unindexed through compaction.
    for i in 0..5 {
        t.append(
            batches_stream(vec![common::simple_batch(1_000 + i, 1, DIM)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
    }
    let m = t
        .compact_files(CompactionOptions::default())
        .await
        .expect("compact");
    assert!(m.fragments_removed > 30, "{m:?}");
    let manifest = t.manifest();
    assert_eq!(manifest.proto.indices.len(), index_file_count);
    assert_eq!(manifest.proto.remaps.len(), 1);
    let stats = index_stats(&t, "vector_idx").expect("stats");
    assert_eq!(stats.num_indexed_rows, 340 - 68);
    assert_eq!(stats.num_unindexed_rows, 5);
    assert_index_exact(&t, &[0, 3, 150, 299, 320, 339, 1_002]).await;
    // A second compaction chains through the first map.
    for i in 0..3 {
        t.append(
            batches_stream(vec![common::simple_batch(2_000 + i, 1, DIM)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
    }
    t.delete("id = 7").await.expect("delete");
    t.compact_files(CompactionOptions {
        materialize_deletions_threshold: 0.0,
        ..Default::default()
    })
    .await
    .expect("compact");
    assert_index_exact(&t, &[6, 7, 8, 338, 1_004, 2_001]).await;
    // Optimizing the index folds the map in; the manifest then drops it (after its
    // keep-alive time, so here it is still listed but unused).
    let o = optimize_indices(&t).await.expect("optimize");
    assert_eq!(o.indexes_optimized, 1);
    let stats = index_stats(&t, "vector_idx").expect("stats");
    assert_eq!(stats.num_unindexed_rows, 0);
    assert_index_exact(&t, &[6, 8, 1_004, 2_001]).await;
    // A compaction that drops no row still leaves a map to walk; optimizing folds it in.
    for i in 0..3 {
        t.append(
            batches_stream(vec![common::simple_batch(3_000 + i, 1, DIM)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
    }
    optimize_indices(&t).await.expect("optimize");
    t.compact_files(CompactionOptions::default())
        .await
        .expect("compact");
    let walked = |t: &Table| {
        let m = t.manifest();
        quiver_engine::table::remap::coverage(&m.proto, &m.proto.indices[0].fragment_ids)
            .steps
            .len()
    };
    assert!(walked(&t) > 0);
    let o = optimize_indices(&t).await.expect("optimize");
    assert_eq!(o.indexes_optimized, 1);
    assert_eq!(walked(&t), 0);
    assert_index_exact(&t, &[6, 8, 1_004, 2_001, 3_002]).await;
}

#[tokio::test]
async fn compaction_racing_index_builds_never_fails_and_stays_exact() {
    let db = db("memory://").await;
    let t = fed_table(&db, "t", 400, 0).await;
    for round in 0..20i64 {
        for i in 0..6 {
            t.append(
                batches_stream(vec![common::simple_batch(10_000 + round * 10 + i, 1, DIM)]),
                WriteParams::default(),
            )
            .await
            .expect("append");
        }
        // Odd rounds race the table's first index: the compaction then read a table without
        // one, and its map must still carry the build (committed before or after it) over.
        if round % 2 == 1 {
            t.checkout_latest().await.expect("latest");
            drop_index(&t, "vector_idx").await.expect("drop");
        }
        let builder = db.open_table("t").await.expect("open");
        let compactor = db.open_table("t").await.expect("open");
        let build =
            tokio::spawn(async move { create_index(&builder, "vector", flat_index()).await });
        let compact =
            tokio::spawn(
                async move { compactor.compact_files(CompactionOptions::default()).await },
            );
        build.await.expect("join").expect("index build");
        compact.await.expect("join").expect("compaction");
        t.checkout_latest().await.expect("latest");
        let stats = index_stats(&t, "vector_idx").expect("stats");
        assert_eq!(stats.num_unindexed_rows, 0, "round {round}: {stats:?}");
        assert_index_exact(&t, &[0, 399, 10_000 + round * 10 + 5]).await;
    }
}

#[tokio::test]
async fn an_index_build_that_read_before_a_compaction_carries_its_map() {
    let db = db("memory://").await;
    let t = fed_table(&db, "t", 400, 6).await;
    // The builder's handle is not refreshed: its build reads the table as it was before the
    // compaction below, whose map no index needs when it commits. The delete after it leaves
    // the map out of the newer manifest; the build finds it in the compaction's own version
    // as it rebases, and takes it into its commit.
    let builder = db.open_table("t").await.expect("open");
    let metrics = t
        .compact_files(CompactionOptions::default())
        .await
        .expect("compact");
    assert_eq!(metrics.fragments_removed, 7, "{metrics:?}");
    t.delete("id = 3").await.expect("delete");
    assert!(t.manifest().proto.remaps.is_empty(), "an unused map stays");
    t.append(
        batches_stream(vec![common::simple_batch(6_000, 1, DIM)]),
        WriteParams::default(),
    )
    .await
    .expect("append");
    create_index(&builder, "vector", flat_index())
        .await
        .expect("index build");
    t.checkout_latest().await.expect("latest");
    assert_eq!(t.manifest().proto.remaps.len(), 1);
    let stats = index_stats(&t, "vector_idx").expect("stats");
    // Only what the build never read: the append after it.
    assert_eq!(stats.num_unindexed_rows, 1, "{stats:?}");
    assert_index_exact(&t, &[0, 399, 402, 6_000]).await;
}

#[tokio::test]
async fn deletes_and_updates_read_before_a_compaction_follow_its_rows() {
    let db = db("memory://").await;
    let t = fed_table(&db, "t", 100, 6).await;
    // Handles not refreshed: their writes are computed on the table before the compaction.
    let deleter = db.open_table("t").await.expect("open");
    let updater = db.open_table("t").await.expect("open");
    let late = db.open_table("t").await.expect("open");
    t.delete("id = 50").await.expect("delete");
    let metrics = t
        .compact_files(CompactionOptions {
            materialize_deletions_threshold: 0.0,
            ..Default::default()
        })
        .await
        .expect("compact");
    assert_eq!(metrics.fragments_removed, 7, "{metrics:?}");
    // No time to re-run: these succeed only by following the rows to where the compaction put
    // them.
    let deleted = deleter
        .delete_within("id = 7 OR id = 104", Duration::ZERO)
        .await
        .expect("delete after the compaction");
    assert_eq!(deleted.num_deleted_rows, 2);
    let updated = updater
        .update_within(
            Some("id = 60"),
            vec![("text".into(), UpdateValue::Sql("'moved'".into()))],
            Duration::ZERO,
        )
        .await
        .expect("update after the compaction");
    assert_eq!(updated.rows_updated, 1);
    // A row another writer deleted before the compaction read it: a true conflict.
    let err = late
        .delete_within("id = 50 OR id = 51", Duration::ZERO)
        .await
        .expect_err("row 50 is gone");
    assert!(matches!(err, Error::CommitConflict(_)), "{err}");
    t.checkout_latest().await.expect("latest");
    let mut got = ids(&t).await;
    got.sort_unstable();
    let want: Vec<i64> = (0..106).filter(|id| ![7, 50, 104].contains(id)).collect();
    assert_eq!(got, want);
    let moved = t
        .scan_all(ScanOptions {
            filter: Some(t.parse_filter("text = 'moved'").expect("filter")),
            ..Default::default()
        })
        .await
        .expect("scan");
    assert_eq!(common::ids_of(&moved), vec![60]);
}

/// Starts a compaction of `t` that stops right before its first commit until `resume` is sent.
/// Returns the task, the receiver told when it stops, the resume sender, and how many times
/// the compaction planned and rewrote (a re-run counts again).
fn compaction_paused_before_commit(t: &Table, options: CompactionOptions) -> PausedCompaction {
    let (stopped_tx, stopped) = std::sync::mpsc::channel();
    let (resume, resume_rx) = std::sync::mpsc::channel::<()>();
    let resume_rx = Mutex::new(resume_rx);
    let rewrites = Arc::new(AtomicUsize::new(0));
    let counted = rewrites.clone();
    let paused_once = AtomicBool::new(false);
    let progress: ProgressFn = Arc::new(move |p: BuildProgress| {
        if p.phase == "rewrite" && p.done == 0 {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        if p.phase == "commit" && p.done == 0 && !paused_once.swap(true, Ordering::SeqCst) {
            let _ = stopped_tx.send(());
            // Blocks this worker thread only: the test runs on a multi-threaded runtime.
            let _ = resume_rx.lock().map(|rx| rx.recv());
        }
    });
    let compactor = t.clone();
    let task = tokio::spawn(async move {
        compactor
            .compact_files(CompactionOptions {
                progress: Some(progress),
                ..options
            })
            .await
    });
    PausedCompaction {
        task,
        stopped,
        resume,
        rewrites,
    }
}

struct PausedCompaction {
    task: tokio::task::JoinHandle<quiver_engine::Result<quiver_engine::table::CompactionMetrics>>,
    stopped: std::sync::mpsc::Receiver<()>,
    resume: std::sync::mpsc::Sender<()>,
    rewrites: Arc<AtomicUsize>,
}

impl PausedCompaction {
    async fn wait_until_stopped(&self) {
        while self.stopped.try_recv().is_err() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_carries_fragments_emptied_meanwhile_without_re_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path().to_str().expect("utf-8 path")).await;
    let t = fed_table(&db, "t", 3, 6).await;
    create_index(&t, "vector", flat_index())
        .await
        .expect("index");
    // Bins of three one-row fragments: [3, 4, 5] and [6, 7, 8] after the base fragment.
    let options = CompactionOptions {
        target_rows_per_fragment: 3,
        ..Default::default()
    };
    let compaction = compaction_paused_before_commit(&t, options);
    compaction.wait_until_stopped().await;
    // While it waits to commit: one delete empties a fragment of the first bin, another
    // every fragment of the second.
    let writer = db.open_table("t").await.expect("open");
    writer.delete("id = 4").await.expect("delete");
    writer.delete("id >= 6").await.expect("delete");
    let data_files = files_in(&dir.path().join("t.quiver").join("data"));
    compaction.resume.send(()).expect("resume");
    let metrics = compaction.task.await.expect("join").expect("compact");
    assert_eq!(compaction.rewrites.load(Ordering::SeqCst), 1, "re-ran");
    assert_eq!(metrics.fragments_removed, 2, "{metrics:?}");
    assert_eq!(metrics.fragments_added, 1, "{metrics:?}");
    // The emptied second bin's new fragment never joined the table, and its file is gone.
    assert_eq!(
        files_in(&dir.path().join("t.quiver").join("data")),
        data_files - 1
    );
    t.checkout_latest().await.expect("latest");
    let mut got = ids(&t).await;
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2, 3, 5]);
    assert_eq!(t.stats().num_fragments, 2);
    assert_index_exact(&t, &[0, 3, 5]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_gives_up_only_the_groups_another_compaction_took() {
    let db = db("memory://").await;
    let t = fed_table(&db, "t", 3, 3).await;
    // Its plan sees three one-row fragments: one bin.
    let early = db.open_table("t").await.expect("open");
    for id in 6..9 {
        t.append(
            batches_stream(vec![common::simple_batch(id, 1, DIM)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
    }
    let options = CompactionOptions {
        target_rows_per_fragment: 3,
        ..Default::default()
    };
    let compaction = compaction_paused_before_commit(&t, options.clone());
    compaction.wait_until_stopped().await;
    let first = early
        .compact_files(options)
        .await
        .expect("other compaction");
    assert_eq!(first.fragments_removed, 3, "{first:?}");
    compaction.resume.send(()).expect("resume");
    let metrics = compaction.task.await.expect("join").expect("compact");
    assert_eq!(compaction.rewrites.load(Ordering::SeqCst), 1, "re-ran");
    assert_eq!(metrics.fragments_removed, 3, "{metrics:?}");
    t.checkout_latest().await.expect("latest");
    let mut got = ids(&t).await;
    got.sort_unstable();
    assert_eq!(got, (0..9).collect::<Vec<i64>>(), "rows lost or duplicated");
    assert_eq!(t.stats().num_fragments, 3);
}

#[tokio::test]
async fn deletes_racing_compaction_are_never_lost() {
    let db = db("memory://").await;
    let t = fed_table(&db, "t", 50, 50).await;
    create_index(&t, "vector", flat_index())
        .await
        .expect("index");
    let mut expected: HashSet<i64> = (0..100).collect();
    for round in 0..10i64 {
        for i in 0..5 {
            let id = 1_000 + round * 5 + i;
            t.append(
                batches_stream(vec![common::simple_batch(id, 1, DIM)]),
                WriteParams::default(),
            )
            .await
            .expect("append");
            expected.insert(id);
        }
        let deleter = db.open_table("t").await.expect("open");
        let compactor = db.open_table("t").await.expect("open");
        let victims = format!("id % 10 = {round} OR id = {}", 1_000 + round * 5);
        let delete = tokio::spawn(async move { deleter.delete(&victims).await });
        let compact = tokio::spawn(async move {
            compactor
                .compact_files(CompactionOptions {
                    materialize_deletions_threshold: 0.0,
                    ..Default::default()
                })
                .await
        });
        delete.await.expect("join").expect("delete");
        compact.await.expect("join").expect("compact");
        expected.retain(|id| id % 10 != round && *id != 1_000 + round * 5);
        t.checkout_latest().await.expect("latest");
        let mut got = ids(&t).await;
        got.sort_unstable();
        let mut want: Vec<i64> = expected.iter().copied().collect();
        want.sort_unstable();
        assert_eq!(got, want, "round {round}");
        assert_index_exact(&t, &[1, 55, 1_000 + round * 5 + 1]).await;
    }
}

#[tokio::test]
async fn cleanup_keeps_latest_tagged_and_recent_versions_and_young_strays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path().to_str().expect("utf-8")).await;
    let t = fed_table(&db, "t", 100, 30).await;
    t.delete("id < 10").await.expect("delete");
    t.create_tag("keep", 5).await.expect("tag");
    let tagged_ids = ids(&db.open_table_at("t", 5).await.expect("v5")).await;
    let table_dir = dir.path().join("t.quiver");
    // A crashed write's leftover: young, so kept unless asked.
    std::fs::write(table_dir.join("data/orphan.qvd"), b"partial").expect("orphan");
    // Default retention (7 days): nothing is that old.
    let s = t
        .cleanup_old_versions(CleanupOptions::default())
        .await
        .expect("cleanup");
    assert_eq!(s.old_versions_removed, 0);
    assert_eq!(s.files_removed, 0);
    t.compact_files(CompactionOptions::default())
        .await
        .expect("compact");
    let latest_ids = ids(&t).await;
    let versions_before = t.list_versions().await.expect("versions").len();
    let data_files_before = files_in(&table_dir.join("data"));
    let s = t
        .cleanup_old_versions(CleanupOptions {
            before: Some(SystemTime::now() + Duration::from_secs(1)),
            ..Default::default()
        })
        .await
        .expect("cleanup");
    assert_eq!(s.old_versions_removed as usize, versions_before - 2);
    assert!(s.files_removed > 0 && s.bytes_removed > 0);
    let versions = common::version_numbers(&t).await;
    assert_eq!(versions, vec![5, t.version()]);
    assert!(table_dir.join("data/orphan.qvd").exists());
    assert!(files_in(&table_dir.join("data")) < data_files_before);
    // Kept versions read every row.
    assert_eq!(ids(&t).await, latest_ids);
    assert_eq!(
        ids(&db.open_table_at("t", 5).await.expect("v5")).await,
        tagged_ids
    );
    assert!(db.open_table_at("t", 6).await.is_err());
    // A fresh handle and a refreshed one find the latest.
    let fresh = db.open_table("t").await.expect("open");
    assert_eq!(fresh.version(), t.version());
    // Unverified files go only when asked.
    let s = t
        .cleanup_old_versions(CleanupOptions {
            before: Some(SystemTime::now()),
            delete_unverified: true,
            ..Default::default()
        })
        .await
        .expect("cleanup");
    assert_eq!(s.files_removed, 1);
    assert!(!table_dir.join("data/orphan.qvd").exists());
    // Deleting the tag lets its version go.
    t.delete_tag("keep").await.expect("untag");
    let s = t
        .cleanup_old_versions(CleanupOptions {
            before: Some(SystemTime::now()),
            ..Default::default()
        })
        .await
        .expect("cleanup");
    assert_eq!(s.old_versions_removed, 1);
    assert_eq!(ids(&t).await, latest_ids);
}

#[tokio::test]
async fn a_stale_handle_refreshes_past_cleaned_versions_and_writers_rebase() {
    let db = db("memory://").await;
    let t = fed_table(&db, "t", 10, 0).await;
    let stale = db.open_table("t").await.expect("open");
    for i in 0..5 {
        t.append(
            batches_stream(vec![common::simple_batch(100 + i, 1, DIM)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
    }
    t.cleanup_old_versions(CleanupOptions {
        before: Some(SystemTime::now() + Duration::from_secs(1)),
        ..Default::default()
    })
    .await
    .expect("cleanup");
    // The stale handle's next version is gone; its append still rebases and lands.
    stale
        .append(
            batches_stream(vec![common::simple_batch(500, 1, DIM)]),
            WriteParams::default(),
        )
        .await
        .expect("append over cleaned versions");
    assert_eq!(stale.count_rows(), 16);
    let other = db.open_table("t").await.expect("open");
    assert_eq!(other.version(), stale.version());
    t.refresh().await.expect("refresh");
    assert_eq!(t.version(), stale.version());
}

#[tokio::test]
async fn optimize_compacts_refreshes_indexes_and_prunes() {
    let db = db("memory://").await;
    let t = fed_table(&db, "t", 200, 20).await;
    create_index(&t, "vector", flat_index())
        .await
        .expect("index");
    for i in 0..10 {
        t.append(
            batches_stream(vec![common::simple_batch(500 + i, 1, DIM)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
    }
    let before = ids(&t).await;
    let r = quiver_engine::maintenance::optimize(
        &t,
        quiver_engine::maintenance::OptimizeOptions {
            cleanup: CleanupOptions {
                before: Some(SystemTime::now() + Duration::from_secs(1)),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .expect("optimize");
    // Indexes first, so the new rows join the indexed ones in one fragment.
    assert_eq!(r.compaction.fragments_added, 1);
    assert_eq!(r.indexes.indexes_optimized, 1);
    assert_eq!(r.indexes.rows_added, 10);
    assert!(r.prune.old_versions_removed > 30 && r.prune.bytes_removed > 0);
    assert_eq!(r.version, t.version());
    assert_eq!(ids(&t).await, before);
    assert_eq!(t.list_versions().await.expect("versions").len(), 1);
    assert_index_exact(&t, &[0, 210, 505]).await;
    let advice = quiver_engine::maintenance::advise(&t)
        .await
        .expect("advice");
    assert!(!advice.advised(), "{advice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_maintenance_compacts_and_cleans_while_writes_run_and_stops_on_close() {
    use quiver_engine::maintenance::{MaintenanceEvent, MaintenanceOptions};
    use std::sync::{Arc, Mutex};
    let events: Arc<Mutex<Vec<MaintenanceEvent>>> = Arc::default();
    let seen = events.clone();
    let db = Database::connect(
        "memory://",
        ConnectOptions {
            maintenance: Some(MaintenanceOptions {
                quiet: Duration::from_millis(30),
                max_delay: Duration::from_millis(200),
                small_fragments: 8,
                retention: Duration::ZERO,
                listener: Some(Arc::new(move |e| seen.lock().expect("lock").push(e))),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await
    .expect("connect");
    let t = fed_table(&db, "t", 100, 0).await;
    for i in 0..200 {
        t.append(
            batches_stream(vec![common::simple_batch(1_000 + i, 1, DIM)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
        if i % 20 == 0 {
            t.delete(&format!("id = {}", 1_000 + i))
                .await
                .expect("delete");
        }
    }
    let wait_idle = || async {
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if !t.maintenance_activity().expect("on").active {
                return;
            }
        }
        panic!("maintenance never settled");
    };
    wait_idle().await;
    t.checkout_latest().await.expect("latest");
    let activity = t.maintenance_activity().expect("on");
    assert!(activity.compactions >= 1, "{activity:?}");
    assert!(activity.cleanups >= 1, "{activity:?}");
    assert_eq!(activity.errors, 0, "{activity:?}");
    assert!(t.stats().num_fragments <= 2, "{:?}", t.stats());
    assert_eq!(t.count_rows(), 290);
    let mut got = ids(&t).await;
    got.sort_unstable();
    let mut want: Vec<i64> = (0..100)
        .chain((1_000..1_200).filter(|i| (i - 1_000) % 20 != 0))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
    assert!(t.list_versions().await.expect("versions").len() <= 3);
    let kinds: HashSet<&str> = events
        .lock()
        .expect("lock")
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.contains("compaction") && kinds.contains("cleanup"),
        "{kinds:?}"
    );
    // Closed: writes no longer schedule anything.
    db.close();
    let rounds = t.maintenance_activity().expect("on").rounds;
    for i in 0..20 {
        t.append(
            batches_stream(vec![common::simple_batch(5_000 + i, 1, DIM)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.maintenance_activity().expect("on").rounds, rounds);
    assert!(t.stats().num_fragments >= 20);
}

#[tokio::test]
async fn readers_keep_their_version_for_the_retention_then_must_refresh() {
    // A store shared by two connections, where a removed object is gone at once (on local
    // disk a reader that already opened a file may even read on).
    let uri = "memory://readers-rule";
    let db = db(uri).await;
    let t = fed_table(&db, "t", 100, 3).await;
    // Another connection (no shared caches) reads the current version, pinned and latest.
    let reader_db = Database::connect(uri, ConnectOptions::default())
        .await
        .expect("connect");
    let pinned = reader_db.open_table_at("t", 2).await.expect("v2");
    let latest = reader_db.open_table("t").await.expect("latest");
    let seen = latest.version();
    t.compact_files(CompactionOptions::default())
        .await
        .expect("compact");
    // Within the retention (default 7 days) nothing they read goes away.
    t.cleanup_old_versions(CleanupOptions::default())
        .await
        .expect("cleanup");
    assert_eq!(ids(&pinned).await.len(), 101);
    assert_eq!(ids(&latest).await.len(), 103);
    // Past it, their versions are removed: a clear error, until they move to the latest.
    t.cleanup_old_versions(CleanupOptions {
        before: Some(SystemTime::now() + Duration::from_secs(1)),
        ..Default::default()
    })
    .await
    .expect("cleanup");
    let err = latest
        .scan_all(ScanOptions::default())
        .await
        .expect_err("its files are gone");
    assert!(matches!(err, quiver_engine::Error::MissingFile(_)), "{err}");
    assert!(err.to_string().contains("checkout_latest"));
    assert!(latest.refresh().await.expect("refresh") > seen);
    assert_eq!(ids(&latest).await.len(), 103);
    assert!(matches!(
        pinned.scan_all(ScanOptions::default()).await,
        Err(quiver_engine::Error::MissingFile(_))
    ));
    pinned.checkout_latest().await.expect("latest");
    assert_eq!(ids(&pinned).await.len(), 103);
}
