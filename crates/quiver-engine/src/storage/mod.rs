//! Storage layer: the only module that talks to `object_store`.
//!
//! It owns URI parsing (local paths, `file://`, `memory://`, `s3://`), ranged reads with
//! coalescing of nearby ranges, conditional puts used by commits (checked once per cloud store
//! to be honoured), listing and deletion, and the I/O counters that query metrics report.
//! Nothing above this module knows which store it runs on.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, PutPayloadMut, WriteMultipart,
};

use crate::error::{Error, Result};

mod blocks;
mod durable;
mod gather;
pub use gather::{gather, GatherMember};
#[cfg(unix)]
mod local;
mod s3;
pub mod throttle;

pub(crate) use blocks::weighted_cache;
pub use blocks::{BlockCache, DEFAULT_DATA_CACHE_BYTES};

pub use durable::{Durability, Flush};
pub use s3::S3_OPTIONS;

/// Counters of the I/O a [`Storage`] performed. Shared by every clone of the handle.
#[derive(Debug, Default)]
pub struct IoStats {
    read_ops: AtomicU64,
    read_bytes: AtomicU64,
    write_ops: AtomicU64,
    write_bytes: AtomicU64,
    /// Scalar indexes, and their parts, read from storage (cache misses) to answer filters:
    /// counted for an observed operation's plan (see [`Storage::observed`]).
    indices_loaded: AtomicU64,
    parts_loaded: AtomicU64,
}

/// A local file read with blocking `pread`s (see [`Storage::sync_file`]); counted in the
/// store's I/O counters like any other read.
#[derive(Debug)]
pub struct SyncFile {
    /// The whole file, when the store maps files ([`StorageOptions::memory_map`]).
    #[cfg(unix)]
    map: Option<Arc<memmap2::Mmap>>,
    file: Arc<std::fs::File>,
    path: Path,
    stats: Arc<IoStats>,
    observer: Option<Arc<IoStats>>,
}

impl SyncFile {
    /// The object path of the file (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `len` bytes from `offset` on, straight from the file's memory map; `None` when the
    /// file is not mapped (read it with [`SyncFile::read_exact_at`]). A file that ends first is
    /// corrupt.
    pub fn mapped(&self, offset: u64, len: u64) -> Option<Result<&[u8]>> {
        #[cfg(unix)]
        {
            let map = self.map.as_ref()?;
            let range = usize::try_from(offset)
                .ok()
                .zip(usize::try_from(offset.saturating_add(len)).ok());
            let bytes = range.and_then(|(from, to)| map.get(from..to));
            Some(match bytes {
                Some(bytes) => {
                    record_read(&self.stats, self.observer.as_deref(), 1, len);
                    Ok(bytes)
                }
                None => Err(Error::corrupt(
                    &self.path,
                    format!("the file ends before byte {}", offset.saturating_add(len)),
                )),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = (offset, len);
            None
        }
    }

    /// Fills `buf` with the bytes from `offset` on; a file that ends first is corrupt.
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(buf, offset).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    Error::corrupt(
                        &self.path,
                        format!("the file ends before byte {}", offset + buf.len() as u64),
                    )
                } else {
                    Error::Storage(object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    })
                }
            })?;
        }
        #[cfg(not(unix))]
        {
            // `Storage::sync_file` hands out no `SyncFile` off unix.
            let _ = (offset, &buf);
            return Err(Error::Internal(
                "synchronous file reads need a unix local store".into(),
            ));
        }
        #[cfg(unix)]
        {
            record_read(&self.stats, self.observer.as_deref(), 1, buf.len() as u64);
            Ok(())
        }
    }
}

/// A point-in-time copy of [`IoStats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IoSnapshot {
    /// Ranged or whole-object GET requests issued (after coalescing).
    pub read_ops: u64,
    /// Bytes returned by those requests.
    pub read_bytes: u64,
    /// PUT requests (single or multipart uploads count once).
    pub write_ops: u64,
    /// Bytes written.
    pub write_bytes: u64,
}

impl IoSnapshot {
    /// The I/O done between `earlier` and `self`.
    pub fn since(&self, earlier: &IoSnapshot) -> IoSnapshot {
        IoSnapshot {
            read_ops: self.read_ops - earlier.read_ops,
            read_bytes: self.read_bytes - earlier.read_bytes,
            write_ops: self.write_ops - earlier.write_ops,
            write_bytes: self.write_bytes - earlier.write_bytes,
        }
    }
}

/// Counts a read in the store's counters and, when a query operator observes the handle, in
/// its own.
fn record_read(stats: &IoStats, observer: Option<&IoStats>, ops: u64, bytes: u64) {
    stats.record_read(ops, bytes);
    if let Some(o) = observer {
        o.record_read(ops, bytes);
    }
}

impl IoStats {
    fn record_read(&self, ops: u64, bytes: u64) {
        self.read_ops.fetch_add(ops, Ordering::Relaxed);
        self.read_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn record_write(&self, bytes: u64) {
        self.write_ops.fetch_add(1, Ordering::Relaxed);
        self.write_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn record_index_loads(&self, indices: u64, parts: u64) {
        self.indices_loaded.fetch_add(indices, Ordering::Relaxed);
        self.parts_loaded.fetch_add(parts, Ordering::Relaxed);
    }

    /// Scalar indexes and index parts read from storage to answer filters.
    pub(crate) fn index_loads(&self) -> (u64, u64) {
        (
            self.indices_loaded.load(Ordering::Relaxed),
            self.parts_loaded.load(Ordering::Relaxed),
        )
    }

    /// Current values of the counters.
    pub fn snapshot(&self) -> IoSnapshot {
        IoSnapshot {
            read_ops: self.read_ops.load(Ordering::Relaxed),
            read_bytes: self.read_bytes.load(Ordering::Relaxed),
            write_ops: self.write_ops.load(Ordering::Relaxed),
            write_bytes: self.write_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Options that shape how a store is used.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Ranges closer than this many bytes are fetched in one request.
    pub coalesce_gap: u64,
    /// When written files are flushed to disk (local stores; others are durable by their
    /// API). Default [`Durability::Full`].
    pub durability: Durability,
    /// Exact search reads the vector pages of local files through memory maps (unix), kept
    /// open with the file handles, instead of copying them out with `pread`: no copy, so about
    /// 1.6× faster on data in the page cache. Off by default: a data file truncated by another
    /// program while mapped, or an I/O error under a mapping, raises SIGBUS and ends the
    /// process, where `pread` fails one query with a typed error.
    pub memory_map: bool,
    /// Settings of a cloud store, as the user named them (see [`S3_OPTIONS`]); an unknown
    /// key, or any key for a local or memory store, is an error when the store opens.
    pub store_options: BTreeMap<String, String>,
}

impl StorageOptions {
    fn for_local() -> Self {
        // A local read costs a syscall; reading 4 KiB extra costs less than a second one.
        StorageOptions {
            coalesce_gap: 4 * 1024,
            durability: Durability::Full,
            memory_map: false,
            store_options: BTreeMap::new(),
        }
    }
}

/// Bounds on a store's reads in flight: requests (`QUIVER_IO_THREADS`: 8 on a local disk, 64
/// on a cloud store, where each waits a round trip) and bytes (`QUIVER_IO_BUFFER_SIZE`,
/// default 2 GiB), so a burst of concurrent queries queues instead of opening a socket or
/// a buffer each. Shared by every handle on the store.
#[derive(Debug)]
struct IoLimits {
    requests: tokio::sync::Semaphore,
    request_limit: u32,
    /// In KiB.
    bytes: tokio::sync::Semaphore,
    byte_limit_kib: u32,
}

/// Default bytes of reads in flight per store (the performance guide's io_buffer_size).
const DEFAULT_IO_BUFFER_BYTES: u64 = 2 * 1024 * 1024 * 1024;

impl IoLimits {
    fn from_env(cloud: bool) -> Result<Self> {
        let number = |name: &str| -> Result<Option<u64>> {
            match std::env::var(name) {
                Err(_) => Ok(None),
                Ok(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(Some)
                    .ok_or_else(|| {
                        Error::invalid(format!("{name} must be a whole number above 0, got '{v}'"))
                    }),
            }
        };
        let requests = number("QUIVER_IO_THREADS")?.unwrap_or(if cloud { 64 } else { 8 });
        let bytes = number("QUIVER_IO_BUFFER_SIZE")?.unwrap_or(DEFAULT_IO_BUFFER_BYTES);
        Ok(Self::new(requests, bytes))
    }

    fn new(requests: u64, bytes: u64) -> Self {
        let request_limit = requests.clamp(1, 1 << 16) as u32;
        let byte_limit_kib = (bytes / 1024).clamp(1, u64::from(u32::MAX)) as u32;
        IoLimits {
            requests: tokio::sync::Semaphore::new(request_limit as usize),
            request_limit,
            bytes: tokio::sync::Semaphore::new(byte_limit_kib as usize),
            byte_limit_kib,
        }
    }

    /// Waits until `requests` more requests of `bytes` in all may be in flight; a read
    /// larger than the whole budget waits for all of it and then goes alone.
    async fn admit(
        &self,
        requests: usize,
        bytes: u64,
    ) -> Result<(
        tokio::sync::SemaphorePermit<'_>,
        tokio::sync::SemaphorePermit<'_>,
    )> {
        let requests = (requests as u32).clamp(1, self.request_limit);
        let kib = (bytes.div_ceil(1024).min(u64::from(self.byte_limit_kib)) as u32).max(1);
        let closed = |_| Error::Internal("the store's I/O limits were closed".into());
        let r = self.requests.acquire_many(requests).await.map_err(closed)?;
        let b = self.bytes.acquire_many(kib).await.map_err(closed)?;
        Ok((r, b))
    }
}

/// Ranges of one object closer than this are read in one request from a cloud store: a
/// round trip costs about as much as transferring this many bytes.
const CLOUD_COALESCE_GAP: u64 = 256 * 1024;

impl Default for StorageOptions {
    fn default() -> Self {
        Self::for_local()
    }
}

/// A handle on one prefix of one object store. Cheap to clone; clones share the store and
/// the I/O counters.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    root: Path,
    options: StorageOptions,
    stats: Arc<IoStats>,
    /// A second set of counters for one query's operator ([`Storage::observed`]), so that
    /// concurrent queries on one connection are measured apart.
    observer: Option<Arc<IoStats>>,
    uri: Arc<str>,
    /// What cache keys of this store's files begin with: the URI, except for private
    /// `memory://` stores, which all share one URI but not their contents.
    namespace: Arc<str>,
    /// Direct reads of a local store's files (unix), bypassing object_store's per-read cost.
    #[cfg(unix)]
    local: Option<Arc<local::LocalFiles>>,
    /// Makes writes durable; `None` for stores that are durable by their API.
    flusher: Option<Arc<dyn Flush>>,
    /// Cloud stores: whether conditional puts were found honoured (checked before the first
    /// one, shared by every handle on the store).
    conditional_put: Option<Arc<tokio::sync::OnceCell<()>>>,
    limits: Arc<IoLimits>,
    /// Cloud stores: blocks of data files read before (see [`Storage::read_ranges_cached`]).
    blocks: Option<Arc<BlockCache>>,
}

/// Named in-memory stores, so that two connections to `memory://name` in one process see the
/// same data, as two connections to one folder do.
fn memory_registry() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Storage {
    /// Opens the store a URI names: a local path (relative or absolute), `file:///abs/path`,
    /// `memory://` (a fresh private store) or `memory://name` (shared within the process).
    pub fn from_uri(uri: &str) -> Result<Self> {
        Self::from_uri_with_options(uri, None)
    }

    /// Like [`Storage::from_uri`] with explicit options.
    pub fn from_uri_with_options(uri: &str, options: Option<StorageOptions>) -> Result<Self> {
        if uri.is_empty() {
            return Err(Error::invalid(
                "the database URI is empty; pass a folder path, file://… or memory://",
            ));
        }
        let options_given = options
            .as_ref()
            .is_some_and(|o| !o.store_options.is_empty());
        if uri.starts_with("s3://") {
            let options = options.unwrap_or_default();
            let opened = s3::open(uri, &options.store_options)?;
            let root = Path::from(opened.prefix.as_str());
            let storage = Self::from_store(
                opened.store,
                root,
                StorageOptions {
                    coalesce_gap: options.coalesce_gap.max(CLOUD_COALESCE_GAP),
                    ..options
                },
                uri,
            );
            return Ok(Storage {
                conditional_put: Some(Arc::new(tokio::sync::OnceCell::new())),
                limits: Arc::new(IoLimits::from_env(true)?),
                ..storage
            });
        }
        if options_given {
            let keys: Vec<&String> = options
                .as_ref()
                .map(|o| o.store_options.keys().collect())
                .unwrap_or_default();
            return Err(Error::invalid(format!(
                "storage options ({}) apply to s3:// databases; '{uri}' is not one: remove them",
                keys.iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Some(name) = uri.strip_prefix("memory://") {
            let limits = Arc::new(IoLimits::from_env(false)?);
            let name = name.trim_matches('/');
            let store: Arc<InMemory> = if name.is_empty() {
                let storage = Self::from_store(
                    Arc::new(InMemory::new()),
                    Path::default(),
                    options.unwrap_or_default(),
                    uri,
                );
                return Ok(Storage {
                    namespace: Arc::from(format!("memory://{}", uuid::Uuid::new_v4())),
                    limits,
                    ..storage
                });
            } else {
                let mut registry = memory_registry()
                    .lock()
                    .map_err(|_| Error::Internal("memory store registry poisoned".into()))?;
                registry
                    .entry(name.to_string())
                    .or_insert_with(|| Arc::new(InMemory::new()))
                    .clone()
            };
            return Ok(Storage {
                limits,
                ..Self::from_store(store, Path::default(), options.unwrap_or_default(), uri)
            });
        }
        let fs_path = if let Some(rest) = uri.strip_prefix("file://") {
            let url = url::Url::parse(&format!("file://{rest}"))
                .map_err(|e| Error::invalid(format!("'{uri}' is not a valid file:// URI: {e}")))?;
            url.to_file_path().map_err(|_| {
                Error::invalid(format!(
                    "'{uri}' is not an absolute file:// URI; use file:///absolute/path"
                ))
            })?
        } else if uri.contains("://") {
            let scheme = uri.split("://").next().unwrap_or_default();
            return Err(Error::invalid(format!(
                "unsupported URI scheme '{scheme}://'; use a local path, file://…, s3://bucket/prefix or memory://"
            )));
        } else {
            std::path::PathBuf::from(uri)
        };
        let absolute = if fs_path.is_absolute() {
            fs_path
        } else {
            std::env::current_dir()
                .map_err(|e| Error::invalid(format!("cannot resolve relative path '{uri}': {e}")))?
                .join(fs_path)
        };
        let root = Path::from_absolute_path(&absolute)
            .map_err(|e| Error::invalid(format!("'{uri}' is not a usable path: {e}")))?;
        let options = options.unwrap_or_else(StorageOptions::for_local);
        let limits = Arc::new(IoLimits::from_env(false)?);
        // Flushes are ours (`durable`), so that commits order and share them.
        let store = Arc::new(LocalFileSystem::new());
        let flusher: Arc<dyn Flush> = Arc::new(durable::LocalFlush::new(store.clone(), absolute));
        #[allow(unused_mut)]
        let mut storage = Storage {
            limits,
            ..Self::from_store(store.clone(), root, options, uri).with_flusher(flusher)
        };
        #[cfg(unix)]
        {
            let memory_map = storage.options.memory_map;
            storage.local = Some(Arc::new(local::LocalFiles::new(store, memory_map)));
        }
        Ok(storage)
    }

    /// Wraps an existing store (tests use this to count or break I/O).
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        root: Path,
        options: StorageOptions,
        uri: &str,
    ) -> Self {
        Storage {
            store,
            root,
            options,
            stats: Arc::new(IoStats::default()),
            observer: None,
            uri: Arc::from(uri),
            namespace: Arc::from(uri),
            #[cfg(unix)]
            local: None,
            flusher: None,
            conditional_put: None,
            limits: Arc::new(IoLimits::new(8, DEFAULT_IO_BUFFER_BYTES)),
            blocks: None,
        }
    }

    /// The same store, keeping blocks of the data files it reads in `cache` when it is a
    /// cloud store (a local disk has the OS page cache).
    pub fn with_block_cache(self, cache: Arc<BlockCache>) -> Self {
        if !self.is_cloud() {
            return self;
        }
        Storage {
            blocks: Some(cache),
            ..self
        }
    }

    /// [`Storage::read_ranges`] of an immutable object of `size` bytes through the block
    /// cache: on a cloud store, the aligned blocks the ranges touch are read once (the missing
    /// ones in one coalesced read) and served from memory after, so a warm search's row reads
    /// cost no round trip. An extent (a small page, say) holding a range whose blocks must be
    /// read is read whole with them, in the same requests, and cached: the next reads in it
    /// cost none. Without a block cache, a plain `read_ranges`.
    pub async fn read_ranges_cached(
        &self,
        path: &Path,
        size: u64,
        ranges: &[Range<u64>],
        extents: &[Range<u64>],
    ) -> Result<Vec<Bytes>> {
        let Some(cache) = &self.blocks else {
            return self.read_ranges(path, ranges).await;
        };
        if ranges.iter().any(|r| r.end > size) {
            return Err(Error::corrupt(
                path,
                "a range lies past the end of the object".to_string(),
            ));
        }
        if ranges
            .iter()
            .any(|r| r.end - r.start >= blocks::UNCACHED_RANGE)
        {
            // A scan's pages (all of them, so one request's ranges stay together).
            return self.read_ranges(path, ranges).await;
        }
        let prefix = format!("{}#", self.namespace_of(path));
        let wanted = blocks::blocks_of(ranges);
        let mut have: HashMap<u64, Bytes> = HashMap::with_capacity(wanted.len());
        let mut missing = Vec::new();
        for &b in &wanted {
            match cache.get(&prefix, b) {
                Some(bytes) => {
                    have.insert(b, bytes);
                }
                None => missing.push(b),
            }
        }
        if !missing.is_empty() {
            for extent in extents {
                let blocks =
                    extent.start / blocks::BLOCK..extent.end.min(size).div_ceil(blocks::BLOCK);
                if missing.iter().any(|b| blocks.contains(b)) {
                    missing
                        .extend(blocks.filter(|&b| {
                            !have.contains_key(&b) && cache.get(&prefix, b).is_none()
                        }));
                }
            }
            missing.sort_unstable();
            missing.dedup();
            let reads: Vec<Range<u64>> = missing
                .iter()
                .map(|&b| blocks::block_range(b, size))
                .collect();
            // Missing blocks are block-aligned, so each coalesced read is whole blocks: the
            // ones between wanted blocks came with the same request, at no extra round trip,
            // and are cached too. A row fetch's columns (a few bytes each, in pages side by
            // side) then cost one request per file until the pages around them are cached,
            // where keeping only the wanted blocks paid one per fetch.
            let (merged, chunks) = self.fetch_coalesced(path, &reads).await?;
            for (range, chunk) in merged.iter().zip(&chunks) {
                if chunk.len() as u64 != range.end - range.start {
                    return Err(Error::corrupt(
                        path,
                        format!("range {range:?} lies past the end of the object"),
                    ));
                }
                for b in range.start / blocks::BLOCK..range.end.div_ceil(blocks::BLOCK) {
                    if have.contains_key(&b) {
                        continue; // a wanted block found cached
                    }
                    let block = blocks::block_range(b, size);
                    let bytes = chunk.slice(
                        (block.start - range.start) as usize..(block.end - range.start) as usize,
                    );
                    cache.insert(&prefix, b, bytes.clone());
                    have.insert(b, bytes);
                }
            }
        }
        ranges
            .iter()
            .map(|r| {
                blocks::assemble(r, &have)
                    .ok_or_else(|| Error::Internal("a block was not read".into()))
            })
            .collect()
    }

    /// The cache namespace of an object path (the store's namespace and the path).
    fn namespace_of(&self, path: &Path) -> String {
        match self.relative(path) {
            Some(relative) => format!("{}/{relative}", self.namespace),
            None => format!("{}@{path}", self.namespace),
        }
    }

    /// The same store, treated as a cloud store whose conditional puts are checked before the
    /// first one, and whose nearby ranges are read together as an S3 store's are (tests wrap
    /// stores that do or do not honour them).
    pub fn checking_conditional_puts(self) -> Self {
        let coalesce_gap = self.options.coalesce_gap.max(CLOUD_COALESCE_GAP);
        Storage {
            conditional_put: Some(Arc::new(tokio::sync::OnceCell::new())),
            options: StorageOptions {
                coalesce_gap,
                ..self.options.clone()
            },
            ..self
        }
    }

    /// Checks once that the store refuses to create an object that exists: commits rely on
    /// it, and a store that overwrites instead would let two writers both publish a version.
    async fn check_conditional_puts(&self) -> Result<()> {
        let Some(check) = &self.conditional_put else {
            return Ok(());
        };
        check
            .get_or_try_init(|| async {
                let probe = self.path(&format!("_quiver_probe/{}", uuid::Uuid::new_v4()));
                let opts = || PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                };
                let first = self
                    .store
                    .put_opts(&probe, PutPayload::from_static(b"1"), opts())
                    .await;
                let second = match first {
                    Ok(_) => {
                        self.store
                            .put_opts(&probe, PutPayload::from_static(b"2"), opts())
                            .await
                    }
                    // Only a store that cannot do conditional writes is unsupported; any
                    // other failure is the store's (and the check runs again next commit).
                    Err(
                        e @ (object_store::Error::NotImplemented { .. }
                        | object_store::Error::NotSupported { .. }),
                    ) => {
                        return Err(Error::UnsupportedStore(format!(
                            "'{}' refused a conditional write (If-None-Match: *) that commits need: {e}",
                            self.uri
                        )))
                    }
                    Err(e) => return Err(e.into()),
                };
                let _ = self.store.delete(&probe).await;
                match second {
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
                    Ok(_) => Err(Error::UnsupportedStore(format!(
                        "'{}' overwrote an object written with If-None-Match: * instead of refusing; \
                         it does not honour conditional writes, so concurrent commits could overwrite \
                         each other. Use a store that does (AWS S3, MinIO, Cloudflare R2, moto >= 5.1.11)",
                        self.uri
                    ))),
                    Err(e) => Err(e.into()),
                }
            })
            .await
            .map(|_| ())
    }

    /// The same store, made durable through `flusher` (a simulated disk in tests).
    pub fn with_flusher(self, flusher: Arc<dyn Flush>) -> Self {
        Storage {
            flusher: Some(flusher),
            ..self
        }
    }

    /// Whether this is a cloud store (S3): requests cost round trips, writes are atomic and
    /// durable by the store's API, and conditional puts are checked before use.
    pub fn is_cloud(&self) -> bool {
        self.conditional_put.is_some()
    }

    /// Ranges of one object closer than this are read in one request.
    pub fn coalesce_gap(&self) -> u64 {
        self.options.coalesce_gap
    }

    /// The durability commits get on this store.
    pub fn durability(&self) -> Durability {
        self.options.durability
    }

    /// Makes the current state of `paths` durable (content and name, or absence), whatever
    /// the durability setting; nothing to do on stores durable by their API.
    pub async fn flush(&self, paths: &[Path]) -> Result<()> {
        match &self.flusher {
            Some(f) if !paths.is_empty() => f.flush(paths).await,
            _ => Ok(()),
        }
    }

    /// Makes everything written so far durable.
    pub async fn flush_all(&self) -> Result<()> {
        match &self.flusher {
            Some(f) => f.flush_all().await,
            None => Ok(()),
        }
    }

    /// Flushes `path` when commits are durable ([`Durability::Full`]).
    pub async fn flush_if_durable(&self, path: &Path) -> Result<()> {
        if self.options.durability == Durability::Full {
            self.flush(std::slice::from_ref(path)).await?;
        }
        Ok(())
    }

    /// Counts scalar indexes and index parts a filter read from storage in the observer of
    /// this handle, when it has one.
    pub(crate) fn record_index_loads(&self, indices: u64, parts: u64) {
        if let Some(observer) = &self.observer {
            observer.record_index_loads(indices, parts);
        }
    }

    /// The same store whose reads are also counted in `observer` (one query operator's I/O,
    /// measured apart from other queries on the connection).
    pub fn observed(&self, observer: Arc<IoStats>) -> Storage {
        Storage {
            observer: Some(observer),
            ..self.clone()
        }
    }

    /// The same store, rooted at `self.root/sub`.
    pub fn child(&self, sub: &str) -> Storage {
        Storage {
            root: self.path(sub),
            uri: Arc::from(format!("{}/{}", self.uri.trim_end_matches('/'), sub)),
            namespace: Arc::from(format!("{}/{}", self.namespace.trim_end_matches('/'), sub)),
            ..self.clone()
        }
    }

    /// The prefix of cache keys for this store's objects: unique to the store, so caches
    /// shared by several connections never mix two stores' files.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Absolute object path of `relative` under this handle's root.
    pub fn path(&self, relative: &str) -> Path {
        relative
            .split('/')
            .filter(|p| !p.is_empty())
            .fold(self.root.clone(), |acc, part| acc.join(part))
    }

    /// The path of `location` relative to this handle's root (`None` outside it).
    pub fn relative(&self, location: &Path) -> Option<String> {
        let parts = location.prefix_match(&self.root)?;
        Some(
            parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/"),
        )
    }

    /// The URI this handle was opened with (for messages).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The I/O counters.
    pub fn io_stats(&self) -> IoSnapshot {
        self.stats.snapshot()
    }

    /// Reads a whole object.
    pub async fn read_all(&self, path: &Path) -> Result<Bytes> {
        // Whole objects are small (manifests, deletion files): one request, its bytes unknown.
        let admitted = self.limits.admit(1, 0).await?;
        let bytes = self.store.get(path).await?.bytes().await?;
        drop(admitted);
        record_read(&self.stats, self.observer.as_deref(), 1, bytes.len() as u64);
        Ok(bytes)
    }

    /// Reads a whole object of at most `limit` bytes and returns it with its metadata (size,
    /// modification time, e-tag). A larger one is corrupt: its size is known before its body
    /// is fetched, so nothing more is read from it. `what` names the kind of file in messages.
    pub async fn read_all_at_most(
        &self,
        path: &Path,
        limit: u64,
        what: &str,
    ) -> Result<(Bytes, ObjectMeta)> {
        let _admitted = self.limits.admit(1, 0).await?;
        let result = self.store.get(path).await?;
        let meta = result.meta.clone();
        if meta.size > limit {
            return Err(Error::corrupt(
                path,
                format!(
                    "{what} of {} bytes is larger than the {limit} its contents allow",
                    meta.size
                ),
            ));
        }
        let bytes = result.bytes().await?;
        record_read(&self.stats, self.observer.as_deref(), 1, bytes.len() as u64);
        Ok((bytes, meta))
    }

    /// Reads the last `len` bytes of an object (all of it when smaller) in one request and
    /// returns them with the object's total size, so a reader can find a footer without a HEAD.
    pub async fn read_tail(&self, path: &Path, len: u64) -> Result<(Bytes, u64)> {
        let _admitted = self.limits.admit(1, len).await?;
        #[cfg(unix)]
        if let Some(local) = &self.local {
            let (bytes, size) = local.read_tail(path, len).await?;
            record_read(&self.stats, self.observer.as_deref(), 1, bytes.len() as u64);
            return Ok((bytes, size));
        }
        let opts = GetOptions::new().with_range(Some(GetRange::Suffix(len)));
        let result = self.store.get_opts(path, opts).await?;
        let size = result.meta.size;
        let bytes = result.bytes().await?;
        record_read(&self.stats, self.observer.as_deref(), 1, bytes.len() as u64);
        Ok((bytes, size))
    }

    /// A synchronous reader of the file at `path` when this store is a local file system
    /// (`None` for other stores). Scans that stream a file through a small buffer on a compute
    /// thread use it instead of the async reads of whole pages.
    pub fn sync_file(&self, path: &Path) -> Result<Option<SyncFile>> {
        #[cfg(unix)]
        if let Some(local) = &self.local {
            return Ok(Some(SyncFile {
                map: local.mapping(path)?,
                file: local.handle(path)?,
                path: path.clone(),
                stats: self.stats.clone(),
                observer: self.observer.clone(),
            }));
        }
        let _ = path;
        Ok(None)
    }

    /// Reads one byte range.
    pub async fn read_range(&self, path: &Path, range: Range<u64>) -> Result<Bytes> {
        let mut out = self.read_ranges(path, std::slice::from_ref(&range)).await?;
        out.pop()
            .ok_or_else(|| Error::Internal("ranged read returned nothing".into()))
    }

    /// Reads many byte ranges of one object. Ranges closer than the coalesce gap are fetched
    /// as one request; the result holds one `Bytes` per requested range, in request order.
    pub async fn read_ranges(&self, path: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let (merged, fetched) = self.fetch_coalesced(path, ranges).await?;
        if merged.is_empty() {
            return Ok(vec![Bytes::new(); ranges.len()]);
        }
        ranges
            .iter()
            .map(|r| {
                if r.start >= r.end {
                    return Ok(Bytes::new());
                }
                let idx = merged.partition_point(|m| m.start <= r.start) - 1;
                let base = &merged[idx];
                let chunk = &fetched[idx];
                let start = (r.start - base.start) as usize;
                let end = (r.end - base.start) as usize;
                if end > chunk.len() {
                    return Err(Error::corrupt(
                        path,
                        format!("range {r:?} lies past the end of the object"),
                    ));
                }
                Ok(chunk.slice(start..end))
            })
            .collect()
    }

    /// Reads `ranges` coalesced: the merged ranges, ascending, and the bytes of each, as
    /// counted requests under the store's limits.
    async fn fetch_coalesced(
        &self,
        path: &Path,
        ranges: &[Range<u64>],
    ) -> Result<(Vec<Range<u64>>, Vec<Bytes>)> {
        let merged = coalesce_ranges(ranges, self.options.coalesce_gap);
        if merged.is_empty() {
            return Ok((merged, Vec::new()));
        }
        let total: u64 = merged.iter().map(|r| r.end - r.start).sum();
        let admitted = self.limits.admit(merged.len(), total).await?;
        let fetched = self.fetch_ranges(path, &merged).await;
        drop(admitted);
        let fetched = fetched?;
        let fetched_bytes: u64 = fetched.iter().map(|b| b.len() as u64).sum();
        record_read(
            &self.stats,
            self.observer.as_deref(),
            merged.len() as u64,
            fetched_bytes,
        );
        Ok((merged, fetched))
    }

    async fn fetch_ranges(&self, path: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        #[cfg(unix)]
        if let Some(local) = &self.local {
            return local.read_ranges(path, ranges).await;
        }
        Ok(self.store.get_ranges(path, ranges).await?)
    }

    /// Writes an object, replacing any previous one atomically; durable on return under
    /// [`Durability::Full`].
    pub async fn put(&self, path: &Path, bytes: Bytes) -> Result<()> {
        let len = bytes.len() as u64;
        self.store.put(path, PutPayload::from_bytes(bytes)).await?;
        self.stats.record_write(len);
        crate::events::file_audit("create", path);
        self.flush_if_durable(path).await
    }

    /// Writes an object only if none exists at `path`. Returns `false` when one already did:
    /// this is the primitive that commits are built on. Durable on return under
    /// [`Durability::Full`].
    pub async fn put_if_absent(&self, path: &Path, bytes: Bytes) -> Result<bool> {
        let created = self.create(path, bytes).await?;
        if created {
            self.flush_if_durable(path).await?;
        }
        Ok(created)
    }

    /// [`Storage::put_if_absent`] without the flush: a commit publishes under its lock and
    /// flushes after releasing it, so that concurrent commits share folder flushes.
    pub async fn create(&self, path: &Path, bytes: Bytes) -> Result<bool> {
        self.check_conditional_puts().await?;
        let len = bytes.len() as u64;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(path, PutPayload::from_bytes(bytes), opts)
            .await
        {
            Ok(_) => {
                self.stats.record_write(len);
                crate::events::file_audit("create", path);
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The object's metadata, `None` when it does not exist.
    pub async fn head(&self, path: &Path) -> Result<Option<ObjectMeta>> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The object's size, `None` when it does not exist. On a local folder this is one `stat`
    /// on the calling task: the check before every read costs microseconds instead of a hop
    /// to a blocking thread and back.
    pub async fn size_of(&self, path: &Path) -> Result<Option<u64>> {
        #[cfg(unix)]
        if let Some(local) = &self.local {
            return local.size_of(path);
        }
        Ok(self.head(path).await?.map(|meta| meta.size))
    }

    /// Whether an object exists.
    pub async fn exists(&self, path: &Path) -> Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every object under `prefix` (recursive, unordered).
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        match self.store.list(Some(prefix)).try_collect().await {
            Ok(v) => Ok(v),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Names of the immediate sub-folders of `prefix`.
    pub async fn list_dirs(&self, prefix: &Path) -> Result<Vec<String>> {
        let listing = match self.store.list_with_delimiter(Some(prefix)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Deletes one object (no error if it is already gone).
    pub async fn delete(&self, path: &Path) -> Result<()> {
        self.delete_as(path, "delete").await
    }

    /// [`Storage::delete`] of a file no version was found to reference (a cleanup's
    /// `delete_unverified`), audited as such.
    pub async fn delete_unverified(&self, path: &Path) -> Result<()> {
        self.delete_as(path, "delete_unverified").await
    }

    async fn delete_as(&self, path: &Path, mode: &'static str) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) => {
                crate::events::file_audit(mode, path);
                Ok(())
            }
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every object under `prefix`.
    pub async fn delete_prefix(&self, prefix: &Path) -> Result<()> {
        let locations = self.store.list(Some(prefix)).map_ok(|m| m.location).boxed();
        let deleted = self.store.delete_stream(locations);
        deleted
            .try_for_each(|path| {
                crate::events::file_audit("delete", &path);
                futures::future::ready(Ok(()))
            })
            .await
            .or_else(|e| match e {
                object_store::Error::NotFound { .. } => Ok(()),
                e => Err(e.into()),
            })
    }

    /// A streaming writer that uploads in parts once it holds more than [`SINGLE_PUT_MAX`], so
    /// writing a large file never buffers the whole file; a smaller file is one PUT.
    pub fn writer(&self, path: &Path) -> StorageWriter {
        StorageWriter {
            state: WriterState::Holding {
                held: PutPayloadMut::new(),
                upload: None,
            },
            written: 0,
            storage: self.clone(),
            path: path.clone(),
        }
    }
}

/// The largest object written with one PUT; a writer holds this much before it starts a
/// multipart upload.
const SINGLE_PUT_MAX: usize = 8 * 1024 * 1024;
/// Size of each part of a multipart upload: S3's smallest, so that a file goes up in more
/// parts at once (against moto through the benchmark's proxy, 30 MB as 6 parallel PUTs took
/// about two thirds the time of 4).
const UPLOAD_PART: usize = 5 * 1024 * 1024;
/// Parts of one upload in flight at once.
const UPLOAD_PARTS_IN_FLIGHT: usize = 8;

type MultipartStart = tokio::task::JoinHandle<object_store::Result<Box<dyn MultipartUpload>>>;

enum WriterState {
    /// Bytes held until they pass [`SINGLE_PUT_MAX`]; `upload` is a multipart upload started
    /// early, when the writer was told the file will be larger ([`StorageWriter::will_reach`]).
    Holding {
        held: PutPayloadMut,
        upload: Option<MultipartStart>,
    },
    Uploading(WriteMultipart),
    /// Finished or aborted.
    Done,
}

/// Streaming upload of one object; see [`Storage::writer`].
pub struct StorageWriter {
    state: WriterState,
    written: u64,
    /// Where the object goes, to flush it when it is complete.
    storage: Storage,
    path: Path,
}

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::Storage(object_store::Error::Generic {
        store: "writer",
        source: Box::new(e),
    })
}

impl StorageWriter {
    /// Says the file will hold at least `bytes`. On a cloud store, a file that will need a
    /// multipart upload starts it now, so its first round trip overlaps the encoding of the
    /// first part instead of stalling the writer when the part is ready.
    pub fn will_reach(&mut self, bytes: u64) {
        if let WriterState::Holding { upload, .. } = &mut self.state {
            if upload.is_some() || bytes <= SINGLE_PUT_MAX as u64 || !self.storage.is_cloud() {
                return;
            }
            // Outside a tokio runtime the upload simply starts when the first part is ready.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let store = self.storage.store.clone();
                let path = self.path.clone();
                *upload = Some(runtime.spawn(async move { store.put_multipart(&path).await }));
            }
        }
    }

    /// Appends bytes without copying them.
    pub async fn write(&mut self, bytes: Bytes) -> Result<()> {
        self.written += bytes.len() as u64;
        match &mut self.state {
            WriterState::Holding { held, upload } => {
                held.push(bytes);
                if held.content_length() > SINGLE_PUT_MAX {
                    let parts = Self::start_upload(&self.storage, &self.path, held, upload).await?;
                    self.state = WriterState::Uploading(parts);
                }
            }
            WriterState::Uploading(parts) => {
                parts.wait_for_capacity(UPLOAD_PARTS_IN_FLIGHT).await?;
                parts.put(bytes);
            }
            WriterState::Done => {
                return Err(Error::Internal("write to a finished file writer".into()))
            }
        }
        Ok(())
    }

    /// The multipart upload (the one started early, or a new one) with the held bytes handed
    /// to it.
    async fn start_upload(
        storage: &Storage,
        path: &Path,
        held: &mut PutPayloadMut,
        upload: &mut Option<MultipartStart>,
    ) -> Result<WriteMultipart> {
        let upload = match upload.take() {
            Some(started) => started.await.map_err(join_error)??,
            None => storage.store.put_multipart(path).await?,
        };
        let mut parts = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART);
        for chunk in &std::mem::take(held).freeze() {
            parts.put(chunk.clone());
        }
        Ok(parts)
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.written
    }

    /// Completes the upload; the object becomes visible atomically (and durable under
    /// [`Durability::Full`]).
    pub async fn finish(mut self) -> Result<u64> {
        let state = std::mem::replace(&mut self.state, WriterState::Done);
        let (written, storage, path) = (self.written, &self.storage, &self.path);
        match state {
            WriterState::Holding { held, upload: None } => {
                storage.store.put(path, held.freeze()).await?;
            }
            WriterState::Holding {
                mut held,
                mut upload,
            } => {
                let parts = Self::start_upload(storage, path, &mut held, &mut upload).await?;
                parts.finish().await?;
            }
            WriterState::Uploading(parts) => {
                parts.finish().await?;
            }
            WriterState::Done => return Err(Error::Internal("file writer finished twice".into())),
        }
        storage.stats.record_write(written);
        crate::events::file_audit("create", path);
        storage.flush_if_durable(path).await?;
        Ok(written)
    }

    /// Abandons the upload.
    pub async fn abort(mut self) -> Result<()> {
        match std::mem::replace(&mut self.state, WriterState::Done) {
            WriterState::Holding {
                upload: Some(started),
                ..
            } => {
                if let Ok(Ok(mut upload)) = started.await {
                    upload.abort().await?;
                }
            }
            WriterState::Holding { upload: None, .. } | WriterState::Done => {}
            WriterState::Uploading(parts) => parts.abort().await?,
        }
        Ok(())
    }
}

impl Drop for StorageWriter {
    /// A writer dropped unfinished (its task cancelled: a maintenance task stopped, a future
    /// dropped) aborts the multipart upload it started, in the background, so no incomplete
    /// upload is left on the store (where it is billed until a lifecycle rule removes it).
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, WriterState::Done);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Best effort: the upload is abandoned whether or not the abort reaches the store.
        match state {
            WriterState::Holding {
                upload: Some(started),
                ..
            } => {
                runtime.spawn(async move {
                    if let Ok(Ok(mut upload)) = started.await {
                        let _ = upload.abort().await;
                    }
                });
            }
            WriterState::Uploading(parts) => {
                runtime.spawn(async move {
                    let _ = parts.abort().await;
                });
            }
            WriterState::Holding { upload: None, .. } | WriterState::Done => {}
        }
    }
}

/// Sorts ranges and merges those that overlap or lie within `gap` bytes of each other.
pub fn coalesce_ranges(ranges: &[Range<u64>], gap: u64) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = ranges.iter().filter(|r| r.start < r.end).cloned().collect();
    sorted.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match merged.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(gap) => {
                last.end = last.end.max(r.end);
            }
            _ => merged.push(r),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn coalesces_close_ranges() {
        let merged = coalesce_ranges(&[0..10, 12..20, 100..110, 5..8], 4);
        assert_eq!(merged, vec![0..20, 100..110]);
    }

    proptest! {
        #[test]
        fn coalesced_ranges_cover_every_request(
            ranges in proptest::collection::vec((0u64..10_000, 1u64..500), 1..50),
            gap in 0u64..1000,
        ) {
            let ranges: Vec<Range<u64>> = ranges.into_iter().map(|(s, l)| s..s + l).collect();
            let merged = coalesce_ranges(&ranges, gap);
            for w in merged.windows(2) {
                prop_assert!(w[0].end + gap < w[1].start);
            }
            for r in &ranges {
                prop_assert!(merged.iter().any(|m| m.start <= r.start && r.end <= m.end));
            }
        }
    }

    #[tokio::test]
    async fn memory_store_round_trip_and_ranges() {
        let storage = Storage::from_uri("memory://").unwrap();
        let path = storage.path("a/b.bin");
        let data: Vec<u8> = (0..=255u8).collect();
        storage.put(&path, Bytes::from(data.clone())).await.unwrap();
        let parts = storage
            .read_ranges(&path, &[10..20, 0..5, 200..256])
            .await
            .unwrap();
        assert_eq!(&parts[0][..], &data[10..20]);
        assert_eq!(&parts[1][..], &data[0..5]);
        assert_eq!(&parts[2][..], &data[200..256]);
        let (tail, size) = storage.read_tail(&path, 16).await.unwrap();
        assert_eq!(size, 256);
        assert_eq!(&tail[..], &data[240..]);
        assert!(!storage.put_if_absent(&path, Bytes::new()).await.unwrap());
    }

    /// Sizes agree with `head` on every store, whatever stands at the path.
    #[tokio::test]
    async fn object_sizes_match_head_locally_and_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        for uri in [dir.path().to_str().unwrap(), "memory://"] {
            let storage = Storage::from_uri(uri).unwrap();
            let file = storage.path("a/b.bin");
            storage
                .put(&file, Bytes::from(vec![7u8; 300]))
                .await
                .unwrap();
            storage
                .put(&storage.path("a/c/d.bin"), Bytes::new())
                .await
                .unwrap();
            for (path, size) in [
                ("a/b.bin", Some(300)),
                ("a/c/d.bin", Some(0)),
                ("a/missing.bin", None),
                ("a/b.bin/under-a-file", None),
            ] {
                let path = storage.path(path);
                assert_eq!(storage.size_of(&path).await.unwrap(), size, "{uri} {path}");
                // (`LocalFileSystem::head` fails under a file; `size_of` says there is none.)
                if let Ok(head) = storage.head(&path).await {
                    assert_eq!(head.map(|m| m.size), size, "{uri} {path}");
                }
            }
            // A folder is not an object.
            assert_eq!(storage.size_of(&storage.path("a/c")).await.unwrap(), None);
        }
    }

    /// A store that overwrites where it should refuse is found out before the first commit
    /// relies on it; an honest one is checked once and then used.
    #[tokio::test]
    async fn stores_ignoring_conditional_puts_are_refused() {
        use throttle::tests::{Fault, FlakyStore};
        let liar = Arc::new(FlakyStore::new(Box::new(|_, op| {
            (op == "put").then_some(Fault::Overwrite)
        })));
        let storage = Storage::from_store(
            liar,
            Path::default(),
            StorageOptions::default(),
            "s3://liar",
        )
        .checking_conditional_puts();
        let err = storage
            .create(&storage.path("_versions/1"), Bytes::from_static(b"m"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnsupportedStore(_)), "{err}");
        assert!(
            err.to_string()
                .contains("does not honour conditional writes"),
            "{err}"
        );

        let honest = Arc::new(FlakyStore::new(Box::new(|_, _| None)));
        let storage = Storage::from_store(
            honest.clone(),
            Path::default(),
            StorageOptions::default(),
            "s3://ok",
        )
        .checking_conditional_puts();
        let path = storage.path("_versions/1");
        assert!(storage
            .create(&path, Bytes::from_static(b"m"))
            .await
            .unwrap());
        assert!(!storage
            .create(&path, Bytes::from_static(b"n"))
            .await
            .unwrap());
        // The probe ran once (two puts and a delete, then the two creates), and left nothing.
        assert_eq!(honest.calls.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert!(storage
            .list(&storage.path("_quiver_probe"))
            .await
            .unwrap()
            .is_empty());
    }

    /// A cloud store with a block cache of `capacity` bytes, holding a data file of `size`
    /// bytes (`i % 251` at offset `i`).
    async fn cloud_file(capacity: u64, size: u64) -> (Storage, Arc<BlockCache>, Path, Vec<u8>) {
        use throttle::tests::FlakyStore;
        let store = Arc::new(FlakyStore::new(Box::new(|_, _| None)));
        let cache = Arc::new(BlockCache::new(capacity));
        let storage =
            Storage::from_store(store, Path::default(), StorageOptions::default(), "s3://b")
                .checking_conditional_puts()
                .with_block_cache(cache.clone());
        let path = storage.path("t/data/f.qvd");
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        storage.put(&path, Bytes::from(data.clone())).await.unwrap();
        (storage, cache, path, data)
    }

    /// A cloud store whose requests are recorded by operation, in order.
    fn recording_cloud() -> (Storage, Arc<Mutex<Vec<String>>>) {
        use throttle::tests::FlakyStore;
        let ops = Arc::new(Mutex::new(Vec::new()));
        let record = ops.clone();
        let store = Arc::new(FlakyStore::new(Box::new(move |_, op| {
            record.lock().unwrap().push(op.to_string());
            None
        })));
        let storage =
            Storage::from_store(store, Path::default(), StorageOptions::default(), "s3://b")
                .checking_conditional_puts();
        (storage, ops)
    }

    /// Writes `size` patterned bytes in 1 MiB pieces (after telling the writer `hint`) and
    /// checks they read back whole; returns the requests the write made.
    async fn write_and_check(size: usize, hint: Option<u64>) -> Vec<String> {
        let (storage, ops) = recording_cloud();
        let path = storage.path("t/data/f.qvd");
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut writer = storage.writer(&path);
        if let Some(bytes) = hint {
            writer.will_reach(bytes);
        }
        for piece in data.chunks(1 << 20) {
            writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        assert_eq!(writer.finish().await.unwrap(), size as u64);
        let written = ops.lock().unwrap().clone();
        assert_eq!(storage.read_all(&path).await.unwrap(), data);
        written
    }

    /// A file up to `SINGLE_PUT_MAX` is one PUT and a larger one a multipart upload; a writer
    /// told its file will be larger starts the upload before it holds a byte, and completes it
    /// even when the file ends smaller.
    #[tokio::test]
    async fn cloud_writers_put_small_files_whole_and_start_large_uploads_early() {
        let large = SINGLE_PUT_MAX + 2 * UPLOAD_PART + 17;
        assert_eq!(write_and_check(SINGLE_PUT_MAX, None).await, ["put"]);
        assert_eq!(write_and_check(large, None).await, ["put_multipart"]);
        assert_eq!(
            write_and_check(1000, Some(large as u64)).await,
            ["put_multipart"]
        );
        assert_eq!(
            write_and_check(1000, Some(SINGLE_PUT_MAX as u64)).await,
            ["put"]
        );

        let (storage, ops) = recording_cloud();
        let path = storage.path("t/data/g.qvd");
        let mut writer = storage.writer(&path);
        writer.will_reach(large as u64);
        for _ in 0..1000 {
            if !ops.lock().unwrap().is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            *ops.lock().unwrap(),
            ["put_multipart"],
            "started at the hint"
        );
        writer.write(Bytes::from(vec![1u8; 1000])).await.unwrap();
        writer.abort().await.unwrap();
        assert!(
            storage.read_all(&path).await.is_err(),
            "an abandoned upload leaves nothing"
        );
    }

    /// A writer dropped unfinished (its task cancelled) aborts the upload it started, whether
    /// started early at a hint or with parts already sent.
    #[tokio::test]
    async fn dropped_writers_abort_their_uploads() {
        for parts_sent in [false, true] {
            let (storage, ops) = recording_cloud();
            let path = storage.path("t/data/h.qvd");
            let mut writer = storage.writer(&path);
            writer.will_reach(2 * SINGLE_PUT_MAX as u64);
            if parts_sent {
                writer
                    .write(Bytes::from(vec![1u8; SINGLE_PUT_MAX + UPLOAD_PART]))
                    .await
                    .unwrap();
            }
            drop(writer);
            let aborted = || ops.lock().unwrap().iter().any(|op| op == "abort_multipart");
            for _ in 0..1000 {
                if aborted() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert!(
                aborted(),
                "parts sent: {parts_sent}: {:?}",
                ops.lock().unwrap()
            );
            assert!(storage.read_all(&path).await.is_err());
        }
    }

    /// On a cloud store, ranges read once are served from the block cache after, exactly.
    #[tokio::test]
    async fn cloud_reads_of_data_files_go_through_the_block_cache() {
        let (storage, cache, path, data) = cloud_file(1 << 20, 200_000).await;
        let ranges = [10..20, 65_000..70_000, 199_990..200_000];
        let first = storage
            .read_ranges_cached(&path, 200_000, &ranges, &[])
            .await
            .unwrap();
        let reads = storage.io_stats().read_ops;
        assert!(reads > 0);
        let again = storage
            .read_ranges_cached(&path, 200_000, &ranges, &[])
            .await
            .unwrap();
        assert_eq!(storage.io_stats().read_ops, reads, "served from the cache");
        for ((r, a), b) in ranges.iter().zip(&first).zip(&again) {
            assert_eq!(&a[..], &data[r.start as usize..r.end as usize]);
            assert_eq!(a, b);
        }
        assert!(cache.size_bytes() > 0);
        let past_the_end = std::slice::from_ref(&(199_000..200_001));
        assert!(storage
            .read_ranges_cached(&path, 200_000, past_the_end, &[])
            .await
            .is_err());
        // A local store keeps no blocks.
        let local = Storage::from_uri("memory://")
            .unwrap()
            .with_block_cache(cache.clone());
        assert!(local.blocks.is_none());
    }

    /// The blocks between two wanted ranges that one request read with them are cached too,
    /// and so are the extents read with them: a later read in either costs no request, and
    /// bytes past them still do.
    #[tokio::test]
    #[allow(clippy::single_range_in_vec_init)] // one range per read reads plainest here
    async fn blocks_read_along_with_wanted_ones_are_cached() {
        let size = 1_000_000u64;
        let (storage, _, path, data) = cloud_file(4 << 20, size).await;
        let before = storage.io_stats().read_ops;
        // Reads `ranges` with `extents`, checks the bytes; returns the requests made so far.
        let read = async |ranges: &[Range<u64>], extents: &[Range<u64>]| {
            let got = storage
                .read_ranges_cached(&path, size, ranges, extents)
                .await
                .unwrap();
            for (r, b) in ranges.iter().zip(&got) {
                assert_eq!(&b[..], &data[r.start as usize..r.end as usize]);
            }
            storage.io_stats().read_ops - before
        };
        // 200 KB apart: within the cloud coalesce gap, so one request.
        assert_eq!(read(&[100..108, 200_000..200_100], &[]).await, 1);
        let between = [50_000..50_008, 150_000..150_200];
        assert_eq!(read(&between, &[]).await, 1, "read along before");
        assert_eq!(read(&[600_000..600_008], &[]).await, 2);
        // An extent holding a range to read is read whole with it, in one request; one that
        // holds none is not read.
        let extents = [700_000..950_000, 960_000..990_000];
        assert_eq!(read(&[900_000..900_010], &extents).await, 3);
        let inside = [700_000..700_100, 949_000..950_000];
        assert_eq!(read(&inside, &[]).await, 3, "read with its extent");
        assert_eq!(read(&[980_000..980_001], &[]).await, 4);
    }

    #[test]
    fn storage_options_need_a_cloud_store() {
        let options = StorageOptions {
            store_options: BTreeMap::from([("region".to_string(), "eu-west-1".to_string())]),
            ..StorageOptions::default()
        };
        let err = Storage::from_uri_with_options("memory://", Some(options)).unwrap_err();
        assert!(
            err.to_string().contains("apply to s3:// databases"),
            "{err}"
        );
    }

    /// Reads wait for room under the limits, and a read larger than the byte budget still
    /// goes (alone).
    #[tokio::test]
    async fn io_limits_bound_requests_and_bytes_in_flight() {
        let limits = Arc::new(IoLimits::new(2, 4096));
        let a = limits.admit(1, 1024).await.unwrap();
        let b = limits.admit(1, 1024).await.unwrap();
        let waiting = {
            let limits = limits.clone();
            tokio::spawn(async move {
                let _c = limits.admit(1, 10).await.unwrap();
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "a third request waits for one of two"
        );
        drop(a);
        waiting.await.unwrap();
        drop(b);
        let huge = limits.admit(1, 1 << 30).await.unwrap();
        assert_eq!(limits.bytes.available_permits(), 0);
        drop(huge);
        assert_eq!(limits.bytes.available_permits(), 4);
    }

    #[test]
    fn rejects_unknown_schemes() {
        let err = Storage::from_uri("ftp://x/y").unwrap_err();
        assert!(err.to_string().contains("unsupported URI scheme"));
    }
}
