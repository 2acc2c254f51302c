//! Caches shared by every table of a connection: data file metadata, deletion vectors and
//! manifests in one, indexes and their parts in another ([`IndexCache`]), each weighed in bytes so the limit is
//! a memory limit, not an entry count. Everything cached is immutable (files are never
//! rewritten), so entries never go stale.

use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;
use roaring::RoaringBitmap;

use super::commit::QueuedAppend;
use super::manifest::Manifest;
use crate::error::Result;
use crate::format::reader::FileMetadata;
pub use crate::index::cache::CacheStats;
use crate::index::cache::IndexCache;

/// Default byte budget of the metadata caches (the performance guide's).
pub const DEFAULT_METADATA_CACHE_BYTES: u64 = 1024 * 1024 * 1024;
/// Default byte budget of the index cache.
pub const DEFAULT_INDEX_CACHE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

#[derive(Clone)]
struct ByteWeighter;

impl Weighter<String, CachedEntry> for ByteWeighter {
    fn weight(&self, key: &String, value: &CachedEntry) -> u64 {
        (key.len() + value.heap_bytes()) as u64
    }
}

/// One cached value.
#[derive(Clone)]
pub enum CachedEntry {
    File(Arc<FileMetadata>),
    Deletion(Arc<RoaringBitmap>),
    Manifest(Arc<Manifest>),
    /// A compaction's address map (see `table::remap`).
    Remap(Arc<Vec<super::remap::RemapGroup>>),
}

impl CachedEntry {
    fn heap_bytes(&self) -> usize {
        match self {
            CachedEntry::File(m) => m.heap_bytes,
            CachedEntry::Deletion(b) => b.serialized_size() + 64,
            CachedEntry::Manifest(m) => m.heap_bytes(),
            CachedEntry::Remap(groups) => {
                groups
                    .iter()
                    .flat_map(|g| &g.old)
                    .map(|o| 96 + o.dropped.serialized_size())
                    .sum::<usize>()
                    + groups.len() * 64
            }
        }
    }
}

type Leases = std::sync::Mutex<std::collections::HashMap<(String, u64), usize>>;

pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A version being read (see [`Session::lease`]); released on drop.
pub(crate) struct VersionLease {
    leases: Arc<Leases>,
    key: (String, u64),
}

impl Drop for VersionLease {
    fn drop(&mut self) {
        let mut leases = lock(&self.leases);
        if let Some(n) = leases.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                leases.remove(&self.key);
            }
        }
    }
}

/// Told of every commit made through a connection (automatic maintenance).
pub(crate) trait CommitObserver: Send + Sync {
    fn committed(&self, table: &Arc<super::TableInner>, manifest: &Arc<Manifest>);
    fn activity(
        &self,
        table: &super::TableInner,
    ) -> Option<crate::maintenance::MaintenanceActivity>;
    fn configure(
        &self,
        table: &super::TableInner,
        settings: Option<crate::maintenance::MaintenanceOptions>,
    );
    fn close(&self);
}

/// The byte-weighed caches: file metadata, deletion vectors and manifests in one, indexes and
/// their parts in the other. Shared by every table of a connection and, when passed to
/// several connections ([`super::ConnectOptions::caches`]), by all of them: keys name the
/// store (see [`crate::storage::Storage::namespace`]), so databases never see each other's
/// entries.
pub struct Caches {
    cache: Cache<String, CachedEntry, ByteWeighter>,
    capacity: u64,
    indexes: IndexCache,
    /// Blocks of data files read from cloud stores.
    blocks: Arc<crate::storage::BlockCache>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("metadata", &self.stats())
            .field("indexes", &self.indexes.stats())
            .finish()
    }
}

impl Caches {
    /// Caches of at most `metadata_bytes` and `index_bytes` (0 keeps nothing).
    pub fn new(metadata_bytes: u64, index_bytes: u64) -> Self {
        Self::with_data_cache(
            metadata_bytes,
            index_bytes,
            crate::storage::DEFAULT_DATA_CACHE_BYTES,
        )
    }

    /// Caches with the block cache of cloud stores' data files sized too.
    pub fn with_data_cache(metadata_bytes: u64, index_bytes: u64, data_bytes: u64) -> Self {
        Caches {
            cache: Cache::with_weighter(1024, metadata_bytes.max(1), ByteWeighter),
            capacity: metadata_bytes,
            indexes: IndexCache::new(index_bytes),
            blocks: Arc::new(crate::storage::BlockCache::new(data_bytes)),
        }
    }

    /// The block cache of cloud stores' data files.
    pub fn blocks(&self) -> &Arc<crate::storage::BlockCache> {
        &self.blocks
    }

    /// Bytes held by the caches.
    pub fn size_bytes(&self) -> u64 {
        self.cache.weight() + self.indexes.stats().bytes + self.blocks.size_bytes()
    }

    /// Entries in the caches (approximate while other threads insert and evict).
    pub fn approx_num_items(&self) -> u64 {
        self.cache.len() as u64 + self.indexes.stats().entries + self.blocks.len()
    }

    /// Statistics of the metadata cache.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.cache.len() as u64,
            bytes: self.cache.weight(),
            capacity_bytes: self.capacity,
        }
    }

    /// Statistics of the index cache.
    pub fn index_stats(&self) -> CacheStats {
        self.indexes.stats()
    }
}

impl Default for Caches {
    fn default() -> Self {
        Caches::new(DEFAULT_METADATA_CACHE_BYTES, DEFAULT_INDEX_CACHE_BYTES)
    }
}

/// Per-connection state shared by its tables.
pub struct Session {
    observer: Option<Arc<dyn CommitObserver>>,
    /// One commit slot per table: commits through this connection take turns instead of
    /// racing (other processes still race, and rebase), and queued appends share a version.
    commit_slots: std::sync::Mutex<std::collections::HashMap<String, Arc<CommitSlot>>>,
    /// Versions operations of this connection are reading (table URI, version) → how many:
    /// a cleanup run through this connection keeps them.
    leases: Arc<std::sync::Mutex<std::collections::HashMap<(String, u64), usize>>>,
    caches: Arc<Caches>,
    /// See `ConnectOptions::scalar_index_max_share`.
    index_max_share: f64,
}

/// One table's commits through one connection.
#[derive(Default)]
pub(crate) struct CommitSlot {
    /// The turn a commit holds while it publishes, with the commits made under it.
    pub turn: tokio::sync::Mutex<RecentCommits>,
    /// Appends waiting to be published together, in the order they arrived (`None`: no batch
    /// is open; the next append opens one). See `commit::commit_append`.
    pub appends: std::sync::Mutex<Option<Vec<QueuedAppend>>>,
}

/// The last commits made through one connection's commit lock of a table, newest last, at
/// consecutive versions: a commit queued behind them rebases on them directly instead of
/// losing a publish race and listing the versions (group commit of concurrent writers).
#[derive(Debug, Default)]
pub(crate) struct RecentCommits {
    manifests: std::collections::VecDeque<Arc<Manifest>>,
}

/// Commits remembered per table.
const RECENT_COMMITS: usize = 64;

impl RecentCommits {
    /// Records a commit; forgets the older ones unless it directly follows them.
    pub(crate) fn push(&mut self, manifest: Arc<Manifest>) {
        if self
            .manifests
            .back()
            .is_some_and(|last| last.version() + 1 != manifest.version())
        {
            self.manifests.clear();
        }
        if self.manifests.len() == RECENT_COMMITS {
            self.manifests.pop_front();
        }
        self.manifests.push_back(manifest);
    }

    /// The commits after `version`, when every one of them is known (empty when `version`
    /// is the newest known; `None` when some are not, or `version` is newer).
    pub(crate) fn since(&self, version: u64) -> Option<Vec<Arc<Manifest>>> {
        let first = self.manifests.front()?.version();
        let last = self.manifests.back()?.version();
        if version + 1 < first || version > last {
            return None;
        }
        Some(
            self.manifests
                .iter()
                .filter(|m| m.version() > version)
                .cloned()
                .collect(),
        )
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("cache", &self.stats())
            .field("indexes", &self.index_stats())
            .finish()
    }
}

impl Session {
    /// A session whose metadata cache holds at most `capacity_bytes` (and the index cache
    /// its default).
    pub fn new(capacity_bytes: u64) -> Self {
        Self::with_index_cache(capacity_bytes, DEFAULT_INDEX_CACHE_BYTES)
    }

    /// A session with both cache budgets given.
    pub fn with_index_cache(capacity_bytes: u64, index_bytes: u64) -> Self {
        Self::with_caches(Arc::new(Caches::new(capacity_bytes, index_bytes)))
    }

    /// A session over caches other sessions may share.
    pub fn with_caches(caches: Arc<Caches>) -> Self {
        Session {
            observer: None,
            commit_slots: Default::default(),
            leases: Default::default(),
            caches,
            index_max_share: crate::filter::index_plan::MAX_SHARE,
        }
    }

    /// The caches this session uses.
    pub fn caches(&self) -> &Arc<Caches> {
        &self.caches
    }

    pub(crate) fn with_observer(mut self, observer: Arc<dyn CommitObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    pub(crate) fn with_index_max_share(mut self, share: f64) -> Self {
        self.index_max_share = share;
        self
    }

    /// Largest share of rows a scalar index may select for a filter to use it.
    pub(crate) fn index_max_share(&self) -> f64 {
        self.index_max_share
    }

    /// The commit slot of the table at `uri`.
    pub(crate) fn commit_slot(&self, uri: &str) -> Arc<CommitSlot> {
        lock(&self.commit_slots)
            .entry(uri.to_string())
            .or_default()
            .clone()
    }

    /// Marks `version` of the table at `uri` as being read until the lease is dropped.
    pub(crate) fn lease(&self, uri: &str, version: u64) -> VersionLease {
        let key = (uri.to_string(), version);
        *lock(&self.leases).entry(key.clone()).or_insert(0) += 1;
        VersionLease {
            leases: self.leases.clone(),
            key,
        }
    }

    /// Versions of the table at `uri` being read through this connection now.
    pub(crate) fn leased(&self, uri: &str) -> std::collections::HashSet<u64> {
        lock(&self.leases)
            .keys()
            .filter(|(u, _)| u == uri)
            .map(|(_, v)| *v)
            .collect()
    }

    pub(crate) fn observer(&self) -> Option<&Arc<dyn CommitObserver>> {
        self.observer.as_ref()
    }

    /// The cache of indexes and their parts.
    pub fn indexes(&self) -> &IndexCache {
        &self.caches.indexes
    }

    /// Statistics of the index cache.
    pub fn index_stats(&self) -> CacheStats {
        self.caches.index_stats()
    }

    pub fn get(&self, key: &str) -> Option<CachedEntry> {
        self.caches.cache.get(key)
    }

    /// The entry at `key`, loaded by `load` on a miss. Concurrent misses of one key load it
    /// once: the others wait for that load (and load themselves if it fails).
    pub async fn get_or_load(
        &self,
        key: String,
        load: impl std::future::Future<Output = Result<CachedEntry>>,
    ) -> Result<CachedEntry> {
        if self.caches.capacity == 0 {
            return load.await;
        }
        self.caches.cache.get_or_insert_async(&key, load).await
    }

    pub fn insert(&self, key: String, value: CachedEntry) {
        if self.caches.capacity > 0 {
            self.caches.cache.insert(key, value);
        }
    }

    pub fn stats(&self) -> CacheStats {
        self.caches.stats()
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new(DEFAULT_METADATA_CACHE_BYTES)
    }
}
