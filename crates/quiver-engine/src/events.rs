//! Trace events of the performance guide, emitted through `tracing` at INFO under three
//! targets. Whoever embeds the engine decides where they go (the Node binding: `QUIVER_LOG`
//! and JS subscriptions); with no subscriber interested, each costs one disabled check.
//!
//! - `quiver::file_audit`: `mode` (create, delete, delete_unverified), `type` (manifest, data
//!   file, index file, deletion file), `path`.
//! - `quiver::io_events`: `type` (open_scalar_index, open_vector_index, load_vector_part,
//!   load_scalar_part), `path`, `part` for part loads; only on index cache misses.
//! - `quiver::execution`: `type` = plan_run, `plan` (vector_search, text_search, scan),
//!   `output_rows`, `iops`, `bytes_read`, `indices_loaded`, `parts_loaded`,
//!   `index_comparisons` (the figures `analyzePlan()` shows, summed over the plan).

use object_store::path::Path;
use tracing::Level;

use crate::plan::PlanNode;

pub const FILE_AUDIT: &str = "quiver::file_audit";
pub const IO_EVENTS: &str = "quiver::io_events";
pub const EXECUTION: &str = "quiver::execution";

/// The kind of table file at `path`, judged by the folder it lies in; `None` for files the
/// audit does not cover (tags, compaction maps, probes).
fn file_type(path: &Path) -> Option<&'static str> {
    let mut parts = path
        .parts()
        .map(|p| p.as_ref().to_string())
        .collect::<Vec<_>>();
    let name = parts.pop()?;
    match parts.last()?.as_str() {
        "_versions" if name.ends_with(".manifest") => Some("manifest"),
        "data" => Some("data file"),
        "_deletions" => Some("deletion file"),
        _ if parts.iter().rev().nth(1).is_some_and(|p| p == "_indices") => Some("index file"),
        _ => None,
    }
}

/// A table file was written (`mode` create) or removed (`delete`, or `delete_unverified` for
/// a file no version was found to reference).
pub(crate) fn file_audit(mode: &'static str, path: &Path) {
    if !tracing::enabled!(target: FILE_AUDIT, Level::INFO) {
        return;
    }
    if let Some(kind) = file_type(path) {
        tracing::info!(target: FILE_AUDIT, mode, "type" = kind, path = %path);
    }
}

/// An index was read from storage (a cache miss).
pub(crate) fn index_opened(vector: bool, path: &Path) {
    let kind = if vector {
        "open_vector_index"
    } else {
        "open_scalar_index"
    };
    tracing::info!(target: IO_EVENTS, path = %path, "type" = kind);
}

/// Part `part` of an index was read from storage (a cache miss).
pub(crate) fn part_loaded(vector: bool, path: &Path, part: usize) {
    let kind = if vector {
        "load_vector_part"
    } else {
        "load_scalar_part"
    };
    tracing::info!(target: IO_EVENTS, path = %path, part, "type" = kind);
}

/// Whether anyone listens for plan runs: queries then measure what they do even when not
/// analyzed, and report it through [`plan_run`].
pub(crate) fn plans_traced() -> bool {
    tracing::enabled!(target: EXECUTION, Level::INFO)
}

/// A plan ran to its end; `plan` must have been measured.
pub(crate) fn plan_run(kind: &'static str, plan: &PlanNode) {
    let total = plan.total();
    tracing::info!(
        target: EXECUTION,
        plan = kind,
        "type" = "plan_run",
        output_rows = total.output_rows,
        iops = total.iops,
        bytes_read = total.bytes_read,
        indices_loaded = total.indices_loaded,
        parts_loaded = total.parts_loaded,
        index_comparisons = total.index_comparisons,
    );
}

/// The figures of a scan, reported as a plan run when the scan's stream goes away (read to
/// its end or dropped early).
pub(crate) struct ScanTrace {
    probe: Option<crate::plan::Probe>,
    rows: u64,
}

impl ScanTrace {
    pub(crate) fn new(probe: crate::plan::Probe) -> Self {
        ScanTrace {
            probe: Some(probe),
            rows: 0,
        }
    }

    pub(crate) fn rows(&mut self, n: usize) {
        self.rows += n as u64;
    }
}

impl Drop for ScanTrace {
    fn drop(&mut self) {
        let mut node = PlanNode::new("Scan");
        node.metrics_mut().output_rows = self.rows;
        if let Some(probe) = self.probe.take() {
            probe.finish(&mut node);
        }
        plan_run("scan", &node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_typed_by_their_folder() {
        let t = |p: &str| file_type(&Path::from(p));
        assert_eq!(t("db/t.quiver/_versions/0001.manifest"), Some("manifest"));
        assert_eq!(t("db/t.quiver/data/abc.qvd"), Some("data file"));
        assert_eq!(t("db/t.quiver/_deletions/1-2-x.del"), Some("deletion file"));
        assert_eq!(t("db/t.quiver/_indices/uuid/index.qvi"), Some("index file"));
        assert_eq!(t("db/t.quiver/_tags/v1.json"), None);
        assert_eq!(t("db/_quiver_probe/x"), None);
    }
}
