//! Exact vector search: results match a brute-force reference for every distance type,
//! respect k, distance ranges, deletions and projections, and bad queries are typed errors.

mod common;

use std::sync::Arc;

use arrow_array::{Array, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, UInt8Array};
use arrow_schema::{DataType, Field, Schema};
use quiver_engine::linalg::DistanceType;
use quiver_engine::query::{search as exact_search, VectorSearch};
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
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("vector", common::vector_type(DataType::Float32, DIM), true),
        ])),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows as i64)),
            Arc::new(list),
        ],
    )
    .expect("batch");
    (batch, vectors)
}

async fn table(rows: usize) -> (Table, Vec<Vec<f32>>) {
    let (batch, vectors) = random_table_batch(rows, 11);
    let db = Database::connect("memory://", ConnectOptions::default())
        .await
        .expect("connect");
    let params = WriteParams {
        max_rows_per_file: 300,
        ..Default::default()
    };
    let t = db
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
    let (t, vectors) = table(1000).await;
    let q: Vec<f32> = (0..DIM).map(|i| i as f32 / 10.0 - 0.3).collect();
    for d in [DistanceType::L2, DistanceType::Cosine, DistanceType::Dot] {
        let got = exact_search(&t, &search(&q, 10, d)).await.expect("search");
        let want = reference(&vectors, &q, d);
        let ids = column::<Int64Array>(&got, "id");
        let dist = column::<Float32Array>(&got, "_distance");
        assert_eq!(got.num_rows(), 10);
        for (i, want) in want.iter().take(10).enumerate() {
            assert_eq!(ids.value(i), want.0, "{d:?} rank {i}");
            assert!((dist.value(i) as f64 - want.1).abs() < 1e-4);
        }
    }
}

#[tokio::test]
async fn k_larger_than_the_table_ranges_and_deletions() {
    let (t, vectors) = table(50).await;
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
    let (t, vectors) = table(1000).await;
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
