//! `NativeWriter`: streamed writes committed as one version.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use arrow_array::RecordBatch;
use futures::{FutureExt, StreamExt};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use quiver_engine::Error as EngineError;

use crate::errors::*;
use crate::ipc::*;

/// What the JS side sends a writer: batches, then an explicit end. A channel that closes
/// without `End` means the JS object was dropped or garbage-collected mid-stream: the engine
/// then sees an error and commits nothing, never a partial stream.
pub(crate) enum WriterMessage {
    Batch(quiver_engine::Result<RecordBatch>),
    End,
}

pub(crate) type BatchSender = tokio::sync::mpsc::Sender<WriterMessage>;

/// A streaming write: batches sent with `write` flow into one data-file writer, and `finish`
/// commits them as one version (or nothing, if anything failed, `abort` was called, or the
/// writer was dropped before `finish`).
#[napi]
pub struct NativeWriter {
    sender: tokio::sync::Mutex<Option<BatchSender>>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<quiver_engine::Result<u64>>>>,
}

impl NativeWriter {
    /// Starts `write` on a task that consumes batches as they arrive; two batches in flight at
    /// most, so ingest memory stays bounded whatever the total size.
    pub(crate) fn start<F, Fut>(write: F) -> NativeWriter
    where
        F: FnOnce(quiver_engine::BatchStream) -> Fut,
        Fut: Future<Output = quiver_engine::Result<u64>> + Send + 'static,
    {
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        let stream = futures::stream::unfold(Some(receiver), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(WriterMessage::Batch(item)) => Some((item, Some(rx))),
                Some(WriterMessage::End) => None,
                None => Some((
                    Err(EngineError::InvalidArgument(
                        "the write was abandoned before finish(): nothing was committed".into(),
                    )),
                    None,
                )),
            }
        })
        .boxed();
        let task = tokio::spawn(AssertUnwindSafe(write(stream)).catch_unwind().map(|r| {
            r.unwrap_or_else(|_| Err(EngineError::Internal("the writer panicked".into())))
        }));
        NativeWriter {
            sender: tokio::sync::Mutex::new(Some(sender)),
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    async fn outcome(&self) -> quiver_engine::Result<u64> {
        match self.task.lock().await.take() {
            Some(task) => task
                .await
                .map_err(|e| EngineError::Internal(format!("writer task failed: {e}")))?,
            None => Err(EngineError::InvalidArgument(
                "this write has already finished".into(),
            )),
        }
    }
}

#[napi]
impl NativeWriter {
    /// Sends the batches of an IPC stream; waits while the writer is busy.
    #[napi]
    pub async fn write(&self, data: Buffer) -> napi::Result<()> {
        guarded(async {
            // Each batch is checked against the table's schema by the engine.
            let (_, batches) = decode_ipc(&data)?;
            let sender = self.sender.lock().await.clone();
            let Some(sender) = sender else {
                return Err(EngineError::InvalidArgument(
                    "this write has already finished".into(),
                ));
            };
            for batch in batches {
                if sender.send(WriterMessage::Batch(Ok(batch))).await.is_err() {
                    // The writer stopped early: report why.
                    self.sender.lock().await.take();
                    return self.outcome().await.map(|_| ());
                }
            }
            Ok(())
        })
        .await
    }

    /// Commits everything written as one version and returns it.
    #[napi]
    pub async fn finish(&self) -> napi::Result<f64> {
        guarded(async {
            if let Some(sender) = self.sender.lock().await.take() {
                // A send fails only when the writer already stopped; `outcome` says why.
                let _ = sender.send(WriterMessage::End).await;
            }
            Ok(self.outcome().await? as f64)
        })
        .await
    }

    /// Abandons the write: nothing is committed.
    #[napi]
    pub async fn abort(&self) -> napi::Result<()> {
        self.abort_with("the write was aborted").await;
        let _ = self.outcome().await;
        Ok(())
    }
}

impl NativeWriter {
    async fn abort_with(&self, why: &str) {
        if let Some(sender) = self.sender.lock().await.take() {
            let _ = sender
                .send(WriterMessage::Batch(Err(EngineError::InvalidArgument(
                    why.to_string(),
                ))))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::sync::Arc;

    /// Counts the batches of a stream, failing (committing nothing) if any item is an error.
    async fn count_batches(mut stream: quiver_engine::BatchStream) -> quiver_engine::Result<u64> {
        let mut n = 0;
        while let Some(item) = stream.next().await {
            item?;
            n += 1;
        }
        Ok(n)
    }

    fn one_batch() -> RecordBatch {
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "x",
            arrow_schema::DataType::Int32,
            false,
        )]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(arrow_array::Int32Array::from(vec![1]))],
        )
        .expect("batch")
    }

    #[tokio::test]
    async fn a_dropped_writer_never_ends_its_stream_cleanly() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let writer = NativeWriter::start(|stream| async move {
            let outcome = count_batches(stream).await;
            let _ = tx.send(outcome.is_ok());
            outcome
        });
        let sender = writer.sender.lock().await.clone().expect("sender");
        sender
            .send(WriterMessage::Batch(Ok(one_batch())))
            .await
            .expect("send");
        drop(sender);
        drop(writer);
        assert_eq!(rx.await, Ok(false), "the write must fail, not commit");

        let finished = NativeWriter::start(count_batches);
        let sender = finished.sender.lock().await.clone().expect("sender");
        sender
            .send(WriterMessage::Batch(Ok(one_batch())))
            .await
            .expect("send");
        drop(sender);
        let end = finished.sender.lock().await.take().expect("sender");
        end.send(WriterMessage::End).await.expect("end");
        assert_eq!(finished.outcome().await.expect("ok"), 1);
    }
}
