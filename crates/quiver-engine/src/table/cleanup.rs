//! Cleanup: removing old versions and every file no kept version references.
//!
//! A version is kept when it is the latest, when a tag names it, or when it was superseded
//! (the next version was committed) at or after the cutoff. Measuring age from the moment a
//! version stopped being the latest, not from its own commit, means a reader that read the
//! latest version keeps working for at least the retention after a newer one appears. Files
//! (data, deletion vectors, indexes, compaction maps, staging leftovers) referenced by no kept
//! version are removed when a removed version referenced them (they were committed, so no
//! write is still producing them) or when they are older than [`UNVERIFIED_GRACE`] (data of a
//! write that failed or crashed); younger unreferenced files may belong to a write in flight
//! and stay unless `delete_unverified` is set.
//!
//! Order makes a crash harmless: manifests of removed versions go first, oldest first, then
//! the files; a crash leaves at worst unreferenced files, which the next cleanup removes. No
//! file a kept version references is ever deleted.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};

use super::manifest::{
    parse_manifest_name, Manifest, DATA_DIR, DELETIONS_DIR, INDICES_DIR, REMAPS_DIR, TOMBSTONE,
    VERSIONS_DIR,
};
use super::Table;
use crate::error::{Error, Result};
use crate::vocab::{BuildProgress, ProgressFn};

/// Default retention: versions superseded more than 7 days ago are removed (as LanceDB).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Unreferenced files younger than this may belong to a write in flight and are kept unless
/// `delete_unverified` is set.
pub const UNVERIFIED_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Manifests read at once.
const READ_CONCURRENCY: usize = 8;

/// What [`Table::cleanup_old_versions`] removes.
#[derive(Clone, Default)]
pub struct CleanupOptions {
    /// Remove versions superseded before this instant (default: now minus
    /// [`DEFAULT_RETENTION`]).
    pub before: Option<SystemTime>,
    /// Also remove unreferenced files younger than [`UNVERIFIED_GRACE`]. Only safe when no
    /// other write to the table is in progress.
    pub delete_unverified: bool,
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for CleanupOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CleanupOptions")
            .field("before", &self.before)
            .field("delete_unverified", &self.delete_unverified)
            .finish()
    }
}

/// What a cleanup removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanupStats {
    pub bytes_removed: u64,
    pub old_versions_removed: u64,
    /// Files other than manifests.
    pub files_removed: u64,
}

/// Microseconds since the Unix epoch (negative before it).
pub fn micros(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// The key a file is referenced by: its path, or `_indices/<uuid>` for index files.
fn reference_key(relative: &str) -> &str {
    if let Some(rest) = relative
        .strip_prefix(INDICES_DIR)
        .and_then(|r| r.strip_prefix('/'))
    {
        let end = rest
            .find('/')
            .map_or(relative.len(), |i| INDICES_DIR.len() + 1 + i);
        return &relative[..end];
    }
    relative
}

/// Every file key `manifest` references.
fn references(manifest: &Manifest) -> impl Iterator<Item = String> + '_ {
    let p = &manifest.proto;
    let data = p.fragments.iter().flat_map(|f| {
        f.files
            .iter()
            .map(|d| d.path.clone())
            .chain(f.deletion.iter().map(|d| d.path.clone()))
    });
    let indices = p
        .indices
        .iter()
        .map(|i| format!("{INDICES_DIR}/{}", i.uuid));
    let remaps = p.remaps.iter().map(|r| r.path.clone());
    data.chain(indices).chain(remaps)
}

/// Margin on comparisons of listing times with commit times and the cutoffs: commit times
/// come from writers' clocks, listing times from the store's.
const CLOCK_MARGIN: Duration = Duration::from_secs(3600);

/// Whether the listings alone show that a cleanup would remove nothing: every entry of the
/// versions folder but the oldest manifest was written after the cutoff (so no version was
/// superseded before it), and no file is old enough to go unverified. Reading every manifest
/// (one per commit, so hundreds of thousands on a table fed row by row) is then skipped.
fn nothing_to_remove(
    versions: &[object_store::ObjectMeta],
    files: &[object_store::ObjectMeta],
    cutoff: i64,
    grace_cutoff: SystemTime,
) -> bool {
    let margin = CLOCK_MARGIN.as_micros() as i64;
    let oldest = versions
        .iter()
        .filter(|m| m.size != TOMBSTONE.len() as u64)
        .filter_map(|m| m.location.filename().and_then(parse_manifest_name))
        .min();
    let versions_young = versions.iter().all(|m| {
        let version = m.location.filename().and_then(parse_manifest_name);
        (version.is_some() && version == oldest && m.size != TOMBSTONE.len() as u64)
            || micros(SystemTime::from(m.last_modified)) >= cutoff.saturating_add(margin)
    });
    let files_young = files
        .iter()
        .all(|m| SystemTime::from(m.last_modified) >= grace_cutoff + CLOCK_MARGIN);
    versions_young && files_young
}

/// Facts about one listed version.
struct VersionFacts {
    version: u64,
    /// `None` when the manifest could not be read (damaged): it references nothing we can
    /// know, so it can only be removed.
    timestamp_micros: Option<i64>,
    refs: Vec<u32>,
    manifest_bytes: u64,
}

impl Table {
    /// Removes versions superseded before `options.before` (except the latest and tagged
    /// ones) and every file no kept version references.
    pub async fn cleanup_old_versions(&self, options: CleanupOptions) -> Result<CleanupStats> {
        let now = SystemTime::now();
        let cutoff = micros(options.before.unwrap_or_else(|| {
            now.checked_sub(DEFAULT_RETENTION)
                .unwrap_or(SystemTime::UNIX_EPOCH)
        }));
        let grace_cutoff = now
            .checked_sub(UNVERIFIED_GRACE)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let report = |phase: &'static str, done: u64, total: u64| {
            if let Some(p) = &options.progress {
                p(BuildProgress { phase, done, total });
            }
        };
        let inner = self.inner.clone();
        let storage = &inner.storage;
        let listing = storage.list(&storage.path(VERSIONS_DIR)).await?;
        let mut manifests: Vec<(u64, u64)> = Vec::new();
        let mut tombstones: Vec<u64> = Vec::new();
        let mut strays = Vec::new();
        for meta in &listing {
            match meta.location.filename().and_then(parse_manifest_name) {
                Some(v) if meta.size == TOMBSTONE.len() as u64 => tombstones.push(v),
                Some(v) => manifests.push((v, meta.size)),
                None => strays.push(meta.clone()),
            }
        }
        manifests.sort_unstable();
        let Some(&(latest, _)) = manifests.last() else {
            return Err(Error::TableNotFound(inner.name.clone()));
        };
        // The other files, listed after the versions: one written since is unknown here and
        // stays.
        let mut files = strays;
        for dir in [DATA_DIR, DELETIONS_DIR, INDICES_DIR, REMAPS_DIR] {
            files.extend(storage.list(&storage.path(dir)).await?);
        }
        if !options.delete_unverified && nothing_to_remove(&listing, &files, cutoff, grace_cutoff) {
            return Ok(CleanupStats::default());
        }
        // Read every manifest once, without filling the cache, interning referenced paths.
        let total = manifests.len() as u64;
        report("read_versions", 0, total);
        let mut interned: HashMap<String, u32> = HashMap::new();
        let mut names: Vec<String> = Vec::new();
        let mut facts: Vec<VersionFacts> = Vec::with_capacity(manifests.len());
        let mut reads = futures::stream::iter(manifests.iter().copied())
            .map(|(version, size)| {
                let store = inner.manifests.clone();
                async move { (version, size, store.read(version).await) }
            })
            .buffered(READ_CONCURRENCY);
        while let Some((version, size, read)) = reads.next().await {
            let manifest = match read {
                // Found damaged when the table was opened (its files are not all there).
                Ok(Some(_)) if inner.is_damaged(version) => None,
                Ok(Some((m, _))) => Some(m),
                // Removed meanwhile by another cleanup.
                Ok(None) => continue,
                Err(Error::Corrupt { .. }) | Err(Error::IncompatibleVersion { .. }) => None,
                Err(e) => return Err(e),
            };
            let mut refs = Vec::new();
            if let Some(m) = &manifest {
                for key in references(m) {
                    let next = names.len() as u32;
                    let id = *interned.entry(key.clone()).or_insert_with(|| {
                        names.push(key);
                        next
                    });
                    refs.push(id);
                }
            }
            facts.push(VersionFacts {
                version,
                timestamp_micros: manifest.map(|m| m.proto.timestamp_micros),
                refs,
                manifest_bytes: size,
            });
            report("read_versions", facts.len() as u64, total);
        }
        drop(reads);
        // Tags last, so a tag created while the manifests were read is still honoured.
        let tagged: HashSet<u64> = self.list_tags().await?.iter().map(|t| t.version).collect();
        // Versions operations of this connection are reading right now stay too.
        let leased = inner.session.leased(inner.storage.uri());
        let mut keep = vec![true; facts.len()];
        for i in 0..facts.len() {
            let v = facts[i].version;
            if v == latest || tagged.contains(&v) || leased.contains(&v) {
                continue;
            }
            // Superseded when the next readable version was committed.
            let superseded = facts[i + 1..].iter().find_map(|f| f.timestamp_micros);
            if superseded.is_some_and(|t| t < cutoff) {
                keep[i] = false;
            }
        }
        let mut kept_refs = vec![false; names.len()];
        let mut verified = vec![false; names.len()];
        for (f, &k) in facts.iter().zip(&keep) {
            let marks = if k { &mut kept_refs } else { &mut verified };
            for &r in &f.refs {
                marks[r as usize] = true;
            }
        }
        let mut doomed = Vec::new();
        for meta in files {
            let Some(relative) = storage.relative(&meta.location) else {
                continue;
            };
            let id = interned.get(reference_key(&relative)).map(|&i| i as usize);
            if id.is_some_and(|i| kept_refs[i]) {
                continue;
            }
            let committed = id.is_some_and(|i| verified[i]);
            let unverified_ok =
                options.delete_unverified || SystemTime::from(meta.last_modified) < grace_cutoff;
            if committed || unverified_ok {
                doomed.push((meta, committed));
            }
        }
        let removed: Vec<&VersionFacts> = facts
            .iter()
            .zip(&keep)
            .filter(|(_, &k)| !k)
            .map(|(f, _)| f)
            .collect();
        let mut stats = CleanupStats::default();
        // Whatever commits' durability, the versions kept must be on disk before anything
        // older goes: else a power cut could leave only removed versions' manifests.
        if storage.durability() == crate::storage::Durability::Process
            && !(removed.is_empty() && doomed.is_empty())
        {
            storage.flush_all().await?;
        }
        let total = (removed.len() + doomed.len()) as u64;
        report("delete", 0, total);
        // Oldest first; a version whose predecessor stays is buried, not removed, so its
        // number can never be published again by a writer that read the predecessor.
        let kept_live: HashSet<u64> = facts
            .iter()
            .zip(&keep)
            .filter(|(f, &k)| k && f.timestamp_micros.is_some())
            .map(|(f, _)| f.version)
            .collect();
        let mut actions: Vec<(u64, Option<u64>)> = removed
            .iter()
            .map(|f| (f.version, Some(f.manifest_bytes)))
            .chain(tombstones.iter().map(|&v| (v, None)))
            .collect();
        actions.sort_unstable_by_key(|a| a.0);
        for (version, bytes) in actions {
            let predecessor_stays = version > 1 && kept_live.contains(&(version - 1));
            match bytes {
                Some(bytes) => {
                    if predecessor_stays {
                        inner.manifests.bury(version).await?;
                        stats.bytes_removed += bytes.saturating_sub(TOMBSTONE.len() as u64);
                    } else {
                        inner.manifests.remove(version).await?;
                        stats.bytes_removed += bytes;
                    }
                    stats.old_versions_removed += 1;
                    report("delete", stats.old_versions_removed, total);
                }
                None if !predecessor_stays => inner.manifests.remove(version).await?,
                None => {}
            }
        }
        // Manifests go (durably) before the files they reference: a manifest that came back
        // after a power cut would name missing files.
        let touched: Vec<_> = facts
            .iter()
            .zip(&keep)
            .filter(|(_, &k)| !k)
            .map(|(f, _)| inner.manifests.path_of(f.version))
            .chain(tombstones.iter().map(|&v| inner.manifests.path_of(v)))
            .collect();
        storage.flush(&touched).await?;
        let deleted: Vec<u64> = futures::stream::iter(doomed)
            .map(|(meta, committed)| async move {
                let deleted = if committed {
                    storage.delete(&meta.location).await
                } else {
                    storage.delete_unverified(&meta.location).await
                };
                deleted.or_else(ignore_missing)?;
                Ok::<_, Error>(meta.size)
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        stats.files_removed = deleted.len() as u64;
        stats.bytes_removed += deleted.iter().sum::<u64>();
        report("delete", total, total);
        Ok(stats)
    }
}

fn ignore_missing(e: Error) -> Result<()> {
    match e {
        Error::Storage(object_store::Error::NotFound { .. }) => Ok(()),
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::reference_key;

    #[test]
    fn index_files_are_referenced_by_their_folder() {
        assert_eq!(reference_key("_indices/abc/index.qvi"), "_indices/abc");
        assert_eq!(reference_key("_indices/abc"), "_indices/abc");
        assert_eq!(reference_key("data/x.qvd"), "data/x.qvd");
    }
}
