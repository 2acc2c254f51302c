//! Commits: turning an operation into the next manifest, publishing it atomically, and
//! rebasing when another writer got there first.
//!
//! Publishing is a put-if-absent of the next version's manifest, which the store makes atomic
//! (a hard link on local disk, a conditional write in memory and on S3). A writer that loses
//! reads the versions committed since it read, checks whether they conflict with its own
//! operation, and if not rebuilds its manifest on top of the newest one and tries again, with
//! jittered exponential backoff.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use roaring::RoaringBitmap;

use super::deletion::write_deletion_file;
use super::manifest::{
    DataFileProto, FragmentProto, FragmentRemapProto, IndexMetadataProto, Manifest, ManifestProto,
    ManifestState, RemapGroupProto, TransactionProto,
};
use super::remap::{self, OldFragment, RemapGroup};
use super::session::{lock, CommitSlot, RecentCommits};
use super::write::NewFragment;
use super::TableInner;
use crate::error::{Error, Result};
use crate::schema::TableSchema;

/// What a writer wants to do.
#[derive(Debug, Clone)]
pub(crate) enum Operation {
    /// Make a new table (version 1). Fails if any version exists.
    Create {
        schema: TableSchema,
        fragments: Vec<NewFragment>,
    },
    /// Replace all rows (and the schema) of the table.
    Overwrite {
        schema: TableSchema,
        fragments: Vec<NewFragment>,
    },
    /// Add fragments.
    Append { fragments: Vec<NewFragment> },
    /// Mark rows deleted: fragment id → row offsets this writer newly deletes.
    Delete { rows: BTreeMap<u64, RoaringBitmap> },
    /// Make an old version's content the newest version.
    Restore { from: Arc<Manifest> },
    /// Rewrite rows: delete `rows` (fragment id → offsets) and add `fragments` holding their
    /// new values (an update).
    Update {
        rows: BTreeMap<u64, RoaringBitmap>,
        fragments: Vec<NewFragment>,
    },
    /// An upsert: like `Update`, but new fragments may hold new keys. Rows another writer
    /// added meanwhile conflict when they hold one of `keys` (the source's); with no `keys`
    /// (a by-source delete, which covers every row) any added rows conflict.
    MergeInsert {
        rows: BTreeMap<u64, RoaringBitmap>,
        fragments: Vec<NewFragment>,
        keys: Option<Arc<MergeKeys>>,
    },
    /// Add, alter or drop columns (`operation` names which). `files`, when the change writes
    /// data, holds each fragment's new data files (values of added or re-typed columns).
    /// `covers_rows`: the change was computed from every row read (new values, a cast, a NOT
    /// NULL check), so rows another writer added meanwhile conflict.
    ChangeSchema {
        operation: &'static str,
        schema: TableSchema,
        files: Option<BTreeMap<u64, Vec<DataFileProto>>>,
        covers_rows: bool,
    },
    /// Add, replace or remove an index (data is unchanged).
    Index(IndexChange),
    /// Swap each group's old fragments for its new ones (see `compact`); `remap` is the
    /// groups' address map file (path, size).
    Compact {
        groups: Vec<CompactGroup>,
        remap: (String, u64),
    },
}

/// The keys a merge-insert writes, to check rows other writers added meanwhile against.
#[derive(Debug)]
pub(crate) struct MergeKeys {
    /// Field ids of the key columns, in key order.
    pub field_ids: Vec<i32>,
    /// The source's keys, encoded by `mutate::encode_key`.
    pub encoded: HashSet<Vec<u8>>,
}

/// One bin of a compaction: the fragments it read (with the rows deleted when it read them)
/// and the fragments holding their live rows, in order.
#[derive(Debug, Clone)]
pub(crate) struct CompactGroup {
    pub old: Vec<OldFragment>,
    pub new: Vec<NewFragment>,
    /// Old fragments a concurrent write deleted every row of (which removes a fragment) after
    /// the compaction read them: their rows are carried over deleted.
    pub emptied: HashSet<u64>,
}

impl CompactGroup {
    /// The group as its address map records it.
    pub fn layout(&self) -> RemapGroup {
        RemapGroup {
            old: self.old.clone(),
            new_rows: self.new.iter().map(|f| f.physical_rows).collect(),
        }
    }
}

/// A change to the table's indexes.
#[derive(Debug, Clone)]
pub(crate) enum IndexChange {
    /// Add `index`, removing the indexes named in `replaces` and any other index of the same
    /// name or on the same columns. With `expected_uuid` (an index rewritten in place, as
    /// `optimize` does), the entry of that name must still be the one it was computed from.
    Create {
        index: IndexMetadataProto,
        replaces: Vec<String>,
        expected_uuid: Option<String>,
    },
    /// Remove the index called `name`.
    Drop { name: String },
}

/// Operation names of schema changes, as stored in transactions.
pub(crate) const ADD_COLUMNS: &str = "add_columns";
pub(crate) const ALTER_COLUMNS: &str = "alter_columns";
pub(crate) const DROP_COLUMNS: &str = "drop_columns";
/// Operation name of compactions.
pub(crate) const COMPACT: &str = "compact";

impl Operation {
    fn name(&self) -> &'static str {
        match self {
            Operation::Create { .. } => "create",
            Operation::Overwrite { .. } => "overwrite",
            Operation::Append { .. } => "append",
            Operation::Delete { .. } => "delete",
            Operation::Restore { .. } => "restore",
            Operation::Update { .. } => "update",
            Operation::MergeInsert { .. } => "merge_insert",
            Operation::ChangeSchema { operation, .. } => operation,
            Operation::Index(IndexChange::Create { .. }) => "create_index",
            Operation::Index(IndexChange::Drop { .. }) => "drop_index",
            Operation::Compact { .. } => COMPACT,
        }
    }

    /// Operations that replace the whole table do not depend on what they read.
    fn replaces_table(&self) -> bool {
        matches!(
            self,
            Operation::Overwrite { .. } | Operation::Restore { .. }
        )
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Fails with [`Error::CommitConflict`] when `committed` (a version another writer published
/// after ours was read) cannot be reconciled with `ours`. Row-level conflicts of deletes are
/// found later, when the manifest is rebuilt on the newest version.
fn check_conflict(ours: &Operation, committed: &Manifest) -> Result<()> {
    if ours.replaces_table() {
        return Ok(());
    }
    let adds_rows = matches!(committed.operation(), "append" | "update" | "merge_insert");
    // With its keys known, a merge-insert checks the added rows' keys (`check_merge_keys`).
    if matches!(ours, Operation::MergeInsert { keys: None, .. }) && adds_rows {
        return Err(Error::CommitConflict(format!(
            "a concurrent {} added rows at version {} that may hold the same keys as this merge_insert",
            committed.operation(),
            committed.version()
        )));
    }
    if let Operation::ChangeSchema {
        covers_rows: true, ..
    } = ours
    {
        if adds_rows {
            return Err(Error::CommitConflict(format!(
                "a concurrent {} added rows at version {} that this {} did not cover",
                committed.operation(),
                committed.version(),
                ours.name()
            )));
        }
    }
    let theirs = committed.operation();
    if matches!(theirs, ADD_COLUMNS | ALTER_COLUMNS | DROP_COLUMNS) {
        // Deletion vectors address stored rows, whatever the columns; rows written under the
        // old schema still hold every column left after a drop. Anything else re-runs.
        let compatible = match ours {
            Operation::Delete { .. } => true,
            Operation::Append { .. } | Operation::Update { .. } | Operation::MergeInsert { .. } => {
                theirs == DROP_COLUMNS
            }
            _ => false,
        };
        return if compatible {
            Ok(())
        } else {
            Err(Error::CommitConflict(format!(
                "a concurrent {theirs} changed the schema at version {} while this {} was in progress",
                committed.version(),
                ours.name()
            )))
        };
    }
    match theirs {
        // Index changes leave rows alone; an index covers the fragments it names, whatever
        // was added or deleted since. A compaction keeps every row: whoever needs a fragment
        // it replaced finds out when its manifest is rebuilt (deletes re-run; indexes follow
        // the address map), and a compaction meeting a delete moves the deletion.
        "append" | "delete" | "update" | "merge_insert" | "create_index" | "drop_index"
        | COMPACT => Ok(()),
        theirs => Err(Error::CommitConflict(format!(
            "a concurrent {theirs} replaced the table at version {} while this {} was in progress",
            committed.version(),
            ours.name()
        ))),
    }
}

/// A merge-insert's check against a version another writer committed meanwhile: it conflicts
/// when a row that version added holds one of the merge's keys (the merge would then insert a
/// duplicate, or miss the row it should update), and rebases otherwise. Reads the key columns
/// of the added fragments only.
async fn check_merge_keys(
    table: &TableInner,
    ours: &Operation,
    committed: &Manifest,
) -> Result<()> {
    let Operation::MergeInsert {
        keys: Some(keys), ..
    } = ours
    else {
        return Ok(());
    };
    if !matches!(committed.operation(), "append" | "update" | "merge_insert") {
        return Ok(());
    }
    let added: HashSet<u64> = committed
        .proto
        .transaction
        .as_ref()
        .map(|t| t.added_fragment_ids.iter().copied().collect())
        .unwrap_or_default();
    let mut buffer = Vec::new();
    for fragment in committed
        .fragments()
        .iter()
        .filter(|f| added.contains(&f.id))
    {
        let mut columns = Vec::with_capacity(keys.field_ids.len());
        for &field_id in &keys.field_ids {
            let reader = super::scan::fragment_reader(table, fragment, field_id).await?;
            let column = reader.metadata().column(field_id, reader.path())?;
            let data_type = column.data_type.clone();
            let pages = reader.read_pages(field_id, 0..column.pages.len()).await?;
            columns.push(crate::format::reader::concat_parts(pages, &data_type)?);
        }
        let key_columns = super::mutate::key_columns(&columns);
        for row in 0..fragment.physical_rows as usize {
            if super::mutate::encode_key(&key_columns, row, &mut buffer)
                && keys.encoded.contains(buffer.as_slice())
            {
                return Err(Error::CommitConflict(format!(
                    "a concurrent {} at version {} wrote a row whose key this merge_insert also writes",
                    committed.operation(),
                    committed.version()
                )));
            }
        }
    }
    Ok(())
}

/// The conflict check when some versions committed after `from` were cleaned up before this
/// writer could read them: conservative, from what the newest manifest records.
fn check_unseen(ours: &Operation, newest: &Manifest, from: u64) -> Result<()> {
    if ours.replaces_table() {
        return Ok(());
    }
    let covers_new_rows = matches!(ours, Operation::MergeInsert { .. })
        || matches!(
            ours,
            Operation::ChangeSchema {
                covers_rows: true,
                ..
            }
        );
    if newest.proto.last_replace_version > from
        || (covers_new_rows && newest.proto.last_rows_added_version > from)
    {
        return Err(Error::CommitConflict(format!(
            "versions committed after version {from} changed the table in a way this {} depends on (they were cleaned up before they could be compared)",
            ours.name()
        )));
    }
    Ok(())
}

fn new_fragments(next_id: &mut u64, fragments: &[NewFragment]) -> Vec<FragmentProto> {
    fragments
        .iter()
        .map(|f| {
            let id = *next_id;
            *next_id += 1;
            FragmentProto {
                id,
                files: vec![f.file.clone()],
                physical_rows: f.physical_rows,
                deletion: None,
            }
        })
        .collect()
}

/// Marks `rows` deleted in `proto` (a copy of `base`'s), writing new deletion files and
/// dropping fragments left empty. Rows another writer deleted first are a conflict.
async fn apply_deletes(
    table: &TableInner,
    base: &Manifest,
    proto: &mut ManifestProto,
    txn: &mut TransactionProto,
    rows: &BTreeMap<u64, RoaringBitmap>,
    version: u64,
) -> Result<()> {
    for (&fragment_id, ours) in rows {
        let Some(pos) = proto.fragments.iter().position(|f| f.id == fragment_id) else {
            return Err(Error::CommitConflict(format!(
                "fragment {fragment_id} was removed by a concurrent writer (version {})",
                base.version()
            )));
        };
        let fragment = &mut proto.fragments[pos];
        let mut deleted = match table.deleted_rows(fragment).await? {
            Some(deleted) => (*deleted).clone(),
            None => RoaringBitmap::new(),
        };
        if !deleted.is_disjoint(ours) {
            return Err(Error::CommitConflict(format!(
                "rows of fragment {fragment_id} were deleted or rewritten by a concurrent writer (version {})",
                base.version()
            )));
        }
        deleted |= ours;
        if deleted.len() >= fragment.physical_rows {
            txn.removed_fragment_ids.push(fragment_id);
        } else {
            fragment.deletion =
                Some(write_deletion_file(&table.storage, fragment_id, version, &deleted).await?);
            txn.modified_fragment_ids.push(fragment_id);
        }
    }
    proto
        .fragments
        .retain(|f| !txn.removed_fragment_ids.contains(&f.id));
    Ok(())
}

/// Replaces `group`'s old fragments in `proto` (a copy of `base`'s) by its new ones, at the
/// position of the first, moving rows deleted since the compaction read them to the new
/// fragments. Returns the ids given to the new fragments.
async fn apply_compaction_group(
    table: &TableInner,
    base: &Manifest,
    proto: &mut ManifestProto,
    txn: &mut TransactionProto,
    group: &CompactGroup,
    version: u64,
) -> Result<Vec<u64>> {
    let layout = group.layout();
    let positions = layout.positions();
    let mut moved: Vec<RoaringBitmap> = vec![RoaringBitmap::new(); group.new.len()];
    let mut first = None;
    let mut replaced = Vec::with_capacity(group.old.len());
    for (i, old) in group.old.iter().enumerate() {
        let now = match proto.fragments.iter().position(|f| f.id == old.id) {
            Some(pos) => {
                first = Some(first.map_or(pos, |p: usize| p.min(pos)));
                replaced.push(old.id);
                match table.deleted_rows(&proto.fragments[pos]).await? {
                    Some(d) => (*d).clone(),
                    None => RoaringBitmap::new(),
                }
            }
            None if group.emptied.contains(&old.id) => {
                let mut every = RoaringBitmap::new();
                every.insert_range(0..old.physical_rows.min(u64::from(u32::MAX)) as u32);
                every
            }
            None => {
                return Err(Error::CommitConflict(format!(
                    "fragment {} was rewritten or removed by a concurrent writer (version {})",
                    old.id,
                    base.version()
                )))
            }
        };
        if !old.dropped.is_subset(&now) {
            return Err(Error::CommitConflict(format!(
                "deleted rows of fragment {} came back (a concurrent restore, version {})",
                old.id,
                base.version()
            )));
        }
        for offset in &(now - old.dropped.as_ref()) {
            if let Some((k, at)) = layout.locate(i, u64::from(offset), &positions) {
                moved[k].insert(at as u32);
            }
        }
    }
    let mut replacement = Vec::with_capacity(group.new.len());
    let mut new_ids = Vec::with_capacity(group.new.len());
    for (fragment, deleted) in group.new.iter().zip(moved) {
        let id = proto.next_fragment_id;
        proto.next_fragment_id += 1;
        new_ids.push(id);
        if deleted.len() >= fragment.physical_rows {
            // Every row of it was deleted meanwhile: it never becomes part of the table.
            continue;
        }
        let deletion = if deleted.is_empty() {
            None
        } else {
            Some(write_deletion_file(&table.storage, id, version, &deleted).await?)
        };
        txn.added_fragment_ids.push(id);
        replacement.push(FragmentProto {
            id,
            files: vec![fragment.file.clone()],
            physical_rows: fragment.physical_rows,
            deletion,
        });
    }
    // Every old fragment was emptied meanwhile: so is every new one, and none joins the table.
    let Some(first) = first else {
        return Ok(new_ids);
    };
    let old_ids: HashSet<u64> = group.old.iter().map(|o| o.id).collect();
    txn.removed_fragment_ids.extend(replaced);
    let mut kept = Vec::with_capacity(proto.fragments.len() + replacement.len());
    for (pos, f) in std::mem::take(&mut proto.fragments).into_iter().enumerate() {
        if pos == first {
            kept.append(&mut replacement);
        }
        if !old_ids.contains(&f.id) {
            kept.push(f);
        }
    }
    proto.fragments = kept;
    Ok(new_ids)
}

/// Checks `op` (read at `read_version`) against `committed`, a version another commit published
/// meanwhile, and carries `op` over it: rows it deletes that a compaction moved are deleted
/// where they went, an index change collects the compaction maps that version lists, and a
/// compaction notes the fragments a write emptied and gives up the groups another compaction
/// rewrote first.
async fn rebase_over(
    table: &TableInner,
    op: &mut Operation,
    committed: &Manifest,
    read_version: u64,
    carried: &mut Vec<FragmentRemapProto>,
) -> Result<()> {
    check_conflict(op, committed)?;
    check_merge_keys(table, op, committed).await?;
    match op {
        Operation::Index(IndexChange::Create { .. }) => {
            remap::carry(&committed.proto, read_version, carried);
        }
        Operation::Delete { rows }
        | Operation::Update { rows, .. }
        | Operation::MergeInsert { rows, .. }
            if committed.operation() == COMPACT =>
        {
            remap::follow_compaction(table, committed, rows).await?;
        }
        Operation::Compact { groups, remap } => {
            let removed: HashSet<u64> = committed
                .proto
                .transaction
                .as_ref()
                .map(|t| t.removed_fragment_ids.iter().copied().collect())
                .unwrap_or_default();
            if removed.is_empty() {
                return Ok(());
            }
            if committed.operation() == COMPACT {
                give_up_taken_groups(table, groups, remap, &removed, committed.version()).await?;
            } else if matches!(committed.operation(), "delete" | "update" | "merge_insert") {
                // These remove only the fragments they emptied (anything else that removes
                // fragments replaced the table, a conflict found above).
                for group in groups.iter_mut() {
                    for old in &group.old {
                        if removed.contains(&old.id) {
                            group.emptied.insert(old.id);
                        }
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Drops from a compaction the groups whose fragments another compaction (committed at
/// `version`) rewrote first, rewriting the address map for the groups left; the rows are
/// compacted already, and carrying them again would duplicate them. Fails as a conflict when
/// no group is left (the caller re-plans).
async fn give_up_taken_groups(
    table: &TableInner,
    groups: &mut Vec<CompactGroup>,
    remap: &mut (String, u64),
    removed: &HashSet<u64>,
    version: u64,
) -> Result<()> {
    let (taken, left): (Vec<CompactGroup>, Vec<CompactGroup>) = std::mem::take(groups)
        .into_iter()
        .partition(|g| g.old.iter().any(|o| removed.contains(&o.id)));
    *groups = left;
    if taken.is_empty() {
        return Ok(());
    }
    let storage = &table.storage;
    let unused = taken
        .iter()
        .flat_map(|g| &g.new)
        .map(|f| f.file.path.as_str());
    for path in unused.chain([remap.0.as_str()]) {
        // Never committed, so nobody reads them; a file left behind goes with the next cleanup.
        let _ = storage.delete(&storage.path(path)).await;
    }
    if groups.is_empty() {
        return Err(Error::CommitConflict(format!(
            "a concurrent compaction (version {version}) rewrote the fragments this one did"
        )));
    }
    let layouts: Vec<RemapGroup> = groups.iter().map(CompactGroup::layout).collect();
    *remap = remap::write_remap_file(table, &layouts).await?;
    Ok(())
}

/// Builds the manifest of `version` that applies `op` on top of `base` (the newest readable
/// version; `version` is past it, and past any damaged one above it). `carried`: compaction
/// maps of versions an index change rebased over, which its index may need.
async fn build_manifest(
    table: &TableInner,
    base: Option<&Manifest>,
    op: &Operation,
    read_version: u64,
    version: u64,
    carried: &[FragmentRemapProto],
) -> Result<Manifest> {
    let mut txn = TransactionProto {
        operation: op.name().to_string(),
        read_version,
        uuid: uuid::Uuid::new_v4().simple().to_string(),
        ..Default::default()
    };
    let proto = match (op, base) {
        (Operation::Create { .. }, Some(_)) => {
            return Err(Error::TableAlreadyExists(table.name.clone()));
        }
        (Operation::Create { schema, fragments }, None)
        | (Operation::Overwrite { schema, fragments }, _) => {
            let mut next_fragment_id = base.map_or(0, |b| b.proto.next_fragment_id);
            let fragments = new_fragments(&mut next_fragment_id, fragments);
            txn.added_fragment_ids = fragments.iter().map(|f| f.id).collect();
            ManifestProto {
                fields: schema.fields.clone(),
                schema_metadata: schema.metadata_map(),
                fragments,
                next_fragment_id,
                max_field_id: schema
                    .max_field_id()
                    .max(base.map_or(-1, |b| b.proto.max_field_id)),
                ..Default::default()
            }
        }
        (Operation::Append { fragments }, Some(base)) => {
            let mut proto = base.proto.clone();
            let added = new_fragments(&mut proto.next_fragment_id, fragments);
            txn.added_fragment_ids = added.iter().map(|f| f.id).collect();
            proto.fragments.extend(added);
            proto
        }
        (Operation::Delete { rows }, Some(base)) => {
            let mut proto = base.proto.clone();
            apply_deletes(table, base, &mut proto, &mut txn, rows, version).await?;
            proto
        }
        (Operation::Update { rows, fragments }, Some(base))
        | (
            Operation::MergeInsert {
                rows, fragments, ..
            },
            Some(base),
        ) => {
            let mut proto = base.proto.clone();
            apply_deletes(table, base, &mut proto, &mut txn, rows, version).await?;
            let added = new_fragments(&mut proto.next_fragment_id, fragments);
            txn.added_fragment_ids = added.iter().map(|f| f.id).collect();
            proto.fragments.extend(added);
            proto
        }
        (Operation::ChangeSchema { schema, files, .. }, Some(base)) => {
            let mut proto = base.proto.clone();
            proto.fields = schema.fields.clone();
            proto.schema_metadata = schema.metadata_map();
            proto.max_field_id = proto.max_field_id.max(schema.max_field_id());
            if let Some(files) = files {
                for fragment in &mut proto.fragments {
                    let added = files.get(&fragment.id).ok_or_else(|| {
                        Error::CommitConflict(format!(
                            "fragment {} was added by a concurrent writer (version {}) and has no values for the changed columns",
                            fragment.id,
                            base.version()
                        ))
                    })?;
                    fragment.files.extend(added.iter().cloned());
                    txn.modified_fragment_ids.push(fragment.id);
                }
            }
            // An index on a dropped or re-typed column (re-typed columns get new field ids)
            // no longer describes any column.
            proto
                .indices
                .retain(|i| i.field_ids.iter().all(|id| schema.field_ids.contains(id)));
            proto
        }
        (
            Operation::Index(IndexChange::Create {
                index,
                replaces,
                expected_uuid,
            }),
            Some(base),
        ) => {
            let mut proto = base.proto.clone();
            if let Some(uuid) = expected_uuid {
                if !proto
                    .indices
                    .iter()
                    .any(|i| i.name == index.name && &i.uuid == uuid)
                {
                    return Err(Error::CommitConflict(format!(
                        "index '{}' was replaced or dropped by a concurrent writer (version {})",
                        index.name,
                        base.version()
                    )));
                }
            }
            proto.indices.retain(|i| {
                i.name != index.name
                    && !replaces.contains(&i.name)
                    && i.field_ids != index.field_ids
            });
            proto.indices.push(index.clone());
            remap::restore_carried(&mut proto, carried);
            proto
        }
        (Operation::Index(IndexChange::Drop { name }), Some(base)) => {
            let mut proto = base.proto.clone();
            if !proto.indices.iter().any(|i| &i.name == name) {
                return Err(Error::IndexNotFound(format!(
                    "'{name}' (dropped by a concurrent writer at version {})",
                    base.version()
                )));
            }
            proto.indices.retain(|i| &i.name != name);
            proto
        }
        (Operation::Compact { groups, remap }, Some(base)) => {
            let mut proto = base.proto.clone();
            let mut entry = FragmentRemapProto {
                version,
                path: remap.0.clone(),
                size_bytes: remap.1,
                groups: Vec::with_capacity(groups.len()),
                created_micros: now_micros(),
            };
            for group in groups {
                let new_ids =
                    apply_compaction_group(table, base, &mut proto, &mut txn, group, version)
                        .await?;
                entry.groups.push(RemapGroupProto {
                    old_fragment_ids: group.old.iter().map(|o| o.id).collect(),
                    new_fragment_ids: new_ids,
                });
            }
            proto.remaps.push(entry);
            proto
        }
        (Operation::Restore { from }, Some(base)) => {
            txn.restored_version = from.version();
            ManifestProto {
                fields: from.proto.fields.clone(),
                schema_metadata: from.proto.schema_metadata.clone(),
                fragments: from.proto.fragments.clone(),
                indices: from.proto.indices.clone(),
                remaps: from.proto.remaps.clone(),
                next_fragment_id: base.proto.next_fragment_id.max(from.proto.next_fragment_id),
                max_field_id: base.proto.max_field_id.max(from.proto.max_field_id),
                ..Default::default()
            }
        }
        (op, None) => {
            return Err(Error::TableNotFound(format!(
                "{} (cannot {} a table that has no version)",
                table.name,
                op.name()
            )));
        }
    };
    let (last_replace, last_rows_added) = base.map_or((0, 0), |b| {
        (
            b.proto.last_replace_version,
            b.proto.last_rows_added_version,
        )
    });
    let replaces = op.replaces_table()
        || matches!(
            op,
            Operation::Create { .. } | Operation::ChangeSchema { .. }
        );
    let adds_rows = matches!(
        op,
        Operation::Create { .. }
            | Operation::Overwrite { .. }
            | Operation::Restore { .. }
            | Operation::Append { .. }
            | Operation::Update { .. }
            | Operation::MergeInsert { .. }
    );
    let parent_uuid = base
        .and_then(|b| b.proto.transaction.as_ref())
        .map(|t| t.uuid.clone())
        .unwrap_or_default();
    let timestamp_micros = now_micros();
    let mut proto = ManifestProto {
        parent_uuid,
        last_replace_version: if replaces { version } else { last_replace },
        last_rows_added_version: if adds_rows { version } else { last_rows_added },
        version,
        timestamp_micros,
        transaction: Some(txn),
        writer_version: format!("quiverdb {}", env!("CARGO_PKG_VERSION")),
        ..proto
    };
    remap::prune(&mut proto);
    let schema = TableSchema::from_protos(proto.fields.clone(), proto.schema_metadata.clone())?;
    Ok(Manifest { proto, schema })
}

/// Commits `op`, read at `read` (None for a table that does not exist yet). Returns the
/// published manifest. A commit that loses the publish race rebases and tries again, with
/// backoff, until `deadline`; then it fails with [`Error::CommitTimeout`] (a deadline already
/// passed still allows one attempt).
pub(crate) async fn commit(
    table: &TableInner,
    read: Option<Arc<Manifest>>,
    op: Operation,
    deadline: Instant,
) -> Result<Arc<Manifest>> {
    let started = Instant::now();
    let pending = Pending {
        read_version: read.as_ref().map_or(0, |m| m.version()),
        op,
        base: read,
        taken: table.highest_damaged(),
        carried: Vec::new(),
    };
    let slot = table.session.commit_slot(table.storage.uri());
    let turn = slot.turn.lock().await;
    let manifest = publish(table, &slot.turn, turn, pending, deadline, started).await?;
    flush_published(table, &manifest).await?;
    Ok(manifest)
}

/// Commits an append, in one version with the other appends queued on the table through
/// this connection meanwhile (group commit: appends commute, so a batch rebases and races
/// as one, and concurrent writers of one process publish, flush, and make other processes
/// read, one manifest per batch instead of one each). Acknowledged, like any commit, once the
/// version is durable.
pub(crate) async fn commit_append(
    table: &Arc<TableInner>,
    read: Arc<Manifest>,
    fragments: Vec<NewFragment>,
    deadline: Instant,
) -> Result<Arc<Manifest>> {
    let slot = table.session.commit_slot(table.storage.uri());
    let (reply, answer) = tokio::sync::oneshot::channel();
    let queued = QueuedAppend {
        read: read.clone(),
        fragments,
        deadline,
        queued_at: Instant::now(),
        reply,
    };
    let opened = {
        let mut open = lock(&slot.appends);
        match open.as_mut() {
            Some(batch) => {
                batch.push(queued);
                false
            }
            None => {
                *open = Some(vec![queued]);
                true
            }
        }
    };
    if opened {
        // A task of its own: a caller that stops waiting never abandons the others' rows.
        let table = table.clone();
        tokio::spawn(async move { publish_appends(&table, &slot).await });
    }
    match answer.await {
        Ok(AppendReply::Done(result)) => result,
        Ok(AppendReply::Alone(fragments)) => {
            commit(table, Some(read), Operation::Append { fragments }, deadline).await
        }
        Err(_) => Err(Error::Internal(
            "the task publishing a batch of appends ended without an answer".into(),
        )),
    }
}

/// An append waiting in a batch (see [`commit_append`]).
pub(crate) struct QueuedAppend {
    /// The version its rows were written for.
    read: Arc<Manifest>,
    fragments: Vec<NewFragment>,
    deadline: Instant,
    queued_at: Instant,
    reply: tokio::sync::oneshot::Sender<AppendReply>,
}

enum AppendReply {
    /// Published with the batch (or failed for good).
    Done(Result<Arc<Manifest>>),
    /// Not published: the append commits on its own, where it gets its own answer.
    Alone(Vec<NewFragment>),
}

impl QueuedAppend {
    fn answer(self, reply: AppendReply) {
        // A caller that stopped waiting needs no answer.
        let _ = self.reply.send(reply);
    }

    fn alone(mut self) {
        let fragments = std::mem::take(&mut self.fragments);
        self.answer(AppendReply::Alone(fragments));
    }
}

/// Publishes the batch of appends open on `slot`: takes the turn, closes the batch (appends
/// arriving from then on open the next one, published while this one flushes) and commits
/// its rows as one append.
async fn publish_appends(table: &TableInner, slot: &CommitSlot) {
    let started = Instant::now();
    let turn = slot.turn.lock().await;
    let Some(batch) = lock(&slot.appends).take() else {
        return;
    };
    let Some(base) = batch
        .iter()
        .map(|q| q.read.clone())
        .max_by_key(|read| read.version())
    else {
        return;
    };
    // An append written for an older version joins only when no version since can conflict
    // with it (none replaced the table or changed its schema: the check for versions cleaned
    // up unseen); otherwise it commits alone, checking each version between.
    let append = Operation::Append {
        fragments: Vec::new(),
    };
    let (joined, alone): (Vec<QueuedAppend>, Vec<QueuedAppend>) = batch
        .into_iter()
        .partition(|q| check_unseen(&append, &base, q.read.version()).is_ok());
    alone.into_iter().for_each(QueuedAppend::alone);
    let (Some(deadline), Some(read_version)) = (
        joined.iter().map(|q| q.deadline).min(),
        joined.iter().map(|q| q.read.version()).min(),
    ) else {
        return;
    };
    let pending = Pending {
        op: Operation::Append {
            fragments: joined
                .iter()
                .flat_map(|q| q.fragments.iter().cloned())
                .collect(),
        },
        read_version,
        base: Some(base),
        taken: table.highest_damaged(),
        carried: Vec::new(),
    };
    match publish(table, &slot.turn, turn, pending, deadline, started).await {
        Ok(manifest) => match flush_published(table, &manifest).await {
            Ok(()) => {
                for queued in joined {
                    queued.answer(AppendReply::Done(Ok(manifest.clone())));
                }
            }
            // Published but not made durable: every member gets the failure (none may
            // commit its rows again), the first as it came, the others as its message.
            Err(e) => {
                let message = e.to_string();
                let mut members = joined.into_iter();
                if let Some(first) = members.next() {
                    first.answer(AppendReply::Done(Err(e)));
                }
                for queued in members {
                    queued.answer(AppendReply::Done(Err(Error::Storage(
                        object_store::Error::Generic {
                            store: "quiver",
                            source: message.clone().into(),
                        },
                    ))));
                }
            }
        },
        // Out of the earliest member's time: members out of their own fail, the others go on
        // alone until their deadlines.
        Err(Error::CommitTimeout {
            attempts, commits, ..
        }) => {
            let now = Instant::now();
            for queued in joined {
                if queued.deadline <= now {
                    let waited_ms = now.duration_since(queued.queued_at).as_millis() as u64;
                    queued.answer(AppendReply::Done(Err(Error::CommitTimeout {
                        waited_ms,
                        attempts,
                        commits,
                    })));
                } else {
                    queued.alone();
                }
            }
        }
        // Nothing was published: one member gets the failure, the others try alone (and get
        // their own answer, the same one when the cause lasts).
        Err(e) => {
            let mut members = joined.into_iter();
            if let Some(first) = members.next() {
                first.answer(AppendReply::Done(Err(e)));
            }
            members.for_each(QueuedAppend::alone);
        }
    }
}

/// Makes a published version durable (when commits are): the manifest is flushed after the
/// turn is released, so the commits queued behind it publish meanwhile and share the folder
/// flush. Publishing before the flush is safe: every file the manifest names was flushed
/// before it was written, and a later version that reaches the disk first holds this one's
/// changes.
async fn flush_published(table: &TableInner, manifest: &Manifest) -> Result<()> {
    table
        .storage
        .flush_if_durable(&table.manifests.path_of(manifest.version()))
        .await
}

/// The publish loop of a commit holding the connection's `turn` of the table: rebase,
/// build, publish; on a lost race catch up and try again until `deadline`. Returns the
/// published manifest with the turn released, not yet flushed.
async fn publish<'a>(
    table: &TableInner,
    lock: &'a tokio::sync::Mutex<RecentCommits>,
    mut turn: tokio::sync::MutexGuard<'a, RecentCommits>,
    mut pending: Pending,
    deadline: Instant,
    started: Instant,
) -> Result<Arc<Manifest>> {
    let mut attempt: u32 = 0;
    loop {
        // Commits this connection made while this one waited for its turn: rebase on them
        // now (other processes' commits are still found by losing the publish race).
        if let Some(b) = &pending.base {
            let uuid_of = |m: &Manifest| m.proto.transaction.as_ref().map(|t| t.uuid.clone());
            // Built on our base (not on a table of the same name dropped since).
            let follows = |known: &Vec<Arc<Manifest>>| {
                known
                    .first()
                    .is_none_or(|next| Some(&next.proto.parent_uuid) == uuid_of(b).as_ref())
            };
            if let Some(known) = turn.since(b.version()).filter(follows) {
                for committed in &known {
                    pending.rebase_over(table, committed).await?;
                }
                if let Some(newest) = known.last() {
                    pending.base = Some(newest.clone());
                }
            }
        }
        let manifest = pending.build(table).await?;
        if table.manifests.try_publish(&manifest).await? {
            let standing = stands(table, &manifest, pending.base.as_deref()).await?;
            if standing == Standing::Stands {
                let manifest = Arc::new(manifest);
                turn.push(manifest.clone());
                return Ok(manifest);
            }
            withdraw(table, manifest.version()).await?;
            if standing == Standing::Foreign {
                return Err(dropped_since_read(table, pending.read_version));
            }
            // A cleanup had removed this version number before it was published again.
            if matches!(pending.op, Operation::Create { .. }) {
                return Err(Error::TableAlreadyExists(table.name.clone()));
            }
        }
        // Lost the race.
        if matches!(pending.op, Operation::Create { .. }) {
            return Err(Error::TableAlreadyExists(table.name.clone()));
        }
        attempt += 1;
        let now = Instant::now();
        if now >= deadline {
            // Out of time; still, a true conflict among the versions read within
            // `FINAL_CATCH_UP` is reported as one. The count of versions committed first is
            // then a lower bound when there were more than that.
            pending.catch_up(table, now + FINAL_CATCH_UP).await?;
            return Err(Error::CommitTimeout {
                waited_ms: now.duration_since(started).as_millis() as u64,
                attempts: attempt,
                commits: pending.taken.saturating_sub(pending.read_version),
            });
        }
        // The connection's other commits go ahead meanwhile (they rebase on each other
        // directly): holding the turn through a losing streak, or while reading what others
        // committed (thousands of versions for an index build that read long ago), would
        // queue them all behind it.
        drop(turn);
        tokio::time::sleep(backoff(attempt - 1).min(deadline - now)).await;
        // Catch up only now, right before the next attempt: versions read before the pause
        // are stale by its end, and a writer that always rebases on stale versions loses every
        // race to one that commits on its own commits (the soak saw a process lose 250 in a
        // row). The turn then brings the connection's own commits since.
        pending.catch_up(table, deadline).await?;
        turn = lock.lock().await;
    }
}

/// How long a commit out of time still reads the versions it lost to, to tell a true conflict.
const FINAL_CATCH_UP: Duration = Duration::from_secs(1);

/// A commit in progress: its operation as rebased so far and the version it builds on.
struct Pending {
    op: Operation,
    /// The version the operation was computed on.
    read_version: u64,
    /// The newest version rebased over (None: the table has no version yet).
    base: Option<Arc<Manifest>>,
    /// Highest version number seen taken (damaged versions included).
    taken: u64,
    /// Compaction maps an index change needs from the versions it rebased over.
    carried: Vec<FragmentRemapProto>,
}

impl Pending {
    async fn rebase_over(&mut self, table: &TableInner, committed: &Manifest) -> Result<()> {
        rebase_over(
            table,
            &mut self.op,
            committed,
            self.read_version,
            &mut self.carried,
        )
        .await
    }

    /// The manifest of the next version: past the base and past any damaged one above it (see
    /// `latest_intact`), built on the base.
    async fn build(&self, table: &TableInner) -> Result<Manifest> {
        let version = self
            .base
            .as_ref()
            .map_or(1, |b| b.version() + 1)
            .max(self.taken + 1);
        build_manifest(
            table,
            self.base.as_deref(),
            &self.op,
            self.read_version,
            version,
            &self.carried,
        )
        .await
    }

    /// Reads the versions committed after the base, checks the operation against each and
    /// moves the base to the newest read; stops early at `stop_at` (the next attempt then
    /// loses and reads on).
    async fn catch_up(&mut self, table: &TableInner, stop_at: Instant) -> Result<()> {
        let from = self.base.as_ref().map_or(0, |b| b.version());
        let entries = match table.manifests.after(from).await? {
            Some(entries) => entries,
            None => table.manifests.list().await?,
        };
        let mut newest = None;
        let mut unseen = false;
        let mut expected = from + 1;
        let base_uuid = self
            .base
            .as_ref()
            .and_then(|b| b.proto.transaction.as_ref())
            .map(|t| t.uuid.clone());
        let mut first_read = true;
        for entry in entries {
            if entry.version <= from {
                continue;
            }
            if Instant::now() >= stop_at && newest.is_some() {
                break;
            }
            self.taken = self.taken.max(entry.version);
            // A gap: versions cleaned up (or buried) before this writer could read them.
            unseen |= entry.version != expected;
            expected = entry.version + 1;
            if table.is_damaged(entry.version) {
                continue;
            }
            match table.manifest_at(&entry).await {
                Ok(committed) => {
                    // The first version read after the base, with none missing between, was
                    // built on the base (damaged ones skipped are numbered past): otherwise
                    // the table was dropped and created again since the base was read.
                    let parent = committed.proto.parent_uuid.as_str();
                    if std::mem::take(&mut first_read)
                        && !unseen
                        && !parent.is_empty()
                        && base_uuid.as_deref().is_some_and(|base| base != parent)
                    {
                        return Err(dropped_since_read(table, self.read_version));
                    }
                    self.rebase_over(table, &committed).await?;
                    newest = Some(committed);
                }
                // Cleaned up since the listing: judged by the newest's summary below.
                Err(Error::VersionNotFound { .. }) => {
                    unseen = true;
                    newest = None;
                }
                // A damaged version (a power cut took its bytes): it never committed anything
                // readable, so there is nothing to rebase over; its number stays taken.
                Err(e @ Error::Corrupt { .. }) => table.mark_damaged(entry.version, e.to_string()),
                Err(e) => return Err(e),
            }
        }
        if let Some(newest) = newest {
            if unseen {
                check_unseen(&self.op, &newest, from)?;
            }
            self.base = Some(newest);
        }
        Ok(())
    }
}

/// Removes a manifest this writer published that must not stand, durably: were it to come
/// back after a power cut, it would be a bogus version in the history.
async fn withdraw(table: &TableInner, version: u64) -> Result<()> {
    table.manifests.remove(version).await?;
    table
        .storage
        .flush(&[table.manifests.path_of(version)])
        .await
}

/// What a manifest just published turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// The next version of the table.
    Stands,
    /// A version number a cleanup had removed (the writer's base was stale).
    Reused,
    /// A version of another table of the same name: the table was dropped, and perhaps
    /// created again, since the writer read it.
    Foreign,
}

/// The error of a commit into a table dropped since `read_version` was read.
fn dropped_since_read(table: &TableInner, read_version: u64) -> Error {
    Error::TableDropped {
        table: table.name.clone(),
        read_version,
    }
}

/// Whether a manifest just published stands as the next version of the table its writer read.
///
/// Cleanup removes manifests oldest first and buries instead of removing one whose
/// predecessor it keeps, so in one table's history the version before a live one is live or
/// buried, or it and every version before it are gone. Hence:
/// - the manifest before it in place proves the number was free when this one was built on
///   it or numbered past it (a damaged one); one in the base's place that
///   this one was not built on is another table's;
/// - with it missing, a live version further down is another table's; with nothing left
///   below, a file this manifest carries from its base must still exist (a dropped table's
///   are gone);
/// - otherwise the number was free if no version follows, or the one after was built on
///   this one (else a cleanup had removed the number and it was published again).
async fn stands(
    table: &TableInner,
    manifest: &Manifest,
    base: Option<&Manifest>,
) -> Result<Standing> {
    let version = manifest.version();
    if version == 1 {
        return Ok(Standing::Stands);
    }
    let parent = manifest.proto.parent_uuid.as_str();
    if base.is_none_or(|b| b.version() != version - 1) {
        // A version numbered past (a damaged one) still in place: one metadata request.
        if table.manifests.state(version - 1).await? == ManifestState::Live {
            return Ok(Standing::Stands);
        }
    } else {
        match table.manifests.read(version - 1).await {
            Ok(Some((before, _))) => {
                let uuid = before
                    .proto
                    .transaction
                    .as_ref()
                    .map_or("", |t| t.uuid.as_str());
                return Ok(if parent.is_empty() || uuid.is_empty() || uuid == parent {
                    Standing::Stands
                } else {
                    Standing::Foreign
                });
            }
            // Damaged since it was read as the base: the number was free all the same.
            Err(Error::Corrupt { .. }) => return Ok(Standing::Stands),
            // Written by a newer quiverdb: not the base this manifest was built on.
            Err(Error::IncompatibleVersion { .. }) => return Ok(Standing::Foreign),
            Err(e) => return Err(e),
            Ok(None) => {}
        }
    }
    let states = table.manifests.states().await?;
    let before = states.iter().rev().find(|(v, _)| *v < version);
    match before {
        Some(&(v, ManifestState::Live)) if v < version - 1 => return Ok(Standing::Foreign),
        None if !carried_files_exist(table, manifest, base).await? => return Ok(Standing::Foreign),
        _ => {}
    }
    let newer = states
        .iter()
        .any(|&(v, state)| v > version && state == ManifestState::Live);
    if !newer {
        return Ok(Standing::Stands);
    }
    let ours = manifest
        .proto
        .transaction
        .as_ref()
        .map(|t| t.uuid.as_str())
        .unwrap_or_default();
    Ok(match table.manifests.read(version + 1).await? {
        Some((next, _)) if next.proto.parent_uuid == ours => Standing::Stands,
        _ => Standing::Reused,
    })
}

/// Whether a data file `manifest` carries over from `base` still exists (true when it carries
/// none): a cleanup keeps the files of the versions it keeps, a dropped table has none.
async fn carried_files_exist(
    table: &TableInner,
    manifest: &Manifest,
    base: Option<&Manifest>,
) -> Result<bool> {
    let Some(base) = base else {
        return Ok(true);
    };
    let carried = manifest
        .fragments()
        .iter()
        .filter(|f| f.id < base.proto.next_fragment_id)
        .find_map(|f| f.files.first());
    match carried {
        Some(file) => Ok(table
            .storage
            .size_of(&table.storage.path(&file.path))
            .await?
            .is_some()),
        None => Ok(true),
    }
}

/// Exponential backoff with full jitter, capped low: only one commit per connection races at a
/// time (the others wait their turn), so the crowd is a few processes, and a loser that sleeps
/// long finds more versions to rebase over when it wakes.
fn backoff(attempt: u32) -> Duration {
    let cap_ms = (2u64 << attempt.min(7)).min(25);
    let ms = rand::rng().random_range(0..=cap_ms);
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use arrow_array::{Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema, SchemaRef};

    use super::lock;
    use crate::table::{batches_stream, CreateMode, Database, Table, WriteParams};
    use crate::{ConnectOptions, Error};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]))
    }

    fn rows(ids: impl IntoIterator<Item = i64>) -> RecordBatch {
        let ids: Int64Array = ids.into_iter().collect();
        RecordBatch::try_new(schema(), vec![Arc::new(ids)]).expect("batch")
    }

    /// A connection to `uri` and its table "t" of one row.
    async fn table(uri: &str) -> (Database, Table) {
        let db = Database::connect(uri, ConnectOptions::default())
            .await
            .expect("connect");
        let t = db
            .create_table(
                "t",
                schema(),
                batches_stream(vec![rows([0])]),
                CreateMode::Create,
                WriteParams::default(),
            )
            .await
            .expect("create");
        (db, t)
    }

    fn append(t: Table, id: i64, timeout: Duration) -> tokio::task::JoinHandle<crate::Result<u64>> {
        tokio::spawn(async move {
            let params = WriteParams {
                commit_timeout: timeout,
                ..Default::default()
            };
            t.append(batches_stream(vec![rows([id])]), params).await
        })
    }

    /// Waits until `n` appends are queued on the table's open batch.
    async fn queued(t: &Table, n: usize) {
        let slot = t.inner().session.commit_slot(t.inner().storage.uri());
        for _ in 0..2_000 {
            if lock(&slot.appends).as_ref().map_or(0, Vec::len) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{n} appends never queued");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_queued_while_the_turn_is_taken_publish_as_one_version() {
        let (db, t) = table("memory://").await;
        let slot = t.inner().session.commit_slot(t.inner().storage.uri());
        let turn = slot.turn.lock().await;
        let mut appends = Vec::new();
        for id in 1..=6 {
            let handle = db.open_table("t").await.expect("open");
            appends.push(append(handle, id, Duration::from_secs(30)));
        }
        queued(&t, 6).await;
        drop(turn);
        for a in appends {
            assert_eq!(a.await.expect("join").expect("append"), 2);
        }
        let latest = db.open_table("t").await.expect("open");
        assert_eq!(latest.version(), 2);
        assert_eq!(latest.count_rows(), 7);
        let versions = latest.list_versions().await.expect("versions");
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[1].operation, "append");
        // Appends arriving after a batch closed open the next one.
        assert_eq!(
            append(latest.clone(), 7, Duration::from_secs(30))
                .await
                .expect("join")
                .expect("append"),
            3
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_written_before_a_replace_commits_alone_and_conflicts() {
        let (db, t) = table("memory://").await;
        let stale = db.open_table("t").await.expect("open");
        t.overwrite(
            schema(),
            batches_stream(vec![rows([100])]),
            WriteParams::default(),
        )
        .await
        .expect("overwrite");
        let fresh = db.open_table("t").await.expect("open");
        let slot = t.inner().session.commit_slot(t.inner().storage.uri());
        let turn = slot.turn.lock().await;
        let old = append(stale, 1, Duration::from_secs(30));
        queued(&t, 1).await;
        let new = append(fresh, 2, Duration::from_secs(30));
        queued(&t, 2).await;
        drop(turn);
        let err = old
            .await
            .expect("join")
            .expect_err("written before the overwrite");
        assert!(matches!(err, Error::CommitConflict(_)), "{err}");
        assert_eq!(new.await.expect("join").expect("append"), 3);
        t.checkout_latest().await.expect("latest");
        assert_eq!(t.count_rows(), 2);
    }

    /// A batch retries until its earliest member's deadline; then members out of time fail and
    /// the others go on alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_out_of_one_members_time_fails_only_that_member() {
        let dir = tempfile::tempdir().expect("tempdir");
        let uri = dir.path().to_str().expect("utf8");
        let (db, t) = table(uri).await;
        let other = Database::connect(uri, ConnectOptions::default())
            .await
            .expect("second connection");
        let slot = t.inner().session.commit_slot(t.inner().storage.uri());
        let turn = slot.turn.lock().await;
        let hasty = append(db.open_table("t").await.expect("open"), 1, Duration::ZERO);
        queued(&t, 1).await;
        let patient = append(
            db.open_table("t").await.expect("open"),
            2,
            Duration::from_secs(30),
        );
        queued(&t, 2).await;
        // Version 2 goes to another connection: the batch loses its first race.
        let theirs = other.open_table("t").await.expect("open");
        theirs
            .append(batches_stream(vec![rows([3])]), WriteParams::default())
            .await
            .expect("other connection");
        drop(turn);
        let err = hasty.await.expect("join").expect_err("out of time");
        assert!(matches!(err, Error::CommitTimeout { .. }), "{err}");
        assert_eq!(patient.await.expect("join").expect("append"), 3);
        t.checkout_latest().await.expect("latest");
        assert_eq!(t.count_rows(), 3);
    }
}
