//! Streaming scans and takes over a table version.
//!
//! A scan walks fragments in order. For each fragment, every projected column has its own
//! stream of pages, read ahead a few pages at a time on tokio workers (so reading, checksum
//! and decoding overlap across columns), and batches are cut from those pages. Deleted rows
//! are filtered out with the fragment's deletion vector. Memory is bounded by
//! columns × (read-ahead + 1) pages plus one batch, not by the table.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::filter::filter_record_batch;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use roaring::RoaringBitmap;

use super::manifest::{FragmentProto, Manifest};
use super::TableInner;
use crate::error::{Error, Result};
use crate::format::reader::{concat_parts, FileReader};

/// Name of the row address column.
pub const ROW_ID: &str = "_rowid";

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
        }
    }
}

/// Row address of `offset` in fragment `fragment_id`.
pub fn row_address(fragment_id: u64, offset: u64) -> u64 {
    (fragment_id << 32) | offset
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
async fn fragment_reader(
    table: &TableInner,
    fragment: &FragmentProto,
    field_id: i32,
) -> Result<FileReader> {
    let file = fragment
        .files
        .iter()
        .find(|f| f.field_ids.contains(&field_id))
        .ok_or_else(|| {
            Error::Internal(format!(
                "fragment {} has no file for field {field_id}",
                fragment.id
            ))
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

/// Pages of one column, read ahead, handed out as row slices.
struct ColumnCursor {
    pages: BoxStream<'static, Result<ArrayRef>>,
    current: Option<ArrayRef>,
    position: usize,
    data_type: DataType,
}

impl ColumnCursor {
    fn new(reader: FileReader, field_id: i32, readahead: usize) -> Result<Self> {
        let column = reader.metadata().column(field_id, reader.path())?;
        let data_type = column.data_type.clone();
        let num_pages = column.pages.len();
        let pages = stream::iter(0..num_pages)
            .map(move |page| {
                let reader = reader.clone();
                tokio::spawn(async move {
                    let mut arrays = reader.read_pages(field_id, page..page + 1).await?;
                    arrays
                        .pop()
                        .ok_or_else(|| Error::Internal("page read returned nothing".into()))
                })
            })
            .buffered(readahead.max(1))
            .map(|joined| {
                joined.map_err(|e| Error::Internal(format!("page reader failed: {e}")))?
            })
            .boxed();
        Ok(ColumnCursor {
            pages,
            current: None,
            position: 0,
            data_type,
        })
    }

    /// Rows left in the current page, loading the next page when this one is used up (0 at
    /// the end of the column).
    async fn available(&mut self) -> Result<usize> {
        loop {
            let remaining = self.current.as_ref().map_or(0, |c| c.len() - self.position);
            if remaining > 0 {
                return Ok(remaining);
            }
            match self.pages.next().await {
                Some(page) => {
                    self.current = Some(page?);
                    self.position = 0;
                }
                None => return Ok(0),
            }
        }
    }

    /// The next `n` rows of the column.
    async fn next_rows(&mut self, mut n: usize) -> Result<ArrayRef> {
        let mut parts = Vec::new();
        while n > 0 {
            let remaining = self.current.as_ref().map_or(0, |c| c.len() - self.position);
            if remaining == 0 {
                match self.pages.next().await {
                    Some(page) => {
                        self.current = Some(page?);
                        self.position = 0;
                        continue;
                    }
                    None => return Err(Error::Internal("column ended before the fragment".into())),
                }
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

/// Scan state of one fragment.
struct FragmentScan {
    fragment_id: u64,
    cursors: Vec<ColumnCursor>,
    deleted: Option<Arc<RoaringBitmap>>,
    position: u64,
    physical_rows: u64,
}

struct ScanState {
    table: Arc<TableInner>,
    manifest: Arc<Manifest>,
    fields: Vec<(i32, Arc<Field>)>,
    schema: SchemaRef,
    options: ScanOptions,
    next_fragment: usize,
    current: Option<FragmentScan>,
    to_skip: u64,
    remaining: u64,
}

impl ScanState {
    async fn open_fragment(&mut self, fragment: &FragmentProto) -> Result<FragmentScan> {
        let mut cursors = Vec::with_capacity(self.fields.len());
        for (field_id, _) in &self.fields {
            let reader = fragment_reader(&self.table, fragment, *field_id).await?;
            cursors.push(ColumnCursor::new(
                reader,
                *field_id,
                self.options.readahead_pages,
            )?);
        }
        let deleted = match &fragment.deletion {
            Some(d) => Some(self.table.deletion_vector(d).await?),
            None => None,
        };
        Ok(FragmentScan {
            fragment_id: fragment.id,
            cursors,
            deleted,
            position: 0,
            physical_rows: fragment.physical_rows,
        })
    }

    /// The next non-empty batch, or `None` at the end.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.remaining == 0 {
                return Ok(None);
            }
            if self.current.is_none() {
                let manifest = self.manifest.clone();
                let Some(fragment) = manifest.fragments().get(self.next_fragment) else {
                    return Ok(None);
                };
                self.next_fragment += 1;
                let live = fragment.live_rows();
                if self.to_skip >= live {
                    // Skipped without reading anything.
                    self.to_skip -= live;
                    continue;
                }
                self.current = Some(self.open_fragment(fragment).await?);
            }
            let Some(frag) = self.current.as_mut() else {
                continue;
            };
            if frag.position >= frag.physical_rows {
                self.current = None;
                continue;
            }
            let mut n = (self.options.batch_size as u64).min(frag.physical_rows - frag.position);
            // Cut batches at page boundaries when the pages are big enough: each column is then
            // a zero-copy slice of its page instead of a concatenation of several.
            let mut in_page = u64::MAX;
            for cursor in &mut frag.cursors {
                in_page = in_page.min(cursor.available().await? as u64);
            }
            if in_page >= n.min(MIN_PAGE_ALIGNED_ROWS) {
                n = n.min(in_page);
            }
            let mut columns = Vec::with_capacity(self.fields.len() + 1);
            for cursor in &mut frag.cursors {
                columns.push(cursor.next_rows(n as usize).await?);
            }
            let start = frag.position;
            frag.position += n;
            if self.options.with_row_id {
                let base = row_address(frag.fragment_id, 0);
                columns.push(Arc::new(UInt64Array::from_iter_values(
                    (start..start + n).map(|r| base | r),
                )) as ArrayRef);
            }
            let options = RecordBatchOptions::new().with_row_count(Some(n as usize));
            let mut batch =
                RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
            if let Some(deleted) = &frag.deleted {
                let end = start + n;
                if deleted.range_cardinality(start as u32..end as u32) > 0 {
                    let keep = BooleanArray::from_iter(
                        (start..end).map(|r| Some(!deleted.contains(r as u32))),
                    );
                    batch = filter_record_batch(&batch, &keep)?;
                }
            }
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
        let Some(deletion) = &fragment.deletion else {
            let wanted = (limit - addresses.len() as u64).min(live - offset);
            addresses.extend((offset..offset + wanted).map(|row| row_address(fragment.id, row)));
            offset = 0;
            continue;
        };
        let deleted = table.deletion_vector(deletion).await?;
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
    if let Some(limit) = options.limit.filter(|&l| l <= SMALL_LIMIT_ROWS) {
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
        if let Some(d) = &fragment.deletion {
            let deleted = table.deletion_vector(d).await?;
            if let Some(o) = offsets.iter().find(|&&o| deleted.contains(o as u32)) {
                return Err(Error::RowNotFound(format!(
                    "{} (deleted)",
                    row_address(fragment.id, *o)
                )));
            }
        }
    }
    // Every (fragment, column) read runs concurrently.
    let reads = fragment_runs.iter().flat_map(|(fragment, offsets)| {
        fields.iter().map(move |(field_id, _)| async move {
            let reader = fragment_reader(table, fragment, *field_id).await?;
            reader.take(*field_id, offsets).await
        })
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
