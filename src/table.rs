//! `NativeTable`: one table handle, its versions, writes, reads and maintenance calls.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use napi::bindgen_prelude::{
    within_runtime_if_available, BigInt, Buffer, Either, Float64Array, PromiseRaw,
};
use napi::Env;
use napi_derive::napi;
use quiver_engine::table::{MergeInsert, UpdateValue, DEFAULT_COMMIT_TIMEOUT};
use quiver_engine::{
    batches_stream, ColumnAlteration, Error as EngineError, NewColumns, ScanOptions, WriteParams,
};

use crate::args::*;
use crate::connection::*;
use crate::errors::*;
use crate::fts::*;
use crate::index::*;
use crate::ipc::*;
use crate::maintenance::*;
use crate::query::*;
use crate::writer::*;

/// A tag and the version it names.
#[napi(object)]
pub struct NativeTag {
    pub name: String,
    pub version: f64,
}

/// One committed version.
#[napi(object)]
pub struct NativeVersion {
    pub version: f64,
    /// Commit time in milliseconds since the Unix epoch.
    pub timestamp: f64,
    pub operation: String,
}

/// Size facts of a table version, and whether maintenance would help.
#[napi(object)]
pub struct NativeTableStats {
    pub num_rows: f64,
    pub num_deleted_rows: f64,
    pub num_fragments: f64,
    pub data_bytes: f64,
    pub version: f64,
    pub fragments_tiny: f64,
    pub fragments_small: f64,
    pub fragments_medium: f64,
    pub fragments_large: f64,
    pub num_small_fragments: f64,
    pub compactable_fragments: f64,
    pub versions: f64,
    pub versions_past_retention: f64,
    pub unindexed_rows: f64,
    pub reasons: Vec<String>,
    pub maintenance: Option<NativeMaintenanceActivity>,
    /// Damaged versions the handle's last open or checkoutLatest skipped.
    pub skipped_versions: Vec<NativeSkippedVersion>,
}

/// A damaged version opening a table skipped.
#[napi(object)]
pub struct NativeSkippedVersion {
    pub version: f64,
    pub reason: String,
}

pub(crate) fn skipped_versions(table: &quiver_engine::Table) -> Vec<NativeSkippedVersion> {
    table
        .skipped_versions()
        .into_iter()
        .map(|s| NativeSkippedVersion {
            version: s.version as f64,
            reason: s.reason,
        })
        .collect()
}

/// What a merge-insert does (see the engine's `MergeInsert`).
#[napi(object)]
pub struct NativeMergeOptions {
    pub when_matched_update_all: bool,
    pub matched_where: Option<String>,
    pub when_not_matched_insert_all: bool,
    pub when_not_matched_by_source_delete: bool,
    pub by_source_where: Option<String>,
    /// Milliseconds to keep retrying against other writers.
    pub timeout_ms: Option<f64>,
}

/// A write's time to keep retrying against other writers (`timeoutMs`; default 30 s).
fn commit_timeout(ms: Option<f64>) -> Result<Duration, EngineError> {
    match ms {
        None => Ok(DEFAULT_COMMIT_TIMEOUT),
        Some(ms) if ms >= 0.0 => {
            Ok(Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX))
        }
        Some(ms) => Err(EngineError::InvalidArgument(format!(
            "timeoutMs must be a number of milliseconds, 0 or more, got {ms}"
        ))),
    }
}

/// Write parameters with the commit timeout of `timeout_ms`.
fn write_params(timeout_ms: Option<f64>) -> Result<WriteParams, EngineError> {
    Ok(WriteParams {
        commit_timeout: commit_timeout(timeout_ms)?,
        ..WriteParams::default()
    })
}

/// A change to one column (see the engine's `ColumnAlteration`); `data_type` is an Arrow IPC
/// stream whose schema has one field of the new type.
#[napi(object)]
pub struct NativeColumnAlteration {
    pub path: String,
    pub rename: Option<String>,
    pub nullable: Option<bool>,
    pub data_type: Option<Buffer>,
}

#[napi(object)]
pub struct NativeMergeResult {
    pub num_inserted_rows: f64,
    pub num_updated_rows: f64,
    pub num_deleted_rows: f64,
    pub version: f64,
}

/// I/O counters of a table's store.
#[napi(object)]
pub struct NativeIoStats {
    pub read_ops: f64,
    pub read_bytes: f64,
    pub write_ops: f64,
    pub write_bytes: f64,
}

/// A table handle.
#[napi]
pub struct NativeTable {
    pub(crate) table: quiver_engine::Table,
    pub(crate) connection_open: Arc<AtomicBool>,
    pub(crate) open: Arc<AtomicBool>,
    pub(crate) read_consistency: Option<Duration>,
    pub(crate) last_refresh: Arc<Mutex<Instant>>,
}

impl NativeTable {
    fn check_open(&self) -> napi::Result<()> {
        if !self.connection_open.load(Ordering::Acquire) {
            return Err(coded(
                "Closed",
                format!(
                    "table '{}' is closed: its connection was closed",
                    self.table.name()
                ),
            ));
        }
        if !self.open.load(Ordering::Acquire) {
            return Err(coded(
                "Closed",
                format!("table '{}' is closed", self.table.name()),
            ));
        }
        Ok(())
    }

    /// A read of the handle's version, after seeing other writers' commits as the
    /// connection's read consistency asks.
    async fn read<T>(
        &self,
        read: impl FnOnce(&quiver_engine::Table) -> quiver_engine::Result<T>,
    ) -> napi::Result<T> {
        self.check_open()?;
        guarded(async {
            self.consistent().await?;
            read(&self.table)
        })
        .await
    }

    /// Sees other writers' commits according to the connection's read consistency.
    async fn consistent(&self) -> quiver_engine::Result<()> {
        refresh_if_due(&self.table, self.read_consistency, &self.last_refresh).await
    }
}

/// Moves `table` to the newest commit when the read consistency `interval` has elapsed since
/// `last_refresh` (every time for a zero interval, never without one).
async fn refresh_if_due(
    table: &quiver_engine::Table,
    interval: Option<Duration>,
    last_refresh: &Mutex<Instant>,
) -> quiver_engine::Result<()> {
    let Some(interval) = interval else {
        return Ok(());
    };
    let due = {
        let last = last_refresh
            .lock()
            .map_err(|_| EngineError::Internal("refresh clock poisoned".into()))?;
        interval.is_zero() || last.elapsed() >= interval
    };
    if due {
        table.refresh().await?;
        if let Ok(mut last) = last_refresh.lock() {
            *last = Instant::now();
        }
    }
    Ok(())
}

#[napi]
impl NativeTable {
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.table.name().to_string()
    }

    #[napi]
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire) && self.connection_open.load(Ordering::Acquire)
    }

    #[napi]
    pub fn close(&self) {
        self.open.store(false, Ordering::Release);
    }

    /// The schema as an IPC stream without batches.
    #[napi]
    pub async fn schema(&self) -> napi::Result<Buffer> {
        self.read(|t| Ok(encode_ipc(&t.schema(), &[])?.into()))
            .await
    }

    /// Live rows, or rows matching a SQL filter.
    #[napi]
    pub async fn count_rows(&self, filter: Option<String>) -> napi::Result<f64> {
        match filter {
            None => self.read(|t| Ok(t.count_rows() as f64)).await,
            Some(filter) => {
                self.check_open()?;
                guarded(async {
                    self.consistent().await?;
                    Ok(self.table.count_rows_where(&filter).await? as f64)
                })
                .await
            }
        }
    }

    /// Adds rows (IPC stream bytes); `mode` is append or overwrite. Returns the new version.
    #[napi]
    pub async fn add(
        &self,
        data: Buffer,
        mode: String,
        timeout_ms: Option<f64>,
    ) -> napi::Result<f64> {
        self.check_open()?;
        guarded(async {
            let params = write_params(timeout_ms)?;
            let (schema, batches) = decode_ipc(&data)?;
            let version = match mode.as_str() {
                "append" => {
                    // Checked before writing so that data without batches is refused too.
                    self.table.manifest().schema.check_compatible(&schema)?;
                    self.table.append(batches_stream(batches), params).await?
                }
                "overwrite" => {
                    self.table
                        .overwrite(schema, batches_stream(batches), params)
                        .await?
                }
                other => {
                    return Err(EngineError::InvalidArgument(format!(
                        "mode must be 'append' or 'overwrite', got '{other}'"
                    )))
                }
            };
            Ok(version as f64)
        })
        .await
    }

    /// Starts a streaming add (`append` or `overwrite`): send batches, then `finish`.
    #[napi]
    pub async fn add_writer(
        &self,
        schema: Buffer,
        mode: String,
        timeout_ms: Option<f64>,
    ) -> napi::Result<NativeWriter> {
        self.check_open()?;
        let params = guarded(async { write_params(timeout_ms) }).await?;
        let (schema, _) = guarded(async { decode_ipc(&schema) }).await?;
        let table = self.table.clone();
        let overwrite = match mode.as_str() {
            "append" => {
                guarded(async { table.manifest().schema.check_compatible(&schema) }).await?;
                false
            }
            "overwrite" => true,
            other => {
                return Err(coded(
                    "InvalidArgument",
                    format!("mode must be 'append' or 'overwrite', got '{other}'"),
                ))
            }
        };
        let new_schema = schema.clone();
        Ok(NativeWriter::start(move |stream| async move {
            if overwrite {
                table.overwrite(new_schema, stream, params).await
            } else {
                table.append(stream, params).await
            }
        }))
    }

    /// Deletes the rows matching a SQL filter; returns [deleted rows, version].
    #[napi]
    pub async fn delete(&self, filter: String, timeout_ms: Option<f64>) -> napi::Result<Vec<f64>> {
        self.check_open()?;
        guarded(async {
            let timeout = commit_timeout(timeout_ms)?;
            let r = self.table.delete_within(&filter, timeout).await?;
            Ok(vec![r.num_deleted_rows as f64, r.version as f64])
        })
        .await
    }

    /// Updates rows: `sql_columns[i]` is set to the SQL expression `sql_values[i]`; `values`
    /// (IPC, one row) holds constant new values. Returns [rows updated, version].
    #[napi]
    pub async fn update(
        &self,
        filter: Option<String>,
        sql_columns: Vec<String>,
        sql_values: Vec<String>,
        values: Option<Buffer>,
        timeout_ms: Option<f64>,
    ) -> napi::Result<Vec<f64>> {
        self.check_open()?;
        guarded(async {
            let timeout = commit_timeout(timeout_ms)?;
            let mut assignments: Vec<(String, UpdateValue)> = sql_columns
                .into_iter()
                .zip(sql_values)
                .map(|(c, v)| (c, UpdateValue::Sql(v)))
                .collect();
            if let Some(bytes) = values {
                let (_, batches) = decode_ipc(&bytes)?;
                for batch in batches {
                    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                        assignments
                            .push((field.name().clone(), UpdateValue::Literal(column.clone())));
                    }
                }
            }
            let r = self
                .table
                .update_within(filter.as_deref(), assignments, timeout)
                .await?;
            Ok(vec![r.rows_updated as f64, r.version as f64])
        })
        .await
    }

    /// Upserts `data` (IPC) by the key columns `on`.
    #[napi]
    pub async fn merge_insert(
        &self,
        on: Vec<String>,
        options: NativeMergeOptions,
        data: Buffer,
    ) -> napi::Result<NativeMergeResult> {
        self.check_open()?;
        guarded(async {
            let (schema, batches) = decode_ipc(&data)?;
            let spec = MergeInsert {
                on,
                when_matched_update_all: options
                    .when_matched_update_all
                    .then_some(options.matched_where),
                when_not_matched_insert_all: options.when_not_matched_insert_all,
                when_not_matched_by_source_delete: options
                    .when_not_matched_by_source_delete
                    .then_some(options.by_source_where),
                timeout: Some(commit_timeout(options.timeout_ms)?),
            };
            let r = self.table.merge_insert(&spec, &schema, batches).await?;
            Ok(NativeMergeResult {
                num_inserted_rows: r.num_inserted_rows as f64,
                num_updated_rows: r.num_updated_rows as f64,
                num_deleted_rows: r.num_deleted_rows as f64,
                version: r.version as f64,
            })
        })
        .await
    }

    /// Adds columns computed by SQL expressions (`names[i]` = `sqls[i]`); returns the version.
    #[napi]
    pub async fn add_columns_sql(
        &self,
        names: Vec<String>,
        sqls: Vec<String>,
    ) -> napi::Result<f64> {
        self.check_open()?;
        guarded(async {
            let columns = NewColumns::Sql(names.into_iter().zip(sqls).collect());
            Ok(self.table.add_columns(columns).await? as f64)
        })
        .await
    }

    /// Adds the fields of `schema` (IPC) as all-NULL columns; returns the version.
    #[napi]
    pub async fn add_columns_null(&self, schema: Buffer) -> napi::Result<f64> {
        self.check_open()?;
        guarded(async {
            let (schema, _) = decode_ipc(&schema)?;
            Ok(self.table.add_columns(NewColumns::AllNull(schema)).await? as f64)
        })
        .await
    }

    /// Renames, changes nullability or widens columns; returns the version.
    #[napi]
    pub async fn alter_columns(
        &self,
        alterations: Vec<NativeColumnAlteration>,
    ) -> napi::Result<f64> {
        self.check_open()?;
        guarded(async {
            let mut changes = Vec::with_capacity(alterations.len());
            for a in alterations {
                let data_type = match a.data_type {
                    Some(bytes) => {
                        let (schema, _) = decode_ipc(&bytes)?;
                        match schema.fields().first() {
                            Some(f) if schema.fields().len() == 1 => Some(f.data_type().clone()),
                            _ => {
                                return Err(EngineError::InvalidArgument(
                                    "dataType must describe exactly one type".into(),
                                ))
                            }
                        }
                    }
                    None => None,
                };
                changes.push(ColumnAlteration {
                    path: a.path,
                    rename: a.rename,
                    nullable: a.nullable,
                    data_type,
                });
            }
            Ok(self.table.alter_columns(&changes).await? as f64)
        })
        .await
    }

    /// Drops top-level columns (metadata only); returns the version.
    #[napi]
    pub async fn drop_columns(&self, names: Vec<String>) -> napi::Result<f64> {
        self.check_open()?;
        guarded(async { Ok(self.table.drop_columns(&names).await? as f64) }).await
    }

    #[napi]
    pub async fn version(&self) -> napi::Result<f64> {
        self.read(|t| Ok(t.version() as f64)).await
    }

    #[napi]
    pub async fn list_versions(&self) -> napi::Result<Vec<NativeVersion>> {
        self.check_open()?;
        guarded(async {
            Ok(self
                .table
                .list_versions()
                .await?
                .into_iter()
                .map(|v| NativeVersion {
                    version: v.version as f64,
                    timestamp: v.timestamp_micros as f64 / 1000.0,
                    operation: v.operation,
                })
                .collect())
        })
        .await
    }

    #[napi]
    pub async fn checkout(&self, version: f64) -> napi::Result<()> {
        self.check_open()?;
        let version = version_arg(version)?;
        guarded(self.table.checkout(version)).await
    }

    /// Every tag, sorted by name.
    #[napi]
    pub async fn list_tags(&self) -> napi::Result<Vec<NativeTag>> {
        self.check_open()?;
        guarded(async {
            Ok(self
                .table
                .list_tags()
                .await?
                .into_iter()
                .map(|t| NativeTag {
                    name: t.name,
                    version: t.version as f64,
                })
                .collect())
        })
        .await
    }

    #[napi]
    pub async fn tag_version(&self, name: String) -> napi::Result<f64> {
        self.check_open()?;
        guarded(async { Ok(self.table.tag_version(&name).await? as f64) }).await
    }

    #[napi]
    pub async fn create_tag(&self, name: String, version: f64) -> napi::Result<()> {
        self.check_open()?;
        let version = version_arg(version)?;
        guarded(self.table.create_tag(&name, version)).await
    }

    #[napi]
    pub async fn update_tag(&self, name: String, version: f64) -> napi::Result<()> {
        self.check_open()?;
        let version = version_arg(version)?;
        guarded(self.table.update_tag(&name, version)).await
    }

    #[napi]
    pub async fn delete_tag(&self, name: String) -> napi::Result<()> {
        self.check_open()?;
        guarded(self.table.delete_tag(&name)).await
    }

    /// Checks out the version a tag names; returns it.
    #[napi]
    pub async fn checkout_tag(&self, name: String) -> napi::Result<f64> {
        self.check_open()?;
        guarded(async { Ok(self.table.checkout_tag(&name).await? as f64) }).await
    }

    #[napi]
    pub async fn checkout_latest(&self) -> napi::Result<f64> {
        self.check_open()?;
        guarded(async { Ok(self.table.checkout_latest().await? as f64) }).await
    }

    #[napi]
    pub async fn restore(&self, version: Option<f64>) -> napi::Result<f64> {
        self.check_open()?;
        let version = version.map(version_arg).transpose()?;
        guarded(async { Ok(self.table.restore(version).await? as f64) }).await
    }

    #[napi]
    pub async fn stats(&self) -> napi::Result<NativeTableStats> {
        self.check_open()?;
        guarded(async {
            self.consistent().await?;
            let t = &self.table;
            let s = t.stats();
            let a = quiver_engine::maintenance::advise(t).await?;
            Ok(NativeTableStats {
                num_rows: s.num_rows as f64,
                num_deleted_rows: s.num_deleted_rows as f64,
                num_fragments: s.num_fragments as f64,
                data_bytes: s.data_bytes as f64,
                version: t.version() as f64,
                fragments_tiny: a.size_classes.tiny as f64,
                fragments_small: a.size_classes.small as f64,
                fragments_medium: a.size_classes.medium as f64,
                fragments_large: a.size_classes.large as f64,
                num_small_fragments: a.small_fragments as f64,
                compactable_fragments: a.compactable_fragments as f64,
                versions: a.versions as f64,
                versions_past_retention: a.versions_past_retention as f64,
                unindexed_rows: a.unindexed_rows as f64,
                reasons: a.reasons,
                maintenance: t.maintenance_activity().map(|m| NativeMaintenanceActivity {
                    rounds: m.rounds as f64,
                    compactions: m.compactions as f64,
                    cleanups: m.cleanups as f64,
                    index_refreshes: m.index_refreshes as f64,
                    errors: m.errors as f64,
                    active: m.active,
                    last_round_micros: m.last_round_micros as f64,
                }),
                skipped_versions: skipped_versions(t),
            })
        })
        .await
    }

    /// Damaged versions the last open or checkoutLatest skipped (oldest first).
    #[napi]
    pub fn skipped_versions(&self) -> Vec<NativeSkippedVersion> {
        skipped_versions(&self.table)
    }

    /// Starts a scan; batches come from the returned stream.
    #[napi]
    pub async fn scan(&self, options: NativeScanOptions) -> napi::Result<NativeBatchStream> {
        self.check_open()?;
        let (schema, stream) = guarded(async {
            self.consistent().await?;
            self.table.scan(self.scan_options(options)?)
        })
        .await?;
        Ok(NativeBatchStream::new(schema, Some(stream), None))
    }

    /// Starts a scan and reads its first batches, up to about `max_bytes`, in the same call:
    /// a query whose result is small needs one call across the JS boundary, not one per batch.
    #[napi]
    pub async fn scan_eager(
        &self,
        options: NativeScanOptions,
        max_bytes: f64,
    ) -> napi::Result<NativeBatchStream> {
        self.check_open()?;
        guarded(async {
            self.consistent().await?;
            let (schema, mut stream) = self.table.scan(self.scan_options(options)?)?;
            let (mut batches, mut bytes, mut done) = (Vec::new(), 0usize, false);
            use futures::StreamExt;
            while (bytes as f64) < max_bytes {
                match stream.next().await {
                    Some(batch) => {
                        let batch = batch?;
                        bytes += batch.get_array_memory_size();
                        batches.push(batch);
                    }
                    None => {
                        done = true;
                        break;
                    }
                }
            }
            let data = encode_ipc(&schema, &batches)?.into();
            Ok(NativeBatchStream::new(
                schema,
                (!done).then_some(stream),
                Some(NativeChunk { data, done }),
            ))
        })
        .await
    }

    /// The engine's plan for a scan as an indented tree (`verbose` adds every setting); with
    /// `analyze`, the scan runs to its end and each operator shows what it measured.
    #[napi]
    pub async fn plan_scan(
        &self,
        options: NativeScanOptions,
        verbose: bool,
        analyze: bool,
    ) -> napi::Result<String> {
        self.check_open()?;
        guarded(async {
            self.consistent().await?;
            let options = self.scan_options(options)?;
            let started = Instant::now();
            Ok(if analyze {
                let plan = self.table.analyze_scan(options).await?;
                plan.render(verbose, Some(started.elapsed()))
            } else {
                self.table
                    .explain_scan(&options)
                    .await?
                    .render(verbose, None)
            })
        })
        .await
    }

    /// Rows by row id, in the order given, as IPC bytes.
    #[napi]
    pub async fn take_row_ids(
        &self,
        ids: Vec<BigInt>,
        columns: Option<Vec<String>>,
        with_row_id: Option<bool>,
    ) -> napi::Result<Buffer> {
        self.check_open()?;
        let ids = ids
            .iter()
            .map(|i| u64_of(i, "a row id"))
            .collect::<napi::Result<Vec<u64>>>()?;
        guarded(async {
            self.consistent().await?;
            let batch = self
                .table
                .take(&ids, columns.as_deref(), with_row_id.unwrap_or(false))
                .await?;
            Ok(encode_ipc(&batch.schema(), &[batch])?.into())
        })
        .await
    }

    /// Rows by position among the live rows (0-based), in the order given, as IPC bytes.
    #[napi]
    pub async fn take_offsets(
        &self,
        offsets: Vec<f64>,
        columns: Option<Vec<String>>,
        with_row_id: Option<bool>,
    ) -> napi::Result<Buffer> {
        self.check_open()?;
        if let Some(bad) = offsets.iter().find(|o| o.fract() != 0.0 || **o < 0.0) {
            return Err(coded(
                "InvalidArgument",
                format!("offsets must be non-negative integers, got {bad}"),
            ));
        }
        let offsets: Vec<u64> = offsets.iter().map(|o| *o as u64).collect();
        guarded(async {
            self.consistent().await?;
            let ids = self.table.row_ids_at(&offsets).await?;
            let batch = self
                .table
                .take(&ids, columns.as_deref(), with_row_id.unwrap_or(false))
                .await?;
            Ok(encode_ipc(&batch.schema(), &[batch])?.into())
        })
        .await
    }

    /// Nearest neighbours of `query` (through the column's index, or exact) with a `_distance`
    /// column: IPC bytes, or plain columns when `options.plain` asks and every column has one.
    ///
    /// With `inline`, the search first runs on the calling (JS) thread until it would wait: an
    /// indexed search over cached index parts finishes there, sparing the two thread wake-ups
    /// of an async call (on small machines most of a query's latency). Whatever waits (a read
    /// of a large range, an index load, ranking on the compute pool) goes on on the runtime, and
    /// the call returns a promise. The caller asks for it only when the thread is otherwise idle.
    #[napi(ts_return_type = "NativeSearchResult | Promise<NativeSearchResult>")]
    pub fn vector_search<'env>(
        &self,
        env: &'env Env,
        query: Float64Array,
        options: NativeSearchOptions,
        inline: bool,
    ) -> napi::Result<Either<NativeSearchResult, PromiseRaw<'env, NativeSearchResult>>> {
        self.check_open()?;
        let plain = options.plain.unwrap_or(false);
        let search = self
            .search_options(query.to_vec(), options)
            .map_err(to_js_error)?;
        let (table, interval, last_refresh) = (
            self.table.clone(),
            self.read_consistency,
            self.last_refresh.clone(),
        );
        let mut work = Box::pin(guarded(async move {
            refresh_if_due(&table, interval, &last_refresh).await?;
            let batch = quiver_engine::query::search(&table, &search).await?;
            let plain = if plain { plain_columns(&batch) } else { None };
            let data = match plain {
                Some(_) => None,
                None => Some(encode_ipc(&batch.schema(), &[batch])?.into()),
            };
            Ok(NativeSearchResult { data, plain })
        }));
        if inline {
            // A no-op waker: a future left pending is polled again by the runtime below, which
            // registers its own waker then.
            let polled = within_runtime_if_available(|| {
                work.as_mut()
                    .poll(&mut Context::from_waker(std::task::Waker::noop()))
            });
            if let Poll::Ready(result) = polled {
                return result.map(Either::A);
            }
        }
        env.spawn_future(work).map(Either::B)
    }

    /// The engine's plan for a vector search as an indented tree; with `analyze`, the search
    /// runs and each operator shows what it measured.
    #[napi]
    pub async fn plan_vector_search(
        &self,
        query: Float64Array,
        options: NativeSearchOptions,
        verbose: bool,
        analyze: bool,
    ) -> napi::Result<String> {
        self.check_open()?;
        guarded(async {
            self.consistent().await?;
            let search = self.search_options(query.to_vec(), options)?;
            let started = Instant::now();
            Ok(if analyze {
                let (_, plan) = quiver_engine::query::analyze_search(&self.table, &search).await?;
                plan.render(verbose, Some(started.elapsed()))
            } else {
                quiver_engine::query::explain_search(&self.table, &search)?.render(verbose, None)
            })
        })
        .await
    }

    /// Rows matching a full-text query, best first, with a `_score` column (IPC bytes).
    #[napi]
    pub async fn text_search(&self, options: NativeTextSearchOptions) -> napi::Result<Buffer> {
        self.check_open()?;
        guarded(async {
            self.consistent().await?;
            let search = self.text_search_options(options)?;
            let batch = quiver_engine::query::text::text_search(&self.table, &search).await?;
            Ok(encode_ipc(&batch.schema(), &[batch])?.into())
        })
        .await
    }

    /// The engine's plan for a full-text search; with `analyze`, the search runs and each
    /// operator shows what it measured.
    #[napi]
    pub async fn plan_text_search(
        &self,
        options: NativeTextSearchOptions,
        verbose: bool,
        analyze: bool,
    ) -> napi::Result<String> {
        self.check_open()?;
        guarded(async {
            self.consistent().await?;
            let search = self.text_search_options(options)?;
            let started = Instant::now();
            Ok(if analyze {
                let (_, plan) =
                    quiver_engine::query::text::analyze_text_search(&self.table, &search).await?;
                plan.render(verbose, Some(started.elapsed()))
            } else {
                quiver_engine::query::text::explain_text_search(&self.table, &search)?
                    .render(verbose, None)
            })
        })
        .await
    }

    /// The tokens the FTS index on `column` makes of `text`.
    #[napi]
    pub async fn tokenize(&self, text: String, column: String) -> napi::Result<Vec<NativeToken>> {
        self.read(|t| {
            let config = quiver_engine::query::text::column_tokenizer(t, &column)?;
            let tokenizer = quiver_engine::fts::Tokenizer::new(config)?;
            Ok(tokenizer
                .tokens(&text)
                .into_iter()
                .map(|(text, position)| NativeToken { text, position })
                .collect())
        })
        .await
    }

    /// Builds an index on `column` and commits it; `progress` receives build progress.
    #[napi]
    pub async fn create_index(
        &self,
        column: String,
        mut options: NativeIndexOptions,
        progress: Option<ProgressCallback>,
    ) -> napi::Result<NativeIndexInfo> {
        use quiver_engine::table::indices::{
            CreateIndexOptions, IndexConfig, IndexKind, VectorIndexParams,
        };
        self.check_open()?;
        let config = match options.index_type.as_deref() {
            None => None,
            Some("BTREE") => Some(IndexConfig::BTree),
            Some("BITMAP") => Some(IndexConfig::Bitmap),
            Some("LABEL_LIST") => Some(IndexConfig::LabelList),
            Some("FTS") => Some(IndexConfig::Fts(quiver_engine::fts::FtsParams {
                tokenizer: tokenizer_config(options.fts.take()).map_err(to_js_error)?,
                with_position: options.with_position.unwrap_or(false),
                ..Default::default()
            })),
            Some(name) => {
                let kind = IndexKind::parse(name).ok_or_else(|| {
                    coded(
                        "InvalidArgument",
                        format!(
                            "unknown index type '{name}'; use IVF_PQ, IVF_FLAT, IVF_HNSW_SQ, IVF_HNSW_PQ, IVF_RQ, BTREE, BITMAP, LABEL_LIST or FTS"
                        ),
                    )
                })?;
                let distance_type = match &options.distance_type {
                    Some(d) => d.parse().map_err(|e: quiver_engine::Error| {
                        coded("InvalidArgument", e.to_string())
                    })?,
                    None => quiver_engine::linalg::DistanceType::L2,
                };
                Some(IndexConfig::Vector(VectorIndexParams {
                    kind,
                    distance_type,
                    num_partitions: options.num_partitions.map(|n| n as usize),
                    num_sub_vectors: options.num_sub_vectors.map(|n| n as usize),
                    num_bits: options.num_bits,
                    max_iterations: options.max_iterations.map(|n| n as usize),
                    sample_rate: options.sample_rate.map(|n| n as usize),
                    target_recall: options.target_recall.map(|r| r as f32),
                    m: options.m.map(|n| n as usize),
                    ef_construction: options.ef_construction.map(|n| n as usize),
                }))
            }
        };
        guarded(async move {
            let progress = progress_fn(progress);
            let create = CreateIndexOptions {
                config,
                name: options.name,
                replace: options.replace.unwrap_or(true),
                progress,
            };
            let info =
                quiver_engine::table::indices::create_index(&self.table, &column, create).await?;
            Ok(info.into())
        })
        .await
    }

    #[napi]
    pub async fn list_indices(&self) -> napi::Result<Vec<NativeIndexInfo>> {
        self.read(|t| {
            Ok(quiver_engine::table::indices::list_indices(t)?
                .into_iter()
                .map(Into::into)
                .collect())
        })
        .await
    }

    #[napi]
    pub async fn index_stats(&self, name: String) -> napi::Result<NativeIndexInfo> {
        self.read(|t| Ok(quiver_engine::table::indices::index_stats(t, &name)?.into()))
            .await
    }

    #[napi]
    pub async fn drop_index(&self, name: String) -> napi::Result<f64> {
        self.check_open()?;
        guarded(async {
            Ok(quiver_engine::table::indices::drop_index(&self.table, &name).await? as f64)
        })
        .await
    }

    /// Brings indexes up to date, compacts, and removes old versions and unreferenced files.
    #[napi]
    pub async fn optimize(
        &self,
        compaction: Option<NativeCompactionOptions>,
        cleanup: Option<NativeCleanupOptions>,
        progress: Option<ProgressCallback>,
    ) -> napi::Result<NativeOptimizeResult> {
        self.check_open()?;
        let progress = progress_fn(progress);
        let options = quiver_engine::maintenance::OptimizeOptions {
            compaction: compaction_options(compaction, progress.clone())?,
            cleanup: cleanup_options(cleanup, progress)?,
        };
        guarded(async {
            let r = quiver_engine::maintenance::optimize(&self.table, options).await?;
            Ok(NativeOptimizeResult {
                compaction: r.compaction.into(),
                prune: r.prune.into(),
                indexes: NativeOptimizeStats {
                    indexes_optimized: r.indexes.indexes_optimized as f64,
                    rows_added: r.indexes.rows_added as f64,
                    rows_removed: r.indexes.rows_removed as f64,
                    version: r.indexes.version as f64,
                },
                version: r.version as f64,
            })
        })
        .await
    }

    /// Rewrites small fragments into fewer, fuller ones.
    #[napi]
    pub async fn compact_files(
        &self,
        options: Option<NativeCompactionOptions>,
        progress: Option<ProgressCallback>,
    ) -> napi::Result<NativeCompactionMetrics> {
        self.check_open()?;
        let options = compaction_options(options, progress_fn(progress))?;
        guarded(async { Ok(self.table.compact_files(options).await?.into()) }).await
    }

    /// This table's automatic maintenance settings on this connection (`None`: the
    /// connection's).
    #[napi]
    pub fn set_maintenance(
        &self,
        options: Option<NativeMaintenanceOptions>,
        on_event: Option<MaintenanceCallback>,
    ) -> napi::Result<()> {
        self.check_open()?;
        let settings = match options {
            None => None,
            Some(o) => Some(maintenance_options(Some(o), on_event)?),
        };
        self.table.set_maintenance(settings).map_err(to_js_error)
    }

    /// Removes old versions and unreferenced files.
    #[napi]
    pub async fn cleanup_old_versions(
        &self,
        options: Option<NativeCleanupOptions>,
        progress: Option<ProgressCallback>,
    ) -> napi::Result<NativeCleanupStats> {
        self.check_open()?;
        let options = cleanup_options(options, progress_fn(progress))?;
        guarded(async { Ok(self.table.cleanup_old_versions(options).await?.into()) }).await
    }

    /// I/O done through this table's store so far (shared by the connection's tables).
    #[napi]
    pub fn io_stats(&self) -> NativeIoStats {
        let s = self.table.io_stats();
        NativeIoStats {
            read_ops: s.read_ops as f64,
            read_bytes: s.read_bytes as f64,
            write_ops: s.write_ops as f64,
            write_bytes: s.write_bytes as f64,
        }
    }
}

impl NativeTable {
    fn scan_options(&self, options: NativeScanOptions) -> quiver_engine::Result<ScanOptions> {
        let count = |v: Option<f64>, what: &str| -> quiver_engine::Result<Option<u64>> {
            match v {
                Some(n) if n.fract() != 0.0 || n < 0.0 => Err(EngineError::InvalidArgument(
                    format!("{what} must be a non-negative integer, got {n}"),
                )),
                other => Ok(other.map(|n| n as u64)),
            }
        };
        let filter = options
            .filter
            .as_deref()
            .map(|f| self.table.parse_filter(f))
            .transpose()?;
        Ok(ScanOptions {
            filter,
            columns: options.columns,
            limit: count(options.limit, "limit")?,
            offset: count(options.offset, "offset")?.unwrap_or(0),
            with_row_id: options.with_row_id.unwrap_or(false),
            batch_size: options
                .batch_size
                .map_or(quiver_engine::table::scan::DEFAULT_BATCH_SIZE, |b| {
                    b as usize
                }),
            ..Default::default()
        })
    }

    fn text_search_options(
        &self,
        options: NativeTextSearchOptions,
    ) -> quiver_engine::Result<quiver_engine::query::text::TextSearch> {
        Ok(quiver_engine::query::text::TextSearch {
            query: fts_query(options.nodes)?,
            k: options.k as usize,
            offset: options.offset.unwrap_or(0) as usize,
            columns: options.columns,
            with_row_id: options.with_row_id.unwrap_or(false),
            filter: options
                .filter
                .as_deref()
                .map(|f| self.table.parse_filter(f))
                .transpose()?,
            postfilter: options.postfilter.unwrap_or(false),
        })
    }

    fn search_options(
        &self,
        query: Vec<f64>,
        options: NativeSearchOptions,
    ) -> quiver_engine::Result<quiver_engine::query::VectorSearch> {
        let distance_type = options
            .distance_type
            .as_deref()
            .map(str::parse)
            .transpose()?;
        Ok(quiver_engine::query::VectorSearch {
            column: options.column,
            query,
            k: options.k as usize,
            distance_type,
            columns: options.columns,
            with_row_id: options.with_row_id.unwrap_or(false),
            distance_range: (
                options.lower_bound.map(|v| v as f32),
                options.upper_bound.map(|v| v as f32),
            ),
            filter: options
                .filter
                .as_deref()
                .map(|f| self.table.parse_filter(f))
                .transpose()?,
            postfilter: options.postfilter.unwrap_or(false),
            nprobes: options.nprobes.map(|n| n as usize),
            refine_factor: options.refine_factor,
            bypass_index: options.bypass_vector_index.unwrap_or(false),
            target_recall: options.target_recall.map(|r| r as f32),
            ef: options.ef.map(|n| n as usize),
        })
    }
}
