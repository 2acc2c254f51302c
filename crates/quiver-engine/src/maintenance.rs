//! Table maintenance: [`optimize`] (compaction, index refresh and cleanup in one call), the
//! advice behind `stats()`, and automatic maintenance, which schedules compaction and cleanup
//! in the background after writes.
//!
//! Automatic maintenance watches commits made through its connection. After a write it waits
//! for the writes to settle ([`MaintenanceOptions::quiet`], at most
//! [`MaintenanceOptions::max_delay`] after the first unsettled write), then in one background
//! task per table: compacts with size-tiered planning when small fragments pile up or a
//! fragment's deleted share crosses the threshold, and cleans up versions older than the
//! retention when the listing shows any. It is just another optimistic writer: it never holds
//! a lock, a user's write that races it wins or rebases, and its own conflicts are retried or
//! dropped until the next write. It stops when the connection closes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};
use crate::table::compact::{self, DEFAULT_MATERIALIZE_DELETIONS_THRESHOLD};
use crate::table::indices::{optimize_indices, OptimizeStats};
use crate::table::manifest::{parse_manifest_name, Manifest, VERSIONS_DIR};
use crate::table::session::CommitObserver;
use crate::table::{
    CleanupOptions, CleanupStats, CompactionMetrics, CompactionOptions, Table, TableInner,
};

/// What [`optimize`] does.
#[derive(Clone, Default, Debug)]
pub struct OptimizeOptions {
    pub compaction: CompactionOptions,
    pub cleanup: CleanupOptions,
}

/// What [`optimize`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OptimizeResult {
    pub compaction: CompactionMetrics,
    pub prune: CleanupStats,
    pub indexes: OptimizeStats,
    /// The version after the last step.
    pub version: u64,
}

/// Brings every index up to date (adding rows written since its build, dropping deleted
/// ones), compacts the table (indexes first, so new rows and indexed ones can share
/// fragments), then removes old versions and unreferenced files.
///
/// A cleanup cutoff at or after the newest commit before the call ("older than now") also
/// covers the version that was the latest then, which this call's own commits superseded:
/// only the call's result is left.
pub async fn optimize(table: &Table, options: OptimizeOptions) -> Result<OptimizeResult> {
    let latest_before = table.manifest().proto.timestamp_micros;
    let indexes = optimize_indices(table).await?;
    let compaction = table.compact_files(options.compaction).await?;
    let mut cleanup = options.cleanup;
    // Compared in milliseconds: a JavaScript Date taken just after the last commit may fall
    // in the same millisecond.
    if let Some(before) = cleanup
        .before
        .filter(|&b| crate::table::cleanup::micros(b) / 1000 >= latest_before / 1000)
    {
        cleanup.before = Some(before.max(SystemTime::now() + Duration::from_millis(1)));
    }
    let prune = table.cleanup_old_versions(cleanup).await?;
    Ok(OptimizeResult {
        compaction,
        prune,
        indexes,
        version: table.version(),
    })
}

/// Fragments by live rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SizeClasses {
    /// Under 1,024 rows.
    pub tiny: u64,
    /// 1,024 to 64 Ki rows.
    pub small: u64,
    /// 64 Ki to 1 Mi rows.
    pub medium: u64,
    /// 1 Mi rows or more.
    pub large: u64,
}

/// Whether maintenance would help a table, and why.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MaintenanceAdvice {
    pub size_classes: SizeClasses,
    /// Fragments below the default compaction target.
    pub small_fragments: u64,
    /// Fragments a default compaction would rewrite.
    pub compactable_fragments: u64,
    /// Versions stored (listed manifests).
    pub versions: u64,
    /// Versions a default cleanup would remove (superseded more than the retention ago).
    pub versions_past_retention: u64,
    /// Live rows no index covers, over all indexes.
    pub unindexed_rows: u64,
    /// Human-readable reasons; empty when nothing is advised.
    pub reasons: Vec<String>,
}

impl MaintenanceAdvice {
    pub fn advised(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// Version numbers and the time each stopped being the latest, from one listing (the next
/// manifest's modification time), oldest first.
async fn superseded_times(inner: &TableInner) -> Result<Vec<(u64, Option<SystemTime>)>> {
    let storage = &inner.storage;
    let mut listed: Vec<(u64, SystemTime)> = storage
        .list(&storage.path(VERSIONS_DIR))
        .await?
        .into_iter()
        .filter(|m| m.size != crate::table::manifest::TOMBSTONE.len() as u64)
        .filter_map(|m| {
            let v = m.location.filename().and_then(parse_manifest_name)?;
            Some((v, SystemTime::from(m.last_modified)))
        })
        .collect();
    listed.sort_unstable_by_key(|(v, _)| *v);
    Ok((0..listed.len())
        .map(|i| (listed[i].0, listed.get(i + 1).map(|(_, t)| *t)))
        .collect())
}

/// How many listed versions were superseded before `cutoff` (tags not considered: a cheap
/// upper bound).
async fn versions_past(inner: &TableInner, cutoff: SystemTime) -> Result<(u64, u64)> {
    let times = superseded_times(inner).await?;
    let past = times
        .iter()
        .filter(|(_, t)| t.is_some_and(|t| t < cutoff))
        .count() as u64;
    Ok((times.len() as u64, past))
}

/// Advice for the table's checked-out version.
pub async fn advise(table: &Table) -> Result<MaintenanceAdvice> {
    let manifest = table.manifest();
    let mut advice = MaintenanceAdvice::default();
    let target = compact::DEFAULT_TARGET_ROWS_PER_FRAGMENT;
    for f in manifest.fragments() {
        let rows = f.live_rows();
        match rows {
            0..1_024 => advice.size_classes.tiny += 1,
            1_024..65_536 => advice.size_classes.small += 1,
            65_536..1_048_576 => advice.size_classes.medium += 1,
            _ => advice.size_classes.large += 1,
        }
        if rows < target {
            advice.small_fragments += 1;
        }
    }
    let bins = compact::plan(&manifest, &CompactionOptions::default());
    advice.compactable_fragments = bins.iter().map(|b| b.len() as u64).sum();
    let cutoff = SystemTime::now()
        .checked_sub(crate::table::cleanup::DEFAULT_RETENTION)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let (versions, past) = versions_past(table.inner(), cutoff).await?;
    advice.versions = versions;
    advice.versions_past_retention = past;
    for index in crate::table::indices::list_indices(table)? {
        advice.unindexed_rows += index.num_unindexed_rows;
    }
    if advice.compactable_fragments >= 2 {
        advice.reasons.push(format!(
            "compaction would merge {} fragments into {} or fewer",
            advice.compactable_fragments,
            bins.len().max(1)
        ));
    } else if advice.compactable_fragments == 1 {
        advice
            .reasons
            .push("a fragment holds many deleted rows or stale column data".into());
    }
    if past > 0 {
        advice.reasons.push(format!(
            "{past} versions are older than the retention and can be cleaned up"
        ));
    }
    if advice.unindexed_rows > 0 {
        advice.reasons.push(format!(
            "{} rows are not in an index yet (searched exactly until optimize)",
            advice.unindexed_rows
        ));
    }
    Ok(advice)
}

/// One thing automatic maintenance did (or failed to do).
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceEvent {
    pub table: String,
    /// `compaction`, `index` (indexes brought up to date), `cleanup` or `error`.
    pub kind: &'static str,
    pub compaction: Option<CompactionMetrics>,
    pub cleanup: Option<CleanupStats>,
    pub error: Option<String>,
    /// The table's version after it.
    pub version: u64,
}

pub type MaintenanceListener = Arc<dyn Fn(MaintenanceEvent) + Send + Sync>;

/// Settings of automatic maintenance (a connection option).
#[derive(Clone)]
pub struct MaintenanceOptions {
    pub enabled: bool,
    /// Compact while writes continue once this many fragments are small; once writes settle,
    /// two are enough.
    pub small_fragments: usize,
    /// Compact when a fragment's deleted share reaches this.
    pub deleted_share: f64,
    /// Clean up versions superseded longer ago than this (and their files).
    pub retention: Duration,
    /// Writes this close together are maintained together.
    pub quiet: Duration,
    /// A write is never left unmaintained longer than this while writes continue.
    pub max_delay: Duration,
    /// Rows per compacted fragment.
    pub target_rows_per_fragment: u64,
    pub listener: Option<MaintenanceListener>,
}

/// Address maps in a manifest at which automatic maintenance rewrites the indexes.
pub const REMAPS_BEFORE_INDEX_REFRESH: usize = 8;
/// Unindexed rows below which automatic maintenance leaves an index alone (searching them
/// exactly costs less than rewriting the index).
pub const MIN_UNINDEXED_ROWS: u64 = 1_000;

/// Versions past the retention that make a cleanup worth running while writes continue (once
/// they pause, one is enough).
pub const CLEANUP_BATCH: u64 = 64;

/// Default of [`MaintenanceOptions::small_fragments`].
pub const DEFAULT_SMALL_FRAGMENTS: usize = 8;
/// Default of [`MaintenanceOptions::quiet`].
pub const DEFAULT_QUIET: Duration = Duration::from_millis(250);
/// Default of [`MaintenanceOptions::max_delay`].
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(2);

impl Default for MaintenanceOptions {
    fn default() -> Self {
        MaintenanceOptions {
            enabled: true,
            small_fragments: DEFAULT_SMALL_FRAGMENTS,
            deleted_share: DEFAULT_MATERIALIZE_DELETIONS_THRESHOLD,
            retention: crate::table::cleanup::DEFAULT_RETENTION,
            quiet: DEFAULT_QUIET,
            max_delay: DEFAULT_MAX_DELAY,
            target_rows_per_fragment: compact::DEFAULT_TARGET_ROWS_PER_FRAGMENT,
            listener: None,
        }
    }
}

impl std::fmt::Debug for MaintenanceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaintenanceOptions")
            .field("enabled", &self.enabled)
            .field("small_fragments", &self.small_fragments)
            .field("deleted_share", &self.deleted_share)
            .field("retention", &self.retention)
            .field("quiet", &self.quiet)
            .field("max_delay", &self.max_delay)
            .field("target_rows_per_fragment", &self.target_rows_per_fragment)
            .finish()
    }
}

impl MaintenanceOptions {
    pub fn check(&self) -> Result<()> {
        if self.small_fragments < 2 {
            return Err(Error::invalid(
                "maintenance smallFragments must be at least 2",
            ));
        }
        if !(0.0..=1.0).contains(&self.deleted_share) || self.deleted_share == 0.0 {
            return Err(Error::invalid(
                "maintenance deletedShare must be above 0 and at most 1",
            ));
        }
        if self.target_rows_per_fragment == 0 || self.target_rows_per_fragment > u32::MAX as u64 {
            return Err(Error::invalid(
                "maintenance targetRowsPerFragment must be between 1 and 2^32 - 1",
            ));
        }
        Ok(())
    }
}

/// What automatic maintenance did for one table so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaintenanceActivity {
    pub rounds: u64,
    pub compactions: u64,
    pub cleanups: u64,
    pub index_refreshes: u64,
    pub errors: u64,
    /// A round is running or waiting for writes to settle.
    pub active: bool,
    /// Commit time of the last round's end, microseconds since the Unix epoch (0: none yet).
    pub last_round_micros: i64,
}

#[derive(Default)]
struct Slot {
    /// This table's own settings, replacing the connection's.
    settings: Option<MaintenanceOptions>,
    last_write: Option<Instant>,
    pending_since: Option<Instant>,
    running: bool,
    activity: MaintenanceActivity,
    task: Option<tokio::task::AbortHandle>,
    /// Wakes a task waiting for writes to settle when maintenance became due at once.
    wake: Arc<tokio::sync::Notify>,
    /// The newest version committed through this connection: a round starts from it
    /// instead of listing (a stale one only makes its commit rebase).
    latest: Option<Arc<Manifest>>,
    /// Commits since the last look for versions past the retention.
    commits_since_cleanup_check: u64,
    /// Bytes of data files compactions replaced since that look (garbage once the versions
    /// naming them pass the retention).
    replaced_bytes: u64,
}

impl Slot {
    /// Keeps the newer of two committed manifests (notifications may arrive out of order).
    fn remember(&mut self, manifest: &Arc<Manifest>) {
        if self
            .latest
            .as_ref()
            .is_none_or(|m| m.version() < manifest.version())
        {
            self.latest = Some(manifest.clone());
        }
    }
}

/// The background scheduler of one connection.
pub(crate) struct Maintainer {
    options: MaintenanceOptions,
    slots: Mutex<HashMap<String, Slot>>,
    closed: AtomicBool,
    me: Weak<Maintainer>,
    /// Rounds run on a runtime of their own (one worker thread, started on first use), so
    /// their CPU work never occupies the workers that run the user's calls.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl Drop for Maintainer {
    fn drop(&mut self) {
        let runtime = match self.runtime.get_mut() {
            Ok(r) => r.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        // Dropping a runtime may happen inside another runtime's task: never block there.
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }
}

impl Maintainer {
    pub(crate) fn new(options: MaintenanceOptions) -> Arc<Self> {
        Arc::new_cyclic(|me| Maintainer {
            options,
            slots: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            me: me.clone(),
            runtime: Mutex::new(None),
        })
    }

    /// A handle on the maintenance runtime, started on first use.
    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        let mut runtime = match self.runtime.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if runtime.is_none() {
            *runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .max_blocking_threads(2)
                .thread_name("quiver-maintenance")
                .enable_all()
                .build()
                .ok();
        }
        runtime.as_ref().map(|r| r.handle().clone())
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        match self.slots.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn emit(&self, o: &MaintenanceOptions, event: MaintenanceEvent) {
        if let Some(listener) = &o.listener {
            let listener = listener.clone();
            // A listener that panics must not take maintenance down with it.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| listener(event)));
        }
    }

    /// The settings in force for the table at `key`.
    fn settings(&self, key: &str) -> MaintenanceOptions {
        self.slots()
            .get(key)
            .and_then(|s| s.settings.clone())
            .unwrap_or_else(|| self.options.clone())
    }

    fn update(&self, key: &str, f: impl FnOnce(&mut Slot)) {
        if let Some(slot) = self.slots().get_mut(key) {
            f(slot);
        }
    }

    async fn run(self: Arc<Self>, inner: Arc<TableInner>, key: String) {
        loop {
            // Wait for the writes to settle, or for the longest delay.
            let settled = loop {
                if self.closed.load(Ordering::Acquire) {
                    return;
                }
                let (last, since, wake) = {
                    let slots = self.slots();
                    let slot = slots.get(&key);
                    (
                        slot.and_then(|s| s.last_write),
                        slot.and_then(|s| s.pending_since),
                        slot.map(|s| s.wake.clone()),
                    )
                };
                let (Some(last), Some(since)) = (last, since) else {
                    break true;
                };
                let now = Instant::now();
                let o = self.settings(&key);
                let quiet_at = last + o.quiet;
                let forced_at = since + o.max_delay;
                if now >= quiet_at {
                    break true;
                }
                if now >= forced_at {
                    break false;
                }
                let sleep = tokio::time::sleep(quiet_at.min(forced_at) - now);
                match wake {
                    Some(wake) => {
                        tokio::select! {
                            _ = sleep => {}
                            _ = wake.notified() => {}
                        }
                    }
                    None => sleep.await,
                }
            };
            self.update(&key, |s| s.pending_since = None);
            self.round(&inner, &key, settled).await;
            let done = {
                let mut slots = self.slots();
                match slots.get_mut(&key) {
                    Some(slot) if slot.pending_since.is_none() && settled => {
                        slot.running = false;
                        slot.activity.active = false;
                        slot.task = None;
                        true
                    }
                    // A round forced while writes continued: once they pause, one more round
                    // finishes the job.
                    Some(slot) => {
                        slot.pending_since.get_or_insert_with(Instant::now);
                        false
                    }
                    None => true,
                }
            };
            if done {
                return;
            }
        }
    }

    async fn round(&self, inner: &Arc<TableInner>, key: &str, settled: bool) {
        let o = self.settings(key);
        if !o.enabled {
            return;
        }
        let result = self.maintain(inner, key, settled, &o).await;
        self.update(key, |s| {
            s.activity.rounds += 1;
            s.activity.last_round_micros = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            if result.is_err() {
                s.activity.errors += 1;
            }
        });
        if let Err(e) = result {
            let version = inner
                .latest_manifest()
                .await
                .ok()
                .flatten()
                .map_or(0, |m| m.version());
            self.emit(
                &o,
                MaintenanceEvent {
                    table: inner.name.clone(),
                    kind: "error",
                    compaction: None,
                    cleanup: None,
                    error: Some(e.to_string()),
                    version,
                },
            );
        }
    }

    async fn maintain(
        &self,
        inner: &Arc<TableInner>,
        key: &str,
        settled: bool,
        o: &MaintenanceOptions,
    ) -> Result<()> {
        let known = self.slots().get(key).and_then(|s| s.latest.clone());
        let manifest = match known {
            Some(m) => m,
            None => match inner.latest_manifest().await? {
                Some(m) => m,
                None => return Ok(()),
            },
        };
        let table = Table::at_latest(inner.clone(), manifest.clone());
        if should_compact(o, &manifest, settled) {
            let options = CompactionOptions {
                target_rows_per_fragment: o.target_rows_per_fragment,
                materialize_deletions_threshold: o.deleted_share,
                tiered: true,
                // One bin at a time: the user's work keeps the other cores.
                num_threads: Some(1),
                ..Default::default()
            };
            match table.compact_files(options).await {
                Ok(m) if m.fragments_removed > 0 => {
                    let now: std::collections::HashSet<u64> =
                        table.manifest().fragments().iter().map(|f| f.id).collect();
                    let replaced: u64 = manifest
                        .fragments()
                        .iter()
                        .filter(|f| !now.contains(&f.id))
                        .flat_map(|f| f.files.iter().map(|d| d.size_bytes))
                        .sum();
                    self.update(key, |s| {
                        s.activity.compactions += 1;
                        s.replaced_bytes = s.replaced_bytes.saturating_add(replaced);
                    });
                    self.emit(
                        o,
                        MaintenanceEvent {
                            table: inner.name.clone(),
                            kind: "compaction",
                            compaction: Some(m),
                            cleanup: None,
                            error: None,
                            version: m.version,
                        },
                    );
                }
                Ok(_) => {}
                // Lost to a user's write: the next write schedules another round.
                Err(Error::CommitConflict(_)) | Err(Error::CommitTimeout { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if should_refresh_indexes(&table)? {
            match optimize_indices(&table).await {
                Ok(stats) if stats.indexes_optimized > 0 => {
                    self.update(key, |s| s.activity.index_refreshes += 1);
                    self.emit(
                        o,
                        MaintenanceEvent {
                            table: inner.name.clone(),
                            kind: "index",
                            compaction: None,
                            cleanup: None,
                            error: None,
                            version: stats.version,
                        },
                    );
                }
                Ok(_) => {}
                Err(Error::CommitConflict(_)) | Err(Error::CommitTimeout { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        // Looking for old versions costs a listing: once writes pause, every so many commits
        // while they continue, or when compactions replaced a fifth of the table's bytes
        // (whose files would otherwise pile up on disk).
        let table_bytes: u64 = table
            .manifest()
            .fragments()
            .iter()
            .flat_map(|f| f.files.iter().map(|d| d.size_bytes))
            .sum();
        let (commits, replaced) = self.slots().get(key).map_or((0, 0), |s| {
            (s.commits_since_cleanup_check, s.replaced_bytes)
        });
        let piling_up = replaced > 0 && replaced.saturating_mul(5) >= table_bytes;
        if !(settled || commits >= CLEANUP_BATCH || piling_up) {
            return Ok(());
        }
        self.update(key, |s| {
            s.commits_since_cleanup_check = 0;
            s.replaced_bytes = 0;
        });
        let cutoff = SystemTime::now()
            .checked_sub(o.retention)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let (_, past) = versions_past(inner, cutoff).await?;
        // While writes continue, cleanups are batched: each reads the manifests it removes.
        if past >= CLEANUP_BATCH || ((settled || piling_up) && past > 0) {
            let stats = table
                .cleanup_old_versions(CleanupOptions {
                    before: Some(cutoff),
                    ..Default::default()
                })
                .await?;
            self.update(key, |s| s.activity.cleanups += 1);
            self.emit(
                o,
                MaintenanceEvent {
                    table: inner.name.clone(),
                    kind: "cleanup",
                    compaction: None,
                    cleanup: Some(stats),
                    error: None,
                    version: table.version(),
                },
            );
        }
        Ok(())
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for slot in self.slots().values_mut() {
            if let Some(task) = slot.task.take() {
                task.abort();
            }
            slot.running = false;
            slot.activity.active = false;
            slot.latest = None;
        }
        let runtime = match self.runtime.lock() {
            Ok(mut g) => g.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(runtime) = runtime {
            runtime.shutdown_background();
        }
    }
}

/// Indexes are rewritten when the rows they miss reach a tenth of those they hold (so
/// each row is re-encoded O(1) times on average), or when compactions since their build
/// left [`REMAPS_BEFORE_INDEX_REFRESH`] address maps for every load to apply.
fn should_refresh_indexes(table: &Table) -> Result<bool> {
    let manifest = table.manifest();
    if manifest.proto.indices.is_empty() {
        return Ok(false);
    }
    let maps_walked = manifest.proto.indices.iter().any(|i| {
        let steps = crate::table::remap::coverage(&manifest.proto, &i.fragment_ids).steps;
        let distinct: std::collections::HashSet<usize> = steps.iter().map(|s| s.remap).collect();
        distinct.len() >= REMAPS_BEFORE_INDEX_REFRESH
    });
    if maps_walked {
        return Ok(true);
    }
    Ok(crate::table::indices::list_indices(table)?.iter().any(|i| {
        i.num_unindexed_rows >= MIN_UNINDEXED_ROWS
            && i.num_unindexed_rows.saturating_mul(10) >= i.num_indexed_rows
    }))
}

fn should_compact(o: &MaintenanceOptions, manifest: &Manifest, settled: bool) -> bool {
    let mut small = 0usize;
    for f in manifest.fragments() {
        let deleted = f.physical_rows - f.live_rows();
        if deleted > 0 && deleted as f64 >= o.deleted_share * f.physical_rows as f64 {
            return true;
        }
        if f.live_rows() < o.target_rows_per_fragment {
            small += 1;
        }
    }
    small >= o.small_fragments || (settled && small >= 2)
}

impl CommitObserver for Maintainer {
    fn committed(&self, inner: &Arc<TableInner>, manifest: &Arc<Manifest>) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if manifest.operation() == crate::table::COMPACT_OPERATION {
            // Maintenance's own work (or a user's compaction) schedules nothing.
            if let Some(slot) = self.slots().get_mut(inner.storage.uri()) {
                slot.remember(manifest);
            }
            return;
        }
        let key = inner.storage.uri().to_string();
        let now = Instant::now();
        let mut slots = self.slots();
        let slot = slots.entry(key.clone()).or_default();
        let settings = slot
            .settings
            .clone()
            .unwrap_or_else(|| self.options.clone());
        if !settings.enabled {
            return;
        }
        // Small fragments piling up: due now, without waiting for the writes to pause.
        let small = manifest
            .fragments()
            .iter()
            .filter(|f| f.live_rows() < settings.target_rows_per_fragment)
            .count();
        let due_now = small >= settings.small_fragments;
        slot.last_write = Some(now);
        slot.remember(manifest);
        slot.commits_since_cleanup_check += 1;
        let since = slot.pending_since.get_or_insert(now);
        if due_now {
            *since = now.checked_sub(settings.max_delay).unwrap_or(*since);
            slot.wake.notify_one();
        }
        slot.activity.active = true;
        if slot.running {
            return;
        }
        let (Some(me), Some(runtime)) = (self.me.upgrade(), self.runtime()) else {
            return;
        };
        slot.running = true;
        let task = runtime.spawn(me.run(inner.clone(), key));
        slot.task = Some(task.abort_handle());
    }

    fn activity(&self, inner: &TableInner) -> Option<MaintenanceActivity> {
        let slots = self.slots();
        let slot = slots.get(inner.storage.uri());
        let enabled = slot
            .and_then(|s| s.settings.as_ref())
            .unwrap_or(&self.options)
            .enabled;
        enabled.then(|| slot.map(|s| s.activity).unwrap_or_default())
    }

    fn configure(&self, inner: &TableInner, settings: Option<MaintenanceOptions>) {
        let mut slots = self.slots();
        let slot = slots.entry(inner.storage.uri().to_string()).or_default();
        slot.settings = settings;
    }

    fn close(&self) {
        Maintainer::close(self);
    }
}
