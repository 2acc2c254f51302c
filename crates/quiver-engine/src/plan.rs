//! Query plans as the engine runs them: a tree of operators with their settings and, for an
//! analyzed run, what each operator measured. One type serves `explain_plan`, `analyze_plan`
//! and (later) trace events, so the figures a user reads are the ones the engine counted.
//!
//! Figures are per query: each measured operator reads through its own view of the table whose
//! storage counts into the operator's counters ([`Probe`]), so concurrent queries on one
//! connection never mix. The root is the last operator; its children are its inputs.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::storage::IoStats;

/// What one operator did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Rows (or candidates) it passed on.
    pub output_rows: u64,
    /// Read requests it issued (after coalescing); cache hits issue none.
    pub iops: u64,
    /// Bytes those requests returned.
    pub bytes_read: u64,
    /// Indexes read from storage (not found in the index cache).
    pub indices_loaded: u64,
    /// Index parts (IVF partitions) read from storage.
    pub parts_loaded: u64,
    /// Distances computed inside an index: query to centroids, and to each code of the probed
    /// partitions.
    pub index_comparisons: u64,
    /// Exact distances computed (exact search, refinement).
    pub rows_ranked: u64,

    /// Time spent in the operator itself (inputs measured apart).
    pub elapsed: Duration,
}

impl Metrics {
    fn add(&mut self, other: &Metrics) {
        self.output_rows += other.output_rows;
        self.iops += other.iops;
        self.bytes_read += other.bytes_read;
        self.indices_loaded += other.indices_loaded;
        self.parts_loaded += other.parts_loaded;
        self.index_comparisons += other.index_comparisons;
        self.rows_ranked += other.rows_ranked;
        self.elapsed += other.elapsed;
    }

    fn render(&self, out: &mut String) {
        let _ = write!(
            out,
            "output_rows={} iops={} bytes_read={} indices_loaded={} parts_loaded={} index_comparisons={}",
            self.output_rows,
            self.iops,
            self.bytes_read,
            self.indices_loaded,
            self.parts_loaded,
            self.index_comparisons
        );
        if self.rows_ranked > 0 {
            let _ = write!(out, " rows_ranked={}", self.rows_ranked);
        }

        let _ = write!(out, " elapsed={:.3}ms", self.elapsed.as_secs_f64() * 1e3);
    }
}

/// One setting of an operator; verbose ones are shown only by verbose plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub key: String,
    pub value: String,
    pub verbose: bool,
}

/// One operator of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanNode {
    pub operator: String,
    pub details: Vec<Detail>,
    /// Its inputs.
    pub children: Vec<PlanNode>,
    /// Set when the plan was run and measured.
    pub metrics: Option<Metrics>,
}

impl PlanNode {
    pub fn new(operator: impl Into<String>) -> Self {
        PlanNode {
            operator: operator.into(),
            details: Vec::new(),
            children: Vec::new(),
            metrics: None,
        }
    }

    /// Adds a setting.
    pub fn with(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.details.push(Detail {
            key: key.to_string(),
            value: value.to_string(),
            verbose: false,
        });
        self
    }

    /// Adds a setting shown only in verbose plans.
    pub fn with_verbose(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.details.push(Detail {
            key: key.to_string(),
            value: value.to_string(),
            verbose: true,
        });
        self
    }

    /// Adds an input.
    pub fn child(mut self, child: PlanNode) -> Self {
        self.children.push(child);
        self
    }

    /// The metrics, created empty on first use.
    pub fn metrics_mut(&mut self) -> &mut Metrics {
        self.metrics.get_or_insert_with(Metrics::default)
    }

    /// The first node (depth first) running `operator`.
    pub fn find(&self, operator: &str) -> Option<&PlanNode> {
        if self.operator == operator {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(operator))
    }

    /// A setting's value.
    pub fn detail(&self, key: &str) -> Option<&str> {
        self.details
            .iter()
            .find(|d| d.key == key)
            .map(|d| d.value.as_str())
    }

    /// Figures summed over the whole tree, except `output_rows`, which is the root's.
    pub fn total(&self) -> Metrics {
        let mut total = Metrics::default();
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            if let Some(m) = &node.metrics {
                total.add(m);
            }
            stack.extend(node.children.iter());
        }
        total.output_rows = self.metrics.as_ref().map_or(0, |m| m.output_rows);
        total
    }

    /// The plan as an indented tree, one operator a line (`Operator: key=value …`), with each
    /// operator's figures after it when measured, and a `Total:` line for measured plans
    /// (`elapsed` there is the query's wall-clock time when given).
    pub fn render(&self, verbose: bool, wall: Option<Duration>) -> String {
        let mut out = String::new();
        let mut stack = vec![(self, 0usize)];
        while let Some((node, depth)) = stack.pop() {
            for _ in 0..depth {
                out.push_str("  ");
            }
            out.push_str(&node.operator);
            let mut first = true;
            for d in node.details.iter().filter(|d| verbose || !d.verbose) {
                out.push_str(if first { ": " } else { " " });
                first = false;
                let _ = write!(out, "{}={}", d.key, d.value);
            }
            if let Some(m) = &node.metrics {
                out.push_str(" [");
                m.render(&mut out);
                out.push(']');
            }
            out.push('\n');
            stack.extend(node.children.iter().rev().map(|c| (c, depth + 1)));
        }
        if self.metrics.is_some() {
            let mut total = self.total();
            if let Some(wall) = wall {
                total.elapsed = wall;
            }
            out.push_str("Total: ");
            total.render(&mut out);
            out.push('\n');
        }
        out
    }
}

/// Measures one operator while it runs: its own I/O counters (handed to the table view it
/// reads through) and its elapsed time. Inert when the plan is not being analyzed.
pub struct Probe {
    io: Option<Arc<IoStats>>,
    started: Instant,
}

impl Probe {
    pub fn start(analyze: bool) -> Self {
        Probe {
            io: analyze.then(|| Arc::new(IoStats::default())),
            started: Instant::now(),
        }
    }

    /// The counters reads should also go to, when measuring.
    pub fn io(&self) -> Option<Arc<IoStats>> {
        self.io.clone()
    }

    /// Adds what was measured to `node` (nothing when not analyzing).
    pub fn finish(self, node: &mut PlanNode) {
        let Some(io) = self.io else {
            return;
        };
        let read = io.snapshot();
        let (indices, parts) = io.index_loads();
        let m = node.metrics_mut();
        m.iops += read.read_ops;
        m.bytes_read += read.read_bytes;
        m.indices_loaded += indices;
        m.parts_loaded += parts;
        m.elapsed += self.started.elapsed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_an_indented_tree_with_figures_and_a_total() {
        let mut leaf = PlanNode::new("Scan")
            .with("columns", "[a]")
            .with_verbose("pages", 3);
        leaf.metrics_mut().iops = 2;
        leaf.metrics_mut().output_rows = 7;
        let mut root = PlanNode::new("Limit").with("limit", 5).child(leaf);
        root.metrics_mut().output_rows = 5;
        let text = root.render(false, None);
        assert!(
            text.starts_with("Limit: limit=5 [output_rows=5 iops=0"),
            "{text}"
        );
        assert!(
            text.contains("\n  Scan: columns=[a] [output_rows=7 iops=2"),
            "{text}"
        );
        assert!(!text.contains("pages"), "{text}");
        assert!(root.render(true, None).contains("pages=3"));
        assert!(text.contains("Total: output_rows=5 iops=2 "), "{text}");
        let explain = PlanNode::new("Scan").render(false, None);
        assert_eq!(explain, "Scan\n");
    }
}
