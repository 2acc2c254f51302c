//! Full-text search over a table: each column the query reads gets its corpus (the FTS
//! index's segments, plus a segment built at query time of the rows the index does not cover
//! yet, or only that for a column without an index), rows are gated by deletions and the
//! prefilter, the query runs (`fts::query`) and the best rows are taken with a `_score`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::DataType;

use crate::error::{Error, Result};
use crate::filter::FilterRef;
use crate::fts::build::{accumulate, memory_segment};
use crate::fts::index::{decode_details, FtsIndex};
use crate::fts::query::{Corpus, Counters, FtsQuery, Hit, Searcher};
use crate::fts::segment::{FileReads, Segment};
use crate::fts::{Tokenizer, TokenizerConfig};
use crate::index::vector::RowGate;
use crate::index::IndexFamily;
use crate::plan::{PlanNode, Probe};
use crate::table::indices::{self, LoadedIndex};
use crate::table::manifest::{IndexMetadataProto, Manifest};
use crate::table::{ScanOptions, Table};

/// Name of the score column of full-text results.
pub const SCORE: &str = "_score";

/// A full-text search request.
#[derive(Debug, Clone)]
pub struct TextSearch {
    /// The query; leaves with an empty column read every column with an FTS index.
    pub query: FtsQuery,
    pub k: usize,
    pub offset: usize,
    /// Columns to return (`None`: all).
    pub columns: Option<Vec<String>>,
    pub with_row_id: bool,
    pub filter: Option<FilterRef>,
    /// Apply `filter` to the best rows instead of ranking only matching rows (fewer than `k`
    /// rows may come back).
    pub postfilter: bool,
}

/// The FTS index on each column of `manifest` that has one.
pub(crate) fn fts_indexes(manifest: &Manifest) -> HashMap<String, &IndexMetadataProto> {
    indices::indexes_by_column(manifest, IndexFamily::FullText)
}

/// Fills in the columns of leaves that name none: the one column with an FTS index, or a
/// multi-match over all of them.
fn resolve_columns(query: &mut FtsQuery, indexed: &[String]) -> Result<()> {
    let only = || -> Result<String> {
        match indexed {
            [one] => Ok(one.clone()),
            [] => Err(Error::invalid(
                "the table has no full-text index: create one with createIndex(column, { config: Index.fts() }), or name the column to search",
            )),
            many => Err(Error::invalid(format!(
                "several columns have full-text indexes ({}): name the column to search",
                many.join(", ")
            ))),
        }
    };
    match query {
        FtsQuery::Match {
            column,
            text,
            operator,
            boost,
            ..
        } if column.is_empty() => {
            if indexed.len() > 1 {
                *query = FtsQuery::MultiMatch {
                    text: std::mem::take(text),
                    columns: indexed.to_vec(),
                    boosts: vec![*boost; indexed.len()],
                    operator: *operator,
                };
            } else {
                *column = only()?;
            }
        }
        FtsQuery::Phrase { column, .. } if column.is_empty() => *column = only()?,
        FtsQuery::MultiMatch { columns, .. } if columns.is_empty() => {
            if indexed.is_empty() {
                only()?;
            }
            *columns = indexed.to_vec();
        }
        FtsQuery::Boost {
            positive, negative, ..
        } => {
            resolve_columns(positive, indexed)?;
            resolve_columns(negative, indexed)?;
        }
        FtsQuery::Boolean(clauses) => {
            for (_, q) in clauses {
                resolve_columns(q, indexed)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One column's sources, owned for the duration of a search.
struct ColumnSources {
    column: String,
    index: Option<(LoadedIndex, Arc<FtsIndex>)>,
    /// The index's tokenizer, or the defaults for a column without one.
    tokenizer: Arc<Tokenizer>,
    /// Rows the index does not cover, a segment per fragment.
    unindexed: Vec<Arc<Segment>>,
    unindexed_fragments: usize,
    /// Of those, rows this search tokenized (the rest came from the cache).
    tokenized: u64,
    with_positions: bool,
}

/// Loads `column`'s index (if any) and builds the segment of rows it does not cover.
async fn column_sources(
    table: &Table,
    manifest: &Arc<Manifest>,
    column: &str,
    meta: Option<&IndexMetadataProto>,
) -> Result<ColumnSources> {
    let field = manifest
        .schema
        .arrow
        .field_with_name(column)
        .map_err(|_| Error::invalid(format!("column '{column}' does not exist")))?;
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let is_text = match field.data_type() {
        DataType::List(i) | DataType::LargeList(i) => text(i.data_type()),
        t => text(t),
    };
    if !is_text {
        return Err(Error::invalid(format!(
            "full-text search reads string columns; '{column}' is {}",
            field.data_type()
        )));
    }
    let (index, covered, tokenizer_config, with_positions) = match meta {
        Some(meta) => {
            let loaded = indices::load_index(table.inner(), manifest, meta).await?;
            let fts = loaded
                .index
                .clone()
                .into_any_arc()
                .downcast::<FtsIndex>()
                .map_err(|_| {
                    Error::corrupt(
                        "manifest",
                        format!("index '{}' is not a full-text index", meta.name),
                    )
                })?;
            let covered = loaded.coverage.fragments.clone();
            let config = fts.params.tokenizer.clone();
            let positions = fts.params.with_position;
            (Some((loaded, fts)), covered, config, positions)
        }
        None => (None, Default::default(), TokenizerConfig::default(), true),
    };
    let rest = manifest.with_fragments(|f| !covered.contains(&f.id));
    let unindexed_fragments = rest.fragments().len();
    let tokenizer = match &index {
        Some((_, fts)) => fts.tokenizer.clone(),
        None => Arc::new(Tokenizer::new(tokenizer_config)?),
    };
    let (unindexed, tokenized) =
        unindexed_segments(table, &rest, column, &tokenizer, with_positions).await?;
    Ok(ColumnSources {
        column: column.to_string(),
        index,
        tokenizer,
        unindexed,
        unindexed_fragments,
        tokenized,
        with_positions,
    })
}

/// The rows of `rest`'s fragments as segments, one per fragment, each built once and kept in
/// the connection's index cache: a fragment's files never change, and a new deletion or data
/// file (schema changes) makes a new key. Returns them and the rows tokenized by this call.
async fn unindexed_segments(
    table: &Table,
    rest: &Arc<Manifest>,
    column: &str,
    tokenizer: &Arc<Tokenizer>,
    with_positions: bool,
) -> Result<(Vec<Arc<Segment>>, u64)> {
    let inner = table.inner();
    let cache = inner.session.indexes();
    // By field id, not name: a rename keeps the data, a dropped and re-added name does not.
    let field_id = rest.schema.resolve_path(column)?;
    let mut segments = Vec::with_capacity(rest.fragments().len());
    let mut tokenized = 0;
    for fragment in rest.fragments() {
        let mut key = format!(
            "{}#fts-rows/{field_id}/{with_positions}/{tokenizer:?}/{}",
            inner.storage.namespace(),
            fragment.id
        );
        for file in &fragment.files {
            key.push('/');
            key.push_str(&file.path);
        }
        key.push('/');
        key.push_str(fragment.deletion.as_ref().map_or("-", |d| d.path.as_str()));
        let (segment, loaded) = cache
            .get_or_load(&key, async {
                let (_, stream) = table.scan_manifest(
                    rest.with_fragments(|f| f.id == fragment.id),
                    ScanOptions {
                        columns: Some(vec![column.to_string()]),
                        with_row_id: true,
                        ..Default::default()
                    },
                )?;
                let acc = accumulate(tokenizer.clone(), with_positions, stream).await?;
                Ok(match memory_segment(acc).await? {
                    Some(segment) => {
                        let bytes = segment.heap_bytes();
                        (Some(Arc::new(segment)), bytes)
                    }
                    None => (None, 64),
                })
            })
            .await?;
        if let Some(segment) = Option::<Arc<Segment>>::clone(&segment) {
            if loaded {
                tokenized += segment.stats.docs;
            }
            segments.push(segment);
        }
    }
    Ok((segments, tokenized))
}

/// Runs a full-text search over the checked-out version: rows best first with `_score`.
pub async fn text_search(table: &Table, search: &TextSearch) -> Result<RecordBatch> {
    Ok(run(table, search, false).await?.0)
}

/// Runs a search and returns the plan it ran with what each operator measured.
pub async fn analyze_text_search(
    table: &Table,
    search: &TextSearch,
) -> Result<(RecordBatch, PlanNode)> {
    run(table, search, true).await
}

/// The plan a full-text search would run.
pub fn explain_text_search(table: &Table, search: &TextSearch) -> Result<PlanNode> {
    let manifest = table.manifest();
    let indexes = fts_indexes(&manifest);
    let query = resolved(&indexes, search)?;
    let mut columns = Vec::new();
    query.columns(&mut columns);
    let mut fts = PlanNode::new("FullTextSearch").with("query", query.describe());
    for column in &columns {
        let meta = indexes.get(column).copied();
        let covered =
            meta.map(|m| crate::table::remap::coverage(&manifest.proto, &m.fragment_ids).fragments);
        let rest = manifest
            .fragments()
            .iter()
            .filter(|f| covered.as_ref().is_none_or(|c| !c.contains(&f.id)))
            .count();
        fts = fts.child(source_node(column, meta.map(|m| m.name.as_str()), rest));
    }
    if let Some(filter) = search.filter.as_ref().filter(|_| !search.postfilter) {
        fts = fts.child(PlanNode::new("Prefilter").with("filter", filter.text()));
    }
    Ok(output_nodes(search, fts))
}

fn source_node(column: &str, index: Option<&str>, unindexed_fragments: usize) -> PlanNode {
    let mut node = PlanNode::new("Bm25Source").with("column", column);
    node = match index {
        Some(name) => node.with("index", name),
        None => node.with("index", "none (every row tokenized at query time)"),
    };
    node.with("unindexed_fragments", unindexed_fragments)
}

fn output_nodes(search: &TextSearch, input: PlanNode) -> PlanNode {
    let columns = match &search.columns {
        Some(c) => format!("[{}]", c.join(", ")),
        None => "*".to_string(),
    };
    let mut top = PlanNode::new("TopK").with("k", search.k).with("by", SCORE);
    if search.offset > 0 {
        top = top.with("offset", search.offset);
    }
    let mut top = top.child(input);
    if let Some(filter) = search.filter.as_ref().filter(|_| search.postfilter) {
        top = PlanNode::new("Postfilter")
            .with("filter", filter.text())
            .child(top);
    }
    PlanNode::new("Take")
        .with("columns", columns)
        .with("with_row_id", search.with_row_id)
        .child(top)
}

/// The query with its columns filled in.
fn resolved(
    indexes: &HashMap<String, &IndexMetadataProto>,
    search: &TextSearch,
) -> Result<FtsQuery> {
    let mut indexed: Vec<String> = indexes.keys().cloned().collect();
    indexed.sort();
    let mut query = search.query.clone();
    resolve_columns(&mut query, &indexed)?;
    query.check(0)?;
    Ok(query)
}

/// The best rows for `search` (row address and score), with the plan node that found them.
pub(crate) async fn hits(
    table: &Table,
    manifest: &Arc<Manifest>,
    search: &TextSearch,
    analyze: bool,
) -> Result<(Vec<Hit>, PlanNode)> {
    let indexes = fts_indexes(manifest);
    let query = resolved(&indexes, search)?;
    let mut columns = Vec::new();
    query.columns(&mut columns);
    let probe = Probe::start(analyze);
    let observed = table.measured(&probe);
    let mut sources = Vec::with_capacity(columns.len());
    let mut loaded = 0u64;
    for column in &columns {
        let s = column_sources(&observed, manifest, column, indexes.get(column).copied()).await?;
        loaded += s.index.as_ref().map_or(0, |(l, _)| u64::from(l.loaded));
        sources.push(s);
    }
    let mut prefilter_node = None;
    let gate = match search.filter.as_ref().filter(|_| !search.postfilter) {
        Some(filter) => {
            let matches = observed.matching_rows(manifest, filter).await?;
            let mut node = PlanNode::new("Prefilter").with("filter", filter.text());
            if analyze {
                node.metrics_mut().output_rows = matches.values().map(|b| b.len()).sum();
            }
            prefilter_node = Some(node);
            RowGate::Only(matches.into_iter().collect())
        }
        None => indices::live_gate(&observed, manifest).await?,
    };
    let cache = table.inner().session.indexes();
    let mut corpora = HashMap::new();
    for s in &sources {
        let mut segments: Vec<&Segment> = Vec::new();
        let mut key = None;
        if let Some((entry, fts)) = &s.index {
            segments.extend(fts.segments.iter());
            key = Some(entry.key.as_str());
        }
        segments.extend(s.unindexed.iter().map(|u| u.as_ref()));
        corpora.insert(
            s.column.clone(),
            Corpus::new(
                &s.tokenizer,
                segments,
                s.with_positions,
                key.map(|key| FileReads {
                    cache,
                    key,
                    storage: &observed.inner().storage,
                }),
            ),
        );
    }
    let allows = |row: u64| gate.allows(row);
    let mut searcher = Searcher {
        corpora: &corpora,
        allows: &allows,
        counters: Counters::default(),
    };
    let k = search.k.saturating_add(search.offset);
    let found = searcher.top(&query, k).await?;
    let mut node = PlanNode::new("FullTextSearch").with("query", query.describe());
    for s in &sources {
        let mut child = source_node(
            &s.column,
            s.index.as_ref().map(|(l, _)| l.name.as_str()),
            s.unindexed_fragments,
        );
        if analyze {
            child = child
                .with(
                    "unindexed_rows",
                    s.unindexed.iter().map(|u| u.stats.docs).sum::<u64>(),
                )
                .with("unindexed_rows_tokenized", s.tokenized);
        }
        node = node.child(child);
    }
    if let Some(pre) = prefilter_node {
        node = node.child(pre);
    }
    if analyze {
        let m = node.metrics_mut();
        m.output_rows = found.len() as u64;
        m.indices_loaded = loaded;
        m.parts_loaded = searcher.counters.lists_loaded;
        m.index_comparisons = searcher.counters.docs_scored;
    }
    probe.finish(&mut node);
    Ok((found, node))
}

async fn run(table: &Table, search: &TextSearch, analyze: bool) -> Result<(RecordBatch, PlanNode)> {
    let traced = crate::events::plans_traced();
    let analyze = analyze || traced;
    let manifest = table.manifest();
    let _lease = table.lease(manifest.version());
    let (found, node) = hits(table, &manifest, search, analyze).await?;
    let mut found: Vec<Hit> = found.into_iter().skip(search.offset).collect();
    let mut plan = output_nodes(search, node);
    let probe = Probe::start(analyze);
    let observed = table.measured(&probe);
    let ranked = found.len() as u64;
    if let Some(filter) = search.filter.as_ref().filter(|_| search.postfilter) {
        let ids: Vec<u64> = found.iter().map(|h| h.row).collect();
        let mut keep = observed.rows_matching(&ids, filter).await?.into_iter();
        found.retain(|_| keep.next().unwrap_or(false));
    }
    let batch = finish(&observed, &manifest, &found, search).await?;
    if analyze {
        if search.postfilter && search.filter.is_some() {
            plan.children[0].metrics_mut().output_rows = found.len() as u64;
            plan.children[0].children[0].metrics_mut().output_rows = ranked;
        } else {
            plan.children[0].metrics_mut().output_rows = ranked;
        }
        plan.metrics_mut().output_rows = batch.num_rows() as u64;
    }
    probe.finish(&mut plan);
    if traced {
        crate::events::plan_run("text_search", &plan);
    }
    Ok((batch, plan))
}

/// Reads the returned columns of `found` with `_score` (and `_rowid` when asked).
async fn finish(
    table: &Table,
    manifest: &Manifest,
    found: &[Hit],
    search: &TextSearch,
) -> Result<RecordBatch> {
    let output = super::RankedOutput {
        columns: search.columns.as_deref(),
        with_row_id: search.with_row_id,
        rank: SCORE,
    };
    super::take_ranked(
        table,
        manifest,
        found.iter().map(|h| h.row).collect(),
        &output,
        found.iter().map(|h| h.score),
        None,
    )
    .await
}

/// The tokenizer configuration of the FTS index on `column`, if it has one.
pub fn column_tokenizer(table: &Table, column: &str) -> Result<TokenizerConfig> {
    let manifest = table.manifest();
    let indexes = fts_indexes(&manifest);
    match indexes.get(column) {
        Some(meta) => Ok(decode_details(&meta.details)?.params()?.tokenizer),
        None => {
            manifest
                .schema
                .arrow
                .field_with_name(column)
                .map_err(|_| Error::invalid(format!("column '{column}' does not exist")))?;
            Err(Error::invalid(format!(
                "column '{column}' has no full-text index; create one with createIndex('{column}', {{ config: Index.fts() }})"
            )))
        }
    }
}
