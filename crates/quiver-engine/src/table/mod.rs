//! Databases, tables and versions.
//!
//! A database is a prefix of an object store; each table is a folder `{name}.quiver/` under it
//! holding `data/` (data files), `_deletions/` (deletion vectors), `_versions/` (one manifest
//! per version) and `_indices/` (later). A [`Table`] handle reads one version at a time: the
//! latest (refreshed on demand) or a pinned older one (read-only). Every write produces exactly
//! one new version through [`commit`].

pub mod cleanup;
mod commit;
pub mod compact;
pub mod deletion;
mod evolve;
pub(crate) mod index_filter;
pub mod indices;
pub mod manifest;
mod mutate;
pub mod remap;
pub mod scan;
pub mod session;
pub mod tags;
pub mod write;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use futures::stream::BoxStream;
use roaring::RoaringBitmap;

pub use self::cleanup::{CleanupOptions, CleanupStats};
pub(crate) use self::commit::IndexChange;
/// Operation name of compactions, as version histories show it.
pub const COMPACT_OPERATION: &str = self::commit::COMPACT;
use self::commit::{commit, Operation};
pub use self::compact::{CompactionMetrics, CompactionOptions};
pub use self::evolve::{ColumnAlteration, NewColumns};
use self::manifest::{
    DeletionFileProto, FragmentProto, Manifest, ManifestState, ManifestStore, VersionEntry,
};
pub use self::mutate::{MergeInsert, MergeResult, UpdateResult, UpdateValue};
pub use self::scan::{row_address, ScanOptions, ROW_ID};
use self::session::{CachedEntry, Session};
pub use self::tags::TagInfo;
pub use self::write::{
    batches_stream, BatchStream, CommitHook, WriteParams, DEFAULT_COMMIT_TIMEOUT,
};
use crate::error::{Error, Result};
use crate::filter::{Filter, FilterRef};
use crate::format::reader::{read_metadata, FileReader};
use crate::schema::TableSchema;
use crate::storage::{IoSnapshot, Storage, StorageOptions};

/// Fragments searched at once by filtered counts and mutations.
const FRAGMENT_CONCURRENCY: usize = 4;

/// Suffix of a table's folder.
pub const TABLE_SUFFIX: &str = ".quiver";

/// Options of [`Database::connect`].
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Byte budget of the metadata cache (file metadata, deletion vectors, manifests).
    pub metadata_cache_bytes: Option<u64>,
    /// Byte budget of the index cache (loaded indexes and their pages, bitmaps, partitions).
    pub index_cache_bytes: Option<u64>,
    /// Largest share of a table's rows a scalar index may select for a filter to use it
    /// (default [`crate::filter::index_plan::MAX_SHARE`]); a less selective predicate is
    /// scanned. 1 uses an index whenever one answers.
    pub scalar_index_max_share: Option<f64>,
    /// Store tuning; defaults suit the URI's store.
    pub storage: Option<StorageOptions>,
    /// Caches shared with other connections (the byte budgets above must then be unset:
    /// the caches have their own).
    pub caches: Option<Arc<session::Caches>>,
    /// Automatic maintenance after writes (off when `None`; tables can still turn it on for
    /// themselves with [`Table::set_maintenance`]).
    pub maintenance: Option<crate::maintenance::MaintenanceOptions>,
}

/// How [`Database::create_table`] treats an existing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CreateMode {
    /// Fail with [`Error::TableAlreadyExists`].
    #[default]
    Create,
    /// Replace its rows and schema (as a new version; old versions stay readable).
    Overwrite,
    /// Open it and leave it unchanged.
    ExistOk,
}

/// A database: a folder (or prefix) of tables.
#[derive(Debug, Clone)]
pub struct Database {
    storage: Storage,
    session: Arc<Session>,
}

/// Checks a table name: letters, digits, `_`, `-` and `.`, not starting with `.`, at most 128
/// characters. This keeps names from escaping the database folder (`../x`, `a/b`).
pub fn validate_table_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid table name '{name}': use 1-128 letters, digits, '_', '-' or '.', not starting with '.'"
        )))
    }
}

impl Database {
    /// Opens the database at `uri` (see [`Storage::from_uri`]). A local folder is created on
    /// the first write.
    pub async fn connect(uri: &str, options: ConnectOptions) -> Result<Self> {
        if let Some(m) = &options.maintenance {
            m.check()?;
        }
        if let Some(share) = options.scalar_index_max_share {
            if !(share > 0.0 && share <= 1.0) {
                return Err(Error::invalid(format!(
                    "scalarIndexMaxShare must be above 0 and at most 1 (got {share})"
                )));
            }
        }
        if options.caches.is_some()
            && (options.metadata_cache_bytes.is_some() || options.index_cache_bytes.is_some())
        {
            return Err(Error::invalid(
                "cache sizes go to the shared session, not to connect: pass metadataCacheBytes and indexCacheBytes to new Session() instead",
            ));
        }
        let storage = Storage::from_uri_with_options(uri, options.storage.clone())?;
        Ok(Self::from_storage(storage, options))
    }

    /// A database over an existing store handle (tests wrap stores to count or break I/O).
    pub fn from_storage(storage: Storage, options: ConnectOptions) -> Self {
        let mut session = match &options.caches {
            Some(caches) => Session::with_caches(caches.clone()),
            None => Session::with_index_cache(
                options
                    .metadata_cache_bytes
                    .unwrap_or(session::DEFAULT_METADATA_CACHE_BYTES),
                options
                    .index_cache_bytes
                    .unwrap_or(session::DEFAULT_INDEX_CACHE_BYTES),
            ),
        };
        let maintenance = options
            .maintenance
            .unwrap_or(crate::maintenance::MaintenanceOptions {
                enabled: false,
                ..Default::default()
            });
        session = session.with_observer(crate::maintenance::Maintainer::new(maintenance));
        if let Some(share) = options.scalar_index_max_share {
            session = session.with_index_max_share(share);
        }
        Database {
            storage: storage.with_block_cache(session.caches().blocks().clone()),
            session: Arc::new(session),
        }
    }

    /// Stops automatic maintenance (a round in progress is abandoned; it commits all or
    /// nothing). Handles stay usable.
    pub fn close(&self) {
        if let Some(observer) = self.session.observer() {
            observer.close();
        }
    }

    /// The store the database lives in (another connection to it: [`Database::from_storage`]).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The shared session (caches).
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// I/O done through this database so far.
    pub fn io_stats(&self) -> IoSnapshot {
        self.storage.io_stats()
    }

    fn table_storage(&self, name: &str) -> Storage {
        self.storage.child(&format!("{name}{TABLE_SUFFIX}"))
    }

    fn inner(&self, name: &str) -> Arc<TableInner> {
        let storage = self.table_storage(name);
        Arc::new(TableInner {
            name: name.to_string(),
            manifests: ManifestStore::new(storage.clone()),
            storage,
            session: self.session.clone(),
            damaged: Default::default(),
        })
    }

    /// Names of the tables, sorted. A folder without a committed version is not a table.
    pub async fn table_names(&self) -> Result<Vec<String>> {
        let dirs = self.storage.list_dirs(&self.storage.path("")).await?;
        let mut names = Vec::new();
        for dir in dirs {
            if let Some(name) = dir.strip_suffix(TABLE_SUFFIX) {
                if validate_table_name(name).is_ok()
                    && self.inner(name).manifests.latest().await?.is_some()
                {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Opens the latest intact version of a table: newer versions that are damaged (a power
    /// cut, a file removed outside Quiver) are skipped and reported by
    /// [`Table::skipped_versions`]; the next write builds on the intact one.
    pub async fn open_table(&self, name: &str) -> Result<Table> {
        validate_table_name(name)?;
        let inner = self.inner(name);
        let manifest = inner
            .latest_intact()
            .await?
            .ok_or_else(|| Error::TableNotFound(name.to_string()))?;
        Ok(Table::new(inner, manifest, false))
    }

    /// Opens a table pinned (read-only) at `version`.
    pub async fn open_table_at(&self, name: &str, version: u64) -> Result<Table> {
        validate_table_name(name)?;
        let inner = self.inner(name);
        let manifest = match inner.intact_manifest(version).await {
            Err(Error::VersionNotFound { .. }) if inner.manifests.latest().await?.is_none() => {
                return Err(Error::TableNotFound(name.to_string()))
            }
            other => other?,
        };
        Ok(Table::new(inner, manifest, true))
    }

    /// Creates a table from a stream of batches. `schema` is required when the stream may be
    /// empty; otherwise it defaults to the schema of the first batch.
    pub async fn create_table(
        &self,
        name: &str,
        schema: SchemaRef,
        batches: BatchStream,
        mode: CreateMode,
        params: WriteParams,
    ) -> Result<Table> {
        validate_table_name(name)?;
        let inner = self.inner(name);
        let existing = inner.latest_intact().await?;
        let base = match (existing, mode) {
            (Some(_), CreateMode::Create) => {
                return Err(Error::TableAlreadyExists(name.to_string()))
            }
            (Some(m), CreateMode::ExistOk) => return Ok(Table::new(inner, m, false)),
            (Some(m), CreateMode::Overwrite) => Some(m),
            (None, _) => None,
        };
        let table_schema = TableSchema::new(&schema)?;
        let fragments =
            write::write_fragments(&inner.storage, &table_schema, batches, &params).await?;
        if let Some(hook) = &params.before_commit {
            hook();
        }
        let op = if base.is_some() {
            Operation::Overwrite {
                schema: table_schema,
                fragments,
            }
        } else {
            Operation::Create {
                schema: table_schema,
                fragments,
            }
        };
        let manifest = match commit(
            &inner,
            base,
            op,
            write::deadline_after(params.commit_timeout),
        )
        .await
        {
            Err(Error::TableAlreadyExists(_)) if mode == CreateMode::ExistOk => {
                return self.open_table(name).await;
            }
            other => other?,
        };
        Ok(Table::new(inner, manifest, false))
    }

    /// Deletes a table and all its versions.
    pub async fn drop_table(&self, name: &str) -> Result<()> {
        validate_table_name(name)?;
        let inner = self.inner(name);
        if inner.manifests.latest().await?.is_none() {
            return Err(Error::TableNotFound(name.to_string()));
        }
        self.storage.delete_prefix(&inner.storage.path("")).await
    }
}

/// Shared state of one table: where it lives and the connection's caches.
pub(crate) struct TableInner {
    pub(crate) name: String,
    pub(crate) storage: Storage,
    manifests: ManifestStore,
    pub(crate) session: Arc<Session>,
    /// Versions found damaged when the table was opened (see [`TableInner::latest_intact`]):
    /// commits number past them and never build on them, cleanup treats them as unreadable.
    damaged: std::sync::Mutex<BTreeMap<u64, String>>,
}

/// A version that opening the table skipped because it is damaged (a power cut before its
/// files reached the disk, or a file damaged or removed outside Quiver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedVersion {
    pub version: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Whether `e` says a manifest is damaged (as opposed to unreachable, or newer than us).
fn is_damage(e: &Error) -> bool {
    matches!(e, Error::Corrupt { .. })
}

impl TableInner {
    fn cache_key(&self, relative: &str) -> String {
        format!("{}/{relative}", self.storage.namespace())
    }

    /// Manifest of a listed version, through the cache.
    async fn manifest_at(&self, entry: &VersionEntry) -> Result<Arc<Manifest>> {
        let key = self.cache_key(&format!("v{}@{}", entry.version, entry.identity));
        if let Some(CachedEntry::Manifest(m)) = self.session.get(&key) {
            return Ok(m);
        }
        let (manifest, read_entry) = self
            .manifests
            .read(entry.version)
            .await?
            .ok_or_else(|| self.version_not_found(entry.version))?;
        self.cache_manifest(&manifest, &read_entry);
        Ok(manifest)
    }

    fn cache_manifest(&self, manifest: &Arc<Manifest>, entry: &VersionEntry) {
        self.session.insert(
            self.cache_key(&format!("v{}@{}", entry.version, entry.identity)),
            CachedEntry::Manifest(manifest.clone()),
        );
    }

    fn version_not_found(&self, version: u64) -> Error {
        Error::VersionNotFound {
            table: self.name.clone(),
            version,
        }
    }

    /// Manifest of `version` (one listing to find it, then the cache).
    async fn manifest(&self, version: u64) -> Result<Arc<Manifest>> {
        let versions = self.manifests.list().await?;
        let entry = versions
            .iter()
            .find(|e| e.version == version)
            .ok_or_else(|| self.version_not_found(version))?;
        self.manifest_at(entry).await
    }

    /// The newest readable manifest, if the table has any version: damaged manifests (and
    /// versions found damaged on open) are passed over. Files are not checked; see
    /// [`TableInner::latest_intact`].
    pub(crate) async fn latest_manifest(&self) -> Result<Option<Arc<Manifest>>> {
        let versions = self.manifests.list().await?;
        let mut first_damage = None;
        for entry in versions.iter().rev() {
            if self.is_damaged(entry.version) {
                continue;
            }
            match self.manifest_at(entry).await {
                Ok(m) => return Ok(Some(m)),
                Err(e) if is_damage(&e) => {
                    self.mark_damaged(entry.version, e.to_string());
                    first_damage.get_or_insert(e);
                }
                // Removed since the listing (a cleanup, a writer withdrawing it).
                Err(Error::VersionNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        match first_damage {
            Some(e) => Err(e),
            None if versions.is_empty() => Ok(None),
            None => Err(self.no_intact_version()),
        }
    }

    fn no_intact_version(&self) -> Error {
        let newest = self
            .damaged
            .lock()
            .ok()
            .and_then(|d| {
                d.iter()
                    .next_back()
                    .map(|(v, r)| format!("; version {v}: {r}"))
            })
            .unwrap_or_default();
        Error::corrupt(
            self.storage.path(manifest::VERSIONS_DIR),
            format!(
                "no version of table '{}' is intact (every manifest, or a file it needs, is damaged or missing){newest}",
                self.name
            ),
        )
    }

    pub(crate) fn is_damaged(&self, version: u64) -> bool {
        self.damaged.lock().is_ok_and(|d| d.contains_key(&version))
    }

    /// The highest version number found damaged, 0 when none.
    pub(crate) fn highest_damaged(&self) -> u64 {
        self.damaged
            .lock()
            .ok()
            .and_then(|d| d.keys().next_back().copied())
            .unwrap_or(0)
    }

    pub(crate) fn mark_damaged(&self, version: u64, reason: String) {
        if let Ok(mut d) = self.damaged.lock() {
            d.insert(version, reason);
        }
    }

    /// Versions found damaged, oldest first.
    pub(crate) fn damaged_versions(&self) -> Vec<SkippedVersion> {
        self.damaged.lock().map_or_else(
            |_| Vec::new(),
            |d| {
                d.iter()
                    .map(|(&version, reason)| SkippedVersion {
                        version,
                        reason: reason.clone(),
                    })
                    .collect()
            },
        )
    }

    /// Every file of the table with its size, keyed by path relative to the table folder.
    async fn file_sizes(&self) -> Result<std::collections::HashMap<String, u64>> {
        Ok(self
            .storage
            .list(&self.storage.path(""))
            .await?
            .into_iter()
            .filter_map(|meta| Some((self.storage.relative(&meta.location)?, meta.size)))
            .collect())
    }

    /// Why `manifest` cannot be read in full: a file it references is missing or has another
    /// size than the manifest records. `None` when every file is in place.
    fn missing_file(
        manifest: &Manifest,
        files: &std::collections::HashMap<String, u64>,
    ) -> Option<String> {
        let check = |path: &str, size: u64| -> Option<String> {
            match files.get(path) {
                None => Some(format!("its file '{path}' is missing")),
                Some(&found) if size != 0 && found != size => Some(format!(
                    "its file '{path}' holds {found} bytes where {size} were written"
                )),
                Some(_) => None,
            }
        };
        let p = &manifest.proto;
        p.fragments
            .iter()
            .flat_map(|f| {
                f.files
                    .iter()
                    .map(|d| (d.path.clone(), d.size_bytes))
                    .chain(f.deletion.iter().map(|d| (d.path.clone(), d.size_bytes)))
            })
            .chain(p.indices.iter().map(|i| {
                (
                    format!(
                        "{}/{}/{}",
                        manifest::INDICES_DIR,
                        i.uuid,
                        manifest::INDEX_FILE
                    ),
                    i.size_bytes,
                )
            }))
            .chain(p.remaps.iter().map(|r| (r.path.clone(), r.size_bytes)))
            .find_map(|(path, size)| check(&path, size))
    }

    /// The newest intact version: its manifest reads back and checks, and every file it
    /// references is in place with the size it was written with. Newer versions that are not
    /// are skipped (and remembered: commits number past them and never build on them);
    /// nothing is deleted. One listing of the table's files, whatever the history's length.
    /// Fails with `Corrupt` when no version is intact; `None` when the table has no version.
    pub(crate) async fn latest_intact(&self) -> Result<Option<Arc<Manifest>>> {
        // A writer may commit, and a cleanup then remove files of the versions this looked
        // at, between the listings: when damage was found and a newer version appeared
        // meanwhile, look again (a few times) rather than report live versions as damaged.
        const LOOKS: usize = 3;
        for look in 1..=LOOKS {
            let versions = self.manifests.list().await?;
            let Some(newest) = versions.last().map(|e| e.version) else {
                return Ok(None);
            };
            let mut damaged = Vec::new();
            let mut found = None;
            let mut files = None;
            for entry in versions.iter().rev() {
                let manifest = match self.manifest_at(entry).await {
                    Ok(m) => m,
                    Err(e) if is_damage(&e) => {
                        damaged.push((entry.version, e.to_string()));
                        continue;
                    }
                    Err(Error::VersionNotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                // A cloud store publishes a manifest only after the files it names, each
                // atomically and durably (no power cut can take them back), so its versions
                // are whole without a listing of the table's every file, which would cost a
                // round trip per thousand files on every open.
                if self.storage.is_cloud() {
                    found = Some(manifest);
                    break;
                }
                if files.is_none() {
                    files = Some(self.file_sizes().await?);
                }
                match files
                    .as_ref()
                    .and_then(|f| Self::missing_file(&manifest, f))
                {
                    Some(reason) => damaged.push((entry.version, reason)),
                    None => {
                        found = Some(manifest);
                        break;
                    }
                }
            }
            let moved_on = !damaged.is_empty()
                && look < LOOKS
                && self
                    .manifests
                    .latest()
                    .await?
                    .is_some_and(|l| l.version > newest);
            if moved_on {
                continue;
            }
            if let Ok(mut d) = self.damaged.lock() {
                // Anything at or below the intact version was judged by an older look.
                let floor = found.as_ref().map_or(0, |m| m.version());
                d.retain(|&v, _| v > floor);
                d.extend(damaged);
            }
            return match found {
                Some(m) => Ok(Some(m)),
                None => Err(self.no_intact_version()),
            };
        }
        Err(self.no_intact_version())
    }

    /// The manifest of `version` after checking that every file it references is in place:
    /// `Corrupt` (naming the file) otherwise. For explicit checkouts.
    async fn intact_manifest(&self, version: u64) -> Result<Arc<Manifest>> {
        let manifest = self.manifest(version).await?;
        if self.storage.is_cloud() {
            return Ok(manifest);
        }
        let files = self.file_sizes().await?;
        match Self::missing_file(&manifest, &files) {
            None => Ok(manifest),
            Some(reason) => Err(Error::corrupt(
                self.manifests.path_of(version),
                format!("version {version} cannot be read: {reason}"),
            )),
        }
    }

    /// On a cloud store, reads the metadata of the data files of `manifest`'s first
    /// `limit` fragments into the cache, all at once: a search runs this beside its index
    /// lookup so that fetching its result rows then costs one round trip, not two. Failures
    /// are left for the reads that need the files to report. A warm table (its newest
    /// fragment's metadata cached) costs one lookup, not one per fragment.
    pub(crate) async fn warm_file_metadata(&self, manifest: &Manifest, limit: usize) {
        if !self.storage.is_cloud() {
            return;
        }
        let newest = manifest.fragments().last().and_then(|f| f.files.first());
        let warm = newest.is_none_or(|f| {
            matches!(
                self.session.get(&self.metadata_key(&f.path)),
                Some(CachedEntry::File(_))
            )
        });
        if warm {
            return;
        }
        let files = manifest
            .fragments()
            .iter()
            .take(limit)
            .flat_map(|f| f.files.iter());
        futures::future::join_all(files.map(|f| self.file_reader(&f.path))).await;
    }

    /// The cache key of a data file's metadata: keyed by kind too, since a crafted manifest
    /// may name one file as several kinds.
    fn metadata_key(&self, relative: &str) -> String {
        format!("{}#metadata", self.cache_key(relative))
    }

    /// A reader for the data file at `relative`, its metadata through the cache.
    async fn file_reader(&self, relative: &str) -> Result<FileReader> {
        let key = self.metadata_key(relative);
        let path = self.storage.path(relative);
        let entry = self
            .session
            .get_or_load(key, async {
                let m = read_metadata(&self.storage, &path)
                    .await
                    .map_err(|e| gone(e, relative))?;
                Ok(CachedEntry::File(Arc::new(m)))
            })
            .await?;
        let CachedEntry::File(meta) = entry else {
            return Err(Error::Internal(format!(
                "cache entry of '{relative}' is not file metadata"
            )));
        };
        Ok(FileReader::new(self.storage.clone(), path, meta))
    }

    /// The deletion vector of `fragment` (`None` when nothing is deleted), through the cache,
    /// checked to name only rows the fragment has.
    pub(crate) async fn deleted_rows(
        &self,
        fragment: &FragmentProto,
    ) -> Result<Option<Arc<RoaringBitmap>>> {
        let Some(file) = &fragment.deletion else {
            return Ok(None);
        };
        let deleted = self.deletion_vector(file).await?;
        deletion::check_rows(&deleted, fragment, &self.storage.path(&file.path))?;
        Ok(Some(deleted))
    }

    /// A deletion vector, through the cache. Prefer [`Self::deleted_rows`], which also checks
    /// it against its fragment.
    pub(crate) async fn deletion_vector(
        &self,
        file: &DeletionFileProto,
    ) -> Result<Arc<RoaringBitmap>> {
        let key = format!("{}#deletion", self.cache_key(&file.path));
        let entry = self
            .session
            .get_or_load(key, async {
                let bitmap = deletion::read_deletion_file(&self.storage, file)
                    .await
                    .map_err(|e| gone(e, &file.path))?;
                Ok(CachedEntry::Deletion(Arc::new(bitmap)))
            })
            .await?;
        match entry {
            CachedEntry::Deletion(d) => Ok(d),
            _ => Err(Error::Internal(format!(
                "cache entry of '{}' is not a deletion vector",
                file.path
            ))),
        }
    }
}

/// A file a manifest references goes missing when a cleanup removed its version (or when
/// something outside Quiver deleted it): say so, instead of a bare storage error.
fn gone(e: Error, relative: &str) -> Error {
    match e {
        Error::Storage(object_store::Error::NotFound { .. }) => {
            Error::MissingFile(relative.to_string())
        }
        e => e,
    }
}

/// One entry of a table's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub version: u64,
    /// Commit time, microseconds since the Unix epoch.
    pub timestamp_micros: i64,
    /// `create`, `append`, `overwrite`, `delete` or `restore`.
    pub operation: String,
}

/// Result of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteResult {
    pub num_deleted_rows: u64,
    pub version: u64,
}

/// Size facts about a table version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableStats {
    pub num_rows: u64,
    pub num_deleted_rows: u64,
    pub num_fragments: u64,
    pub data_bytes: u64,
}

struct TableState {
    manifest: Arc<Manifest>,
    /// Checked out at a fixed version: reads stay there and writes are refused.
    pinned: bool,
}

/// A handle on one table. Clones share the handle's checked-out version.
#[derive(Clone)]
pub struct Table {
    inner: Arc<TableInner>,
    state: Arc<RwLock<TableState>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("name", &self.inner.name)
            .field("version", &self.version())
            .finish()
    }
}

impl Table {
    /// A handle tracking the latest version, now at `manifest`.
    pub(crate) fn at_latest(inner: Arc<TableInner>, manifest: Arc<Manifest>) -> Self {
        Self::new(inner, manifest, false)
    }

    /// Moves the handle to a version it just committed and tells the connection's observer.
    fn committed(&self, manifest: Arc<Manifest>) {
        self.set_state(manifest.clone(), false);
        if let Some(observer) = self.inner.session.observer() {
            observer.committed(&self.inner, &manifest);
        }
    }

    /// This table's automatic maintenance settings through this connection, replacing the
    /// connection's (`None`: back to the connection's).
    pub fn set_maintenance(
        &self,
        settings: Option<crate::maintenance::MaintenanceOptions>,
    ) -> Result<()> {
        if let Some(s) = &settings {
            s.check()?;
        }
        if let Some(observer) = self.inner.session.observer() {
            observer.configure(&self.inner, settings);
        }
        Ok(())
    }

    /// What automatic maintenance did for this table (`None` when it is off).
    pub fn maintenance_activity(&self) -> Option<crate::maintenance::MaintenanceActivity> {
        self.inner
            .session
            .observer()
            .and_then(|o| o.activity(&self.inner))
    }

    fn new(inner: Arc<TableInner>, manifest: Arc<Manifest>, pinned: bool) -> Self {
        Table {
            inner,
            state: Arc::new(RwLock::new(TableState { manifest, pinned })),
        }
    }

    fn read_state<T>(&self, f: impl FnOnce(&TableState) -> T) -> T {
        match self.state.read() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn set_state(&self, manifest: Arc<Manifest>, pinned: bool) {
        let mut guard = match self.state.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Never move a latest-tracking handle backwards (a slower concurrent call may finish last).
        if pinned || guard.pinned || manifest.version() >= guard.manifest.version() {
            *guard = TableState { manifest, pinned };
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The manifest this handle reads.
    pub fn manifest(&self) -> Arc<Manifest> {
        self.read_state(|s| s.manifest.clone())
    }

    /// The version this handle reads.
    pub fn version(&self) -> u64 {
        self.read_state(|s| s.manifest.version())
    }

    /// Whether the handle is pinned to an old version by [`Table::checkout`].
    pub fn is_pinned(&self) -> bool {
        self.read_state(|s| s.pinned)
    }

    /// The Arrow schema.
    pub fn schema(&self) -> SchemaRef {
        self.manifest().schema.arrow.clone()
    }

    /// Live rows in the checked-out version (from the manifest; no data is read).
    pub fn count_rows(&self) -> u64 {
        self.manifest().live_rows()
    }

    /// Size facts of the checked-out version.
    pub fn stats(&self) -> TableStats {
        let m = self.manifest();
        let physical: u64 = m.fragments().iter().map(|f| f.physical_rows).sum();
        TableStats {
            num_rows: m.live_rows(),
            num_deleted_rows: physical - m.live_rows(),
            num_fragments: m.fragments().len() as u64,
            // Sizes come from the manifest unchecked: they are informational only.
            data_bytes: m
                .fragments()
                .iter()
                .flat_map(|f| f.files.iter().map(|d| d.size_bytes))
                .fold(0, u64::saturating_add),
        }
    }

    /// Moves a latest-tracking handle to the newest committed version. Costs one request when
    /// nothing changed. Pinned handles stay where they are.
    pub async fn refresh(&self) -> Result<u64> {
        let (current, pinned) = self.read_state(|s| (s.manifest.version(), s.pinned));
        if pinned {
            return Ok(current);
        }
        // The common case costs two metadata requests, whatever the history's length: no
        // next version, and the current one still there. (A cleanup never removes the next
        // version while keeping the current one, it buries it; so a missing next version
        // with the current one in place means there is none.) Otherwise one listing finds
        // the newest.
        let (next, here) = futures::try_join!(
            self.inner.manifests.state(current + 1),
            self.inner.manifests.state(current)
        )?;
        if next == ManifestState::Absent && here == ManifestState::Live {
            return Ok(current);
        }
        if here == ManifestState::Live {
            if let Some(newest) = self.newest_after(current + 1).await? {
                self.set_state(newest, false);
                return Ok(self.version());
            }
        }
        match self.inner.manifests.latest().await? {
            Some(latest) if latest.version > current && !self.inner.is_damaged(latest.version) => {
                let manifest = match self.inner.manifest_at(&latest).await {
                    Ok(m) => m,
                    Err(e) if is_damage(&e) => match self.inner.latest_manifest().await? {
                        Some(m) => m,
                        None => return Ok(current),
                    },
                    Err(e) => return Err(e),
                };
                self.set_state(manifest, false);
                Ok(self.version())
            }
            _ => Ok(current),
        }
    }

    /// The newest version when `present` (a version after this handle's, which still stands)
    /// exists: versions are published one after another and cleanup removes the oldest first,
    /// so from a standing version on they form a run, whose end galloping and bisecting find
    /// in a few metadata requests. A listing would cost one entry per version in the history,
    /// and writers refreshing before every operation would pay it each time. `None` (the
    /// caller lists instead) when that end is a tombstone, damaged or does not decode.
    async fn newest_after(&self, present: u64) -> Result<Option<Arc<Manifest>>> {
        let manifests = &self.inner.manifests;
        let exists = |version: u64| async move {
            Ok::<bool, Error>(manifests.state(version).await? != ManifestState::Absent)
        };
        let (mut lo, mut step) = (present, 1u64);
        let mut hi = loop {
            let probe = lo.saturating_add(step);
            if probe == lo || step > 1 << 32 {
                return Ok(None);
            }
            if !exists(probe).await? {
                break probe;
            }
            lo = probe;
            step *= 2;
        };
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if exists(mid).await? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        if self.inner.is_damaged(lo) {
            return Ok(None);
        }
        match manifests.read(lo).await {
            Ok(Some((manifest, _))) => Ok(Some(manifest)),
            Ok(None) => Ok(None),
            Err(e) if is_damage(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Versions the last open or [`Table::checkout_latest`] skipped because they are damaged,
    /// oldest first (empty when the newest version was intact).
    pub fn skipped_versions(&self) -> Vec<SkippedVersion> {
        self.inner.damaged_versions()
    }

    /// Every committed version, oldest first.
    pub async fn list_versions(&self) -> Result<Vec<VersionInfo>> {
        let versions = self.inner.manifests.list().await?;
        let read =
            futures::future::join_all(versions.iter().map(|v| self.inner.manifest_at(v))).await;
        let mut manifests = Vec::with_capacity(read.len());
        for (entry, m) in versions.iter().zip(read) {
            match m {
                Ok(m) if !self.inner.is_damaged(entry.version) => manifests.push(m),
                Ok(_) => {}
                // Damaged versions cannot be checked out; they are not listed.
                Err(e) if is_damage(&e) => {}
                Err(Error::VersionNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(manifests
            .iter()
            .map(|m| VersionInfo {
                version: m.version(),
                timestamp_micros: m.proto.timestamp_micros,
                operation: m.operation().to_string(),
            })
            .collect())
    }

    /// Pins the handle to `version` (read-only until [`Table::checkout_latest`] or
    /// [`Table::restore`]).
    pub async fn checkout(&self, version: u64) -> Result<()> {
        let manifest = self.inner.intact_manifest(version).await?;
        self.set_state(manifest, true);
        Ok(())
    }

    /// Unpins the handle and moves it to the newest intact version (see
    /// [`Database::open_table`]).
    pub async fn checkout_latest(&self) -> Result<u64> {
        let manifest = self
            .inner
            .latest_intact()
            .await?
            .ok_or_else(|| Error::TableNotFound(self.inner.name.clone()))?;
        let version = manifest.version();
        self.set_state(manifest, false);
        Ok(version)
    }

    /// Commits the content of `version` (default: the checked-out version) as a new latest
    /// version, and moves the handle there.
    pub async fn restore(&self, version: Option<u64>) -> Result<u64> {
        let from = match version {
            Some(v) => self.inner.manifest(v).await?,
            None => self.manifest(),
        };
        self.checkout_latest().await?;
        let base = self.manifest();
        let manifest = commit(
            &self.inner,
            Some(base),
            Operation::Restore { from },
            write::deadline_after(WriteParams::default().commit_timeout),
        )
        .await?;
        let version = manifest.version();
        self.committed(manifest);
        Ok(version)
    }

    pub(crate) fn inner(&self) -> &Arc<TableInner> {
        &self.inner
    }

    /// The handle an operator measured by `probe` reads through: an observed view when the
    /// plan is analyzed, else this handle.
    pub(crate) fn measured(&self, probe: &crate::plan::Probe) -> Table {
        match probe.io() {
            Some(io) => self.observed(io),
            None => self.clone(),
        }
    }

    /// A read-only view of this handle's current version whose reads are also counted in
    /// `io` (one query operator's I/O; see `crate::plan`). Caches stay shared.
    pub(crate) fn observed(&self, io: Arc<crate::storage::IoStats>) -> Table {
        let inner = Arc::new(TableInner {
            name: self.inner.name.clone(),
            storage: self.inner.storage.observed(io),
            manifests: self.inner.manifests.clone(),
            session: self.inner.session.clone(),
            damaged: Default::default(),
        });
        Table::new(inner, self.manifest(), true)
    }

    /// Commits a change to the table's indexes read at `read`; returns the new version.
    pub(crate) async fn commit_index_change(
        &self,
        read: Arc<Manifest>,
        change: IndexChange,
    ) -> Result<u64> {
        let manifest = commit(
            &self.inner,
            Some(read),
            Operation::Index(change),
            write::deadline_after(WriteParams::default().commit_timeout),
        )
        .await?;
        let version = manifest.version();
        self.committed(manifest);
        Ok(version)
    }

    pub(crate) fn writable_manifest(&self) -> Result<Arc<Manifest>> {
        let (manifest, pinned) = self.read_state(|s| (s.manifest.clone(), s.pinned));
        if pinned {
            return Err(Error::ReadOnlyVersion(manifest.version()));
        }
        Ok(manifest)
    }

    /// Appends rows; returns the new version (the current one when there were no rows: an
    /// empty append commits nothing).
    pub async fn append(&self, batches: BatchStream, params: WriteParams) -> Result<u64> {
        let read = self.writable_manifest()?;
        let fragments =
            write::write_fragments(&self.inner.storage, &read.schema, batches, &params).await?;
        if fragments.is_empty() {
            return Ok(read.version());
        }
        if let Some(hook) = &params.before_commit {
            hook();
        }
        let manifest = commit::commit_append(
            &self.inner,
            read,
            fragments,
            write::deadline_after(params.commit_timeout),
        )
        .await?;
        let version = manifest.version();
        self.committed(manifest);
        Ok(version)
    }

    /// Replaces all rows (and the schema) with `batches`; returns the new version.
    pub async fn overwrite(
        &self,
        schema: SchemaRef,
        batches: BatchStream,
        params: WriteParams,
    ) -> Result<u64> {
        let read = self.writable_manifest()?;
        let table_schema = TableSchema::new(&schema)?;
        let fragments =
            write::write_fragments(&self.inner.storage, &table_schema, batches, &params).await?;
        if let Some(hook) = &params.before_commit {
            hook();
        }
        let manifest = commit(
            &self.inner,
            Some(read),
            Operation::Overwrite {
                schema: table_schema,
                fragments,
            },
            write::deadline_after(params.commit_timeout),
        )
        .await?;
        let version = manifest.version();
        self.committed(manifest);
        Ok(version)
    }

    /// Parses a SQL filter against the checked-out version's schema.
    pub fn parse_filter(&self, text: &str) -> Result<FilterRef> {
        Ok(Arc::new(Filter::parse(text, &self.schema())?))
    }

    /// Live rows matching `filter` in each fragment of `manifest` (fragments with none are
    /// left out). Fragments are searched concurrently.
    pub(crate) async fn matching_rows(
        &self,
        manifest: &Arc<Manifest>,
        filter: &FilterRef,
    ) -> Result<BTreeMap<u64, RoaringBitmap>> {
        use futures::{StreamExt, TryStreamExt};
        let _lease = self.lease(manifest.version());
        let indexed = index_filter::index_rows(&self.inner, manifest, filter)
            .await?
            .map(Arc::new);
        // Owned handles per task: the futures must be `Send` for any borrow lifetime.
        let found: Vec<(u64, RoaringBitmap)> = futures::stream::iter(0..manifest.fragments().len())
            .map(|index| {
                let (inner, manifest, filter, indexed) = (
                    self.inner.clone(),
                    manifest.clone(),
                    filter.clone(),
                    indexed.clone(),
                );
                async move {
                    let fragment = &manifest.fragments()[index];
                    let rows = scan::fragment_matches(
                        &inner,
                        &manifest,
                        fragment,
                        &filter,
                        u64::MAX,
                        indexed.as_deref(),
                    )
                    .await?;
                    Ok::<_, Error>((fragment.id, rows))
                }
            })
            .buffered(FRAGMENT_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().filter(|(_, r)| !r.is_empty()).collect())
    }

    /// The plan node of what scalar indexes answer of `filter` on `manifest`, if any.
    pub(crate) async fn scalar_index_node(
        &self,
        manifest: &Manifest,
        filter: &Filter,
    ) -> Result<Option<crate::plan::PlanNode>> {
        Ok(index_filter::index_rows(&self.inner, manifest, filter)
            .await?
            .map(|i| i.node(manifest.fragments().len())))
    }

    /// Live rows matching a SQL filter (only the filter's columns are read, and only pages whose
    /// statistics allow a match).
    pub async fn count_rows_where(&self, filter: &str) -> Result<u64> {
        let filter = self.parse_filter(filter)?;
        let manifest = self.manifest();
        Ok(self
            .matching_rows(&manifest, &filter)
            .await?
            .values()
            .map(RoaringBitmap::len)
            .sum())
    }

    /// Deletes the rows matching a SQL filter, as one new version (the current one when nothing
    /// matches). A concurrent commit that deleted some of the same rows makes it re-run against
    /// the newer version.
    pub async fn delete(&self, filter: &str) -> Result<DeleteResult> {
        self.delete_within(filter, write::DEFAULT_COMMIT_TIMEOUT)
            .await
    }

    /// [`Table::delete`] that gives up against other writers after `timeout` (see
    /// [`WriteParams::commit_timeout`]).
    pub async fn delete_within(&self, filter: &str, timeout: Duration) -> Result<DeleteResult> {
        let filter = self.parse_filter(filter)?;
        let deadline = write::deadline_after(timeout);
        self.retry_on_conflict(deadline, || async {
            let read = self.writable_manifest()?;
            let rows = self.matching_rows(&read, &filter).await?;
            self.commit_deletes(read, rows, deadline).await
        })
        .await
    }

    /// Which of the rows at `addresses` match `filter` (read a batch at a time, only the
    /// filter's columns), in the order given.
    pub(crate) async fn rows_matching(
        &self,
        addresses: &[u64],
        filter: &Filter,
    ) -> Result<Vec<bool>> {
        let columns = filter.stored_columns();
        let mut out = Vec::with_capacity(addresses.len());
        for chunk in addresses.chunks(scan::DEFAULT_BATCH_SIZE) {
            let rows = self.take(chunk, Some(&columns), true).await?;
            out.extend(filter.evaluate(&rows)?.values().iter());
        }
        Ok(out)
    }

    /// Runs `attempt` until it does not fail with a commit conflict (or its version read was
    /// cleaned up under it), moving the handle to the newest version between tries, until
    /// `deadline`: a conflict after it is returned.
    pub(crate) async fn retry_on_conflict<T, F, Fut>(
        &self,
        deadline: Instant,
        attempt: F,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut tries: u32 = 0;
        loop {
            match attempt().await {
                Err(Error::CommitConflict(_) | Error::MissingFile(_))
                    if Instant::now() < deadline =>
                {
                    tries += 1;
                    // A pinned handle stays put; its retry then fails as read-only.
                    if !self.is_pinned() {
                        self.refresh().await?;
                    }
                    // Writers that conflicted with each other re-run apart.
                    let pause =
                        Duration::from_millis(rand::random_range(0..=(2u64 << tries.min(6))));
                    tokio::time::sleep(
                        pause.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                }
                other => return other,
            }
        }
    }

    /// Deletes the rows at `addresses` (row addresses as returned in `_rowid`). Addresses of
    /// rows already deleted are ignored; addresses outside the table are an error.
    pub async fn delete_rows(&self, addresses: &[u64]) -> Result<DeleteResult> {
        let read = self.writable_manifest()?;
        let mut rows: BTreeMap<u64, RoaringBitmap> = BTreeMap::new();
        for &address in addresses {
            rows.entry(address >> 32)
                .or_default()
                .insert((address & 0xFFFF_FFFF) as u32);
        }
        for (fragment_id, bitmap) in rows.iter_mut() {
            let fragment = read
                .fragments()
                .iter()
                .find(|f| f.id == *fragment_id)
                .ok_or_else(|| {
                    Error::RowNotFound(format!(
                        "fragment {fragment_id} is not in version {}",
                        read.version()
                    ))
                })?;
            if bitmap
                .max()
                .is_some_and(|m| m as u64 >= fragment.physical_rows)
            {
                return Err(Error::RowNotFound(format!(
                    "offset {} is past the end of fragment {fragment_id}",
                    bitmap.max().unwrap_or_default()
                )));
            }
            if let Some(deleted) = self.inner.deleted_rows(fragment).await? {
                *bitmap -= deleted.as_ref();
            }
        }
        let deadline = write::deadline_after(write::DEFAULT_COMMIT_TIMEOUT);
        self.commit_deletes(read, rows, deadline).await
    }

    /// Commits the deletion of `rows` (fragment id → offsets not yet deleted) read at `read`.
    async fn commit_deletes(
        &self,
        read: Arc<Manifest>,
        mut rows: BTreeMap<u64, RoaringBitmap>,
        deadline: Instant,
    ) -> Result<DeleteResult> {
        rows.retain(|_, b| !b.is_empty());
        let num_deleted_rows = rows.values().map(RoaringBitmap::len).sum();
        if rows.is_empty() {
            return Ok(DeleteResult {
                num_deleted_rows: 0,
                version: read.version(),
            });
        }
        let manifest = commit(
            &self.inner,
            Some(read),
            Operation::Delete { rows },
            deadline,
        )
        .await?;
        let version = manifest.version();
        self.committed(manifest);
        Ok(DeleteResult {
            num_deleted_rows,
            version,
        })
    }

    /// Streams the checked-out version's rows.
    pub fn scan(
        &self,
        options: ScanOptions,
    ) -> Result<(SchemaRef, BoxStream<'static, Result<RecordBatch>>)> {
        use futures::StreamExt;
        let manifest = self.manifest();
        if !crate::events::plans_traced() {
            return self.scan_manifest(manifest, options);
        }
        // Measured for the plan_run event, sent when the stream ends or is dropped. (Scans
        // inside other operations, a search's or a build's, are part of their plans.)
        let lease = self.lease(manifest.version());
        let probe = crate::plan::Probe::start(true);
        let inner = self.measured(&probe).inner.clone();
        let (schema, stream) = scan::scan(inner, manifest, options)?;
        let mut trace = crate::events::ScanTrace::new(probe);
        let stream = stream.inspect(move |batch| {
            let _ = &lease;
            if let Ok(batch) = batch {
                trace.rows(batch.num_rows());
            }
        });
        Ok((schema, stream.boxed()))
    }

    /// Keeps `version` from this connection's cleanups while the lease lives.
    pub(crate) fn lease(&self, version: u64) -> session::VersionLease {
        self.inner.session.lease(self.inner.storage.uri(), version)
    }

    /// The plan a scan with `options` would run, without running it.
    pub async fn explain_scan(&self, options: &ScanOptions) -> Result<crate::plan::PlanNode> {
        scan::explain(&self.inner, &self.manifest(), options).await
    }

    /// Runs a scan to its end and returns its plan with the figures measured for this scan
    /// alone (rows, read requests, bytes, time); the filter runs inside the scan and is
    /// measured with it.
    pub async fn analyze_scan(&self, options: ScanOptions) -> Result<crate::plan::PlanNode> {
        use futures::TryStreamExt;
        let manifest = self.manifest();
        let probe = crate::plan::Probe::start(true);
        let observed = self.measured(&probe);
        // Planning runs the filter's index lookups, and whatever they read (index files,
        // parts) is this query's cost: the scan after it finds them cached.
        let mut plan = scan::explain(&observed.inner, &manifest, &options).await?;
        let (_, stream) = scan::scan(observed.inner.clone(), manifest, options)?;
        let rows = stream
            .try_fold(
                0u64,
                |n, batch| async move { Ok(n + batch.num_rows() as u64) },
            )
            .await?;
        // The scan (or take) node did the reading; a limit above it passed the rows on.
        let reader = match plan.operator.as_str() {
            "Limit" => {
                plan.metrics_mut().output_rows = rows;
                &mut plan.children[0]
            }
            _ => &mut plan,
        };
        reader.metrics_mut().output_rows = rows;
        probe.finish(reader);
        Ok(plan)
    }

    /// Streams the rows of `manifest` (a version or a subset of its fragments).
    pub(crate) fn scan_manifest(
        &self,
        manifest: Arc<Manifest>,
        options: ScanOptions,
    ) -> Result<(SchemaRef, BoxStream<'static, Result<RecordBatch>>)> {
        use futures::StreamExt;
        let lease = self.lease(manifest.version());
        let (schema, stream) = scan::scan(self.inner.clone(), manifest, options)?;
        // The stream holds the lease until it is dropped.
        let stream = stream.inspect(move |_| {
            let _ = &lease;
        });
        Ok((schema, stream.boxed()))
    }

    /// Reads a whole scan into memory (convenience for small tables and tests).
    pub async fn scan_all(&self, options: ScanOptions) -> Result<Vec<RecordBatch>> {
        use futures::TryStreamExt;
        let (_, stream) = self.scan(options)?;
        stream.try_collect().await
    }

    /// Rows at `addresses` in the order given (repeats allowed).
    pub async fn take(
        &self,
        addresses: &[u64],
        columns: Option<&[String]>,
        with_row_id: bool,
    ) -> Result<RecordBatch> {
        let manifest = self.manifest();
        let _lease = self.lease(manifest.version());
        scan::take(&self.inner, &manifest, addresses, columns, with_row_id).await
    }

    /// Row addresses of the rows at `positions` among the live rows of the checked-out
    /// version (0-based, in scan order), in the order given.
    pub async fn row_ids_at(&self, positions: &[u64]) -> Result<Vec<u64>> {
        let manifest = self.manifest();
        let mut starts = Vec::with_capacity(manifest.fragments().len());
        let mut total = 0u64;
        for f in manifest.fragments() {
            starts.push(total);
            total += f.live_rows();
        }
        let mut out = Vec::with_capacity(positions.len());
        for &position in positions {
            if position >= total {
                return Err(Error::RowNotFound(format!(
                    "offset {position} (the table has {total} rows)"
                )));
            }
            let index = starts.partition_point(|&s| s <= position) - 1;
            let fragment = &manifest.fragments()[index];
            let local = position - starts[index];
            let offset = match self.inner.deleted_rows(fragment).await? {
                None => local,
                Some(deleted) => {
                    // The smallest row x with exactly `local + 1` live rows in 0..=x.
                    let (mut lo, mut hi) = (local, fragment.physical_rows.saturating_sub(1));
                    while lo < hi {
                        let mid = lo + (hi - lo) / 2;
                        let live = mid + 1 - deleted.rank(mid as u32);
                        if live > local {
                            hi = mid;
                        } else {
                            lo = mid + 1;
                        }
                    }
                    lo
                }
            };
            out.push(row_address(fragment.id, offset));
        }
        Ok(out)
    }

    /// I/O done through this table's store so far.
    pub fn io_stats(&self) -> IoSnapshot {
        self.inner.storage.io_stats()
    }
}
