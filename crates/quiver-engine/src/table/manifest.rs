//! Manifests: the immutable description of one table version, and how they are named.
//!
//! A manifest is a protobuf message framed as a checksummed block (see FORMAT.md,
//! "Manifest"). It is stored at `_versions/{u64::MAX - version:020}.manifest`, so that a plain
//! lexicographic listing yields the newest version first on stores that list in order, and
//! any listing finds the newest by name alone, without reading manifests.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::ObjectMeta;

use crate::error::{Error, Result};
use crate::format::{
    decode_bounded_message, encode_block, Shape, MAP_ENTRY_SHAPE, MAX_DECODED_BYTES, MAX_FILE_ROWS,
};
use crate::schema::{FieldProto, TableSchema, FIELD_SHAPE};
use crate::storage::Storage;

/// Largest manifest a reader accepts (a few million fragments).
pub const MAX_MANIFEST_BYTES: u64 = 256 << 20;
/// Largest fragment id: a row address keeps the fragment id in its high 32 bits.
pub const MAX_FRAGMENT_ID: u64 = u32::MAX as u64;
/// Largest field id a manifest may hold, far below `i32::MAX` so that the ids a schema change
/// assigns after it can never overflow.
pub const MAX_FIELD_ID: i32 = 1 << 30;

/// Folder of manifests inside a table.
pub const VERSIONS_DIR: &str = "_versions";
/// Folder of data files inside a table.
pub const DATA_DIR: &str = "data";
/// Folder of deletion files inside a table.
pub const DELETIONS_DIR: &str = "_deletions";
/// Folder of index files: one `_indices/<uuid>/` folder an index.
pub const INDICES_DIR: &str = "_indices";
/// Name of an index file inside its `_indices/<uuid>/` folder.
pub const INDEX_FILE: &str = "index.qvi";
/// Folder of compaction address maps (see [`FragmentRemapProto`]).
pub const REMAPS_DIR: &str = "_remaps";
const MANIFEST_SUFFIX: &str = ".manifest";

/// What cleanup leaves in place of a removed version's manifest when the version before it is
/// kept (see `cleanup`): it holds the version number, so no writer can publish it again, and
/// reads as absent.
pub const TOMBSTONE: &[u8] = b"QVTOMB\x00\x01";

/// Name of the manifest of `version`.
pub fn manifest_name(version: u64) -> String {
    format!("{:020}{MANIFEST_SUFFIX}", u64::MAX - version)
}

/// The version a manifest file name stands for; `None` for other files.
pub fn parse_manifest_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(MANIFEST_SUFFIX)?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse::<u64>().ok().map(|r| u64::MAX - r)
}

/// A data file of a fragment.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DataFileProto {
    /// Path relative to the table folder, e.g. `data/<uuid>.qvd`.
    #[prost(string, tag = "1")]
    pub path: String,
    /// Top-level field ids the file holds, in order.
    #[prost(int32, repeated, tag = "2")]
    pub field_ids: Vec<i32>,
    #[prost(uint64, tag = "3")]
    pub size_bytes: u64,
}

/// The deletion vector of a fragment.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeletionFileProto {
    /// Path relative to the table folder, e.g. `_deletions/3-7-<uuid>.del`.
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(uint64, tag = "2")]
    pub num_deleted_rows: u64,
    /// Size of the file in bytes (0 in tables written before it was recorded: unchecked).
    #[prost(uint64, tag = "3")]
    pub size_bytes: u64,
}

/// A fragment: rows stored in data files, minus the rows its deletion vector marks.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FragmentProto {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(message, repeated, tag = "2")]
    pub files: Vec<DataFileProto>,
    /// Rows stored in the data files, deleted ones included.
    #[prost(uint64, tag = "3")]
    pub physical_rows: u64,
    #[prost(message, optional, tag = "4")]
    pub deletion: Option<DeletionFileProto>,
}

impl FragmentProto {
    /// Rows not deleted.
    pub fn live_rows(&self) -> u64 {
        self.physical_rows
            - self
                .deletion
                .as_ref()
                .map_or(0, |d| d.num_deleted_rows.min(self.physical_rows))
    }
}

/// An index over some fragments (filled in by the index issues).
#[derive(Clone, PartialEq, prost::Message)]
pub struct IndexMetadataProto {
    #[prost(string, tag = "1")]
    pub uuid: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(int32, repeated, tag = "3")]
    pub field_ids: Vec<i32>,
    #[prost(uint64, tag = "4")]
    pub dataset_version: u64,
    #[prost(uint64, repeated, tag = "5")]
    pub fragment_ids: Vec<u64>,
    #[prost(string, tag = "6")]
    pub index_type: String,
    #[prost(bytes = "vec", tag = "7")]
    pub details: Vec<u8>,
    /// Size of the index file in bytes (0 in tables written before it was recorded).
    #[prost(uint64, tag = "8")]
    pub size_bytes: u64,
    /// Deleted rows of the version the index was built or last updated at: more deletions
    /// since then leave entries for an update to drop.
    #[prost(uint64, tag = "9")]
    pub deleted_rows_seen: u64,
}

/// One group of a compaction: the fragments it replaced and the ones it wrote, in order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RemapGroupProto {
    #[prost(uint64, repeated, tag = "1")]
    pub old_fragment_ids: Vec<u64>,
    #[prost(uint64, repeated, tag = "2")]
    pub new_fragment_ids: Vec<u64>,
}

/// How a compaction moved rows: indexes built before it translate their row addresses through
/// this on load, so compaction never rewrites or blocks an index. The per-row detail (which
/// rows the compaction dropped) lives in the file at `path`; the manifest keeps only the
/// fragment ids, and drops the entry once no index needs it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FragmentRemapProto {
    /// The version the compaction committed.
    #[prost(uint64, tag = "1")]
    pub version: u64,
    /// Relative path of the map file, e.g. `_remaps/<uuid>.remap`.
    #[prost(string, tag = "2")]
    pub path: String,
    #[prost(uint64, tag = "3")]
    pub size_bytes: u64,
    #[prost(message, repeated, tag = "4")]
    pub groups: Vec<RemapGroupProto>,
    /// Commit time of the compaction, microseconds since the Unix epoch.
    #[prost(int64, tag = "5")]
    pub created_micros: i64,
}

/// What produced a version.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TransactionProto {
    /// `create`, `overwrite`, `append`, `delete` or `restore`.
    #[prost(string, tag = "1")]
    pub operation: String,
    /// Version the writer read before writing.
    #[prost(uint64, tag = "2")]
    pub read_version: u64,
    #[prost(string, tag = "3")]
    pub uuid: String,
    #[prost(uint64, repeated, tag = "4")]
    pub added_fragment_ids: Vec<u64>,
    #[prost(uint64, repeated, tag = "5")]
    pub modified_fragment_ids: Vec<u64>,
    #[prost(uint64, repeated, tag = "6")]
    pub removed_fragment_ids: Vec<u64>,
    /// For `restore`: the version restored.
    #[prost(uint64, tag = "7")]
    pub restored_version: u64,
}

/// The stored manifest (protobuf message `Manifest`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ManifestProto {
    #[prost(uint64, tag = "1")]
    pub version: u64,
    /// Commit time, microseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp_micros: i64,
    #[prost(message, repeated, tag = "3")]
    pub fields: Vec<FieldProto>,
    #[prost(map = "string, string", tag = "4")]
    pub schema_metadata: HashMap<String, String>,
    #[prost(message, repeated, tag = "5")]
    pub fragments: Vec<FragmentProto>,
    #[prost(message, repeated, tag = "6")]
    pub indices: Vec<IndexMetadataProto>,
    #[prost(message, optional, tag = "7")]
    pub transaction: Option<TransactionProto>,
    /// e.g. `quiverdb 0.1.0`.
    #[prost(string, tag = "8")]
    pub writer_version: String,
    /// Id the next new fragment gets.
    #[prost(uint64, tag = "9")]
    pub next_fragment_id: u64,
    /// Largest field id ever used, so dropped ids are never reused.
    #[prost(int32, tag = "10")]
    pub max_field_id: i32,
    /// Address maps of compactions that some index still needs, oldest first.
    #[prost(message, repeated, tag = "11")]
    pub remaps: Vec<FragmentRemapProto>,
    /// The newest version that replaced the table or changed its schema, and the newest that
    /// added rows: a writer rebasing over versions already cleaned up checks against these.
    #[prost(uint64, tag = "12")]
    pub last_replace_version: u64,
    #[prost(uint64, tag = "13")]
    pub last_rows_added_version: u64,
    /// Transaction uuid of the version this one was built on (empty for a first version):
    /// lets a writer tell its own successor from another writer's.
    #[prost(string, tag = "14")]
    pub parent_uuid: String,
}

static DATA_FILE_SHAPE: Shape = Shape {
    size: std::mem::size_of::<DataFileProto>(),
    messages: &[],
    repeated: &[2],
};

static DELETION_FILE_SHAPE: Shape = Shape {
    size: std::mem::size_of::<DeletionFileProto>(),
    messages: &[],
    repeated: &[],
};

static FRAGMENT_SHAPE: Shape = Shape {
    size: std::mem::size_of::<FragmentProto>(),
    messages: &[(2, &DATA_FILE_SHAPE), (4, &DELETION_FILE_SHAPE)],
    repeated: &[],
};

static INDEX_METADATA_SHAPE: Shape = Shape {
    size: std::mem::size_of::<IndexMetadataProto>(),
    messages: &[],
    repeated: &[3, 5],
};

static TRANSACTION_SHAPE: Shape = Shape {
    size: std::mem::size_of::<TransactionProto>(),
    messages: &[],
    repeated: &[4, 5, 6],
};

static REMAP_GROUP_SHAPE: Shape = Shape {
    size: std::mem::size_of::<RemapGroupProto>(),
    messages: &[],
    repeated: &[1, 2],
};

static FRAGMENT_REMAP_SHAPE: Shape = Shape {
    size: std::mem::size_of::<FragmentRemapProto>(),
    messages: &[(4, &REMAP_GROUP_SHAPE)],
    repeated: &[],
};

/// [`ManifestProto`]: every message-typed field, so decoding is bounded before it starts.
pub static MANIFEST_SHAPE: Shape = Shape {
    size: std::mem::size_of::<ManifestProto>(),
    messages: &[
        (3, &FIELD_SHAPE),
        (4, &MAP_ENTRY_SHAPE),
        (5, &FRAGMENT_SHAPE),
        (6, &INDEX_METADATA_SHAPE),
        (7, &TRANSACTION_SHAPE),
        (11, &FRAGMENT_REMAP_SHAPE),
    ],
    repeated: &[],
};

/// A decoded manifest with its schema resolved.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub proto: ManifestProto,
    pub schema: TableSchema,
}

impl Manifest {
    pub fn version(&self) -> u64 {
        self.proto.version
    }

    pub fn fragments(&self) -> &[FragmentProto] {
        &self.proto.fragments
    }

    /// This version restricted to the fragments `keep` accepts (for searches that treat
    /// indexed and unindexed fragments apart).
    pub fn with_fragments(&self, keep: impl Fn(&FragmentProto) -> bool) -> Arc<Manifest> {
        let mut proto = self.proto.clone();
        proto.fragments.retain(keep);
        Arc::new(Manifest {
            proto,
            schema: self.schema.clone(),
        })
    }

    /// Bytes this manifest holds in memory, as a cache is charged for it. Walks everything
    /// that grows with the table (fragments, index coverage lists, compaction maps), since a
    /// cache charging less than what it holds is a cache without a bound.
    pub fn heap_bytes(&self) -> usize {
        fn vec<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        let p = &self.proto;
        let fragments: usize = p
            .fragments
            .iter()
            .map(|f| {
                vec(&f.files)
                    + f.files
                        .iter()
                        .map(|d| d.path.capacity() + vec(&d.field_ids))
                        .sum::<usize>()
                    + f.deletion.as_ref().map_or(0, |d| d.path.capacity())
            })
            .sum();
        let indices: usize = p
            .indices
            .iter()
            .map(|i| {
                i.uuid.capacity()
                    + i.name.capacity()
                    + i.index_type.capacity()
                    + vec(&i.field_ids)
                    + vec(&i.fragment_ids)
                    + i.details.capacity()
            })
            .sum();
        let remaps: usize = p
            .remaps
            .iter()
            .map(|r| {
                r.path.capacity()
                    + vec(&r.groups)
                    + r.groups
                        .iter()
                        .map(|g| vec(&g.old_fragment_ids) + vec(&g.new_fragment_ids))
                        .sum::<usize>()
            })
            .sum();
        let transaction = p.transaction.as_ref().map_or(0, |t| {
            t.operation.capacity()
                + t.uuid.capacity()
                + vec(&t.added_fragment_ids)
                + vec(&t.modified_fragment_ids)
                + vec(&t.removed_fragment_ids)
        });
        // Fields are held twice (the proto's and the schema's) beside the Arrow schema.
        let fields: usize = p
            .fields
            .iter()
            .map(|f| {
                2 * (std::mem::size_of_val(f) + f.name.capacity() + f.logical_type.capacity()) + 128
            })
            .sum();
        let metadata: usize = p
            .schema_metadata
            .iter()
            .map(|(k, v)| 2 * (k.len() + v.len() + 48))
            .sum();
        std::mem::size_of::<Manifest>()
            + vec(&p.fragments)
            + fragments
            + vec(&p.indices)
            + indices
            + vec(&p.remaps)
            + remaps
            + transaction
            + fields
            + metadata
            + p.writer_version.capacity()
            + p.parent_uuid.capacity()
    }

    /// Live rows over all fragments.
    pub fn live_rows(&self) -> u64 {
        self.proto
            .fragments
            .iter()
            .map(FragmentProto::live_rows)
            .sum()
    }

    pub fn operation(&self) -> &str {
        self.proto
            .transaction
            .as_ref()
            .map_or("unknown", |t| t.operation.as_str())
    }

    fn from_proto(proto: ManifestProto, path: &Path) -> Result<Self> {
        let bad = |why: String| Error::corrupt(path, why);
        if proto.max_field_id > MAX_FIELD_ID || proto.fields.iter().any(|f| f.id > MAX_FIELD_ID) {
            return Err(bad(format!("manifest uses field ids above {MAX_FIELD_ID}")));
        }
        let schema = TableSchema::from_protos(proto.fields.clone(), proto.schema_metadata.clone())
            .map_err(|e| e.corrupt_in(path, "manifest schema"))?;
        if proto.next_fragment_id > MAX_FRAGMENT_ID + 1 {
            return Err(bad(format!(
                "manifest's next fragment id {} is above {MAX_FRAGMENT_ID}",
                proto.next_fragment_id
            )));
        }
        let mut seen = std::collections::HashSet::with_capacity(proto.fragments.len());
        for f in &proto.fragments {
            if !seen.insert(f.id) || f.id >= proto.next_fragment_id {
                return Err(bad(format!(
                    "manifest lists fragment id {} twice or at or above its next id",
                    f.id
                )));
            }
            if f.files.is_empty() || f.files.iter().any(|d| d.path.is_empty()) {
                return Err(bad(format!(
                    "fragment {} lists no data file, or one without a path",
                    f.id
                )));
            }
            if f.physical_rows > MAX_FILE_ROWS {
                return Err(bad(format!(
                    "fragment {} claims {} rows; a fragment holds at most {MAX_FILE_ROWS}",
                    f.id, f.physical_rows
                )));
            }
            if let Some(d) = &f.deletion {
                if d.path.is_empty() || d.num_deleted_rows > f.physical_rows {
                    return Err(bad(format!(
                        "fragment {} has {} rows but a deletion vector of {} (path '{}')",
                        f.id, f.physical_rows, d.num_deleted_rows, d.path
                    )));
                }
            }
        }
        for remap in &proto.remaps {
            let ids = remap
                .groups
                .iter()
                .flat_map(|g| g.old_fragment_ids.iter().chain(&g.new_fragment_ids));
            if remap.path.is_empty()
                || remap.groups.iter().any(|g| g.old_fragment_ids.is_empty())
                || ids.clone().any(|&id| id >= proto.next_fragment_id)
            {
                return Err(bad(format!(
                    "compaction map of version {} has no path, an empty group or a fragment id at or above the next id",
                    remap.version
                )));
            }
        }
        for index in &proto.indices {
            let column = match index.field_ids.as_slice() {
                [id] => schema.field_ids.iter().position(|f| f == id),
                _ => None,
            }
            .map(|i| schema.arrow.field(i));
            crate::index::check_entry(&index.index_type, &index.details, column)
                .map_err(|why| bad(format!("index '{}': {why}", index.name)))?;
        }
        Ok(Manifest { proto, schema })
    }

    /// Encodes the manifest as a checksummed block.
    pub fn encode(&self) -> Bytes {
        Bytes::from(encode_block(prost::Message::encode_to_vec(&self.proto)))
    }

    /// Decodes and validates a manifest read from `path`.
    pub fn decode(bytes: &[u8], path: &Path, expected_version: u64) -> Result<Self> {
        let mut budget = MAX_DECODED_BYTES;
        let proto: ManifestProto =
            decode_bounded_message(bytes, path, "manifest", &MANIFEST_SHAPE, &mut budget)?;
        // Versions count from 1, and one more must fit after it.
        if proto.version == 0 || proto.version == u64::MAX {
            return Err(Error::corrupt(
                path,
                format!("manifest has the impossible version {}", proto.version),
            ));
        }
        if proto.version != expected_version {
            return Err(Error::corrupt(
                path,
                format!(
                    "manifest says version {} but is named for version {expected_version}",
                    proto.version
                ),
            ));
        }
        Self::from_proto(proto, path)
    }
}

/// What stands at a version's manifest name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestState {
    Live,
    /// A tombstone left by cleanup.
    Buried,
    Absent,
}

/// A committed version as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    pub version: u64,
    /// Tells this manifest object apart from another one later written under the same name
    /// (a table dropped and created again): the e-tag, or size and modification time.
    pub identity: String,
}

fn identity(meta: &ObjectMeta) -> String {
    match &meta.e_tag {
        Some(tag) => tag.clone(),
        None => format!("{}-{:?}", meta.size, meta.last_modified),
    }
}

/// Reads manifests of one table.
#[derive(Debug, Clone)]
pub struct ManifestStore {
    storage: Storage,
}

impl ManifestStore {
    pub fn new(table_storage: Storage) -> Self {
        ManifestStore {
            storage: table_storage,
        }
    }

    pub fn path_of(&self, version: u64) -> Path {
        self.storage
            .path(&format!("{VERSIONS_DIR}/{}", manifest_name(version)))
    }

    /// Every committed version, ascending (one listing, no manifest reads).
    pub async fn list(&self) -> Result<Vec<VersionEntry>> {
        let listing = self.storage.list(&self.storage.path(VERSIONS_DIR)).await?;
        let mut versions: Vec<VersionEntry> = listing
            .iter()
            .filter(|m| m.size != TOMBSTONE.len() as u64)
            .filter_map(|m| {
                let version = m.location.filename().and_then(parse_manifest_name)?;
                Some(VersionEntry {
                    version,
                    identity: identity(m),
                })
            })
            .collect();
        versions.sort_unstable_by_key(|v| v.version);
        Ok(versions)
    }

    /// Every version's manifest name in use, ascending, with what stands there (tombstones
    /// included; one listing).
    pub async fn states(&self) -> Result<Vec<(u64, ManifestState)>> {
        let listing = self.storage.list(&self.storage.path(VERSIONS_DIR)).await?;
        let mut states: Vec<(u64, ManifestState)> = listing
            .iter()
            .filter_map(|m| {
                let version = m.location.filename().and_then(parse_manifest_name)?;
                let state = if m.size == TOMBSTONE.len() as u64 {
                    ManifestState::Buried
                } else {
                    ManifestState::Live
                };
                Some((version, state))
            })
            .collect();
        states.sort_unstable_by_key(|s| s.0);
        Ok(states)
    }

    /// The versions after `from`, oldest first, found by asking for `from + 1`, `from + 2`, …
    /// until one is absent: as many metadata requests as new versions, where a listing costs
    /// one entry per version in the history. `None` when `from + 1` is absent (nothing new,
    /// or versions cleaned up in between: the caller lists instead). Tombstones are left out,
    /// as `list` leaves them out.
    pub async fn after(&self, from: u64) -> Result<Option<Vec<VersionEntry>>> {
        let mut entries = Vec::new();
        let mut version = from + 1;
        while let Some(meta) = self.storage.head(&self.path_of(version)).await? {
            if meta.size != TOMBSTONE.len() as u64 {
                entries.push(VersionEntry {
                    version,
                    identity: identity(&meta),
                });
            }
            version += 1;
        }
        Ok((version > from + 1).then_some(entries))
    }

    /// The newest committed version, if any.
    pub async fn latest(&self) -> Result<Option<VersionEntry>> {
        Ok(self.list().await?.pop())
    }

    /// Reads the manifest of `version`; `Ok(None)` when it does not exist.
    pub async fn read(&self, version: u64) -> Result<Option<(Arc<Manifest>, VersionEntry)>> {
        let path = self.path_of(version);
        match self
            .storage
            .read_all_at_most(&path, MAX_MANIFEST_BYTES, "manifest")
            .await
        {
            Ok((bytes, _)) if bytes.as_ref() == TOMBSTONE => Ok(None),
            Ok((bytes, meta)) => Ok(Some((
                Arc::new(Manifest::decode(&bytes, &path, version)?),
                VersionEntry {
                    version,
                    identity: identity(&meta),
                },
            ))),
            Err(Error::Storage(object_store::Error::NotFound { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// What stands at `version`'s name (one metadata request).
    pub async fn state(&self, version: u64) -> Result<ManifestState> {
        Ok(match self.storage.size_of(&self.path_of(version)).await? {
            None => ManifestState::Absent,
            Some(size) if size == TOMBSTONE.len() as u64 => ManifestState::Buried,
            Some(_) => ManifestState::Live,
        })
    }

    /// Removes the manifest of `version` (a published one that must not stand).
    pub async fn remove(&self, version: u64) -> Result<()> {
        self.storage.delete(&self.path_of(version)).await
    }

    /// Replaces the manifest of `version` by a [`TOMBSTONE`].
    pub async fn bury(&self, version: u64) -> Result<()> {
        self.storage
            .put(&self.path_of(version), Bytes::from_static(TOMBSTONE))
            .await
    }

    /// Publishes `manifest` as its version if no writer did so first. Returns `false` when
    /// that version already exists (the caller lost the race). Not flushed: the caller does
    /// (see `commit`).
    pub async fn try_publish(&self, manifest: &Manifest) -> Result<bool> {
        self.storage
            .create(&self.path_of(manifest.version()), manifest.encode())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_newest_first_and_parse_back() {
        let a = manifest_name(1);
        let b = manifest_name(2);
        let c = manifest_name(10);
        assert!(c < b && b < a);
        assert_eq!(parse_manifest_name(&c), Some(10));
        assert_eq!(parse_manifest_name("foo.manifest"), None);
        assert_eq!(
            parse_manifest_name(&format!("{}.tmp", "0".repeat(20))),
            None
        );
    }

    /// A manifest of one fragment and an index on a float vector column of length 4.
    fn sample() -> ManifestProto {
        use arrow_schema::{DataType, Field, Schema};
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let schema = TableSchema::new(&Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::FixedSizeList(item, 4), true),
        ]))
        .unwrap();
        let details = crate::index::VectorIndexDetailsProto {
            distance_type: "l2".into(),
            num_partitions: 2,
            dim: 4,
            ..Default::default()
        };
        ManifestProto {
            version: 3,
            fields: schema.fields,
            fragments: vec![FragmentProto {
                id: 0,
                files: vec![DataFileProto {
                    path: "data/a.qvd".into(),
                    field_ids: vec![0, 1],
                    size_bytes: 100,
                }],
                physical_rows: 10,
                deletion: Some(DeletionFileProto {
                    path: "_deletions/0-2-b.del".into(),
                    num_deleted_rows: 2,
                    size_bytes: 24,
                }),
            }],
            indices: vec![IndexMetadataProto {
                name: "v_idx".into(),
                field_ids: vec![1],
                fragment_ids: vec![0],
                index_type: "IVF_FLAT".into(),
                details: prost::Message::encode_to_vec(&details),
                ..Default::default()
            }],
            next_fragment_id: 1,
            max_field_id: 2,
            ..Default::default()
        }
    }

    fn decode(proto: &ManifestProto) -> Result<Manifest> {
        let bytes = encode_block(prost::Message::encode_to_vec(proto));
        Manifest::decode(&bytes, &Path::from("m"), proto.version)
    }

    fn with_details(
        m: &mut ManifestProto,
        edit: impl Fn(&mut crate::index::VectorIndexDetailsProto),
    ) {
        let index = &mut m.indices[0];
        let mut details = prost::Message::decode(index.details.as_slice()).unwrap();
        edit(&mut details);
        index.details = prost::Message::encode_to_vec(&details);
    }

    #[test]
    fn a_manifest_is_charged_for_what_grows_with_the_table() {
        let small = decode(&sample()).expect("valid").heap_bytes();
        let mut proto = sample();
        proto.indices[0].fragment_ids = (0..5_000).collect();
        proto.remaps = (0..1_000)
            .map(|v| FragmentRemapProto {
                version: v + 1,
                path: format!("_remaps/{v:032}.remap"),
                groups: vec![RemapGroupProto {
                    old_fragment_ids: (v * 20..v * 20 + 20).collect(),
                    new_fragment_ids: vec![v],
                }],
                ..Default::default()
            })
            .collect();
        proto.version = 1_001;
        proto.next_fragment_id = 20_000;
        let encoded = prost::Message::encoded_len(&proto);
        let big = decode(&proto).expect("valid").heap_bytes();
        // At least the decoded ids (8 bytes each, over 3 when encoded) and the paths.
        let ids = 5_000 + 1_000 * 21;
        assert!(
            big >= small + ids * 8 + 1_000 * 45,
            "{big} bytes for {ids} ids"
        );
        assert!(big >= encoded, "{big} < {encoded} encoded");
    }

    #[test]
    fn impossible_manifests_are_corrupt() {
        decode(&sample()).expect("the sample is valid");
        let corrupt = |edit: &dyn Fn(&mut ManifestProto)| {
            let mut proto = sample();
            edit(&mut proto);
            let err = decode(&proto).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        };
        corrupt(&|m| m.version = 0);
        corrupt(&|m| m.version = u64::MAX);
        corrupt(&|m| m.max_field_id = MAX_FIELD_ID + 1);
        corrupt(&|m| m.fields[0].id = MAX_FIELD_ID + 1);
        corrupt(&|m| m.next_fragment_id = MAX_FRAGMENT_ID + 2);
        corrupt(&|m| m.fragments[0].physical_rows = MAX_FILE_ROWS + 1);
        corrupt(&|m| m.fragments[0].files[0].path.clear());
        corrupt(&|m| {
            if let Some(d) = &mut m.fragments[0].deletion {
                d.num_deleted_rows = 11;
            }
        });
        corrupt(&|m| with_details(m, |d| d.dim = 8));
        corrupt(&|m| with_details(m, |d| d.distance_type = "hamming".into()));
        corrupt(&|m| with_details(m, |d| d.distance_type = "taxicab".into()));
        corrupt(&|m| m.indices[0].field_ids = vec![0]);
        corrupt(&|m| m.indices[0].details = vec![0xff]);
        // Index types this build does not know are left to their readers.
        let mut other = sample();
        other.indices[0].index_type = "INVERTED".into();
        other.indices[0].details = vec![0xff];
        decode(&other).expect("an unknown index type is not checked");
        // Known scalar kinds are: their details must fit the column.
        let mut btree = sample();
        btree.indices[0].index_type = "BTREE".into();
        btree.indices[0].details = vec![0xff];
        assert!(
            decode(&btree).is_err(),
            "damaged B-tree details are corrupt"
        );
    }

    #[test]
    fn a_manifest_claiming_millions_of_fragments_is_refused_before_decoding() {
        // Eight million empty fragments: 16 MiB encoded, far more as structs.
        let payload = [0x2a, 0x00].repeat(8 << 20);
        let bytes = encode_block(payload);
        let err = Manifest::decode(&bytes, &Path::from("m"), 1).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { reason, .. } if reason.contains("memory")),
            "{err}"
        );
    }
}
