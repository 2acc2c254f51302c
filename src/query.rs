//! Scans and vector searches: their options, results and result streams.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, OffsetSizeTrait, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use futures::stream::BoxStream;
use futures::StreamExt;
use napi::bindgen_prelude::{BigInt64Array, BigUint64Array, Buffer, Float32Array, Float64Array};
use napi_derive::napi;

use crate::errors::*;
use crate::ipc::*;

/// Options of a scan.
#[napi(object)]
pub struct NativeScanOptions {
    pub columns: Option<Vec<String>>,
    pub limit: Option<f64>,
    pub offset: Option<f64>,
    pub with_row_id: Option<bool>,
    pub batch_size: Option<u32>,
    /// SQL filter.
    pub filter: Option<String>,
}

/// Options of a vector search.
#[napi(object)]
pub struct NativeSearchOptions {
    pub column: Option<String>,
    pub k: u32,
    pub distance_type: Option<String>,
    pub columns: Option<Vec<String>>,
    pub with_row_id: Option<bool>,
    pub lower_bound: Option<f64>,
    pub upper_bound: Option<f64>,
    /// SQL filter, applied before ranking unless `postfilter`.
    pub filter: Option<String>,
    pub postfilter: Option<bool>,
    pub nprobes: Option<u32>,
    pub refine_factor: Option<u32>,
    pub bypass_vector_index: Option<bool>,
    /// Recall the index's calibrated settings should reach.
    pub target_recall: Option<f64>,
    /// Graph indexes: the search's candidate list.
    pub ef: Option<u32>,
    /// Return plain columns instead of IPC bytes where every column allows (`toArray()`: for
    /// a few rows, decoding IPC in JS costs as much as the search).
    pub plain: Option<bool>,
}

/// One result column as values JS uses directly; exactly one value field is set.
#[napi(object)]
pub struct NativePlainColumn {
    pub name: String,
    /// Integers of up to 32 bits and floats, as numbers.
    pub numbers: Option<Float64Array>,
    pub int64: Option<BigInt64Array>,
    pub uint64: Option<BigUint64Array>,
    pub booleans: Option<Vec<bool>>,
    pub strings: Option<Vec<String>>,
    /// Fixed-size lists of float32, `dim` values a row.
    pub vectors: Option<Float32Array>,
    pub dim: Option<u32>,
}

/// The columns of `batch` in plain form; `None` when one has nulls or a type without one
/// (the caller then sends IPC).
pub(crate) fn plain_columns(batch: &RecordBatch) -> Option<Vec<NativePlainColumn>> {
    let schema = batch.schema();
    schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| plain_column(field.name(), column))
        .collect()
}

fn plain_column(name: &str, column: &ArrayRef) -> Option<NativePlainColumn> {
    if column.logical_null_count() > 0 {
        return None;
    }
    let mut out = NativePlainColumn {
        name: name.to_string(),
        numbers: None,
        int64: None,
        uint64: None,
        booleans: None,
        strings: None,
        vectors: None,
        dim: None,
    };
    fn numbers<T: ArrowPrimitiveType>(column: &ArrayRef) -> Float64Array
    where
        T::Native: Into<f64>,
    {
        let values = column.as_primitive::<T>().values();
        Float64Array::new(values.iter().map(|&v| v.into()).collect())
    }
    fn strings<O: OffsetSizeTrait>(column: &ArrayRef) -> Vec<String> {
        let strings = column.as_string::<O>();
        (0..strings.len())
            .map(|i| strings.value(i).to_string())
            .collect()
    }
    match column.data_type() {
        DataType::Int8 => out.numbers = Some(numbers::<Int8Type>(column)),
        DataType::Int16 => out.numbers = Some(numbers::<Int16Type>(column)),
        DataType::Int32 => out.numbers = Some(numbers::<Int32Type>(column)),
        DataType::UInt8 => out.numbers = Some(numbers::<UInt8Type>(column)),
        DataType::UInt16 => out.numbers = Some(numbers::<UInt16Type>(column)),
        DataType::UInt32 => out.numbers = Some(numbers::<UInt32Type>(column)),
        DataType::Float32 => out.numbers = Some(numbers::<Float32Type>(column)),
        DataType::Float64 => out.numbers = Some(numbers::<Float64Type>(column)),
        DataType::Int64 => {
            let values = column.as_primitive::<Int64Type>().values();
            out.int64 = Some(BigInt64Array::new(values.to_vec()));
        }
        DataType::UInt64 => {
            let values = column.as_primitive::<UInt64Type>().values();
            out.uint64 = Some(BigUint64Array::new(values.to_vec()));
        }
        DataType::Boolean => out.booleans = Some(column.as_boolean().values().iter().collect()),
        DataType::Utf8 => out.strings = Some(strings::<i32>(column)),
        DataType::LargeUtf8 => out.strings = Some(strings::<i64>(column)),
        DataType::FixedSizeList(item, dim) if item.data_type() == &DataType::Float32 => {
            let list = column.as_fixed_size_list();
            let dim = usize::try_from(*dim).ok().filter(|&d| d > 0)?;
            let start = list.value_offset_at(0);
            let values = list.values().as_primitive::<Float32Type>();
            let rows = values.values().get(start..start + list.len() * dim)?;
            if values
                .nulls()
                .is_some_and(|n| (start..start + rows.len()).any(|i| n.is_null(i)))
            {
                return None;
            }
            out.vectors = Some(Float32Array::new(rows.to_vec()));
            out.dim = Some(u32::try_from(dim).ok()?);
        }
        _ => return None,
    }
    Some(out)
}

/// A search's rows: Arrow IPC bytes (`data`), or, when the caller asked for plain values and
/// every column has a plain form, `plain` columns. (How the search ran is `analyzePlan()`'s.)
#[napi(object)]
pub struct NativeSearchResult {
    pub data: Option<Buffer>,
    pub plain: Option<Vec<NativePlainColumn>>,
}

/// A stream of result batches, each as Arrow IPC stream bytes.
#[napi]
pub struct NativeBatchStream {
    pub(crate) schema: SchemaRef,
    pub(crate) inner:
        Arc<tokio::sync::Mutex<Option<BoxStream<'static, quiver_engine::Result<RecordBatch>>>>>,
    /// Batches read when the scan started (`scanEager`), not yet handed out.
    pub(crate) prefetched: std::sync::Mutex<Option<NativeChunk>>,
}

/// Batches read ahead, as one IPC stream, and whether they are the last.
#[napi(object)]
pub struct NativeChunk {
    pub data: Buffer,
    pub done: bool,
}

impl NativeBatchStream {
    pub(crate) fn new(
        schema: SchemaRef,
        stream: Option<BoxStream<'static, quiver_engine::Result<RecordBatch>>>,
        prefetched: Option<NativeChunk>,
    ) -> Self {
        NativeBatchStream {
            schema,
            inner: Arc::new(tokio::sync::Mutex::new(stream)),
            prefetched: std::sync::Mutex::new(prefetched),
        }
    }
}

#[napi]
impl NativeBatchStream {
    /// The next batch as IPC bytes, or `null` at the end.
    #[napi]
    pub async fn next(&self) -> napi::Result<Option<Buffer>> {
        let inner = self.inner.clone();
        let schema = self.schema.clone();
        guarded(async move {
            let mut guard = inner.lock().await;
            let Some(stream) = guard.as_mut() else {
                return Ok(None);
            };
            match stream.next().await {
                Some(batch) => Ok(Some(encode_ipc(&schema, &[batch?])?.into())),
                None => {
                    *guard = None;
                    Ok(None)
                }
            }
        })
        .await
    }

    /// The batches read when the scan started (once; then `null`).
    #[napi]
    pub fn take_prefetched(&self) -> Option<NativeChunk> {
        match self.prefetched.lock() {
            Ok(mut p) => p.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        }
    }

    /// The schema of the batches, as an IPC stream without batches.
    #[napi]
    pub fn schema(&self) -> napi::Result<Buffer> {
        encode_ipc(&self.schema, &[])
            .map(Buffer::from)
            .map_err(to_js_error)
    }

    /// Stops the stream early, releasing what it holds.
    #[napi]
    pub async fn cancel(&self) -> napi::Result<()> {
        *self.inner.lock().await = None;
        Ok(())
    }
}
