//! IVF_PQ and IVF_FLAT indexes on deterministic clustered vectors generated at test time by
//! `common::clustered` (exact ground truth included): recall at default and
//! tuned settings, prefiltered searches returning exactly k rows, fresh appends, deletes and
//! updates, reopen, replace, drop, and the typed errors of bad builds.

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{FixedSizeListArray, Float32Array, Int32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use quiver_engine::linalg::DistanceType;
use quiver_engine::query::{
    analyze_search, explain_search, search, search_with_stats, VectorSearch,
};
use quiver_engine::table::indices::{
    create_index, drop_index, index_stats, list_indices, optimize_indices, BuildProgress,
    CreateIndexOptions, IndexKind, VectorIndexParams,
};
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, Error, Table, WriteParams,
};

type Dataset = common::clustered::Clustered;

/// 50K × 128 clustered vectors and 1,000 queries with exact top-100, generated once per test
/// binary.
fn dataset() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| common::clustered::generate(50_000, 128, 1_000, 100, 42))
}

#[test]
fn the_generator_is_deterministic() {
    let a = common::clustered::generate(500, 16, 4, 10, 7);
    let b = common::clustered::generate(500, 16, 4, 10, 7);
    assert_eq!(a.base, b.base);
    assert_eq!(a.gt, b.gt);
    assert_eq!(a.gt.len(), 40);
}

fn batch(data: &Dataset, rows: std::ops::Range<usize>) -> RecordBatch {
    let dim = data.dim;
    let values = Float32Array::from(data.base[rows.start * dim..rows.end * dim].to_vec());
    let list = FixedSizeListArray::try_new(
        common::item(DataType::Float32),
        dim as i32,
        Arc::new(values),
        None,
    )
    .expect("list");
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "vector",
                common::vector_type(DataType::Float32, dim as i32),
                true,
            ),
            Field::new("category", DataType::Int32, false),
        ])),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.clone().map(|i| i as i64))),
            Arc::new(list),
            Arc::new(Int32Array::from(data.category[rows].to_vec())),
        ],
    )
    .expect("batch")
}

async fn create(db: &Database, name: &str, rows: std::ops::Range<usize>) -> Table {
    let data = dataset();
    let b = batch(data, rows);
    db.create_table(
        name,
        b.schema(),
        batches_stream(vec![b]),
        CreateMode::Create,
        WriteParams::default(),
    )
    .await
    .expect("create table")
}

fn query(data: &Dataset, q: usize, k: usize) -> VectorSearch {
    VectorSearch {
        query: data.queries[q * data.dim..(q + 1) * data.dim]
            .iter()
            .map(|&v| v as f64)
            .collect(),
        k,
        ..Default::default()
    }
}

fn ids(batch: &RecordBatch) -> Vec<i64> {
    batch
        .column_by_name("id")
        .expect("id column")
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

/// Mean recall@10 over the first `queries` queries, and the result sizes seen.
async fn recall(
    t: &Table,
    queries: usize,
    configure: impl Fn(VectorSearch) -> VectorSearch,
    truth: &[u32],
) -> (f64, Vec<usize>) {
    let data = dataset();
    let mut hits = 0usize;
    let mut sizes = Vec::new();
    for q in 0..queries {
        let got = search(t, &configure(query(data, q, 10)))
            .await
            .expect("search");
        sizes.push(got.num_rows());
        let truth: Vec<i64> = truth[q * data.k..q * data.k + 10]
            .iter()
            .map(|&i| i as i64)
            .collect();
        hits += ids(&got).iter().filter(|i| truth.contains(i)).count();
    }
    (hits as f64 / (queries * 10) as f64, sizes)
}

fn ivf_pq() -> CreateIndexOptions {
    CreateIndexOptions {
        config: Some(VectorIndexParams::default().into()),
        replace: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivf_pq_recall_defaults_tuned_and_prefiltered() {
    let data = dataset();
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let t = create(&db, "pq", 0..50_000).await;
    let phases = Arc::new(Mutex::new(Vec::<BuildProgress>::new()));
    let seen = phases.clone();
    let options = CreateIndexOptions {
        progress: Some(Arc::new(move |p| seen.lock().unwrap().push(p))),
        ..ivf_pq()
    };
    let info = create_index(&t, "vector", options).await.expect("build");
    assert_eq!(info.index_type, "IVF_PQ");
    assert_eq!(
        info.details.num_partitions,
        Some(224),
        "√50,000 partitions by default"
    );
    assert_eq!(
        info.details.num_sub_vectors,
        Some(16),
        "one sub-vector per 8 dimensions"
    );
    assert_eq!(
        (info.num_indexed_rows, info.num_unindexed_rows),
        (50_000, 0)
    );
    let phases = phases.lock().unwrap().clone();
    for phase in ["sample", "kmeans", "pq", "encode", "calibrate", "write"] {
        let of_phase: Vec<_> = phases.iter().filter(|p| p.phase == phase).collect();
        assert!(!of_phase.is_empty(), "no {phase} progress");
        let last = of_phase.last().unwrap();
        assert_eq!(last.done, last.total, "{phase} ends complete");
    }

    // The build calibrated its defaults on 200 of the table's own rows (the budget allows
    // more at 50,000 × 128), and the held-out queries get the recall it measured.
    let calibration = info.details.calibration.clone().expect("calibrated");
    assert_eq!((calibration.queries, calibration.k), (200, 10));
    assert_eq!(calibration.target_recall, 0.95);
    let chosen = *calibration.chosen().expect("a setting");
    assert!(chosen.recall >= 0.95, "{calibration:?}");
    assert!(chosen.refine >= 1);
    // Index settings by cost, each better than the cheaper ones; exact search last (unless a
    // setting was perfect).
    let settings: Vec<_> = calibration
        .points
        .iter()
        .filter(|p| !p.is_exact())
        .collect();
    assert!(
        settings
            .windows(2)
            .all(|w| w[0].cost_us <= w[1].cost_us && w[0].recall < w[1].recall),
        "a frontier: {calibration:?}"
    );
    assert!(calibration.points[..settings.len()]
        .iter()
        .all(|p| !p.is_exact()));
    let (default_recall, sizes) = recall(&t, 200, |s| s, &data.gt).await;
    assert!(sizes.iter().all(|&n| n == 10));
    assert!(
        default_recall >= 0.93,
        "recall@10 at defaults: {default_recall} (calibrated {chosen:?})"
    );
    let (_, stats) = search_with_stats(&t, &query(data, 1, 10))
        .await
        .expect("search");
    assert_eq!(stats.partitions_probed, chosen.nprobes as usize);
    // Another target picks another point of the curve; explicit settings win.
    let low = *calibration.pick(0.5).expect("a setting");
    let (low_recall, _) = recall(
        &t,
        200,
        |s| VectorSearch {
            target_recall: Some(0.5),
            ..s
        },
        &data.gt,
    )
    .await;
    assert!(low.nprobes <= chosen.nprobes && low_recall <= default_recall);
    let (_, stats) = search_with_stats(
        &t,
        &VectorSearch {
            target_recall: Some(0.5),
            nprobes: Some(3),
            ..query(data, 1, 10)
        },
    )
    .await
    .expect("search");
    assert_eq!(stats.partitions_probed, 3);
    let bad = search(
        &t,
        &VectorSearch {
            target_recall: Some(1.5),
            ..query(data, 1, 10)
        },
    )
    .await;
    assert!(
        matches!(bad, Err(quiver_engine::Error::InvalidArgument(_))),
        "{bad:?}"
    );
    let (tuned, _) = recall(
        &t,
        200,
        |s| VectorSearch {
            nprobes: Some(32),
            refine_factor: Some(10),
            ..s
        },
        &data.gt,
    )
    .await;
    assert!(
        tuned >= 0.98,
        "recall@10 with nprobes 32, refine 10: {tuned}"
    );

    let filter = t.parse_filter("category < 10").expect("filter");
    let (filtered, sizes) = recall(
        &t,
        200,
        |s| VectorSearch {
            filter: Some(filter.clone()),
            ..s
        },
        &data.gt_filtered,
    )
    .await;
    assert!(
        sizes.iter().all(|&n| n == 10),
        "a prefilter still returns k rows"
    );
    assert!(
        filtered >= 0.90,
        "prefiltered recall@10 at defaults: {filtered}"
    );
    let (filtered_tuned, _) = recall(
        &t,
        200,
        |s| VectorSearch {
            filter: Some(filter.clone()),
            nprobes: Some(32),
            refine_factor: Some(10),
            ..s
        },
        &data.gt_filtered,
    )
    .await;
    assert!(
        filtered_tuned >= 0.98,
        "prefiltered tuned recall: {filtered_tuned}"
    );

    // A very selective filter still gives exactly k rows (or all that match).
    let rare = t.parse_filter("id % 5000 = 7").expect("filter");
    let got = search(
        &t,
        &VectorSearch {
            filter: Some(rare),
            ..query(data, 0, 10)
        },
    )
    .await
    .expect("search");
    let mut got_ids = ids(&got);
    got_ids.sort_unstable();
    assert_eq!(got_ids, (0..10).map(|i| i * 5000 + 7).collect::<Vec<i64>>());
    // Selecting `_distance` by name (as LanceDB code does) is accepted.
    let named = search(
        &t,
        &VectorSearch {
            columns: Some(vec!["id".into(), "_distance".into()]),
            ..query(data, 0, 3)
        },
    )
    .await
    .expect("search");
    assert_eq!(named.num_columns(), 2);

    // The index is used, and exact search stays available.
    let (_, stats) = search_with_stats(&t, &query(data, 1, 10))
        .await
        .expect("search");
    assert_eq!(stats.index.as_deref(), Some("vector_idx"));
    assert!(stats.partitions_probed >= chosen.nprobes as usize);
    let (exact, stats) = search_with_stats(
        &t,
        &VectorSearch {
            bypass_index: true,
            ..query(data, 1, 10)
        },
    )
    .await
    .expect("exact");
    assert_eq!(stats.index, None);
    let truth: Vec<i64> = data.gt[100..110].iter().map(|&i| i as i64).collect();
    assert_eq!(ids(&exact), truth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_deleted_and_updated_rows_and_reopen() {
    let data = dataset();
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().to_str().expect("utf-8 path").to_string();
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let t = create(&db, "fresh", 0..20_000).await;
    let options = CreateIndexOptions {
        config: Some(
            VectorIndexParams {
                num_partitions: Some(64),
                ..Default::default()
            }
            .into(),
        ),
        ..ivf_pq()
    };
    create_index(&t, "vector", options).await.expect("build");

    // Appended rows are found at once (exact search over the uncovered fragment).
    let b = batch(data, 20_000..20_100);
    t.append(batches_stream(vec![b]), WriteParams::default())
        .await
        .expect("append");
    let stats = index_stats(&t, "vector_idx").expect("stats");
    assert_eq!(
        (stats.num_indexed_rows, stats.num_unindexed_rows),
        (20_000, 100)
    );
    let target = 20_050usize;
    let self_query = VectorSearch {
        query: data.base[target * data.dim..(target + 1) * data.dim]
            .iter()
            .map(|&v| v as f64)
            .collect(),
        k: 1,
        ..Default::default()
    };
    let got = search(&t, &self_query).await.expect("search");
    assert_eq!(ids(&got), vec![target as i64]);

    // Deleted rows never appear; updated rows appear with their new values only.
    let indexed_target = 1234usize;
    let probe = VectorSearch {
        query: data.base[indexed_target * data.dim..(indexed_target + 1) * data.dim]
            .iter()
            .map(|&v| v as f64)
            .collect(),
        k: 5,
        ..Default::default()
    };
    assert_eq!(ids(&search(&t, &probe).await.expect("search"))[0], 1234);
    t.delete("id = 1234").await.expect("delete");
    assert!(!ids(&search(&t, &probe).await.expect("search")).contains(&1234));
    let before = ids(&search(&t, &probe).await.expect("search"));
    let moved = before[0];
    t.update(
        Some(&format!("id = {moved}")),
        vec![(
            "id".to_string(),
            quiver_engine::table::UpdateValue::Sql("id + 1000000".into()),
        )],
    )
    .await
    .expect("update");
    let after = ids(&search(&t, &probe).await.expect("search"));
    assert!(!after.contains(&moved), "the old row of an update is gone");
    assert!(
        after.contains(&(moved + 1_000_000)),
        "its new version is found: {after:?}"
    );

    // optimize() folds the new rows into the index (no retraining) and drops deleted entries.
    let optimized = optimize_indices(&t).await.expect("optimize");
    assert_eq!(optimized.indexes_optimized, 1);
    assert_eq!(
        optimized.rows_added, 101,
        "100 appended rows and 1 updated row"
    );
    assert_eq!(
        optimized.rows_removed, 2,
        "the deleted row and the update's old row"
    );
    let stats = index_stats(&t, "vector_idx").expect("stats");
    assert_eq!(
        (stats.num_indexed_rows, stats.num_unindexed_rows),
        (20_099, 0)
    );
    assert_eq!(ids(&search(&t, &probe).await.expect("search")), after);
    assert_eq!(
        ids(&search(&t, &self_query).await.expect("search")),
        vec![target as i64]
    );
    let again = optimize_indices(&t).await.expect("optimize");
    assert_eq!((again.indexes_optimized, again.version), (0, t.version()));

    // The index survives reopening, from a fresh connection (no cache).
    let db2 = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let t2 = db2.open_table("fresh").await.expect("open");
    assert_eq!(list_indices(&t2).expect("list").len(), 1);
    let (reopened, stats) = search_with_stats(&t2, &probe).await.expect("search");
    assert_eq!(stats.index.as_deref(), Some("vector_idx"));
    assert_eq!(ids(&reopened), after);
    // Older versions keep their own view: version 1 had no index.
    let v1 = db2.open_table_at("fresh", 1).await.expect("v1");
    assert!(list_indices(&v1).expect("list").is_empty());

    // Replace and drop.
    let err = create_index(&t2, "vector", CreateIndexOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref m) if m.contains("replace")),
        "{err}"
    );
    drop_index(&t2, "vector_idx").await.expect("drop");
    assert!(list_indices(&t2).expect("list").is_empty());
    assert!(matches!(
        drop_index(&t2, "vector_idx").await,
        Err(Error::IndexNotFound(_))
    ));
    let (_, stats) = search_with_stats(&t2, &probe).await.expect("search");
    assert_eq!(stats.index, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivf_flat_cosine_and_dot_and_bad_builds() {
    let data = dataset();
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let t = create(&db, "flat", 0..10_000).await;
    for distance in [DistanceType::Cosine, DistanceType::Dot] {
        let options = CreateIndexOptions {
            config: Some(
                VectorIndexParams {
                    kind: IndexKind::IvfFlat,
                    distance_type: distance,
                    ..Default::default()
                }
                .into(),
            ),
            ..ivf_pq()
        };
        let info = create_index(&t, "vector", options).await.expect("build");
        assert_eq!(
            (
                info.index_type.as_str(),
                info.details.num_sub_vectors.unwrap_or(0)
            ),
            ("IVF_FLAT", 0)
        );
        let mut hits = 0;
        for q in 0..50 {
            // Searches take the index's distance type when none is given.
            let indexed = search(
                &t,
                &VectorSearch {
                    nprobes: Some(16),
                    ..query(data, q, 10)
                },
            )
            .await
            .expect("search");
            let exact = search(
                &t,
                &VectorSearch {
                    bypass_index: true,
                    distance_type: Some(distance),
                    ..query(data, q, 10)
                },
            )
            .await
            .expect("exact");
            let truth = ids(&exact);
            hits += ids(&indexed).iter().filter(|i| truth.contains(i)).count();
            // Flat distances are exact.
            let d = indexed.column_by_name("_distance").expect("distance");
            let e = exact.column_by_name("_distance").expect("distance");
            assert!(
                (d.as_primitive::<Float32Type>().value(0)
                    - e.as_primitive::<Float32Type>().value(0))
                .abs()
                    < 1e-4
            );
        }
        assert!(
            hits as f64 / 500.0 >= 0.9,
            "{distance:?} flat recall {}",
            hits as f64 / 500.0
        );
    }

    let bad = |params: VectorIndexParams| CreateIndexOptions {
        config: Some(params.into()),
        ..ivf_pq()
    };
    for (options, needle) in [
        (
            bad(VectorIndexParams {
                num_sub_vectors: Some(7),
                ..Default::default()
            }),
            "numSubVectors",
        ),
        (
            bad(VectorIndexParams {
                num_bits: Some(4),
                ..Default::default()
            }),
            "numBits",
        ),
        (
            bad(VectorIndexParams {
                distance_type: DistanceType::Hamming,
                ..Default::default()
            }),
            "hamming",
        ),
    ] {
        let err = create_index(&t, "vector", options).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(ref m) if m.contains(needle)),
            "{err}"
        );
    }
    let err = create_index(&t, "id", ivf_pq()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = create_index(&t, "missing", ivf_pq()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");

    // A table smaller than a PQ codebook still builds (fewer codes) and searches exactly.
    let tiny = create(&db, "tiny", 0..40).await;
    create_index(&tiny, "vector", ivf_pq())
        .await
        .expect("tiny build");
    let got = search(
        &tiny,
        &VectorSearch {
            refine_factor: Some(10),
            ..query(data, 0, 5)
        },
    )
    .await
    .expect("search");
    assert_eq!(got.num_rows(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mostly_null_vectors_ranges_and_optimize_after_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().to_str().expect("utf-8 path").to_string();
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    // 100 rows, 95 of them without a vector: fewer trainable vectors than default partitions.
    let t = sparse_table(
        &db,
        "sparse",
        100,
        |i| (i % 97) as f32 / 10.0,
        |i| i % 20 == 0,
    )
    .await;
    for kind in [IndexKind::IvfPq, IndexKind::IvfFlat] {
        let options = CreateIndexOptions {
            config: Some(
                VectorIndexParams {
                    kind,
                    ..Default::default()
                }
                .into(),
            ),
            ..ivf_pq()
        };
        let info = create_index(&t, "vector", options).await.expect("build");
        assert!(
            info.details.num_partitions.unwrap_or(0) <= 5,
            "one partition per trainable vector at most: {info:?}"
        );
        let q = VectorSearch {
            query: vec![0.0, 0.1, 0.2, 0.3],
            k: 10,
            ..Default::default()
        };
        let got = search(&t, &q).await.expect("search");
        assert_eq!(got.num_rows(), 5, "only rows with vectors rank");
        // Reopened (decoded from the file) it searches the same.
        let t2 = Database::connect(&uri, ConnectOptions::default())
            .await
            .expect("connect")
            .open_table("sparse")
            .await
            .expect("open");
        assert_eq!(ids(&search(&t2, &q).await.expect("search")), ids(&got));
        // A distance range keeps k rows in range when that many exist (flat: exact distances).
        let all = search(
            &t,
            &VectorSearch {
                bypass_index: true,
                ..q.clone()
            },
        )
        .await
        .expect("exact");
        let d = all
            .column_by_name("_distance")
            .expect("distance")
            .as_primitive::<Float32Type>();
        let lower = d.value(2);
        let ranged = search(
            &t,
            &VectorSearch {
                distance_range: (Some(lower), None),
                ..q.clone()
            },
        )
        .await
        .expect("ranged");
        assert_eq!(ids(&ranged), ids(&all)[2..].to_vec(), "{kind:?}");
    }
    // optimize() after another handle dropped the index does not bring it back (a rewrite also
    // checks, at commit, that the index is still the one it was computed from).
    let stale = db.open_table("sparse").await.expect("open");
    t.append(
        batches_stream(vec![RecordBatch::try_new(
            t.schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(100..101)),
                Arc::new(
                    FixedSizeListArray::try_new(
                        common::item(DataType::Float32),
                        4,
                        Arc::new(Float32Array::from(vec![1.0, 2.0, 3.0, 4.0])),
                        None,
                    )
                    .expect("list"),
                ),
            ],
        )
        .expect("batch")]),
        WriteParams::default(),
    )
    .await
    .expect("append");
    drop_index(&t, "vector_idx").await.expect("drop");
    stale.checkout_latest().await.expect("latest");
    assert_eq!(
        optimize_indices(&stale)
            .await
            .expect("optimize")
            .indexes_optimized,
        0
    );
    assert!(list_indices(&stale).expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivf_flat_hamming_on_binary_vectors() {
    use arrow_array::UInt8Array;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let (rows, bytes) = (3000usize, 16i32);
    let values: Vec<u8> = (0..rows * bytes as usize).map(|_| rng.random()).collect();
    let list = FixedSizeListArray::try_new(
        common::item(DataType::UInt8),
        bytes,
        Arc::new(UInt8Array::from(values.clone())),
        None,
    )
    .expect("list");
    let b = common::id_vector_batch("bits", list);
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let t = db
        .create_table(
            "bits",
            b.schema(),
            batches_stream(vec![b]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
    let options = CreateIndexOptions {
        config: Some(
            VectorIndexParams {
                kind: IndexKind::IvfFlat,
                distance_type: DistanceType::Hamming,
                num_partitions: Some(8),
                ..Default::default()
            }
            .into(),
        ),
        ..ivf_pq()
    };
    let info = create_index(&t, "bits", options).await.expect("build");
    assert_eq!(
        (
            info.details.distance_type.as_deref().unwrap_or(""),
            info.details.num_partitions.unwrap_or(0)
        ),
        ("hamming", 8)
    );
    for q in 0..20 {
        let query: Vec<f64> = values[q * 16..(q + 1) * 16]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let base = VectorSearch {
            query,
            k: 5,
            ..Default::default()
        };
        // Probing every partition gives exactly the exact search's distances.
        let (indexed, stats) = search_with_stats(
            &t,
            &VectorSearch {
                nprobes: Some(8),
                ..base.clone()
            },
        )
        .await
        .expect("search");
        assert_eq!(stats.index.as_deref(), Some("bits_idx"));
        let exact = search(
            &t,
            &VectorSearch {
                bypass_index: true,
                ..base.clone()
            },
        )
        .await
        .expect("exact");
        let distances = |b: &RecordBatch| {
            b.column_by_name("_distance")
                .expect("d")
                .as_primitive::<Float32Type>()
                .values()
                .to_vec()
        };
        assert_eq!(distances(&indexed), distances(&exact));
        assert_eq!(
            distances(&indexed)[0],
            0.0,
            "a row is at distance 0 from itself"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_index_concurrent_with_appends_and_deletes() {
    let data = dataset();
    let db = Database::connect("memory://race", ConnectOptions::default())
        .await
        .expect("connect");
    let t = create(&db, "race", 0..5_000).await;
    let other = db.open_table("race").await.expect("open");
    let build = {
        let t = t.clone();
        tokio::spawn(async move {
            let options = CreateIndexOptions {
                config: Some(
                    VectorIndexParams {
                        num_partitions: Some(16),
                        ..Default::default()
                    }
                    .into(),
                ),
                ..ivf_pq()
            };
            create_index(&t, "vector", options).await
        })
    };
    // Meanwhile another handle appends rows and deletes some indexed ones.
    for chunk in 0..4 {
        let start = 5_000 + chunk * 250;
        other
            .append(
                batches_stream(vec![batch(data, start..start + 250)]),
                WriteParams::default(),
            )
            .await
            .expect("append");
    }
    other.delete("id < 10").await.expect("delete");
    build.await.expect("join").expect("build");
    t.checkout_latest().await.expect("latest");
    let stats = index_stats(&t, "vector_idx").expect("stats");
    assert_eq!(stats.num_indexed_rows + stats.num_unindexed_rows, 5_990);
    // Every live row is found by its own vector; deleted ones never.
    for id in [3usize, 10, 2_500, 5_100, 5_999] {
        let q = VectorSearch {
            query: data.base[id * data.dim..(id + 1) * data.dim]
                .iter()
                .map(|&v| v as f64)
                .collect(),
            k: 1,
            ..Default::default()
        };
        let got = ids(&search(&t, &q).await.expect("search"));
        if id < 10 {
            assert_ne!(got, vec![id as i64], "deleted row {id} came back");
        } else {
            assert_eq!(got, vec![id as i64]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hnsw_sq_recall_ef_filters_updates_and_reopen() {
    let data = dataset();
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().to_str().expect("utf-8").to_string();
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let t = create(&db, "graph", 0..50_000).await;
    let phases = Arc::new(Mutex::new(Vec::<BuildProgress>::new()));
    let seen = phases.clone();
    let options = CreateIndexOptions {
        config: Some(
            VectorIndexParams {
                kind: IndexKind::IvfHnswSq,
                ef_construction: Some(100),
                ..Default::default()
            }
            .into(),
        ),
        progress: Some(Arc::new(move |p| seen.lock().unwrap().push(p))),
        ..Default::default()
    };
    let info = create_index(&t, "vector", options).await.expect("build");
    assert_eq!(info.index_type, "IVF_HNSW_SQ");
    assert_eq!(
        info.details.num_partitions,
        Some(1),
        "one graph below 1M rows"
    );
    assert_eq!(
        (info.details.m, info.details.ef_construction),
        (Some(20), Some(100))
    );
    let phases = phases.lock().unwrap().clone();
    for phase in ["sample", "encode", "graph", "calibrate", "write"] {
        let last = phases.iter().rfind(|p| p.phase == phase).expect(phase);
        assert_eq!(last.done, last.total, "{phase} ends complete");
    }
    let calibration = info.details.calibration.clone().expect("calibrated");
    let chosen = *calibration.chosen().expect("a setting");
    assert!(chosen.ef > 0 && chosen.recall >= 0.95, "{calibration:?}");

    let (default_recall, sizes) = recall(&t, 200, |s| s, &data.gt).await;
    assert!(sizes.iter().all(|&n| n == 10));
    assert!(
        default_recall >= 0.93,
        "recall@10 at defaults: {default_recall} ({chosen:?})"
    );
    let (wide, _) = recall(
        &t,
        200,
        |s| VectorSearch {
            ef: Some(256),
            refine_factor: Some(2),
            ..s
        },
        &data.gt,
    )
    .await;
    // (Not compared with the defaults: those clear 0.95 by three standard errors and may sit
    // at any ef, the build's parallel linking varying the graph slightly run to run.)
    assert!(wide >= 0.98, "ef 256: {wide}");
    let (narrow, _) = recall(
        &t,
        200,
        |s| VectorSearch {
            ef: Some(10),
            refine_factor: Some(1),
            ..s
        },
        &data.gt,
    )
    .await;
    assert!(narrow < wide, "ef acts: {narrow} vs {wide}");
    // An `ef` beyond the graph walks all of it (nothing is sized by the number itself).
    let all = search(
        &t,
        &VectorSearch {
            ef: Some(u32::MAX as usize),
            refine_factor: Some(u32::MAX),
            ..query(data, 0, 10)
        },
    )
    .await
    .expect("search");
    assert_eq!(all.num_rows(), 10);

    // A prefilter keeps recall and returns exactly k rows.
    let filter = t.parse_filter("category < 10").expect("filter");
    let (filtered, sizes) = recall(
        &t,
        200,
        |s| VectorSearch {
            filter: Some(filter.clone()),
            ..s
        },
        &data.gt_filtered,
    )
    .await;
    assert!(sizes.iter().all(|&n| n == 10));
    assert!(filtered >= 0.93, "prefiltered recall@10: {filtered}");

    // Appended rows are found at once, deleted ones never; optimize links them in.
    t.append(
        batches_stream(vec![batch(data, 0..10)]),
        WriteParams::default(),
    )
    .await
    .expect("append");
    t.delete("id < 5").await.expect("delete");
    let got = search(
        &t,
        &VectorSearch {
            with_row_id: true,
            ..query_of_row(data, 7)
        },
    )
    .await
    .expect("search");
    let hits = ids(&got);
    assert_eq!(
        hits.iter().filter(|&&i| i == 7).count(),
        2,
        "the row and its copy"
    );
    let got = search(&t, &query_of_row(data, 2)).await.expect("search");
    assert!(
        ids(&got).iter().all(|&i| i != 2),
        "deleted rows never return"
    );
    optimize_indices(&t).await.expect("optimize");
    let stats = index_stats(&t, "vector_idx").expect("stats");
    assert_eq!(stats.num_unindexed_rows, 0);
    assert_eq!(stats.num_indexed_rows, 50_000);
    let got = search(&t, &query_of_row(data, 7)).await.expect("search");
    assert_eq!(ids(&got).iter().filter(|&&i| i == 7).count(), 2);

    // A fresh connection loads the graph on first use and finds the same rows.
    let db2 = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let t2 = db2.open_table("graph").await.expect("open");
    let (reopened, _) = recall(&t2, 50, |s| s, &data.gt).await;
    let (same, _) = recall(&t, 50, |s| s, &data.gt).await;
    assert_eq!(reopened, same);
    assert!(reopened >= 0.9);

    // Hamming is refused with a clear error.
    let bad = create_index(
        &t,
        "vector",
        CreateIndexOptions {
            config: Some(
                VectorIndexParams {
                    kind: IndexKind::IvfHnswSq,
                    distance_type: DistanceType::Hamming,
                    ..Default::default()
                }
                .into(),
            ),
            ..Default::default()
        },
    )
    .await;
    assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
}

/// A search for the stored vector of row `row`.
fn query_of_row(data: &Dataset, row: usize) -> VectorSearch {
    VectorSearch {
        query: data.base[row * data.dim..(row + 1) * data.dim]
            .iter()
            .map(|&v| f64::from(v))
            .collect(),
        k: 10,
        ..Default::default()
    }
}

/// Vectors uniform on the sphere, and an index whose codes cannot tell them apart (2 PQ
/// sub-vectors of 32 dimensions): no setting reaches the target, so the calibrated default is
/// exact search, shown in the plan; explicit settings and lower targets still use the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_falls_back_to_exact_search_where_the_index_cannot_reach_the_target() {
    use rand::{Rng, SeedableRng};
    let (rows, dim) = (20_000usize, 64usize);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut values = Vec::with_capacity(rows * dim);
    for _ in 0..rows {
        // Sums of uniforms approximate a Gaussian; normalised, the rows are uniform on the sphere.
        let v: Vec<f32> = (0..dim)
            .map(|_| (0..4).map(|_| rng.random::<f32>() - 0.5).sum())
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        values.extend(v.iter().map(|x| x / norm));
    }
    let list = FixedSizeListArray::try_new(
        common::item(DataType::Float32),
        dim as i32,
        Arc::new(Float32Array::from(values.clone())),
        None,
    )
    .expect("list");
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "vector",
                common::vector_type(DataType::Float32, dim as i32),
                true,
            ),
        ])),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows as i64)),
            Arc::new(list),
        ],
    )
    .expect("batch");
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let t = db
        .create_table(
            "sphere",
            batch.schema(),
            batches_stream(vec![batch]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
    let options = CreateIndexOptions {
        config: Some(
            VectorIndexParams {
                num_sub_vectors: Some(2),
                ..Default::default()
            }
            .into(),
        ),
        ..Default::default()
    };
    let info = create_index(&t, "vector", options).await.expect("build");
    let calibration = info.details.calibration.clone().expect("calibrated");
    let last = calibration.points.last().expect("points");
    assert!(last.is_exact() && last.recall == 1.0, "{calibration:?}");
    let best = calibration.best_index_setting().expect("index settings");
    assert!(
        best.recall < 0.95,
        "the codes cannot tell the rows apart: {calibration:?}"
    );
    assert!(calibration.chosen().is_some_and(|p| p.is_exact()));

    let probe = VectorSearch {
        query: values[7 * dim..8 * dim]
            .iter()
            .map(|&v| f64::from(v))
            .collect(),
        k: 10,
        ..Default::default()
    };
    let plan = explain_search(&t, &probe)
        .expect("explain")
        .render(false, None);
    assert!(
        plan.contains("ExactSearch") && plan.contains("calibrated: no setting of the index"),
        "{plan}"
    );
    let (got, stats) = search_with_stats(&t, &probe).await.expect("search");
    assert_eq!(stats.index, None);
    let exact = search(
        &t,
        &VectorSearch {
            bypass_index: true,
            ..probe.clone()
        },
    )
    .await
    .expect("exact");
    assert_eq!(ids(&got), ids(&exact));
    // Explicit settings, or a target some setting reaches more cheaply than a scan, search
    // the index.
    let cheapest = &calibration.points[0];
    assert!(
        !cheapest.is_exact() && cheapest.cost_us < last.cost_us,
        "{calibration:?}"
    );
    for search in [
        VectorSearch {
            nprobes: Some(3),
            ..probe.clone()
        },
        VectorSearch {
            target_recall: Some(cheapest.recall * 0.5),
            ..probe.clone()
        },
    ] {
        let (got, stats) = search_with_stats(&t, &search).await.expect("search");
        assert_eq!(stats.index.as_deref(), Some("vector_idx"));
        assert_eq!(got.num_rows(), 10);
    }
}

fn ivf_rq(bits: Option<u32>, distance_type: DistanceType) -> CreateIndexOptions {
    CreateIndexOptions {
        config: Some(
            VectorIndexParams {
                kind: IndexKind::IvfRq,
                num_bits: bits,
                distance_type,
                ..Default::default()
            }
            .into(),
        ),
        replace: true,
        ..Default::default()
    }
}

/// IVF_RQ (RaBitQ codes): calibrated recall, more bits finding more, the error bound pruning
/// candidates, prefilters, cosine and dot, appended and deleted rows, optimize and reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivf_rq_recall_bits_bounds_updates_and_reopen() {
    let data = dataset();
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().to_str().expect("utf-8").to_string();
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let t = create(&db, "rq", 0..50_000).await;
    let info = create_index(&t, "vector", ivf_rq(None, DistanceType::L2))
        .await
        .expect("build");
    assert_eq!(info.index_type, "IVF_RQ");
    assert_eq!(info.details.num_bits, Some(1));
    assert_eq!(info.details.num_partitions, Some(224));
    let calibration = info.details.calibration.clone().expect("calibrated");
    let chosen = *calibration.chosen().expect("a setting");
    assert!(
        !chosen.is_exact() && chosen.recall >= 0.95,
        "{calibration:?}"
    );
    let (default_recall, sizes) = recall(&t, 200, |s| s, &data.gt).await;
    assert!(sizes.iter().all(|&n| n == 10));
    assert!(
        default_recall >= 0.93,
        "recall@10 at defaults: {default_recall} ({chosen:?})"
    );
    // The error bound rules candidates out before the re-rank reads them.
    let (_, plan) = analyze_search(
        &t,
        &VectorSearch {
            nprobes: Some(20),
            refine_factor: Some(200),
            ..query(data, 3, 10)
        },
    )
    .await
    .expect("analyze");
    let node = plan.find("Refine").expect("refine node");
    let pruned: usize = node
        .detail("pruned_by_error_bound")
        .and_then(|v| v.parse().ok())
        .expect("pruned figure");
    assert!(pruned > 0 && pruned < 2000, "pruned {pruned} of 2000");
    let ranked = node.metrics.as_ref().map_or(0, |m| m.rows_ranked);
    assert_eq!(ranked, 2000 - pruned as u64, "pruned rows are never read");
    // What it returns is what ranking every candidate exactly returns.
    let unpruned = search(
        &t,
        &VectorSearch {
            bypass_index: true,
            ..query(data, 3, 10)
        },
    )
    .await
    .expect("exact");
    let pruned_search = search(
        &t,
        &VectorSearch {
            nprobes: Some(224),
            refine_factor: Some(200),
            ..query(data, 3, 10)
        },
    )
    .await
    .expect("search");
    assert_eq!(ids(&pruned_search), ids(&unpruned));
    let one_bit = |s: VectorSearch| VectorSearch {
        nprobes: Some(20),
        refine_factor: Some(1),
        ..s
    };
    let (coarse, _) = recall(&t, 100, one_bit, &data.gt).await;

    // Four bits per dimension estimate better: more true neighbours without re-ranking.
    let info = create_index(&t, "vector", ivf_rq(Some(4), DistanceType::L2))
        .await
        .expect("build 4 bits");
    assert_eq!(info.details.num_bits, Some(4));
    let (fine, _) = recall(&t, 100, one_bit, &data.gt).await;
    assert!(fine > coarse + 0.05, "4 bits {fine} vs 1 bit {coarse}");
    for bits in [0, 9] {
        let bad = create_index(&t, "vector", ivf_rq(Some(bits), DistanceType::L2)).await;
        assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");
    }
    let bad = create_index(&t, "vector", ivf_rq(None, DistanceType::Hamming)).await;
    assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");

    // Back to one bit; a prefilter keeps recall and returns exactly k rows.
    create_index(&t, "vector", ivf_rq(None, DistanceType::L2))
        .await
        .expect("rebuild");
    let filter = t.parse_filter("category < 10").expect("filter");
    let (filtered, sizes) = recall(
        &t,
        200,
        |s| VectorSearch {
            filter: Some(filter.clone()),
            ..s
        },
        &data.gt_filtered,
    )
    .await;
    assert!(sizes.iter().all(|&n| n == 10));
    assert!(filtered >= 0.93, "prefiltered recall@10: {filtered}");

    appends_deletes_optimize_and_reopen(&t, &uri, "rq").await;
    agrees_with_exact_search_under_cosine_and_dot(&db, "rq", |distance| {
        (
            ivf_rq(None, distance),
            VectorSearch {
                nprobes: Some(20),
                refine_factor: Some(10),
                ..Default::default()
            },
        )
    })
    .await;
}

/// Appends copies of rows 0..10 and deletes ids below 5 on `t` (50,000 indexed rows, table
/// `name` at `uri`): appended rows are found at once, deleted ones never, `optimize` folds
/// them in, and a fresh connection answers as this one does.
async fn appends_deletes_optimize_and_reopen(t: &Table, uri: &str, name: &str) {
    let data = dataset();
    t.append(
        batches_stream(vec![batch(data, 0..10)]),
        WriteParams::default(),
    )
    .await
    .expect("append");
    t.delete("id < 5").await.expect("delete");
    let got = search(t, &query_of_row(data, 7)).await.expect("search");
    assert_eq!(ids(&got).iter().filter(|&&i| i == 7).count(), 2);
    let got = search(t, &query_of_row(data, 2)).await.expect("search");
    assert!(
        ids(&got).iter().all(|&i| i != 2),
        "deleted rows never return"
    );
    optimize_indices(t).await.expect("optimize");
    let stats = index_stats(t, "vector_idx").expect("stats");
    assert_eq!(
        (stats.num_unindexed_rows, stats.num_indexed_rows),
        (0, 50_000)
    );
    let got = search(t, &query_of_row(data, 7)).await.expect("search");
    assert_eq!(ids(&got).iter().filter(|&&i| i == 7).count(), 2);
    // Appends alone: graphs take the new rows in without relinking the ones they hold.
    let (before, _) = recall(t, 50, |s| s, &data.gt).await;
    t.append(
        batches_stream(vec![batch(data, 10..20)]),
        WriteParams::default(),
    )
    .await
    .expect("append");
    optimize_indices(t).await.expect("optimize");
    let stats = index_stats(t, "vector_idx").expect("stats");
    assert_eq!(
        (stats.num_unindexed_rows, stats.num_indexed_rows),
        (0, 50_010)
    );
    let got = search(t, &query_of_row(data, 15)).await.expect("search");
    assert_eq!(ids(&got).iter().filter(|&&i| i == 15).count(), 2);
    let (after, _) = recall(t, 50, |s| s, &data.gt).await;
    assert!(
        after >= before - 0.02,
        "recall {before} before the append, {after} after"
    );
    // A fresh connection reads the model and partitions from the file.
    let db2 = Database::connect(uri, ConnectOptions::default())
        .await
        .expect("connect");
    let t2 = db2.open_table(name).await.expect("open");
    let (reopened, _) = recall(&t2, 50, |s| s, &data.gt).await;
    let (same, _) = recall(t, 50, |s| s, &data.gt).await;
    assert_eq!(reopened, same);
}

/// For cosine and dot, an index built by `build(distance)` on 8,000 rows, searched with the
/// settings it gives, finds at least 90% of exact search's top 10 over 30 queries.
async fn agrees_with_exact_search_under_cosine_and_dot(
    db: &Database,
    prefix: &str,
    build: impl Fn(DistanceType) -> (CreateIndexOptions, VectorSearch),
) {
    let data = dataset();
    for distance in [DistanceType::Cosine, DistanceType::Dot] {
        let small = create(db, &format!("{prefix}_{distance}"), 0..8_000).await;
        let (options, settings) = build(distance);
        create_index(&small, "vector", options)
            .await
            .expect("build");
        let mut hits = 0;
        for q in 0..30 {
            let probe = VectorSearch {
                distance_type: Some(distance),
                nprobes: settings.nprobes,
                refine_factor: settings.refine_factor,
                ef: settings.ef,
                ..query(data, q, 10)
            };
            let got = ids(&search(&small, &probe).await.expect("search"));
            let want = ids(&search(
                &small,
                &VectorSearch {
                    bypass_index: true,
                    ..probe
                },
            )
            .await
            .expect("exact"));
            hits += got.iter().filter(|i| want.contains(i)).count();
        }
        assert!(hits >= 270, "{distance}: {hits} of 300");
    }
}

/// IVF_HNSW_PQ: graphs linked over PQ codes, calibrated `ef` and refine, `ef` acting,
/// prefilters, appended and deleted rows, optimize and reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hnsw_pq_recall_ef_filters_updates_and_reopen() {
    let data = dataset();
    let dir = tempfile::tempdir().expect("tempdir");
    let uri = dir.path().to_str().expect("utf-8").to_string();
    let db = Database::connect(&uri, ConnectOptions::default())
        .await
        .expect("connect");
    let t = create(&db, "graph_pq", 0..50_000).await;
    let options = CreateIndexOptions {
        config: Some(
            VectorIndexParams {
                kind: IndexKind::IvfHnswPq,
                ef_construction: Some(100),
                num_sub_vectors: Some(32),
                ..Default::default()
            }
            .into(),
        ),
        ..Default::default()
    };
    let info = create_index(&t, "vector", options).await.expect("build");
    assert_eq!(info.index_type, "IVF_HNSW_PQ");
    assert_eq!(
        (
            info.details.num_partitions,
            info.details.num_sub_vectors,
            info.details.m
        ),
        (Some(1), Some(32), Some(20))
    );
    let calibration = info.details.calibration.clone().expect("calibrated");
    let chosen = *calibration.chosen().expect("a setting");
    assert!(
        !chosen.is_exact() && chosen.ef > 0 && chosen.recall >= 0.95,
        "{calibration:?}"
    );
    let (default_recall, sizes) = recall(&t, 200, |s| s, &data.gt).await;
    assert!(sizes.iter().all(|&n| n == 10));
    assert!(
        default_recall >= 0.93,
        "recall@10 at defaults: {default_recall} ({chosen:?})"
    );
    let at = |ef: usize| {
        move |s: VectorSearch| VectorSearch {
            ef: Some(ef),
            refine_factor: Some(4),
            ..s
        }
    };
    let (narrow, _) = recall(&t, 100, at(10), &data.gt).await;
    let (wide, _) = recall(&t, 100, at(200), &data.gt).await;
    assert!(
        narrow < wide && wide >= 0.95,
        "ef 10: {narrow}, ef 200: {wide}"
    );
    let filter = t.parse_filter("category < 10").expect("filter");
    let (filtered, sizes) = recall(
        &t,
        200,
        |s| VectorSearch {
            filter: Some(filter.clone()),
            ..s
        },
        &data.gt_filtered,
    )
    .await;
    assert!(sizes.iter().all(|&n| n == 10));
    assert!(filtered >= 0.93, "prefiltered recall@10: {filtered}");

    appends_deletes_optimize_and_reopen(&t, &uri, "graph_pq").await;
    agrees_with_exact_search_under_cosine_and_dot(&db, "graph_pq", |distance| {
        (
            CreateIndexOptions {
                config: Some(
                    VectorIndexParams {
                        kind: IndexKind::IvfHnswPq,
                        distance_type: distance,
                        ..Default::default()
                    }
                    .into(),
                ),
                ..Default::default()
            },
            VectorSearch {
                ef: Some(200),
                refine_factor: Some(10),
                ..Default::default()
            },
        )
    })
    .await;
}
/// A table of `rows` rows (`id`, 4-wide `vector` holding `value(i)` at element `i`) whose
/// vectors are valid only at `valid` offsets.
async fn sparse_table(
    db: &Database,
    name: &str,
    rows: usize,
    value: impl Fn(usize) -> f32,
    valid: impl Fn(usize) -> bool,
) -> Table {
    use arrow_buffer::NullBuffer;
    let dim = 4i32;
    let values = Float32Array::from_iter_values((0..rows * dim as usize).map(value));
    let validity = NullBuffer::from((0..rows).map(valid).collect::<Vec<bool>>());
    let list = FixedSizeListArray::try_new(
        common::item(DataType::Float32),
        dim,
        Arc::new(values),
        Some(validity),
    )
    .expect("list");
    let b = common::id_vector_batch("vector", list);
    db.create_table(
        name,
        b.schema(),
        batches_stream(vec![b]),
        CreateMode::Create,
        WriteParams::default(),
    )
    .await
    .expect("create")
}

#[tokio::test]
async fn a_column_whose_only_vectors_are_held_out_for_calibration_still_trains() {
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    // The first fragment's number, as the tables below get it.
    let probe = sparse_table(&db, "probe", 2_000, |i| i as f32, |_| true).await;
    let rows = common::row_ids_of(
        &probe
            .scan_all(quiver_engine::ScanOptions {
                with_row_id: true,
                ..Default::default()
            })
            .await
            .expect("scan"),
    );
    let fragment = rows[0] >> 32;
    // 2,000 rows: one in four is a possible calibration query; only three of those have a
    // vector, so the training sample proper is empty.
    let held =
        |i: usize| quiver_engine::index::calibrate::holds_out((fragment << 32) | i as u64, 4);
    let chosen: Vec<usize> = (0..2_000).filter(|&i| held(i)).take(3).collect();
    assert_eq!(chosen.len(), 3);
    let t = sparse_table(&db, "held", 2_000, |i| i as f32, |i| chosen.contains(&i)).await;
    let info = create_index(&t, "vector", ivf_pq())
        .await
        .expect("trains on the held-out rows");
    assert!(
        info.details.calibration.is_none(),
        "too few rows to calibrate"
    );
    let got = search(
        &t,
        &VectorSearch {
            query: vec![0.0; 4],
            k: 10,
            ..Default::default()
        },
    )
    .await
    .expect("search");
    assert_eq!(got.num_rows(), 3);
}
