//! Plans from the engine: `explain` describes the operators a query will run, `analyze` runs
//! them and reports per-operator figures measured for that query alone, also while other
//! queries run on the same connection.

mod common;

use quiver_engine::linalg::DistanceType;
use quiver_engine::plan::PlanNode;
use quiver_engine::query::{analyze_search, explain_search, VectorSearch};
use quiver_engine::table::indices::{
    create_index, CreateIndexOptions, IndexKind, VectorIndexParams,
};
use quiver_engine::{
    batches_stream, ConnectOptions, CreateMode, Database, ScanOptions, Table, WriteParams,
};

const DIM: i32 = 16;

async fn table(dir: &std::path::Path, fragments: i64, rows: usize) -> (Database, Table) {
    let db = Database::connect(dir.to_str().expect("utf-8"), ConnectOptions::default())
        .await
        .expect("connect");
    let schema = common::simple_schema(DIM);
    let t = db
        .create_table(
            "t",
            schema.clone(),
            batches_stream(vec![common::simple_batch(0, rows, DIM)]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
    for f in 1..fragments {
        t.append(
            batches_stream(vec![common::simple_batch(f * rows as i64, rows, DIM)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
    }
    (db, t)
}

/// Table `t` of `dir` on a new connection: nothing of it cached yet.
async fn reopened(dir: &std::path::Path) -> (Database, Table) {
    let db = Database::connect(dir.to_str().expect("utf-8"), ConnectOptions::default())
        .await
        .expect("connect");
    let t = db.open_table("t").await.expect("open");
    (db, t)
}

fn query(at: f64) -> VectorSearch {
    VectorSearch {
        query: vec![at; DIM as usize],
        k: 10,
        ..Default::default()
    }
}

fn metrics(plan: &PlanNode, operator: &str) -> quiver_engine::plan::Metrics {
    plan.find(operator)
        .unwrap_or_else(|| panic!("no {operator} in\n{}", plan.render(true, None)))
        .metrics
        .clone()
        .unwrap_or_else(|| panic!("{operator} was not measured"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_search_plan_reports_what_ran() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, t) = table(dir.path(), 2, 2000).await;
    let options = CreateIndexOptions {
        config: Some(
            VectorIndexParams {
                kind: IndexKind::IvfPq,
                distance_type: DistanceType::Cosine,
                num_partitions: Some(16),
                ..Default::default()
            }
            .into(),
        ),
        replace: true,
        ..Default::default()
    };
    create_index(&t, "vector", options).await.expect("index");
    // One more fragment the index does not cover.
    t.append(
        batches_stream(vec![common::simple_batch(9000, 500, DIM)]),
        WriteParams::default(),
    )
    .await
    .expect("append");

    let explained = explain_search(&t, &query(10.0)).expect("explain");
    let text = explained.render(false, None);
    assert!(text.starts_with("Take: "), "{text}");
    let index = explained.find("IndexSearch").expect("index node");
    assert_eq!(index.detail("distance"), Some("cosine"), "{text}");
    assert_eq!(index.detail("nprobes"), Some("20"), "{text}");
    assert_eq!(index.detail("fragments"), Some("2"), "{text}");
    assert_eq!(
        explained.find("Refine").and_then(|r| r.detail("factor")),
        Some("4")
    );
    let exact = explained
        .find("ExactSearch")
        .expect("exact node for the new fragment");
    assert_eq!(exact.detail("fragments"), Some("1"));
    assert!(explained.metrics.is_none(), "explain measures nothing");

    // A bypassed cosine index: exact search, by the index's distance type.
    let bypassed = explain_search(
        &t,
        &VectorSearch {
            bypass_index: true,
            ..query(10.0)
        },
    )
    .expect("explain");
    assert!(bypassed.find("IndexSearch").is_none());
    let exact = bypassed.find("ExactSearch").expect("exact");
    assert_eq!(exact.detail("distance"), Some("cosine"));
    assert_eq!(exact.detail("fragments"), Some("3"));
    assert!(exact
        .detail("reason")
        .is_some_and(|r| r.contains("bypassed")));

    // A fresh connection loads the index: once, then from the cache.
    drop(t);
    drop(db);
    let db = Database::connect(
        dir.path().to_str().expect("utf-8"),
        ConnectOptions::default(),
    )
    .await
    .expect("connect");
    let t = db.open_table("t").await.expect("open");
    let (batch, first) = analyze_search(&t, &query(10.0)).await.expect("analyze");
    assert_eq!(batch.num_rows(), 10);
    let index = metrics(&first, "IndexSearch");
    assert_eq!(index.indices_loaded, 1, "{}", first.render(true, None));
    assert_eq!(
        index.parts_loaded, 17,
        "the model, then each of the 16 partitions probed"
    );
    assert!(index.iops >= 1 && index.bytes_read > 0);
    assert_eq!(
        index.index_comparisons,
        16 + 4000,
        "16 centroids, then every code of the 16 partitions probed"
    );
    let refine = metrics(&first, "Refine");
    assert_eq!(refine.rows_ranked, 40, "k × refine candidates");
    assert_eq!(metrics(&first, "Take").output_rows, 10);
    assert_eq!(metrics(&first, "ExactSearch").rows_ranked, 500);
    let probed: usize = first
        .find("IndexSearch")
        .and_then(|n| n.detail("partitions_probed"))
        .and_then(|p| p.parse().ok())
        .expect("partitions probed");
    assert!(probed >= 16, "every partition of 16 within nprobes 20");
    let total = first.total();
    assert_eq!(total.output_rows, 10);
    assert!(total.iops >= index.iops + refine.iops);

    let (_, second) = analyze_search(&t, &query(10.0)).await.expect("analyze");
    let index = metrics(&second, "IndexSearch");
    assert_eq!((index.indices_loaded, index.parts_loaded), (0, 0));
    let rendered = second.render(false, None);
    assert!(rendered.contains("Total: output_rows=10 "), "{rendered}");
    assert!(rendered.contains("index_comparisons="), "{rendered}");

    // Partitions load as searches probe them: a query probing 2 of 16 on a fresh connection
    // reads the model and those 2, and its neighbour query the partitions it adds.
    let (_fresh_db, fresh) = reopened(dir.path()).await;
    let narrow = |at: f64| VectorSearch {
        nprobes: Some(2),
        ..query(at)
    };
    let (_, plan) = analyze_search(&fresh, &narrow(10.0))
        .await
        .expect("analyze");
    let index = metrics(&plan, "IndexSearch");
    assert_eq!((index.indices_loaded, index.parts_loaded), (1, 3));
    assert_eq!(
        plan.find("IndexSearch")
            .and_then(|n| n.detail("partitions_probed")),
        Some("2")
    );
    let (_, again) = analyze_search(&fresh, &narrow(10.0))
        .await
        .expect("analyze");
    assert_eq!(metrics(&again, "IndexSearch").parts_loaded, 0);

    // A prefilter matching few rows is answered exactly by take, and the plan says so.
    let filter = t.parse_filter("id < 5").expect("filter");
    let (batch, plan) = analyze_search(
        &t,
        &VectorSearch {
            filter: Some(filter),
            ..query(10.0)
        },
    )
    .await
    .expect("analyze");
    assert_eq!(batch.num_rows(), 5);
    let take = metrics(&plan, "ExactTake");
    assert_eq!(take.rows_ranked, 5);
    assert_eq!(metrics(&plan, "Prefilter").output_rows, 5);
    assert!(
        plan.find("IndexSearch").is_none(),
        "{}",
        plan.render(true, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_are_per_query_under_concurrency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_db, t) = table(dir.path(), 4, 5000).await;
    let last_ten = || ScanOptions {
        columns: Some(vec!["id".into()]),
        filter: Some(t.parse_filter("id >= 19990").expect("filter")),
        ..Default::default()
    };
    // The first run also reads the files' metadata (its planning needs it); later runs find
    // it cached.
    let cold = t.analyze_scan(last_ten()).await.expect("analyze");
    let alone = t.analyze_scan(last_ten()).await.expect("analyze");
    let (cold, alone) = (metrics(&cold, "Scan"), metrics(&alone, "Scan"));
    assert!(cold.iops > alone.iops, "{cold:?} / {alone:?}");
    assert_eq!(alone.output_rows, 10);
    // The same scan while full scans of every column run on the same connection: its own
    // figures do not move.
    let noise: Vec<_> = (0..4)
        .map(|_| {
            let t = t.clone();
            tokio::spawn(async move { t.scan_all(ScanOptions::default()).await.map(|b| b.len()) })
        })
        .collect();
    for _ in 0..5 {
        let busy = t.analyze_scan(last_ten()).await.expect("analyze");
        let busy = metrics(&busy, "Scan");
        assert_eq!(
            (busy.output_rows, busy.iops, busy.bytes_read),
            (alone.output_rows, alone.iops, alone.bytes_read)
        );
    }
    for n in noise {
        assert!(n.await.expect("join").expect("scan") > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_plans_show_pruning_limits_and_takes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_db, t) = table(dir.path(), 3, 1000).await;
    let filtered = ScanOptions {
        columns: Some(vec!["id".into(), "text".into()]),
        filter: Some(t.parse_filter("id >= 2500").expect("filter")),
        limit: Some(100),
        ..Default::default()
    };
    let plan = t.explain_scan(&filtered).await.expect("explain");
    let text = plan.render(false, None);
    assert!(
        text.starts_with("Limit: offset=0 limit=100\n  Scan: columns=[id, text]"),
        "{text}"
    );
    let filter = plan.find("Filter").expect("filter node");
    assert_eq!(filter.detail("fragments_pruned"), Some("2/3"), "{text}");
    assert_eq!(
        filter.detail("pages_pruned"),
        Some("2/3"),
        "one page of ids per fragment"
    );
    assert!(
        filter.detail("then").is_some_and(|t| t.contains("late")),
        "{text}"
    );
    let analyzed = t.analyze_scan(filtered).await.expect("analyze");
    assert_eq!(metrics(&analyzed, "Limit").output_rows, 100);
    let scan = metrics(&analyzed, "Scan");
    assert!(scan.iops > 0 && scan.bytes_read > 0);

    let small = ScanOptions {
        limit: Some(5),
        offset: 998,
        ..Default::default()
    };
    let plan = t.analyze_scan(small).await.expect("analyze");
    assert_eq!(plan.operator, "Take");
    assert_eq!(metrics(&plan, "Take").output_rows, 5);
    assert!(plan.find("LiveRows").is_some());
    // Deep filters are planned too: a generated OR chain shows as one IN list pushed down.
    let chain = (0..5000)
        .map(|i| format!("id = {i}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let plan = t
        .explain_scan(&ScanOptions {
            filter: Some(t.parse_filter(&chain).expect("filter")),
            ..Default::default()
        })
        .await
        .expect("explain");
    assert_eq!(
        plan.find("Filter")
            .and_then(|f| f.detail("fragments_pruned")),
        Some("0/3")
    );
}

/// An index opened by an earlier, unmeasured query still counts the parts a measured query
/// reads through it: the part read is this query's request, whoever opened the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyzed_filters_count_the_index_parts_they_read_from_an_index_opened_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_writer, t) = table(dir.path(), 1, 60_000).await;
    create_index(
        &t,
        "id",
        CreateIndexOptions {
            config: Some(quiver_engine::index::IndexConfig::BTree),
            ..Default::default()
        },
    )
    .await
    .expect("btree");
    let (_db, t) = reopened(dir.path()).await;
    let by_id = |id: i64| ScanOptions {
        columns: Some(vec!["id".into()]),
        filter: Some(t.parse_filter(&format!("id = {id}")).expect("filter")),
        ..Default::default()
    };
    // Opens the index and reads the part holding id 50000 (another part than id 100's; the
    // same data file, whose metadata it caches).
    assert_eq!(t.scan_all(by_id(50_000)).await.expect("scan").len(), 1);
    let first = t.analyze_scan(by_id(100)).await.expect("analyze");
    let again = t.analyze_scan(by_id(100)).await.expect("analyze");
    let (first, again) = (metrics(&first, "Scan"), metrics(&again, "Scan"));
    assert_eq!((first.output_rows, again.output_rows), (1, 1));
    assert_eq!((first.parts_loaded, again.parts_loaded), (1, 0));
    // The second query finds the part in the index cache; everything else it reads the same.
    assert_eq!(first.iops, again.iops + 1, "{first:?} / {again:?}");
    assert!(first.bytes_read > again.bytes_read, "{first:?} / {again:?}");
}
