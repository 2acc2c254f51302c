//! Maintenance arguments and results: compaction, cleanup, optimize, activity.

use std::sync::Arc;
use std::time::Duration;

use napi::threadsafe_function::ThreadsafeFunctionCallMode;
use napi_derive::napi;

use crate::connection::*;
use crate::errors::*;
use crate::index::*;

/// What automatic maintenance did for a table.
#[napi(object)]
pub struct NativeMaintenanceActivity {
    pub rounds: f64,
    pub compactions: f64,
    pub cleanups: f64,
    pub index_refreshes: f64,
    pub errors: f64,
    pub active: bool,
    pub last_round_micros: f64,
}

/// What a compaction did.
#[napi(object)]
pub struct NativeCompactionMetrics {
    pub fragments_removed: f64,
    pub fragments_added: f64,
    pub files_removed: f64,
    pub files_added: f64,
    pub rows_rewritten: f64,
    pub version: f64,
}

impl From<quiver_engine::table::CompactionMetrics> for NativeCompactionMetrics {
    fn from(m: quiver_engine::table::CompactionMetrics) -> Self {
        NativeCompactionMetrics {
            fragments_removed: m.fragments_removed as f64,
            fragments_added: m.fragments_added as f64,
            files_removed: m.files_removed as f64,
            files_added: m.files_added as f64,
            rows_rewritten: m.rows_rewritten as f64,
            version: m.version as f64,
        }
    }
}

/// What a cleanup removed.
#[napi(object)]
pub struct NativeCleanupStats {
    pub bytes_removed: f64,
    pub old_versions_removed: f64,
    pub files_removed: f64,
}

impl From<quiver_engine::table::CleanupStats> for NativeCleanupStats {
    fn from(s: quiver_engine::table::CleanupStats) -> Self {
        NativeCleanupStats {
            bytes_removed: s.bytes_removed as f64,
            old_versions_removed: s.old_versions_removed as f64,
            files_removed: s.files_removed as f64,
        }
    }
}

/// Options of `compactFiles` (and the compaction step of `optimize`).
#[napi(object)]
pub struct NativeCompactionOptions {
    pub target_rows_per_fragment: Option<f64>,
    pub max_bytes_per_fragment: Option<f64>,
    pub materialize_deletions: Option<bool>,
    pub materialize_deletions_threshold: Option<f64>,
    pub num_threads: Option<u32>,
}

/// Options of `cleanupOldVersions` (and the cleanup step of `optimize`).
#[napi(object)]
pub struct NativeCleanupOptions {
    /// Milliseconds since the Unix epoch: versions superseded before it are removed.
    pub older_than_ms: Option<f64>,
    pub delete_unverified: Option<bool>,
}

/// What `optimize` did.
#[napi(object)]
pub struct NativeOptimizeResult {
    pub compaction: NativeCompactionMetrics,
    pub prune: NativeCleanupStats,
    pub indexes: NativeOptimizeStats,
    pub version: f64,
}

pub(crate) fn compaction_options(
    o: Option<NativeCompactionOptions>,
    progress: Option<quiver_engine::vocab::ProgressFn>,
) -> napi::Result<quiver_engine::table::CompactionOptions> {
    let d = quiver_engine::table::CompactionOptions::default();
    let Some(o) = o else {
        return Ok(quiver_engine::table::CompactionOptions { progress, ..d });
    };
    Ok(quiver_engine::table::CompactionOptions {
        target_rows_per_fragment: o
            .target_rows_per_fragment
            .map_or(Ok(d.target_rows_per_fragment), |n| {
                count_arg("targetRowsPerFragment", n)
            })?,
        max_bytes_per_fragment: o
            .max_bytes_per_fragment
            .map_or(Ok(d.max_bytes_per_fragment), |n| {
                count_arg("maxBytesPerFragment", n)
            })?,
        materialize_deletions: o.materialize_deletions.unwrap_or(d.materialize_deletions),
        materialize_deletions_threshold: o
            .materialize_deletions_threshold
            .unwrap_or(d.materialize_deletions_threshold),
        tiered: false,
        num_threads: o.num_threads.map(|n| n as usize),
        progress,
    })
}

pub(crate) fn cleanup_options(
    o: Option<NativeCleanupOptions>,
    progress: Option<quiver_engine::vocab::ProgressFn>,
) -> napi::Result<quiver_engine::table::CleanupOptions> {
    let (older_than_ms, delete_unverified) =
        o.map_or((None, None), |o| (o.older_than_ms, o.delete_unverified));
    let before = match older_than_ms {
        None => None,
        // Whole milliseconds (a float division would land a hair before the date), clamped
        // to the years a date can hold (JS dates end in 275760).
        Some(ms) if ms.is_finite() => Some(
            std::time::UNIX_EPOCH + Duration::from_millis(ms.clamp(0.0, 8.64e15).round() as u64),
        ),
        Some(ms) => {
            return Err(coded(
                "InvalidArgument",
                format!("cleanupOlderThan must be a valid date, got {ms}"),
            ))
        }
    };
    Ok(quiver_engine::table::CleanupOptions {
        before,
        delete_unverified: delete_unverified.unwrap_or(false),
        progress,
    })
}

pub(crate) fn progress_fn(
    progress: Option<ProgressCallback>,
) -> Option<quiver_engine::vocab::ProgressFn> {
    progress.map(|callback| {
        let callback = Arc::new(callback);
        Arc::new(move |p: quiver_engine::vocab::BuildProgress| {
            callback.call(
                NativeIndexProgress {
                    phase: p.phase.to_string(),
                    done: p.done as f64,
                    total: p.total as f64,
                },
                ThreadsafeFunctionCallMode::NonBlocking,
            );
        }) as quiver_engine::vocab::ProgressFn
    })
}
