//! Reads data files: metadata (one tail read when it fits), whole pages for scans, and single
//! values for `take`.
//!
//! `take` on a fixed-width column (primitives, vectors) reads exactly the bytes of each wanted
//! value: one ranged read per non-adjacent row (plus one read of the validity bits of a page
//! that holds nulls). A variable-width column reads the two offsets of each value, then its
//! bytes: two reads per row. Other types (lists, structs, booleans) read the whole page.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, UInt32Array};
use arrow_buffer::{BooleanBufferBuilder, MutableBuffer, NullBuffer};
use arrow_schema::DataType;
use arrow_select::concat::concat;
use bytes::Bytes;
use object_store::path::Path;

use super::encoding::{check_layout, decode_page, fixed_width_array, var_width_array};
use super::stats::PageStats;
use super::{
    decode_bounded_message, ColumnIndexProto, ColumnLocation, ColumnMetadataProto, Footer,
    BLOCK_TRAILER_LEN, COLUMN_INDEX_SHAPE, COLUMN_METADATA_SHAPE, FOOTER_LEN, HEADER_LEN,
    MAX_COLUMN_INDEX_BYTES, MAX_DECODED_BYTES, MAX_FILE_ROWS, MAX_METADATA_BYTES, PAGE_ALIGNMENT,
};
use crate::error::{Error, Result};
use crate::schema::TableSchema;
use crate::storage::{GatherMember, Storage, SyncFile};

/// How much of a file's end to fetch when opening it: enough for the metadata of most files,
/// so opening costs a single request.
const TAIL_READ: u64 = 64 * 1024;

/// On a cloud store, a take that must read from a page of at most this many bytes reads the
/// whole page (into the block cache) in the same request. At S3's 100 MB/s or so per request
/// a MiB adds about 10 ms, less than the round trip that a later take from the page (a
/// table's narrow columns, fetched row by row) would otherwise cost. Larger pages (a vector
/// column's) are read value by value.
const WHOLE_PAGE_READ: u64 = 1024 * 1024;

/// One page as described by the page table.
#[derive(Debug, Clone)]
pub struct PageMeta {
    pub offset: u64,
    pub length: u64,
    pub num_rows: u64,
    pub null_count: u64,
    pub crc32: u32,
    pub buffers: Vec<(u64, u64)>,
    pub stats: PageStats,
}

/// One column of a file.
#[derive(Debug, Clone)]
pub struct ColumnMeta {
    pub data_type: DataType,
    pub pages: Vec<PageMeta>,
    /// First row of each page, plus the total row count at the end.
    pub row_starts: Vec<u64>,
}

impl ColumnMeta {
    /// Index of the page holding `row`.
    pub fn page_of(&self, row: u64) -> usize {
        self.row_starts.partition_point(|&s| s <= row) - 1
    }
}

/// Everything the footer, column index and column metadata blocks say about a file.
#[derive(Debug)]
pub struct FileMetadata {
    pub num_rows: u64,
    pub size_bytes: u64,
    pub columns: HashMap<i32, ColumnMeta>,
    /// Approximate heap size, used to weigh the metadata cache.
    pub heap_bytes: usize,
}

impl FileMetadata {
    /// The column with top-level field id `field_id`.
    pub fn column(&self, field_id: i32, path: &Path) -> Result<&ColumnMeta> {
        self.columns.get(&field_id).ok_or_else(|| {
            Error::corrupt(
                path,
                format!("data file has no column for field id {field_id}"),
            )
        })
    }
}

/// Reads and validates the metadata of the data file at `path`. Reads only the metadata:
/// the footer's lengths and the column index's block locations are checked against the file,
/// against each other and against [`MAX_COLUMN_INDEX_BYTES`] and [`MAX_METADATA_BYTES`]
/// before the bytes they point at are read, and decoding is bounded by [`MAX_DECODED_BYTES`].
pub async fn read_metadata(storage: &Storage, path: &Path) -> Result<FileMetadata> {
    let (tail, size) = storage.read_tail(path, TAIL_READ).await?;
    if size < HEADER_LEN + FOOTER_LEN || (tail.len() as u64) < FOOTER_LEN {
        return Err(Error::corrupt(
            path,
            "file is too short to be a data file (truncated?)",
        ));
    }
    let tail_start = size - tail.len() as u64;
    let footer = Footer::decode(&tail[tail.len() - FOOTER_LEN as usize..], path)?;
    let index_start = footer.column_index_offset;
    let index_end = index_start.checked_add(u64::from(footer.column_index_length));
    if index_end != Some(size - FOOTER_LEN) || index_start < HEADER_LEN {
        return Err(Error::corrupt(
            path,
            "footer points outside the file (truncated or appended to?)",
        ));
    }
    let index_end = size - FOOTER_LEN;
    if u64::from(footer.column_index_length) > MAX_COLUMN_INDEX_BYTES {
        return Err(Error::corrupt(
            path,
            format!(
                "column index of {} bytes is larger than the {MAX_COLUMN_INDEX_BYTES} allowed",
                footer.column_index_length
            ),
        ));
    }
    if footer.num_rows > MAX_FILE_ROWS {
        return Err(Error::corrupt(
            path,
            format!(
                "file claims {} rows; a data file holds at most {MAX_FILE_ROWS}",
                footer.num_rows
            ),
        ));
    }
    // Ranges here lie inside the file and are at most `MAX_METADATA_BYTES` long (checked
    // first), so the slice bounds cannot fail.
    let slice_or_read = |range: Range<u64>| {
        let tail = tail.clone();
        async move {
            if range.start >= tail_start {
                let s = (range.start - tail_start) as usize;
                let e = (range.end - tail_start) as usize;
                Ok(tail.slice(s..e))
            } else {
                storage.read_range(path, range).await
            }
        }
    };
    let mut budget = MAX_DECODED_BYTES;
    let index_bytes = slice_or_read(index_start..index_end).await?;
    let index: ColumnIndexProto = decode_bounded_message(
        &index_bytes,
        path,
        "column index",
        &COLUMN_INDEX_SHAPE,
        &mut budget,
    )?;
    if index.num_rows != footer.num_rows || index.columns.len() != footer.num_columns as usize {
        return Err(Error::corrupt(
            path,
            "column index disagrees with the footer",
        ));
    }
    // The writer puts the column metadata blocks back to back just before the column index,
    // so together they must tile [meta_start, column index) exactly: what is read is exactly
    // the blocks the index declares, and no block overlaps a page or another block.
    let mut locations: Vec<&ColumnLocation> = index.columns.iter().collect();
    locations.sort_unstable_by_key(|c| c.offset);
    let meta_start = locations.first().map_or(index_start, |c| c.offset);
    let mut at = meta_start;
    for c in &locations {
        if c.offset != at || c.length < BLOCK_TRAILER_LEN as u64 {
            return Err(Error::corrupt(
                path,
                "column metadata blocks do not tile the metadata region",
            ));
        }
        at = at
            .checked_add(c.length)
            .ok_or_else(|| Error::corrupt(path, "column metadata block lies outside the file"))?;
    }
    if at != index_start || meta_start < HEADER_LEN {
        return Err(Error::corrupt(
            path,
            "column metadata blocks do not end where the column index starts",
        ));
    }
    if index_start - meta_start > MAX_METADATA_BYTES {
        return Err(Error::corrupt(
            path,
            format!(
                "column metadata of {} bytes is larger than the {MAX_METADATA_BYTES} allowed",
                index_start - meta_start
            ),
        ));
    }
    let meta_region = slice_or_read(meta_start..index_start).await?;
    let mut columns = HashMap::with_capacity(index.columns.len());
    let mut heap_bytes = std::mem::size_of::<FileMetadata>();
    for loc in &index.columns {
        let s = (loc.offset - meta_start) as usize;
        let block = &meta_region[s..s + loc.length as usize];
        let proto: ColumnMetadataProto = decode_bounded_message(
            block,
            path,
            "column metadata",
            &COLUMN_METADATA_SHAPE,
            &mut budget,
        )?;
        if proto.field_id != loc.field_id {
            return Err(Error::corrupt(
                path,
                "column metadata has the wrong field id",
            ));
        }
        let schema = TableSchema::from_protos(proto.fields, HashMap::new())
            .map_err(|e| e.corrupt_in(path, &format!("type of column {}", loc.field_id)))?;
        let data_type = match schema.arrow.fields().first() {
            Some(f) if schema.arrow.fields().len() == 1 => f.data_type().clone(),
            _ => {
                return Err(Error::corrupt(
                    path,
                    "column metadata does not describe one field",
                ))
            }
        };
        let mut pages = Vec::with_capacity(proto.pages.len());
        let mut row_starts = Vec::with_capacity(proto.pages.len() + 1);
        let mut rows = 0u64;
        for p in proto.pages {
            let bad_page = |why: &str| {
                Error::corrupt(
                    path,
                    format!(
                        "page table entry of column {} at offset {}: {why}",
                        loc.field_id, p.offset
                    ),
                )
            };
            if p.offset < HEADER_LEN || !p.offset.is_multiple_of(PAGE_ALIGNMENT) {
                return Err(bad_page("the page is not at an aligned offset in the file"));
            }
            if p.offset
                .checked_add(p.length)
                .is_none_or(|end| end > meta_start)
            {
                return Err(bad_page("the page runs into the metadata"));
            }
            if p.null_count > p.num_rows {
                return Err(bad_page("more nulls than rows"));
            }
            if p.buffers.len() % 2 != 0 {
                return Err(bad_page("the buffer table has an odd length"));
            }
            let buffers: Vec<(u64, u64)> =
                p.buffers.chunks_exact(2).map(|b| (b[0], b[1])).collect();
            check_layout(&data_type, p.num_rows, &buffers, p.length)
                .map_err(|why| bad_page(&why))?;
            row_starts.push(rows);
            rows = rows
                .checked_add(p.num_rows)
                .filter(|&rows| rows <= footer.num_rows)
                .ok_or_else(|| bad_page("the pages hold more rows than the file"))?;
            heap_bytes += std::mem::size_of::<PageMeta>() + buffers.len() * 16 + 32;
            pages.push(PageMeta {
                offset: p.offset,
                length: p.length,
                num_rows: p.num_rows,
                null_count: p.null_count,
                crc32: p.crc32,
                buffers,
                stats: PageStats {
                    min: p.min,
                    max: p.max,
                    has_nan: p.has_nan,
                },
            });
        }
        row_starts.push(rows);
        if rows != footer.num_rows {
            return Err(Error::corrupt(
                path,
                "a column's pages do not add up to the file's row count",
            ));
        }
        let column = ColumnMeta {
            data_type,
            pages,
            row_starts,
        };
        if columns.insert(loc.field_id, column).is_some() {
            return Err(Error::corrupt(
                path,
                format!("the column index lists field id {} twice", loc.field_id),
            ));
        }
    }
    Ok(FileMetadata {
        num_rows: footer.num_rows,
        size_bytes: size,
        columns,
        heap_bytes,
    })
}

/// A data file with its metadata loaded.
#[derive(Debug, Clone)]
pub struct FileReader {
    storage: Storage,
    path: Path,
    meta: Arc<FileMetadata>,
}

impl FileReader {
    pub fn new(storage: Storage, path: Path, meta: Arc<FileMetadata>) -> Self {
        FileReader {
            storage,
            path,
            meta,
        }
    }

    pub fn metadata(&self) -> &Arc<FileMetadata> {
        &self.meta
    }

    /// Reads byte ranges of the file. A file whose metadata was read but that is gone now
    /// was removed by a cleanup (or from outside): a `MissingFile` error says so.
    async fn fetch(
        &self,
        ranges: &[std::ops::Range<u64>],
        extents: &[std::ops::Range<u64>],
        gather: Option<&GatherMember>,
    ) -> Result<Vec<Bytes>> {
        let size = self.meta.size_bytes;
        match gather {
            Some(member) => {
                member
                    .read(&self.storage, &self.path, size, ranges, extents)
                    .await
            }
            None => {
                self.storage
                    .read_ranges_cached(&self.path, size, ranges, extents)
                    .await
            }
        }
        .map_err(|e| match e {
            Error::Storage(object_store::Error::NotFound { .. }) => {
                Error::MissingFile(self.path.to_string())
            }
            e => e,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_page(&self, page: &PageMeta, bytes: &Bytes) -> Result<()> {
        if bytes.len() as u64 != page.length || crc32fast::hash(bytes) != page.crc32 {
            return Err(Error::corrupt(
                &self.path,
                format!("page at offset {} fails its checksum", page.offset),
            ));
        }
        Ok(())
    }

    fn decode(&self, column: &ColumnMeta, page: &PageMeta, bytes: &Bytes) -> Result<ArrayRef> {
        self.check_page(page, bytes)?;
        // Page row counts were checked against the file's, at most `MAX_FILE_ROWS`.
        decode_page(
            &column.data_type,
            page.num_rows as usize,
            bytes,
            &page.buffers,
        )
        .map_err(|e| {
            Error::corrupt(
                &self.path,
                format!("page at offset {} does not decode: {e}", page.offset),
            )
        })
    }

    /// Reads and decodes whole pages of one column (checksums verified), in one batched request.
    pub async fn read_pages(&self, field_id: i32, pages: Range<usize>) -> Result<Vec<ArrayRef>> {
        let column = self.meta.column(field_id, &self.path)?;
        let metas = column
            .pages
            .get(pages.clone())
            .ok_or_else(|| Error::Internal(format!("page range {pages:?} out of bounds")))?;
        let ranges: Vec<Range<u64>> = metas
            .iter()
            .map(|p| p.offset..p.offset + p.length)
            .collect();
        let bytes = self.fetch(&ranges, &[], None).await?;
        metas
            .iter()
            .zip(bytes.iter())
            .map(|(p, b)| self.decode(column, p, b))
            .collect()
    }

    /// Streams page `page` of the vector column `field_id` from `file` through `visit`, a run
    /// of whole vectors at a time: `visit(first row of the run within the page, vectors in the
    /// run, their bytes)`. Runs are about `chunk_bytes`, so reading, the checksum and the
    /// caller's work on a run all happen while it is in cache: each is read into `buf` (reused
    /// across calls; its bytes are 64-byte aligned), or sliced from the file's memory map when
    /// it has one. The page checksum is verified over every byte of the page once it has been
    /// read: on a mismatch the page's work must be discarded, which the error returned does.
    /// Returns `false`, reading nothing, when the page holds null vectors or null elements;
    /// read those with [`FileReader::read_page_sync`].
    pub fn stream_vector_page(
        &self,
        file: &SyncFile,
        field_id: i32,
        page: usize,
        chunk_bytes: usize,
        buf: &mut MutableBuffer,
        mut visit: impl FnMut(u64, usize, &[u8]) -> Result<()>,
    ) -> Result<bool> {
        let column = self.meta.column(field_id, &self.path)?;
        let meta = column
            .pages
            .get(page)
            .ok_or_else(|| Error::Internal(format!("page {page} out of bounds")))?;
        let ValueLayout::Fixed(width) = value_layout(&column.data_type) else {
            return Err(Error::Internal(
                "streamed column is not a vector column".into(),
            ));
        };
        let holds_nulls = meta.buffers.iter().take(2).any(|b| b.1 > 0);
        if holds_nulls || !matches!(column.data_type, DataType::FixedSizeList(_, _)) {
            return Ok(false);
        }
        let (start, length) = values_buffer(meta, &column.data_type);
        if width == 0
            || meta.num_rows.checked_mul(width) != Some(length)
            || start.saturating_add(length) > meta.length
        {
            return Err(Error::corrupt(
                &self.path,
                format!(
                    "page at offset {} lists a values buffer that does not fit it",
                    meta.offset
                ),
            ));
        }
        let rows_per_run = (chunk_bytes as u64 / width).max(1);
        // Never more than the page: an empty page of long vectors needs no buffer at all.
        let run_bytes = (rows_per_run * width).min(meta.length) as usize;
        let mut crc = crc32fast::Hasher::new();
        if let Some(bytes) = file.mapped(meta.offset, meta.length) {
            let bytes = bytes?;
            let (before, rest) = bytes.split_at(start as usize);
            let (values, after) = rest.split_at(length as usize);
            crc.update(before);
            let mut row = 0;
            for run in values.chunks(run_bytes.max(1)) {
                crc.update(run);
                let rows = run.len() / width as usize;
                visit(row, rows, run)?;
                row += rows as u64;
            }
            crc.update(after);
        } else {
            if buf.len() < run_bytes {
                buf.resize(run_bytes, 0);
            }
            // Bytes before and after the values (empty validity buffers, padding) count towards
            // the checksum only.
            let checksum_only = |from: u64,
                                 to: u64,
                                 buf: &mut MutableBuffer,
                                 crc: &mut crc32fast::Hasher|
             -> Result<()> {
                let mut at = from;
                while at < to {
                    // Not `as usize`: on 32-bit targets that could truncate to 0 and spin.
                    let n = run_bytes.min(usize::try_from(to - at).unwrap_or(usize::MAX));
                    let bytes = &mut buf.as_slice_mut()[..n];
                    file.read_exact_at(meta.offset + at, bytes)?;
                    crc.update(bytes);
                    at += n as u64;
                }
                Ok(())
            };
            checksum_only(0, start, buf, &mut crc)?;
            let mut row = 0;
            while row < meta.num_rows {
                let rows = rows_per_run.min(meta.num_rows - row);
                let bytes = &mut buf.as_slice_mut()[..(rows * width) as usize];
                file.read_exact_at(meta.offset + start + row * width, bytes)?;
                crc.update(bytes);
                visit(row, rows as usize, bytes)?;
                row += rows;
            }
            checksum_only(start + length, meta.length, buf, &mut crc)?;
        }
        if crc.finalize() != meta.crc32 {
            return Err(Error::corrupt(
                &self.path,
                format!("page at offset {} fails its checksum", meta.offset),
            ));
        }
        Ok(true)
    }

    /// Reads and decodes one whole page of `field_id` from `file` (checksum verified).
    pub fn read_page_sync(&self, file: &SyncFile, field_id: i32, page: usize) -> Result<ArrayRef> {
        let column = self.meta.column(field_id, &self.path)?;
        let meta = column
            .pages
            .get(page)
            .ok_or_else(|| Error::Internal(format!("page {page} out of bounds")))?;
        let length = usize::try_from(meta.length).map_err(|_| {
            Error::corrupt(
                &self.path,
                format!("page at offset {} is too large to read", meta.offset),
            )
        })?;
        let mut bytes = vec![0u8; length];
        file.read_exact_at(meta.offset, &mut bytes)?;
        self.decode(column, meta, &Bytes::from(bytes))
    }

    /// Values of column `field_id` at `rows` (sorted ascending, no duplicates), in that order.
    pub async fn take(&self, field_id: i32, rows: &[u64]) -> Result<ArrayRef> {
        self.take_gathered(field_id, rows, None).await
    }

    /// [`FileReader::take`] whose reads go through `gather` (shared with concurrent takes).
    pub async fn take_gathered(
        &self,
        field_id: i32,
        rows: &[u64],
        gather: Option<&GatherMember>,
    ) -> Result<ArrayRef> {
        let column = self.meta.column(field_id, &self.path)?;
        if let Some(&last) = rows.last() {
            if last >= self.meta.num_rows {
                return Err(Error::RowNotFound(format!(
                    "offset {last} in {}",
                    self.path
                )));
            }
        } else {
            return Ok(arrow_array::new_empty_array(&column.data_type));
        }
        let groups = group_by_page(column, rows);
        match value_layout(&column.data_type) {
            ValueLayout::Fixed(width) if fixed_pages_ok(column, &groups) => {
                self.take_fixed(column, &groups, width, gather).await
            }
            // Offsets then values cost two round trips; a page no larger than the store's
            // coalesce gap costs about as much to read whole, in one.
            ValueLayout::Variable(offset_width)
                if groups
                    .iter()
                    .any(|(p, _)| column.pages[*p].length > self.storage.coalesce_gap()) =>
            {
                self.take_variable(column, &groups, offset_width, gather)
                    .await
            }
            _ => self.take_from_pages(column, &groups, gather).await,
        }
    }

    /// The pages of `groups` small enough to read whole on a cloud store (see
    /// [`WHOLE_PAGE_READ`]).
    fn small_pages(&self, column: &ColumnMeta, groups: &[(usize, Vec<u64>)]) -> Vec<Range<u64>> {
        if !self.storage.is_cloud() {
            return Vec::new();
        }
        groups
            .iter()
            .map(|(p, _)| &column.pages[*p])
            .filter(|page| page.length <= WHOLE_PAGE_READ)
            .map(|page| page.offset..page.offset + page.length)
            .collect()
    }

    async fn take_fixed(
        &self,
        column: &ColumnMeta,
        groups: &[(usize, Vec<u64>)],
        width: u64,
        gather: Option<&GatherMember>,
    ) -> Result<ArrayRef> {
        let total: usize = groups.iter().map(|(_, r)| r.len()).sum();
        let mut ranges = Vec::with_capacity(total + groups.len());
        for (page_idx, local) in groups {
            let page = &column.pages[*page_idx];
            let values = values_buffer(page, &column.data_type);
            for &r in local {
                let start = page.offset + values.0 + r * width;
                ranges.push(start..start + width);
            }
            push_validity_range(page, local, &mut ranges);
        }
        let extents = self.small_pages(column, groups);
        let fetched = self.fetch(&ranges, &extents, gather).await?;
        let mut values = MutableBuffer::with_capacity(total * width as usize);
        let mut nulls = NullCollector::new(total);
        let mut next = fetched.iter();
        for (page_idx, local) in groups {
            let page = &column.pages[*page_idx];
            for _ in local {
                let v = next
                    .next()
                    .ok_or_else(|| Error::Internal("missing range".into()))?;
                if v.len() as u64 != width {
                    return Err(Error::corrupt(
                        &self.path,
                        "value lies past the end of its page",
                    ));
                }
                values.extend_from_slice(v);
            }
            nulls.push_page(page, local, &mut next)?;
        }
        fixed_width_array(&column.data_type, total, values, nulls.finish())
            .map_err(|e| Error::corrupt(&self.path, format!("taken values do not decode: {e}")))
    }

    async fn take_variable(
        &self,
        column: &ColumnMeta,
        groups: &[(usize, Vec<u64>)],
        offset_width: u64,
        gather: Option<&GatherMember>,
    ) -> Result<ArrayRef> {
        let total: usize = groups.iter().map(|(_, r)| r.len()).sum();
        // On a cloud store a second round trip costs more than some bytes: round 1 also reads
        // where each value would lie if the page's values were of equal length, widened by
        // SPECULATIVE_SLACK either side; a value found inside needs no round 2.
        let speculate = self.storage.is_cloud();
        // Round 1: the two offsets around each value, plus validity bits (and the guesses).
        let mut ranges = Vec::with_capacity(total + groups.len());
        // Value windows (relative to their data buffer) and their byte ranges, read after the
        // offsets and validity of every page.
        let mut guesses = Vec::new();
        let mut guess_ranges = Vec::new();
        for (page_idx, local) in groups {
            let page = &column.pages[*page_idx];
            let offsets = buffer(page, 1)?;
            for &r in local {
                let start = page.offset + offsets.0 + r * offset_width;
                ranges.push(start..start + 2 * offset_width);
            }
            push_validity_range(page, local, &mut ranges);
            if speculate {
                let data = buffer(page, 2)?;
                for &r in local {
                    let at =
                        (data.1 as u128 * u128::from(r) / u128::from(page.num_rows.max(1))) as u64;
                    let from = at.saturating_sub(SPECULATIVE_SLACK);
                    let to = at.saturating_add(SPECULATIVE_SLACK).min(data.1);
                    guesses.push(from.min(to)..to);
                    let base = page.offset + data.0;
                    guess_ranges.push(base + from.min(to)..base + to);
                }
            }
        }
        ranges.extend(guess_ranges);
        let extents = self.small_pages(column, groups);
        let fetched = self.fetch(&ranges, &extents, gather).await?;
        let (fetched, guessed) = fetched.split_at(fetched.len() - guesses.len());
        let mut values: Vec<Option<Bytes>> = Vec::with_capacity(total);
        let mut data_ranges = Vec::new();
        let mut nulls = NullCollector::new(total);
        let mut next = fetched.iter();
        let mut guess = guesses.iter().zip(guessed);
        for (page_idx, local) in groups {
            let page = &column.pages[*page_idx];
            let data = buffer(page, 2)?;
            for _ in local {
                let o = next
                    .next()
                    .ok_or_else(|| Error::Internal("missing range".into()))?;
                let (start, end) = read_offset_pair(o, offset_width)
                    .filter(|(s, e)| s <= e && *e <= data.1)
                    .ok_or_else(|| {
                        Error::corrupt(&self.path, "string offsets are out of bounds")
                    })?;
                let found =
                    if speculate { guess.next() } else { None }.and_then(|(window, bytes)| {
                        (window.start <= start && end <= window.end).then(|| {
                            let from = (start - window.start) as usize;
                            bytes.slice(from..from + (end - start) as usize)
                        })
                    });
                if found.is_none() {
                    data_ranges.push(page.offset + data.0 + start..page.offset + data.0 + end);
                }
                values.push(found);
            }
            nulls.push_page(page, local, &mut next)?;
        }
        // Round 2: the value bytes not found in round 1.
        let mut missing = if data_ranges.is_empty() {
            Vec::new()
        } else {
            self.fetch(&data_ranges, &extents, gather).await?
        }
        .into_iter();
        let values = values
            .into_iter()
            .map(|v| v.or_else(|| missing.next()))
            .collect::<Option<Vec<Bytes>>>()
            .ok_or_else(|| Error::Internal("a taken value was not read".into()))?;
        var_width_array(&column.data_type, &values, nulls.finish())
            .map_err(|e| Error::corrupt(&self.path, format!("taken values do not decode: {e}")))
    }

    async fn take_from_pages(
        &self,
        column: &ColumnMeta,
        groups: &[(usize, Vec<u64>)],
        gather: Option<&GatherMember>,
    ) -> Result<ArrayRef> {
        let ranges: Vec<Range<u64>> = groups
            .iter()
            .map(|(p, _)| {
                let page = &column.pages[*p];
                page.offset..page.offset + page.length
            })
            .collect();
        let fetched = self.fetch(&ranges, &[], gather).await?;
        let mut parts = Vec::with_capacity(groups.len());
        for ((page_idx, local), bytes) in groups.iter().zip(fetched.iter()) {
            let page = &column.pages[*page_idx];
            let array = self.decode(column, page, bytes)?;
            let indices = UInt32Array::from_iter_values(local.iter().map(|&r| r as u32));
            parts.push(arrow_select::take::take(array.as_ref(), &indices, None)?);
        }
        concat_parts(parts, &column.data_type)
    }
}

pub(crate) fn concat_parts(mut parts: Vec<ArrayRef>, dt: &DataType) -> Result<ArrayRef> {
    match parts.len() {
        0 => Ok(arrow_array::new_empty_array(dt)),
        1 => Ok(parts.swap_remove(0)),
        _ => {
            let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            Ok(concat(&refs)?)
        }
    }
}

/// Splits sorted file rows into (page, rows local to the page) groups.
fn group_by_page(column: &ColumnMeta, rows: &[u64]) -> Vec<(usize, Vec<u64>)> {
    let mut groups: Vec<(usize, Vec<u64>)> = Vec::new();
    for &row in rows {
        let page = column.page_of(row);
        let local = row - column.row_starts[page];
        match groups.last_mut() {
            Some((p, v)) if *p == page => v.push(local),
            _ => groups.push((page, vec![local])),
        }
    }
    groups
}

enum ValueLayout {
    /// Values of this many bytes each, contiguous.
    Fixed(u64),
    /// Offsets of this width, then data.
    Variable(u64),
    Other,
}

fn value_layout(dt: &DataType) -> ValueLayout {
    match dt {
        DataType::Utf8 | DataType::Binary => ValueLayout::Variable(4),
        DataType::LargeUtf8 | DataType::LargeBinary => ValueLayout::Variable(8),
        DataType::FixedSizeList(item, dim) => match item.data_type().primitive_width() {
            Some(w) => ValueLayout::Fixed(w as u64 * *dim as u64),
            None => ValueLayout::Other,
        },
        DataType::Boolean => ValueLayout::Other,
        dt => match dt.primitive_width() {
            Some(w) => ValueLayout::Fixed(w as u64),
            None => ValueLayout::Other,
        },
    }
}

/// Vectors whose elements hold nulls keep a validity bitmap per element; those pages are
/// read whole instead.
fn fixed_pages_ok(column: &ColumnMeta, groups: &[(usize, Vec<u64>)]) -> bool {
    match column.data_type {
        DataType::FixedSizeList(_, _) => groups
            .iter()
            .all(|(p, _)| column.pages[*p].buffers.get(1).is_some_and(|b| b.1 == 0)),
        _ => true,
    }
}

/// Bytes read either side of where a taken string would lie if its page's values were of
/// equal length (cloud stores; see `take_variable`): lengths that vary around their mean by
/// σ drift by about σ·√rows, a few KiB in a page of thousands of short texts.
const SPECULATIVE_SLACK: u64 = 8 * 1024;

fn buffer(page: &PageMeta, index: usize) -> Result<(u64, u64)> {
    page.buffers
        .get(index)
        .copied()
        .ok_or_else(|| Error::Internal("page has too few buffers".into()))
}

/// The values buffer of a fixed-width page: buffer 1 for a primitive (after its validity),
/// buffer 2 for a vector (after the list's and the elements' validity).
fn values_buffer(page: &PageMeta, dt: &DataType) -> (u64, u64) {
    let idx = if matches!(dt, DataType::FixedSizeList(_, _)) {
        2
    } else {
        1
    };
    page.buffers.get(idx).copied().unwrap_or((0, 0))
}

fn push_validity_range(page: &PageMeta, local: &[u64], ranges: &mut Vec<Range<u64>>) {
    let validity = page.buffers.first().copied().unwrap_or((0, 0));
    if validity.1 > 0 {
        let first = local.first().copied().unwrap_or(0) / 8;
        let last = local.last().copied().unwrap_or(0) / 8;
        ranges.push(page.offset + validity.0 + first..page.offset + validity.0 + last + 1);
    }
}

fn read_offset_pair(bytes: &[u8], width: u64) -> Option<(u64, u64)> {
    if width == 4 {
        let s = i32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
        let e = i32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
        Some((u64::try_from(s).ok()?, u64::try_from(e).ok()?))
    } else {
        let s = i64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
        let e = i64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some((u64::try_from(s).ok()?, u64::try_from(e).ok()?))
    }
}

/// Builds the validity of taken values from per-page bitmap fragments.
struct NullCollector {
    bits: BooleanBufferBuilder,
    any_null: bool,
}

impl NullCollector {
    fn new(capacity: usize) -> Self {
        NullCollector {
            bits: BooleanBufferBuilder::new(capacity),
            any_null: false,
        }
    }

    fn push_page<'a>(
        &mut self,
        page: &PageMeta,
        local: &[u64],
        fetched: &mut impl Iterator<Item = &'a Bytes>,
    ) -> Result<()> {
        if page.buffers.first().is_none_or(|v| v.1 == 0) {
            self.bits.append_n(local.len(), true);
            return Ok(());
        }
        let bitmap = fetched
            .next()
            .ok_or_else(|| Error::Internal("missing validity range".into()))?;
        let base = local.first().copied().unwrap_or(0) / 8 * 8;
        for &r in local {
            let i = (r - base) as usize;
            let byte = bitmap
                .get(i / 8)
                .ok_or_else(|| Error::Internal("validity range too short".into()))?;
            let valid = byte & (1 << (i % 8)) != 0;
            self.any_null |= !valid;
            self.bits.append(valid);
        }
        Ok(())
    }

    fn finish(mut self) -> Option<NullBuffer> {
        let bits = self.bits.finish();
        self.any_null.then(|| NullBuffer::new(bits))
    }
}
