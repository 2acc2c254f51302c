//! Compaction address maps: how indexes built before a compaction find their rows after it.
//!
//! Compaction moves rows to new fragments, so their row addresses change. Rather than rewrite
//! every index in the compaction's commit (which would make compaction and index builds
//! conflict), the commit records which fragments each compaction group replaced
//! ([`FragmentRemapProto`] in the manifest) and, in a small file, which rows it dropped. An
//! index whose covered fragments a compaction replaced translates its addresses through the
//! map when it is loaded: the surviving rows of a group's old fragments, in order, are the
//! rows of its new fragments, in order.
//!
//! A group only part of whose old fragments an index covered (a build that raced an append
//! and a compaction) cannot be translated: the index forgets those rows and their new
//! fragments count as unindexed, so they are searched exactly until the index is optimized.
//! An entry stays in the manifest while some index needs it. One no index needs lives only in
//! the manifest of the compaction that wrote it: an index build that read the table before
//! the compaction finds it there when it rebases over that version, and carries it into its
//! own commit ([`carry`]). Keeping unused entries around instead would grow every manifest by
//! one entry per compaction for as long as they were kept, and a table compacted every few
//! seconds under steady writes would then rewrite (and every racing writer re-read) ever
//! larger manifests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use roaring::RoaringBitmap;

use super::manifest::{FragmentRemapProto, ManifestProto, REMAPS_DIR};
use super::scan::row_address;
use super::session::CachedEntry;
use super::TableInner;
use crate::error::{Error, Result};
use crate::format::{
    decode_bounded_message, encode_block, Shape, MAX_DECODED_BYTES, MAX_FILE_ROWS,
};

/// Largest map file a reader accepts.
const MAX_REMAP_FILE_BYTES: u64 = 256 << 20;

/// Address a translated row gets when the compaction dropped it (shared with the index layer,
/// whose loads translate through this module).
pub use crate::index::DROPPED_ROW;

#[derive(Clone, PartialEq, prost::Message)]
struct RemapOldProto {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(uint64, tag = "2")]
    physical_rows: u64,
    /// Portable roaring serialization of the rows the compaction did not carry over (those
    /// deleted when it read the fragment).
    #[prost(bytes = "vec", tag = "3")]
    dropped: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RemapFileGroupProto {
    #[prost(message, repeated, tag = "1")]
    old: Vec<RemapOldProto>,
    /// Rows of each new fragment, in order.
    #[prost(uint64, repeated, tag = "2")]
    new_rows: Vec<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RemapFileProto {
    #[prost(message, repeated, tag = "1")]
    groups: Vec<RemapFileGroupProto>,
}

static OLD_SHAPE: Shape = Shape {
    size: std::mem::size_of::<RemapOldProto>(),
    messages: &[],
    repeated: &[],
};
static GROUP_SHAPE: Shape = Shape {
    size: std::mem::size_of::<RemapFileGroupProto>(),
    messages: &[(1, &OLD_SHAPE)],
    repeated: &[2],
};
static FILE_SHAPE: Shape = Shape {
    size: std::mem::size_of::<RemapFileProto>(),
    messages: &[(1, &GROUP_SHAPE)],
    repeated: &[],
};

/// One old fragment of a group as the compaction read it.
#[derive(Debug, Clone)]
pub struct OldFragment {
    pub id: u64,
    pub physical_rows: u64,
    /// Rows deleted when the compaction read it (not carried over).
    pub dropped: Arc<RoaringBitmap>,
}

/// One compaction group: old fragments in order and the row counts of the new ones.
#[derive(Debug, Clone)]
pub struct RemapGroup {
    pub old: Vec<OldFragment>,
    pub new_rows: Vec<u64>,
}

/// Where a group's rows start, computed once per group so that locating a row costs a lookup
/// rather than a sum over the fragments before it.
#[derive(Debug, Clone)]
pub struct Positions {
    /// Output position of each old fragment's first carried row.
    old: Vec<u64>,
    /// Output position of each new fragment's first row.
    new: Vec<u64>,
}

impl RemapGroup {
    /// Where the `offset`-th row of the `index`-th old fragment went: the new fragment's
    /// position in the group and the row's offset in it, or `None` when it was dropped.
    pub fn locate(&self, index: usize, offset: u64, positions: &Positions) -> Option<(usize, u64)> {
        let old = &self.old[index];
        if offset >= old.physical_rows || old.dropped.contains(offset as u32) {
            return None;
        }
        // `rank` counts dropped rows at or below `offset`; the row itself is not dropped.
        let position = positions.old[index] + offset - old.dropped.rank(offset as u32);
        let starts = &positions.new;
        let k = starts.partition_point(|&s| s <= position).checked_sub(1)?;
        (k < self.new_rows.len()).then(|| (k, position - starts[k]))
    }

    pub fn positions(&self) -> Positions {
        Positions {
            old: running_starts(self.old.iter().map(|o| o.physical_rows - o.dropped.len())),
            new: running_starts(self.new_rows.iter().copied()),
        }
    }
}

fn running_starts(sizes: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut total = 0;
    sizes
        .map(|n| {
            let start = total;
            total += n;
            start
        })
        .collect()
}

/// Writes the map file of a compaction's groups; returns its relative path and size.
pub(crate) async fn write_remap_file(
    inner: &TableInner,
    groups: &[RemapGroup],
) -> Result<(String, u64)> {
    let mut proto = RemapFileProto::default();
    for g in groups {
        let mut old = Vec::with_capacity(g.old.len());
        for o in &g.old {
            let mut dropped = Vec::with_capacity(o.dropped.serialized_size());
            o.dropped
                .serialize_into(&mut dropped)
                .map_err(|e| Error::Internal(format!("serializing a compaction map: {e}")))?;
            old.push(RemapOldProto {
                id: o.id,
                physical_rows: o.physical_rows,
                dropped,
            });
        }
        proto.groups.push(RemapFileGroupProto {
            old,
            new_rows: g.new_rows.clone(),
        });
    }
    let bytes = Bytes::from(encode_block(prost::Message::encode_to_vec(&proto)));
    let size = bytes.len() as u64;
    let relative = format!("{REMAPS_DIR}/{}.remap", uuid::Uuid::new_v4().simple());
    inner
        .storage
        .put(&inner.storage.path(&relative), bytes)
        .await?;
    Ok((relative, size))
}

/// Reads the map file of `entry` (through the metadata cache), checked against the entry.
pub(crate) async fn read_remap(
    inner: &TableInner,
    entry: &FragmentRemapProto,
) -> Result<Arc<Vec<RemapGroup>>> {
    let key = inner.cache_key(&entry.path);
    if let Some(CachedEntry::Remap(groups)) = inner.session.get(&key) {
        return Ok(groups);
    }
    let path = inner.storage.path(&entry.path);
    let bad = |why: String| Error::corrupt(&path, format!("compaction map: {why}"));
    let (bytes, _) = inner
        .storage
        .read_all_at_most(&path, MAX_REMAP_FILE_BYTES, "compaction map")
        .await?;
    let mut budget = MAX_DECODED_BYTES;
    let proto: RemapFileProto =
        decode_bounded_message(&bytes, &path, "compaction map", &FILE_SHAPE, &mut budget)?;
    if proto.groups.len() != entry.groups.len() {
        return Err(bad(format!(
            "it holds {} groups, the manifest lists {}",
            proto.groups.len(),
            entry.groups.len()
        )));
    }
    let mut groups = Vec::with_capacity(proto.groups.len());
    for (g, listed) in proto.groups.into_iter().zip(&entry.groups) {
        let ids: Vec<u64> = g.old.iter().map(|o| o.id).collect();
        if ids != listed.old_fragment_ids || g.new_rows.len() != listed.new_fragment_ids.len() {
            return Err(bad("its groups differ from the manifest's".into()));
        }
        let mut old = Vec::with_capacity(g.old.len());
        let mut carried = 0u64;
        for o in g.old {
            let dropped = RoaringBitmap::deserialize_from(o.dropped.as_slice())
                .map_err(|e| bad(format!("a dropped-row set does not decode: {e}")))?;
            if o.physical_rows > MAX_FILE_ROWS
                || dropped
                    .max()
                    .is_some_and(|m| u64::from(m) >= o.physical_rows)
            {
                return Err(bad(format!("fragment {} has impossible row counts", o.id)));
            }
            carried += o.physical_rows - dropped.len();
            old.push(OldFragment {
                id: o.id,
                physical_rows: o.physical_rows,
                dropped: Arc::new(dropped),
            });
        }
        if g.new_rows.iter().sum::<u64>() != carried {
            return Err(bad(
                "its new fragments do not hold the rows its old ones carried over".into(),
            ));
        }
        groups.push(RemapGroup {
            old,
            new_rows: g.new_rows,
        });
    }
    let groups = Arc::new(groups);
    inner
        .session
        .insert(key, CachedEntry::Remap(groups.clone()));
    Ok(groups)
}

/// One group of one map an index goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Position of the map in the manifest's `remaps`.
    pub remap: usize,
    pub group: usize,
    /// The index covered every old fragment of the group: its rows move; otherwise they are
    /// forgotten.
    pub full: bool,
}

/// Which fragments of a version an index answers for, once the compactions since its build
/// are accounted for, and the map steps its addresses go through.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    pub fragments: HashSet<u64>,
    pub steps: Vec<Step>,
}

impl Coverage {
    /// Tells cached translated copies of one index file apart.
    pub fn cache_suffix(&self, manifest: &ManifestProto) -> String {
        self.steps
            .iter()
            .map(|s| {
                format!(
                    "#{}.{}{}",
                    manifest.remaps[s.remap].version,
                    s.group,
                    if s.full { 'm' } else { 'f' }
                )
            })
            .collect()
    }
}

/// The coverage of an index built over `fragment_ids`.
pub fn coverage(manifest: &ManifestProto, fragment_ids: &[u64]) -> Coverage {
    let mut fragments: HashSet<u64> = fragment_ids.iter().copied().collect();
    let mut steps = Vec::new();
    for (r, remap) in manifest.remaps.iter().enumerate() {
        for (g, group) in remap.groups.iter().enumerate() {
            let hit = group
                .old_fragment_ids
                .iter()
                .filter(|id| fragments.contains(id))
                .count();
            if hit == 0 {
                continue;
            }
            let full = hit == group.old_fragment_ids.len();
            for id in &group.old_fragment_ids {
                fragments.remove(id);
            }
            if full {
                fragments.extend(group.new_fragment_ids.iter().copied());
            }
            steps.push(Step {
                remap: r,
                group: g,
                full,
            });
        }
    }
    Coverage { fragments, steps }
}

/// Drops map entries no index needs, except the one `manifest`'s own compaction wrote (an index
/// build in flight finds it there; see [`carry`]).
pub fn prune(manifest: &mut ManifestProto) {
    if manifest.remaps.is_empty() {
        return;
    }
    let mut used = vec![false; manifest.remaps.len()];
    for index in &manifest.indices {
        for step in coverage(manifest, &index.fragment_ids).steps {
            used[step.remap] = true;
        }
    }
    let version = manifest.version;
    let mut i = 0;
    manifest.remaps.retain(|r| {
        let keep = used[i] || r.version == version;
        i += 1;
        keep
    });
}

/// Collects the map entries of compactions committed after `read_version` that `committed`
/// (a version an index change rebases over) lists and `carried` lacks.
pub fn carry(committed: &ManifestProto, read_version: u64, carried: &mut Vec<FragmentRemapProto>) {
    for entry in &committed.remaps {
        if entry.version > read_version && !carried.iter().any(|c| c.version == entry.version) {
            carried.push(entry.clone());
        }
    }
}

/// Adds to `manifest` the `carried` entries it no longer lists, keeping the maps in commit
/// order (coverage walks them oldest first); [`prune`] then drops those the manifest's indexes
/// do not walk through.
pub fn restore_carried(manifest: &mut ManifestProto, carried: &[FragmentRemapProto]) {
    let before = manifest.remaps.len();
    for entry in carried {
        if !manifest.remaps.iter().any(|r| r.version == entry.version) {
            manifest.remaps.push(entry.clone());
        }
    }
    if manifest.remaps.len() > before {
        manifest.remaps.sort_by_key(|r| r.version);
    }
}

/// Moves `rows` (fragment id → offsets a writer deletes, read before `compaction` committed) to
/// where that compaction put them, so a delete or update racing a compaction rebases instead of
/// re-running. A row the compaction did not carry over was deleted by another writer first: a
/// conflict. Rows of fragments it did not touch stay as they are.
pub(crate) async fn follow_compaction(
    inner: &TableInner,
    compaction: &super::manifest::Manifest,
    rows: &mut std::collections::BTreeMap<u64, RoaringBitmap>,
) -> Result<()> {
    // Its own version always lists the map (see `prune`).
    let Some(entry) = compaction
        .proto
        .remaps
        .iter()
        .find(|r| r.version == compaction.version())
    else {
        return Ok(());
    };
    let touched = entry
        .groups
        .iter()
        .any(|g| g.old_fragment_ids.iter().any(|id| rows.contains_key(id)));
    if !touched {
        return Ok(());
    }
    let groups = read_remap(inner, entry).await?;
    for (group, listed) in groups.iter().zip(&entry.groups) {
        if !group.old.iter().any(|o| rows.contains_key(&o.id)) {
            continue;
        }
        let positions = group.positions();
        for (i, old) in group.old.iter().enumerate() {
            let Some(ours) = rows.remove(&old.id) else {
                continue;
            };
            for offset in &ours {
                let (k, at) = group
                    .locate(i, u64::from(offset), &positions)
                    .ok_or_else(|| {
                        Error::CommitConflict(format!(
                            "a row of fragment {} was deleted by a concurrent writer before a compaction moved the fragment (version {})",
                            old.id,
                            compaction.version()
                        ))
                    })?;
                let new_id = listed.new_fragment_ids.get(k).copied().ok_or_else(|| {
                    Error::corrupt(
                        inner.storage.path(&entry.path),
                        "compaction map: a group has fewer new fragments than its rows fill",
                    )
                })?;
                rows.entry(new_id).or_default().insert(at as u32);
            }
        }
    }
    Ok(())
}

/// Translates the row addresses of an index through `coverage`'s steps, in place: moved rows
/// get their new addresses, dropped or forgotten ones [`DROPPED_ROW`].
pub(crate) async fn translate(
    inner: &TableInner,
    manifest: &ManifestProto,
    coverage: &Coverage,
    row_ids: &mut [u64],
) -> Result<()> {
    for step in &coverage.steps {
        let entry = &manifest.remaps[step.remap];
        let listed = &entry.groups[step.group];
        let position: HashMap<u64, usize> = listed
            .old_fragment_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i))
            .collect();
        if !step.full {
            for row in row_ids.iter_mut() {
                if position.contains_key(&(*row >> 32)) {
                    *row = DROPPED_ROW;
                }
            }
            continue;
        }
        let groups = read_remap(inner, entry).await?;
        let group = &groups[step.group];
        let positions = group.positions();
        for row in row_ids.iter_mut() {
            let Some(&i) = position.get(&(*row >> 32)) else {
                continue;
            };
            *row = match group.locate(i, *row & 0xFFFF_FFFF, &positions) {
                Some((k, offset)) => row_address(listed.new_fragment_ids[k], offset),
                None => DROPPED_ROW,
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::manifest::RemapGroupProto;

    fn group() -> RemapGroup {
        let mut dropped = RoaringBitmap::new();
        dropped.insert(1);
        RemapGroup {
            old: vec![
                OldFragment {
                    id: 3,
                    physical_rows: 3,
                    dropped: Arc::new(dropped),
                },
                OldFragment {
                    id: 4,
                    physical_rows: 2,
                    dropped: Arc::new(RoaringBitmap::new()),
                },
            ],
            new_rows: vec![3, 1],
        }
    }

    #[test]
    fn surviving_rows_keep_their_order_across_new_fragments() {
        let g = group();
        let at = g.positions();
        assert_eq!(g.locate(0, 0, &at), Some((0, 0)));
        assert_eq!(g.locate(0, 1, &at), None);
        assert_eq!(g.locate(0, 2, &at), Some((0, 1)));
        assert_eq!(g.locate(1, 0, &at), Some((0, 2)));
        assert_eq!(g.locate(1, 1, &at), Some((1, 0)));
        assert_eq!(g.locate(1, 2, &at), None);
    }

    #[test]
    fn coverage_follows_chains_and_forgets_partial_groups() {
        let mut m = ManifestProto::default();
        let remap = |version, old: Vec<u64>, new: Vec<u64>| FragmentRemapProto {
            version,
            path: "_remaps/x.remap".into(),
            groups: vec![RemapGroupProto {
                old_fragment_ids: old,
                new_fragment_ids: new,
            }],
            ..Default::default()
        };
        m.remaps = vec![remap(5, vec![1, 2], vec![7]), remap(6, vec![7, 3], vec![8])];
        let c = coverage(&m, &[1, 2]);
        assert_eq!(c.fragments, HashSet::new());
        assert_eq!(c.steps.len(), 2);
        assert!(c.steps[0].full && !c.steps[1].full);
        let c = coverage(&m, &[1, 2, 3]);
        assert_eq!(c.fragments, HashSet::from([8]));
        let c = coverage(&m, &[9]);
        assert!(c.steps.is_empty());
        // Unused: pruned, unless this manifest's own compaction wrote it; used: kept.
        m.version = 6;
        prune(&mut m);
        assert_eq!(m.remaps.iter().map(|r| r.version).collect::<Vec<_>>(), [6]);
        m.remaps = vec![remap(5, vec![1, 2], vec![7]), remap(6, vec![7, 3], vec![8])];
        m.version = 7;
        m.indices.push(crate::table::manifest::IndexMetadataProto {
            fragment_ids: vec![7],
            ..Default::default()
        });
        prune(&mut m);
        assert_eq!(m.remaps.len(), 1);
        assert_eq!(m.remaps[0].version, 6);
        // An index built before both compactions, committed after them: it carries their
        // entries (from the versions it rebased over) back in, in commit order.
        let mut carried = Vec::new();
        let at = |version, remaps| ManifestProto {
            version,
            remaps,
            ..Default::default()
        };
        carry(&at(5, vec![remap(5, vec![1, 2], vec![7])]), 4, &mut carried);
        carry(&at(6, vec![remap(6, vec![7, 3], vec![8])]), 4, &mut carried);
        carry(&at(6, vec![remap(3, vec![0], vec![1])]), 4, &mut carried);
        assert_eq!(
            carried.iter().map(|r| r.version).collect::<Vec<_>>(),
            [5, 6]
        );
        let mut m = at(8, vec![remap(6, vec![7, 3], vec![8])]);
        m.indices.push(crate::table::manifest::IndexMetadataProto {
            fragment_ids: vec![1, 2, 3],
            ..Default::default()
        });
        restore_carried(&mut m, &carried);
        prune(&mut m);
        assert_eq!(
            m.remaps.iter().map(|r| r.version).collect::<Vec<_>>(),
            [5, 6]
        );
        assert_eq!(coverage(&m, &[1, 2, 3]).fragments, HashSet::from([8]));
    }
}
