//! BTREE: a column's values sorted with their row addresses, in pages of [`PAGE_ENTRIES`]
//! entries, plus a page lookup (min, max, entry and null count per page) kept in memory.
//! A query reads only the pages whose key range it overlaps, each through the index cache.
//! Null rows sit in null pages after the sorted ones.
//!
//! Built by sorting with bounded memory: (key, row) pairs collect up to [`SORT_BUDGET_BYTES`];
//! past it each sorted run is spilled to a temporary file beside the index and the runs are
//! merged page by page. An update merges the old pages (entries of deleted rows dropped) with
//! the new rows, sorted the same way: no full rebuild.
//!
//! Page payload: kind byte (0 numbers, 1 bytes, 2 nulls), entry count (u32 LE), the keys
//! (numbers: LEB128 deltas from the previous key, which sorted keys keep small; bytes: LEB128
//! lengths then the bytes), then the row addresses as LEB128 of zigzag deltas.

use std::ops::Bound;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_schema::Field;
use futures::future::BoxFuture;
use futures::StreamExt;
use object_store::path::Path;
use roaring::RoaringTreemap;

use super::scalar::{
    key_kind, ColumnKeys, Container, ContainerWriter, Key, KeyKind, KeyRef, ScalarDetailsProto,
    ScalarQuery, ScalarSearch, SUPPORTED_TYPES,
};
use super::{
    BuildJob, Built, ColumnSource, Index, IndexConfig, IndexDetails, IndexFamily, IndexFile,
    IndexType, PartContext, ScalarIndex, UpdateJob, DROPPED_ROW,
};
use crate::error::{Error, Result};
use crate::storage::Storage;

/// Manifest type name.
pub const BTREE: &str = "BTREE";
/// Entries per page.
pub const PAGE_ENTRIES: usize = 4096;
/// Most entries a page file may claim (a larger count is corruption).
const MAX_PAGE_ENTRIES: u64 = 1 << 20;
/// Memory for (key, row) pairs while sorting; beyond it sorted runs spill to storage.
pub const SORT_BUDGET_BYTES: usize = 128 << 20;

/// A decoded page.
#[derive(Debug, Default)]
pub(crate) struct Page {
    keys: PageKeys,
    rows: Vec<u64>,
}

#[derive(Debug, Default)]
enum PageKeys {
    #[default]
    Null,
    Num(Vec<u64>),
    Bytes {
        ends: Vec<u32>,
        data: Vec<u8>,
    },
}

impl Page {
    fn len(&self) -> usize {
        self.rows.len()
    }

    #[inline]
    fn key(&self, i: usize) -> Option<KeyRef<'_>> {
        match &self.keys {
            PageKeys::Null => None,
            PageKeys::Num(k) => Some(KeyRef::Num(k[i])),
            PageKeys::Bytes { ends, data } => {
                let start = if i == 0 { 0 } else { ends[i - 1] as usize };
                Some(KeyRef::Bytes(&data[start..ends[i] as usize]))
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        64 + self.rows.len() * 8
            + match &self.keys {
                PageKeys::Null => 0,
                PageKeys::Num(k) => k.len() * 8,
                PageKeys::Bytes { ends, data } => ends.len() * 4 + data.len(),
            }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.rows.len() * 4);
        out.push(match self.keys {
            PageKeys::Num(_) => 0,
            PageKeys::Bytes { .. } => 1,
            PageKeys::Null => 2,
        });
        out.extend_from_slice(&(self.rows.len() as u32).to_le_bytes());
        match &self.keys {
            PageKeys::Null => {}
            PageKeys::Num(keys) => {
                let mut previous = 0u64;
                for &k in keys {
                    put_varint(&mut out, k.wrapping_sub(previous));
                    previous = k;
                }
            }
            PageKeys::Bytes { ends, data } => {
                let mut start = 0u32;
                for &end in ends {
                    put_varint(&mut out, u64::from(end - start));
                    start = end;
                }
                out.extend_from_slice(data);
            }
        }
        let mut previous = 0u64;
        for &r in &self.rows {
            put_varint(&mut out, zigzag(r.wrapping_sub(previous) as i64));
            previous = r;
        }
        out
    }

    /// Decodes a page that the lookup says holds `entries` entries.
    fn decode(bytes: &[u8], kind: KeyKind, entries: u64) -> std::result::Result<Page, String> {
        let mut at = 0usize;
        let tag = *bytes.first().ok_or("empty page")?;
        at += 1;
        let n = u32::from_le_bytes(
            bytes
                .get(at..at + 4)
                .ok_or("truncated page")?
                .try_into()
                .map_err(|_| "truncated page")?,
        ) as u64;
        at += 4;
        if n != entries || n > MAX_PAGE_ENTRIES {
            return Err(format!("page holds {n} entries, the lookup says {entries}"));
        }
        let n = n as usize;
        let keys = match (tag, kind) {
            (2, _) => PageKeys::Null,
            (0, KeyKind::Num) => {
                let mut keys = Vec::with_capacity(n);
                let mut previous = 0u64;
                for _ in 0..n {
                    previous = previous.wrapping_add(get_varint(bytes, &mut at)?);
                    keys.push(previous);
                }
                PageKeys::Num(keys)
            }
            (1, KeyKind::Bytes) => {
                let mut ends = Vec::with_capacity(n);
                let mut total = 0u64;
                for _ in 0..n {
                    total += get_varint(bytes, &mut at)?;
                    if total > bytes.len() as u64 {
                        return Err("key lengths exceed the page".into());
                    }
                    ends.push(total as u32);
                }
                let data = bytes
                    .get(at..at + total as usize)
                    .ok_or("truncated keys")?
                    .to_vec();
                at += total as usize;
                PageKeys::Bytes { ends, data }
            }
            _ => return Err(format!("page of kind {tag} in an index of {kind:?} keys")),
        };
        let mut rows = Vec::with_capacity(n);
        let mut previous = 0u64;
        for _ in 0..n {
            previous = previous.wrapping_add(unzigzag(get_varint(bytes, &mut at)?) as u64);
            rows.push(previous);
        }
        if at != bytes.len() {
            return Err("trailing bytes after the page".into());
        }
        if let PageKeys::Num(keys) = &keys {
            if keys.windows(2).any(|w| w[0] > w[1]) {
                return Err("keys out of order".into());
            }
        }
        Ok(Page { keys, rows })
    }
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn get_varint(bytes: &[u8], at: &mut usize) -> std::result::Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at).ok_or("truncated varint")?;
        *at += 1;
        v |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Collects entries into pages.
struct PageBuilder {
    kind: KeyKind,
    page: Page,
}

impl PageBuilder {
    fn new(kind: KeyKind) -> Self {
        let mut b = PageBuilder {
            kind,
            page: Page::default(),
        };
        b.reset();
        b
    }

    fn reset(&mut self) {
        self.page = Page {
            keys: match self.kind {
                KeyKind::Num => PageKeys::Num(Vec::with_capacity(PAGE_ENTRIES)),
                KeyKind::Bytes => PageKeys::Bytes {
                    ends: Vec::with_capacity(PAGE_ENTRIES),
                    data: Vec::new(),
                },
            },
            rows: Vec::with_capacity(PAGE_ENTRIES),
        };
    }

    fn push(&mut self, key: KeyRef<'_>, row: u64) {
        match (&mut self.page.keys, key) {
            (PageKeys::Num(k), KeyRef::Num(n)) => k.push(n),
            (PageKeys::Bytes { ends, data }, KeyRef::Bytes(b)) => {
                data.extend_from_slice(b);
                ends.push(data.len() as u32);
            }
            // Keys of one index are of one kind (checked where they are made).
            _ => return,
        }
        self.page.rows.push(row);
    }

    fn is_full(&self) -> bool {
        self.page.len() >= PAGE_ENTRIES
    }

    fn take(&mut self) -> Option<Page> {
        if self.page.len() == 0 {
            return None;
        }
        let page = std::mem::take(&mut self.page);
        self.reset();
        Some(page)
    }
}

/// Writes sorted pages (then null pages) into a container.
struct PagedWriter {
    out: ContainerWriter,
    builder: PageBuilder,
    pages: u64,
}

impl PagedWriter {
    fn new(storage: &Storage, path: &Path, kind: KeyKind) -> Self {
        PagedWriter {
            out: ContainerWriter::new(storage, path),
            builder: PageBuilder::new(kind),
            pages: 0,
        }
    }

    async fn push(&mut self, key: KeyRef<'_>, row: u64) -> Result<()> {
        self.builder.push(key, row);
        if self.builder.is_full() {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes sorted entries held in memory (awaiting only when a page is full).
    async fn write_sorted(
        &mut self,
        nums: &[(u64, u64)],
        bytes: &[(u32, u32, u64)],
        data: &[u8],
    ) -> Result<()> {
        for &(key, row) in nums {
            self.builder.push(KeyRef::Num(key), row);
            if self.builder.is_full() {
                self.flush().await?;
            }
        }
        for &(end, start, row) in bytes {
            self.builder
                .push(KeyRef::Bytes(&data[start as usize..end as usize]), row);
            if self.builder.is_full() {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if let Some(page) = self.builder.take() {
            let (min, max) = match (page.key(0), page.key(page.len() - 1)) {
                (Some(a), Some(b)) => (a.to_owned().encode(), b.to_owned().encode()),
                _ => (Vec::new(), Vec::new()),
            };
            let entries = page.len() as u64;
            self.out.part(page.encode(), entries, 0, min, max).await?;
            self.pages += 1;
        }
        Ok(())
    }

    /// Writes the null rows and finishes the file.
    async fn finish(mut self, nulls: &RoaringTreemap) -> Result<(super::scalar::LookupProto, u64)> {
        self.flush().await?;
        let rows: Vec<u64> = nulls.iter().collect();
        for chunk in rows.chunks(PAGE_ENTRIES) {
            let page = Page {
                keys: PageKeys::Null,
                rows: chunk.to_vec(),
            };
            let n = chunk.len() as u64;
            self.out
                .part(page.encode(), n, n, Vec::new(), Vec::new())
                .await?;
        }
        self.out.finish(BTREE, self.builder.kind).await
    }
}

/// Sorts (key, row) pairs in bounded memory.
struct Sorter {
    kind: KeyKind,
    budget: usize,
    nums: Vec<(u64, u64)>,
    /// Byte keys: (end in `data`, start, row) — keys are `data[start..end]`.
    bytes: Vec<(u32, u32, u64)>,
    data: Vec<u8>,
    storage: Storage,
    base: Path,
    runs: Vec<Path>,
}

impl Sorter {
    fn new(kind: KeyKind, storage: &Storage, file: &Path, budget: usize, rows: u64) -> Self {
        // Sized once, so growing by doubling never takes twice the budget.
        let capacity = (budget / 16).min(rows as usize);
        Sorter {
            kind,
            budget,
            nums: match kind {
                KeyKind::Num => Vec::with_capacity(capacity),
                KeyKind::Bytes => Vec::new(),
            },
            bytes: Vec::new(),
            data: Vec::new(),
            storage: storage.clone(),
            base: file.clone(),
            runs: Vec::new(),
        }
    }

    fn used(&self) -> usize {
        self.nums.len() * 16 + self.bytes.len() * 16 + self.data.len()
    }

    /// Holds an entry; true when the budget is reached (the caller spills).
    #[inline]
    fn push(&mut self, key: KeyRef<'_>, row: u64) -> bool {
        match key {
            KeyRef::Num(n) => self.nums.push((n, row)),
            KeyRef::Bytes(b) => {
                // One run never holds 4 GiB of key bytes: it spills at the budget first.
                let start = self.data.len() as u32;
                self.data.extend_from_slice(b);
                self.bytes.push((self.data.len() as u32, start, row));
            }
        }
        self.used() >= self.budget || self.data.len() >= (u32::MAX as usize) / 2
    }

    fn sort(&mut self) {
        use rayon::prelude::*;
        self.nums.par_sort_unstable();
        let data = &self.data;
        self.bytes.par_sort_unstable_by(|a, b| {
            data[a.1 as usize..a.0 as usize]
                .cmp(&data[b.1 as usize..b.0 as usize])
                .then(a.2.cmp(&b.2))
        });
    }

    /// Writes the entries held as a sorted run file.
    async fn spill(&mut self) -> Result<()> {
        self.sort();
        let path = Path::from(format!("{}.run{}", self.base, self.runs.len()));
        let mut writer = PagedWriter::new(&self.storage, &path, self.kind);
        writer
            .write_sorted(&self.nums, &self.bytes, &self.data)
            .await?;
        writer.finish(&RoaringTreemap::new()).await?;
        self.runs.push(path);
        // Keep the allocations for the next run.
        self.nums.clear();
        self.bytes.clear();
        self.data.clear();
        Ok(())
    }
}

/// Reads a sorted source page by page.
enum Cursor<'k> {
    /// Number keys held in memory, sorted.
    Nums { entries: Vec<(u64, u64)>, at: usize },
    /// Byte keys held in memory (`data[start..end]`), sorted.
    Bytes {
        entries: Vec<(u32, u32, u64)>,
        data: Vec<u8>,
        at: usize,
    },
    /// Pages of a container (a spilled run, or an index being updated).
    Pages {
        container: Arc<Container>,
        /// The store its pages are read through.
        storage: &'k Storage,
        /// Non-null page numbers still to read.
        next: std::vec::IntoIter<usize>,
        page: Page,
        at: usize,
        /// Rows kept (updates: live rows; translation applied first).
        keep: Option<&'k (dyn Fn(u64) -> bool + Sync)>,
        /// How the container's rows are translated (updates of an index read through maps).
        translate: Option<&'k PartContext<'k>>,
    },
}

impl Cursor<'_> {
    /// The current entry, reading the next page when one is used up.
    async fn current(&mut self) -> Result<Option<(Key, u64)>> {
        match self {
            Cursor::Nums { entries, at } => Ok(entries.get(*at).map(|&(k, r)| (Key::Num(k), r))),
            Cursor::Bytes { entries, data, at } => Ok(entries.get(*at).map(|&(end, start, r)| {
                (Key::Bytes(data[start as usize..end as usize].to_vec()), r)
            })),
            Cursor::Pages {
                container,
                storage,
                next,
                page,
                at,
                keep,
                translate,
            } => loop {
                if *at < page.len() {
                    let key = page.key(*at).map(KeyRef::to_owned);
                    return Ok(key.map(|k| (k, page.rows[*at])));
                }
                let Some(i) = next.next() else {
                    return Ok(None);
                };
                let mut read = read_page(container, storage, i).await?;
                if let Some(parts) = translate {
                    translate_page(parts, &mut read).await?;
                }
                if let Some(keep) = keep {
                    retain_rows(&mut read, *keep);
                }
                *page = read;
                *at = 0;
            },
        }
    }

    fn advance(&mut self) {
        match self {
            Cursor::Nums { at, .. } | Cursor::Bytes { at, .. } | Cursor::Pages { at, .. } => {
                *at += 1
            }
        }
    }
}

/// Keeps the entries of `page` whose row passes `keep` (and is not a dropped row).
fn retain_rows(page: &mut Page, keep: impl Fn(u64) -> bool) {
    let kept: Vec<usize> = (0..page.len())
        .filter(|&i| page.rows[i] != DROPPED_ROW && keep(page.rows[i]))
        .collect();
    if kept.len() == page.len() {
        return;
    }
    let rows = kept.iter().map(|&i| page.rows[i]).collect();
    let keys = match &page.keys {
        PageKeys::Null => PageKeys::Null,
        PageKeys::Num(k) => PageKeys::Num(kept.iter().map(|&i| k[i]).collect()),
        PageKeys::Bytes { .. } => {
            let (mut ends, mut data) = (Vec::with_capacity(kept.len()), Vec::new());
            for &i in &kept {
                if let Some(KeyRef::Bytes(b)) = page.key(i) {
                    data.extend_from_slice(b);
                    ends.push(data.len() as u32);
                }
            }
            PageKeys::Bytes { ends, data }
        }
    };
    *page = Page { keys, rows };
}

async fn read_page(container: &Container, storage: &Storage, i: usize) -> Result<Page> {
    let bytes = container.read_part(storage, i).await?;
    let entries = container.lookup.parts[i].entries;
    Page::decode(&bytes, container.key_kind, entries).map_err(|why| {
        Error::corrupt(
            &container.path,
            format!("B-tree page {i} does not decode: {why}"),
        )
    })
}

/// Translates a page's rows in place (dropped rows become [`DROPPED_ROW`]).
async fn translate_page(parts: &PartContext<'_>, page: &mut Page) -> Result<()> {
    if !parts.translate.is_identity() {
        parts.translate.translate(&mut page.rows).await?;
    }
    Ok(())
}

/// Merges sorted cursors into `out`.
async fn merge(mut cursors: Vec<Cursor<'_>>, out: &mut PagedWriter) -> Result<u64> {
    let mut written = 0u64;
    let mut heads: Vec<Option<(Key, u64)>> = Vec::with_capacity(cursors.len());
    for c in &mut cursors {
        heads.push(c.current().await?);
    }
    loop {
        let mut best: Option<usize> = None;
        for (i, head) in heads.iter().enumerate() {
            if let Some(h) = head {
                if best.is_none_or(|b| heads[b].as_ref().is_some_and(|x| h < x)) {
                    best = Some(i);
                }
            }
        }
        let Some(b) = best else { break };
        if let Some((key, row)) = heads[b].take() {
            out.push(key.as_ref(), row).await?;
            written += 1;
        }
        cursors[b].advance();
        heads[b] = cursors[b].current().await?;
    }
    Ok(written)
}

/// A loaded B-tree: its lookup (pages are read on demand).
#[derive(Debug)]
pub struct BTreeIndex {
    container: Arc<Container>,
}

impl BTreeIndex {
    /// Non-null pages whose key range overlaps `lower..upper`.
    fn pages_in(&self, lower: &Bound<Key>, upper: &Bound<Key>) -> Vec<usize> {
        self.container
            .bounds
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let (min, max) = b.as_ref()?;
                let below = match upper {
                    Bound::Included(u) => min > u,
                    Bound::Excluded(u) => min >= u,
                    Bound::Unbounded => false,
                };
                let above = match lower {
                    Bound::Included(l) => max < l,
                    Bound::Excluded(l) => max <= l,
                    Bound::Unbounded => false,
                };
                (!below && !above).then_some(i)
            })
            .collect()
    }

    fn null_pages(&self) -> Vec<usize> {
        (0..self.container.bounds.len())
            .filter(|&i| self.container.bounds[i].is_none())
            .collect()
    }

    fn non_null_pages(&self) -> Vec<usize> {
        (0..self.container.bounds.len())
            .filter(|&i| self.container.bounds[i].is_some())
            .collect()
    }

    /// Pages `query` reads, or `None` when a B-tree cannot answer it.
    fn pages_for(&self, query: &ScalarQuery) -> Option<Vec<usize>> {
        Some(match query {
            ScalarQuery::Range { lower, upper } => self.pages_in(lower, upper),
            ScalarQuery::In(keys) => {
                let mut pages: Vec<usize> = keys
                    .iter()
                    .flat_map(|k| {
                        self.pages_in(&Bound::Included(k.clone()), &Bound::Included(k.clone()))
                    })
                    .collect();
                pages.sort_unstable();
                pages.dedup();
                pages
            }
            ScalarQuery::IsNull => self.null_pages(),
            ScalarQuery::IsNotNull => self.non_null_pages(),
            // Pages holding some value outside what the inner query matches.
            ScalarQuery::Not(inner) => {
                let sorted = inner.sorted_in_keys();
                self.non_null_pages()
                    .into_iter()
                    .filter(|&i| {
                        let Some((min, max)) = &self.container.bounds[i] else {
                            return false;
                        };
                        match inner.as_ref() {
                            ScalarQuery::Range { lower, upper } => {
                                !(ScalarQuery::range_contains(lower, upper, min.as_ref())
                                    && ScalarQuery::range_contains(lower, upper, max.as_ref()))
                            }
                            ScalarQuery::In(_) => {
                                min != max || !inner.matches_key(min.as_ref(), &sorted)
                            }
                            _ => true,
                        }
                    })
                    .collect()
            }
            ScalarQuery::HasAny(_) | ScalarQuery::HasAll(_) => return None,
        })
    }

    /// Page `i` with translated rows, through the cache; the flag says whether this call read
    /// it from storage.
    async fn page(&self, i: usize, parts: &PartContext<'_>) -> Result<(Arc<Page>, bool)> {
        let key = format!("{}#p{i}", parts.key);
        parts
            .cache
            .get_or_load(&key, async {
                let mut page = read_page(&self.container, parts.storage, i).await?;
                translate_page(parts, &mut page).await?;
                let bytes = page.heap_bytes();
                Ok((page, bytes))
            })
            .await
    }
}

impl Index for BTreeIndex {
    fn index_type(&self) -> &'static str {
        BTREE
    }

    fn heap_bytes(&self) -> usize {
        self.container.heap_bytes()
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

impl ScalarIndex for BTreeIndex {
    fn estimate(&self, query: &ScalarQuery) -> Option<u64> {
        let pages = self.pages_for(query)?;
        Some(
            pages
                .iter()
                .map(|&i| self.container.lookup.parts[i].entries)
                .sum(),
        )
    }

    fn search<'a>(
        &'a self,
        query: &'a ScalarQuery,
        parts: &'a PartContext<'a>,
    ) -> BoxFuture<'a, Result<ScalarSearch>> {
        Box::pin(async move {
            let pages = self
                .pages_for(query)
                .ok_or_else(|| Error::Internal("a B-tree was asked a list query".into()))?;
            if let ScalarQuery::Not(inner) = query {
                if !matches!(
                    inner.as_ref(),
                    ScalarQuery::Range { .. } | ScalarQuery::In(_)
                ) {
                    return Err(Error::Internal(
                        "a B-tree was asked an unsupported NOT".into(),
                    ));
                }
            }
            let keys_in = query.sorted_in_keys();
            let mut rows: Vec<u64> = Vec::new();
            let mut parts_loaded = 0;
            for &i in &pages {
                let (page, loaded) = self.page(i, parts).await?;
                parts_loaded += u64::from(loaded);
                let whole = match (query, &self.container.bounds[i]) {
                    (ScalarQuery::IsNull | ScalarQuery::IsNotNull, _) => true,
                    (ScalarQuery::Range { lower, upper }, Some((min, max))) => {
                        ScalarQuery::range_contains(lower, upper, min.as_ref())
                            && ScalarQuery::range_contains(lower, upper, max.as_ref())
                    }
                    _ => false,
                };
                // Pages of one value (or all matching) need no key comparisons.
                let whole = whole
                    || matches!(&self.container.bounds[i], Some((min, max)) if min == max
                        && query.matches_key(min.as_ref(), &keys_in));
                if whole {
                    rows.extend(page.rows.iter().filter(|&&r| r != DROPPED_ROW));
                    continue;
                }
                for j in 0..page.len() {
                    let Some(key) = page.key(j) else { continue };
                    let hit = query.matches_key(key, &keys_in);
                    if hit && page.rows[j] != DROPPED_ROW {
                        rows.push(page.rows[j]);
                    }
                }
            }
            Ok(ScalarSearch {
                rows: super::scalar::treemap_of(rows),
                parts_loaded,
            })
        })
    }
}

/// The BTREE index kind.
pub struct BTreeType;

fn details_of(kind: KeyKind, lookup: &super::scalar::LookupProto) -> Vec<u8> {
    prost::Message::encode_to_vec(&ScalarDetailsProto {
        key_kind: kind as u32,
        parts: lookup.parts.len() as u64,
        entries: lookup.entries,
        distinct_values: 0,
    })
}

pub(crate) fn decode_details(details: &[u8]) -> Result<ScalarDetailsProto> {
    prost::Message::decode(details).map_err(|e| {
        Error::corrupt(
            "index entry in the manifest",
            format!("scalar index details do not decode: {e}"),
        )
    })
}

/// Checks scalar details against the column: they decode and their key kind is the column's.
pub(crate) fn check_scalar(
    details: &[u8],
    kind: Option<KeyKind>,
) -> std::result::Result<(), String> {
    let d: ScalarDetailsProto =
        prost::Message::decode(details).map_err(|e| format!("its details do not decode: {e}"))?;
    match (KeyKind::from_code(d.key_kind), kind) {
        (Some(a), Some(b)) if a == b => Ok(()),
        _ => Err("its key kind does not fit the column's type".into()),
    }
}

/// An index being updated: its pages, how its rows are translated, which rows it keeps.
type OldIndex<'a> = (
    &'a BTreeIndex,
    &'a PartContext<'a>,
    &'a (dyn Fn(u64) -> bool + Sync),
);

/// Builds B-tree files: sorts `source` in bounded memory into `file`.
pub(crate) async fn build_btree<'a>(
    storage: &Storage,
    file: &Path,
    column: &Field,
    source: &dyn ColumnSource,
    budget: usize,
    report: &(dyn Fn(&'static str, u64, u64) + Sync),
    old: Option<OldIndex<'a>>,
) -> Result<Built> {
    let kind = key_kind(column.data_type()).ok_or_else(|| {
        Error::invalid(format!(
            "BTREE indexes take {SUPPORTED_TYPES}; '{}' is {}",
            column.name(),
            column.data_type()
        ))
    })?;
    let total = source.rows();
    let mut sorter = Sorter::new(kind, storage, file, budget, total);
    let mut nulls = RoaringTreemap::new();
    let mut stream = source.batches()?;
    let mut done = 0u64;
    report("sort", 0, total);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let keys = ColumnKeys::new(batch.column(0).as_ref())?;
        let rows = batch.column(1).as_primitive::<UInt64Type>().values();
        for (i, &row) in rows.iter().enumerate() {
            match keys.get(i) {
                Some(key) => {
                    if sorter.push(key, row) {
                        sorter.spill().await?;
                    }
                }
                None => {
                    nulls.insert(row);
                }
            }
        }
        done += batch.num_rows() as u64;
        report("sort", done.min(total), total);
    }
    sorter.sort();
    let mut out = PagedWriter::new(storage, file, kind);
    if sorter.runs.is_empty() && old.is_none() {
        // Everything fit in the budget: the sorted entries are the pages, no merge.
        report("write", 0, 1);
        out.write_sorted(&sorter.nums, &sorter.bytes, &sorter.data)
            .await?;
        let (lookup, size_bytes) = out.finish(&nulls).await?;
        report("write", 1, 1);
        return finish_build(storage, file, kind, lookup, size_bytes, 0).await;
    }
    let mut cursors = Vec::new();
    for run in &sorter.runs {
        let container = Container::open(storage, run, 0, BTREE).await?;
        let pages: Vec<usize> = (0..container.bounds.len()).collect();
        cursors.push(Cursor::Pages {
            container: Arc::new(container),
            storage,
            next: pages.into_iter(),
            page: Page::default(),
            at: 0,
            keep: None,
            translate: None,
        });
    }
    // The last run stays in memory, merged in place (never copied).
    cursors.push(match kind {
        KeyKind::Num => Cursor::Nums {
            entries: std::mem::take(&mut sorter.nums),
            at: 0,
        },
        KeyKind::Bytes => Cursor::Bytes {
            entries: std::mem::take(&mut sorter.bytes),
            data: std::mem::take(&mut sorter.data),
            at: 0,
        },
    });
    if let Some((index, parts, keep)) = &old {
        // The old index's null rows join the new ones; its sorted pages are one more run.
        for i in index.null_pages() {
            let mut page = read_page(&index.container, storage, i).await?;
            translate_page(parts, &mut page).await?;
            for &r in &page.rows {
                if r != DROPPED_ROW && keep(r) {
                    nulls.insert(r);
                }
            }
        }
        cursors.push(Cursor::Pages {
            container: index.container.clone(),
            storage,
            next: index.non_null_pages().into_iter(),
            page: Page::default(),
            at: 0,
            keep: Some(*keep),
            translate: Some(*parts),
        });
    }
    report("write", 0, 1);
    merge(cursors, &mut out).await?;
    let (lookup, size_bytes) = out.finish(&nulls).await?;
    for run in &sorter.runs {
        storage.delete(run).await?;
    }
    report("write", 1, 1);
    // Every row read became an entry, so the old entries not carried over were dropped.
    let removed = old.as_ref().map_or(0, |(index, _, _)| {
        let kept = lookup.entries.saturating_sub(done);
        index.container.lookup.entries.saturating_sub(kept)
    });
    finish_build(storage, file, kind, lookup, size_bytes, removed).await
}

/// What a written B-tree file is, opened for the cache.
async fn finish_build(
    storage: &Storage,
    file: &Path,
    kind: KeyKind,
    lookup: super::scalar::LookupProto,
    size_bytes: u64,
    removed: u64,
) -> Result<Built> {
    let container = Container::open(storage, file, size_bytes, BTREE).await?;
    Ok(Built {
        details: details_of(kind, &lookup),
        size_bytes,
        entries: lookup.entries,
        removed,
        loaded: Some(Arc::new(BTreeIndex {
            container: Arc::new(container),
        })),
    })
}

impl IndexType for BTreeType {
    fn name(&self) -> &'static str {
        BTREE
    }

    fn family(&self) -> IndexFamily {
        IndexFamily::Scalar
    }

    fn supports(&self, column: &Field) -> std::result::Result<(), String> {
        match key_kind(column.data_type()) {
            Some(_) => Ok(()),
            None => Err(format!(
                "BTREE indexes take {SUPPORTED_TYPES}; '{}' is {}",
                column.name(),
                column.data_type()
            )),
        }
    }

    fn check(&self, details: &[u8], column: &Field) -> std::result::Result<(), String> {
        check_scalar(details, key_kind(column.data_type()))
    }

    fn describe(&self, details: &[u8]) -> Result<IndexDetails> {
        let d = decode_details(details)?;
        Ok(IndexDetails {
            num_pages: Some(d.parts),
            ..Default::default()
        })
    }

    fn build<'a>(&'a self, job: BuildJob<'a>) -> BoxFuture<'a, Result<Built>> {
        Box::pin(async move {
            if !matches!(job.config, IndexConfig::BTree) {
                return Err(Error::invalid("BTREE takes no vector parameters"));
            }
            let report = |phase, done, total| job.report(phase, done, total);
            build_btree(
                job.storage,
                job.file,
                job.column,
                job.source,
                SORT_BUDGET_BYTES,
                &report,
                None,
            )
            .await
        })
    }

    fn open<'a>(&'a self, file: IndexFile<'a>) -> BoxFuture<'a, Result<Arc<dyn Index>>> {
        Box::pin(async move {
            let container =
                Container::open(file.storage, file.path, file.size_bytes, BTREE).await?;
            let d = decode_details(file.details)?;
            if KeyKind::from_code(d.key_kind) != Some(container.key_kind)
                || d.entries != container.lookup.entries
            {
                return Err(Error::corrupt(
                    file.path,
                    format!(
                        "B-tree '{}': the file does not match the manifest's description of it",
                        file.name
                    ),
                ));
            }
            Ok(Arc::new(BTreeIndex {
                container: Arc::new(container),
            }) as Arc<dyn Index>)
        })
    }

    fn update<'a>(&'a self, job: UpdateJob<'a>) -> BoxFuture<'a, Result<Built>> {
        Box::pin(async move {
            let index = job
                .current
                .as_any()
                .downcast_ref::<BTreeIndex>()
                .ok_or_else(|| Error::Internal("a B-tree update got another index".into()))?;
            build_btree(
                job.storage,
                job.file,
                job.column,
                job.added,
                SORT_BUDGET_BYTES,
                &|_, _, _| {},
                Some((index, job.parts, job.keep)),
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pages_round_trip(mut keys in proptest::collection::vec(any::<u64>(), 0..300),
                            rows in proptest::collection::vec(any::<u64>(), 300)) {
            keys.sort_unstable();
            let n = keys.len();
            let page = Page { keys: PageKeys::Num(keys.clone()), rows: rows[..n].to_vec() };
            let back = Page::decode(&page.encode(), KeyKind::Num, n as u64).unwrap();
            prop_assert_eq!(back.rows, rows[..n].to_vec());
            match back.keys { PageKeys::Num(k) => prop_assert_eq!(k, keys), _ => prop_assert!(false) }
        }

        #[test]
        fn damaged_pages_are_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                               entries in 0u64..100) {
            let _ = Page::decode(&bytes, KeyKind::Bytes, entries);
            let _ = Page::decode(&bytes, KeyKind::Num, entries);
        }
    }

    /// Batches of (value, `_rowid`) held in memory.
    struct Batches(Vec<arrow_array::RecordBatch>);

    impl ColumnSource for Batches {
        fn rows(&self) -> u64 {
            self.0.iter().map(|b| b.num_rows() as u64).sum()
        }

        fn batches(
            &self,
        ) -> Result<futures::stream::BoxStream<'static, Result<arrow_array::RecordBatch>>> {
            let batches: Vec<Result<arrow_array::RecordBatch>> =
                self.0.iter().cloned().map(Ok).collect();
            Ok(futures::stream::iter(batches).boxed())
        }
    }

    struct Identity;

    impl super::super::RowTranslate for Identity {
        fn translate<'a>(&'a self, _: &'a mut [u64]) -> BoxFuture<'a, Result<()>> {
            Box::pin(async { Ok(()) })
        }

        fn is_identity(&self) -> bool {
            true
        }
    }

    fn strings(rows: std::ops::Range<u64>) -> Batches {
        use arrow_array::{StringArray, UInt64Array};
        let schema = Arc::new(arrow_schema::Schema::new(vec![
            Field::new("s", arrow_schema::DataType::Utf8, true),
            Field::new("_rowid", arrow_schema::DataType::UInt64, false),
        ]));
        let batches = rows
            .clone()
            .step_by(1000)
            .map(|start| {
                let end = (start + 1000).min(rows.end);
                let values = StringArray::from_iter((start..end).map(|i| {
                    // Values out of row order, some repeated, some null.
                    (i % 17 != 0).then(|| format!("v{:04}", (i * 7919) % 3001))
                }));
                arrow_array::RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(values),
                        Arc::new(UInt64Array::from_iter_values(start..end)),
                    ],
                )
                .unwrap()
            })
            .collect();
        Batches(batches)
    }

    #[tokio::test]
    async fn sorting_past_the_budget_spills_runs_and_merges_them() {
        let storage = Storage::from_uri("memory://").unwrap();
        let file = storage.path("idx/index.qvi");
        let column = Field::new("s", arrow_schema::DataType::Utf8, true);
        let source = strings(0..20_000);
        // A budget of 16 KiB: about 30 runs.
        let built = build_btree(
            &storage,
            &file,
            &column,
            &source,
            16 << 10,
            &|_, _, _| {},
            None,
        )
        .await
        .unwrap();
        assert_eq!(built.entries, 20_000);
        let listed = storage.list(&storage.path("idx")).await.unwrap();
        assert_eq!(
            listed.len(),
            1,
            "runs are removed after the merge: {listed:?}"
        );
        let index = built.loaded.unwrap();
        let btree = index.as_any().downcast_ref::<BTreeIndex>().unwrap();
        // Pages are in key order, null pages last.
        let bounds: Vec<_> = btree.container.bounds.iter().flatten().collect();
        assert!(bounds.windows(2).all(|w| w[0].1 <= w[1].0));
        let cache = super::super::cache::IndexCache::new(1 << 20);
        let parts = PartContext {
            cache: &cache,
            storage: &storage,
            key: "k",
            translate: &Identity,
        };
        let key = |s: &str| Key::Bytes(s.as_bytes().to_vec());
        let query = ScalarQuery::Range {
            lower: Bound::Included(key("v0100")),
            upper: Bound::Excluded(key("v0110")),
        };
        let found = btree.search(&query, &parts).await.unwrap();
        let want: Vec<u64> = (0..20_000u64)
            .filter(|i| {
                i % 17 != 0 && {
                    let v = (i * 7919) % 3001;
                    (100..110).contains(&v)
                }
            })
            .collect();
        assert_eq!(found.rows.iter().collect::<Vec<_>>(), want);
        let nulls = btree.search(&ScalarQuery::IsNull, &parts).await.unwrap();
        assert_eq!(
            nulls.rows.len(),
            (0..20_000u64).filter(|i| i % 17 == 0).count() as u64
        );
    }

    #[test]
    fn byte_pages_round_trip() {
        let mut b = PageBuilder::new(KeyKind::Bytes);
        for (i, s) in ["", "a", "ab", "b", "zz"].iter().enumerate() {
            b.push(KeyRef::Bytes(s.as_bytes()), i as u64 * 7);
        }
        let page = b.take().unwrap();
        let back = Page::decode(&page.encode(), KeyKind::Bytes, 5).unwrap();
        assert_eq!(back.key(2), Some(KeyRef::Bytes(b"ab")));
        assert_eq!(back.rows, vec![0, 7, 14, 21, 28]);
    }
}
