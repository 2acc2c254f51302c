//! Mutations that rewrite rows: `update` and `merge_insert`. Both write the new values of the
//! affected rows as new fragments and delete the old rows, in one commit; a row-level conflict
//! with a concurrent writer re-runs the whole operation against the newer version.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, StructArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::StreamExt;
use roaring::RoaringBitmap;

use super::commit::{commit, MergeKeys, Operation};
use super::scan::{self, ScanOptions, ROW_ID};
use super::write::{self, WriteParams};
use super::Table;
use crate::error::{Error, Result};
use crate::filter::{cast_value, Expression, Filter, FilterRef};

/// The new value of a column in an update.
#[derive(Debug, Clone)]
pub enum UpdateValue {
    /// A SQL expression over the old row, e.g. `price * 1.1`.
    Sql(String),
    /// A constant: an array of one value (cast to the column's type).
    Literal(ArrayRef),
}

/// Result of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateResult {
    pub rows_updated: u64,
    pub version: u64,
}

/// What a merge-insert does with matched and unmatched rows.
#[derive(Debug, Clone, Default)]
pub struct MergeInsert {
    /// Key columns joining source rows to target rows.
    pub on: Vec<String>,
    /// Replace matched target rows by their source rows; `Some(Some(cond))` only where
    /// `cond` (SQL over `target.col` and `source.col`) holds.
    pub when_matched_update_all: Option<Option<String>>,
    /// Insert source rows whose key matches no target row.
    pub when_not_matched_insert_all: bool,
    /// Delete target rows whose key matches no source row; `Some(Some(filter))` only those
    /// matching `filter` (SQL over the target's columns).
    pub when_not_matched_by_source_delete: Option<Option<String>>,
    /// How long to keep retrying against other writers (default
    /// [`super::write::DEFAULT_COMMIT_TIMEOUT`]); see [`WriteParams::commit_timeout`].
    pub timeout: Option<Duration>,
}

/// Result of a merge-insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeResult {
    pub num_inserted_rows: u64,
    pub num_updated_rows: u64,
    pub num_deleted_rows: u64,
    pub version: u64,
}

/// A compiled column assignment.
enum Assignment {
    Expr(Expression),
    Constant(ArrayRef),
}

/// Rows `0..n` of a one-value array.
fn repeat(value: &ArrayRef, n: usize) -> Result<ArrayRef> {
    Ok(arrow_select::take::take(
        value.as_ref(),
        &UInt32Array::from_value(0, n),
        None,
    )?)
}

type RowsByFragment = BTreeMap<u64, RoaringBitmap>;

fn record_row_ids(rows: &mut RowsByFragment, ids: &[u64]) {
    for id in ids {
        rows.entry(id >> 32)
            .or_default()
            .insert((id & 0xFFFF_FFFF) as u32);
    }
}

impl Table {
    /// Sets columns of the rows matching `filter` (every row when `None`), as one new version.
    pub async fn update(
        &self,
        filter: Option<&str>,
        values: Vec<(String, UpdateValue)>,
    ) -> Result<UpdateResult> {
        self.update_within(filter, values, super::write::DEFAULT_COMMIT_TIMEOUT)
            .await
    }

    /// [`Table::update`] that gives up against other writers after `timeout` (see
    /// [`WriteParams::commit_timeout`]).
    pub async fn update_within(
        &self,
        filter: Option<&str>,
        values: Vec<(String, UpdateValue)>,
        timeout: Duration,
    ) -> Result<UpdateResult> {
        if values.is_empty() {
            return Err(Error::invalid(
                "update needs at least one column to set (values or valuesSql)",
            ));
        }
        let schema = self.schema();
        let mut assignments: Vec<(usize, Assignment)> = Vec::with_capacity(values.len());
        for (column, value) in values {
            let index = schema.index_of(&column).map_err(|_| {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                Error::invalid(format!(
                    "update sets column '{column}', which does not exist; the columns are: {}",
                    names.join(", ")
                ))
            })?;
            if assignments.iter().any(|(i, _)| *i == index) {
                return Err(Error::invalid(format!(
                    "update sets column '{column}' twice"
                )));
            }
            let target = schema.field(index).data_type();
            let assignment = match value {
                UpdateValue::Sql(text) => {
                    Assignment::Expr(Expression::parse(&text, &schema)?.cast_to(target, &column)?)
                }
                UpdateValue::Literal(array) => {
                    if array.len() != 1 {
                        return Err(Error::invalid(format!(
                            "the new value of '{column}' must be a single value"
                        )));
                    }
                    let cast = cast_value(array.as_ref(), target).map_err(|e| {
                        Error::SchemaMismatch(format!(
                            "the new value of '{column}' ({}) does not convert to {target}: {e}",
                            array.data_type()
                        ))
                    })?;
                    Assignment::Constant(cast)
                }
            };
            assignments.push((index, assignment));
        }
        let filter = match filter {
            Some(text) => Some(Arc::new(Filter::parse(text, &schema)?)),
            None => None,
        };
        let assignments = Arc::new(assignments);
        let deadline = super::write::deadline_after(timeout);
        self.retry_on_conflict(deadline, || {
            self.update_once(filter.clone(), assignments.clone(), deadline)
        })
        .await
    }

    async fn update_once(
        &self,
        filter: Option<FilterRef>,
        assignments: Arc<Vec<(usize, Assignment)>>,
        deadline: Instant,
    ) -> Result<UpdateResult> {
        let read = self.writable_manifest()?;
        let (_, batches) = scan::scan(
            self.inner.clone(),
            read.clone(),
            ScanOptions {
                filter,
                with_row_id: true,
                ..Default::default()
            },
        )?;
        let rows = Arc::new(Mutex::new(RowsByFragment::new()));
        let seen = rows.clone();
        let table_schema = read.schema.arrow.clone();
        let updated = batches
            .map(move |batch| {
                let batch = batch?;
                let ids = batch
                    .column_by_name(ROW_ID)
                    .ok_or_else(|| Error::Internal("update scan lost _rowid".into()))?
                    .as_primitive::<UInt64Type>()
                    .clone();
                let mut columns: Vec<ArrayRef> =
                    batch.columns()[..table_schema.fields().len()].to_vec();
                for (index, assignment) in assignments.iter() {
                    let value = match assignment {
                        Assignment::Expr(e) => e.evaluate(&batch)?,
                        Assignment::Constant(v) => repeat(v, batch.num_rows())?,
                    };
                    let field = table_schema.field(*index);
                    if !field.is_nullable() && value.null_count() > 0 {
                        return Err(Error::SchemaMismatch(format!(
                            "column '{}' is not nullable but the update sets it to NULL in {} row(s)",
                            field.name(),
                            value.null_count()
                        )));
                    }
                    columns[*index] = value;
                }
                match seen.lock() {
                    Ok(mut rows) => record_row_ids(&mut rows, ids.values()),
                    Err(_) => return Err(Error::Internal("update bookkeeping poisoned".into())),
                }
                let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
                Ok(RecordBatch::try_new_with_options(
                    table_schema.clone(),
                    columns,
                    &options,
                )?)
            })
            .boxed();
        let params = WriteParams::default();
        let fragments =
            write::write_fragments(&self.inner.storage, &read.schema, updated, &params).await?;
        let rows = std::mem::take(
            &mut *rows
                .lock()
                .map_err(|_| Error::Internal("update bookkeeping poisoned".into()))?,
        );
        let rows_updated: u64 = rows.values().map(RoaringBitmap::len).sum();
        if rows_updated == 0 {
            return Ok(UpdateResult {
                rows_updated: 0,
                version: read.version(),
            });
        }
        let manifest = commit(
            &self.inner,
            Some(read),
            Operation::Update { rows, fragments },
            deadline,
        )
        .await?;
        let version = manifest.version();
        self.committed(manifest);
        Ok(UpdateResult {
            rows_updated,
            version,
        })
    }

    /// Upserts `source` into the table by the key columns of `spec`, as one new version.
    /// Source rows with the same (non-null) key are an error; NULL keys never match.
    pub async fn merge_insert(
        &self,
        spec: &MergeInsert,
        source_schema: &Schema,
        source: Vec<RecordBatch>,
    ) -> Result<MergeResult> {
        if spec.on.is_empty() {
            return Err(Error::invalid(
                "merge_insert needs at least one key column in `on`",
            ));
        }
        if spec.when_matched_update_all.is_none()
            && !spec.when_not_matched_insert_all
            && spec.when_not_matched_by_source_delete.is_none()
        {
            return Err(Error::invalid(
                "merge_insert does nothing: call whenMatchedUpdateAll(), whenNotMatchedInsertAll() or whenNotMatchedBySourceDelete()",
            ));
        }
        let manifest = self.writable_manifest()?;
        // Checked even without rows: an empty source of other columns must not read as "no
        // keys", which would let whenNotMatchedBySourceDelete delete every row.
        manifest.schema.check_compatible(source_schema)?;
        let table_schema = manifest.schema.arrow.clone();
        let mut keys = Vec::with_capacity(spec.on.len());
        for name in &spec.on {
            let index = manifest.schema.column_index(name)?;
            check_key_type(name, table_schema.field(index).data_type())?;
            keys.push(index);
        }
        // The source in the table's column order, as one batch.
        let mut parts = Vec::with_capacity(source.len());
        for batch in &source {
            let columns = manifest.schema.conform(batch)?;
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            parts.push(RecordBatch::try_new_with_options(
                table_schema.clone(),
                columns,
                &options,
            )?);
        }
        let source = arrow_select::concat::concat_batches(&table_schema, &parts)?;
        let source_keys = key_columns(
            &keys
                .iter()
                .map(|&i| source.column(i).clone())
                .collect::<Vec<_>>(),
        );
        let mut by_key: HashMap<Vec<u8>, u32> = HashMap::with_capacity(source.num_rows());
        let mut buffer = Vec::new();
        for row in 0..source.num_rows() {
            if !encode_key(&source_keys, row, &mut buffer) {
                continue;
            }
            if let Some(first) = by_key.insert(buffer.clone(), row as u32) {
                return Err(Error::invalid(format!(
                    "the source has the same key ({}) in rows {first} and {row}; merge_insert needs unique keys",
                    spec.on.join(", ")
                )));
            }
        }
        let matched_condition = match &spec.when_matched_update_all {
            Some(Some(text)) => Some(Arc::new(Filter::parse(
                text,
                &joined_schema(&table_schema),
            )?)),
            _ => None,
        };
        let by_source_filter = match &spec.when_not_matched_by_source_delete {
            Some(Some(text)) => Some(Filter::parse(text, &table_schema)?),
            _ => None,
        };
        // A by-source delete covers every row, so any rows added meanwhile conflict; otherwise
        // only rows holding one of the source's keys do.
        let merge_keys = spec.when_not_matched_by_source_delete.is_none().then(|| {
            Arc::new(MergeKeys {
                field_ids: keys.iter().map(|&i| manifest.schema.field_ids[i]).collect(),
                encoded: by_key.keys().cloned().collect(),
            })
        });
        let context = MergeContext {
            spec,
            merge_keys,
            keys: &keys,
            source: &source,
            by_key: &by_key,
            matched_condition,
            by_source_filter,
        };
        let deadline = super::write::deadline_after(
            spec.timeout.unwrap_or(super::write::DEFAULT_COMMIT_TIMEOUT),
        );
        self.retry_on_conflict(deadline, || self.merge_once(&context, deadline))
            .await
    }

    /// The key columns and `_rowid` of the target rows that may match the source: through a
    /// scalar index on a single key column when one helps (only the rows holding the source's
    /// keys, read by take, plus every row of fragments the index does not cover), else every
    /// row. A by-source delete needs every row, so it always scans.
    async fn merge_targets(
        &self,
        cx: &MergeContext<'_>,
        read: &Arc<super::manifest::Manifest>,
        key_names: Vec<String>,
    ) -> Result<futures::stream::BoxStream<'static, Result<RecordBatch>>> {
        let scan_all = |manifest: Arc<super::manifest::Manifest>, columns: Vec<String>| {
            scan::scan(
                self.inner.clone(),
                manifest,
                ScanOptions {
                    columns: Some(columns),
                    with_row_id: true,
                    ..Default::default()
                },
            )
            .map(|(_, stream)| stream)
        };
        let indexed = match (cx.spec.when_not_matched_by_source_delete.is_some(), cx.keys) {
            (false, [key]) => {
                let source_keys =
                    crate::index::scalar::ColumnKeys::new(cx.source.column(*key).as_ref());
                match source_keys {
                    Ok(keys) => {
                        let values = (0..cx.source.num_rows())
                            .filter_map(|i| keys.get(i).map(|k| k.to_owned()))
                            .collect();
                        super::index_filter::rows_with_values(
                            &self.inner,
                            read,
                            &key_names[0],
                            values,
                        )
                        .await?
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        };
        let Some(indexed) = indexed else {
            return scan_all(read.clone(), key_names);
        };
        let mut addresses = Vec::new();
        for fragment in read.fragments() {
            let Some(mut rows) = indexed.fragment(fragment.id) else {
                continue;
            };
            if fragment.physical_rows <= u64::from(u32::MAX) {
                rows.remove_range(fragment.physical_rows as u32..);
            }
            if let Some(deleted) = self.inner.deleted_rows(fragment).await? {
                rows -= deleted.as_ref();
            }
            addresses.extend(
                rows.iter()
                    .map(|o| scan::row_address(fragment.id, u64::from(o))),
            );
        }
        let uncovered = read.with_fragments(|f| !indexed.covered.contains(&f.id));
        let rest = scan_all(uncovered, key_names.clone())?;
        let (inner, manifest) = (self.inner.clone(), read.clone());
        let chunks: Vec<Vec<u64>> = addresses
            .chunks(scan::DEFAULT_BATCH_SIZE)
            .map(<[u64]>::to_vec)
            .collect();
        let taken = futures::stream::iter(chunks).then(move |chunk| {
            let (inner, manifest, columns) = (inner.clone(), manifest.clone(), key_names.clone());
            async move { scan::take(&inner, &manifest, &chunk, Some(&columns), true).await }
        });
        Ok(taken.chain(rest).boxed())
    }

    async fn merge_once(&self, cx: &MergeContext<'_>, deadline: Instant) -> Result<MergeResult> {
        let read = self.writable_manifest()?;
        let table_schema = read.schema.arrow.clone();
        let key_names: Vec<String> = cx
            .keys
            .iter()
            .map(|&i| table_schema.field(i).name().clone())
            .collect();
        let mut target = self.merge_targets(cx, &read, key_names).await?;
        // Target rows by match: (target row id, source row) pairs, and unmatched row ids.
        let mut matched: Vec<(u64, u32)> = Vec::new();
        let mut unmatched_target: Vec<u64> = Vec::new();
        let mut source_matched = vec![false; cx.source.num_rows()];
        let mut buffer = Vec::new();
        while let Some(batch) = target.next().await {
            let batch = batch?;
            let keys = key_columns(&batch.columns()[..cx.keys.len()]);
            let ids = batch
                .column(cx.keys.len())
                .as_primitive::<UInt64Type>()
                .values()
                .clone();
            for (row, id) in ids.iter().enumerate() {
                let hit = encode_key(&keys, row, &mut buffer)
                    .then(|| cx.by_key.get(buffer.as_slice()))
                    .flatten();
                match hit {
                    Some(&source_row) => {
                        matched.push((*id, source_row));
                        source_matched[source_row as usize] = true;
                    }
                    None => unmatched_target.push(*id),
                }
            }
        }
        let mut deleted = RowsByFragment::new();
        let mut output_rows: Vec<u32> = Vec::new();
        let mut num_updated_rows = 0;
        if cx.spec.when_matched_update_all.is_some() && !matched.is_empty() {
            let kept = match &cx.matched_condition {
                None => matched,
                Some(condition) => self.filter_matches(condition, cx.source, matched).await?,
            };
            num_updated_rows = kept.len() as u64;
            let ids: Vec<u64> = kept.iter().map(|(id, _)| *id).collect();
            record_row_ids(&mut deleted, &ids);
            output_rows.extend(kept.iter().map(|(_, s)| *s));
        }
        let mut num_inserted_rows = 0;
        if cx.spec.when_not_matched_insert_all {
            for (row, hit) in source_matched.iter().enumerate() {
                if !hit {
                    output_rows.push(row as u32);
                    num_inserted_rows += 1;
                }
            }
        }
        let mut num_deleted_rows = 0;
        if cx.spec.when_not_matched_by_source_delete.is_some() && !unmatched_target.is_empty() {
            let doomed = match &cx.by_source_filter {
                None => unmatched_target,
                Some(filter) => {
                    let keep = self.rows_matching(&unmatched_target, filter).await?;
                    unmatched_target
                        .into_iter()
                        .zip(keep)
                        .filter_map(|(id, k)| k.then_some(id))
                        .collect()
                }
            };
            num_deleted_rows = doomed.len() as u64;
            record_row_ids(&mut deleted, &doomed);
        }
        if deleted.is_empty() && output_rows.is_empty() {
            return Ok(MergeResult {
                num_inserted_rows: 0,
                num_updated_rows: 0,
                num_deleted_rows: 0,
                version: read.version(),
            });
        }
        let chunks: Vec<Result<RecordBatch>> = output_rows
            .chunks(scan::DEFAULT_BATCH_SIZE)
            .map(|rows| {
                let indices = UInt32Array::from(rows.to_vec());
                Ok(arrow_select::take::take_record_batch(cx.source, &indices)?)
            })
            .collect();
        let params = WriteParams::default();
        let fragments = write::write_fragments(
            &self.inner.storage,
            &read.schema,
            futures::stream::iter(chunks).boxed(),
            &params,
        )
        .await?;
        let manifest = commit(
            &self.inner,
            Some(read),
            Operation::MergeInsert {
                rows: deleted,
                fragments,
                keys: cx.merge_keys.clone(),
            },
            deadline,
        )
        .await?;
        let version = manifest.version();
        self.committed(manifest);
        Ok(MergeResult {
            num_inserted_rows,
            num_updated_rows,
            num_deleted_rows,
            version,
        })
    }

    /// The matched pairs whose `condition` (over `target.*` and `source.*`) holds.
    async fn filter_matches(
        &self,
        condition: &Filter,
        source: &RecordBatch,
        matched: Vec<(u64, u32)>,
    ) -> Result<Vec<(u64, u32)>> {
        let mut kept = Vec::new();
        for chunk in matched.chunks(scan::DEFAULT_BATCH_SIZE) {
            let ids: Vec<u64> = chunk.iter().map(|(id, _)| *id).collect();
            let target = self.take(&ids, None, false).await?;
            let rows = UInt32Array::from_iter_values(chunk.iter().map(|(_, s)| *s));
            let source_rows = arrow_select::take::take_record_batch(source, &rows)?;
            let joined = RecordBatch::try_new(
                Arc::new(joined_schema(&target.schema())),
                vec![
                    Arc::new(StructArray::from(target)) as ArrayRef,
                    Arc::new(StructArray::from(source_rows)),
                ],
            )?;
            let keep = condition.evaluate(&joined)?;
            kept.extend(
                chunk
                    .iter()
                    .zip(keep.values().iter())
                    .filter(|(_, k)| *k)
                    .map(|(pair, _)| *pair),
            );
        }
        Ok(kept)
    }
}

struct MergeContext<'a> {
    spec: &'a MergeInsert,
    merge_keys: Option<Arc<MergeKeys>>,
    keys: &'a [usize],
    source: &'a RecordBatch,
    by_key: &'a HashMap<Vec<u8>, u32>,
    matched_condition: Option<FilterRef>,
    by_source_filter: Option<Filter>,
}

/// `{ target: struct<table columns>, source: struct<table columns> }`, the schema a
/// `whenMatchedUpdateAll` condition is written against.
fn joined_schema(table: &SchemaRef) -> Schema {
    let row = DataType::Struct(table.fields().clone());
    Schema::new(vec![
        Field::new("target", row.clone(), false),
        Field::new("source", row, false),
    ])
}

fn check_key_type(name: &str, t: &DataType) -> Result<()> {
    let ok = t.is_integer()
        || t.is_floating()
        || matches!(
            t,
            DataType::Boolean
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::Date32
                | DataType::Timestamp(_, _)
        );
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "column '{name}' ({t}) cannot be a merge key; use scalar columns (numbers, strings, dates, booleans)"
        )))
    }
}

/// A key column prepared for encoding rows without per-row allocation.
pub(super) enum KeyColumn {
    /// Strings, binaries and booleans, read through the array.
    Array(ArrayRef),
    /// Fixed-width values: the value bytes of the array's rows.
    Fixed {
        array: ArrayRef,
        values: arrow_buffer::Buffer,
        width: usize,
    },
}

pub(super) fn key_columns(columns: &[ArrayRef]) -> Vec<KeyColumn> {
    columns
        .iter()
        .map(|column| match column.data_type().primitive_width() {
            Some(width) if column.data_type() != &DataType::Boolean => {
                let data = column.to_data();
                let values =
                    data.buffers()[0].slice_with_length(data.offset() * width, data.len() * width);
                KeyColumn::Fixed {
                    array: column.clone(),
                    values,
                    width,
                }
            }
            _ => KeyColumn::Array(column.clone()),
        })
        .collect()
}

/// Writes the key of `row` into `buffer`; `false` when a key column is NULL (never matches).
/// Both sides have the table's column types, so native bytes compare correctly.
pub(super) fn encode_key(columns: &[KeyColumn], row: usize, buffer: &mut Vec<u8>) -> bool {
    buffer.clear();
    for column in columns {
        match column {
            KeyColumn::Fixed {
                array,
                values,
                width,
            } => {
                if array.is_null(row) {
                    return false;
                }
                buffer.extend_from_slice(&values.as_slice()[row * width..(row + 1) * width]);
            }
            KeyColumn::Array(array) => {
                if array.is_null(row) {
                    return false;
                }
                match array.data_type() {
                    DataType::Utf8 => {
                        push_bytes(buffer, array.as_string::<i32>().value(row).as_bytes())
                    }
                    DataType::LargeUtf8 => {
                        push_bytes(buffer, array.as_string::<i64>().value(row).as_bytes())
                    }
                    DataType::Binary => push_bytes(buffer, array.as_binary::<i32>().value(row)),
                    DataType::LargeBinary => {
                        push_bytes(buffer, array.as_binary::<i64>().value(row))
                    }
                    _ => buffer.push(u8::from(array.as_boolean().value(row))),
                }
            }
        }
    }
    true
}

fn push_bytes(buffer: &mut Vec<u8>, bytes: &[u8]) {
    buffer.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    buffer.extend_from_slice(bytes);
}
