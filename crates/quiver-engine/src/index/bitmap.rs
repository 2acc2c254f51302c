//! BITMAP and LABEL_LIST: one roaring bitmap of row addresses per distinct value (BITMAP: the
//! column's values; LABEL_LIST: the values inside a list column's lists), plus one for null
//! rows. The dictionary of values lives in the lookup, in memory; each bitmap is a part of
//! the container, read on demand through the index cache.
//!
//! BITMAP answers `=`, `IN`, `IS [NOT] NULL` and ranges (the union of the values in range);
//! LABEL_LIST answers `array_has`, `array_has_any` (union) and `array_has_all` (intersection).
//! An update unites each value's old bitmap (deleted rows dropped) with the new rows'.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field};
use futures::future::BoxFuture;
use futures::StreamExt;
use object_store::path::Path;
use roaring::RoaringTreemap;

use super::btree::{check_scalar, decode_details};
use super::scalar::{
    key_kind, translate_rows, treemap_of, ColumnKeys, Container, ContainerWriter, Key, KeyKind,
    KeyRef, ScalarDetailsProto, ScalarQuery, ScalarSearch, SUPPORTED_TYPES,
};
use super::{
    BuildJob, Built, ColumnSource, Index, IndexConfig, IndexDetails, IndexFamily, IndexFile,
    IndexType, PartContext, ScalarIndex, UpdateJob,
};
use crate::error::{Error, Result};
use crate::storage::Storage;

/// Manifest type names.
pub const BITMAP: &str = "BITMAP";
pub const LABEL_LIST: &str = "LABEL_LIST";
/// Most distinct values a bitmap index holds (its dictionary stays in memory): a column with
/// more is a B-tree's.
pub const MAX_DISTINCT_VALUES: usize = 1_000_000;

/// A fast hasher for the per-row value lookups of a build (keys come from the table, and the
/// map lives only for the build).
type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

/// Adds `row` to `rows`: appended when rows come in ascending order (as a scan yields them),
/// inserted otherwise.
#[inline]
fn add_row(rows: &mut RoaringTreemap, row: u64) {
    if rows.try_push(row).is_err() {
        rows.insert(row);
    }
}

/// Bitmaps per value being collected.
#[derive(Default)]
struct ValueRows {
    nums: FastMap<u64, RoaringTreemap>,
    bytes: FastMap<Vec<u8>, RoaringTreemap>,
    nulls: RoaringTreemap,
}

impl ValueRows {
    fn len(&self) -> usize {
        self.nums.len() + self.bytes.len()
    }

    #[inline]
    fn add(&mut self, key: KeyRef<'_>, row: u64) {
        match key {
            KeyRef::Num(n) => add_row(self.nums.entry(n).or_default(), row),
            KeyRef::Bytes(b) => match self.bytes.get_mut(b) {
                Some(rows) => add_row(rows, row),
                None => {
                    self.bytes
                        .insert(b.to_vec(), RoaringTreemap::from_iter([row]));
                }
            },
        }
    }

    /// Adds the rows of a batch of (column, `_rowid`).
    fn add_batch(&mut self, batch: &RecordBatch, list: bool) -> Result<()> {
        let rows = batch.column(1).as_primitive::<UInt64Type>().values();
        let column = batch.column(0);
        if !list {
            let keys = ColumnKeys::new(column.as_ref())?;
            for (i, &row) in rows.iter().enumerate() {
                match keys.get(i) {
                    Some(key) => self.add(key, row),
                    None => add_row(&mut self.nulls, row),
                }
            }
            return Ok(());
        }
        let (offsets, values): (Vec<usize>, _) = match column.data_type() {
            DataType::List(_) => {
                let l = column.as_list::<i32>();
                (
                    l.value_offsets().iter().map(|&o| o as usize).collect(),
                    l.values().clone(),
                )
            }
            DataType::LargeList(_) => {
                let l = column.as_list::<i64>();
                (
                    l.value_offsets().iter().map(|&o| o as usize).collect(),
                    l.values().clone(),
                )
            }
            other => {
                return Err(Error::invalid(format!(
                    "LABEL_LIST indexes list columns, not {other}"
                )))
            }
        };
        let keys = ColumnKeys::new(values.as_ref())?;
        for (i, &row) in rows.iter().enumerate() {
            if column.is_null(i) {
                add_row(&mut self.nulls, row);
                continue;
            }
            for j in offsets[i]..offsets[i + 1] {
                if let Some(key) = keys.get(j) {
                    self.add(key, row);
                }
            }
        }
        Ok(())
    }

    /// The values and their rows, in key order.
    fn into_sorted(self) -> Vec<(Key, RoaringTreemap)> {
        let mut out: Vec<(Key, RoaringTreemap)> = self
            .nums
            .into_iter()
            .map(|(k, r)| (Key::Num(k), r))
            .chain(self.bytes.into_iter().map(|(k, r)| (Key::Bytes(k), r)))
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// The key kind of the values `column` holds (list columns: of their items).
fn value_kind(column: &Field, list: bool) -> std::result::Result<KeyKind, String> {
    let name = if list { LABEL_LIST } else { BITMAP };
    let values = match (column.data_type(), list) {
        (DataType::List(item) | DataType::LargeList(item), true) => item.data_type(),
        (other, true) => {
            return Err(format!(
            "{name} indexes list columns; '{}' is {other} (use Index.bitmap() or Index.btree())",
            column.name()
        ))
        }
        (other, false) => other,
    };
    key_kind(values).ok_or_else(|| {
        format!(
            "{name} indexes {}{SUPPORTED_TYPES}; '{}' is {}",
            if list { "lists of " } else { "" },
            column.name(),
            column.data_type()
        )
    })
}

fn too_many(column: &Field) -> Error {
    Error::invalid(format!(
        "column '{}' has more than {MAX_DISTINCT_VALUES} distinct values: a bitmap index is for columns of few values; use Index.btree()",
        column.name()
    ))
}

/// Whether the column of `source` holds at most `limit` distinct non-null values (stops
/// reading once it has seen more).
pub async fn has_few_values(source: &dyn ColumnSource, limit: u64) -> Result<bool> {
    let mut seen_nums = std::collections::HashSet::new();
    let mut seen_bytes: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    let mut stream = source.batches()?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let keys = ColumnKeys::new(batch.column(0).as_ref())?;
        for i in 0..batch.num_rows() {
            match keys.get(i) {
                Some(KeyRef::Num(n)) => {
                    seen_nums.insert(n);
                }
                Some(KeyRef::Bytes(b)) if !seen_bytes.contains(b) => {
                    seen_bytes.insert(b.to_vec());
                }
                _ => {}
            }
            if (seen_nums.len() + seen_bytes.len()) as u64 > limit {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn serialize(rows: &RoaringTreemap) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(rows.serialized_size());
    rows.serialize_into(&mut out)
        .map_err(|e| Error::Internal(format!("serializing a bitmap failed: {e}")))?;
    Ok(out)
}

/// Writes values and their rows (sorted), then the null rows.
async fn write(
    storage: &Storage,
    file: &Path,
    index_type: &'static str,
    kind: KeyKind,
    values: Vec<(Key, RoaringTreemap)>,
    nulls: &RoaringTreemap,
) -> Result<Built> {
    let mut out = ContainerWriter::new(storage, file);
    let distinct = values.len() as u64;
    for (key, rows) in values {
        let encoded = key.encode();
        out.part(serialize(&rows)?, rows.len(), 0, encoded.clone(), encoded)
            .await?;
    }
    if !nulls.is_empty() {
        out.part(
            serialize(nulls)?,
            nulls.len(),
            nulls.len(),
            Vec::new(),
            Vec::new(),
        )
        .await?;
    }
    let (lookup, size_bytes) = out.finish(index_type, kind).await?;
    let details = prost::Message::encode_to_vec(&ScalarDetailsProto {
        key_kind: kind as u32,
        parts: lookup.parts.len() as u64,
        entries: lookup.entries,
        distinct_values: distinct,
    });
    let container = Container::open(storage, file, size_bytes, index_type).await?;
    Ok(Built {
        details,
        size_bytes,
        entries: lookup.entries,
        removed: 0,
        loaded: Some(Arc::new(BitmapIndex::new(
            container,
            index_type == LABEL_LIST,
        ))),
    })
}

/// A loaded bitmap or label-list index: its dictionary (bitmaps are read on demand).
#[derive(Debug)]
pub struct BitmapIndex {
    container: Container,
    /// Keys of the value parts, sorted (part `i` holds the rows of `keys[i]`).
    keys: Vec<Key>,
    null_part: Option<usize>,
    list: bool,
}

impl BitmapIndex {
    fn new(container: Container, list: bool) -> Self {
        let mut keys = Vec::with_capacity(container.bounds.len());
        let mut null_part = None;
        for (i, b) in container.bounds.iter().enumerate() {
            match b {
                Some((k, _)) => keys.push(k.clone()),
                None => null_part = Some(i),
            }
        }
        BitmapIndex {
            container,
            keys,
            null_part,
            list,
        }
    }

    /// Value parts whose keys lie in the range.
    fn in_range(&self, lower: &Bound<Key>, upper: &Bound<Key>) -> std::ops::Range<usize> {
        let start = match lower {
            Bound::Included(l) => self.keys.partition_point(|k| k < l),
            Bound::Excluded(l) => self.keys.partition_point(|k| k <= l),
            Bound::Unbounded => 0,
        };
        let end = match upper {
            Bound::Included(u) => self.keys.partition_point(|k| k <= u),
            Bound::Excluded(u) => self.keys.partition_point(|k| k < u),
            Bound::Unbounded => self.keys.len(),
        };
        start..end.max(start)
    }

    fn find(&self, keys: &[Key]) -> Vec<Option<usize>> {
        keys.iter()
            .map(|k| self.keys.binary_search(k).ok())
            .collect()
    }

    /// Parts to read and whether to intersect them (else unite), or `None` when this index
    /// cannot answer `query`.
    fn parts_for(&self, query: &ScalarQuery) -> Option<(Vec<usize>, bool)> {
        Some(match (query, self.list) {
            (ScalarQuery::Range { lower, upper }, false) => {
                (self.in_range(lower, upper).collect(), false)
            }
            (ScalarQuery::In(keys), false) | (ScalarQuery::HasAny(keys), true) => {
                let mut parts: Vec<usize> = self.find(keys).into_iter().flatten().collect();
                parts.sort_unstable();
                parts.dedup();
                (parts, false)
            }
            (ScalarQuery::HasAll(keys), true) => {
                let found = self.find(keys);
                if keys.is_empty() || found.iter().any(Option::is_none) {
                    // A value no list holds: nothing matches.
                    (Vec::new(), false)
                } else {
                    (found.into_iter().flatten().collect(), true)
                }
            }
            (ScalarQuery::Not(inner), false) => {
                let excluded: Vec<usize> = match inner.as_ref() {
                    ScalarQuery::Range { lower, upper } => self.in_range(lower, upper).collect(),
                    ScalarQuery::In(keys) => self.find(keys).into_iter().flatten().collect(),
                    _ => return None,
                };
                let excluded: std::collections::HashSet<usize> = excluded.into_iter().collect();
                (
                    (0..self.keys.len())
                        .filter(|i| !excluded.contains(i))
                        .collect(),
                    false,
                )
            }
            (ScalarQuery::IsNull, _) => (self.null_part.into_iter().collect(), false),
            (ScalarQuery::IsNotNull, false) => ((0..self.keys.len()).collect(), false),
            _ => return None,
        })
    }

    /// Part `i`'s rows, translated, through the cache; the flag says whether this call read
    /// it from storage.
    async fn part(&self, i: usize, parts: &PartContext<'_>) -> Result<(Arc<RoaringTreemap>, bool)> {
        let key = format!("{}#v{i}", parts.key);
        parts
            .cache
            .get_or_load(&key, async {
                let rows = self.read(i, parts).await?;
                let bytes = rows.serialized_size() + 64;
                Ok((rows, bytes))
            })
            .await
    }

    /// Reads part `i` from storage, translated.
    async fn read(&self, i: usize, parts: &PartContext<'_>) -> Result<RoaringTreemap> {
        let bytes = self.container.read_part(parts.storage, i).await?;
        let rows = RoaringTreemap::deserialize_from(&bytes[..]).map_err(|e| {
            Error::corrupt(
                &self.container.path,
                format!("bitmap {i} does not decode: {e}"),
            )
        })?;
        if rows.len() != self.container.lookup.parts[i].entries {
            return Err(Error::corrupt(
                &self.container.path,
                format!("bitmap {i} holds another number of rows than its lookup says"),
            ));
        }
        if parts.translate.is_identity() {
            return Ok(rows);
        }
        let mut list: Vec<u64> = rows.iter().collect();
        translate_rows(parts, &mut list).await?;
        Ok(treemap_of(list))
    }
}

impl Index for BitmapIndex {
    fn index_type(&self) -> &'static str {
        if self.list {
            LABEL_LIST
        } else {
            BITMAP
        }
    }

    fn heap_bytes(&self) -> usize {
        self.container.heap_bytes()
            + self
                .keys
                .iter()
                .map(|k| match k {
                    Key::Num(_) => 16,
                    Key::Bytes(b) => 32 + b.len(),
                })
                .sum::<usize>()
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn into_any_arc(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }

    fn as_scalar(&self) -> Option<&dyn ScalarIndex> {
        Some(self)
    }
}

impl ScalarIndex for BitmapIndex {
    fn estimate(&self, query: &ScalarQuery) -> Option<u64> {
        let (parts, intersect) = self.parts_for(query)?;
        let sizes = parts
            .iter()
            .map(|&i| self.container.lookup.parts[i].entries);
        Some(if intersect {
            sizes.min().unwrap_or(0)
        } else {
            sizes.sum()
        })
    }

    fn search<'a>(
        &'a self,
        query: &'a ScalarQuery,
        parts: &'a PartContext<'a>,
    ) -> BoxFuture<'a, Result<ScalarSearch>> {
        Box::pin(async move {
            let (wanted, intersect) = self.parts_for(query).ok_or_else(|| {
                Error::Internal("a bitmap index was asked what it cannot answer".into())
            })?;
            let mut rows: Option<RoaringTreemap> = None;
            // Smallest first, so an intersection shrinks fastest.
            let mut order = wanted.clone();
            order.sort_by_key(|&i| self.container.lookup.parts[i].entries);
            let mut parts_loaded = 0;
            for &i in &order {
                let (part, loaded) = self.part(i, parts).await?;
                parts_loaded += u64::from(loaded);
                rows = Some(match rows {
                    None => (*part).clone(),
                    Some(mut acc) => {
                        if intersect {
                            acc &= part.as_ref();
                        } else {
                            acc |= part.as_ref();
                        }
                        acc
                    }
                });
                if intersect && rows.as_ref().is_some_and(|r| r.is_empty()) {
                    break;
                }
            }
            Ok(ScalarSearch {
                rows: rows.unwrap_or_default(),
                parts_loaded,
            })
        })
    }
}

/// BITMAP (`list: false`) or LABEL_LIST (`list: true`) as an index kind.
pub struct BitmapType {
    list: bool,
}

impl BitmapType {
    pub const BITMAP_TYPE: BitmapType = BitmapType { list: false };
    pub const LABEL_LIST_TYPE: BitmapType = BitmapType { list: true };

    fn type_name(&self) -> &'static str {
        if self.list {
            LABEL_LIST
        } else {
            BITMAP
        }
    }

    async fn collect(&self, column: &Field, source: &dyn ColumnSource) -> Result<ValueRows> {
        let mut values = ValueRows::default();
        let mut stream = source.batches()?;
        while let Some(batch) = stream.next().await {
            values.add_batch(&batch?, self.list)?;
            if values.len() > MAX_DISTINCT_VALUES {
                return Err(too_many(column));
            }
        }
        Ok(values)
    }
}

impl IndexType for BitmapType {
    fn name(&self) -> &'static str {
        self.type_name()
    }

    fn family(&self) -> IndexFamily {
        IndexFamily::Scalar
    }

    fn supports(&self, column: &Field) -> std::result::Result<(), String> {
        value_kind(column, self.list).map(|_| ())
    }

    fn check(&self, details: &[u8], column: &Field) -> std::result::Result<(), String> {
        check_scalar(details, value_kind(column, self.list).ok())
    }

    fn describe(&self, details: &[u8]) -> Result<IndexDetails> {
        let d = decode_details(details)?;
        Ok(IndexDetails {
            num_distinct_values: Some(d.distinct_values),
            ..Default::default()
        })
    }

    fn build<'a>(&'a self, job: BuildJob<'a>) -> BoxFuture<'a, Result<Built>> {
        Box::pin(async move {
            let fits = matches!(
                (job.config, self.list),
                (IndexConfig::Bitmap, false) | (IndexConfig::LabelList, true)
            );
            if !fits {
                return Err(Error::invalid(format!(
                    "{} takes no parameters of another index kind",
                    self.type_name()
                )));
            }
            let kind = value_kind(job.column, self.list).map_err(Error::invalid)?;
            let total = job.source.rows();
            job.report("collect", 0, total);
            let values = self.collect(job.column, job.source).await?;
            job.report("collect", total, total);
            job.report("write", 0, 1);
            let nulls = values.nulls.clone();
            let built = write(
                job.storage,
                job.file,
                self.type_name(),
                kind,
                values.into_sorted(),
                &nulls,
            )
            .await?;
            job.report("write", 1, 1);
            Ok(built)
        })
    }

    fn open<'a>(&'a self, file: IndexFile<'a>) -> BoxFuture<'a, Result<Arc<dyn Index>>> {
        Box::pin(async move {
            let container =
                Container::open(file.storage, file.path, file.size_bytes, self.type_name()).await?;
            let d = decode_details(file.details)?;
            let nulls = container.bounds.iter().filter(|b| b.is_none()).count();
            let ordered = container
                .bounds
                .iter()
                .flatten()
                .map(|(min, _)| min)
                .collect::<Vec<_>>()
                .windows(2)
                .all(|w| w[0] < w[1]);
            if KeyKind::from_code(d.key_kind) != Some(container.key_kind)
                || d.entries != container.lookup.entries
                || nulls > 1
                || !ordered
            {
                return Err(Error::corrupt(
                    file.path,
                    format!(
                        "{} '{}': the file does not match the manifest's description of it",
                        self.type_name(),
                        file.name
                    ),
                ));
            }
            Ok(Arc::new(BitmapIndex::new(container, self.list)) as Arc<dyn Index>)
        })
    }

    fn update<'a>(&'a self, job: UpdateJob<'a>) -> BoxFuture<'a, Result<Built>> {
        Box::pin(async move {
            let index = job
                .current
                .as_any()
                .downcast_ref::<BitmapIndex>()
                .ok_or_else(|| Error::Internal("a bitmap update got another index".into()))?;
            let kind = value_kind(job.column, self.list).map_err(Error::invalid)?;
            let mut added = self.collect(job.column, job.added).await?;
            let mut kept_entries = 0u64;
            let mut merged: Vec<(Key, RoaringTreemap)> = Vec::new();
            let mut nulls = std::mem::take(&mut added.nulls);
            let mut new_values: FastMap<Key, RoaringTreemap> =
                added.into_sorted().into_iter().collect();
            for (i, bound) in index.container.bounds.iter().enumerate() {
                let old = index.read(i, job.parts).await?;
                let live: RoaringTreemap = old.iter().filter(|&r| (job.keep)(r)).collect();
                kept_entries += live.len();
                match bound {
                    Some((key, _)) => {
                        let rows = match new_values.remove(key) {
                            Some(new) => live | new,
                            None => live,
                        };
                        if !rows.is_empty() {
                            merged.push((key.clone(), rows));
                        }
                    }
                    None => nulls |= live,
                }
            }
            merged.extend(new_values);
            merged.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if merged.len() > MAX_DISTINCT_VALUES {
                return Err(too_many(job.column));
            }
            let mut built = write(
                job.storage,
                job.file,
                self.type_name(),
                kind,
                merged,
                &nulls,
            )
            .await?;
            built.removed = index.container.lookup.entries.saturating_sub(kept_entries);
            Ok(built)
        })
    }
}
