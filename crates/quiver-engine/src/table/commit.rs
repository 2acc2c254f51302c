//! Commits: turning an operation into the next manifest, publishing it atomically, and
//! rebasing when another writer got there first.
//!
//! Publishing is a put-if-absent of the next version's manifest, which the store makes atomic
//! (a hard link on local disk, a conditional write in memory and on S3). A writer that loses
//! reads the versions committed since it read, checks whether they conflict with its own
//! operation, and if not rebuilds its manifest on top of the newest one and tries again, with
//! jittered exponential backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use roaring::RoaringBitmap;

use super::deletion::write_deletion_file;
use super::manifest::{
    DataFileProto, FragmentProto, IndexMetadataProto, Manifest, ManifestProto, TransactionProto,
};
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
    /// An upsert: like `Update`, but new fragments may hold new keys, so any rows another
    /// writer added meanwhile conflict (they could hold the same keys).
    MergeInsert {
        rows: BTreeMap<u64, RoaringBitmap>,
        fragments: Vec<NewFragment>,
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
    if matches!(ours, Operation::MergeInsert { .. }) && adds_rows {
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
        // was added or deleted since.
        "append" | "delete" | "update" | "merge_insert" | "create_index" | "drop_index" => Ok(()),
        theirs => Err(Error::CommitConflict(format!(
            "a concurrent {theirs} replaced the table at version {} while this {} was in progress",
            committed.version(),
            ours.name()
        ))),
    }
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

/// Builds the manifest that applies `op` on top of `base` (the newest version known).
async fn build_manifest(
    table: &TableInner,
    base: Option<&Manifest>,
    op: &Operation,
    read_version: u64,
) -> Result<Manifest> {
    let version = base.map_or(1, |b| b.version() + 1);
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
        | (Operation::MergeInsert { rows, fragments }, Some(base)) => {
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
        (Operation::Restore { from }, Some(base)) => {
            txn.restored_version = from.version();
            ManifestProto {
                fields: from.proto.fields.clone(),
                schema_metadata: from.proto.schema_metadata.clone(),
                fragments: from.proto.fragments.clone(),
                indices: from.proto.indices.clone(),
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
    let proto = ManifestProto {
        version,
        timestamp_micros: now_micros(),
        transaction: Some(txn),
        writer_version: format!("quiverdb {}", env!("CARGO_PKG_VERSION")),
        ..proto
    };
    let schema = TableSchema::from_protos(proto.fields.clone(), proto.schema_metadata.clone())?;
    Ok(Manifest { proto, schema })
}

/// Commits `op`, read at `read` (None for a table that does not exist yet). Returns the
/// published manifest.
pub(crate) async fn commit(
    table: &TableInner,
    read: Option<Arc<Manifest>>,
    op: Operation,
    max_retries: u32,
) -> Result<Arc<Manifest>> {
    let read_version = read.as_ref().map_or(0, |m| m.version());
    let mut base = read;
    for attempt in 0..=max_retries {
        let manifest = build_manifest(table, base.as_deref(), &op, read_version).await?;
        if table.manifests.try_publish(&manifest).await? {
            return Ok(Arc::new(manifest));
        }
        // Lost the race: look at everything committed since our base.
        let from = base.as_ref().map_or(0, |b| b.version());
        if matches!(op, Operation::Create { .. }) {
            return Err(Error::TableAlreadyExists(table.name.clone()));
        }
        let mut newest = None;
        for entry in table.manifests.list().await? {
            if entry.version > from {
                let committed = table.manifest_at(&entry).await?;
                check_conflict(&op, &committed)?;
                newest = Some(committed);
            }
        }
        if newest.is_some() {
            base = newest;
        }
        tokio::time::sleep(backoff(attempt)).await;
    }
    Err(Error::CommitRetriesExhausted {
        attempts: max_retries + 1,
    })
}

/// Exponential backoff with full jitter, capped so a crowd of writers drains quickly.
fn backoff(attempt: u32) -> Duration {
    let cap_ms = (2u64 << attempt.min(7)).min(200);
    let ms = rand::rng().random_range(0..=cap_ms);
    Duration::from_millis(ms)
}
