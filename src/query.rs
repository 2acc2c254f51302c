//! Scans and vector searches: their options, results and result streams.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use futures::stream::BoxStream;
use futures::StreamExt;
use napi::bindgen_prelude::Buffer;
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
}

/// A search's result (Arrow IPC bytes) and how it ran.
#[napi(object)]
pub struct NativeSearchResult {
    pub data: Buffer,
    /// The index used, if any.
    pub index: Option<String>,
    pub partitions_probed: u32,
    /// Rows whose distance was computed exactly (exact search, refinement).
    pub exact_rows: f64,
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
