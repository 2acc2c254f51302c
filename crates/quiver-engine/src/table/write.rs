//! Turning a stream of record batches into new fragments (data files not yet committed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::manifest::{DataFileProto, DATA_DIR};
use crate::error::{Error, Result};
use crate::format::writer::{DataFileWriter, DEFAULT_PAGE_SIZE};
use crate::schema::TableSchema;
use crate::storage::Storage;

/// A stream of batches to write. Streams keep ingest memory bounded by one batch plus one
/// page per column, whatever the total size.
pub type BatchStream = BoxStream<'static, Result<RecordBatch>>;

/// Makes a [`BatchStream`] from batches already in memory.
pub fn batches_stream(batches: Vec<RecordBatch>) -> BatchStream {
    futures::stream::iter(batches.into_iter().map(Ok)).boxed()
}

/// Called after a write's data files are complete and before its manifest is published.
pub type CommitHook = Arc<dyn Fn() + Send + Sync>;

/// How long a write keeps retrying against other writers by default (LanceDB's merge_insert
/// default too).
pub const DEFAULT_COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The instant `timeout` from now (a century at most: an `Instant` cannot hold any span).
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout.min(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// How data is written and committed.
#[derive(Clone)]
pub struct WriteParams {
    /// Target page size in bytes (4 KiB ..= 64 MiB).
    pub page_size: usize,
    /// Rows per data file; a larger write creates several fragments.
    pub max_rows_per_file: u64,
    /// Bytes per data file (about: a file is closed after the batch that reaches it).
    pub max_bytes_per_file: u64,
    /// How long a commit that loses races to other writers keeps rebasing and retrying (and
    /// an operation that meets a true conflict keeps re-running) before it fails with
    /// `CommitTimeout`. Zero tries once.
    pub commit_timeout: Duration,
    /// Runs between writing data files and publishing the manifest (crash tests, tracing).
    pub before_commit: Option<CommitHook>,
}

impl Default for WriteParams {
    fn default() -> Self {
        WriteParams {
            page_size: DEFAULT_PAGE_SIZE,
            max_rows_per_file: 1024 * 1024,
            max_bytes_per_file: u64::MAX,
            commit_timeout: DEFAULT_COMMIT_TIMEOUT,
            before_commit: None,
        }
    }
}

impl std::fmt::Debug for WriteParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteParams")
            .field("page_size", &self.page_size)
            .field("max_rows_per_file", &self.max_rows_per_file)
            .field("max_bytes_per_file", &self.max_bytes_per_file)
            .field("commit_timeout", &self.commit_timeout)
            .finish()
    }
}

/// A fragment written but not yet part of any version.
#[derive(Debug, Clone)]
pub struct NewFragment {
    pub file: DataFileProto,
    pub physical_rows: u64,
}

/// Writes every batch of `batches` into data files under `table/data/`, checking each batch
/// against `schema`. Nothing becomes visible until a manifest names the fragments.
pub async fn write_fragments(
    table: &Storage,
    schema: &TableSchema,
    mut batches: BatchStream,
    params: &WriteParams,
) -> Result<Vec<NewFragment>> {
    if params.max_rows_per_file == 0 || params.max_rows_per_file > u32::MAX as u64 {
        return Err(Error::invalid(
            "max_rows_per_file must be between 1 and 2^32 - 1",
        ));
    }
    let mut fragments = Vec::new();
    let mut writer: Option<DataFileWriter> = None;
    let result: Result<()> = async {
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            let columns = schema.conform(&batch)?;
            let rows = batch.num_rows();
            let mut start = 0;
            while start < rows {
                if writer.is_none() {
                    let relative = format!("{DATA_DIR}/{}.qvd", uuid::Uuid::new_v4().simple());
                    writer = Some(
                        DataFileWriter::create(
                            table,
                            table.path(&relative),
                            schema,
                            params.page_size,
                        )
                        .await?,
                    );
                }
                let Some(w) = writer.as_mut() else {
                    unreachable!("writer was just created")
                };
                let room = (params.max_rows_per_file - w.num_rows()) as usize;
                let n = room.min(rows - start);
                let slice: Vec<_> = columns.iter().map(|c| c.slice(start, n)).collect();
                w.write(&slice).await?;
                start += n;
                if w.num_rows() >= params.max_rows_per_file
                    || w.bytes_written() >= params.max_bytes_per_file
                {
                    if let Some(w) = writer.take() {
                        fragments.push(finish(table, w, schema).await?);
                    }
                }
            }
        }
        if let Some(w) = writer.take() {
            fragments.push(finish(table, w, schema).await?);
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if let Some(w) = writer.take() {
            let _ = w.abort().await;
        }
        return Err(e);
    }
    Ok(fragments)
}

async fn finish(
    table: &Storage,
    writer: DataFileWriter,
    schema: &TableSchema,
) -> Result<NewFragment> {
    let info = writer.finish().await?;
    let relative = table
        .relative(&info.path)
        .ok_or_else(|| Error::Internal("data file written outside its table".into()))?;
    Ok(NewFragment {
        file: DataFileProto {
            path: relative,
            field_ids: schema.field_ids.clone(),
            size_bytes: info.size_bytes,
        },
        physical_rows: info.num_rows,
    })
}
