//! Schema evolution: adding columns (computed by SQL expressions, or all NULL), altering
//! columns (rename, nullability, widening casts) and dropping columns, each as one new version.
//!
//! Added and re-typed columns are written as new data files beside each fragment's existing
//! ones, holding a value for every stored row (deleted ones included, so row offsets line up);
//! existing files are never rewritten. A re-typed column gets new field ids, so older versions
//! keep reading the old file with the old type. Renames, nullability and drops change only the
//! manifest's schema.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::{StreamExt, TryStreamExt};

use super::commit::{commit, Operation, ADD_COLUMNS, ALTER_COLUMNS, DROP_COLUMNS};
use super::manifest::{DataFileProto, Manifest};
use super::scan::{self, ROW_ID};
use super::write::{self, WriteParams};
use super::{Table, FRAGMENT_CONCURRENCY};
use crate::error::{Error, Result};
use crate::filter::Expression;
use crate::schema::{check_supported, is_widening, logical_type, TableSchema};

/// Columns to add.
#[derive(Debug, Clone)]
pub enum NewColumns {
    /// (name, SQL expression over the existing columns), e.g. `("total", "price * qty")`.
    Sql(Vec<(String, String)>),
    /// Columns of these (nullable) fields, NULL in every row.
    AllNull(SchemaRef),
}

/// A change to one column; unset parts stay as they are.
#[derive(Debug, Clone, Default)]
pub struct ColumnAlteration {
    /// The column: a top-level name, or `parent.child` for a struct member.
    pub path: String,
    pub rename: Option<String>,
    /// `true` allows NULLs; `false` requires that no stored row holds one.
    pub nullable: Option<bool>,
    /// A wider type (see [`is_widening`]); top-level columns only.
    pub data_type: Option<DataType>,
}

/// How a fragment's new column values are computed from a batch of its stored rows.
type Compute = Arc<dyn Fn(&RecordBatch) -> Result<Vec<ArrayRef>> + Send + Sync>;

impl Table {
    /// Adds columns, as one new version; returns it. SQL expressions are evaluated over every
    /// stored row and written as new data files; existing data files are not rewritten.
    pub async fn add_columns(&self, columns: NewColumns) -> Result<u64> {
        self.retry_on_conflict(
            super::write::deadline_after(super::write::DEFAULT_COMMIT_TIMEOUT),
            || async {
                let read = self.writable_manifest()?;
                let first_id = read.proto.max_field_id.max(read.schema.max_field_id()) + 1;
                let (fields, inputs, with_row_id, compute): (
                    Vec<Field>,
                    Vec<String>,
                    bool,
                    Compute,
                ) = match &columns {
                    NewColumns::Sql(columns) => sql_columns(&read, columns)?,
                    NewColumns::AllNull(schema) => null_columns(schema)?,
                };
                let added = TableSchema::with_first_id(&Schema::new(fields), first_id)?;
                let schema = read.schema.with_columns(&added)?;
                let files = self
                    .write_columns(&read, &inputs, with_row_id, added, compute)
                    .await?;
                self.commit_schema(read, ADD_COLUMNS, schema, Some(files), true)
                    .await
            },
        )
        .await
    }

    /// Renames columns, changes their nullability or widens their types, as one new version;
    /// returns it. Only a type change writes data (the re-typed column, as new data files).
    pub async fn alter_columns(&self, alterations: &[ColumnAlteration]) -> Result<u64> {
        if alterations.is_empty() {
            return Err(Error::invalid(
                "alter_columns needs at least one alteration",
            ));
        }
        self.retry_on_conflict(super::write::deadline_after(super::write::DEFAULT_COMMIT_TIMEOUT), || async {
            let read = self.writable_manifest()?;
            let mut schema = read.schema.clone();
            let mut next_id = read.proto.max_field_id.max(schema.max_field_id()) + 1;
            let mut covers_rows = false;
            // Re-typed columns: (old field id, field as read, the new column's one-field schema).
            let mut casts: Vec<(i32, Arc<Field>, TableSchema)> = Vec::new();
            for alteration in alterations {
                let ColumnAlteration {
                    path,
                    rename,
                    nullable,
                    data_type,
                } = alteration;
                if rename.is_none() && nullable.is_none() && data_type.is_none() {
                    return Err(Error::invalid(format!(
                        "the alteration of '{path}' changes nothing; set rename, nullable or dataType"
                    )));
                }
                let mut id = schema.resolve_path(path)?;
                let top_level = schema.field_ids.iter().position(|&f| f == id);
                if let Some(to) = data_type {
                    let Some(index) = top_level else {
                        return Err(Error::invalid(format!(
                            "cannot change the type of struct member '{path}'; only top-level columns can be re-typed"
                        )));
                    };
                    let field = schema.arrow.fields()[index].clone();
                    if field.data_type() != to {
                        if !is_widening(field.data_type(), to) {
                            return Err(Error::invalid(format!(
                                "cannot change column '{path}' from {} to {}: only widening casts that keep every value are allowed (e.g. int32 → int64, float32 → float64, utf8 → large_utf8)",
                                logical_type(field.data_type()),
                                logical_type(to)
                            )));
                        }
                        let stored = read.schema.field_ids.iter().position(|&f| f == id);
                        let Some(stored) = stored else {
                            return Err(Error::invalid(format!(
                                "column '{path}' is re-typed twice in one call"
                            )));
                        };
                        let retyped = Field::new(field.name(), to.clone(), field.is_nullable())
                            .with_metadata(field.metadata().clone());
                        let (next, column) = schema.with_column_replaced(id, &retyped, next_id)?;
                        next_id = column.max_field_id() + 1;
                        id = column.field_ids[0];
                        casts.push((
                            read.schema.field_ids[stored],
                            read.schema.arrow.fields()[stored].clone(),
                            column,
                        ));
                        schema = next;
                        covers_rows = true;
                    }
                }
                if let Some(nullable) = *nullable {
                    if !nullable {
                        if top_level.is_none() {
                            return Err(Error::invalid(format!(
                                "cannot make struct member '{path}' non-nullable; only top-level columns can be"
                            )));
                        }
                        // A re-typed column holds the same NULLs as the column it was cast from.
                        let stored_id = casts
                            .iter()
                            .find(|(_, _, column)| column.field_ids[0] == id)
                            .map_or(id, |(old, _, _)| *old);
                        let nulls = self.stored_nulls(&read, stored_id).await?;
                        if nulls > 0 {
                            return Err(Error::invalid(format!(
                                "cannot make column '{path}' non-nullable: {nulls} stored row(s) hold NULL (deleted rows count until the table is compacted); update them first"
                            )));
                        }
                        covers_rows = true;
                    }
                    schema = schema.with_field_edited(id, |f| f.nullable = nullable)?;
                }
                if let Some(name) = rename {
                    schema = schema.with_field_edited(id, |f| f.name = name.clone())?;
                }
            }
            let files = if casts.is_empty() {
                None
            } else {
                Some(self.write_casts(&read, casts).await?)
            };
            self.commit_schema(read, ALTER_COLUMNS, schema, files, covers_rows)
                .await
        })
        .await
    }

    /// Drops top-level columns from the schema, as one new version; returns it. Only the
    /// manifest changes: older versions still read the columns, and compaction reclaims space.
    pub async fn drop_columns(&self, names: &[String]) -> Result<u64> {
        if names.is_empty() {
            return Err(Error::invalid(
                "drop_columns needs at least one column name",
            ));
        }
        self.retry_on_conflict(
            super::write::deadline_after(super::write::DEFAULT_COMMIT_TIMEOUT),
            || async {
                let read = self.writable_manifest()?;
                if let Some(member) = names
                    .iter()
                    .find(|n| read.schema.arrow.index_of(n).is_err() && n.contains('.'))
                {
                    read.schema.resolve_path(member)?;
                    return Err(Error::invalid(format!(
                    "cannot drop struct member '{member}'; drop_columns takes top-level columns"
                )));
                }
                let schema = read.schema.without_columns(names)?;
                self.commit_schema(read, DROP_COLUMNS, schema, None, false)
                    .await
            },
        )
        .await
    }

    async fn commit_schema(
        &self,
        read: Arc<Manifest>,
        operation: &'static str,
        schema: TableSchema,
        files: Option<BTreeMap<u64, Vec<DataFileProto>>>,
        covers_rows: bool,
    ) -> Result<u64> {
        let manifest = commit(
            &self.inner,
            Some(read),
            Operation::ChangeSchema {
                operation,
                schema,
                files,
                covers_rows,
            },
            super::write::deadline_after(WriteParams::default().commit_timeout),
        )
        .await?;
        let version = manifest.version();
        self.committed(manifest);
        Ok(version)
    }

    /// NULLs stored in top-level column `id` across all fragments, from page statistics.
    async fn stored_nulls(&self, read: &Manifest, id: i32) -> Result<u64> {
        let mut nulls = 0;
        for fragment in read.fragments() {
            let reader = scan::fragment_reader(&self.inner, fragment, id).await?;
            let column = reader.metadata().column(id, reader.path())?;
            nulls += column.pages.iter().map(|p| p.null_count).sum::<u64>();
        }
        Ok(nulls)
    }

    /// Writes every re-typed column of every fragment, one new data file per fragment.
    async fn write_casts(
        &self,
        read: &Manifest,
        casts: Vec<(i32, Arc<Field>, TableSchema)>,
    ) -> Result<BTreeMap<u64, Vec<DataFileProto>>> {
        let mut fields = Vec::new();
        let mut inputs = Vec::new();
        let mut targets = Vec::new();
        for (_, old, column) in &casts {
            inputs.push(old.name().clone());
            targets.push(column.arrow.field(0).data_type().clone());
            fields.extend(column.fields.iter().cloned());
        }
        let out = TableSchema::from_protos(fields, Default::default())?;
        let compute: Compute = Arc::new(move |batch: &RecordBatch| {
            batch
                .columns()
                .iter()
                .zip(&targets)
                .map(|(column, to)| Ok(arrow_cast::cast(column, to)?))
                .collect()
        });
        // Read the old columns by their old ids: `inputs` are names in `read`'s schema.
        self.write_columns(read, &inputs, false, out, compute).await
    }

    /// For every fragment of `read`: reads `inputs` (and `_rowid`) for each stored row,
    /// computes the columns of `out` and writes them as one new data file.
    async fn write_columns(
        &self,
        read: &Manifest,
        inputs: &[String],
        with_row_id: bool,
        out: TableSchema,
        compute: Compute,
    ) -> Result<BTreeMap<u64, Vec<DataFileProto>>> {
        let fields = scan::projection(read, Some(inputs))?;
        let out = Arc::new(out);
        let files: Vec<(u64, Vec<DataFileProto>)> =
            futures::stream::iter(read.fragments().iter().cloned())
                .map(|fragment| {
                    let (inner, fields, out, compute) = (
                        self.inner.clone(),
                        fields.clone(),
                        out.clone(),
                        compute.clone(),
                    );
                    async move {
                        let rows =
                            scan::stored_rows(&inner, &fragment, &fields, with_row_id).await?;
                        let schema = out.arrow.clone();
                        let batches = rows
                            .map(move |batch| {
                                let batch = batch?;
                                let columns = compute(&batch)?;
                                let options = RecordBatchOptions::new()
                                    .with_row_count(Some(batch.num_rows()));
                                Ok(RecordBatch::try_new_with_options(
                                    schema.clone(),
                                    columns,
                                    &options,
                                )?)
                            })
                            .boxed();
                        let params = WriteParams {
                            max_rows_per_file: u32::MAX as u64,
                            ..WriteParams::default()
                        };
                        let written =
                            write::write_fragments(&inner.storage, &out, batches, &params).await?;
                        match written.as_slice() {
                            [one] if one.physical_rows == fragment.physical_rows => {
                                Ok::<_, Error>((fragment.id, vec![one.file.clone()]))
                            }
                            _ => Err(Error::Internal(format!(
                                "new columns of fragment {} do not cover its {} rows",
                                fragment.id, fragment.physical_rows
                            ))),
                        }
                    }
                })
                .buffered(FRAGMENT_CONCURRENCY)
                .try_collect()
                .await?;
        Ok(files.into_iter().collect())
    }
}

/// New columns computed from SQL: their fields, the columns they read, whether they read
/// `_rowid`, and the computation.
fn sql_columns(
    read: &Manifest,
    columns: &[(String, String)],
) -> Result<(Vec<Field>, Vec<String>, bool, Compute)> {
    if columns.is_empty() {
        return Err(Error::invalid("add_columns needs at least one column"));
    }
    let mut fields = Vec::with_capacity(columns.len());
    let mut expressions = Vec::with_capacity(columns.len());
    let mut inputs: Vec<String> = Vec::new();
    let mut with_row_id = false;
    for (name, sql) in columns {
        let expression = Expression::parse(sql, &read.schema.arrow)?;
        let data_type = expression.data_type();
        if data_type == DataType::Null {
            return Err(Error::invalid(format!(
                "the type of column '{name}' cannot be inferred from '{sql}'; give it one, e.g. CAST(NULL AS BIGINT)"
            )));
        }
        check_supported(name, &data_type)?;
        for column in expression.columns() {
            if column == ROW_ID {
                with_row_id = true;
            } else if !inputs.contains(column) {
                inputs.push(column.clone());
            }
        }
        fields.push(Field::new(name, data_type, true));
        expressions.push(expression);
    }
    let compute: Compute = Arc::new(move |batch: &RecordBatch| {
        expressions.iter().map(|e| e.evaluate(batch)).collect()
    });
    Ok((fields, inputs, with_row_id, compute))
}

/// New all-NULL columns: their fields (which must be nullable) and the computation.
fn null_columns(schema: &SchemaRef) -> Result<(Vec<Field>, Vec<String>, bool, Compute)> {
    if schema.fields().is_empty() {
        return Err(Error::invalid("add_columns needs at least one column"));
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        if !field.is_nullable() {
            return Err(Error::invalid(format!(
                "column '{}' is added with NULL in every row, so it must be nullable",
                field.name()
            )));
        }
        check_supported(field.name(), field.data_type())?;
        fields.push(field.as_ref().clone());
    }
    let types: Vec<DataType> = fields.iter().map(|f| f.data_type().clone()).collect();
    let compute: Compute = Arc::new(move |batch: &RecordBatch| {
        Ok(types
            .iter()
            .map(|t| arrow_array::new_null_array(t, batch.num_rows()))
            .collect())
    });
    Ok((fields, Vec::new(), false, compute))
}
