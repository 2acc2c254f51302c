//! Schemas with stable field ids, and their stored form.
//!
//! A schema is stored flattened, Lance-style: every field (nested ones included) gets a numeric
//! id that never changes, and a parent id. Data files name their columns by the top-level field
//! id, so renaming or reordering columns later never touches data files. This module also owns
//! the list of supported Arrow types and the checks that a batch fits a table's schema.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::error::{Error, Result};

/// One field as stored in manifests and data files (protobuf message `Field`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FieldProto {
    /// Stable id, unique within a table.
    #[prost(int32, tag = "1")]
    pub id: i32,
    /// Id of the parent field; -1 for a top-level column.
    #[prost(int32, tag = "2")]
    pub parent_id: i32,
    #[prost(string, tag = "3")]
    pub name: String,
    /// Logical type, see [`logical_type`].
    #[prost(string, tag = "4")]
    pub logical_type: String,
    #[prost(bool, tag = "5")]
    pub nullable: bool,
    /// Time zone of a timestamp field ("" for none).
    #[prost(string, tag = "6")]
    pub timezone: String,
    /// Arrow field metadata, kept as-is.
    #[prost(map = "string, string", tag = "7")]
    pub metadata: HashMap<String, String>,
}

/// [`FieldProto`]: its metadata is a map.
pub static FIELD_SHAPE: crate::format::Shape = crate::format::Shape {
    size: std::mem::size_of::<FieldProto>(),
    messages: &[(7, &crate::format::MAP_ENTRY_SHAPE)],
    repeated: &[],
};

/// Longest vector (`fixed_size_list`) a table stores: 2^20 values, 8 MiB of float64. Bounds
/// what one value costs to read or buffer, whatever length a file claims.
pub const MAX_VECTOR_DIM: i32 = 1 << 20;

/// Deepest nesting of types, stored or written.
const MAX_NESTING: usize = 64;

/// A table schema plus the id of each top-level field.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    pub arrow: SchemaRef,
    /// `field_ids[i]` is the id of `arrow.field(i)`.
    pub field_ids: Vec<i32>,
    /// All fields, flattened, in id order of assignment.
    pub fields: Vec<FieldProto>,
}

impl TableSchema {
    /// Assigns fresh ids (from 0) to every field of `schema`, after checking every type is
    /// supported.
    pub fn new(schema: &Schema) -> Result<Self> {
        Self::with_first_id(schema, 0)
    }

    /// Like [`Self::new`], with ids counting from `first_id` (columns added to a table take
    /// ids above every id it ever used).
    pub fn with_first_id(schema: &Schema, first_id: i32) -> Result<Self> {
        let mut fields = Vec::new();
        let mut field_ids = Vec::new();
        let mut next_id = first_id;
        let mut names = std::collections::HashSet::new();
        for field in schema.fields() {
            if !names.insert(field.name().as_str()) {
                return Err(Error::SchemaMismatch(format!(
                    "column name '{}' appears twice; column names must be unique",
                    field.name()
                )));
            }
            if field.name().is_empty() {
                return Err(Error::SchemaMismatch("a column has an empty name".into()));
            }
            check_supported(field.name(), field.data_type())?;
            field_ids.push(next_id);
            flatten(field, -1, &mut next_id, &mut fields);
        }
        Ok(TableSchema {
            arrow: Arc::new(schema.clone()),
            field_ids,
            fields,
        })
    }

    /// Rebuilds a schema from its stored fields, checking they form a schema Quiver writes:
    /// unique non-negative ids, every field reached from a top-level column exactly once (no
    /// cycles, no orphans, no children of leaf types), and only supported types.
    pub fn from_protos(fields: Vec<FieldProto>, metadata: HashMap<String, String>) -> Result<Self> {
        let mut ids = std::collections::HashSet::with_capacity(fields.len());
        let mut children: HashMap<i32, Vec<&FieldProto>> = HashMap::new();
        for f in &fields {
            // Unique ids make the parent links a forest: with a repeated id, a struct could
            // list itself among its members and unflattening would never end.
            if f.id < 0 || !ids.insert(f.id) {
                return Err(Error::corrupt(
                    "schema",
                    format!("field '{}' has a negative or repeated id {}", f.name, f.id),
                ));
            }
            children.entry(f.parent_id).or_default().push(f);
        }
        let top = children.get(&-1).cloned().unwrap_or_default();
        let mut arrow_fields = Vec::with_capacity(top.len());
        let mut field_ids = Vec::with_capacity(top.len());
        let mut visited = 0;
        for f in top {
            let field = unflatten(f, &children, 0, &mut visited)?;
            check_supported(field.name(), field.data_type())
                .map_err(|e| Error::corrupt("schema", format!("field '{}': {e}", field.name())))?;
            arrow_fields.push(field);
            field_ids.push(f.id);
        }
        if visited != fields.len() {
            return Err(Error::corrupt(
                "schema",
                format!(
                    "{} of {} fields are not reached from a top-level column (a missing \
                     parent, a cycle, or a child of a type without children)",
                    fields.len() - visited,
                    fields.len()
                ),
            ));
        }
        Ok(TableSchema {
            arrow: Arc::new(Schema::new_with_metadata(arrow_fields, metadata)),
            field_ids,
            fields,
        })
    }

    /// The schema-level Arrow metadata as a plain map (for storing).
    pub fn metadata_map(&self) -> HashMap<String, String> {
        self.arrow
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The schema with `added` (ids already assigned, see [`Self::with_first_id`]) as new
    /// top-level columns after the existing ones.
    pub fn with_columns(&self, added: &TableSchema) -> Result<Self> {
        for field in added.arrow.fields() {
            if self.arrow.field_with_name(field.name()).is_ok() {
                return Err(Error::invalid(format!(
                    "column '{}' already exists; pick another name (the table has: {})",
                    field.name(),
                    self.column_names().join(", ")
                )));
            }
        }
        let mut fields = self.fields.clone();
        fields.extend(added.fields.iter().cloned());
        TableSchema::from_protos(fields, self.metadata_map())
    }

    /// The schema without the top-level columns `names` (their ids are never reused).
    pub fn without_columns(&self, names: &[String]) -> Result<Self> {
        let mut dropped = Vec::with_capacity(names.len());
        for name in names {
            dropped.push(self.field_ids[self.column_index(name)?]);
        }
        if dropped.len() >= self.field_ids.len()
            && self.field_ids.iter().all(|id| dropped.contains(id))
        {
            return Err(Error::invalid(
                "cannot drop every column of a table; drop the table instead",
            ));
        }
        let fields = self
            .fields
            .iter()
            .filter(|f| !dropped.iter().any(|&d| self.is_within(f.id, d)))
            .cloned()
            .collect();
        TableSchema::from_protos(fields, self.metadata_map())
    }

    /// The schema with top-level column `field_id` replaced (at the same position) by `field`,
    /// whose ids start at `first_id`; also returns the one-column schema of the replacement.
    pub fn with_column_replaced(
        &self,
        field_id: i32,
        field: &Field,
        first_id: i32,
    ) -> Result<(Self, Self)> {
        let replacement = TableSchema::with_first_id(&Schema::new(vec![field.clone()]), first_id)?;
        let mut fields = Vec::with_capacity(self.fields.len() + replacement.fields.len());
        for f in &self.fields {
            if f.id == field_id {
                fields.extend(replacement.fields.iter().cloned());
            } else if !self.is_within(f.id, field_id) {
                fields.push(f.clone());
            }
        }
        Ok((
            TableSchema::from_protos(fields, self.metadata_map())?,
            replacement,
        ))
    }

    /// Whether field `id` is `ancestor` or nested inside it.
    fn is_within(&self, id: i32, ancestor: i32) -> bool {
        let mut current = id;
        for _ in 0..=self.fields.len() {
            if current == ancestor {
                return true;
            }
            match self.fields.iter().find(|f| f.id == current) {
                Some(f) if f.parent_id >= 0 => current = f.parent_id,
                _ => return false,
            }
        }
        false
    }

    /// The id of the field at `path`: a top-level column name, or `parent.child` for a struct
    /// member (a top-level name containing dots is matched whole first).
    pub fn resolve_path(&self, path: &str) -> Result<i32> {
        if let Ok(i) = self.arrow.index_of(path) {
            return Ok(self.field_ids[i]);
        }
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or_default();
        let mut id = self.field_ids[self.column_index(root)?];
        let mut walked = root.to_string();
        for part in parts {
            if self.proto(id).is_none_or(|p| p.logical_type != "struct") {
                return Err(Error::invalid(format!(
                    "'{walked}' is not a struct, so '{path}' names nothing"
                )));
            }
            let members = || {
                self.fields
                    .iter()
                    .filter(|f| f.parent_id == id)
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            match self
                .fields
                .iter()
                .find(|f| f.parent_id == id && f.name == part)
            {
                Some(child) => id = child.id,
                None => {
                    return Err(Error::invalid(format!(
                        "'{walked}' has no field '{part}'; its fields are: {}",
                        members()
                    )))
                }
            }
            walked = format!("{walked}.{part}");
        }
        Ok(id)
    }

    /// The stored field with id `id`.
    pub fn proto(&self, id: i32) -> Option<&FieldProto> {
        self.fields.iter().find(|f| f.id == id)
    }

    /// The schema with stored field `id` changed by `edit` (a rename or nullability change),
    /// checked to still hold unique, non-empty names.
    pub fn with_field_edited(&self, id: i32, edit: impl FnOnce(&mut FieldProto)) -> Result<Self> {
        let mut fields = self.fields.clone();
        let Some(field) = fields.iter_mut().find(|f| f.id == id) else {
            return Err(Error::Internal(format!("no field with id {id}")));
        };
        edit(field);
        let (name, parent) = (field.name.clone(), field.parent_id);
        if name.is_empty() {
            return Err(Error::invalid(
                "a column cannot be renamed to an empty name",
            ));
        }
        if fields
            .iter()
            .filter(|f| f.parent_id == parent && f.name == name)
            .count()
            > 1
        {
            return Err(Error::invalid(format!(
                "a column named '{name}' already exists there; pick another name"
            )));
        }
        TableSchema::from_protos(fields, self.metadata_map())
    }

    fn column_names(&self) -> Vec<&str> {
        self.arrow
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect()
    }

    /// Largest field id in use.
    pub fn max_field_id(&self) -> i32 {
        self.fields.iter().map(|f| f.id).max().unwrap_or(-1)
    }

    /// Index of the top-level column named `name`.
    pub fn column_index(&self, name: &str) -> Result<usize> {
        self.arrow.index_of(name).map_err(|_| {
            let names: Vec<&str> = self
                .arrow
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            Error::invalid(format!(
                "column '{name}' does not exist; the table has: {}",
                names.join(", ")
            ))
        })
    }

    /// Checks that data of `batch_schema` can be appended: the same column names (in any
    /// order) with the same types; a vector column must have the same length.
    pub fn check_compatible(&self, batch_schema: &Schema) -> Result<()> {
        self.column_order(batch_schema).map(|_| ())
    }

    /// For each column of this schema, its index in `batch_schema`.
    fn column_order(&self, batch_schema: &Schema) -> Result<Vec<usize>> {
        for other in batch_schema.fields() {
            if self.arrow.field_with_name(other.name()).is_err() {
                return Err(Error::SchemaMismatch(format!(
                    "field '{}' is not in the table; the table's columns are: {}",
                    other.name(),
                    column_list(&self.arrow)
                )));
            }
        }
        if batch_schema.fields().len() != self.arrow.fields().len() {
            let missing: Vec<&str> = self
                .arrow
                .fields()
                .iter()
                .filter(|f| batch_schema.field_with_name(f.name()).is_err())
                .map(|f| f.name().as_str())
                .collect();
            return Err(Error::SchemaMismatch(if missing.is_empty() {
                "the data names a column more than once".to_string()
            } else {
                format!(
                    "field '{}' is missing from the data; the table's columns are: {}",
                    missing.join("', '"),
                    column_list(&self.arrow)
                )
            }));
        }
        self.arrow
            .fields()
            .iter()
            .map(|field| {
                let index = batch_schema.index_of(field.name()).map_err(|_| {
                    Error::SchemaMismatch(format!(
                        "field '{}' is missing from the data",
                        field.name()
                    ))
                })?;
                check_type_matches(
                    field.name(),
                    field.data_type(),
                    batch_schema.field(index).data_type(),
                )?;
                Ok(index)
            })
            .collect()
    }

    /// The columns of `batch` in this schema's order, after checking names, types, vector
    /// lengths and that non-nullable columns hold no nulls.
    pub fn conform(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        let order = self.column_order(batch.schema_ref())?;
        self.arrow
            .fields()
            .iter()
            .zip(order)
            .map(|(field, index)| {
                let column = batch.column(index);
                if !field.is_nullable() && column.null_count() > 0 {
                    return Err(Error::SchemaMismatch(format!(
                        "field '{}' is not nullable but the data has {} null value(s)",
                        field.name(),
                        column.null_count()
                    )));
                }
                Ok(column.clone())
            })
            .collect()
    }
}

fn column_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_type_matches(name: &str, expected: &DataType, found: &DataType) -> Result<()> {
    match (expected, found) {
        (DataType::FixedSizeList(e, en), DataType::FixedSizeList(f, fnn)) => {
            if e.data_type() == f.data_type() && en != fnn {
                return Err(Error::SchemaMismatch(format!(
                    "field '{name}' is a vector of {en} {} values but the data has vectors of {fnn}; \
                     every vector in a column must have the same length",
                    e.data_type()
                )));
            }
            check_type_matches(name, e.data_type(), f.data_type())
        }
        (DataType::List(e), DataType::List(f))
        | (DataType::LargeList(e), DataType::LargeList(f)) => {
            check_type_matches(name, e.data_type(), f.data_type())
        }
        (DataType::Struct(e), DataType::Struct(f)) => {
            if e.len() != f.len() {
                return Err(Error::SchemaMismatch(format!(
                    "field '{name}' is a struct of {} fields but the data has {}",
                    e.len(),
                    f.len()
                )));
            }
            for (a, b) in e.iter().zip(f.iter()) {
                if a.name() != b.name() {
                    return Err(Error::SchemaMismatch(format!(
                        "field '{name}.{}' found where the table has '{name}.{}'",
                        b.name(),
                        a.name()
                    )));
                }
                check_type_matches(
                    &format!("{name}.{}", a.name()),
                    a.data_type(),
                    b.data_type(),
                )?;
            }
            Ok(())
        }
        (e, f) if e == f => Ok(()),
        (e, f) => Err(Error::SchemaMismatch(format!(
            "field '{name}' has type {e} in the table but {f} in the data; cast the data to {e}"
        ))),
    }
}

fn is_vector_element(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::UInt8
            | DataType::Int8
    )
}

fn is_scalar(dt: &DataType) -> bool {
    dt.is_primitive()
        && !matches!(
            dt,
            DataType::Date64
                | DataType::Time32(_)
                | DataType::Time64(_)
                | DataType::Duration(_)
                | DataType::Interval(_)
                | DataType::Decimal32(_, _)
                | DataType::Decimal64(_, _)
                | DataType::Decimal128(_, _)
                | DataType::Decimal256(_, _)
        )
        || matches!(dt, DataType::Boolean)
}

fn is_string_like(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary
    )
}

/// Whether every value of type `from` converts to `to` without loss, so a column can be
/// re-typed in place: wider integers (signed ones also from narrower unsigned), floats wide
/// enough for the integer, wider floats, 64-bit string offsets, and vectors of wider elements.
pub fn is_widening(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    fn int_bits(dt: &DataType) -> Option<(u32, bool)> {
        Some(match dt {
            Int8 => (8, true),
            Int16 => (16, true),
            Int32 => (32, true),
            Int64 => (64, true),
            UInt8 => (8, false),
            UInt16 => (16, false),
            UInt32 => (32, false),
            UInt64 => (64, false),
            _ => return None,
        })
    }
    // Bits of mantissa (plus one) each float holds exactly.
    fn float_bits(dt: &DataType) -> Option<u32> {
        Some(match dt {
            Float16 => 11,
            Float32 => 24,
            Float64 => 53,
            _ => return None,
        })
    }
    match (from, to) {
        (FixedSizeList(a, n), FixedSizeList(b, m)) => {
            n == m
                && float_bits(a.data_type()).is_some()
                && float_bits(a.data_type()) < float_bits(b.data_type())
        }
        (Utf8, LargeUtf8) | (Binary, LargeBinary) => true,
        (f, t) => match (int_bits(f), int_bits(t), float_bits(f), float_bits(t)) {
            (Some((fb, fs)), Some((tb, ts)), _, _) => {
                (fs == ts && tb > fb) || (!fs && ts && tb > fb)
            }
            (Some((fb, _)), None, _, Some(mantissa)) => fb <= mantissa,
            (None, None, Some(a), Some(b)) => a < b,
            _ => false,
        },
    }
}

/// `array` (as stored) labelled with the names and nullability of `to`, the table's current
/// type for it: a renamed struct member or a relaxed nullability changes only the schema, so
/// arrays read from older files are relabelled on the way out (no data is copied).
pub fn relabel(array: ArrayRef, to: &DataType) -> Result<ArrayRef> {
    use arrow_array::cast::AsArray;
    use arrow_array::{Array, FixedSizeListArray, ListArray, StructArray};
    if array.data_type() == to {
        return Ok(array);
    }
    let mismatch = || {
        Error::Internal(format!(
            "stored type {} does not fit the schema's {to}",
            array.data_type()
        ))
    };
    Ok(match to {
        DataType::Struct(fields) => {
            let s = array.as_struct_opt().ok_or_else(mismatch)?;
            if s.num_columns() != fields.len() {
                return Err(mismatch());
            }
            let children = s
                .columns()
                .iter()
                .zip(fields.iter())
                .map(|(c, f)| relabel(c.clone(), f.data_type()))
                .collect::<Result<Vec<_>>>()?;
            Arc::new(StructArray::try_new(
                fields.clone(),
                children,
                s.nulls().cloned(),
            )?)
        }
        DataType::List(item) => {
            let l = array.as_list_opt::<i32>().ok_or_else(mismatch)?;
            let values = relabel(l.values().clone(), item.data_type())?;
            Arc::new(ListArray::try_new(
                item.clone(),
                l.offsets().clone(),
                values,
                l.nulls().cloned(),
            )?)
        }
        DataType::FixedSizeList(item, n) => {
            let l = array.as_fixed_size_list_opt().ok_or_else(mismatch)?;
            let values = relabel(l.values().clone(), item.data_type())?;
            Arc::new(FixedSizeListArray::try_new(
                item.clone(),
                *n,
                values,
                l.nulls().cloned(),
            )?)
        }
        _ => return Err(mismatch()),
    })
}

/// Fails with [`Error::UnsupportedType`] unless Quiver can store `dt`.
pub fn check_supported(name: &str, dt: &DataType) -> Result<()> {
    check_supported_at(name, dt, 0)
}

fn check_supported_at(name: &str, dt: &DataType, depth: usize) -> Result<()> {
    if depth > MAX_NESTING {
        return Err(Error::UnsupportedType {
            field: name.to_string(),
            data_type: format!("types nested more than {MAX_NESTING} deep"),
        });
    }
    let ok = match dt {
        DataType::FixedSizeList(_, n) if *n > MAX_VECTOR_DIM => {
            return Err(Error::UnsupportedType {
                field: name.to_string(),
                data_type: format!("vectors of {n} values (at most {MAX_VECTOR_DIM})"),
            })
        }
        DataType::FixedSizeList(item, n) => is_vector_element(item.data_type()) && *n > 0,
        DataType::List(item) => {
            is_scalar(item.data_type())
                || matches!(item.data_type(), DataType::Utf8 | DataType::LargeUtf8)
        }
        DataType::Struct(children) => {
            for child in children {
                check_supported_at(
                    &format!("{name}.{}", child.name()),
                    child.data_type(),
                    depth + 1,
                )?;
            }
            true
        }
        dt => is_scalar(dt) || is_string_like(dt),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::UnsupportedType {
            field: name.to_string(),
            data_type: dt.to_string(),
        })
    }
}

fn unit_name(unit: &TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    }
}

/// The stored name of a (supported) type. Nested types name only the container; their item
/// or members are child fields.
pub fn logical_type(dt: &DataType) -> String {
    match dt {
        DataType::Boolean => "bool".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float16 => "float16".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Utf8 => "utf8".into(),
        DataType::LargeUtf8 => "large_utf8".into(),
        DataType::Binary => "binary".into(),
        DataType::LargeBinary => "large_binary".into(),
        DataType::Date32 => "date32".into(),
        DataType::Timestamp(unit, _) => format!("timestamp:{}", unit_name(unit)),
        DataType::FixedSizeList(_, n) => format!("fixed_size_list:{n}"),
        DataType::List(_) => "list".into(),
        DataType::Struct(_) => "struct".into(),
        other => format!("unsupported:{other}"),
    }
}

fn flatten(field: &Field, parent_id: i32, next_id: &mut i32, out: &mut Vec<FieldProto>) {
    let id = *next_id;
    *next_id += 1;
    let timezone = match field.data_type() {
        DataType::Timestamp(_, Some(tz)) => tz.to_string(),
        _ => String::new(),
    };
    out.push(FieldProto {
        id,
        parent_id,
        name: field.name().clone(),
        logical_type: logical_type(field.data_type()),
        nullable: field.is_nullable(),
        timezone,
        metadata: field
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    });
    match field.data_type() {
        DataType::FixedSizeList(item, _) | DataType::List(item) => flatten(item, id, next_id, out),
        DataType::Struct(children) => {
            for child in children {
                flatten(child, id, next_id, out);
            }
        }
        _ => {}
    }
}

/// The Arrow field of stored field `f`, its descendants from `children`; counts the fields
/// it turns into in `visited`.
fn unflatten(
    f: &FieldProto,
    children: &HashMap<i32, Vec<&FieldProto>>,
    depth: usize,
    visited: &mut usize,
) -> Result<Field> {
    let bad = |why: &str| {
        Error::corrupt(
            "schema",
            format!("field '{}' ({}): {why}", f.name, f.logical_type),
        )
    };
    if depth > MAX_NESTING {
        return Err(bad("nesting is too deep"));
    }
    *visited += 1;
    let kids = children.get(&f.id).map(Vec::as_slice).unwrap_or(&[]);
    let one_child = |visited: &mut usize| -> Result<Arc<Field>> {
        match kids {
            [child] => Ok(Arc::new(unflatten(child, children, depth + 1, visited)?)),
            _ => Err(bad("expected exactly one child field")),
        }
    };
    let dt = match f.logical_type.as_str() {
        "bool" => DataType::Boolean,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float16" => DataType::Float16,
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "utf8" => DataType::Utf8,
        "large_utf8" => DataType::LargeUtf8,
        "binary" => DataType::Binary,
        "large_binary" => DataType::LargeBinary,
        "date32" => DataType::Date32,
        "list" => DataType::List(one_child(visited)?),
        "struct" => DataType::Struct(Fields::from(
            kids.iter()
                .map(|c| unflatten(c, children, depth + 1, visited))
                .collect::<Result<Vec<_>>>()?,
        )),
        other => {
            if let Some(unit) = other.strip_prefix("timestamp:") {
                let unit = match unit {
                    "s" => TimeUnit::Second,
                    "ms" => TimeUnit::Millisecond,
                    "us" => TimeUnit::Microsecond,
                    "ns" => TimeUnit::Nanosecond,
                    _ => return Err(bad("unknown time unit")),
                };
                let tz = (!f.timezone.is_empty()).then(|| Arc::from(f.timezone.as_str()));
                DataType::Timestamp(unit, tz)
            } else if let Some(n) = other.strip_prefix("fixed_size_list:") {
                let n: i32 = n.parse().map_err(|_| bad("bad list size"))?;
                if n <= 0 {
                    return Err(bad("list size must be positive"));
                }
                DataType::FixedSizeList(one_child(visited)?, n)
            } else {
                return Err(bad("unknown type"));
            }
        }
    };
    Ok(Field::new(f.name.clone(), dt, f.nullable).with_metadata(f.metadata.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "vector",
                DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), 4),
                true,
            ),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new(
                "meta",
                DataType::Struct(Fields::from(vec![
                    Field::new("a", DataType::Utf8, true),
                    Field::new(
                        "tags",
                        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                        true,
                    ),
                ])),
                true,
            ),
        ])
    }

    #[test]
    fn schema_round_trips_through_protos() {
        let ts = TableSchema::new(&sample()).unwrap();
        assert_eq!(ts.field_ids, vec![0, 1, 3, 4]);
        let back = TableSchema::from_protos(ts.fields.clone(), HashMap::new()).unwrap();
        assert_eq!(back.arrow.as_ref(), &sample());
        assert_eq!(back.field_ids, ts.field_ids);
    }

    #[test]
    fn wrong_vector_length_is_named() {
        let ts = TableSchema::new(&sample()).unwrap();
        let mut fields: Vec<Field> = sample()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[1] = Field::new(
            "vector",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), 3),
            true,
        );
        let err = ts
            .check_compatible(&Schema::new(fields))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'vector'") && err.contains("vectors of 3"),
            "{err}"
        );
    }

    #[test]
    fn widening_keeps_every_value() {
        use DataType::*;
        for (from, to) in [
            (Int8, Int64),
            (UInt8, Int16),
            (UInt32, UInt64),
            (Int32, Float64),
            (Int16, Float32),
            (Float16, Float64),
            (Utf8, LargeUtf8),
            (Binary, LargeBinary),
        ] {
            assert!(is_widening(&from, &to), "{from} -> {to}");
        }
        for (from, to) in [
            (Int64, Int32),
            (Int8, UInt16),
            (UInt64, Int64),
            (Int32, Float32),
            (Int64, Float64),
            (Float64, Float32),
            (Utf8, Binary),
            (Int32, Utf8),
        ] {
            assert!(!is_widening(&from, &to), "{from} -> {to}");
        }
        let vector = |dt: DataType, n| FixedSizeList(Arc::new(Field::new("item", dt, true)), n);
        assert!(is_widening(&vector(Float32, 4), &vector(Float64, 4)));
        assert!(!is_widening(&vector(Float32, 4), &vector(Float64, 8)));
        assert!(!is_widening(&vector(UInt8, 4), &vector(Float32, 4)));
    }

    #[test]
    fn relabel_renames_struct_members_without_copying() {
        use arrow_array::{Array, Int32Array, StructArray};
        let values: ArrayRef = Arc::new(Int32Array::from(vec![1, 2]));
        let stored = StructArray::try_new(
            Fields::from(vec![Field::new("a", DataType::Int32, true)]),
            vec![values.clone()],
            None,
        )
        .unwrap();
        let to = DataType::Struct(Fields::from(vec![Field::new("b", DataType::Int32, true)]));
        let out = relabel(Arc::new(stored), &to).unwrap();
        assert_eq!(out.data_type(), &to);
        let child = out
            .as_any()
            .downcast_ref::<StructArray>()
            .unwrap()
            .column(0)
            .clone();
        assert_eq!(
            child.to_data().buffers()[0].as_ptr(),
            values.to_data().buffers()[0].as_ptr()
        );
        assert!(relabel(out, &DataType::Int32).is_err());
    }

    fn field(id: i32, parent_id: i32, logical_type: &str) -> FieldProto {
        FieldProto {
            id,
            parent_id,
            name: format!("f{id}"),
            logical_type: logical_type.into(),
            nullable: true,
            ..Default::default()
        }
    }

    #[test]
    fn stored_schemas_that_quiver_does_not_write_are_corrupt() {
        let corrupt = |fields: Vec<FieldProto>| {
            let err = TableSchema::from_protos(fields, HashMap::new()).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        };
        // A struct listing itself among its members (a repeated id): with 40 copies, each
        // level of unflattening would fan out 40 ways, 64 levels deep.
        let mut looping = vec![field(5, -1, "struct")];
        looping.extend((0..40).map(|_| field(5, 5, "struct")));
        corrupt(looping);
        // Negative ids, orphans, cycles off the tree, children of a leaf.
        corrupt(vec![field(-1, -1, "struct"), field(0, -1, "int32")]);
        corrupt(vec![field(0, -1, "int32"), field(1, 7, "int32")]);
        corrupt(vec![
            field(0, -1, "int32"),
            field(1, 2, "int32"),
            field(2, 1, "int32"),
        ]);
        corrupt(vec![field(0, -1, "int32"), field(1, 0, "int32")]);
        // Types no writer produces: huge vectors, vectors of strings, lists of lists.
        corrupt(vec![
            field(0, -1, "fixed_size_list:2147483647"),
            field(1, 0, "float32"),
        ]);
        corrupt(vec![field(0, -1, "fixed_size_list:4"), field(1, 0, "utf8")]);
        corrupt(vec![
            field(0, -1, "list"),
            field(1, 0, "list"),
            field(2, 1, "int32"),
        ]);
        // Nesting deeper than the limit.
        let deep: Vec<FieldProto> = (0..100)
            .map(|i| field(i, i - 1, if i == 99 { "int32" } else { "struct" }))
            .collect();
        corrupt(deep);
        // The longest vectors allowed still read.
        let longest = format!("fixed_size_list:{MAX_VECTOR_DIM}");
        TableSchema::from_protos(
            vec![field(0, -1, &longest), field(1, 0, "float32")],
            HashMap::new(),
        )
        .expect("longest vectors");
    }

    #[test]
    fn vectors_longer_than_the_limit_are_not_written() {
        let too_long = Schema::new(vec![Field::new(
            "v",
            DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, true)),
                MAX_VECTOR_DIM + 1,
            ),
            true,
        )]);
        assert!(matches!(
            TableSchema::new(&too_long),
            Err(Error::UnsupportedType { .. })
        ));
    }

    #[test]
    fn unsupported_types_are_rejected() {
        let schema = Schema::new(vec![Field::new("d", DataType::Date64, true)]);
        assert!(matches!(
            TableSchema::new(&schema),
            Err(Error::UnsupportedType { .. })
        ));
    }
}
