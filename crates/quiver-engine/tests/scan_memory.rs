//! A scan's memory is bounded by its batch and page budget, not by the table: scanning a
//! table several times larger than that budget raises the process's peak RSS by far less
//! than the table's size. (Its own test binary, so no other test shares the process.)
#![cfg(target_os = "linux")]

mod common;

use futures::StreamExt;
use quiver_engine::{ConnectOptions, CreateMode, Database, ScanOptions, WriteParams};

const DIM: i32 = 1024;
const ROWS: i64 = 48 * 1024;
const MIB: u64 = 1024 * 1024;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("status field")
}

/// Resets the kernel's peak-RSS mark to the current RSS.
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset peak RSS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_memory_is_bounded_by_the_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::connect(
        dir.path().to_str().expect("utf8"),
        ConnectOptions::default(),
    )
    .await
    .expect("connect");
    // A 200 MiB table, written as a stream so writing never holds it either.
    let batches = futures::stream::iter(
        (0..ROWS / 1024).map(|b| Ok(common::simple_batch(b * 1024, 1024, DIM))),
    )
    .boxed();
    let params = WriteParams {
        page_size: MIB as usize,
        ..Default::default()
    };
    let table = db
        .create_table(
            "big",
            common::simple_schema(DIM),
            batches,
            CreateMode::Create,
            params,
        )
        .await
        .expect("create");
    let table_bytes = table.stats().data_bytes;
    assert!(table_bytes > 190 * MIB);

    reset_peak();
    let baseline = status_kib("VmRSS:") * 1024;
    let (_, mut stream) = table
        .scan(ScanOptions {
            batch_size: 256,
            readahead_pages: 2,
            ..Default::default()
        })
        .expect("scan");
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch.expect("batch").num_rows() as i64;
    }
    let peak = status_kib("VmHWM:") * 1024;
    assert_eq!(rows, ROWS);
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "scan of {} MiB: peak RSS grew {} MiB",
        table_bytes / MIB,
        growth / MIB
    );
    // Budget: 3 columns × (2 read-ahead + 1 current) pages of 1 MiB, a 1 MiB batch, plus
    // allocator slack; the table is 200 MiB.
    assert!(
        growth < 48 * MIB,
        "scan raised peak RSS by {} MiB for a {} MiB table",
        growth / MIB,
        table_bytes / MIB
    );
}
