//! `NativeConnection`: connecting, and the tables of a database.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use napi::bindgen_prelude::Buffer;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use quiver_engine::storage::{Durability, StorageOptions, DEFAULT_DATA_CACHE_BYTES};
use quiver_engine::table::session::{
    Caches, DEFAULT_INDEX_CACHE_BYTES, DEFAULT_METADATA_CACHE_BYTES,
};
use quiver_engine::{batches_stream, ConnectOptions, CreateMode, Database, WriteParams};

use crate::args::*;
use crate::errors::*;
use crate::ipc::*;
use crate::maintenance::*;
use crate::table::*;
use crate::writer::*;

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
    /// Largest share of rows a scalar index may select for a filter to use it.
    pub scalar_index_max_share: Option<f64>,
    /// Settings of a cloud store (s3://), checked by the engine.
    pub storage_options: Option<std::collections::HashMap<String, String>>,
    /// A `NativeSession`'s id: its caches are used instead of the connection's own.
    pub session_id: Option<u32>,
}

/// Live sessions by id, held weakly: `connect` finds a session's caches by the id the JS
/// object passes, and a session collected by JS leaves only a dead entry, removed on drop.
fn sessions() -> &'static Mutex<std::collections::HashMap<u32, std::sync::Weak<Caches>>> {
    static SESSIONS: std::sync::OnceLock<
        Mutex<std::collections::HashMap<u32, std::sync::Weak<Caches>>>,
    > = std::sync::OnceLock::new();
    SESSIONS.get_or_init(Default::default)
}

/// Caches shared by several connections (`new Session()` in JS).
#[napi]
pub struct NativeSession {
    caches: Arc<Caches>,
    id: u32,
}

#[napi]
impl NativeSession {
    #[napi(constructor)]
    pub fn new(
        metadata_cache_bytes: Option<f64>,
        index_cache_bytes: Option<f64>,
        data_cache_bytes: Option<f64>,
    ) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let caches = Arc::new(Caches::with_data_cache(
            metadata_cache_bytes.map_or(DEFAULT_METADATA_CACHE_BYTES, |b| b.max(0.0) as u64),
            index_cache_bytes.map_or(DEFAULT_INDEX_CACHE_BYTES, |b| b.max(0.0) as u64),
            data_cache_bytes.map_or(DEFAULT_DATA_CACHE_BYTES, |b| b.max(0.0) as u64),
        ));
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut live) = sessions().lock() {
            live.insert(id, Arc::downgrade(&caches));
        }
        NativeSession { caches, id }
    }

    #[napi(getter)]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Bytes held by the session's caches.
    #[napi]
    pub fn size_bytes(&self) -> f64 {
        self.caches.size_bytes() as f64
    }

    /// Entries in the session's caches.
    #[napi]
    pub fn approx_num_items(&self) -> f64 {
        self.caches.approx_num_items() as f64
    }
}

impl Drop for NativeSession {
    fn drop(&mut self) {
        if let Ok(mut live) = sessions().lock() {
            live.remove(&self.id);
        }
    }
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

pub(crate) type MaintenanceCallback =
    ThreadsafeFunction<NativeMaintenanceEvent, (), NativeMaintenanceEvent, napi::Status, false>;

pub(crate) fn seconds_arg(
    name: &str,
    value: Option<f64>,
    default: Duration,
) -> napi::Result<Duration> {
    match value {
        None => Ok(default),
        Some(s) if s >= 0.0 => Ok(Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)),
        Some(s) => Err(coded(
            "InvalidArgument",
            format!("{name} must be >= 0, got {s}"),
        )),
    }
}

pub(crate) fn maintenance_options(
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
pub(crate) fn count_arg(name: &str, n: f64) -> napi::Result<u64> {
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
        scalar_index_max_share: None,
        storage_options: None,
        session_id: None,
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
    let caches = match options.session_id {
        None => None,
        Some(id) => Some(
            sessions()
                .lock()
                .ok()
                .and_then(|live| live.get(&id).and_then(std::sync::Weak::upgrade))
                .ok_or_else(|| {
                    coded(
                        "InvalidArgument",
                        "the session passed to connect() is no longer alive",
                    )
                })?,
        ),
    };
    let engine_options = ConnectOptions {
        caches,
        metadata_cache_bytes: options.metadata_cache_bytes.map(|b| b.max(0.0) as u64),
        index_cache_bytes: options.index_cache_bytes.map(|b| b.max(0.0) as u64),
        storage: Some(StorageOptions {
            memory_map: options.memory_map.unwrap_or(false),
            durability,
            store_options: options
                .storage_options
                .map(|o| o.into_iter().collect())
                .unwrap_or_default(),
            ..StorageOptions::default()
        }),
        maintenance: Some(maintenance),
        scalar_index_max_share: options.scalar_index_max_share,
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
