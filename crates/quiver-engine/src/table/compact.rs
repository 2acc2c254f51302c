//! Compaction: rewriting small fragments, fragments with many deleted rows, fragments holding
//! bytes of dropped columns and fragments split over several data files (left by schema
//! changes) into fewer, fuller fragments of one file each.
//!
//! Planning packs runs of adjacent candidate fragments into bins of at most the target rows
//! and bytes (adjacent so the table's row order is kept); fragments covered by different sets
//! of indexes never share a bin, so an index's coverage stays whole. Each bin is rewritten
//! (bins in parallel), and one commit of kind `compact` swaps every bin's old fragments for
//! its new ones in place, with an address map (see `remap`) so indexes keep working untouched.
//!
//! What commutes: appends and index changes never conflict with a compaction; rows a
//! concurrent delete or update removed from a bin's fragments after the compaction read them
//! are deleted again in the new fragments (the deletion moves); a concurrent compaction of
//! the same fragments, a schema change, an overwrite or a restore make it re-plan and retry.

use std::collections::HashSet;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use roaring::RoaringBitmap;

use super::commit::{commit, CompactGroup, Operation};
use super::manifest::{FragmentProto, Manifest};
use super::remap::{self, OldFragment, RemapGroup};
use super::scan::ScanOptions;
use super::write::{self, NewFragment, WriteParams};
use super::Table;
use crate::error::{Error, Result};
use crate::vocab::{BuildProgress, ProgressFn};

/// Default rows per compacted fragment (LanceDB's `targetRowsPerFragment`).
pub const DEFAULT_TARGET_ROWS_PER_FRAGMENT: u64 = 1 << 20;
/// Default bytes per compacted fragment.
pub const DEFAULT_MAX_BYTES_PER_FRAGMENT: u64 = 2 << 30;
/// Default share of deleted rows above which a fragment is rewritten without them.
pub const DEFAULT_MATERIALIZE_DELETIONS_THRESHOLD: f64 = 0.1;
/// In tiered planning, a fragment is rewritten together with others only when they hold at
/// least 1/`TIER_RATIO` of its rows: each row is then rewritten O(log n) times as a table
/// grows by small appends, instead of once per compaction.
pub const TIER_RATIO: u64 = 8;
/// Bins holding less than this are merged whole even in tiered planning: rewriting them
/// costs milliseconds, and a small table then stays one fragment.
pub const TIER_MIN_BYTES: u64 = 4 << 20;

/// What [`Table::compact_files`] rewrites.
#[derive(Clone)]
pub struct CompactionOptions {
    /// Rows per new fragment; fragments with fewer live rows are candidates.
    pub target_rows_per_fragment: u64,
    /// Bytes per new fragment (about); fragments smaller than this are candidates.
    pub max_bytes_per_fragment: u64,
    /// Rewrite fragments whose deleted share reaches the threshold without the deleted rows.
    pub materialize_deletions: bool,
    pub materialize_deletions_threshold: f64,
    /// Size-tiered planning (automatic maintenance): leave a large fragment alone unless the
    /// rows merged into it are at least 1/[`TIER_RATIO`] of it.
    pub tiered: bool,
    /// Bins rewritten at once (default: the machine's cores).
    pub num_threads: Option<usize>,
    pub progress: Option<ProgressFn>,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            target_rows_per_fragment: DEFAULT_TARGET_ROWS_PER_FRAGMENT,
            max_bytes_per_fragment: DEFAULT_MAX_BYTES_PER_FRAGMENT,
            materialize_deletions: true,
            materialize_deletions_threshold: DEFAULT_MATERIALIZE_DELETIONS_THRESHOLD,
            tiered: false,
            num_threads: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for CompactionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactionOptions")
            .field("target_rows_per_fragment", &self.target_rows_per_fragment)
            .field("max_bytes_per_fragment", &self.max_bytes_per_fragment)
            .field("materialize_deletions", &self.materialize_deletions)
            .field(
                "materialize_deletions_threshold",
                &self.materialize_deletions_threshold,
            )
            .field("tiered", &self.tiered)
            .finish()
    }
}

impl CompactionOptions {
    fn check(&self) -> Result<()> {
        if self.target_rows_per_fragment == 0 || self.target_rows_per_fragment > u32::MAX as u64 {
            return Err(Error::invalid(
                "targetRowsPerFragment must be between 1 and 2^32 - 1",
            ));
        }
        if self.max_bytes_per_fragment == 0 {
            return Err(Error::invalid("maxBytesPerFragment must be positive"));
        }
        if !(0.0..=1.0).contains(&self.materialize_deletions_threshold) {
            return Err(Error::invalid(
                "materializeDeletionsThreshold must be between 0 and 1",
            ));
        }
        if self.num_threads == Some(0) {
            return Err(Error::invalid("numThreads must be at least 1"));
        }
        Ok(())
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactionMetrics {
    pub fragments_removed: u64,
    pub fragments_added: u64,
    /// Data and deletion files no longer referenced by the new version.
    pub files_removed: u64,
    /// Data and deletion files the new version references that the old did not.
    pub files_added: u64,
    /// Live rows rewritten.
    pub rows_rewritten: u64,
    /// The version committed (the current one when nothing needed compacting).
    pub version: u64,
}

/// Why a fragment would be rewritten even alone.
fn needs_rewrite(f: &FragmentProto, schema_ids: &[i32], options: &CompactionOptions) -> bool {
    let deleted = f.physical_rows - f.live_rows();
    f.files.len() > 1
        || f.files
            .iter()
            .any(|d| d.field_ids.iter().any(|id| !schema_ids.contains(id)))
        || (options.materialize_deletions
            && deleted > 0
            && deleted as f64 >= options.materialize_deletions_threshold * f.physical_rows as f64)
}

fn data_bytes(f: &FragmentProto) -> u64 {
    f.files
        .iter()
        .map(|d| d.size_bytes)
        .fold(0, u64::saturating_add)
}

/// Bytes of the live rows (the file sizes scaled by the live share).
fn live_bytes(f: &FragmentProto) -> u64 {
    if f.physical_rows == 0 {
        return 0;
    }
    (data_bytes(f) as u128 * f.live_rows() as u128 / f.physical_rows as u128) as u64
}

/// The bins to rewrite: positions of adjacent fragments in `manifest`.
pub(crate) fn plan(manifest: &Manifest, options: &CompactionOptions) -> Vec<Vec<usize>> {
    let fragments = manifest.fragments();
    let schema_ids = &manifest.schema.field_ids;
    // Which indexes answer for each fragment: bins never mix fragments of different sets.
    let coverages: Vec<HashSet<u64>> = manifest
        .proto
        .indices
        .iter()
        .map(|i| remap::coverage(&manifest.proto, &i.fragment_ids).fragments)
        .collect();
    let signature =
        |f: &FragmentProto| -> Vec<bool> { coverages.iter().map(|c| c.contains(&f.id)).collect() };
    let candidate = |f: &FragmentProto| {
        (f.live_rows() < options.target_rows_per_fragment
            && live_bytes(f) < options.max_bytes_per_fragment)
            || needs_rewrite(f, schema_ids, options)
    };
    let mut bins = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let (mut rows, mut bytes) = (0u64, 0u64);
    let mut current_signature = Vec::new();
    let mut flush = |bin: &mut Vec<usize>| {
        let bin = std::mem::take(bin);
        let bin_bytes: u64 = bin.iter().map(|&i| live_bytes(&fragments[i])).sum();
        let bin = if options.tiered && bin_bytes > TIER_MIN_BYTES {
            tier(bin, fragments, schema_ids, options)
        } else {
            bin
        };
        if bin.len() >= 2
            || (bin.len() == 1 && needs_rewrite(&fragments[bin[0]], schema_ids, options))
        {
            bins.push(bin);
        }
    };
    for (i, f) in fragments.iter().enumerate() {
        if !candidate(f) {
            flush(&mut current);
            continue;
        }
        let sig = signature(f);
        let (r, b) = (f.live_rows(), live_bytes(f));
        if !current.is_empty()
            && (sig != current_signature
                || rows + r > options.target_rows_per_fragment
                || bytes.saturating_add(b) > options.max_bytes_per_fragment)
        {
            flush(&mut current);
        }
        if current.is_empty() {
            current_signature = sig;
            rows = 0;
            bytes = 0;
        }
        current.push(i);
        rows += r;
        bytes = bytes.saturating_add(b);
    }
    flush(&mut current);
    bins
}

/// Trims from either end of `bin` fragments far larger than the rest of it (and not needing a
/// rewrite of their own), so a big fragment is not rewritten for a few new rows.
fn tier(
    mut bin: Vec<usize>,
    fragments: &[FragmentProto],
    schema_ids: &[i32],
    options: &CompactionOptions,
) -> Vec<usize> {
    let too_big = |pos: usize, bin: &[usize]| {
        let f = &fragments[bin[pos]];
        let rest: u64 = bin
            .iter()
            .enumerate()
            .filter(|&(p, _)| p != pos)
            .map(|(_, &i)| fragments[i].live_rows())
            .sum();
        !needs_rewrite(f, schema_ids, options) && f.live_rows() > rest.saturating_mul(TIER_RATIO)
    };
    while bin.len() >= 2 {
        if too_big(0, &bin) {
            bin.remove(0);
        } else if too_big(bin.len() - 1, &bin) {
            bin.pop();
        } else {
            break;
        }
    }
    bin
}

/// A bin rewritten: the group to commit.
async fn rewrite(
    table: &Table,
    manifest: &Arc<Manifest>,
    bin: &[usize],
    params: &WriteParams,
    on_rows: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<CompactGroup> {
    let inner = table.inner();
    let mut old = Vec::with_capacity(bin.len());
    let mut live = 0u64;
    for &i in bin {
        let f = &manifest.fragments()[i];
        let dropped = match inner.deleted_rows(f).await? {
            Some(d) => d,
            None => Arc::new(RoaringBitmap::new()),
        };
        live += f.physical_rows - dropped.len();
        old.push(OldFragment {
            id: f.id,
            physical_rows: f.physical_rows,
            dropped,
        });
    }
    let ids: HashSet<u64> = old.iter().map(|o| o.id).collect();
    let (_, stream) = table.scan_manifest(
        manifest.with_fragments(|f| ids.contains(&f.id)),
        ScanOptions::default(),
    )?;
    let stream = stream
        .inspect_ok(move |batch| on_rows(batch.num_rows() as u64))
        .boxed();
    let new = write::write_fragments(&inner.storage, &manifest.schema, stream, params).await?;
    let written: u64 = new.iter().map(|f| f.physical_rows).sum();
    if written != live {
        delete_files(table, &new, None).await;
        return Err(Error::Internal(format!(
            "compaction read {written} rows from fragments holding {live} live rows"
        )));
    }
    Ok(CompactGroup {
        old,
        new,
        emptied: HashSet::new(),
    })
}

/// Best-effort removal of files a compaction wrote but did not commit.
async fn delete_files(table: &Table, fragments: &[NewFragment], remap: Option<&str>) {
    let storage = &table.inner().storage;
    for f in fragments {
        let _ = storage.delete(&storage.path(&f.file.path)).await;
    }
    if let Some(path) = remap {
        let _ = storage.delete(&storage.path(path)).await;
    }
}

impl Table {
    /// Rewrites small fragments, fragments with many deleted rows and fragments holding
    /// stale column data into fewer fragments of one file each, as one new version (kind
    /// `compact`). Indexes keep working without a rebuild. Re-plans and retries when a
    /// concurrent writer changed the fragments it rewrote.
    pub async fn compact_files(&self, options: CompactionOptions) -> Result<CompactionMetrics> {
        options.check()?;
        self.retry_on_conflict(
            super::write::deadline_after(super::write::DEFAULT_COMMIT_TIMEOUT),
            || self.compact_once(&options),
        )
        .await
    }

    async fn compact_once(&self, options: &CompactionOptions) -> Result<CompactionMetrics> {
        let read = self.writable_manifest()?;
        let bins = plan(&read, options);
        let mut metrics = CompactionMetrics {
            version: read.version(),
            ..Default::default()
        };
        if bins.is_empty() {
            return Ok(metrics);
        }
        let total: u64 = bins
            .iter()
            .flatten()
            .map(|&i| read.fragments()[i].live_rows())
            .sum();
        let progress = options.progress.clone();
        let report = move |phase: &'static str, done: u64, total: u64| {
            if let Some(p) = &progress {
                p(BuildProgress { phase, done, total });
            }
        };
        report("rewrite", 0, total);
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let params = WriteParams {
            max_rows_per_file: options.target_rows_per_fragment,
            max_bytes_per_file: options.max_bytes_per_fragment,
            ..WriteParams::default()
        };
        let threads = options.num_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        let results: Vec<Result<CompactGroup>> = futures::stream::iter(bins.clone())
            .map(|bin| {
                let (table, read, params, done) =
                    (self.clone(), read.clone(), params.clone(), done.clone());
                let report = report.clone();
                tokio::spawn(async move {
                    let on_rows = Arc::new(move |n: u64| {
                        let now = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                        report("rewrite", now.min(total), total);
                    });
                    rewrite(&table, &read, &bin, &params, on_rows).await
                })
            })
            .buffered(threads)
            .map(|joined| {
                joined.unwrap_or_else(|e| {
                    Err(Error::Internal(format!("compaction task failed: {e}")))
                })
            })
            .collect()
            .await;
        let mut groups = Vec::with_capacity(results.len());
        let mut failure = None;
        for r in results {
            match r {
                Ok(g) => groups.push(g),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        let written: Vec<NewFragment> = groups.iter().flat_map(|g| g.new.clone()).collect();
        if let Some(e) = failure {
            delete_files(self, &written, None).await;
            return Err(e);
        }
        let remap_groups: Vec<RemapGroup> = groups.iter().map(CompactGroup::layout).collect();
        // Written even when the table has no index yet: an index build that read the table
        // before this compaction may commit before or after it, and translates through this
        // map either way (after it, by carrying the entry over from this version's manifest:
        // `remap::carry`).
        let remap = match remap::write_remap_file(self.inner(), &remap_groups).await {
            Ok(written_map) => written_map,
            Err(e) => {
                delete_files(self, &written, None).await;
                return Err(e);
            }
        };
        report("commit", 0, 1);
        let committed = commit(
            self.inner(),
            Some(read.clone()),
            Operation::Compact {
                groups,
                remap: remap.clone(),
            },
            super::write::deadline_after(WriteParams::default().commit_timeout),
        )
        .await;
        let manifest = match committed {
            Ok(m) => m,
            Err(e) => {
                delete_files(self, &written, Some(remap.0.as_str())).await;
                return Err(e);
            }
        };
        if let Some(txn) = &manifest.proto.transaction {
            // Groups another compaction took first, and new fragments whose rows were all
            // deleted meanwhile, did not join the table.
            let removed: HashSet<u64> = txn.removed_fragment_ids.iter().copied().collect();
            for f in bins.iter().flatten().map(|&i| &read.fragments()[i]) {
                if removed.contains(&f.id) {
                    metrics.fragments_removed += 1;
                    metrics.files_removed += f.files.len() as u64 + u64::from(f.deletion.is_some());
                    metrics.rows_rewritten += f.live_rows();
                }
            }
            let added: HashSet<u64> = txn.added_fragment_ids.iter().copied().collect();
            let mut kept = HashSet::new();
            for f in manifest
                .fragments()
                .iter()
                .filter(|f| added.contains(&f.id))
            {
                metrics.fragments_added += 1;
                metrics.files_added += f.files.len() as u64 + u64::from(f.deletion.is_some());
                kept.extend(f.files.iter().map(|file| file.path.as_str()));
            }
            let unused: Vec<NewFragment> = written
                .iter()
                .filter(|f| !kept.contains(f.file.path.as_str()))
                .cloned()
                .collect();
            delete_files(self, &unused, None).await;
        }
        metrics.version = manifest.version();
        self.committed(manifest);
        report("commit", 1, 1);
        Ok(metrics)
    }
}
