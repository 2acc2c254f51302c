//! Writes one data file from a sequence of record batches.
//!
//! Each column accumulates values until they fill a page (the configured page size), then the
//! page is encoded, checksummed and streamed to the store; pages of different columns
//! interleave in the file. On finish, the last pages are flushed smallest first (the small
//! columns' pages end side by side), then the column metadata blocks, the column index and the
//! footer are appended. Memory held is about one page per column.

use arrow_array::ArrayRef;
use arrow_select::concat::concat;
use bytes::Bytes;
use object_store::path::Path;

use super::encoding::{encode_page, encoded_size};
use super::{
    encode_block, stats, ColumnIndexProto, ColumnLocation, ColumnMetadataProto, Footer, PageProto,
    DATA_MAGIC, FORMAT_MAJOR, FORMAT_MINOR, PAGE_ALIGNMENT,
};
use crate::error::{Error, Result};
use crate::schema::{FieldProto, TableSchema};
use crate::storage::{Storage, StorageWriter};

/// Default target size of a page.
pub const DEFAULT_PAGE_SIZE: usize = 8 * 1024 * 1024;
/// Smallest and largest accepted page sizes.
pub const PAGE_SIZE_RANGE: std::ops::RangeInclusive<usize> = 4 * 1024..=64 * 1024 * 1024;

/// What a finished file holds.
#[derive(Debug, Clone)]
pub struct DataFileInfo {
    pub path: Path,
    pub num_rows: u64,
    pub size_bytes: u64,
}

struct ColumnState {
    field_id: i32,
    fields: Vec<FieldProto>,
    pending: Vec<ArrayRef>,
    pending_bytes: usize,
    pages: Vec<PageProto>,
}

/// Streams record batches into one data file.
pub struct DataFileWriter {
    path: Path,
    out: StorageWriter,
    columns: Vec<ColumnState>,
    num_rows: u64,
    page_size: usize,
}

impl DataFileWriter {
    /// Starts a file at `path` for the columns of `schema`.
    pub async fn create(
        storage: &Storage,
        path: Path,
        schema: &TableSchema,
        page_size: usize,
    ) -> Result<Self> {
        if !PAGE_SIZE_RANGE.contains(&page_size) {
            return Err(Error::invalid(format!(
                "page size {page_size} is outside {}..={} bytes",
                PAGE_SIZE_RANGE.start(),
                PAGE_SIZE_RANGE.end()
            )));
        }
        let mut out = storage.writer(&path);
        let mut header = Vec::with_capacity(8);
        header.extend_from_slice(DATA_MAGIC);
        header.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
        header.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
        out.write(Bytes::from(header)).await?;
        let columns = schema
            .field_ids
            .iter()
            .map(|&id| ColumnState {
                field_id: id,
                fields: subtree(&schema.fields, id),
                pending: Vec::new(),
                pending_bytes: 0,
                pages: Vec::new(),
            })
            .collect();
        Ok(DataFileWriter {
            path,
            out,
            columns,
            num_rows: 0,
            page_size,
        })
    }

    /// Rows written so far.
    pub fn num_rows(&self) -> u64 {
        self.num_rows
    }

    /// Bytes written so far, pages not yet flushed included (metadata excluded).
    pub fn bytes_written(&self) -> u64 {
        self.out.position()
            + self
                .columns
                .iter()
                .map(|c| c.pending_bytes as u64)
                .sum::<u64>()
    }

    /// Appends rows given as one array per column, in the schema's order, all of one length.
    pub async fn write(&mut self, columns: &[ArrayRef]) -> Result<()> {
        let rows = columns.first().map_or(0, |c| c.len());
        if columns.len() != self.columns.len() || columns.iter().any(|c| c.len() != rows) {
            return Err(Error::Internal(format!(
                "{} columns of unequal lengths given to a file of {} columns",
                columns.len(),
                self.columns.len()
            )));
        }
        let sizes: Vec<usize> = columns.iter().map(|c| encoded_size(c.as_ref())).collect();
        self.out
            .will_reach(self.bytes_written() + sizes.iter().sum::<usize>() as u64);
        for ((i, array), size) in columns.iter().enumerate().zip(sizes) {
            let len = array.len();
            if size > self.page_size && len > 1 {
                // Cut big inputs into page-sized slices so no page grows past the target.
                let rows = (len * self.page_size / size).max(1);
                let mut start = 0;
                while start < len {
                    let n = rows.min(len - start);
                    let piece = array.slice(start, n);
                    let piece_size = encoded_size(piece.as_ref());
                    self.push(i, piece, piece_size).await?;
                    start += n;
                }
            } else if len > 0 {
                self.push(i, array.clone(), size).await?;
            }
        }
        self.num_rows += rows as u64;
        Ok(())
    }

    async fn push(&mut self, column: usize, array: ArrayRef, size: usize) -> Result<()> {
        // A page ends before values that would take it past the target (a slice of a big
        // input is just under it), so pages are not concatenated to twice its size.
        let state = &self.columns[column];
        if !state.pending.is_empty() && state.pending_bytes + size > self.page_size {
            self.flush_page(column).await?;
        }
        let state = &mut self.columns[column];
        state.pending.push(array);
        state.pending_bytes += size;
        if state.pending_bytes >= self.page_size {
            self.flush_page(column).await?;
        }
        Ok(())
    }

    async fn flush_page(&mut self, column: usize) -> Result<()> {
        let state = &mut self.columns[column];
        if state.pending.is_empty() {
            return Ok(());
        }
        let parts = std::mem::take(&mut state.pending);
        let array = if parts.len() == 1 {
            parts[0].clone()
        } else {
            let refs: Vec<&dyn arrow_array::Array> = parts.iter().map(|a| a.as_ref()).collect();
            concat(&refs)?
        };
        state.pending_bytes = 0;
        let encoded = encode_page(array.as_ref())?;
        let page_stats = stats::compute(array.as_ref()).unwrap_or_default();
        let position = self.out.position();
        let pad = position.next_multiple_of(PAGE_ALIGNMENT) - position;
        if pad > 0 {
            self.out.write(Bytes::from(vec![0u8; pad as usize])).await?;
        }
        let offset = self.out.position();
        let crc32 = crc32fast::hash(&encoded.bytes);
        let length = encoded.bytes.len() as u64;
        state.pages.push(PageProto {
            offset,
            length,
            num_rows: array.len() as u64,
            null_count: array.null_count() as u64,
            crc32,
            buffers: encoded.buffers.iter().flat_map(|&(o, l)| [o, l]).collect(),
            min: page_stats.min,
            max: page_stats.max,
            has_nan: page_stats.has_nan,
        });
        self.out.write(Bytes::from(encoded.bytes)).await?;
        Ok(())
    }

    /// Flushes the last pages, writes the metadata and footer, and completes the upload.
    pub async fn finish(mut self) -> Result<DataFileInfo> {
        // Smallest last pages first: the small columns' last pages (often their only ones) end
        // up side by side, followed by the larger ones (a string column's offsets lead its
        // page), so a row fetch on a cloud store reads a row's small values in one request.
        let mut order: Vec<usize> = (0..self.columns.len()).collect();
        order.sort_by_key(|&i| self.columns[i].pending_bytes);
        for i in order {
            self.flush_page(i).await?;
        }
        let mut index = ColumnIndexProto {
            columns: Vec::with_capacity(self.columns.len()),
            num_rows: self.num_rows,
        };
        for state in std::mem::take(&mut self.columns) {
            let block = encode_block(prost::Message::encode_to_vec(&ColumnMetadataProto {
                field_id: state.field_id,
                fields: state.fields,
                pages: state.pages,
            }));
            index.columns.push(ColumnLocation {
                field_id: state.field_id,
                offset: self.out.position(),
                length: block.len() as u64,
            });
            self.out.write(Bytes::from(block)).await?;
        }
        let num_columns = index.columns.len() as u32;
        let index_block = encode_block(prost::Message::encode_to_vec(&index));
        let footer = Footer {
            column_index_offset: self.out.position(),
            column_index_length: u32::try_from(index_block.len())
                .map_err(|_| Error::Internal("column index too large".into()))?,
            num_columns,
            num_rows: self.num_rows,
            major: FORMAT_MAJOR,
            minor: FORMAT_MINOR,
        };
        self.out.write(Bytes::from(index_block)).await?;
        self.out
            .write(Bytes::copy_from_slice(&footer.encode()))
            .await?;
        let size_bytes = self.out.finish().await?;
        Ok(DataFileInfo {
            path: self.path,
            num_rows: self.num_rows,
            size_bytes,
        })
    }

    /// Abandons the file.
    pub async fn abort(self) -> Result<()> {
        self.out.abort().await
    }
}

/// The field `id` and all its descendants, with the root re-parented to -1 so the subtree
/// reads as a one-column schema.
pub(crate) fn subtree(fields: &[FieldProto], id: i32) -> Vec<FieldProto> {
    let mut out: Vec<FieldProto> = Vec::new();
    let mut wanted = vec![id];
    for f in fields {
        if wanted.contains(&f.id) || wanted.contains(&f.parent_id) {
            if !wanted.contains(&f.id) {
                wanted.push(f.id);
            }
            let mut f = f.clone();
            if f.id == id {
                f.parent_id = -1;
            }
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{FixedSizeListArray, Float32Array};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;
    use crate::format::reader::read_metadata;

    const PAGE: usize = 64 * 1024;

    /// Pages of a 100-float vector column (400 bytes a row, so no whole number of rows fills
    /// a page) after writing `rows` rows in writes of `per_write` rows: (length, rows) each.
    async fn vector_pages(rows: usize, per_write: usize) -> Vec<(u64, u64)> {
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let field = Field::new("v", DataType::FixedSizeList(item.clone(), 100), false);
        let schema = TableSchema::new(&Schema::new(vec![field])).unwrap();
        let storage = Storage::from_uri("memory://").unwrap();
        let path = storage.path("f.qvd");
        let mut writer = DataFileWriter::create(&storage, path.clone(), &schema, PAGE)
            .await
            .unwrap();
        for start in (0..rows).step_by(per_write) {
            let n = per_write.min(rows - start);
            let values = Float32Array::from_iter_values((0..n * 100).map(|i| i as f32));
            let column = FixedSizeListArray::new(item.clone(), 100, Arc::new(values), None);
            writer.write(&[Arc::new(column)]).await.unwrap();
        }
        writer.finish().await.unwrap();
        let meta = read_metadata(&storage, &path).await.unwrap();
        let column = meta.column(schema.field_ids[0], &path).unwrap();
        column
            .pages
            .iter()
            .map(|p| (p.length, p.num_rows))
            .collect()
    }

    /// Pages stay within the page size, each as full as whole rows allow (a big input is cut
    /// into pages) or as whole writes allow (small writes gather into pages).
    #[tokio::test]
    async fn pages_stay_within_the_page_size() {
        let rows_per_page = (PAGE / 400) as u64;
        for per_write in [3_000, 7, 1] {
            let pages = vector_pages(3_000, per_write as usize).await;
            assert_eq!(pages.iter().map(|p| p.1).sum::<u64>(), 3_000);
            assert!(
                pages.iter().all(|&(length, _)| length <= PAGE as u64),
                "{pages:?}"
            );
            let full_rows = if per_write >= rows_per_page {
                rows_per_page
            } else {
                rows_per_page / per_write * per_write
            };
            let (last, full) = pages.split_last().unwrap();
            assert!(last.1 <= full_rows);
            assert!(
                full.iter().all(|p| p.1 == full_rows),
                "{per_write}: {pages:?}"
            );
        }
    }
}
