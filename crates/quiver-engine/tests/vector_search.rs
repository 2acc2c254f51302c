//! Exact vector search: results match a brute-force reference for every distance type,
//! respect k, distance ranges, deletions and projections, and bad queries are typed errors.

mod common;

use std::sync::Arc;

use arrow_array::{Array, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, UInt8Array};
use arrow_schema::{DataType, Field, Schema};
use quiver_engine::linalg::DistanceType;
use quiver_engine::query::{search as exact_search, VectorSearch};
use quiver_engine::storage::StorageOptions;
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, Error, Table, WriteParams,
};
use rand::{Rng, SeedableRng};

const DIM: i32 = 8;

fn random_table_batch(rows: usize, seed: u64) -> (RecordBatch, Vec<Vec<f32>>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let vectors: Vec<Vec<f32>> = (0..rows)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let values = Float32Array::from_iter_values(vectors.iter().flatten().copied());
    let list =
        FixedSizeListArray::try_new(common::item(DataType::Float32), DIM, Arc::new(values), None)
            .expect("list");
    let batch = common::id_vector_batch("vector", list);
    (batch, vectors)
}

/// Where a test table lives: exact search streams local files (through `pread`, or memory
/// maps) and reads other stores through the async scan; all three are tested.
#[derive(Debug)]
struct Store {
    uri: String,
    memory_map: bool,
}

impl Store {
    async fn connect(&self) -> Database {
        let options = ConnectOptions {
            storage: Some(StorageOptions {
                memory_map: self.memory_map,
                ..Default::default()
            }),
            ..Default::default()
        };
        Database::connect(&self.uri, options)
            .await
            .expect("connect")
    }
}

/// A memory store, a local folder and a memory-mapped local folder (kept alive by the guard).
fn stores() -> (tempfile::TempDir, Vec<Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let local = |sub: &str| {
        dir.path()
            .join(sub)
            .to_str()
            .expect("utf-8 path")
            .to_string()
    };
    let stores = vec![
        Store {
            uri: "memory://".into(),
            memory_map: false,
        },
        Store {
            uri: local("plain"),
            memory_map: false,
        },
        Store {
            uri: local("mapped"),
            memory_map: true,
        },
    ];
    (dir, stores)
}

/// A table of `rows` random vectors in files of 300 rows and pages of about 128 rows.
async fn table_in(store: &Store, rows: usize) -> (Table, Vec<Vec<f32>>) {
    let (batch, vectors) = random_table_batch(rows, 11);
    let params = WriteParams {
        max_rows_per_file: 300,
        page_size: 4096,
        ..Default::default()
    };
    let t = store
        .connect()
        .await
        .create_table(
            "t",
            batch.schema(),
            batches_stream(vec![batch]),
            CreateMode::Create,
            params,
        )
        .await
        .expect("create");
    (t, vectors)
}

async fn table(rows: usize) -> (Table, Vec<Vec<f32>>) {
    let memory = Store {
        uri: "memory://".into(),
        memory_map: false,
    };
    table_in(&memory, rows).await
}

/// The column `name` of `batch` as a `T`.
fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} has another type"))
}

fn reference(vectors: &[Vec<f32>], q: &[f32], d: DistanceType) -> Vec<(i64, f64)> {
    let mut all: Vec<(i64, f64)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let dot: f64 = v.iter().zip(q).map(|(a, b)| *a as f64 * *b as f64).sum();
            let dist = match d {
                DistanceType::L2 => v
                    .iter()
                    .zip(q)
                    .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                    .sum(),
                DistanceType::Dot => -dot,
                DistanceType::Cosine => {
                    let na: f64 = v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
                    let nb: f64 = q.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
                    1.0 - dot / (na * nb)
                }
                DistanceType::Hamming => unreachable!(),
            };
            (i as i64, dist)
        })
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    all
}

fn search(q: &[f32], k: usize, d: DistanceType) -> VectorSearch {
    VectorSearch {
        column: None,
        query: q.iter().map(|v| *v as f64).collect(),
        k,
        distance_type: Some(d),
        ..Default::default()
    }
}

#[tokio::test]
async fn matches_brute_force_for_every_distance() {
    let (_dir, stores) = stores();
    for store in &stores {
        let (t, vectors) = table_in(store, 1000).await;
        let q: Vec<f32> = (0..DIM).map(|i| i as f32 / 10.0 - 0.3).collect();
        for d in [DistanceType::L2, DistanceType::Cosine, DistanceType::Dot] {
            let got = exact_search(&t, &search(&q, 10, d)).await.expect("search");
            let want = reference(&vectors, &q, d);
            let ids = column::<Int64Array>(&got, "id");
            let dist = column::<Float32Array>(&got, "_distance");
            assert_eq!(got.num_rows(), 10);
            for (i, want) in want.iter().take(10).enumerate() {
                assert_eq!(ids.value(i), want.0, "{store:?} {d:?} rank {i}");
                assert!((dist.value(i) as f64 - want.1).abs() < 1e-4);
            }
        }
    }
}

#[tokio::test]
async fn k_larger_than_the_table_ranges_and_deletions() {
    let (_dir, stores) = stores();
    for store in &stores {
        k_ranges_and_deletions_in(store).await;
    }
}

async fn k_ranges_and_deletions_in(store: &Store) {
    let (t, vectors) = table_in(store, 50).await;
    let q = vectors[7].clone();
    let all = exact_search(&t, &search(&q, 500, DistanceType::L2))
        .await
        .expect("search");
    assert_eq!(all.num_rows(), 50);
    let ids = column::<Int64Array>(&all, "id");
    assert_eq!(ids.value(0), 7, "a row's own vector is its nearest");
    t.delete_rows(&[7]).await.expect("delete");
    let after = exact_search(&t, &search(&q, 1, DistanceType::L2))
        .await
        .expect("search");
    let first = column::<Int64Array>(&after, "id").value(0);
    assert_ne!(first, 7, "deleted rows are not returned");
    let mut ranged = search(&q, 100, DistanceType::L2);
    ranged.distance_range = (Some(0.5), Some(1.0));
    let r = exact_search(&t, &ranged).await.expect("search");
    let d = column::<Float32Array>(&r, "_distance");
    assert!(d.values().iter().all(|v| (0.5..1.0).contains(v)));
    let mut projected = search(&q, 3, DistanceType::L2);
    projected.columns = Some(vec!["id".into()]);
    projected.with_row_id = true;
    let p = exact_search(&t, &projected).await.expect("search");
    let names: Vec<String> = p
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, vec!["id", "_rowid", "_distance"]);
}

#[tokio::test]
async fn bad_queries_are_invalid_arguments() {
    let (t, _) = table(10).await;
    for (q, d) in [
        (vec![0.0; 3], DistanceType::L2),
        (vec![f32::NAN; DIM as usize], DistanceType::L2),
        (vec![0.0; DIM as usize], DistanceType::Hamming),
    ] {
        let err = exact_search(&t, &search(&q, 1, d)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }
    let mut s = search(&[0.0; DIM as usize], 1, DistanceType::L2);
    s.column = Some("id".into());
    assert!(matches!(
        exact_search(&t, &s).await,
        Err(Error::InvalidArgument(_))
    ));
}

#[tokio::test]
async fn hamming_on_binary_vectors() {
    let values = UInt8Array::from(vec![
        0b0000_0000u8,
        0xFF,
        0b1111_0000,
        0x0F,
        0b1000_0000,
        0x00,
    ]);
    let list =
        FixedSizeListArray::try_new(common::item(DataType::UInt8), 2, Arc::new(values), None)
            .expect("list");
    let schema = Arc::new(Schema::new(vec![Field::new(
        "bits",
        common::vector_type(DataType::UInt8, 2),
        true,
    )]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(list)]).expect("batch");
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let t = db
        .create_table(
            "b",
            schema,
            batches_stream(vec![batch]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
    let r = exact_search(&t, &search(&[0.0, 255.0], 3, DistanceType::Hamming))
        .await
        .expect("search");
    let d = column::<Float32Array>(&r, "_distance");
    assert_eq!(d.values().to_vec(), vec![0.0, 8.0, 9.0]);
}

#[tokio::test]
async fn prefilter_returns_k_matching_rows_and_postfilter_filters_the_top_k() {
    let (_dir, stores) = stores();
    for store in &stores {
        prefilter_and_postfilter_in(store).await;
    }
}

async fn prefilter_and_postfilter_in(store: &Store) {
    let (t, vectors) = table_in(store, 1000).await;
    let q = vectors[3].clone();
    let mut pre = search(&q, 10, DistanceType::L2);
    pre.filter = Some(t.parse_filter("id % 10 = 0").expect("filter"));
    let got = exact_search(&t, &pre).await.expect("prefilter search");
    let want: Vec<i64> = reference(&vectors, &q, DistanceType::L2)
        .into_iter()
        .filter(|(id, _)| id % 10 == 0)
        .take(10)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(column::<Int64Array>(&got, "id").values().to_vec(), want);

    let mut post = search(&q, 10, DistanceType::L2);
    post.filter = pre.filter.clone();
    post.postfilter = true;
    let got = exact_search(&t, &post).await.expect("postfilter search");
    let top: Vec<i64> = reference(&vectors, &q, DistanceType::L2)
        .into_iter()
        .take(10)
        .map(|(id, _)| id)
        .filter(|id| id % 10 == 0)
        .collect();
    assert_eq!(column::<Int64Array>(&got, "id").values().to_vec(), top);
    assert!(got.num_rows() < 10);
}

/// Wide vectors (several read runs per page), several fragments, deletions and a prefilter
/// matching half the rows (too many to take one by one): brute force on both stores.
#[tokio::test]
async fn wide_vectors_with_deletions_and_a_broad_prefilter() {
    const WIDE: usize = 128;
    let rows = 6000;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let vectors: Vec<Vec<f32>> = (0..rows)
        .map(|_| (0..WIDE).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let values = Float32Array::from_iter_values(vectors.iter().flatten().copied());
    let list = FixedSizeListArray::try_new(
        common::item(DataType::Float32),
        WIDE as i32,
        Arc::new(values),
        None,
    )
    .expect("list");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "vector",
            common::vector_type(DataType::Float32, WIDE as i32),
            true,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows as i64)),
            Arc::new(list),
        ],
    )
    .expect("batch");
    let q: Vec<f32> = vectors[42].iter().map(|v| v * 0.5).collect();
    let (_dir, stores) = stores();
    for store in &stores {
        let t = store
            .connect()
            .await
            .create_table(
                "wide",
                schema.clone(),
                batches_stream(vec![batch.clone()]),
                CreateMode::Create,
                WriteParams {
                    max_rows_per_file: 2500,
                    ..Default::default()
                },
            )
            .await
            .expect("create");
        t.delete("id % 7 = 3").await.expect("delete");
        for (filter, keep) in [
            (None, (|_| true) as fn(i64) -> bool),
            (Some("id % 2 = 0"), |id| id % 2 == 0),
        ] {
            let mut s = search(&q, 25, DistanceType::L2);
            s.filter = filter.map(|f| t.parse_filter(f).expect("filter"));
            let (got, stats) = quiver_engine::query::search_with_stats(&t, &s)
                .await
                .expect("search");
            let eligible = (0..rows as i64).filter(|&id| id % 7 != 3 && keep(id));
            assert_eq!(
                stats.exact_rows,
                eligible.clone().count() as u64,
                "{store:?}"
            );
            let want: Vec<i64> = reference(&vectors, &q, DistanceType::L2)
                .into_iter()
                .map(|(id, _)| id)
                .filter(|&id| id % 7 != 3 && keep(id))
                .take(25)
                .collect();
            assert_eq!(
                column::<Int64Array>(&got, "id").values().to_vec(),
                want,
                "{store:?} {filter:?}"
            );
        }
    }
}

/// Every element type, with null vectors and null elements, ranks the same on a local store
/// (streamed pages, read or mapped; pages holding nulls read whole) as through the async scan.
#[tokio::test]
async fn every_element_type_ranks_alike_on_both_stores() {
    let (_dir, stores) = stores();
    for (n, element) in [
        DataType::Float16,
        DataType::Float32,
        DataType::Float64,
        DataType::UInt8,
        DataType::Int8,
    ]
    .into_iter()
    .enumerate()
    {
        for null_rate in [0.0, 0.05] {
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("v", common::vector_type(element.clone(), 16), true),
            ]));
            let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(0..700)),
                    common::random_array(schema.field(1).data_type(), 700, &mut rng, null_rate),
                ],
            )
            .expect("batch");
            let q: Vec<f32> = (0..16).map(|i| (i % 5) as f32).collect();
            let mut results = Vec::new();
            for store in &stores {
                let db = store.connect().await;
                let name = format!("t{n}_{}", (null_rate * 100.0) as u32);
                let t = db
                    .create_table(
                        &name,
                        schema.clone(),
                        batches_stream(vec![batch.clone()]),
                        CreateMode::Create,
                        WriteParams {
                            page_size: 4096,
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("create");
                let distances: &[DistanceType] = if element == DataType::UInt8 {
                    &[DistanceType::L2, DistanceType::Hamming]
                } else {
                    &[DistanceType::L2, DistanceType::Cosine]
                };
                for &d in distances {
                    let got = exact_search(&t, &search(&q, 700, d)).await.expect("search");
                    let ids = column::<Int64Array>(&got, "id").values().to_vec();
                    let dist = column::<Float32Array>(&got, "_distance").values().to_vec();
                    if null_rate == 0.0 && d == DistanceType::L2 {
                        assert_eq!(ids.len(), 700, "{element} {store:?}");
                    }
                    results.push((d, ids, dist));
                }
            }
            // Each store's results, in store order: all equal the memory store's.
            let per_store = results.len() / stores.len();
            let (memory, locals) = results.split_at(per_store);
            for (i, local) in locals.iter().enumerate() {
                let memory = &memory[i % per_store];
                assert_eq!(memory, local, "{element} {:?} nulls {null_rate}", memory.0);
            }
        }
    }
}
