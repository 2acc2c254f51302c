//! A table's indexes: creating, listing, describing, dropping and updating them, and loading
//! them through the connection's index cache. One path serves every kind: the kind's
//! behaviour comes from the registry (`index::index_type`), this module adds what needs the
//! table — its rows as a column source, its versions, commits and compaction maps.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::index::vector::RowGate;
use crate::index::{
    self, BuildJob, ColumnSource, Index, IndexFamily, IndexFile, IndexType, PartContext,
    RowTranslate, UpdateJob,
};
pub use crate::index::{IndexConfig, IndexDetails, IndexKind, VectorIndexParams};
use crate::linalg::DistanceType;
pub use crate::vocab::{BuildProgress, ProgressFn};

use super::manifest::{IndexMetadataProto, Manifest, INDEX_FILE, INDICES_DIR};
use super::remap::{self, Coverage};
use super::{IndexChange, ScanOptions, Table, TableInner};

/// Options of [`create_index`].
#[derive(Clone, Default)]
pub struct CreateIndexOptions {
    /// The kind and its parameters; `None` picks by the column's type and data (see
    /// [`default_config`]).
    pub config: Option<IndexConfig>,
    /// Default `{column}_idx`.
    pub name: Option<String>,
    /// Replace an index of the same name (or on the same column). Without it, that is an error.
    pub replace: bool,
    pub progress: Option<ProgressFn>,
}

impl From<VectorIndexParams> for IndexConfig {
    fn from(params: VectorIndexParams) -> Self {
        IndexConfig::Vector(params)
    }
}

/// An index as `list_indices` and `index_stats` describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    pub name: String,
    pub index_type: String,
    pub columns: Vec<String>,
    /// The kind's own figures (distance and partitions of vector indexes, values of bitmaps…).
    pub details: IndexDetails,
    /// Live rows of the version that the index covers.
    pub num_indexed_rows: u64,
    /// Live rows the index does not cover yet (appended after the build; found by scanning
    /// them, or by exact search for vector indexes).
    pub num_unindexed_rows: u64,
    /// Bytes of the index file.
    pub size_bytes: u64,
}

/// The column an index entry is on, if it is on one column of the schema.
fn column_of<'m>(manifest: &'m Manifest, meta: &IndexMetadataProto) -> Option<&'m Field> {
    match meta.field_ids.as_slice() {
        [id] => manifest
            .schema
            .field_ids
            .iter()
            .position(|f| f == id)
            .map(|i| manifest.schema.arrow.field(i)),
        _ => None,
    }
}

fn kind_of(meta: &IndexMetadataProto) -> Result<&'static dyn IndexType> {
    index::index_type(&meta.index_type).ok_or_else(|| {
        Error::invalid(format!(
            "index '{}' is of type '{}', which this version of Quiver does not know; upgrade to use it",
            meta.name, meta.index_type
        ))
    })
}

fn info(manifest: &Manifest, meta: &IndexMetadataProto) -> Result<IndexInfo> {
    let details = match index::index_type(&meta.index_type) {
        Some(kind) => kind.describe(&meta.details)?,
        None => IndexDetails::default(),
    };
    let covered = remap::coverage(&manifest.proto, &meta.fragment_ids).fragments;
    let (mut indexed, mut unindexed) = (0, 0);
    for f in manifest.fragments() {
        if covered.contains(&f.id) {
            indexed += f.live_rows();
        } else {
            unindexed += f.live_rows();
        }
    }
    let columns = meta
        .field_ids
        .iter()
        .filter_map(|id| manifest.schema.field_ids.iter().position(|f| f == id))
        .map(|i| manifest.schema.arrow.field(i).name().clone())
        .collect();
    Ok(IndexInfo {
        name: meta.name.clone(),
        index_type: meta.index_type.clone(),
        columns,
        details,
        num_indexed_rows: indexed,
        num_unindexed_rows: unindexed,
        size_bytes: meta.size_bytes,
    })
}

/// Every index of the checked-out version.
pub fn list_indices(table: &Table) -> Result<Vec<IndexInfo>> {
    let manifest = table.manifest();
    manifest
        .proto
        .indices
        .iter()
        .map(|m| info(&manifest, m))
        .collect()
}

/// One index of the checked-out version, by name.
pub fn index_stats(table: &Table, name: &str) -> Result<IndexInfo> {
    let manifest = table.manifest();
    let meta = manifest
        .proto
        .indices
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| index_not_found(&manifest, name))?;
    info(&manifest, meta)
}

fn index_not_found(manifest: &Manifest, name: &str) -> Error {
    let names: Vec<&str> = manifest
        .proto
        .indices
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    Error::IndexNotFound(format!(
        "'{name}' (indexes: {})",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    ))
}

/// Removes an index from the table (a new version; the file stays for older versions).
pub async fn drop_index(table: &Table, name: &str) -> Result<u64> {
    let manifest = table.writable_manifest()?;
    if !manifest.proto.indices.iter().any(|i| i.name == name) {
        return Err(index_not_found(&manifest, name));
    }
    table
        .commit_index_change(
            manifest,
            IndexChange::Drop {
                name: name.to_string(),
            },
        )
        .await
}

/// The distance type a vector index was trained for.
pub(crate) fn index_distance(meta: &IndexMetadataProto) -> Result<DistanceType> {
    index::vector::details_distance(&meta.details)
}

/// The vector index used for `field_id` in `manifest`, if any.
pub(crate) fn vector_index_for(manifest: &Manifest, field_id: i32) -> Option<&IndexMetadataProto> {
    manifest.proto.indices.iter().find(|i| {
        i.field_ids == [field_id]
            && index::index_type(&i.index_type).is_some_and(|t| t.family() == IndexFamily::Vector)
    })
}

/// The indexes of `family` in `manifest` by the name of the column each is on (the first one
/// listed when a column has several).
pub(crate) fn indexes_by_column(
    manifest: &Manifest,
    family: IndexFamily,
) -> HashMap<String, &IndexMetadataProto> {
    let mut out = HashMap::new();
    for meta in &manifest.proto.indices {
        let wanted = index::index_type(&meta.index_type).is_some_and(|t| t.family() == family);
        if let (true, Some(column)) = (wanted, column_of(manifest, meta)) {
            out.entry(column.name().clone()).or_insert(meta);
        }
    }
    out
}

/// The scalar indexes of `manifest` by column name.
pub(crate) fn scalar_indexes(manifest: &Manifest) -> HashMap<String, &IndexMetadataProto> {
    indexes_by_column(manifest, IndexFamily::Scalar)
}

/// Translates an index's addresses through the compactions since its build.
pub(crate) struct Translation<'a> {
    inner: &'a TableInner,
    manifest: &'a Manifest,
    coverage: &'a Coverage,
}

impl RowTranslate for Translation<'_> {
    fn translate<'a>(&'a self, rows: &'a mut [u64]) -> BoxFuture<'a, Result<()>> {
        Box::pin(remap::translate(
            self.inner,
            &self.manifest.proto,
            self.coverage,
            rows,
        ))
    }

    fn is_identity(&self) -> bool {
        self.coverage.steps.is_empty()
    }
}

/// A loaded index with what reading its parts needs.
pub(crate) struct LoadedIndex {
    pub name: String,
    pub index: Arc<dyn Index>,
    /// Cache-key prefix of its parts as this version reads them.
    pub key: String,
    pub coverage: Coverage,
    /// Whether this call read it from storage (a cache miss).
    pub loaded: bool,
}

impl LoadedIndex {
    /// How its addresses are translated when read by `manifest`.
    pub(crate) fn translation<'a>(
        &'a self,
        inner: &'a TableInner,
        manifest: &'a Manifest,
    ) -> Translation<'a> {
        Translation {
            inner,
            manifest,
            coverage: &self.coverage,
        }
    }

    /// The context its parts are read in.
    pub(crate) fn parts<'a>(
        &'a self,
        inner: &'a TableInner,
        translate: &'a Translation<'a>,
    ) -> PartContext<'a> {
        PartContext {
            cache: inner.session.indexes(),
            storage: &inner.storage,
            key: &self.key,
            translate,
        }
    }
}

/// The index behind `meta` as `manifest` sees it (row addresses moved by the compactions
/// since its build), through the connection's index cache.
pub(crate) async fn load_index(
    inner: &TableInner,
    manifest: &Manifest,
    meta: &IndexMetadataProto,
) -> Result<LoadedIndex> {
    let kind = kind_of(meta)?;
    let relative = format!("{INDICES_DIR}/{}/{INDEX_FILE}", meta.uuid);
    let coverage = remap::coverage(&manifest.proto, &meta.fragment_ids);
    let key = format!(
        "{}/{relative}{}",
        inner.storage.namespace(),
        coverage.cache_suffix(&manifest.proto)
    );
    let path = inner.storage.path(&relative);
    let translate = Translation {
        inner,
        manifest,
        coverage: &coverage,
    };
    let (index, loaded) = inner
        .session
        .indexes()
        .get_or_load(&key, async {
            crate::events::index_opened(kind.family() == index::IndexFamily::Vector, &path);
            let index = kind
                .open(IndexFile {
                    storage: &inner.storage,
                    path: &path,
                    name: &meta.name,
                    details: &meta.details,
                    size_bytes: meta.size_bytes,
                    fragments: &meta.fragment_ids,
                    translate: &translate,
                })
                .await?;
            let bytes = index.heap_bytes();
            Ok((index, bytes))
        })
        .await?;
    Ok(LoadedIndex {
        name: meta.name.clone(),
        index: (*index).clone(),
        key,
        coverage,
        loaded,
    })
}

/// The vector index behind `meta`, loaded: the entry (for its parts' cache keys and
/// translation) and the index.
pub(crate) async fn load_vector(
    table: &Table,
    manifest: &Manifest,
    meta: &IndexMetadataProto,
) -> Result<(LoadedIndex, Arc<index::IvfIndex>)> {
    let loaded = load_index(table.inner(), manifest, meta).await?;
    let ivf = loaded
        .index
        .clone()
        .into_any_arc()
        .downcast::<index::IvfIndex>()
        .map_err(|_| {
            Error::corrupt(
                "manifest",
                format!("index '{}' is not a vector index", meta.name),
            )
        })?;
    Ok((loaded, ivf))
}

/// Rows of `manifest` for an index build or update: the column and `_rowid`.
struct TableSource {
    table: Table,
    manifest: Arc<Manifest>,
    column: String,
}

impl ColumnSource for TableSource {
    fn rows(&self) -> u64 {
        self.manifest.live_rows()
    }

    fn batches(&self) -> Result<BoxStream<'static, Result<RecordBatch>>> {
        let (_, stream) = self.table.scan_manifest(
            self.manifest.clone(),
            ScanOptions {
                columns: Some(vec![self.column.clone()]),
                with_row_id: true,
                ..Default::default()
            },
        )?;
        Ok(stream)
    }
}

/// Distinct values at most, as a share of rows, for `create_index` without a config to pick a
/// bitmap over a B-tree: a bitmap per value pays off while values repeat a lot.
pub const BITMAP_MAX_DISTINCT: u64 = 1_000;

/// The index `create_index` builds on `column` when no config is given: vector columns get
/// the vector default (IVF_RQ, or IVF_PQ above RaBitQ's 4,096 dimensions), list columns a label list, columns of at most
/// [`BITMAP_MAX_DISTINCT`] distinct values (and at most one per 10 rows) a bitmap, others a
/// B-tree.
pub async fn default_config(table: &Table, column: &str) -> Result<IndexConfig> {
    let manifest = table.manifest();
    let field = manifest
        .schema
        .arrow
        .field_with_name(column)
        .map_err(|_| Error::invalid(format!("column '{column}' does not exist")))?;
    match field.data_type() {
        DataType::FixedSizeList(_, dim) => {
            // RaBitQ matches PQ's recall at equal bytes, searches faster and builds 2-3× faster
            // (BENCHMARKS.md, "Quantizers at equal bytes").
            let kind = if usize::try_from(*dim).is_ok_and(|d| d <= index::rq::MAX_DIM) {
                IndexKind::IvfRq
            } else {
                IndexKind::IvfPq
            };
            return Ok(IndexConfig::Vector(VectorIndexParams {
                kind,
                ..Default::default()
            }));
        }
        DataType::List(_) | DataType::LargeList(_) => return Ok(IndexConfig::LabelList),
        _ => {}
    }
    index::btree::BTreeType
        .supports(field)
        .map_err(Error::invalid)?;
    let source = TableSource {
        table: table.clone(),
        manifest: manifest.clone(),
        column: column.to_string(),
    };
    let limit = BITMAP_MAX_DISTINCT.min(manifest.live_rows() / 10);
    // An empty table says nothing about its values: the B-tree fits any.
    let low = limit > 0 && index::bitmap::has_few_values(&source, limit).await?;
    Ok(
        if low
            && index::bitmap::BitmapType::BITMAP_TYPE
                .supports(field)
                .is_ok()
        {
            IndexConfig::Bitmap
        } else {
            IndexConfig::BTree
        },
    )
}

/// Builds an index on `column` and commits it as a new version.
pub async fn create_index(
    table: &Table,
    column: &str,
    options: CreateIndexOptions,
) -> Result<IndexInfo> {
    let manifest = table.writable_manifest()?;
    let field = manifest
        .schema
        .arrow
        .field_with_name(column)
        .map_err(|_| Error::invalid(format!("column '{column}' does not exist")))?
        .clone();
    let config = match options.config.clone() {
        Some(config) => config,
        None => default_config(table, column).await?,
    };
    let kind = index::index_type(config.index_type())
        .ok_or_else(|| Error::Internal(format!("{} is not registered", config.index_type())))?;
    kind.supports(&field).map_err(Error::invalid)?;
    let field_id = manifest.schema.field_ids[manifest.schema.column_index(column)?];
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| format!("{column}_idx"));
    if name.is_empty() || name.len() > 128 {
        return Err(Error::invalid("an index name has 1 to 128 characters"));
    }
    // One index per column and family: a vector index and a scalar index may share a column.
    let replaced: Vec<String> = manifest
        .proto
        .indices
        .iter()
        .filter(|i| {
            i.name == name
                || (i.field_ids == [field_id]
                    && index::index_type(&i.index_type).is_none_or(|t| t.family() == kind.family()))
        })
        .map(|i| i.name.clone())
        .collect();
    if !replaced.is_empty() && !options.replace {
        return Err(Error::invalid(format!(
            "column '{column}' already has an index ('{}'); pass replace: true to rebuild it",
            replaced.join("', '")
        )));
    }
    let covered: Vec<u64> = manifest.fragments().iter().map(|f| f.id).collect();
    let source = TableSource {
        table: table.clone(),
        manifest: manifest.clone(),
        column: column.to_string(),
    };
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    let inner = table.inner();
    let relative = format!("{INDICES_DIR}/{uuid}/{INDEX_FILE}");
    let path = inner.storage.path(&relative);
    let built = kind
        .build(BuildJob {
            storage: &inner.storage,
            file: &path,
            column: &field,
            source: &source,
            config: &config,
            progress: options.progress.clone(),
        })
        .await?;
    publish(
        table,
        manifest,
        Publish {
            uuid,
            name: name.clone(),
            field_id,
            index_type: kind.name(),
            built,
            covered,
            replaces: replaced,
            expected_uuid: None,
        },
    )
    .await?;
    index_stats(table, &name)
}

/// An index file written, to commit.
struct Publish {
    uuid: String,
    name: String,
    field_id: i32,
    index_type: &'static str,
    built: index::Built,
    covered: Vec<u64>,
    /// Indexes it replaces.
    replaces: Vec<String>,
    /// Commit only if the index of that name is still this one (updates).
    expected_uuid: Option<String>,
}

/// Commits a written index file (and seeds the cache with its loaded form).
async fn publish(table: &Table, read: Arc<Manifest>, p: Publish) -> Result<u64> {
    let inner = table.inner();
    let relative = format!("{INDICES_DIR}/{}/{INDEX_FILE}", p.uuid);
    let meta = IndexMetadataProto {
        size_bytes: p.built.size_bytes,
        uuid: p.uuid,
        name: p.name,
        field_ids: vec![p.field_id],
        dataset_version: read.version(),
        fragment_ids: p.covered,
        index_type: p.index_type.to_string(),
        details: p.built.details,
        deleted_rows_seen: deleted_rows(&read),
    };
    if let Some(index) = p.built.loaded {
        let bytes = index.heap_bytes();
        let key = format!("{}/{relative}", inner.storage.namespace());
        inner.session.indexes().insert(key, Arc::new(index), bytes);
    }
    table
        .commit_index_change(
            read,
            IndexChange::Create {
                index: meta,
                replaces: p.replaces,
                expected_uuid: p.expected_uuid,
            },
        )
        .await
}

/// What [`optimize_indices`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OptimizeStats {
    /// Indexes rewritten.
    pub indexes_optimized: u64,
    /// Rows newly added to an index.
    pub rows_added: u64,
    /// Entries of deleted rows removed from an index.
    pub rows_removed: u64,
    /// The version after the last change (the current one when nothing changed).
    pub version: u64,
}

/// Brings every index up to date without rebuilding it from scratch: rows of fragments it
/// does not cover are folded in (vector indexes: assigned to the existing centroids and
/// encoded with the existing codebooks; B-trees: merged; bitmaps: united), and entries of
/// deleted rows are dropped. One new version per index changed.
pub async fn optimize_indices(table: &Table) -> Result<OptimizeStats> {
    let mut stats = OptimizeStats {
        version: table.version(),
        ..Default::default()
    };
    let names: Vec<String> = table
        .writable_manifest()?
        .proto
        .indices
        .iter()
        .filter(|i| index::index_type(&i.index_type).is_some())
        .map(|i| i.name.clone())
        .collect();
    for name in names {
        // Another writer (automatic maintenance, another process) may rewrite the same index
        // meanwhile: then this one starts over from the newer version.
        let Some(done) = table
            .retry_on_conflict(
                super::write::deadline_after(super::write::DEFAULT_COMMIT_TIMEOUT),
                || optimize_one(table, &name),
            )
            .await?
        else {
            continue;
        };
        stats.version = done.version;
        stats.indexes_optimized += 1;
        stats.rows_added += done.rows_added;
        stats.rows_removed += done.rows_removed;
    }
    Ok(stats)
}

/// What rewriting one index did.
struct IndexRewrite {
    version: u64,
    rows_added: u64,
    rows_removed: u64,
}

/// Brings the index `name` up to date (`None`: nothing to do, or it is gone).
async fn optimize_one(table: &Table, name: &str) -> Result<Option<IndexRewrite>> {
    let manifest = table.writable_manifest()?;
    let Some(meta) = manifest
        .proto
        .indices
        .iter()
        .find(|i| i.name == name)
        .cloned()
    else {
        return Ok(None);
    };
    let Some(field) = column_of(&manifest, &meta).cloned() else {
        return Ok(None);
    };
    let kind = kind_of(&meta)?;
    let inner = table.inner();
    let loaded = load_index(inner, &manifest, &meta).await?;
    let covered = loaded.coverage.fragments.clone();
    let gate = live_gate(table, &manifest.with_fragments(|f| covered.contains(&f.id))).await?;
    let uncovered = manifest.with_fragments(|f| !covered.contains(&f.id));
    // Deletions since the last build or update leave entries to drop.
    let deletions = deleted_rows(&manifest) > meta.deleted_rows_seen;
    // Rewriting also folds in the compaction maps the index is read through, so loads stop
    // translating and the maps can be pruned.
    if uncovered.fragments().is_empty() && !deletions && loaded.coverage.steps.is_empty() {
        return Ok(None);
    }
    let source = TableSource {
        table: table.clone(),
        manifest: uncovered.clone(),
        column: field.name().clone(),
    };
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    let path = inner
        .storage
        .path(&format!("{INDICES_DIR}/{uuid}/{INDEX_FILE}"));
    let keep = |row: u64| gate.allows(row);
    let translate = loaded.translation(inner, &manifest);
    let parts = loaded.parts(inner, &translate);
    let built = kind
        .update(UpdateJob {
            storage: &inner.storage,
            file: &path,
            column: &field,
            current: loaded.index.clone(),
            parts: &parts,
            keep: &keep,
            added: &source,
        })
        .await?;
    let rows_added = uncovered.live_rows();
    let rows_removed = built.removed;
    let all: Vec<u64> = manifest.fragments().iter().map(|f| f.id).collect();
    let version = publish(
        table,
        manifest,
        Publish {
            uuid,
            name: name.to_string(),
            field_id: meta.field_ids[0],
            index_type: kind.name(),
            built,
            covered: all,
            replaces: vec![],
            expected_uuid: Some(meta.uuid.clone()),
        },
    )
    .await?;
    Ok(Some(IndexRewrite {
        version,
        rows_added,
        rows_removed,
    }))
}

/// Deleted rows of `manifest` (from the manifest alone).
fn deleted_rows(manifest: &Manifest) -> u64 {
    manifest
        .fragments()
        .iter()
        .filter_map(|f| f.deletion.as_ref())
        .map(|d| d.num_deleted_rows)
        .sum()
}

/// Live rows of `manifest`'s fragments, as a gate.
pub(crate) async fn live_gate(table: &Table, manifest: &Manifest) -> Result<RowGate> {
    let mut fragments: HashMap<u64, (u64, Option<Arc<RoaringBitmap>>)> = HashMap::new();
    for f in manifest.fragments() {
        let deleted = table.inner().deleted_rows(f).await?;
        fragments.insert(f.id, (f.physical_rows, deleted));
    }
    Ok(RowGate::Live(fragments))
}
