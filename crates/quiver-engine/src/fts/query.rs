//! Full-text queries and their BM25 evaluation over the segments of each column.
//!
//! A plain match (OR of terms) runs block-max WAND and an AND of terms a block-max
//! intersection: both skip only documents whose score bound cannot reach the k-th best, so
//! the top k are exact. Phrases, fuzzy conjunctions and compound queries (boost, multi-match,
//! boolean) score every matching document. Scores use statistics of the whole column: every
//! segment, the rows not yet indexed included.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::codec::{Postings, BLOCK};
use super::segment::{avg_len, idf, tf_score, FileReads, Segment, TermMeta};
use super::tokenizer::{TokenBuffers, Tokenizer};
use crate::error::{Error, Result};

/// How a match combines its terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Operator {
    /// Any term (scores add up).
    #[default]
    Or,
    /// Every term.
    And,
}

/// Edits a term may be away from a query token and still match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fuzziness {
    /// 0 for tokens of up to 2 characters, 1 for 3 to 5, 2 above.
    Auto,
    Edits(u8),
}

impl Fuzziness {
    fn edits(self, token: &str) -> u8 {
        match self {
            Fuzziness::Edits(n) => n,
            Fuzziness::Auto => match token.chars().count() {
                0..=2 => 0,
                3..=5 => 1,
                _ => 2,
            },
        }
    }
}

/// Most edits a fuzzy match allows (the automaton grows fast beyond).
pub const MAX_FUZZINESS: u8 = 2;
/// Most clauses a boolean query, and most levels of nesting a query, may have.
pub const MAX_CLAUSES: usize = 1024;
pub const MAX_DEPTH: usize = 32;

/// Whether a boolean clause must, should or must not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occur {
    Must,
    Should,
    MustNot,
}

/// A full-text query. Columns are resolved (the table layer fills them in).
#[derive(Debug, Clone, PartialEq)]
pub enum FtsQuery {
    Match {
        column: String,
        text: String,
        boost: f32,
        fuzziness: Fuzziness,
        max_expansions: usize,
        operator: Operator,
        prefix_length: usize,
    },
    Phrase {
        column: String,
        text: String,
        slop: u32,
    },
    /// Documents matching `positive`, scored by it, times `negative_boost` where `negative`
    /// matches too.
    Boost {
        positive: Box<FtsQuery>,
        negative: Box<FtsQuery>,
        negative_boost: f32,
    },
    MultiMatch {
        text: String,
        columns: Vec<String>,
        boosts: Vec<f32>,
        operator: Operator,
    },
    Boolean(Vec<(Occur, FtsQuery)>),
}

impl FtsQuery {
    /// A plain match of `text` in `column`: any term, no fuzziness.
    pub fn plain(column: impl Into<String>, text: impl Into<String>) -> Self {
        FtsQuery::Match {
            column: column.into(),
            text: text.into(),
            boost: 1.0,
            fuzziness: Fuzziness::Edits(0),
            max_expansions: 50,
            operator: Operator::Or,
            prefix_length: 0,
        }
    }

    /// Columns the query reads.
    pub fn columns(&self, out: &mut Vec<String>) {
        match self {
            FtsQuery::Match { column, .. } | FtsQuery::Phrase { column, .. } => {
                out.push(column.clone())
            }
            FtsQuery::Boost {
                positive, negative, ..
            } => {
                positive.columns(out);
                negative.columns(out);
            }
            FtsQuery::MultiMatch { columns, .. } => out.extend(columns.iter().cloned()),
            FtsQuery::Boolean(clauses) => clauses.iter().for_each(|(_, q)| q.columns(out)),
        }
        out.sort();
        out.dedup();
    }

    /// Checks limits a query built by a program might break.
    pub fn check(&self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::invalid(format!(
                "a full-text query nests at most {MAX_DEPTH} levels deep"
            )));
        }
        match self {
            FtsQuery::Match {
                boost, fuzziness, ..
            } => {
                if !boost.is_finite() {
                    return Err(Error::invalid(
                        "a match query's boost must be a finite number",
                    ));
                }
                if let Fuzziness::Edits(n) = fuzziness {
                    if *n > MAX_FUZZINESS {
                        return Err(Error::invalid(format!(
                            "fuzziness is at most {MAX_FUZZINESS} edits (or \"auto\"); got {n}"
                        )));
                    }
                }
                Ok(())
            }
            FtsQuery::Phrase { .. } => Ok(()),
            FtsQuery::Boost {
                positive,
                negative,
                negative_boost,
            } => {
                if !negative_boost.is_finite() {
                    return Err(Error::invalid("negativeBoost must be a finite number"));
                }
                positive.check(depth + 1)?;
                negative.check(depth + 1)
            }
            FtsQuery::MultiMatch {
                columns, boosts, ..
            } => {
                if columns.is_empty() {
                    return Err(Error::invalid(
                        "a multi-match query needs at least one column",
                    ));
                }
                if !boosts.is_empty() && boosts.len() != columns.len() {
                    return Err(Error::invalid(format!(
                        "a multi-match query has {} columns but {} boosts; give one boost per column",
                        columns.len(),
                        boosts.len()
                    )));
                }
                if boosts.iter().any(|b| !b.is_finite()) {
                    return Err(Error::invalid("boosts must be finite numbers"));
                }
                Ok(())
            }
            FtsQuery::Boolean(clauses) => {
                if clauses.len() > MAX_CLAUSES {
                    return Err(Error::invalid(format!(
                        "a boolean query has at most {MAX_CLAUSES} clauses"
                    )));
                }
                clauses.iter().try_for_each(|(_, q)| q.check(depth + 1))
            }
        }
    }

    /// A one-line description (plans).
    pub fn describe(&self) -> String {
        match self {
            FtsQuery::Match {
                column,
                text,
                operator,
                ..
            } => format!("match({column}: {text:?}, {operator:?})"),
            FtsQuery::Phrase { column, text, slop } => {
                format!("phrase({column}: {text:?}, slop {slop})")
            }
            FtsQuery::Boost {
                positive, negative, ..
            } => format!("boost({}, {})", positive.describe(), negative.describe()),
            FtsQuery::MultiMatch { text, columns, .. } => {
                format!("multi_match({}: {text:?})", columns.join(", "))
            }
            FtsQuery::Boolean(c) => format!("boolean({} clauses)", c.len()),
        }
    }
}

/// One column's searchable text: its segments (the index's and one of rows not yet
/// indexed), the tokenizer they were made with, and their statistics.
pub struct Corpus<'a> {
    pub tokenizer: &'a Tokenizer,
    pub segments: Vec<&'a Segment>,
    pub with_positions: bool,
    /// How file segments are read (their lists cached); `None` for memory segments only.
    pub reads: Option<FileReads<'a>>,
    pub docs: u64,
    pub avg_len: f32,
}

impl<'a> Corpus<'a> {
    pub fn new(
        tokenizer: &'a Tokenizer,
        segments: Vec<&'a Segment>,
        with_positions: bool,
        reads: Option<FileReads<'a>>,
    ) -> Self {
        let docs = segments.iter().map(|s| s.stats.docs).sum();
        let tokens = segments.iter().map(|s| s.stats.tokens).sum();
        Corpus {
            tokenizer,
            segments,
            with_positions,
            reads,
            docs,
            avg_len: avg_len(tokens, docs),
        }
    }

    /// The tokens of `text` with their positions, as the column's index makes them.
    fn tokens(&self, text: &str) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        self.tokenizer
            .tokenize(text, &mut TokenBuffers::default(), &mut |t, p| {
                out.push((t.to_string(), p))
            });
        out
    }

    /// Documents holding `term` over all segments.
    fn df(&self, term: &str) -> u64 {
        self.segments
            .iter()
            .filter_map(|s| s.lookup(term).map(|o| u64::from(s.meta(o).df)))
            .sum()
    }

    /// Each term's weight: `boost` × its idf over the whole corpus.
    fn weights(&self, terms: &[String], boost: f32) -> Vec<f32> {
        terms
            .iter()
            .map(|t| boost * idf(self.df(t), self.docs))
            .collect()
    }

    /// Each term's weight when the query names term `i` `times[i]` times.
    fn weights_times(&self, terms: &[String], times: &[f32], boost: f32) -> Vec<f32> {
        let mut weights = self.weights(terms, boost);
        for (w, n) in weights.iter_mut().zip(times) {
            *w *= n;
        }
        weights
    }

    /// Terms of the dictionaries within `edits` of `token` sharing its first `prefix`
    /// characters, closest (then most frequent) first, at most `max`.
    fn expand(&self, token: &str, edits: u8, prefix: usize, max: usize) -> Result<Vec<String>> {
        if edits == 0 {
            return Ok(vec![token.to_string()]);
        }
        use fst::automaton::{Levenshtein, Str};
        use fst::{Automaton, IntoStreamer, Streamer};
        let lev = Levenshtein::new(token, u32::from(edits)).map_err(|e| {
            Error::invalid(format!(
                "fuzzy matching of '{token}' is too expensive ({e}); lower its fuzziness"
            ))
        })?;
        let head: String = token.chars().take(prefix).collect();
        let starts = Str::new(&head).starts_with();
        let mut found: HashMap<String, u64> = HashMap::new();
        for s in &self.segments {
            let mut stream = s
                .terms
                .search(starts.clone().intersection(&lev))
                .into_stream();
            while let Some((term, ord)) = stream.next() {
                if let Ok(term) = std::str::from_utf8(term) {
                    *found.entry(term.to_string()).or_default() +=
                        u64::from(s.meta(ord as usize).df);
                }
            }
        }
        let mut ranked: Vec<(usize, u64, String)> = found
            .into_iter()
            .map(|(t, df)| (edit_distance(token, &t), df, t))
            .collect();
        ranked.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
        ranked.truncate(max.max(1));
        Ok(ranked.into_iter().map(|(_, _, t)| t).collect())
    }
}

/// Levenshtein distance by characters (expansions are few and short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// What a query evaluation did (plans).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    /// Posting lists (and position lists) read from storage (cache hits not counted).
    pub lists_loaded: u64,
    /// Documents scored.
    pub docs_scored: u64,
}

/// A scored row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub row: u64,
    pub score: f32,
}

impl Eq for Hit {}

impl Ord for Hit {
    /// Better first: higher score, then lower row address.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.row.cmp(&other.row))
    }
}

impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The `k` best hits offered.
pub struct TopHits {
    k: usize,
    /// The worst kept on top.
    heap: BinaryHeap<Hit>,
}

impl TopHits {
    pub fn new(k: usize) -> Self {
        TopHits {
            k,
            heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1),
        }
    }

    /// The score a document must reach to be kept (0 while fewer than `k` are held).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            0.0
        } else {
            self.heap.peek().map_or(0.0, |h| h.score)
        }
    }

    #[inline]
    pub fn offer(&mut self, hit: Hit) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(hit);
        } else if let Some(worst) = self.heap.peek() {
            if hit < *worst {
                self.heap.pop();
                self.heap.push(hit);
            }
        }
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<Hit> {
        self.heap.into_sorted_vec()
    }
}

/// A term of a query in one segment: its list and weight (boost × idf).
struct TermInSegment {
    ord: usize,
    weight: f32,
    postings: std::sync::Arc<Postings>,
}

/// A cursor over a posting list, decoding block by block.
struct Cursor<'a> {
    list: &'a Postings,
    weight: f32,
    /// Bound of weighted score over the whole list.
    max: f32,
    block: usize,
    decoded: usize,
    docs: [u32; BLOCK],
    freqs: [u32; BLOCK],
    i: usize,
    /// Current document (`u32::MAX`: exhausted).
    doc: u32,
    built_avg: f32,
    avg: f32,
}

const DONE: u32 = u32::MAX;

impl<'a> Cursor<'a> {
    fn new(list: &'a Postings, weight: f32, max: f32, built_avg: f32, avg: f32) -> Result<Self> {
        let mut c = Cursor {
            list,
            weight,
            max,
            block: 0,
            decoded: usize::MAX,
            docs: [0; BLOCK],
            freqs: [0; BLOCK],
            i: 0,
            doc: DONE,
            built_avg,
            avg,
        };
        if !list.headers.is_empty() {
            c.load(0)?;
            c.doc = c.docs[0];
        }
        Ok(c)
    }

    fn load(&mut self, block: usize) -> Result<()> {
        if self.decoded != block {
            self.list
                .decode_block(block, &mut self.docs, &mut self.freqs)?;
            self.decoded = block;
        }
        self.block = block;
        self.i = 0;
        Ok(())
    }

    #[inline]
    fn freq(&self) -> u32 {
        self.freqs[self.i]
    }

    /// Moves to the next posting.
    fn next(&mut self) -> Result<()> {
        self.i += 1;
        if self.i < self.list.block_len(self.block) {
            self.doc = self.docs[self.i];
            return Ok(());
        }
        if self.block + 1 >= self.list.headers.len() {
            self.doc = DONE;
            return Ok(());
        }
        self.load(self.block + 1)?;
        self.doc = self.docs[0];
        Ok(())
    }

    /// The block that would hold `target` (without decoding it), or `None` past the end.
    #[inline]
    fn block_of(&self, target: u32) -> Option<usize> {
        let from = self.block;
        let rel = self.list.headers[from..].partition_point(|h| h.last_doc < target);
        let b = from + rel;
        (b < self.list.headers.len()).then_some(b)
    }

    /// Bound of the weighted score of any document in the block holding `target`, and that
    /// block's last document (`None`: no document at or after `target`).
    #[inline]
    fn block_bound(&self, target: u32) -> Option<(f32, u32)> {
        let b = self.block_of(target)?;
        let h = &self.list.headers[b];
        Some((
            self.weight
                * TermMeta::bound(h.max_score, h.max_tf, h.min_len, self.built_avg, self.avg),
            h.last_doc,
        ))
    }

    /// Moves to the first posting at or after `target`.
    fn advance(&mut self, target: u32) -> Result<()> {
        if self.doc >= target {
            return Ok(());
        }
        let Some(b) = self.block_of(target) else {
            self.doc = DONE;
            return Ok(());
        };
        if b != self.block || self.decoded != b {
            self.load(b)?;
        }
        let n = self.list.block_len(b);
        let at = self.i + self.docs[self.i..n].partition_point(|&d| d < target);
        self.i = at;
        self.doc = self.docs[at];
        Ok(())
    }
}

/// Evaluates queries against columns' corpora.
pub struct Searcher<'a> {
    pub corpora: &'a HashMap<String, Corpus<'a>>,
    /// Whether a row may be returned (live, and matching the prefilter).
    pub allows: &'a (dyn Fn(u64) -> bool + Sync),
    pub counters: Counters,
}

impl<'a> Searcher<'a> {
    fn corpus(&self, column: &str) -> Result<&'a Corpus<'a>> {
        self.corpora
            .get(column)
            .ok_or_else(|| Error::Internal(format!("no corpus for column '{column}'")))
    }

    /// The `k` best rows for `query`, best first.
    pub async fn top(&mut self, query: &FtsQuery, k: usize) -> Result<Vec<Hit>> {
        query.check(0)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        if let FtsQuery::Match {
            column,
            text,
            boost,
            fuzziness,
            max_expansions,
            operator,
            prefix_length,
        } = query
        {
            let corpus = self.corpus(column)?;
            let groups = self.groups(corpus, text, *fuzziness, *max_expansions, *prefix_length)?;
            let mut top = TopHits::new(k);
            let single = groups.iter().all(|g| g.len() == 1);
            match operator {
                Operator::Or => {
                    let (terms, times) = counted(groups.into_iter().flatten().collect());
                    self.wand(corpus, &terms, &times, *boost, &mut top).await?;
                }
                Operator::And if single => {
                    let (terms, times) = counted(groups.into_iter().flatten().collect());
                    self.conjunction(corpus, &terms, &times, *boost, &mut top)
                        .await?;
                }
                Operator::And => {
                    for (row, score) in self.scores(query, 0).await? {
                        top.offer(Hit { row, score });
                    }
                }
            }
            return Ok(top.into_sorted());
        }
        let mut top = TopHits::new(k);
        for (row, score) in self.scores(query, 0).await? {
            top.offer(Hit { row, score });
        }
        Ok(top.into_sorted())
    }

    /// The query tokens' terms: one group per token, each the token's expansions. A token the
    /// query holds twice is two groups, so its score counts twice, as in Lucene and LanceDB.
    fn groups(
        &self,
        corpus: &Corpus<'_>,
        text: &str,
        fuzziness: Fuzziness,
        max_expansions: usize,
        prefix: usize,
    ) -> Result<Vec<Vec<String>>> {
        let tokens: Vec<String> = corpus.tokens(text).into_iter().map(|(t, _)| t).collect();
        tokens
            .iter()
            .map(|t| corpus.expand(t, fuzziness.edits(t), prefix, max_expansions))
            .collect()
    }

    /// The lists of `terms` in `segment`, with their `weights`.
    async fn lists(
        &mut self,
        corpus: &Corpus<'_>,
        segment: &Segment,
        terms: &[String],
        weights: &[f32],
    ) -> Result<Vec<Option<TermInSegment>>> {
        let mut out = Vec::with_capacity(terms.len());
        for (term, &weight) in terms.iter().zip(weights) {
            let Some(ord) = segment.lookup(term) else {
                out.push(None);
                continue;
            };
            let (postings, loaded) = segment.postings(ord, corpus.reads).await?;
            self.counters.lists_loaded += u64::from(loaded);
            out.push(Some(TermInSegment {
                ord,
                weight,
                postings,
            }));
        }
        Ok(out)
    }

    /// Block-max WAND over the union of `terms` (term `i` counting `times[i]` times), segment
    /// by segment into `top`.
    async fn wand(
        &mut self,
        corpus: &Corpus<'_>,
        terms: &[String],
        times: &[f32],
        boost: f32,
        top: &mut TopHits,
    ) -> Result<()> {
        let weights = corpus.weights_times(terms, times, boost);
        for segment in &corpus.segments {
            let lists = self.lists(corpus, segment, terms, &weights).await?;
            let mut cursors = cursors(corpus, segment, &lists)?;
            self.counters.docs_scored +=
                wand_segment(segment, &mut cursors, corpus.avg_len, self.allows, top)?;
        }
        Ok(())
    }

    /// Block-max intersection of `terms` (every one must match; term `i` counting `times[i]`
    /// times), into `top`.
    async fn conjunction(
        &mut self,
        corpus: &Corpus<'_>,
        terms: &[String],
        times: &[f32],
        boost: f32,
        top: &mut TopHits,
    ) -> Result<()> {
        let weights = corpus.weights_times(terms, times, boost);
        for segment in &corpus.segments {
            let lists = self.lists(corpus, segment, terms, &weights).await?;
            if lists.iter().any(Option::is_none) || lists.is_empty() {
                continue;
            }
            let mut cursors = cursors(corpus, segment, &lists)?;
            cursors.sort_by_key(|c| c.list.len);
            self.counters.docs_scored +=
                and_segment(segment, &mut cursors, corpus.avg_len, self.allows, top)?;
        }
        Ok(())
    }

    /// Every allowed row matching `query`, with its score.
    fn scores<'s>(
        &'s mut self,
        query: &'s FtsQuery,
        depth: usize,
    ) -> futures::future::BoxFuture<'s, Result<HashMap<u64, f32>>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                return Err(Error::invalid("a full-text query nests too deep"));
            }
            match query {
                FtsQuery::Match {
                    column,
                    text,
                    boost,
                    fuzziness,
                    max_expansions,
                    operator,
                    prefix_length,
                } => {
                    let corpus = self.corpus(column)?;
                    let groups =
                        self.groups(corpus, text, *fuzziness, *max_expansions, *prefix_length)?;
                    self.match_scores(corpus, &groups, *boost, *operator).await
                }
                FtsQuery::Phrase { column, text, slop } => {
                    let corpus = self.corpus(column)?;
                    self.phrase_scores(corpus, column, text, *slop).await
                }
                FtsQuery::Boost {
                    positive,
                    negative,
                    negative_boost,
                } => {
                    let mut scores = self.scores(positive, depth + 1).await?;
                    let negative = self.scores(negative, depth + 1).await?;
                    for (row, score) in scores.iter_mut() {
                        if negative.contains_key(row) {
                            *score *= negative_boost;
                        }
                    }
                    Ok(scores)
                }
                FtsQuery::MultiMatch {
                    text,
                    columns,
                    boosts,
                    operator,
                } => {
                    let mut scores: HashMap<u64, f32> = HashMap::new();
                    for (i, column) in columns.iter().enumerate() {
                        let corpus = self.corpus(column)?;
                        let groups = self.groups(corpus, text, Fuzziness::Edits(0), 1, 0)?;
                        let boost = boosts.get(i).copied().unwrap_or(1.0);
                        for (row, s) in self.match_scores(corpus, &groups, boost, *operator).await?
                        {
                            *scores.entry(row).or_default() += s;
                        }
                    }
                    Ok(scores)
                }
                FtsQuery::Boolean(clauses) => {
                    let mut must: Option<HashMap<u64, f32>> = None;
                    let mut should: HashMap<u64, f32> = HashMap::new();
                    let mut must_not: std::collections::HashSet<u64> = Default::default();
                    for (occur, q) in clauses {
                        let found = self.scores(q, depth + 1).await?;
                        match occur {
                            Occur::Must => {
                                must = Some(match must {
                                    None => found,
                                    Some(mut acc) => {
                                        acc.retain(|row, _| found.contains_key(row));
                                        for (row, s) in acc.iter_mut() {
                                            *s += found[row];
                                        }
                                        acc
                                    }
                                })
                            }
                            Occur::Should => {
                                for (row, s) in found {
                                    *should.entry(row).or_default() += s;
                                }
                            }
                            Occur::MustNot => must_not.extend(found.into_keys()),
                        }
                    }
                    let mut out = match must {
                        Some(mut m) => {
                            for (row, s) in m.iter_mut() {
                                *s += should.get(row).copied().unwrap_or(0.0);
                            }
                            m
                        }
                        None => should,
                    };
                    out.retain(|row, _| !must_not.contains(row));
                    Ok(out)
                }
            }
        })
    }

    /// Scores of every allowed row matching the term groups (OR: any term; AND: a term of
    /// every group).
    async fn match_scores(
        &mut self,
        corpus: &Corpus<'_>,
        groups: &[Vec<String>],
        boost: f32,
        operator: Operator,
    ) -> Result<HashMap<u64, f32>> {
        let mut scores: HashMap<u64, (f32, u32)> = HashMap::new();
        for (g, group) in groups.iter().enumerate() {
            let weights = corpus.weights(group, boost);
            for segment in &corpus.segments {
                let lists = self.lists(corpus, segment, group, &weights).await?;
                // Rows of this group in this segment (a row counts once per group).
                let mut seen = std::collections::HashSet::new();
                for t in lists.iter().flatten() {
                    let (docs, freqs) = t.postings.decode_all()?;
                    for (d, f) in docs.into_iter().zip(freqs) {
                        let row = segment.rows[d as usize];
                        if !(self.allows)(row) {
                            continue;
                        }
                        self.counters.docs_scored += 1;
                        let s = t.weight * tf_score(f, segment.lens[d as usize], corpus.avg_len);
                        let e = scores.entry(row).or_default();
                        e.0 += s;
                        if seen.insert(row) && e.1 == g as u32 {
                            e.1 += 1;
                        }
                    }
                }
            }
        }
        let need = groups.len() as u32;
        Ok(scores
            .into_iter()
            .filter(|(_, (_, n))| operator == Operator::Or || *n == need)
            .map(|(row, (s, _))| (row, s))
            .collect())
    }

    /// Scores of every allowed row holding the phrase: its tokens in order, each gap at least
    /// the query's, and the whole span at most `slop` longer than the query's.
    async fn phrase_scores(
        &mut self,
        corpus: &Corpus<'_>,
        column: &str,
        text: &str,
        slop: u32,
    ) -> Result<HashMap<u64, f32>> {
        if !corpus.with_positions {
            return Err(Error::invalid(format!(
                "the full-text index on '{column}' keeps no positions, which phrase queries need: rebuild it with Index.fts({{ withPosition: true }})"
            )));
        }
        let tokens = corpus.tokens(text);
        let mut out = HashMap::new();
        if tokens.is_empty() {
            return Ok(out);
        }
        // A word the phrase holds twice scores twice, as in LanceDB.
        let (distinct, times) = counted(tokens.iter().map(|(t, _)| t.clone()).collect());
        // Each query token's distinct-term index and offset from the first.
        let first = tokens[0].1;
        let pattern: Vec<(usize, u32)> = tokens
            .iter()
            .map(|(t, p)| (distinct.binary_search(t).unwrap_or(0), p - first))
            .collect();
        let weights = corpus.weights_times(&distinct, &times, 1.0);
        for segment in &corpus.segments {
            let lists = self.lists(corpus, segment, &distinct, &weights).await?;
            if lists.iter().any(Option::is_none) {
                continue;
            }
            let mut decoded = Vec::with_capacity(lists.len());
            for t in lists.iter().flatten() {
                let (docs, freqs) = t.postings.decode_all()?;
                let (positions, loaded) = segment
                    .positions(t.ord, &freqs, corpus.reads)
                    .await?
                    .ok_or_else(|| {
                        Error::corrupt(
                            "full-text index",
                            "a term of an index with positions has none",
                        )
                    })?;
                self.counters.lists_loaded += u64::from(loaded);
                // Start of each document's positions.
                let mut starts = Vec::with_capacity(freqs.len() + 1);
                let mut at = 0usize;
                starts.push(0);
                for &f in &freqs {
                    at += f as usize;
                    starts.push(at);
                }
                decoded.push((docs, freqs, positions, starts, t.weight));
            }
            // Documents holding every term: walk the rarest list.
            let rarest = (0..decoded.len())
                .min_by_key(|&i| decoded[i].0.len())
                .unwrap_or(0);
            let mut idx = vec![0usize; decoded.len()];
            'docs: for &doc in &decoded[rarest].0 {
                for (i, list) in decoded.iter().enumerate() {
                    let docs = &list.0;
                    let j = idx[i] + docs[idx[i]..].partition_point(|&d| d < doc);
                    idx[i] = j;
                    if j >= docs.len() || docs[j] != doc {
                        continue 'docs;
                    }
                }
                let row = segment.rows[doc as usize];
                if !(self.allows)(row) {
                    continue;
                }
                let positions_of = |i: usize| {
                    let list = &decoded[i];
                    &list.2[list.3[idx[i]]..list.3[idx[i] + 1]]
                };
                if !phrase_matches(&pattern, &positions_of, slop) {
                    continue;
                }
                self.counters.docs_scored += 1;
                let len = segment.lens[doc as usize];
                let score: f32 = decoded
                    .iter()
                    .enumerate()
                    .map(|(i, l)| l.4 * tf_score(l.1[idx[i]], len, corpus.avg_len))
                    .sum();
                out.insert(row, score);
            }
        }
        Ok(out)
    }
}

/// Cursors over the lists a segment holds, each bounded by its term's bound at the corpus's
/// average length.
fn cursors<'l>(
    corpus: &Corpus<'_>,
    segment: &Segment,
    lists: &'l [Option<TermInSegment>],
) -> Result<Vec<Cursor<'l>>> {
    lists
        .iter()
        .flatten()
        .map(|t| {
            let max = t.weight * segment.term_bound(t.ord, corpus.avg_len);
            Cursor::new(&t.postings, t.weight, max, segment.avg_len, corpus.avg_len)
        })
        .collect()
}

/// Whether positions hold the phrase `pattern` (term index, offset from the first token):
/// some start `p` and positions `p_i` of each token's term with `p_i − p_{i−1}` at least the
/// query's gap, and `p_last − p` at most the query's span plus `slop`.
pub fn phrase_matches<'p>(
    pattern: &[(usize, u32)],
    positions_of: &dyn Fn(usize) -> &'p [u32],
    slop: u32,
) -> bool {
    let Some(&(first_term, _)) = pattern.first() else {
        return false;
    };
    let span = pattern.last().map_or(0, |&(_, o)| o);
    'starts: for &start in positions_of(first_term) {
        let mut prev = start;
        for w in pattern.windows(2) {
            let gap = w[1].1 - w[0].1;
            let want = prev.saturating_add(gap.max(1));
            let list = positions_of(w[1].0);
            let j = list.partition_point(|&p| p < want);
            let Some(&p) = list.get(j) else {
                // No later start can do better for this token.
                return false;
            };
            prev = p;
        }
        if prev - start <= span.saturating_add(slop) {
            return true;
        }
        continue 'starts;
    }
    false
}

/// Block-max WAND over one segment's cursors; returns the documents scored.
fn wand_segment(
    segment: &Segment,
    cursors: &mut [Cursor<'_>],
    avg: f32,
    allows: &(dyn Fn(u64) -> bool + Sync),
    top: &mut TopHits,
) -> Result<u64> {
    let mut scored = 0u64;
    let n = cursors.len();
    loop {
        cursors.sort_unstable_by_key(|c| c.doc);
        let threshold = top.threshold();
        // The pivot: the first cursor where the bounds so far reach the threshold.
        let mut acc = 0f32;
        let mut pivot = None;
        for (i, c) in cursors.iter().enumerate() {
            if c.doc == DONE {
                break;
            }
            acc += c.max;
            if acc >= threshold {
                pivot = Some(i);
                break;
            }
        }
        let Some(mut pivot) = pivot else {
            break;
        };
        let doc = cursors[pivot].doc;
        while pivot + 1 < n && cursors[pivot + 1].doc == doc {
            pivot += 1;
        }
        // The blocks that would hold `doc`: their bounds, and the first document past any.
        let mut bound = 0f32;
        let mut next = DONE;
        for c in &cursors[..=pivot] {
            if let Some((b, last)) = c.block_bound(doc) {
                bound += b;
                next = next.min(last.saturating_add(1));
            }
        }
        if bound >= threshold {
            if cursors[0].doc == doc {
                let row = segment.rows[doc as usize];
                if allows(row) {
                    let len = segment.lens[doc as usize];
                    let score: f32 = cursors[..=pivot]
                        .iter()
                        .map(|c| c.weight * tf_score(c.freq(), len, avg))
                        .sum();
                    scored += 1;
                    top.offer(Hit { row, score });
                }
                for c in &mut cursors[..=pivot] {
                    c.next()?;
                }
            } else {
                // Bring the cursor of largest bound among those behind up to the pivot.
                let j = (0..pivot)
                    .filter(|&i| cursors[i].doc < doc)
                    .max_by(|&a, &b| cursors[a].max.total_cmp(&cursors[b].max))
                    .unwrap_or(0);
                cursors[j].advance(doc)?;
            }
        } else {
            // No document before `next` can reach the threshold.
            if pivot + 1 < n {
                next = next.min(cursors[pivot + 1].doc);
            }
            let j = (0..=pivot)
                .max_by(|&a, &b| cursors[a].max.total_cmp(&cursors[b].max))
                .unwrap_or(0);
            let target = next.max(doc + 1);
            cursors[j].advance(target)?;
        }
    }
    Ok(scored)
}

/// Block-max intersection over one segment's cursors (rarest first); returns the documents
/// scored.
fn and_segment(
    segment: &Segment,
    cursors: &mut [Cursor<'_>],
    avg: f32,
    allows: &(dyn Fn(u64) -> bool + Sync),
    top: &mut TopHits,
) -> Result<u64> {
    let mut scored = 0u64;
    let mut doc = cursors[0].doc;
    'outer: while doc != DONE {
        let threshold = top.threshold();
        let mut bound = 0f32;
        let mut next = DONE;
        for c in cursors.iter() {
            match c.block_bound(doc) {
                Some((b, last)) => {
                    bound += b;
                    next = next.min(last.saturating_add(1));
                }
                None => break 'outer,
            }
        }
        if bound < threshold {
            cursors[0].advance(next.max(doc + 1))?;
            doc = cursors[0].doc;
            continue;
        }
        for i in 1..cursors.len() {
            cursors[i].advance(doc)?;
            if cursors[i].doc != doc {
                cursors[0].advance(cursors[i].doc)?;
                doc = cursors[0].doc;
                continue 'outer;
            }
        }
        let row = segment.rows[doc as usize];
        if allows(row) {
            let len = segment.lens[doc as usize];
            let score: f32 = cursors
                .iter()
                .map(|c| c.weight * tf_score(c.freq(), len, avg))
                .sum();
            scored += 1;
            top.offer(Hit { row, score });
        }
        cursors[0].next()?;
        doc = cursors[0].doc;
    }
    Ok(scored)
}

/// The distinct terms of `terms`, sorted, with how many times each occurs.
fn counted(mut terms: Vec<String>) -> (Vec<String>, Vec<f32>) {
    terms.sort();
    let mut distinct: Vec<String> = Vec::with_capacity(terms.len());
    let mut times: Vec<f32> = Vec::with_capacity(terms.len());
    for term in terms {
        if distinct.last() == Some(&term) {
            if let Some(n) = times.last_mut() {
                *n += 1.0;
            }
        } else {
            distinct.push(term);
            times.push(1.0);
        }
    }
    (distinct, times)
}
