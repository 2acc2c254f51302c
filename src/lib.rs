//! Node.js binding of Quiver (napi-rs). Thin by design: argument conversion, async tasks and
//! error mapping only; the engine lives in `crates/quiver-engine`. Data crosses the boundary
//! as Arrow IPC stream bytes (one copy); the TypeScript layer in `lib/` decodes them with
//! apache-arrow and turns errors into typed `Error` subclasses using the `[Code]` prefix that
//! [`to_js_error`] puts on every message.

use std::future::Future;
use std::io::Cursor;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use napi::bindgen_prelude::{BigInt, Buffer};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use quiver_engine::storage::{Durability, StorageOptions};
use quiver_engine::table::{MergeInsert, UpdateValue};
use quiver_engine::{
    batches_stream, ColumnAlteration, ConnectOptions, CreateMode, Database, Error as EngineError,
    NewColumns, ScanOptions, WriteParams,
};

/// napi's tokio runtime with a small blocking pool: local file reads run on blocking threads,
/// and every extra thread keeps a malloc arena of its own, holding freed read buffers (a
/// serving process's peak RSS grew by tens of MiB that way).
#[napi_derive::module_init]
fn init_runtime() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    if let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(2 * cores.max(2))
        .build()
    {
        napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
    }
}

/// Version of the native addon (matches the npm package version).
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Major.minor version of the data file format this build writes.
#[napi]
pub fn format_version() -> String {
    format!(
        "{}.{}",
        quiver_engine::format::FORMAT_MAJOR,
        quiver_engine::format::FORMAT_MINOR
    )
}

/// The stable error code of an engine error (the TS layer maps codes to classes).
fn error_code(e: &EngineError) -> &'static str {
    match e {
        EngineError::InvalidArgument(_) => "InvalidArgument",
        EngineError::SchemaMismatch(_) | EngineError::UnsupportedType { .. } => "SchemaMismatch",
        EngineError::TableAlreadyExists(_) => "TableExists",
        EngineError::TableNotFound(_) => "TableNotFound",
        EngineError::VersionNotFound { .. } => "VersionNotFound",
        EngineError::MissingFile(_) => "MissingFile",
        EngineError::RowNotFound(_) => "RowNotFound",
        EngineError::IndexNotFound(_) => "IndexNotFound",
        EngineError::TagNotFound(_) => "TagNotFound",
        EngineError::TagAlreadyExists(_) => "TagExists",
        EngineError::Corrupt { .. } | EngineError::IncompatibleVersion { .. } => "Corruption",
        EngineError::CommitConflict(_) => "CommitConflict",
        EngineError::CommitRetriesExhausted { .. } => "CommitRetriesExhausted",
        EngineError::ReadOnlyVersion(_) => "ReadOnlyVersion",
        EngineError::Storage(_) => "Io",
        EngineError::Arrow(_) => "InvalidArgument",
        EngineError::Filter(_) => "Filter",
        EngineError::Internal(_) => "Internal",
    }
}

fn to_js_error(e: EngineError) -> napi::Error {
    let mut message = format!("[{}] {e}", error_code(&e));
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    napi::Error::from_reason(message)
}

fn coded(code: &str, message: impl std::fmt::Display) -> napi::Error {
    napi::Error::from_reason(format!("[{code}] {message}"))
}

/// Runs engine work and turns both errors and panics into rejected promises.
async fn guarded<T>(work: impl Future<Output = quiver_engine::Result<T>>) -> napi::Result<T> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result.map_err(to_js_error),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(coded("Internal", format!("the engine panicked: {what}")))
        }
    }
}

/// Decodes caller-given IPC stream bytes, which may be damaged: arrow-ipc verifies the
/// flatbuffer metadata, but a body whose buffers do not fit it can make it panic while slicing
/// (caught here, so a damaged stream is refused like any other), and values it does not check
/// (offsets, UTF-8, child lengths) are validated in full before the engine sees them.
fn decode_ipc(bytes: &[u8]) -> quiver_engine::Result<(SchemaRef, Vec<RecordBatch>)> {
    let damaged = |e: &dyn std::fmt::Display| {
        EngineError::InvalidArgument(format!("Arrow IPC stream is damaged: {e}"))
    };
    let read = || -> quiver_engine::Result<(SchemaRef, Vec<RecordBatch>)> {
        let reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| {
            EngineError::InvalidArgument(format!("data is not an Arrow IPC stream: {e}"))
        })?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| damaged(&e))?;
        for column in batches.iter().flat_map(|b| b.columns()) {
            column.to_data().validate_full().map_err(|e| damaged(&e))?;
        }
        Ok((schema, batches))
    };
    let (schema, batches) = std::panic::catch_unwind(AssertUnwindSafe(read))
        .unwrap_or_else(|_| Err(damaged(&"its buffers do not match its metadata")))?;
    decode_dictionaries(schema, batches)
}

/// Dictionary-encoded columns (apache-arrow encodes JS strings that way) are stored as their
/// plain value type.
fn decode_dictionaries(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> quiver_engine::Result<(SchemaRef, Vec<RecordBatch>)> {
    if !schema
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Dictionary(_, _)))
    {
        return Ok((schema, batches));
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Dictionary(_, value) => {
                f.as_ref().clone().with_data_type(value.as_ref().clone())
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    let plain = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let batches = batches
        .into_iter()
        .map(|batch| {
            let columns = batch
                .columns()
                .iter()
                .map(|c| match c.as_any_dictionary_opt() {
                    Some(dict) => Ok(arrow_select::take::take(
                        dict.values().as_ref(),
                        dict.keys(),
                        None,
                    )?),
                    None => Ok(c.clone()),
                })
                .collect::<quiver_engine::Result<Vec<_>>>()?;
            Ok(RecordBatch::try_new(plain.clone(), columns)?)
        })
        .collect::<quiver_engine::Result<Vec<_>>>()?;
    Ok((plain, batches))
}

fn encode_ipc(schema: &SchemaRef, batches: &[RecordBatch]) -> quiver_engine::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(
        batches
            .iter()
            .map(|b| b.get_array_memory_size())
            .sum::<usize>()
            + 1024,
    );
    let mut writer = StreamWriter::try_new(&mut out, schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(out)
}

fn u64_of(value: &BigInt, what: &str) -> napi::Result<u64> {
    let (signed, v, lossless) = value.get_u64();
    if signed || !lossless {
        return Err(coded(
            "InvalidArgument",
            format!("{what} must be a non-negative 64-bit integer"),
        ));
    }
    Ok(v)
}

fn version_arg(v: f64) -> napi::Result<u64> {
    if v.fract() != 0.0 || !(1.0..=9.007_199_254_740_991e15).contains(&v) {
        return Err(coded(
            "InvalidArgument",
            format!("version must be a positive integer, got {v}"),
        ));
    }
    Ok(v as u64)
}

fn create_mode(mode: &str) -> napi::Result<CreateMode> {
    match mode {
        "create" => Ok(CreateMode::Create),
        "overwrite" => Ok(CreateMode::Overwrite),
        "exist_ok" => Ok(CreateMode::ExistOk),
        other => Err(coded(
            "InvalidArgument",
            format!("mode must be 'create' or 'overwrite', got '{other}'"),
        )),
    }
}

/// Options of `connect`.
#[napi(object)]
pub struct NativeConnectOptions {
    /// Seconds between checks for other writers' commits; 0 checks before every read.
    pub read_consistency_interval: Option<f64>,
    /// Byte budget of the metadata cache.
    pub metadata_cache_bytes: Option<f64>,
    /// Byte budget of the index cache.
    pub index_cache_bytes: Option<f64>,
    /// Exact search reads local vector pages through memory maps.
    pub memory_map: Option<bool>,
    /// Automatic maintenance (on unless `enabled` is false).
    pub maintenance: Option<NativeMaintenanceOptions>,
    /// `"full"` (default) or `"process"`.
    pub durability: Option<String>,
}

/// Settings of automatic maintenance (times in seconds).
#[napi(object)]
pub struct NativeMaintenanceOptions {
    pub enabled: Option<bool>,
    pub small_fragments: Option<u32>,
    pub deleted_share: Option<f64>,
    pub retention_seconds: Option<f64>,
    pub quiet_seconds: Option<f64>,
    pub max_delay_seconds: Option<f64>,
    pub target_rows_per_fragment: Option<f64>,
}

/// Something automatic maintenance did.
#[napi(object)]
pub struct NativeMaintenanceEvent {
    pub table: String,
    pub kind: String,
    pub version: f64,
    pub error: Option<String>,
    pub compaction: Option<NativeCompactionMetrics>,
    pub cleanup: Option<NativeCleanupStats>,
}

type MaintenanceCallback =
    ThreadsafeFunction<NativeMaintenanceEvent, (), NativeMaintenanceEvent, napi::Status, false>;

fn seconds_arg(name: &str, value: Option<f64>, default: Duration) -> napi::Result<Duration> {
    match value {
        None => Ok(default),
        Some(s) if s >= 0.0 => Ok(Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)),
        Some(s) => Err(coded(
            "InvalidArgument",
            format!("{name} must be >= 0, got {s}"),
        )),
    }
}

fn maintenance_options(
    options: Option<NativeMaintenanceOptions>,
    listener: Option<MaintenanceCallback>,
) -> napi::Result<quiver_engine::maintenance::MaintenanceOptions> {
    use quiver_engine::maintenance::MaintenanceOptions;
    let defaults = MaintenanceOptions::default();
    let o = options.unwrap_or(NativeMaintenanceOptions {
        enabled: None,
        small_fragments: None,
        deleted_share: None,
        retention_seconds: None,
        quiet_seconds: None,
        max_delay_seconds: None,
        target_rows_per_fragment: None,
    });
    let listener = listener.map(|callback| {
        let callback = Arc::new(callback);
        Arc::new(move |e: quiver_engine::maintenance::MaintenanceEvent| {
            callback.call(
                NativeMaintenanceEvent {
                    table: e.table,
                    kind: e.kind.to_string(),
                    version: e.version as f64,
                    error: e.error,
                    compaction: e.compaction.map(Into::into),
                    cleanup: e.cleanup.map(Into::into),
                },
                ThreadsafeFunctionCallMode::NonBlocking,
            );
        }) as quiver_engine::maintenance::MaintenanceListener
    });
    Ok(MaintenanceOptions {
        enabled: o.enabled.unwrap_or(true),
        small_fragments: o
            .small_fragments
            .map_or(defaults.small_fragments, |n| n as usize),
        deleted_share: o.deleted_share.unwrap_or(defaults.deleted_share),
        retention: seconds_arg(
            "maintenance retention",
            o.retention_seconds,
            defaults.retention,
        )?,
        quiet: seconds_arg("maintenance quiet", o.quiet_seconds, defaults.quiet)?,
        max_delay: seconds_arg(
            "maintenance maxDelay",
            o.max_delay_seconds,
            defaults.max_delay,
        )?,
        target_rows_per_fragment: o
            .target_rows_per_fragment
            .map_or(Ok(defaults.target_rows_per_fragment), |n| {
                count_arg("maintenance targetRowsPerFragment", n)
            })?,
        listener,
    })
}

/// A non-negative whole number given as a JS number.
fn count_arg(name: &str, n: f64) -> napi::Result<u64> {
    if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 {
        Ok(n as u64)
    } else {
        Err(coded(
            "InvalidArgument",
            format!("{name} must be a whole number >= 0, got {n}"),
        ))
    }
}

/// A database connection.
#[napi]
pub struct NativeConnection {
    db: Database,
    uri: String,
    open: Arc<AtomicBool>,
    read_consistency: Option<Duration>,
}

/// Opens (or creates on first write) the database at `uri`.
#[napi]
pub async fn connect(
    uri: String,
    options: Option<NativeConnectOptions>,
    on_maintenance: Option<MaintenanceCallback>,
) -> napi::Result<NativeConnection> {
    let options = options.unwrap_or(NativeConnectOptions {
        read_consistency_interval: None,
        metadata_cache_bytes: None,
        index_cache_bytes: None,
        memory_map: None,
        maintenance: None,
        durability: None,
    });
    let durability = match options.durability.as_deref() {
        None => Durability::Full,
        Some(name) => Durability::parse(name).map_err(to_js_error)?,
    };
    let maintenance = maintenance_options(options.maintenance, on_maintenance)?;
    let read_consistency = match options.read_consistency_interval {
        None => Some(Duration::ZERO),
        // An interval too long for a Duration (about 585 billion years) never elapses.
        Some(s) if s >= 0.0 => Duration::try_from_secs_f64(s).ok(),
        Some(s) => {
            return Err(coded(
                "InvalidArgument",
                format!("readConsistencyInterval must be >= 0 seconds, got {s}"),
            ))
        }
    };
    let engine_options = ConnectOptions {
        metadata_cache_bytes: options.metadata_cache_bytes.map(|b| b.max(0.0) as u64),
        index_cache_bytes: options.index_cache_bytes.map(|b| b.max(0.0) as u64),
        storage: Some(StorageOptions {
            memory_map: options.memory_map.unwrap_or(false),
            durability,
            ..StorageOptions::default()
        }),
        maintenance: Some(maintenance),
    };
    let db = guarded(Database::connect(&uri, engine_options)).await?;
    Ok(NativeConnection {
        db,
        uri,
        open: Arc::new(AtomicBool::new(true)),
        read_consistency,
    })
}

impl NativeConnection {
    fn check_open(&self) -> napi::Result<()> {
        if self.open.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(coded(
                "Closed",
                format!("connection to '{}' is closed", self.uri),
            ))
        }
    }

    fn wrap(&self, table: quiver_engine::Table) -> NativeTable {
        NativeTable {
            table,
            connection_open: self.open.clone(),
            open: Arc::new(AtomicBool::new(true)),
            read_consistency: self.read_consistency,
            last_refresh: Arc::new(Mutex::new(Instant::now())),
        }
    }
}

#[napi]
impl NativeConnection {
    #[napi]
    pub fn uri(&self) -> String {
        self.uri.clone()
    }

    #[napi]
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Closes the connection; its tables are closed with it.
    #[napi]
    pub fn close(&self) {
        self.open.store(false, Ordering::Release);
        self.db.close();
    }

    #[napi]
    pub async fn table_names(&self) -> napi::Result<Vec<String>> {
        self.check_open()?;
        guarded(self.db.table_names()).await
    }

    #[napi]
    pub async fn open_table(
        &self,
        name: String,
        version: Option<f64>,
    ) -> napi::Result<NativeTable> {
        self.check_open()?;
        let table = match version {
            Some(v) => {
                let v = version_arg(v)?;
                guarded(self.db.open_table_at(&name, v)).await?
            }
            None => guarded(self.db.open_table(&name)).await?,
        };
        Ok(self.wrap(table))
    }

    /// Creates a table from Arrow IPC stream bytes. `mode`: create, overwrite or exist_ok.
    #[napi]
    pub async fn create_table(
        &self,
        name: String,
        data: Buffer,
        mode: String,
    ) -> napi::Result<NativeTable> {
        self.check_open()?;
        let mode = match mode.as_str() {
            "create" => CreateMode::Create,
            "overwrite" => CreateMode::Overwrite,
            "exist_ok" => CreateMode::ExistOk,
            other => {
                return Err(coded(
                    "InvalidArgument",
                    format!("mode must be 'create' or 'overwrite', got '{other}'"),
                ))
            }
        };
        let table = guarded(async {
            let (schema, batches) = decode_ipc(&data)?;
            self.db
                .create_table(
                    &name,
                    schema,
                    batches_stream(batches),
                    mode,
                    WriteParams::default(),
                )
                .await
        })
        .await?;
        Ok(self.wrap(table))
    }

    /// Starts a streaming create: send batches to the writer, then `finish`.
    #[napi]
    pub async fn create_table_writer(
        &self,
        name: String,
        schema: Buffer,
        mode: String,
    ) -> napi::Result<NativeWriter> {
        self.check_open()?;
        let mode = create_mode(&mode)?;
        let (table_schema, _) = guarded(async { decode_ipc(&schema) }).await?;
        let db = self.db.clone();
        Ok(NativeWriter::start(move |stream| async move {
            let table = db
                .create_table(&name, table_schema, stream, mode, WriteParams::default())
                .await?;
            Ok(table.version())
        }))
    }

    #[napi]
    pub async fn drop_table(&self, name: String) -> napi::Result<()> {
        self.check_open()?;
        guarded(self.db.drop_table(&name)).await
    }
}

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

fn skipped_versions(table: &quiver_engine::Table) -> Vec<NativeSkippedVersion> {
    table
        .skipped_versions()
        .into_iter()
        .map(|s| NativeSkippedVersion {
            version: s.version as f64,
            reason: s.reason,
        })
        .collect()
}

/// What automatic maintenance did for a table.
#[napi(object)]
pub struct NativeMaintenanceActivity {
    pub rounds: f64,
    pub compactions: f64,
    pub cleanups: f64,
    pub index_refreshes: f64,
    pub errors: f64,
    pub active: bool,
    pub last_round_micros: f64,
}

/// What a compaction did.
#[napi(object)]
pub struct NativeCompactionMetrics {
    pub fragments_removed: f64,
    pub fragments_added: f64,
    pub files_removed: f64,
    pub files_added: f64,
    pub rows_rewritten: f64,
    pub version: f64,
}

impl From<quiver_engine::table::CompactionMetrics> for NativeCompactionMetrics {
    fn from(m: quiver_engine::table::CompactionMetrics) -> Self {
        NativeCompactionMetrics {
            fragments_removed: m.fragments_removed as f64,
            fragments_added: m.fragments_added as f64,
            files_removed: m.files_removed as f64,
            files_added: m.files_added as f64,
            rows_rewritten: m.rows_rewritten as f64,
            version: m.version as f64,
        }
    }
}

/// What a cleanup removed.
#[napi(object)]
pub struct NativeCleanupStats {
    pub bytes_removed: f64,
    pub old_versions_removed: f64,
    pub files_removed: f64,
}

impl From<quiver_engine::table::CleanupStats> for NativeCleanupStats {
    fn from(s: quiver_engine::table::CleanupStats) -> Self {
        NativeCleanupStats {
            bytes_removed: s.bytes_removed as f64,
            old_versions_removed: s.old_versions_removed as f64,
            files_removed: s.files_removed as f64,
        }
    }
}

/// Options of `compactFiles` (and the compaction step of `optimize`).
#[napi(object)]
pub struct NativeCompactionOptions {
    pub target_rows_per_fragment: Option<f64>,
    pub max_bytes_per_fragment: Option<f64>,
    pub materialize_deletions: Option<bool>,
    pub materialize_deletions_threshold: Option<f64>,
    pub num_threads: Option<u32>,
}

/// Options of `cleanupOldVersions` (and the cleanup step of `optimize`).
#[napi(object)]
pub struct NativeCleanupOptions {
    /// Milliseconds since the Unix epoch: versions superseded before it are removed.
    pub older_than_ms: Option<f64>,
    pub delete_unverified: Option<bool>,
}

/// What `optimize` did.
#[napi(object)]
pub struct NativeOptimizeResult {
    pub compaction: NativeCompactionMetrics,
    pub prune: NativeCleanupStats,
    pub indexes: NativeOptimizeStats,
    pub version: f64,
}

fn compaction_options(
    o: Option<NativeCompactionOptions>,
    progress: Option<quiver_engine::index::ProgressFn>,
) -> napi::Result<quiver_engine::table::CompactionOptions> {
    let d = quiver_engine::table::CompactionOptions::default();
    let Some(o) = o else {
        return Ok(quiver_engine::table::CompactionOptions { progress, ..d });
    };
    Ok(quiver_engine::table::CompactionOptions {
        target_rows_per_fragment: o
            .target_rows_per_fragment
            .map_or(Ok(d.target_rows_per_fragment), |n| {
                count_arg("targetRowsPerFragment", n)
            })?,
        max_bytes_per_fragment: o
            .max_bytes_per_fragment
            .map_or(Ok(d.max_bytes_per_fragment), |n| {
                count_arg("maxBytesPerFragment", n)
            })?,
        materialize_deletions: o.materialize_deletions.unwrap_or(d.materialize_deletions),
        materialize_deletions_threshold: o
            .materialize_deletions_threshold
            .unwrap_or(d.materialize_deletions_threshold),
        tiered: false,
        num_threads: o.num_threads.map(|n| n as usize),
        progress,
    })
}

fn cleanup_options(
    o: Option<NativeCleanupOptions>,
    progress: Option<quiver_engine::index::ProgressFn>,
) -> napi::Result<quiver_engine::table::CleanupOptions> {
    let (older_than_ms, delete_unverified) =
        o.map_or((None, None), |o| (o.older_than_ms, o.delete_unverified));
    let before = match older_than_ms {
        None => None,
        // Whole milliseconds (a float division would land a hair before the date), clamped
        // to the years a date can hold (JS dates end in 275760).
        Some(ms) if ms.is_finite() => Some(
            std::time::UNIX_EPOCH + Duration::from_millis(ms.clamp(0.0, 8.64e15).round() as u64),
        ),
        Some(ms) => {
            return Err(coded(
                "InvalidArgument",
                format!("cleanupOlderThan must be a valid date, got {ms}"),
            ))
        }
    };
    Ok(quiver_engine::table::CleanupOptions {
        before,
        delete_unverified: delete_unverified.unwrap_or(false),
        progress,
    })
}

fn progress_fn(progress: Option<ProgressCallback>) -> Option<quiver_engine::index::ProgressFn> {
    progress.map(|callback| {
        let callback = Arc::new(callback);
        Arc::new(move |p: quiver_engine::index::BuildProgress| {
            callback.call(
                NativeIndexProgress {
                    phase: p.phase.to_string(),
                    done: p.done as f64,
                    total: p.total as f64,
                },
                ThreadsafeFunctionCallMode::NonBlocking,
            );
        }) as quiver_engine::index::ProgressFn
    })
}

/// Options of a scan.
#[napi(object)]
pub struct NativeScanOptions {
    pub columns: Option<Vec<String>>,
    pub limit: Option<f64>,
    pub offset: Option<f64>,
    pub with_row_id: Option<bool>,
    pub batch_size: Option<u32>,
    /// SQL filter.
    pub filter: Option<String>,
}

/// Options of a vector search.
#[napi(object)]
pub struct NativeSearchOptions {
    pub column: Option<String>,
    pub k: u32,
    pub distance_type: Option<String>,
    pub columns: Option<Vec<String>>,
    pub with_row_id: Option<bool>,
    pub lower_bound: Option<f64>,
    pub upper_bound: Option<f64>,
    /// SQL filter, applied before ranking unless `postfilter`.
    pub filter: Option<String>,
    pub postfilter: Option<bool>,
    pub nprobes: Option<u32>,
    pub refine_factor: Option<u32>,
    pub bypass_vector_index: Option<bool>,
}

/// How to build a vector index (see the engine's `VectorIndexParams`).
#[napi(object)]
pub struct NativeIndexOptions {
    /// `IVF_PQ` or `IVF_FLAT`.
    pub index_type: String,
    pub distance_type: Option<String>,
    pub num_partitions: Option<u32>,
    pub num_sub_vectors: Option<u32>,
    pub num_bits: Option<u32>,
    pub max_iterations: Option<u32>,
    pub sample_rate: Option<u32>,
    pub name: Option<String>,
    pub replace: Option<bool>,
}

/// A search's result (Arrow IPC bytes) and how it ran.
#[napi(object)]
pub struct NativeSearchResult {
    pub data: Buffer,
    /// The index used, if any.
    pub index: Option<String>,
    pub partitions_probed: u32,
    /// Rows whose distance was computed exactly (exact search, refinement).
    pub exact_rows: f64,
}

/// Build progress handed to the JS callback.
#[napi(object)]
pub struct NativeIndexProgress {
    pub phase: String,
    pub done: f64,
    pub total: f64,
}

/// An index as `listIndices` / `indexStats` describe it.
#[napi(object)]
pub struct NativeIndexInfo {
    pub name: String,
    pub index_type: String,
    pub columns: Vec<String>,
    pub distance_type: String,
    pub num_partitions: u32,
    pub num_sub_vectors: u32,
    pub num_bits: u32,
    pub num_indexed_rows: f64,
    pub num_unindexed_rows: f64,
}

impl From<quiver_engine::index::IndexInfo> for NativeIndexInfo {
    fn from(i: quiver_engine::index::IndexInfo) -> Self {
        NativeIndexInfo {
            name: i.name,
            index_type: i.index_type,
            columns: i.columns,
            distance_type: i.distance_type,
            num_partitions: i.num_partitions,
            num_sub_vectors: i.num_sub_vectors,
            num_bits: i.num_bits,
            num_indexed_rows: i.num_indexed_rows as f64,
            num_unindexed_rows: i.num_unindexed_rows as f64,
        }
    }
}

/// What `optimize` did.
#[napi(object)]
pub struct NativeOptimizeStats {
    pub indexes_optimized: f64,
    pub rows_added: f64,
    pub rows_removed: f64,
    pub version: f64,
}

/// A JS progress callback called from build threads without waiting for it.
type ProgressCallback =
    ThreadsafeFunction<NativeIndexProgress, (), NativeIndexProgress, napi::Status, false>;

/// What a merge-insert does (see the engine's `MergeInsert`).
#[napi(object)]
pub struct NativeMergeOptions {
    pub when_matched_update_all: bool,
    pub matched_where: Option<String>,
    pub when_not_matched_insert_all: bool,
    pub when_not_matched_by_source_delete: bool,
    pub by_source_where: Option<String>,
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
    table: quiver_engine::Table,
    connection_open: Arc<AtomicBool>,
    open: Arc<AtomicBool>,
    read_consistency: Option<Duration>,
    last_refresh: Arc<Mutex<Instant>>,
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
        let Some(interval) = self.read_consistency else {
            return Ok(());
        };
        let due = {
            let last = self
                .last_refresh
                .lock()
                .map_err(|_| EngineError::Internal("refresh clock poisoned".into()))?;
            interval.is_zero() || last.elapsed() >= interval
        };
        if due {
            self.table.refresh().await?;
            if let Ok(mut last) = self.last_refresh.lock() {
                *last = Instant::now();
            }
        }
        Ok(())
    }
}

/// A stream of result batches, each as Arrow IPC stream bytes.
#[napi]
pub struct NativeBatchStream {
    schema: SchemaRef,
    inner: Arc<tokio::sync::Mutex<Option<BoxStream<'static, quiver_engine::Result<RecordBatch>>>>>,
}

#[napi]
impl NativeBatchStream {
    /// The next batch as IPC bytes, or `null` at the end.
    #[napi]
    pub async fn next(&self) -> napi::Result<Option<Buffer>> {
        let inner = self.inner.clone();
        let schema = self.schema.clone();
        guarded(async move {
            let mut guard = inner.lock().await;
            let Some(stream) = guard.as_mut() else {
                return Ok(None);
            };
            match stream.next().await {
                Some(batch) => Ok(Some(encode_ipc(&schema, &[batch?])?.into())),
                None => {
                    *guard = None;
                    Ok(None)
                }
            }
        })
        .await
    }

    /// The schema of the batches, as an IPC stream without batches.
    #[napi]
    pub fn schema(&self) -> napi::Result<Buffer> {
        encode_ipc(&self.schema, &[])
            .map(Buffer::from)
            .map_err(to_js_error)
    }

    /// Stops the stream early, releasing what it holds.
    #[napi]
    pub async fn cancel(&self) -> napi::Result<()> {
        *self.inner.lock().await = None;
        Ok(())
    }
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
    pub async fn add(&self, data: Buffer, mode: String) -> napi::Result<f64> {
        self.check_open()?;
        guarded(async {
            let (schema, batches) = decode_ipc(&data)?;
            let version = match mode.as_str() {
                "append" => {
                    // Checked before writing so that data without batches is refused too.
                    self.table.manifest().schema.check_compatible(&schema)?;
                    self.table
                        .append(batches_stream(batches), WriteParams::default())
                        .await?
                }
                "overwrite" => {
                    self.table
                        .overwrite(schema, batches_stream(batches), WriteParams::default())
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
    pub async fn add_writer(&self, schema: Buffer, mode: String) -> napi::Result<NativeWriter> {
        self.check_open()?;
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
                table
                    .overwrite(new_schema, stream, WriteParams::default())
                    .await
            } else {
                table.append(stream, WriteParams::default()).await
            }
        }))
    }

    /// Deletes the rows matching a SQL filter; returns [deleted rows, version].
    #[napi]
    pub async fn delete(&self, filter: String) -> napi::Result<Vec<f64>> {
        self.check_open()?;
        guarded(async {
            let r = self.table.delete(&filter).await?;
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
    ) -> napi::Result<Vec<f64>> {
        self.check_open()?;
        guarded(async {
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
            let r = self.table.update(filter.as_deref(), assignments).await?;
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
        Ok(NativeBatchStream {
            schema,
            inner: Arc::new(tokio::sync::Mutex::new(Some(stream))),
        })
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

    /// Nearest neighbours of `query` (through the column's index, or exact), as IPC bytes with
    /// a `_distance` column, and how the search ran.
    #[napi]
    pub async fn vector_search(
        &self,
        query: Vec<f64>,
        options: NativeSearchOptions,
    ) -> napi::Result<NativeSearchResult> {
        self.check_open()?;
        guarded(async {
            self.consistent().await?;
            let search = self.search_options(query, options)?;
            let (batch, stats) =
                quiver_engine::query::search_with_stats(&self.table, &search).await?;
            Ok(NativeSearchResult {
                data: encode_ipc(&batch.schema(), &[batch])?.into(),
                index: stats.index,
                partitions_probed: stats.partitions_probed as u32,
                exact_rows: stats.exact_rows as f64,
            })
        })
        .await
    }

    /// The engine's plan for a vector search as an indented tree; with `analyze`, the search
    /// runs and each operator shows what it measured.
    #[napi]
    pub async fn plan_vector_search(
        &self,
        query: Vec<f64>,
        options: NativeSearchOptions,
        verbose: bool,
        analyze: bool,
    ) -> napi::Result<String> {
        self.check_open()?;
        guarded(async {
            self.consistent().await?;
            let search = self.search_options(query, options)?;
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

    /// Trains a vector index on `column` and commits it; `progress` receives build progress.
    #[napi]
    pub async fn create_index(
        &self,
        column: String,
        options: NativeIndexOptions,
        progress: Option<ProgressCallback>,
    ) -> napi::Result<NativeIndexInfo> {
        use quiver_engine::index::{CreateIndexOptions, IndexKind, VectorIndexParams};
        self.check_open()?;
        let kind = IndexKind::parse(&options.index_type).ok_or_else(|| {
            coded(
                "InvalidArgument",
                format!(
                    "unknown index type '{}'; use IVF_PQ or IVF_FLAT",
                    options.index_type
                ),
            )
        })?;
        guarded(async move {
            let distance_type = match &options.distance_type {
                Some(d) => d.parse()?,
                None => quiver_engine::linalg::DistanceType::L2,
            };
            let progress = progress_fn(progress);
            let create = CreateIndexOptions {
                params: VectorIndexParams {
                    kind,
                    distance_type,
                    num_partitions: options.num_partitions.map(|n| n as usize),
                    num_sub_vectors: options.num_sub_vectors.map(|n| n as usize),
                    num_bits: options.num_bits,
                    max_iterations: options.max_iterations.map(|n| n as usize),
                    sample_rate: options.sample_rate.map(|n| n as usize),
                },
                name: options.name,
                replace: options.replace.unwrap_or(true),
                progress,
            };
            let info = quiver_engine::index::create_index(&self.table, &column, create).await?;
            Ok(info.into())
        })
        .await
    }

    #[napi]
    pub async fn list_indices(&self) -> napi::Result<Vec<NativeIndexInfo>> {
        self.read(|t| {
            Ok(quiver_engine::index::list_indices(t)?
                .into_iter()
                .map(Into::into)
                .collect())
        })
        .await
    }

    #[napi]
    pub async fn index_stats(&self, name: String) -> napi::Result<NativeIndexInfo> {
        self.read(|t| Ok(quiver_engine::index::index_stats(t, &name)?.into()))
            .await
    }

    #[napi]
    pub async fn drop_index(&self, name: String) -> napi::Result<f64> {
        self.check_open()?;
        guarded(async { Ok(quiver_engine::index::drop_index(&self.table, &name).await? as f64) })
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
        })
    }
}

/// What the JS side sends a writer: batches, then an explicit end. A channel that closes
/// without `End` means the JS object was dropped or garbage-collected mid-stream: the engine
/// then sees an error and commits nothing, never a partial stream.
enum WriterMessage {
    Batch(quiver_engine::Result<RecordBatch>),
    End,
}

type BatchSender = tokio::sync::mpsc::Sender<WriterMessage>;

/// A streaming write: batches sent with `write` flow into one data-file writer, and `finish`
/// commits them as one version (or nothing, if anything failed, `abort` was called, or the
/// writer was dropped before `finish`).
#[napi]
pub struct NativeWriter {
    sender: tokio::sync::Mutex<Option<BatchSender>>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<quiver_engine::Result<u64>>>>,
}

impl NativeWriter {
    /// Starts `write` on a task that consumes batches as they arrive; two batches in flight at
    /// most, so ingest memory stays bounded whatever the total size.
    fn start<F, Fut>(write: F) -> NativeWriter
    where
        F: FnOnce(quiver_engine::BatchStream) -> Fut,
        Fut: Future<Output = quiver_engine::Result<u64>> + Send + 'static,
    {
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        let stream = futures::stream::unfold(Some(receiver), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(WriterMessage::Batch(item)) => Some((item, Some(rx))),
                Some(WriterMessage::End) => None,
                None => Some((
                    Err(EngineError::InvalidArgument(
                        "the write was abandoned before finish(): nothing was committed".into(),
                    )),
                    None,
                )),
            }
        })
        .boxed();
        let task = tokio::spawn(AssertUnwindSafe(write(stream)).catch_unwind().map(|r| {
            r.unwrap_or_else(|_| Err(EngineError::Internal("the writer panicked".into())))
        }));
        NativeWriter {
            sender: tokio::sync::Mutex::new(Some(sender)),
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    async fn outcome(&self) -> quiver_engine::Result<u64> {
        match self.task.lock().await.take() {
            Some(task) => task
                .await
                .map_err(|e| EngineError::Internal(format!("writer task failed: {e}")))?,
            None => Err(EngineError::InvalidArgument(
                "this write has already finished".into(),
            )),
        }
    }
}

#[napi]
impl NativeWriter {
    /// Sends the batches of an IPC stream; waits while the writer is busy.
    #[napi]
    pub async fn write(&self, data: Buffer) -> napi::Result<()> {
        guarded(async {
            // Each batch is checked against the table's schema by the engine.
            let (_, batches) = decode_ipc(&data)?;
            let sender = self.sender.lock().await.clone();
            let Some(sender) = sender else {
                return Err(EngineError::InvalidArgument(
                    "this write has already finished".into(),
                ));
            };
            for batch in batches {
                if sender.send(WriterMessage::Batch(Ok(batch))).await.is_err() {
                    // The writer stopped early: report why.
                    self.sender.lock().await.take();
                    return self.outcome().await.map(|_| ());
                }
            }
            Ok(())
        })
        .await
    }

    /// Commits everything written as one version and returns it.
    #[napi]
    pub async fn finish(&self) -> napi::Result<f64> {
        guarded(async {
            if let Some(sender) = self.sender.lock().await.take() {
                // A send fails only when the writer already stopped; `outcome` says why.
                let _ = sender.send(WriterMessage::End).await;
            }
            Ok(self.outcome().await? as f64)
        })
        .await
    }

    /// Abandons the write: nothing is committed.
    #[napi]
    pub async fn abort(&self) -> napi::Result<()> {
        self.abort_with("the write was aborted").await;
        let _ = self.outcome().await;
        Ok(())
    }
}

impl NativeWriter {
    async fn abort_with(&self, why: &str) {
        if let Some(sender) = self.sender.lock().await.take() {
            let _ = sender
                .send(WriterMessage::Batch(Err(EngineError::InvalidArgument(
                    why.to_string(),
                ))))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn reason<T>(work: impl Future<Output = quiver_engine::Result<T>>) -> String {
        match guarded(work).now_or_never() {
            Some(Err(error)) => error.reason,
            Some(Ok(_)) => panic!("expected an error"),
            None => panic!("the guarded future did not complete"),
        }
    }

    #[test]
    fn panics_become_internal_errors() {
        let literal = reason(async {
            panic!("boom");
            #[allow(unreachable_code)]
            Ok(())
        });
        assert_eq!(literal, "[Internal] the engine panicked: boom");
        let row = 3;
        let formatted = reason(async move {
            if row > 0 {
                panic!("bad row {row}");
            }
            Ok(())
        });
        assert_eq!(formatted, "[Internal] the engine panicked: bad row 3");
    }

    /// Counts the batches of a stream, failing (committing nothing) if any item is an error.
    async fn count_batches(mut stream: quiver_engine::BatchStream) -> quiver_engine::Result<u64> {
        let mut n = 0;
        while let Some(item) = stream.next().await {
            item?;
            n += 1;
        }
        Ok(n)
    }

    fn one_batch() -> RecordBatch {
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "x",
            arrow_schema::DataType::Int32,
            false,
        )]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(arrow_array::Int32Array::from(vec![1]))],
        )
        .expect("batch")
    }

    #[tokio::test]
    async fn a_dropped_writer_never_ends_its_stream_cleanly() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let writer = NativeWriter::start(|stream| async move {
            let outcome = count_batches(stream).await;
            let _ = tx.send(outcome.is_ok());
            outcome
        });
        let sender = writer.sender.lock().await.clone().expect("sender");
        sender
            .send(WriterMessage::Batch(Ok(one_batch())))
            .await
            .expect("send");
        drop(sender);
        drop(writer);
        assert_eq!(rx.await, Ok(false), "the write must fail, not commit");

        let finished = NativeWriter::start(count_batches);
        let sender = finished.sender.lock().await.clone().expect("sender");
        sender
            .send(WriterMessage::Batch(Ok(one_batch())))
            .await
            .expect("send");
        drop(sender);
        let end = finished.sender.lock().await.take().expect("sender");
        end.send(WriterMessage::End).await.expect("end");
        assert_eq!(finished.outcome().await.expect("ok"), 1);
    }

    #[test]
    fn damaged_ipc_bytes_are_refused_never_a_panic() {
        let schema = Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("a", arrow_schema::DataType::Int32, true),
            arrow_schema::Field::new("b", arrow_schema::DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow_array::Int32Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(arrow_array::StringArray::from(vec!["x", "yy", "zzz"])),
            ],
        )
        .expect("batch");
        let bytes = encode_ipc(&schema, &[batch]).expect("encode");
        assert!(decode_ipc(&bytes).is_ok());
        // Hundreds of the damaged streams make arrow-ipc panic (caught): keep the log readable.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                match decode_ipc(&damaged) {
                    Ok(_) | Err(EngineError::InvalidArgument(_)) => {}
                    Err(other) => panic!("byte {at} bit {bit}: {other}"),
                }
            }
            match decode_ipc(&bytes[..at]) {
                Ok(_) | Err(EngineError::InvalidArgument(_)) => {}
                Err(other) => panic!("truncated at {at}: {other}"),
            }
        }
        std::panic::set_hook(hook);
    }

    #[test]
    fn engine_errors_keep_their_code() {
        let error =
            reason(async { Err::<(), _>(EngineError::InvalidArgument("k must be > 0".into())) });
        assert!(error.starts_with("[InvalidArgument]"), "{error}");
        assert!(error.contains("k must be > 0"), "{error}");
    }
}
