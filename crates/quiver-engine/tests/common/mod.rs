//! Shared helpers of the integration tests: a schema with every supported type, seeded random
//! batches of it, and small fixtures.
#![allow(dead_code)]

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

pub mod clustered;

use arrow_array::types::*;
use arrow_array::*;
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn item(dt: DataType) -> Arc<Field> {
    Arc::new(Field::new("item", dt, true))
}

pub fn vector_type(element: DataType, dim: i32) -> DataType {
    DataType::FixedSizeList(item(element), dim)
}

/// One nullable column of every supported type.
pub fn all_types_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("bool", DataType::Boolean, true),
        Field::new("i8", DataType::Int8, true),
        Field::new("i16", DataType::Int16, true),
        Field::new("i32", DataType::Int32, true),
        Field::new("i64", DataType::Int64, true),
        Field::new("u8", DataType::UInt8, true),
        Field::new("u16", DataType::UInt16, true),
        Field::new("u32", DataType::UInt32, true),
        Field::new("u64", DataType::UInt64, true),
        Field::new("f16", DataType::Float16, true),
        Field::new("f32", DataType::Float32, true),
        Field::new("f64", DataType::Float64, true),
        Field::new("utf8", DataType::Utf8, true),
        Field::new("large_utf8", DataType::LargeUtf8, true),
        Field::new("binary", DataType::Binary, true),
        Field::new("large_binary", DataType::LargeBinary, true),
        Field::new("date32", DataType::Date32, true),
    ];
    for (unit, name) in [
        (TimeUnit::Second, "s"),
        (TimeUnit::Millisecond, "ms"),
        (TimeUnit::Microsecond, "us"),
        (TimeUnit::Nanosecond, "ns"),
    ] {
        fields.push(Field::new(
            format!("ts_{name}"),
            DataType::Timestamp(unit, None),
            true,
        ));
        fields.push(Field::new(
            format!("ts_{name}_tz"),
            DataType::Timestamp(unit, Some("Europe/Paris".into())),
            true,
        ));
    }
    for (element, name) in [
        (DataType::Float16, "vec_f16"),
        (DataType::Float32, "vec_f32"),
        (DataType::Float64, "vec_f64"),
        (DataType::UInt8, "vec_u8"),
        (DataType::Int8, "vec_i8"),
    ] {
        fields.push(Field::new(name, vector_type(element, 8), true));
    }
    fields.push(Field::new(
        "tags",
        DataType::List(item(DataType::Utf8)),
        true,
    ));
    fields.push(Field::new(
        "scores",
        DataType::List(item(DataType::Int32)),
        true,
    ));
    fields.push(Field::new(
        "meta",
        DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("v", vector_type(DataType::Float32, 3), true),
        ])),
        true,
    ));
    Arc::new(Schema::new(fields))
}

fn nulls(rng: &mut StdRng, len: usize, null_rate: f64) -> Option<NullBuffer> {
    if null_rate <= 0.0 {
        return None;
    }
    Some(NullBuffer::from_iter(
        (0..len).map(|_| !rng.random_bool(null_rate)),
    ))
}

fn random_string(rng: &mut StdRng) -> String {
    const ALPHABET: &[&str] = &["a", "b", "z", "é", "漢", "🦀", " ", "0"];
    let len = rng.random_range(0..12);
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect()
}

fn primitive<T: ArrowPrimitiveType>(
    rng: &mut StdRng,
    len: usize,
    null_rate: f64,
    mut value: impl FnMut(&mut StdRng) -> T::Native,
) -> PrimitiveArray<T> {
    let values: Vec<T::Native> = (0..len).map(|_| value(rng)).collect();
    PrimitiveArray::<T>::new(values.into(), nulls(rng, len, null_rate))
}

/// A random array of `dt` with roughly `null_rate` nulls.
pub fn random_array(dt: &DataType, len: usize, rng: &mut StdRng, null_rate: f64) -> ArrayRef {
    match dt {
        DataType::Boolean => {
            let values: Vec<Option<bool>> = (0..len)
                .map(|_| (!rng.random_bool(null_rate)).then(|| rng.random()))
                .collect();
            Arc::new(BooleanArray::from(values))
        }
        DataType::Int8 => Arc::new(primitive::<Int8Type>(rng, len, null_rate, |r| r.random())),
        DataType::Int16 => Arc::new(primitive::<Int16Type>(rng, len, null_rate, |r| r.random())),
        DataType::Int32 => Arc::new(primitive::<Int32Type>(rng, len, null_rate, |r| r.random())),
        DataType::Int64 => Arc::new(primitive::<Int64Type>(rng, len, null_rate, |r| r.random())),
        DataType::UInt8 => Arc::new(primitive::<UInt8Type>(rng, len, null_rate, |r| r.random())),
        DataType::UInt16 => Arc::new(primitive::<UInt16Type>(rng, len, null_rate, |r| r.random())),
        DataType::UInt32 => Arc::new(primitive::<UInt32Type>(rng, len, null_rate, |r| r.random())),
        DataType::UInt64 => Arc::new(primitive::<UInt64Type>(rng, len, null_rate, |r| r.random())),
        DataType::Float16 => Arc::new(primitive::<Float16Type>(rng, len, null_rate, |r| {
            f16::from_f32(r.random_range(-100.0..100.0))
        })),
        DataType::Float32 => Arc::new(primitive::<Float32Type>(rng, len, null_rate, |r| {
            r.random_range(-1e6..1e6)
        })),
        DataType::Float64 => Arc::new(primitive::<Float64Type>(rng, len, null_rate, |r| {
            r.random_range(-1e12..1e12)
        })),
        DataType::Date32 => Arc::new(primitive::<Date32Type>(rng, len, null_rate, |r| {
            r.random_range(-100_000..100_000)
        })),
        DataType::Timestamp(unit, tz) => {
            let a = primitive::<TimestampNanosecondType>(rng, len, null_rate, |r| r.random());
            let data = a
                .into_data()
                .into_builder()
                .data_type(DataType::Timestamp(*unit, tz.clone()));
            make_array(data.build().expect("timestamp data"))
        }
        DataType::Utf8 => {
            let values: Vec<Option<String>> = (0..len)
                .map(|_| (!rng.random_bool(null_rate)).then(|| random_string(rng)))
                .collect();
            Arc::new(StringArray::from(values))
        }
        DataType::LargeUtf8 => {
            let values: Vec<Option<String>> = (0..len)
                .map(|_| (!rng.random_bool(null_rate)).then(|| random_string(rng)))
                .collect();
            Arc::new(LargeStringArray::from(values))
        }
        DataType::Binary | DataType::LargeBinary => {
            let values: Vec<Option<Vec<u8>>> = (0..len)
                .map(|_| {
                    (!rng.random_bool(null_rate)).then(|| {
                        let n = rng.random_range(0..16);
                        (0..n).map(|_| rng.random()).collect()
                    })
                })
                .collect();
            let refs: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref()).collect();
            if matches!(dt, DataType::Binary) {
                Arc::new(BinaryArray::from(refs))
            } else {
                Arc::new(LargeBinaryArray::from(refs))
            }
        }
        DataType::FixedSizeList(field, dim) => {
            let values = random_array(field.data_type(), len * *dim as usize, rng, 0.0);
            Arc::new(
                FixedSizeListArray::try_new(
                    field.clone(),
                    *dim,
                    values,
                    nulls(rng, len, null_rate),
                )
                .expect("vector array"),
            )
        }
        DataType::List(field) => {
            let lengths: Vec<usize> = (0..len).map(|_| rng.random_range(0..4)).collect();
            let total = lengths.iter().sum();
            let values = random_array(field.data_type(), total, rng, null_rate / 2.0);
            Arc::new(
                ListArray::try_new(
                    field.clone(),
                    OffsetBuffer::from_lengths(lengths),
                    values,
                    nulls(rng, len, null_rate),
                )
                .expect("list array"),
            )
        }
        DataType::Struct(fields) => {
            let columns = fields
                .iter()
                .map(|f| random_array(f.data_type(), len, rng, null_rate))
                .collect();
            Arc::new(
                StructArray::try_new(fields.clone(), columns, nulls(rng, len, null_rate))
                    .expect("struct array"),
            )
        }
        other => panic!("no generator for {other}"),
    }
}

/// A random batch of `schema`.
pub fn random_batch(schema: &SchemaRef, rows: usize, seed: u64, null_rate: f64) -> RecordBatch {
    let mut rng = StdRng::seed_from_u64(seed);
    let columns = schema
        .fields()
        .iter()
        .map(|f| random_array(f.data_type(), rows, &mut rng, null_rate))
        .collect();
    RecordBatch::try_new(schema.clone(), columns).expect("random batch matches its schema")
}

/// A simple table schema: an int64 id, a float32 vector of `dim`, a text.
pub fn simple_schema(dim: i32) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("vector", vector_type(DataType::Float32, dim), true),
        Field::new("text", DataType::Utf8, true),
    ]))
}

/// Rows `start..start+rows` of the simple schema; vector elements are `id + j / 1000`.
pub fn simple_batch(start: i64, rows: usize, dim: i32) -> RecordBatch {
    let ids = Int64Array::from_iter_values(start..start + rows as i64);
    let values = Float32Array::from_iter_values(
        (0..rows)
            .flat_map(|i| (0..dim).map(move |j| (start + i as i64) as f32 + j as f32 / 1000.0)),
    );
    let vectors = FixedSizeListArray::try_new(item(DataType::Float32), dim, Arc::new(values), None)
        .expect("vectors");
    let texts =
        StringArray::from_iter_values((0..rows).map(|i| format!("row {}", start + i as i64)));
    RecordBatch::try_new(
        simple_schema(dim),
        vec![Arc::new(ids), Arc::new(vectors), Arc::new(texts)],
    )
    .expect("simple batch")
}

/// A batch of `id` (0, 1, …) and the nullable vector column `column` holding `vectors`.
pub fn id_vector_batch(column: &str, vectors: FixedSizeListArray) -> RecordBatch {
    let rows = vectors.len() as i64;
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(column, vectors.data_type().clone(), true),
        ])),
        vec![
            Arc::new(Int64Array::from_iter_values(0..rows)),
            Arc::new(vectors),
        ],
    )
    .expect("id and vector batch")
}

/// All ids of a scan's batches, in order.
pub fn ids_of(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("id")
                .expect("id column")
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("int64 ids")
                .values()
                .to_vec()
        })
        .collect()
}

/// All `_rowid` values of a scan's batches, in order.
pub fn row_ids_of(batches: &[RecordBatch]) -> Vec<u64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("_rowid")
                .expect("_rowid column")
                .as_any()
                .downcast_ref::<UInt64Array>()
                .expect("u64 row ids")
                .values()
                .to_vec()
        })
        .collect()
}

/// Concatenates batches of one schema.
pub fn concat(schema: &SchemaRef, batches: &[RecordBatch]) -> RecordBatch {
    arrow_select::concat::concat_batches(schema, batches).expect("concat")
}

/// Called before every single-request put with its path and payload.
pub type PutHook = Box<dyn Fn(&Path, &PutPayload) + Send + Sync>;

/// A store wrapper that counts every read request (a ranged GET, or one range of a
/// multi-range GET) and its bytes, and can run a hook before puts (crash tests).
pub struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
    reads: AtomicU64,
    bytes: AtomicU64,
    before_put: Option<PutHook>,
}

impl InstrumentedStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        InstrumentedStore {
            inner,
            reads: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            before_put: None,
        }
    }

    pub fn with_put_hook(mut self, hook: PutHook) -> Self {
        self.before_put = Some(hook);
        self
    }

    /// (read requests, bytes read) so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst),
        )
    }
}

impl fmt::Debug for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstrumentedStore({})", self.inner)
    }
}

impl fmt::Display for InstrumentedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstrumentedStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for InstrumentedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if let Some(hook) = &self.before_put {
            hook(location, &payload);
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let result = self.inner.get_opts(location, options).await?;
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.bytes
            .fetch_add(result.range.end - result.range.start, Ordering::SeqCst);
        Ok(result)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let out = self.inner.get_ranges(location, ranges).await?;
        self.reads.fetch_add(ranges.len() as u64, Ordering::SeqCst);
        self.bytes
            .fetch_add(out.iter().map(|b| b.len() as u64).sum(), Ordering::SeqCst);
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A new table "t" of [`simple_schema`] holding ids `0..rows`.
pub async fn simple_table(
    db: &quiver_engine::Database,
    rows: usize,
    dim: i32,
) -> quiver_engine::Table {
    use quiver_engine::{batches_stream, CreateMode, WriteParams};
    db.create_table(
        "t",
        simple_schema(dim),
        batches_stream(vec![simple_batch(0, rows, dim)]),
        CreateMode::Create,
        WriteParams::default(),
    )
    .await
    .expect("create")
}

/// The version numbers `table` lists, ascending.
pub async fn version_numbers(table: &quiver_engine::Table) -> Vec<u64> {
    let versions = table.list_versions().await.expect("versions");
    versions.iter().map(|v| v.version).collect()
}

/// A table of `base` rows (ids from 0), then `singles` one-row appends (ids after them): the
/// one-row fragments of a table fed row by row.
pub async fn fed_table(
    db: &quiver_engine::Database,
    name: &str,
    dim: i32,
    base: usize,
    singles: usize,
) -> quiver_engine::Table {
    use quiver_engine::{batches_stream, CreateMode, WriteParams};
    let t = db
        .create_table(
            name,
            simple_schema(dim),
            batches_stream(vec![simple_batch(0, base, dim)]),
            CreateMode::Create,
            WriteParams::default(),
        )
        .await
        .expect("create");
    for i in 0..singles {
        t.append(
            batches_stream(vec![simple_batch((base + i) as i64, 1, dim)]),
            WriteParams::default(),
        )
        .await
        .expect("append");
    }
    t
}
