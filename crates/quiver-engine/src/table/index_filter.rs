//! Filters served by scalar indexes: plans a filter against the scalar indexes of a version
//! (`filter::index_plan`), runs the index queries, and hands the scan the rows they yield per
//! fragment. Every filtered read goes through here: scans with `where`, filtered counts,
//! deletes and updates, and the prefilter of vector search.
//!
//! The answer holds only for fragments every index used covers; other fragments (rows added
//! since a build) are scanned as before. Deleted rows are removed by the scan, which also
//! rechecks the candidates of an inexact answer with the whole filter.

use std::collections::{HashMap, HashSet};

use futures::future::BoxFuture;
use roaring::{RoaringBitmap, RoaringTreemap};

use super::indices::{load_index, scalar_indexes, LoadedIndex};
use super::manifest::Manifest;
use super::TableInner;
use crate::error::{Error, Result};
use crate::filter::index_plan::{IndexExpr, IndexPlan};
use crate::filter::Filter;
use crate::plan::PlanNode;

/// One index query of a plan, as run.
#[derive(Debug, Clone)]
pub(crate) struct IndexUse {
    pub index: String,
    pub index_type: &'static str,
    pub column: String,
    pub query: String,
    pub parts_loaded: u64,
    pub rows: u64,
}

/// Rows the indexes yield for a filter.
#[derive(Debug)]
pub(crate) struct IndexedRows {
    /// Fragments the answer holds for.
    pub covered: HashSet<u64>,
    /// Rows per covered fragment (a fragment absent here has none).
    pub rows: HashMap<u64, RoaringBitmap>,
    /// Whether they are exactly the matches (else candidates to recheck).
    pub exact: bool,
    pub uses: Vec<IndexUse>,
    /// Indexes read from storage for this answer.
    pub indices_loaded: u64,
}

impl IndexedRows {
    /// The rows of a covered fragment (`None`: not covered).
    pub(crate) fn fragment(&self, id: u64) -> Option<RoaringBitmap> {
        if !self.covered.contains(&id) {
            return None;
        }
        Some(self.rows.get(&id).cloned().unwrap_or_default())
    }

    /// Rows the indexes yielded in covered fragments (deleted ones included).
    pub(crate) fn candidates(&self) -> u64 {
        self.rows.values().map(RoaringBitmap::len).sum()
    }

    /// Index parts read from storage for this answer.
    pub(crate) fn parts_loaded(&self) -> u64 {
        self.uses.iter().map(|u| u.parts_loaded).sum()
    }

    /// A plan node describing the index part of a filter.
    pub(crate) fn node(&self, fragments: usize) -> PlanNode {
        let parts = self.parts_loaded();
        let mut node = PlanNode::new("ScalarIndexQuery")
            .with("exact", self.exact)
            .with("parts_loaded", parts)
            .with("indices_loaded", self.indices_loaded)
            .with(
                "rows_rechecked",
                if self.exact { 0 } else { self.candidates() },
            )
            .with(
                "covered_fragments",
                format!("{}/{fragments}", self.covered.len()),
            )
            .with(
                "then",
                if self.exact {
                    "rows taken as matches (deleted rows removed)"
                } else {
                    "candidates rechecked with the whole filter"
                },
            );
        for u in &self.uses {
            node = node.child(
                PlanNode::new("IndexLookup")
                    .with("index", &u.index)
                    .with("type", u.index_type)
                    .with("column", &u.column)
                    .with("query", &u.query)
                    .with("parts_loaded", u.parts_loaded)
                    .with("rows", u.rows),
            );
        }
        node
    }
}

/// The plan indexes give `filter` on `manifest`, with the loaded indexes it uses (`None`: no
/// scalar index helps).
async fn planned(
    inner: &TableInner,
    manifest: &Manifest,
    filter: &Filter,
) -> Result<Option<(IndexPlan, HashMap<String, LoadedIndex>)>> {
    let indexes = scalar_indexes(manifest);
    if indexes.is_empty() {
        return Ok(None);
    }
    let mut loaded: HashMap<String, LoadedIndex> = HashMap::new();
    for column in filter.columns() {
        let Some(meta) = indexes.get(column.as_str()) else {
            continue;
        };
        match load_index(inner, manifest, meta).await {
            Ok(index) => {
                loaded.insert(column.clone(), index);
            }
            // A damaged index must not make the table unreadable: the scan answers instead.
            Err(e) => {
                tracing::warn!(index = %meta.name, error = %e, "scalar index unusable; scanning")
            }
        }
    }
    if loaded.is_empty() {
        return Ok(None);
    }
    let estimate = |column: &str, query: &crate::index::ScalarQuery| {
        loaded.get(column)?.index.as_scalar()?.estimate(query)
    };
    let covered_rows = manifest.live_rows();
    Ok(filter
        .index_plan(&estimate, covered_rows, inner.session.index_max_share())
        .map(|plan| (plan, loaded)))
}

/// Whether `e` is damage to an index (its file damaged, missing or of a newer format): the
/// scan answers instead, and `optimize` or a rebuild repairs the index.
fn is_index_damage(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupt { .. } | Error::MissingFile(_) | Error::IncompatibleVersion { .. }
    ) || matches!(e, Error::Storage(object_store::Error::NotFound { .. }))
}

/// The rows indexes yield for `filter` on `manifest`, or `None` when no index helps (or an
/// index it would use is damaged: a damaged index costs speed, never answers).
pub(crate) async fn index_rows(
    inner: &TableInner,
    manifest: &Manifest,
    filter: &Filter,
) -> Result<Option<IndexedRows>> {
    match answer(inner, manifest, filter).await {
        Err(e) if is_index_damage(&e) => {
            tracing::warn!(error = %e, "scalar index unusable; scanning instead");
            Ok(None)
        }
        other => other,
    }
}

async fn answer(
    inner: &TableInner,
    manifest: &Manifest,
    filter: &Filter,
) -> Result<Option<IndexedRows>> {
    let Some((plan, loaded)) = planned(inner, manifest, filter).await? else {
        return Ok(None);
    };
    let mut covered: Option<HashSet<u64>> = None;
    for (column, _) in plan.expr.leaves() {
        if let Some(index) = loaded.get(column) {
            let fragments = &index.coverage.fragments;
            covered = Some(match covered {
                None => fragments.clone(),
                Some(c) => c.intersection(fragments).copied().collect(),
            });
        }
    }
    let covered = covered.unwrap_or_default();
    let mut uses = Vec::new();
    let rows = evaluate(inner, manifest, &plan.expr, &loaded, &mut uses).await?;
    let mut per_fragment = HashMap::new();
    for (fragment, bitmap) in rows.bitmaps() {
        if covered.contains(&u64::from(fragment)) {
            per_fragment.insert(u64::from(fragment), bitmap.clone());
        }
    }
    let indices_loaded = loaded.values().filter(|l| l.loaded).count() as u64;
    let found = IndexedRows {
        covered,
        rows: per_fragment,
        exact: plan.exact,
        uses,
        indices_loaded,
    };
    // An observed operation (an analyzed or traced plan) counts what its filter loaded.
    inner
        .storage
        .record_index_loads(found.indices_loaded, found.parts_loaded());
    Ok(Some(found))
}

/// The rows whose `column` holds one of `values`, through a scalar index on it (`None`: no
/// usable index, or the values are too many for it to be worth it). Merge-insert finds the
/// target rows of its source keys this way instead of scanning the key column.
pub(crate) async fn rows_with_values(
    inner: &TableInner,
    manifest: &Manifest,
    column: &str,
    values: Vec<crate::index::Key>,
) -> Result<Option<IndexedRows>> {
    let Some(meta) = scalar_indexes(manifest).get(column).copied() else {
        return Ok(None);
    };
    let index = match load_index(inner, manifest, meta).await {
        Ok(index) => index,
        Err(e) if is_index_damage(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let query = crate::index::ScalarQuery::In(values);
    let limit = manifest.live_rows() as f64 * inner.session.index_max_share();
    let worth = index
        .index
        .as_scalar()
        .and_then(|s| s.estimate(&query))
        .is_some_and(|rows| rows as f64 <= limit);
    if !worth {
        return Ok(None);
    }
    let expr = IndexExpr::Leaf {
        column: column.to_string(),
        query,
    };
    let covered = index.coverage.fragments.clone();
    let loaded = HashMap::from([(column.to_string(), index)]);
    let mut uses = Vec::new();
    let rows = match evaluate(inner, manifest, &expr, &loaded, &mut uses).await {
        Ok(rows) => rows,
        Err(e) if is_index_damage(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut per_fragment = HashMap::new();
    for (fragment, bitmap) in rows.bitmaps() {
        if covered.contains(&u64::from(fragment)) {
            per_fragment.insert(u64::from(fragment), bitmap.clone());
        }
    }
    Ok(Some(IndexedRows {
        covered,
        rows: per_fragment,
        exact: true,
        uses,
        indices_loaded: loaded.values().filter(|l| l.loaded).count() as u64,
    }))
}

/// Runs the index queries of `expr` and combines their rows.
fn evaluate<'a>(
    inner: &'a TableInner,
    manifest: &'a Manifest,
    expr: &'a IndexExpr,
    loaded: &'a HashMap<String, LoadedIndex>,
    uses: &'a mut Vec<IndexUse>,
) -> BoxFuture<'a, Result<RoaringTreemap>> {
    Box::pin(async move {
        match expr {
            IndexExpr::Leaf { column, query } => {
                let Some(index) = loaded.get(column) else {
                    return Err(Error::Internal(format!(
                        "the plan uses an index on '{column}' that was not loaded"
                    )));
                };
                let scalar = index.index.as_scalar().ok_or_else(|| {
                    Error::Internal(format!("the index on '{column}' is not scalar"))
                })?;
                let translate = index.translation(inner, manifest);
                let parts = index.parts(inner, &translate);
                let found = scalar.search(query, &parts).await?;
                uses.push(IndexUse {
                    index: index.name.clone(),
                    index_type: index.index.index_type(),
                    column: column.clone(),
                    query: query.describe(),
                    parts_loaded: found.parts_loaded,
                    rows: found.rows.len(),
                });
                Ok(found.rows)
            }
            IndexExpr::And(children) => {
                let mut acc: Option<RoaringTreemap> = None;
                for c in children {
                    let rows = evaluate(inner, manifest, c, loaded, uses).await?;
                    acc = Some(match acc {
                        None => rows,
                        Some(a) => a & rows,
                    });
                    if acc.as_ref().is_some_and(RoaringTreemap::is_empty) {
                        break;
                    }
                }
                Ok(acc.unwrap_or_default())
            }
            IndexExpr::Or(children) => {
                let mut acc = RoaringTreemap::new();
                for c in children {
                    acc |= evaluate(inner, manifest, c, loaded, uses).await?;
                }
                Ok(acc)
            }
        }
    })
}
