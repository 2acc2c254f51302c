//! Indexes: the traits every index kind implements, the registry that maps the index type a
//! manifest stores to its implementation, the byte-weighed index cache, and the kinds
//! themselves — vector ([`vector`]: IVF_PQ, IVF_FLAT) and scalar ([`btree`], [`bitmap`]:
//! BTREE, BITMAP, LABEL_LIST).
//!
//! This layer knows files, columns and row addresses, not tables: a build reads its rows from
//! a [`ColumnSource`], a load translates addresses moved by compactions through a
//! [`RowTranslate`], and the table layer (`table::indices`) does the listing, committing and
//! caching around them. Adding a kind: implement [`IndexType`] (and [`ScalarIndex`] or the
//! vector search for its family) and add it to [`REGISTRY`].

pub mod bitmap;
pub mod btree;
pub mod cache;
pub mod calibrate;
pub mod hnsw;
pub mod ivf;
pub mod kmeans;
pub mod pq;
pub mod rq;
pub mod scalar;
pub mod sq;
pub mod vector;

use std::any::Any;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Field;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::path::Path;

pub use self::ivf::{IndexKind, IvfIndex, Partition, PartitionData, PreparedQuery};
pub use self::scalar::{Key, ScalarQuery, ScalarSearch};
pub use self::vector::{
    default_partitions, default_sub_vectors, VectorIndexDetailsProto, VectorIndexParams,
    DEFAULT_NPROBES,
};
use crate::error::Result;
use crate::storage::Storage;
use crate::vocab::ProgressFn;

/// Which kind of question an index answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexFamily {
    /// Nearest neighbours of a vector.
    Vector,
    /// Rows whose value satisfies a predicate (filters).
    Scalar,
    /// Rows whose text matches a query, ranked (BM25).
    FullText,
}

/// A loaded index (or its always-resident part: the model, the page lookup, the dictionary).
pub trait Index: Send + Sync + 'static {
    /// The type name stored in the manifest (`IVF_PQ`, `BTREE`, …).
    fn index_type(&self) -> &'static str;
    /// Heap bytes held (the index cache's weight of this entry).
    fn heap_bytes(&self) -> usize;
    fn as_any(&self) -> &dyn Any;
    fn into_any_arc(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
    /// The scalar search of a scalar index.
    fn as_scalar(&self) -> Option<&dyn ScalarIndex> {
        None
    }
}

/// Translates row addresses an index file holds (as of its build) to the version being read:
/// compactions since then moved rows; a dropped row becomes [`DROPPED_ROW`].
pub trait RowTranslate: Send + Sync {
    fn translate<'a>(&'a self, rows: &'a mut [u64]) -> BoxFuture<'a, Result<()>>;
    /// Whether addresses stay as they are (no compaction since the build).
    fn is_identity(&self) -> bool;
}

/// The address a translated row takes when a compaction dropped it (it was deleted): its
/// fragment id and offset are out of range of every fragment, so no row gate admits it.
pub const DROPPED_ROW: u64 = u64::MAX;

/// What a scalar search needs besides the index: where its parts are cached, the store
/// handle it reads them through (the reading operation's: its I/O figures count them), and
/// how its row addresses are translated.
pub struct PartContext<'a> {
    pub cache: &'a cache::IndexCache,
    pub storage: &'a crate::storage::Storage,
    /// Prefix of the cache keys of this index's parts, as read by this version (it names the
    /// file and the translation).
    pub key: &'a str,
    pub translate: &'a dyn RowTranslate,
}

/// An index answering filters.
pub trait ScalarIndex: Index {
    /// Rows the lookup kept in memory says `query` matches at most (no part is loaded), or
    /// `None` when this index cannot answer it.
    fn estimate(&self, query: &ScalarQuery) -> Option<u64>;
    /// The rows matching `query` (translated addresses, dropped rows removed).
    fn search<'a>(
        &'a self,
        query: &'a ScalarQuery,
        parts: &'a PartContext<'a>,
    ) -> BoxFuture<'a, Result<ScalarSearch>>;
}

/// The rows an index is built from: batches of two columns, the indexed column and `_rowid`.
pub trait ColumnSource: Send + Sync {
    /// Live rows it yields (an upper bound when rows are deleted meanwhile).
    fn rows(&self) -> u64;
    fn batches(&self) -> Result<BoxStream<'static, Result<RecordBatch>>>;
}

/// How to build an index, per kind.
#[derive(Debug, Clone)]
pub enum IndexConfig {
    Vector(VectorIndexParams),
    BTree,
    Bitmap,
    LabelList,
    Fts(crate::fts::FtsParams),
}

impl IndexConfig {
    /// The manifest type name of the index this config builds.
    pub fn index_type(&self) -> &'static str {
        match self {
            IndexConfig::Vector(p) => p.kind.name(),
            IndexConfig::BTree => btree::BTREE,
            IndexConfig::Bitmap => bitmap::BITMAP,
            IndexConfig::LabelList => bitmap::LABEL_LIST,
            IndexConfig::Fts(_) => crate::fts::FTS,
        }
    }
}

/// One build: the column, its rows, the file to write.
pub struct BuildJob<'a> {
    pub storage: &'a Storage,
    pub file: &'a Path,
    pub column: &'a Field,
    pub source: &'a dyn ColumnSource,
    pub config: &'a IndexConfig,
    pub progress: Option<ProgressFn>,
}

impl BuildJob<'_> {
    pub(crate) fn report(&self, phase: &'static str, done: u64, total: u64) {
        if let Some(p) = &self.progress {
            p(crate::vocab::BuildProgress { phase, done, total });
        }
    }
}

/// An index brought up to date: the one loaded (`current`, addresses translated to the version
/// read), entries of rows `keep` rejects dropped, rows of `added` folded in, written to `file`.
pub struct UpdateJob<'a> {
    pub storage: &'a Storage,
    pub file: &'a Path,
    pub column: &'a Field,
    pub current: Arc<dyn Index>,
    pub parts: &'a PartContext<'a>,
    pub keep: &'a (dyn Fn(u64) -> bool + Sync),
    pub added: &'a dyn ColumnSource,
}

/// A written index file: what the manifest records of it, and the index to cache.
pub struct Built {
    pub details: Vec<u8>,
    pub size_bytes: u64,
    /// Entries (rows, or row-value pairs of list columns) the file holds.
    pub entries: u64,
    /// Entries of deleted rows dropped (updates).
    pub removed: u64,
    /// The loaded form of what was written, to seed the cache (`None`: load on first use).
    pub loaded: Option<Arc<dyn Index>>,
}

/// Describes one index for `listIndices`/`indexStats`: the kind's own figures.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IndexDetails {
    pub distance_type: Option<String>,
    pub num_partitions: Option<u32>,
    pub num_sub_vectors: Option<u32>,
    pub num_bits: Option<u32>,
    /// Distinct values (bitmap, label list) or pages (btree) the index holds.
    pub num_distinct_values: Option<u64>,
    pub num_pages: Option<u64>,
    /// Graph indexes: links per node and the build's candidate list.
    pub m: Option<u32>,
    pub ef_construction: Option<u32>,
    /// Vector indexes: the search settings measured at build time.
    pub calibration: Option<calibrate::Calibration>,
}

/// An index file to open.
pub struct IndexFile<'a> {
    pub storage: &'a Storage,
    pub path: &'a Path,
    pub name: &'a str,
    pub details: &'a [u8],
    /// Recorded size (0: not recorded, in tables written before it was).
    pub size_bytes: u64,
    /// Fragments it was built over (before any translation): it holds rows of no other.
    pub fragments: &'a [u64],
    pub translate: &'a dyn RowTranslate,
}

/// One index kind: how its entries are checked, described, built, opened and updated.
pub trait IndexType: Send + Sync + 'static {
    /// The type name the manifest stores.
    fn name(&self) -> &'static str;
    fn family(&self) -> IndexFamily;
    /// Whether it can index `column` (the message says which types it takes).
    fn supports(&self, column: &Field) -> std::result::Result<(), String>;
    /// Checks a manifest entry's details against the column it is on.
    fn check(&self, details: &[u8], column: &Field) -> std::result::Result<(), String>;
    fn describe(&self, details: &[u8]) -> Result<IndexDetails>;
    fn build<'a>(&'a self, job: BuildJob<'a>) -> BoxFuture<'a, Result<Built>>;
    /// Reads the resident part of the index; returns it and its heap bytes.
    fn open<'a>(&'a self, file: IndexFile<'a>) -> BoxFuture<'a, Result<Arc<dyn Index>>>;
    /// Brings the index up to date without rebuilding it from scratch.
    fn update<'a>(&'a self, job: UpdateJob<'a>) -> BoxFuture<'a, Result<Built>>;
}

/// Every index kind this build knows, by manifest type name.
pub static REGISTRY: &[&dyn IndexType] = &[
    &vector::IVF_PQ_TYPE,
    &vector::IVF_FLAT_TYPE,
    &vector::IVF_HNSW_SQ_TYPE,
    &vector::IVF_RQ_TYPE,
    &vector::IVF_HNSW_PQ_TYPE,
    &btree::BTreeType,
    &bitmap::BitmapType::BITMAP_TYPE,
    &bitmap::BitmapType::LABEL_LIST_TYPE,
    &crate::fts::index::FTS_TYPE,
];

/// The implementation of the index type `name` stores, if this build knows it.
pub fn index_type(name: &str) -> Option<&'static dyn IndexType> {
    REGISTRY.iter().copied().find(|t| t.name() == name)
}

/// Checks a manifest's index entry against the column it is on. Entries of index types this
/// build does not know are left alone (a newer writer's).
pub(crate) fn check_entry(
    index_type_name: &str,
    details: &[u8],
    column: Option<&Field>,
) -> std::result::Result<(), String> {
    let Some(kind) = index_type(index_type_name) else {
        return Ok(());
    };
    let column = column.ok_or("it is not on one column of the table")?;
    kind.check(details, column)
}
