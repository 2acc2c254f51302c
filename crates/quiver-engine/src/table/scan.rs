//! Streaming scans and takes over a table version.
//!
//! A scan walks fragments in order. For each fragment, every projected column has its own
//! stream of pages, read ahead a few pages at a time on tokio workers (so reading, checksum
//! and decoding overlap across columns), and batches are cut from those pages. Deleted rows
//! are filtered out with the fragment's deletion vector. An unfiltered scan opens the next
//! fragment while it reads one, so the next pages are on the way at the boundary. Memory is
//! bounded by two fragments' columns × (read-ahead + 1) pages plus one batch, not by the table.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::filter::filter_record_batch;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use roaring::RoaringBitmap;

use super::index_filter::{index_rows, IndexedRows};
use super::manifest::{FragmentProto, Manifest};
use super::TableInner;
use crate::error::{Error, Result};
use crate::filter::FilterRef;
use crate::format::reader::{concat_parts, FileReader};
use crate::plan::PlanNode;
use crate::schema::relabel;

pub use crate::vocab::{row_address, ROW_ID};

/// Default rows per scanned batch.
pub const DEFAULT_BATCH_SIZE: usize = 8192;

/// What a scan returns.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Columns to read, in output order; `None` for all.
    pub columns: Option<Vec<String>>,
    /// Rows per batch (deleted rows are removed after cutting, so batches may be smaller).
    pub batch_size: usize,
    /// Live rows to skip first.
    pub offset: u64,
    /// Most live rows to return.
    pub limit: Option<u64>,
    /// Add the `_rowid` column (fragment id << 32 | row offset).
    pub with_row_id: bool,
    /// Pages read ahead per column.
    pub readahead_pages: usize,
    /// Only rows matching this SQL filter (parsed against the table's schema).
    pub filter: Option<FilterRef>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            columns: None,
            batch_size: DEFAULT_BATCH_SIZE,
            offset: 0,
            limit: None,
            with_row_id: false,
            readahead_pages: 2,
            filter: None,
        }
    }
}

/// Resolves projection names to (top-level field id, output field).
pub(crate) fn projection(
    manifest: &Manifest,
    columns: Option<&[String]>,
) -> Result<Vec<(i32, Arc<Field>)>> {
    let schema = &manifest.schema;
    match columns {
        None => Ok(schema
            .field_ids
            .iter()
            .copied()
            .zip(schema.arrow.fields().iter().cloned())
            .collect()),
        Some(names) => names
            .iter()
            .map(|n| {
                let i = schema.column_index(n)?;
                Ok((schema.field_ids[i], schema.arrow.fields()[i].clone()))
            })
            .collect(),
    }
}

fn output_schema(fields: &[(i32, Arc<Field>)], with_row_id: bool) -> SchemaRef {
    let mut out: Vec<Arc<Field>> = fields.iter().map(|(_, f)| f.clone()).collect();
    if with_row_id {
        out.push(Arc::new(Field::new(ROW_ID, DataType::UInt64, false)));
    }
    Arc::new(Schema::new(out))
}

/// A reader of the data file holding `field_id` in `fragment`, checked to hold exactly the
/// fragment's rows.
pub(crate) async fn fragment_reader(
    table: &TableInner,
    fragment: &FragmentProto,
    field_id: i32,
) -> Result<FileReader> {
    let file = fragment
        .files
        .iter()
        .find(|f| f.field_ids.contains(&field_id))
        .ok_or_else(|| {
            Error::corrupt(
                "manifest",
                format!(
                    "fragment {} has no data file for field {field_id}",
                    fragment.id
                ),
            )
        })?;
    let reader = table.file_reader(&file.path).await?;
    if reader.metadata().num_rows != fragment.physical_rows {
        return Err(Error::corrupt(
            reader.path(),
            format!(
                "file holds {} rows but the manifest says fragment {} has {}",
                reader.metadata().num_rows,
                fragment.id,
                fragment.physical_rows
            ),
        ));
    }
    Ok(reader)
}

/// `array`, read from the file at `path`, as the table's schema has it: relabelled to
/// `field`'s type (member names and nullability may have changed since the file was written)
/// and checked to hold no nulls when the field allows none. A file that does not fit its
/// manifest is corrupt.
fn as_stored(array: ArrayRef, field: &Field, path: &object_store::path::Path) -> Result<ArrayRef> {
    let array = relabel(array, field.data_type()).map_err(|e| {
        Error::corrupt(
            path,
            format!(
                "column '{}' does not fit the table's schema: {e}",
                field.name()
            ),
        )
    })?;
    if !field.is_nullable() && array.null_count() > 0 {
        return Err(Error::corrupt(
            path,
            format!(
                "column '{}' holds nulls but the schema allows none",
                field.name()
            ),
        ));
    }
    Ok(array)
}

/// Pages of one column overlapping the rows a scan reads, read ahead, handed out as row slices.
struct ColumnCursor {
    pages: BoxStream<'static, Result<(u64, ArrayRef)>>,
    current: Option<ArrayRef>,
    /// First row of the current page.
    current_start: u64,
    position: usize,
    data_type: DataType,
}

impl ColumnCursor {
    /// A cursor over the pages of `field_id` that overlap `ranges` (sorted, disjoint).
    /// Pages come out as the schema's `field` has them (see [`as_stored`]).
    fn new(
        reader: FileReader,
        field_id: i32,
        field: &Arc<Field>,
        readahead: usize,
        ranges: &[Range<u64>],
    ) -> Result<Self> {
        let column = reader.metadata().column(field_id, reader.path())?;
        let data_type = field.data_type().clone();
        let field = field.clone();
        let mut pages: Vec<(usize, u64)> = Vec::new();
        for range in ranges {
            if range.is_empty() {
                continue;
            }
            let first = column.page_of(range.start);
            let last = column.page_of(range.end - 1);
            for page in first..=last {
                if pages.last().is_none_or(|&(p, _)| p < page) {
                    pages.push((page, column.row_starts[page]));
                }
            }
        }
        let read = move |(page, start): (usize, u64)| {
            let reader = reader.clone();
            let field = field.clone();
            tokio::spawn(async move {
                let mut arrays = reader.read_pages(field_id, page..page + 1).await?;
                let array = arrays
                    .pop()
                    .ok_or_else(|| Error::Internal("page read returned nothing".into()))?;
                Ok((start, as_stored(array, &field, reader.path())?))
            })
        };
        // The first pages are requested now, not when the scan first asks: a fragment opened
        // ahead (see `ScanState::open_ahead`) has its data on the way before it is reached.
        let readahead = readahead.max(1);
        let mut pages = pages.into_iter();
        let first: Vec<_> = pages.by_ref().take(readahead).map(&read).collect();
        let pages = stream::iter(first)
            .chain(stream::iter(pages).map(read))
            .buffered(readahead)
            .map(|joined| {
                joined.map_err(|e| Error::Internal(format!("page reader failed: {e}")))?
            })
            .boxed();
        Ok(ColumnCursor {
            pages,
            current: None,
            current_start: 0,
            position: 0,
            data_type,
        })
    }

    async fn load_next(&mut self) -> Result<bool> {
        match self.pages.next().await {
            Some(page) => {
                let (start, array) = page?;
                self.current = Some(array);
                self.current_start = start;
                self.position = 0;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Moves to `row` (never backwards), dropping pages before it.
    async fn seek(&mut self, row: u64) -> Result<()> {
        loop {
            if let Some(current) = &self.current {
                let end = self.current_start + current.len() as u64;
                if row < end {
                    self.position = row.saturating_sub(self.current_start) as usize;
                    return Ok(());
                }
            }
            if !self.load_next().await? {
                return Err(Error::Internal(format!(
                    "row {row} is past the column's pages"
                )));
            }
        }
    }

    /// Rows left in the current page from the position.
    fn available(&self) -> usize {
        self.current.as_ref().map_or(0, |c| c.len() - self.position)
    }

    /// The next `n` rows of the column.
    async fn next_rows(&mut self, mut n: usize) -> Result<ArrayRef> {
        let mut parts = Vec::new();
        while n > 0 {
            let remaining = self.available();
            if remaining == 0 {
                if self.load_next().await? {
                    continue;
                }
                return Err(Error::Internal("column ended before the fragment".into()));
            }
            let take = remaining.min(n);
            if let Some(current) = &self.current {
                parts.push(current.slice(self.position, take));
            }
            self.position += take;
            n -= take;
        }
        concat_parts(parts, &self.data_type)
    }
}

/// Which rows of the ranges read a fragment scan keeps (before any filter).
enum Keep {
    All,
    /// Every row but these (the deletion vector).
    AllBut(Arc<RoaringBitmap>),
    /// Only these rows (matches found by an earlier pass).
    Only(Arc<RoaringBitmap>),
}

impl Keep {
    fn deletions(deleted: Option<Arc<RoaringBitmap>>) -> Self {
        deleted.map_or(Keep::All, Keep::AllBut)
    }

    /// Mask of rows `start..start + n` to keep; `None` when all are kept.
    fn mask(&self, start: u64, n: u64) -> Option<BooleanArray> {
        let range = start as u32..(start + n) as u32;
        match self {
            Keep::All => None,
            Keep::AllBut(d) if d.range_cardinality(range.clone()) == 0 => None,
            Keep::AllBut(d) => Some(BooleanArray::from_iter(range.map(|r| Some(!d.contains(r))))),
            Keep::Only(m) if m.range_cardinality(range.clone()) == n => None,
            Keep::Only(m) => Some(BooleanArray::from_iter(range.map(|r| Some(m.contains(r))))),
        }
    }
}

/// Reads some row ranges of one fragment: the given columns, cut into batches, with the rows
/// to keep marked (deletions, earlier matches, a filter).
struct FragmentScan {
    fragment_id: u64,
    cursors: Vec<ColumnCursor>,
    /// Schema of the batches read: the columns, then `_rowid` when `with_row_id`.
    schema: SchemaRef,
    with_row_id: bool,
    ranges: Vec<Range<u64>>,
    range: usize,
    position: u64,
    keep: Keep,
    predicate: Option<FilterRef>,
}

impl FragmentScan {
    #[allow(clippy::too_many_arguments)]
    async fn open(
        table: &TableInner,
        fragment: &FragmentProto,
        fields: &[(i32, Arc<Field>)],
        with_row_id: bool,
        ranges: Vec<Range<u64>>,
        keep: Keep,
        predicate: Option<FilterRef>,
        readahead: usize,
    ) -> Result<Self> {
        let mut cursors = Vec::with_capacity(fields.len());
        for (field_id, field) in fields {
            let reader = fragment_reader(table, fragment, *field_id).await?;
            cursors.push(ColumnCursor::new(
                reader, *field_id, field, readahead, &ranges,
            )?);
        }
        Ok(FragmentScan {
            fragment_id: fragment.id,
            cursors,
            schema: output_schema(fields, with_row_id),
            with_row_id,
            ranges,
            range: 0,
            position: 0,
            keep,
            predicate,
        })
    }

    /// The next batch of up to `batch_size` rows read, and the mask of rows to keep (`None`:
    /// all). `None` at the end of the ranges.
    async fn next_raw(
        &mut self,
        batch_size: u64,
    ) -> Result<Option<(u64, RecordBatch, Option<BooleanArray>)>> {
        let (start, mut n) = loop {
            let Some(range) = self.ranges.get(self.range) else {
                return Ok(None);
            };
            self.position = self.position.max(range.start);
            if self.position >= range.end {
                self.range += 1;
                continue;
            }
            break (self.position, batch_size.min(range.end - self.position));
        };
        let mut in_page = u64::MAX;
        for cursor in &mut self.cursors {
            cursor.seek(start).await?;
            in_page = in_page.min(cursor.available() as u64);
        }
        // Cut batches at page boundaries when the pages are big enough: each column is then
        // a zero-copy slice of its page instead of a concatenation of several.
        if in_page >= n.min(MIN_PAGE_ALIGNED_ROWS) {
            n = n.min(in_page);
        }
        let mut columns = Vec::with_capacity(self.cursors.len() + 1);
        for cursor in &mut self.cursors {
            columns.push(cursor.next_rows(n as usize).await?);
        }
        self.position = start + n;
        if self.with_row_id {
            let base = row_address(self.fragment_id, 0);
            columns.push(Arc::new(UInt64Array::from_iter_values(
                (start..start + n).map(|r| base | r),
            )) as ArrayRef);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(n as usize));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        let mut mask = self.keep.mask(start, n);
        if let Some(predicate) = &self.predicate {
            let matches = predicate.evaluate(&batch)?;
            mask = Some(match mask {
                Some(m) => arrow_arith::boolean::and(&m, &matches)?,
                None => matches,
            });
        }
        Ok(Some((start, batch, mask)))
    }

    /// The next batch of kept rows (possibly empty), or `None` at the end.
    async fn next_kept(&mut self, batch_size: u64) -> Result<Option<RecordBatch>> {
        let Some((_, batch, mask)) = self.next_raw(batch_size).await? else {
            return Ok(None);
        };
        Ok(Some(match mask {
            Some(mask) => filter_record_batch(&batch, &mask)?,
            None => batch,
        }))
    }
}

/// Every stored row of `fragment`, deleted ones included, as batches of `fields` (plus
/// `_rowid` when `with_row_id`): the input for columns added beside the fragment's data files,
/// which must hold a value for each stored row.
pub(crate) async fn stored_rows(
    table: &TableInner,
    fragment: &FragmentProto,
    fields: &[(i32, Arc<Field>)],
    with_row_id: bool,
) -> Result<super::BatchStream> {
    let scan = FragmentScan::open(
        table,
        fragment,
        fields,
        with_row_id,
        all_rows(fragment),
        Keep::All,
        None,
        2,
    )
    .await?;
    Ok(stream::try_unfold(scan, |mut scan| async move {
        Ok(scan
            .next_kept(DEFAULT_BATCH_SIZE as u64)
            .await?
            .map(|batch| (batch, scan)))
    })
    .boxed())
}

/// Rows of `fragment` (live) matching `filter`, stopping once `enough` are found. With
/// `indexed` covering the fragment, the rows the indexes yield are the matches (exact
/// answers: no column is read) or the only candidates rechecked; otherwise the filter's
/// columns are scanned where page statistics allow a match.
pub(crate) async fn fragment_matches(
    table: &TableInner,
    manifest: &Manifest,
    fragment: &FragmentProto,
    filter: &FilterRef,
    enough: u64,
    indexed: Option<&IndexedRows>,
) -> Result<RoaringBitmap> {
    let mut matches = RoaringBitmap::new();
    let deleted = table.deleted_rows(fragment).await?;
    let (ranges, keep) = match indexed.and_then(|i| Some((i.exact, i.fragment(fragment.id)?))) {
        Some((exact, mut rows)) => {
            // An index never yields a row the fragment does not hold.
            if fragment.physical_rows <= u64::from(u32::MAX) {
                rows.remove_range(fragment.physical_rows as u32..);
            }
            if let Some(deleted) = &deleted {
                rows -= deleted.as_ref();
            }
            if exact || rows.is_empty() {
                // A limit is pushed into the index answer: rows come in offset order.
                if rows.len() > enough {
                    if let Some(first_unwanted) = rows.select(enough as u32) {
                        rows.remove_range(first_unwanted..);
                    }
                }
                return Ok(rows);
            }
            (
                runs(&rows, MIN_PAGE_ALIGNED_ROWS),
                Keep::Only(Arc::new(rows)),
            )
        }
        None => {
            let Some(ranges) = candidate_ranges(table, manifest, fragment, filter).await? else {
                return Ok(matches);
            };
            (ranges, Keep::deletions(deleted))
        }
    };
    let fields = filter_fields(manifest, filter)?;
    let mut scan = FragmentScan::open(
        table,
        fragment,
        &fields,
        filter.uses_row_id(),
        ranges,
        keep,
        Some(filter.clone()),
        2,
    )
    .await?;
    while let Some((start, _, mask)) = scan.next_raw(DEFAULT_BATCH_SIZE as u64).await? {
        match mask {
            Some(mask) => {
                // Offsets come in ascending order, which `append` takes without searching.
                let offsets = mask
                    .values()
                    .set_indices()
                    .map(|i| (start + i as u64) as u32);
                matches
                    .append(offsets)
                    .map_err(|e| Error::Internal(format!("unsorted match offsets: {e}")))?;
            }
            None => {
                let n = scan.position - start;
                matches.insert_range(start as u32..(start + n) as u32);
            }
        }
        if matches.len() >= enough {
            break;
        }
    }
    Ok(matches)
}

/// The stored columns a filter reads (`_rowid` is computed, not read).
fn filter_fields(manifest: &Manifest, filter: &FilterRef) -> Result<Vec<(i32, Arc<Field>)>> {
    projection(manifest, Some(&filter.stored_columns()))
}

/// Row ranges of `fragment` whose page statistics allow a match (`None`: nothing can match).
async fn candidate_ranges(
    table: &TableInner,
    manifest: &Manifest,
    fragment: &FragmentProto,
    filter: &FilterRef,
) -> Result<Option<Vec<Range<u64>>>> {
    let all = all_rows(fragment);
    let mut metas = Vec::new();
    for (field_id, field) in filter_fields(manifest, filter)? {
        let reader = fragment_reader(table, fragment, field_id).await?;
        metas.push((field.name().clone(), field_id, reader.metadata().clone()));
    }
    let lookup = |name: &str| {
        metas
            .iter()
            .find(|(n, _, _)| n == name)
            .and_then(|(_, id, meta)| meta.columns.get(id))
    };
    let ranges = filter.candidate_ranges(&lookup).unwrap_or(all);
    Ok((!ranges.is_empty()).then_some(ranges))
}

/// The one range covering every row of `fragment`.
fn all_rows(fragment: &FragmentProto) -> Vec<Range<u64>> {
    std::iter::once(0..fragment.physical_rows).collect()
}

/// Consecutive runs of `rows`, joined across gaps shorter than `max_gap` rows.
fn runs(rows: &RoaringBitmap, max_gap: u64) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for row in rows.iter().map(u64::from) {
        match out.last_mut() {
            Some(last) if row <= last.end + max_gap => last.end = row + 1,
            _ => out.push(row..row + 1),
        }
    }
    out
}

/// How a fragment's rows are being produced.
enum FragmentState {
    /// Reading row ranges.
    Ranges(FragmentScan),
    /// Few matches: taken by address, a batch at a time.
    Take { addresses: Vec<u64>, next: usize },
}

struct ScanState {
    table: Arc<TableInner>,
    manifest: Arc<Manifest>,
    /// Output columns.
    fields: Vec<(i32, Arc<Field>)>,
    schema: SchemaRef,
    options: ScanOptions,
    next_fragment: usize,
    current: Option<FragmentState>,
    to_skip: u64,
    remaining: u64,
    /// What scalar indexes answer of the filter (computed before the first fragment).
    indexed: Option<Option<Arc<IndexedRows>>>,
    /// The next fragment, opened while the current one is read.
    upcoming: Option<Upcoming>,
}

/// A fragment being opened ahead in a task: its file footers and deletion vector read and its
/// first pages requested, so the scan does not wait a round trip at each fragment boundary.
struct Upcoming {
    fragment: usize,
    open: tokio::task::JoinHandle<Result<FragmentScan>>,
}

impl Drop for ScanState {
    fn drop(&mut self) {
        if let Some(upcoming) = &self.upcoming {
            upcoming.open.abort();
        }
    }
}

/// Every live row of `fragment`, unfiltered.
async fn open_whole_fragment(
    table: &TableInner,
    fragment: &FragmentProto,
    fields: &[(i32, Arc<Field>)],
    with_row_id: bool,
    readahead: usize,
) -> Result<FragmentScan> {
    let deleted = table.deleted_rows(fragment).await?;
    FragmentScan::open(
        table,
        fragment,
        fields,
        with_row_id,
        all_rows(fragment),
        Keep::deletions(deleted),
        None,
        readahead,
    )
    .await
}

impl ScanState {
    /// Opens fragment `index` ahead when the scan is sure to read it: no filter (a filtered
    /// fragment may be skipped or taken row by row), rows with it, and more rows wanted than the
    /// current fragment's `current_rows` (no read past a limit).
    fn open_ahead(&mut self, index: usize, current_rows: u64) {
        if self.options.filter.is_some() || self.remaining <= current_rows {
            return;
        }
        let Some(fragment) = self.manifest.fragments().get(index) else {
            return;
        };
        if fragment.live_rows() == 0 {
            return;
        }
        let fragment = fragment.clone();
        let (table, fields) = (self.table.clone(), self.fields.clone());
        let (with_row_id, readahead) = (self.options.with_row_id, self.options.readahead_pages);
        let open = tokio::spawn(async move {
            open_whole_fragment(&table, &fragment, &fields, with_row_id, readahead).await
        });
        self.upcoming = Some(Upcoming {
            fragment: index,
            open,
        });
    }

    async fn open_fragment(&mut self, fragment: &FragmentProto) -> Result<Option<FragmentState>> {
        let readahead = self.options.readahead_pages;
        let Some(filter) = self.options.filter.clone() else {
            return Ok(Some(FragmentState::Ranges(
                open_whole_fragment(
                    &self.table,
                    fragment,
                    &self.fields,
                    self.options.with_row_id,
                    readahead,
                )
                .await?,
            )));
        };
        let deleted = self.table.deleted_rows(fragment).await?;
        if self.indexed.is_none() {
            let found = index_rows(&self.table, &self.manifest, &filter).await?;
            self.indexed = Some(found.map(Arc::new));
        }
        let indexed = self.indexed.clone().flatten();
        let by_index = indexed
            .as_ref()
            .is_some_and(|i| i.covered.contains(&fragment.id));
        let filter_columns = filter_fields(&self.manifest, &filter)?;
        let covered = self
            .fields
            .iter()
            .all(|(id, _)| filter_columns.iter().any(|(f, _)| f == id));
        if covered && !by_index {
            // Everything returned is read for the filter anyway: one pass.
            let Some(ranges) =
                candidate_ranges(&self.table, &self.manifest, fragment, &filter).await?
            else {
                return Ok(None);
            };
            let mut fields = self.fields.clone();
            fields.extend(
                filter_columns
                    .into_iter()
                    .filter(|(id, _)| !self.fields.iter().any(|(f, _)| f == id)),
            );
            let with_row_id = self.options.with_row_id || filter.uses_row_id();
            return Ok(Some(FragmentState::Ranges(
                FragmentScan::open(
                    &self.table,
                    fragment,
                    &fields,
                    with_row_id,
                    ranges,
                    Keep::deletions(deleted),
                    Some(filter),
                    readahead,
                )
                .await?,
            )));
        }
        // Late materialisation: find the matches from the filter's columns, then read the
        // returned columns only where they are.
        let enough = self.to_skip.saturating_add(self.remaining);
        let matches = fragment_matches(
            &self.table,
            &self.manifest,
            fragment,
            &filter,
            enough,
            indexed.as_deref(),
        )
        .await?;
        if matches.is_empty() {
            return Ok(None);
        }
        if matches.len() * SPARSE_MATCH_RATIO <= fragment.physical_rows {
            let addresses = matches
                .iter()
                .map(|o| row_address(fragment.id, u64::from(o)))
                .collect();
            return Ok(Some(FragmentState::Take { addresses, next: 0 }));
        }
        let ranges = runs(&matches, MIN_PAGE_ALIGNED_ROWS);
        Ok(Some(FragmentState::Ranges(
            FragmentScan::open(
                &self.table,
                fragment,
                &self.fields,
                self.options.with_row_id,
                ranges,
                Keep::Only(Arc::new(matches)),
                None,
                readahead,
            )
            .await?,
        )))
    }

    /// Output columns of a batch read with extra filter columns.
    fn project(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let wanted = self.schema.fields().len();
        if batch.num_columns() == wanted {
            return Ok(batch);
        }
        let mut indices: Vec<usize> = (0..self.fields.len()).collect();
        if self.options.with_row_id {
            indices.push(batch.num_columns() - 1);
        }
        let columns = indices.iter().map(|&i| batch.column(i).clone()).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }

    /// The next non-empty batch, or `None` at the end.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let batch_size = self.options.batch_size as u64;
        loop {
            if self.remaining == 0 {
                return Ok(None);
            }
            if self.current.is_none() {
                let manifest = self.manifest.clone();
                let index = self.next_fragment;
                let Some(fragment) = manifest.fragments().get(index) else {
                    return Ok(None);
                };
                self.next_fragment += 1;
                let live = fragment.live_rows();
                if self.options.filter.is_none() && self.to_skip >= live {
                    // Skipped without reading anything.
                    self.to_skip -= live;
                    continue;
                }
                self.current = match self.upcoming.take() {
                    Some(upcoming) if upcoming.fragment == index => {
                        let opened = upcoming.open.await.map_err(|e| {
                            Error::Internal(format!("opening a fragment failed: {e}"))
                        })??;
                        Some(FragmentState::Ranges(opened))
                    }
                    other => {
                        if let Some(stale) = other {
                            stale.open.abort();
                        }
                        self.open_fragment(fragment).await?
                    }
                };
                self.open_ahead(index + 1, live.saturating_sub(self.to_skip));
                continue;
            }
            let batch = match self.current.as_mut() {
                Some(FragmentState::Ranges(scan)) => scan.next_kept(batch_size).await?,
                Some(FragmentState::Take { addresses, next }) => {
                    let end = (*next + batch_size as usize).min(addresses.len());
                    let chunk = &addresses[*next..end];
                    *next = end;
                    if chunk.is_empty() {
                        None
                    } else {
                        Some(
                            take(
                                &self.table,
                                &self.manifest,
                                chunk,
                                self.options.columns.as_deref(),
                                self.options.with_row_id,
                            )
                            .await?,
                        )
                    }
                }
                None => None,
            };
            let Some(batch) = batch else {
                self.current = None;
                continue;
            };
            let mut batch = self.project(batch)?;
            let rows = batch.num_rows() as u64;
            if self.to_skip >= rows {
                self.to_skip -= rows;
                continue;
            }
            let begin = self.to_skip;
            let len = (rows - begin).min(self.remaining);
            self.to_skip = 0;
            self.remaining -= len;
            if begin > 0 || len < rows {
                batch = batch.slice(begin as usize, len as usize);
            }
            if batch.num_rows() > 0 {
                return Ok(Some(batch));
            }
        }
    }
}

/// A fragment whose matches are at most 1 in this many rows is read by `take` of those rows
/// rather than by reading the pages around them.
const SPARSE_MATCH_RATIO: u64 = 16;

/// Batches shorter than this are not cut at page boundaries (concatenating is cheaper than
/// handing out many tiny batches).
const MIN_PAGE_ALIGNED_ROWS: u64 = 1024;

/// Limits up to this many rows are served by `take` of exactly those rows rather than by
/// reading whole pages: a `limit(10)` query reads kilobytes, not a page of every column.
const SMALL_LIMIT_ROWS: u64 = 1024;

/// Addresses of live rows `offset .. offset + limit` of `manifest`, in scan order.
async fn live_addresses(
    table: &TableInner,
    manifest: &Manifest,
    mut offset: u64,
    limit: u64,
) -> Result<Vec<u64>> {
    let mut addresses = Vec::with_capacity(limit as usize);
    for fragment in manifest.fragments() {
        if addresses.len() as u64 >= limit {
            break;
        }
        let live = fragment.live_rows();
        if offset >= live {
            offset -= live;
            continue;
        }
        let Some(deleted) = table.deleted_rows(fragment).await? else {
            let wanted = (limit - addresses.len() as u64).min(live - offset);
            addresses.extend((offset..offset + wanted).map(|row| row_address(fragment.id, row)));
            offset = 0;
            continue;
        };
        for row in 0..fragment.physical_rows {
            if addresses.len() as u64 >= limit {
                break;
            }
            if deleted.contains(row as u32) {
                continue;
            }
            if offset > 0 {
                offset -= 1;
                continue;
            }
            addresses.push(row_address(fragment.id, row));
        }
    }
    Ok(addresses)
}

/// The plan [`scan`] runs for `options`: the small-limit take, or a scan of the projected
/// columns with the filter pushed into it. Filter pruning is computed from page statistics
/// (file metadata, usually cached), without reading pages.
pub(crate) async fn explain(
    table: &TableInner,
    manifest: &Manifest,
    options: &ScanOptions,
) -> Result<PlanNode> {
    let fields = projection(manifest, options.columns.as_deref())?;
    let mut columns: Vec<String> = fields.iter().map(|(_, f)| f.name().clone()).collect();
    if options.with_row_id {
        columns.push(ROW_ID.to_string());
    }
    let columns = format!("[{}]", columns.join(", "));
    let fragments = manifest.fragments();
    let live_rows: u64 = fragments.iter().map(FragmentProto::live_rows).sum();
    if let Some(limit) = small_limit(options) {
        return Ok(PlanNode::new("Take")
            .with("columns", columns)
            .with("rows", limit.min(live_rows.saturating_sub(options.offset)))
            .child(
                PlanNode::new("LiveRows")
                    .with("offset", options.offset)
                    .with("limit", limit)
                    .with_verbose(
                        "reads",
                        "row addresses from the manifest and deletion vectors; no pages",
                    ),
            ));
    }
    let mut scan = PlanNode::new("Scan")
        .with("columns", columns)
        .with("fragments", fragments.len())
        .with("rows", live_rows)
        .with_verbose("batch_size", options.batch_size)
        .with_verbose("readahead_pages", options.readahead_pages);
    if let Some(filter) = &options.filter {
        let mut pruned = 0usize;
        let mut candidate_rows = 0u64;
        // Pages of the filter's columns: all, and those holding candidate rows.
        let (mut pages, mut candidate_pages) = (0usize, 0usize);
        let read_fields = filter_fields(manifest, filter)?;
        let indexed = index_rows(table, manifest, filter).await?;
        for fragment in fragments {
            // Fragments the indexes answer read no pages of the filter's columns to find
            // candidates (inexact answers read them only where candidates are).
            if let Some(rows) = indexed.as_ref().and_then(|i| i.fragment(fragment.id)) {
                candidate_rows += rows.len();
                continue;
            }
            let ranges = candidate_ranges(table, manifest, fragment, filter).await?;
            match &ranges {
                Some(ranges) => {
                    candidate_rows += ranges.iter().map(|r| r.end - r.start).sum::<u64>()
                }
                None => pruned += 1,
            }
            for (field_id, _) in &read_fields {
                let field_id = *field_id;
                let reader = fragment_reader(table, fragment, field_id).await?;
                let column = reader.metadata().column(field_id, reader.path())?;
                for page in column.row_starts.windows(2) {
                    pages += 1;
                    let overlaps = ranges
                        .as_ref()
                        .is_some_and(|rs| rs.iter().any(|r| r.start < page[1] && page[0] < r.end));
                    candidate_pages += usize::from(overlaps);
                }
            }
        }
        let filter_columns = filter.stored_columns();
        let late = fields
            .iter()
            .any(|(_, f)| !filter_columns.iter().any(|c| c == f.name()));
        let mut filter_node = PlanNode::new("Filter")
            .with("filter", filter.text())
            .with("reads", format!("[{}]", filter_columns.join(", ")))
            .with("fragments_pruned", format!("{pruned}/{}", fragments.len()))
            .with(
                "pages_pruned",
                format!("{}/{pages}", pages - candidate_pages),
            )
            .with("candidate_rows", candidate_rows)
            .with(
                "then",
                if late {
                    "late materialisation (other columns read only where rows match)"
                } else {
                    "one pass (the filter's columns are the output)"
                },
            )
            .with_verbose(
                "pruning",
                "page min/max/null counts of the filter's columns (AND intersects, OR unites)",
            );
        if let Some(indexed) = &indexed {
            filter_node = filter_node.child(indexed.node(fragments.len()));
        }
        scan = scan.child(filter_node);
    }
    if options.offset > 0 || options.limit.is_some() {
        let limit = options.limit.map_or("none".to_string(), |l| l.to_string());
        return Ok(PlanNode::new("Limit")
            .with("offset", options.offset)
            .with("limit", limit)
            .child(scan));
    }
    Ok(scan)
}

/// The limit of a scan served by [`live_addresses`] and a take instead of reading pages.
fn small_limit(options: &ScanOptions) -> Option<u64> {
    options
        .limit
        .filter(|&l| l <= SMALL_LIMIT_ROWS && options.filter.is_none())
}

/// A stream of the batches a scan of `manifest` returns, and their schema.
pub(crate) fn scan(
    table: Arc<TableInner>,
    manifest: Arc<Manifest>,
    options: ScanOptions,
) -> Result<(SchemaRef, BoxStream<'static, Result<RecordBatch>>)> {
    if options.batch_size == 0 {
        return Err(Error::invalid("batch_size must be at least 1"));
    }
    let fields = projection(&manifest, options.columns.as_deref())?;
    let schema = output_schema(&fields, options.with_row_id);
    if let Some(limit) = small_limit(&options) {
        let batch_size = options.batch_size;
        let stream = stream::once(async move {
            let addresses = live_addresses(&table, &manifest, options.offset, limit).await?;
            take(
                &table,
                &manifest,
                &addresses,
                options.columns.as_deref(),
                options.with_row_id,
            )
            .await
        })
        .map_ok(move |batch| {
            let slices: Vec<Result<RecordBatch>> = (0..batch.num_rows())
                .step_by(batch_size)
                .map(|start| Ok(batch.slice(start, batch_size.min(batch.num_rows() - start))))
                .collect();
            stream::iter(slices)
        })
        .try_flatten()
        .boxed();
        return Ok((schema, stream));
    }
    let state = ScanState {
        table,
        manifest,
        fields,
        schema: schema.clone(),
        to_skip: options.offset,
        remaining: options.limit.unwrap_or(u64::MAX),
        options,
        next_fragment: 0,
        current: None,
        indexed: None,
        upcoming: None,
    };
    let stream = stream::try_unfold(state, |mut state| async move {
        Ok(state.next_batch().await?.map(|batch| (batch, state)))
    })
    .boxed();
    Ok((schema, stream))
}

/// Rows at `addresses` (in that order; repeats allowed) of `manifest`.
pub(crate) async fn take(
    table: &Arc<TableInner>,
    manifest: &Manifest,
    addresses: &[u64],
    columns: Option<&[String]>,
    with_row_id: bool,
) -> Result<RecordBatch> {
    let fields = projection(manifest, columns)?;
    let schema = output_schema(&fields, with_row_id);
    // Sorted unique addresses; the fragment id is the high half, so they group by fragment.
    let mut unique: Vec<u64> = addresses.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let mut fragment_runs: Vec<(&FragmentProto, Vec<u64>)> = Vec::new();
    for &address in &unique {
        let fragment_id = address >> 32;
        let offset = address & 0xFFFF_FFFF;
        let same = matches!(fragment_runs.last(), Some((f, _)) if f.id == fragment_id);
        if !same {
            let fragment = manifest
                .fragments()
                .iter()
                .find(|f| f.id == fragment_id)
                .ok_or_else(|| {
                    Error::RowNotFound(format!(
                        "{address} (fragment {fragment_id} is not in version {})",
                        manifest.version()
                    ))
                })?;
            fragment_runs.push((fragment, Vec::new()));
        }
        if let Some((fragment, offsets)) = fragment_runs.last_mut() {
            if offset >= fragment.physical_rows {
                return Err(Error::RowNotFound(address.to_string()));
            }
            offsets.push(offset);
        }
    }
    for (fragment, offsets) in &fragment_runs {
        if let Some(deleted) = table.deleted_rows(fragment).await? {
            if let Some(o) = offsets.iter().find(|&&o| deleted.contains(o as u32)) {
                return Err(Error::RowNotFound(format!(
                    "{} (deleted)",
                    row_address(fragment.id, *o)
                )));
            }
        }
    }
    // Every (fragment, column) read runs concurrently. On a cloud store their ranges are
    // gathered into one request set per file: a row's small columns lie close together and
    // coalesce into one request where apart they would cost one each.
    let reads_count = fragment_runs.len() * fields.len();
    let mut members = if table.storage.is_cloud() && reads_count > 1 {
        crate::storage::gather(reads_count)
    } else {
        Vec::new()
    }
    .into_iter();
    let reads = fragment_runs.iter().flat_map(|(fragment, offsets)| {
        fields
            .iter()
            .map(move |(field_id, field)| (fragment, offsets, field_id, field))
    });
    let reads = reads.map(|(fragment, offsets, field_id, field)| {
        let member = members.next();
        async move {
            let reader = fragment_reader(table, fragment, *field_id).await?;
            let taken = reader
                .take_gathered(*field_id, offsets, member.as_ref())
                .await?;
            as_stored(taken, field, reader.path())
        }
    });
    let arrays = futures::future::try_join_all(reads).await?;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(fields.len() + 1);
    for (i, (_, field)) in fields.iter().enumerate() {
        let parts: Vec<ArrayRef> = arrays
            .iter()
            .skip(i)
            .step_by(fields.len().max(1))
            .cloned()
            .collect();
        columns.push(concat_parts(parts, field.data_type())?);
    }
    if with_row_id {
        columns.push(Arc::new(UInt64Array::from(unique.clone())));
    }
    let options = RecordBatchOptions::new().with_row_count(Some(unique.len()));
    let batch = RecordBatch::try_new_with_options(schema, columns, &options)?;
    if unique.as_slice() == addresses {
        return Ok(batch);
    }
    let indices = UInt32Array::from_iter_values(
        addresses
            .iter()
            .map(|a| unique.partition_point(|u| u < a) as u32),
    );
    let columns = batch
        .columns()
        .iter()
        .map(|c| arrow_select::take::take(c.as_ref(), &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(addresses.len()));
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &options,
    )?)
}
