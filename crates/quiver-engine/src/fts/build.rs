//! Inverting text: documents are tokenized on all cores, each task into a local dictionary
//! and flat arrays of (term, document, position); the tasks' terms are then numbered in one
//! dictionary and their arrays appended. Encoding groups the occurrences by term with a
//! counting sort. When the accumulated postings outgrow the build's memory budget they are
//! written out as a segment and the accumulator starts over; segments are merged term by
//! term, streaming, into the final one.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use futures::stream::StreamExt;

use super::segment::{
    EncodedSegment, Region, RegionReader, Segment, SegmentEncoder, SegmentStats, TermRun,
};
use super::tokenizer::{TokenBuffers, Tokenizer};
use crate::error::{Error, Result};
use crate::index::scalar::ContainerWriter;

/// Fewest documents a tokenizing task takes.
const MIN_CHUNK_DOCS: usize = 256;
/// Positions between the texts of a list column's row, so phrases do not span two of them.
const LIST_ITEM_GAP: u32 = 100;

type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

fn fast_map<K, V>() -> FastMap<K, V> {
    FastMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4))
}

/// The texts of a string or list-of-strings column.
pub enum Texts<'a> {
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    List(&'a dyn Array, Vec<usize>, Box<Texts<'a>>),
}

impl<'a> Texts<'a> {
    /// The column's texts, or an error naming the types an FTS index takes.
    pub fn new(column: &'a dyn Array) -> Result<Self> {
        Ok(match column.data_type() {
            DataType::Utf8 => Texts::Utf8(column.as_string::<i32>()),
            DataType::LargeUtf8 => Texts::LargeUtf8(column.as_string::<i64>()),
            DataType::Utf8View => Texts::View(column.as_string_view()),
            DataType::List(_) => {
                let l = column.as_list::<i32>();
                let offsets = l.value_offsets().iter().map(|&o| o as usize).collect();
                Texts::List(column, offsets, Box::new(Texts::owned_items(l.values())?))
            }
            DataType::LargeList(_) => {
                let l = column.as_list::<i64>();
                let offsets = l.value_offsets().iter().map(|&o| o as usize).collect();
                Texts::List(column, offsets, Box::new(Texts::owned_items(l.values())?))
            }
            other => {
                return Err(Error::invalid(format!(
                    "a full-text index takes string columns (utf8, large_utf8) or lists of strings, not {other}"
                )))
            }
        })
    }

    fn owned_items(values: &'a ArrayRef) -> Result<Texts<'a>> {
        match values.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                Texts::new(values.as_ref())
            }
            other => Err(Error::invalid(format!(
                "a full-text index takes lists of strings, not lists of {other}"
            ))),
        }
    }

    /// Calls `each` with every text of row `i` (none for a null row).
    pub fn each(&self, i: usize, each: &mut impl FnMut(&str)) {
        match self {
            Texts::Utf8(a) => {
                if a.is_valid(i) {
                    each(a.value(i));
                }
            }
            Texts::LargeUtf8(a) => {
                if a.is_valid(i) {
                    each(a.value(i));
                }
            }
            Texts::View(a) => {
                if a.is_valid(i) {
                    each(a.value(i));
                }
            }
            Texts::List(list, offsets, items) => {
                if list.is_valid(i) {
                    for j in offsets[i]..offsets[i + 1] {
                        items.each(j, each);
                    }
                }
            }
        }
    }

    /// Whether row `i` is null (not a document).
    pub fn is_null(&self, i: usize) -> bool {
        match self {
            Texts::Utf8(a) => a.is_null(i),
            Texts::LargeUtf8(a) => a.is_null(i),
            Texts::View(a) => a.is_null(i),
            Texts::List(l, _, _) => l.is_null(i),
        }
    }

    pub fn rows(&self) -> usize {
        match self {
            Texts::Utf8(a) => a.len(),
            Texts::LargeUtf8(a) => a.len(),
            Texts::View(a) => a.len(),
            Texts::List(l, _, _) => l.len(),
        }
    }
}

/// Calls `keep(raw, position)` for every base token of row `i` (list rows: each item's,
/// apart), which runs it through the filters and says whether a token is left. Returns the
/// row's length in tokens left.
#[inline]
pub fn tokenize_row(
    tokenizer: &Tokenizer,
    texts: &Texts<'_>,
    i: usize,
    keep: &mut impl FnMut(&str, u32) -> bool,
) -> u32 {
    let mut len = 0u32;
    let mut base = 0u32;
    texts.each(i, &mut |text| {
        let mut last = None;
        tokenizer.base_tokens(text, &mut |raw, p| {
            let p = base.saturating_add(p);
            if keep(raw, p) {
                len = len.saturating_add(1);
                last = Some(p);
            }
        });
        if let Some(l) = last {
            base = l.saturating_add(LIST_ITEM_GAP);
        }
    });
    len
}

/// A base token the filters drop, in a task's cache of raw tokens.
const DROPPED: u32 = u32::MAX;

/// A tokenizing task's state, kept from batch to batch: every distinct raw token it has seen
/// as a local term number (so the filters — lowercase, stop words, stemming, folding — run
/// once per distinct token, not per occurrence, and only new tokens touch the shared
/// dictionary), and what those numbers are in the accumulator's dictionary.
struct Worker {
    /// Raw token → local term, or `DROPPED` when the filters drop it.
    raw_terms: FastMap<Box<str>, u32>,
    /// The terms of local numbers `remap.len()..`, not yet numbered in the dictionary.
    new_terms: Vec<Box<str>>,
    /// Local term → the accumulator's.
    remap: Vec<u32>,
    /// Estimated heap bytes of the above.
    bytes: usize,
}

/// The occurrences of a run of documents, in document order: each one's term and (when the
/// index keeps them) position. Documents are implied by their lengths.
struct Part {
    terms: Vec<u32>,
    positions: Vec<u32>,
}

impl Worker {
    fn new() -> Self {
        Worker {
            raw_terms: fast_map(),
            new_terms: Vec::new(),
            remap: Vec::new(),
            bytes: 0,
        }
    }

    /// Tokenizes rows `docs` of `texts`: their occurrences (local term numbers) and lengths.
    fn tokenize(
        &mut self,
        tokenizer: &Tokenizer,
        texts: &Texts<'_>,
        docs: &[usize],
        with_positions: bool,
    ) -> Result<(Part, Vec<u32>)> {
        let mut part = Part {
            terms: Vec::new(),
            positions: Vec::new(),
        };
        let mut lens = Vec::with_capacity(docs.len());
        let mut buffers = TokenBuffers::default();
        let Worker {
            raw_terms,
            new_terms,
            remap,
            bytes,
        } = self;
        for &row in docs {
            let before = part.terms.len();
            let len = tokenize_row(tokenizer, texts, row, &mut |raw, p| {
                let id = match raw_terms.get(raw) {
                    Some(&id) => id,
                    None => {
                        let id = match tokenizer.normalize(raw, &mut buffers) {
                            None => DROPPED,
                            Some(term) => {
                                *bytes += term.len() + 24;
                                new_terms.push(term.into());
                                (remap.len() + new_terms.len() - 1) as u32
                            }
                        };
                        *bytes += raw.len() + 40;
                        raw_terms.insert(raw.into(), id);
                        id
                    }
                };
                if id == DROPPED {
                    return false;
                }
                part.terms.push(id);
                if with_positions {
                    part.positions.push(p);
                }
                true
            });
            if part.terms.len() - before != len as usize {
                return Err(Error::invalid(
                    "a document holds more than 4,294,967,295 tokens: split it into several rows",
                ));
            }
            lens.push(len);
        }
        Ok((part, lens))
    }
}

/// Builds the postings of a column in memory: a dictionary of the terms seen, and every token
/// occurrence as (term, position) in document order — flat arrays, so a build allocates per
/// distinct term, not per posting. Encoding groups the occurrences by term (a stable counting
/// sort, so each term's documents stay ascending).
pub struct Accumulator {
    tokenizer: Arc<Tokenizer>,
    with_positions: bool,
    dictionary: FastMap<Box<str>, u32>,
    /// One per tokenizing task, made on first use.
    workers: Vec<Worker>,
    parts: Vec<Part>,
    rows: Vec<u64>,
    lens: Vec<u32>,
    term_bytes: usize,
}

impl Accumulator {
    pub fn new(tokenizer: Arc<Tokenizer>, with_positions: bool) -> Self {
        Accumulator {
            tokenizer,
            with_positions,
            dictionary: fast_map(),
            workers: Vec::new(),
            parts: Vec::new(),
            rows: Vec::new(),
            lens: Vec::new(),
            term_bytes: 0,
        }
    }

    /// Documents held.
    pub fn docs(&self) -> usize {
        self.rows.len()
    }

    /// Estimated heap bytes of what it holds.
    pub fn bytes(&self) -> usize {
        self.term_bytes
            + self
                .workers
                .iter()
                .map(|w| w.bytes + w.remap.len() * 4)
                .sum::<usize>()
            + self
                .parts
                .iter()
                .map(|p| (p.terms.capacity() + p.positions.capacity()) * 4)
                .sum::<usize>()
            + self.rows.len() * 12
    }

    /// Adds documents: row `i` of `column` is the row at address `rows[i]`. Tokenizes on the
    /// rayon pool (call from a blocking context).
    pub fn add(&mut self, column: &dyn Array, rows: &[u64]) -> Result<()> {
        use rayon::prelude::*;
        let texts = Texts::new(column)?;
        let n = texts.rows().min(rows.len());
        // Null rows are not documents; the others are numbered in order.
        let kept: Vec<usize> = (0..n).filter(|&i| !texts.is_null(i)).collect();
        if self.rows.len() + kept.len() >= u32::MAX as usize {
            return Err(Error::invalid(
                "a full-text index segment holds at most 4,294,967,294 rows",
            ));
        }
        if self.workers.is_empty() {
            self.workers = (0..rayon::current_num_threads().max(1))
                .map(|_| Worker::new())
                .collect();
        }
        // One contiguous run of documents per worker, so its state carries over.
        let per = kept.len().div_ceil(self.workers.len()).max(MIN_CHUNK_DOCS);
        let runs: Vec<&[usize]> = kept.chunks(per).collect();
        let (tokenizer, with_positions) = (&*self.tokenizer, self.with_positions);
        let texts = &texts;
        let mut tokenized: Vec<(Part, Vec<u32>)> = self
            .workers
            .par_iter_mut()
            .zip(runs.par_iter())
            .map(|(worker, docs)| worker.tokenize(tokenizer, texts, docs, with_positions))
            .collect::<Result<_>>()?;
        // Number the new terms in the dictionary, in order, then renumber each task's
        // occurrences on the pool.
        for worker in &mut self.workers {
            for term in worker.new_terms.drain(..) {
                let next = u32::try_from(self.dictionary.len())
                    .ok()
                    .filter(|&n| n < u32::MAX)
                    .ok_or_else(|| {
                        Error::invalid(
                            "a full-text index segment holds at most 4,294,967,294 terms",
                        )
                    })?;
                let len = term.len();
                let id = *self.dictionary.entry(term).or_insert(next);
                if id == next {
                    self.term_bytes += len + 48;
                }
                worker.remap.push(id);
            }
        }
        self.workers
            .par_iter()
            .zip(tokenized.par_iter_mut())
            .for_each(|(worker, (part, _))| {
                for t in &mut part.terms {
                    *t = worker.remap[*t as usize];
                }
            });
        for (part, lens) in tokenized {
            self.lens.extend_from_slice(&lens);
            if !part.terms.is_empty() {
                self.parts.push(part);
            }
        }
        self.rows.extend(kept.iter().map(|&i| rows[i]));
        Ok(())
    }

    /// Encodes what it holds as a segment, region and all, in memory; leaves it empty.
    /// CPU-bound: run it on the pool.
    pub fn encode(&mut self) -> Result<(Vec<u8>, EncodedSegment)> {
        use rayon::prelude::*;
        let dictionary = std::mem::replace(&mut self.dictionary, fast_map());
        let parts = std::mem::take(&mut self.parts);
        let rows = std::mem::take(&mut self.rows);
        let lens = std::mem::take(&mut self.lens);
        // The workers' numbers point into the dictionary just taken.
        self.workers.clear();
        self.term_bytes = 0;
        let with_positions = self.with_positions;
        // Occurrences grouped by term, in document order within each: each task owns a range
        // of term numbers and scans every occurrence, so its writes stay its own.
        let terms = dictionary.len();
        let per_group = terms.div_ceil(rayon::current_num_threads().max(1)).max(1);
        let groups: Vec<Grouped> = (0..terms.div_ceil(per_group))
            .into_par_iter()
            .map(|g| {
                let range = g * per_group..((g + 1) * per_group).min(terms);
                Grouped::new(&parts, &lens, range, with_positions)
            })
            .collect::<Result<_>>()?;
        drop(parts);
        let postings = |id: u32| {
            let (g, at) = (id as usize / per_group, id as usize % per_group);
            let group = &groups[g];
            let range = group.starts[at]..group.starts[at + 1];
            let positions = if with_positions {
                &group.positions[range.clone()]
            } else {
                &[][..]
            };
            (&group.docs[range], positions)
        };
        let mut names: Vec<(Box<str>, u32)> = dictionary.into_iter().collect();
        names.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut encoder = SegmentEncoder::new(rows, lens, with_positions);
        // Runs of terms of about equal postings, encoded on the pool, appended in order.
        let occurrences: usize = groups.iter().map(|g| g.docs.len()).sum();
        let per_run = (occurrences / (rayon::current_num_threads() * 4).max(1)).max(1);
        let mut runs: Vec<&[(Box<str>, u32)]> = Vec::new();
        let (mut from, mut held) = (0, 0);
        for (i, (_, id)) in names.iter().enumerate() {
            held += postings(*id).0.len();
            if held >= per_run {
                runs.push(&names[from..=i]);
                (from, held) = (i + 1, 0);
            }
        }
        runs.push(&names[from..]);
        let coder = encoder.coder();
        let encoded: Vec<TermRun> = runs
            .par_iter()
            .map(|run| {
                let mut out = TermRun::default();
                let (mut term_docs, mut freqs) = (Vec::new(), Vec::new());
                for (_, id) in run.iter() {
                    let (docs, positions) = postings(*id);
                    term_docs.clear();
                    freqs.clear();
                    for &d in docs {
                        if term_docs.last() == Some(&d) {
                            if let Some(f) = freqs.last_mut() {
                                *f += 1;
                            }
                        } else {
                            term_docs.push(d);
                            freqs.push(1);
                        }
                    }
                    out.add(coder, &term_docs, &freqs, positions)?;
                }
                Ok(out)
            })
            .collect::<Result<_>>()?;
        encoder.reserve(encoded.iter().map(TermRun::bytes).sum());
        for (run, encoded) in runs.iter().zip(encoded) {
            encoder.append_run(run.iter().map(|(name, _)| name.as_bytes()), encoded)?;
        }
        let region = encoder.take_region();
        Ok((region, encoder.finish()?))
    }
}

/// The occurrences of a range of term numbers, grouped by term: term `lo + i`'s documents
/// (and positions) are `starts[i]..starts[i + 1]`, in document order.
struct Grouped {
    starts: Vec<usize>,
    docs: Vec<u32>,
    positions: Vec<u32>,
}

impl Grouped {
    fn new(
        parts: &[Part],
        lens: &[u32],
        range: std::ops::Range<usize>,
        with_positions: bool,
    ) -> Result<Self> {
        let (lo, span) = (range.start, range.len());
        let mut starts = vec![0usize; span + 1];
        for part in parts {
            for &t in &part.terms {
                let i = (t as usize).wrapping_sub(lo);
                if i < span {
                    starts[i + 1] += 1;
                }
            }
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut docs = vec![0u32; starts[span]];
        let mut positions = vec![0u32; if with_positions { starts[span] } else { 0 }];
        // Each occurrence's document, from the documents' lengths.
        let mut lengths = lens.iter();
        let (mut doc, mut left) = (0u32, 0u32);
        let mut first = true;
        for part in parts {
            for (j, &t) in part.terms.iter().enumerate() {
                while left == 0 {
                    let Some(&l) = lengths.next() else {
                        return Err(Error::Internal(
                            "a full-text build holds more occurrences than its documents' lengths"
                                .into(),
                        ));
                    };
                    if !first {
                        doc += 1;
                    }
                    first = false;
                    left = l;
                }
                left -= 1;
                let i = (t as usize).wrapping_sub(lo);
                if i < span {
                    let at = next[i];
                    next[i] += 1;
                    docs[at] = doc;
                    if with_positions {
                        positions[at] = part.positions[j];
                    }
                }
            }
        }
        Ok(Grouped {
            starts,
            docs,
            positions,
        })
    }
}

/// Writes a segment's three parts (data region, dictionary, documents) to `out`.
pub(crate) async fn write_segment(
    out: &mut ContainerWriter,
    region: Vec<u8>,
    encoded: EncodedSegment,
) -> Result<SegmentStats> {
    let start = out.position();
    out.write_raw(region).await?;
    out.end_raw(start, 0);
    write_tables(out, encoded).await
}

/// Writes a segment's dictionary and documents parts (after its region).
pub(crate) async fn write_tables(
    out: &mut ContainerWriter,
    encoded: EncodedSegment,
) -> Result<SegmentStats> {
    out.part(encoded.dictionary, 0, 0, Vec::new(), Vec::new())
        .await?;
    out.part(
        encoded.documents,
        encoded.stats.docs,
        0,
        Vec::new(),
        Vec::new(),
    )
    .await?;
    Ok(encoded.stats)
}

/// Terms a merge takes from each segment at a time.
const MERGE_BATCH: usize = 4096;
/// Bytes of region a merge writes at a time.
const REGION_PIECE: usize = 8 << 20;

/// Merges segments term by term into one new segment written to `out`, whose documents are
/// the segments' documents, in segment order, but those of the first `filtered` segments
/// that `keep` rejects. Streams: holds one term's postings and a read-ahead buffer per
/// segment.
pub(crate) async fn merge_segments(
    segments: &[&Segment],
    filtered: usize,
    keep: &(dyn Fn(u64) -> bool + Sync),
    with_positions: bool,
    out: &mut ContainerWriter,
) -> Result<SegmentStats> {
    // New document numbers (u32::MAX: dropped).
    let mut renumber: Vec<Vec<u32>> = Vec::with_capacity(segments.len());
    let (mut rows, mut lens) = (Vec::new(), Vec::new());
    for (si, s) in segments.iter().enumerate() {
        let mut map = Vec::with_capacity(s.rows.len());
        for (d, &row) in s.rows.iter().enumerate() {
            if row != crate::index::DROPPED_ROW && (si >= filtered || keep(row)) {
                map.push(rows.len() as u32);
                rows.push(row);
                lens.push(s.lens[d]);
            } else {
                map.push(u32::MAX);
            }
        }
        renumber.push(map);
    }
    if rows.len() >= u32::MAX as usize {
        return Err(Error::invalid(
            "a full-text index segment holds at most 4,294,967,294 rows",
        ));
    }
    let mut encoder = SegmentEncoder::new(rows, lens, with_positions);
    let mut readers: Vec<RegionReader> = segments
        .iter()
        .map(|s| RegionReader::new(s.region.clone()))
        .collect();
    let start = out.position();
    let (mut docs, mut freqs, mut positions) = (Vec::new(), Vec::new(), Vec::new());
    let mut term_positions = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        // Each segment's next terms (dictionary streams are not `Send`, so none is held
        // across a read): the union up to the smallest term where a segment's batch stopped.
        let mut batch: std::collections::BTreeMap<Vec<u8>, Vec<(usize, usize)>> =
            Default::default();
        let mut limit: Option<Vec<u8>> = None;
        for (si, s) in segments.iter().enumerate() {
            use fst::{IntoStreamer, Streamer};
            let range = match &after {
                Some(a) => s.terms.range().gt(a),
                None => s.terms.range(),
            };
            let mut stream = range.into_stream();
            let mut taken = 0;
            while let Some((term, ord)) = stream.next() {
                batch
                    .entry(term.to_vec())
                    .or_default()
                    .push((si, ord as usize));
                taken += 1;
                if taken == MERGE_BATCH {
                    if limit.as_deref().is_none_or(|l| term < l) {
                        limit = Some(term.to_vec());
                    }
                    break;
                }
            }
        }
        if let Some(l) = &limit {
            batch.retain(|t, _| t <= l);
        }
        let Some(last) = batch.keys().next_back().cloned() else {
            break;
        };
        for (term, hits) in &batch {
            docs.clear();
            freqs.clear();
            positions.clear();
            for &(s, ord) in hits {
                let (list, raw_positions) = segments[s].raw_term(ord, &mut readers[s]).await?;
                let (d, f) = list.decode_all()?;
                let keep_positions = with_positions && !raw_positions.is_empty();
                if keep_positions {
                    term_positions.clear();
                    super::codec::decode_positions(&raw_positions, &f, &mut term_positions)?;
                }
                let mut at = 0usize;
                for (doc, freq) in d.into_iter().zip(f) {
                    let end = at + freq as usize;
                    let new = renumber[s].get(doc as usize).copied().ok_or_else(|| {
                        Error::corrupt(
                            "full-text index",
                            "a posting names a document past its segment's",
                        )
                    })?;
                    if new != u32::MAX {
                        docs.push(new);
                        freqs.push(freq);
                        if keep_positions {
                            positions.extend_from_slice(&term_positions[at..end]);
                        }
                    }
                    at = end;
                }
            }
            encoder.add_term(term, &docs, &freqs, &positions)?;
            if encoder.pending() >= REGION_PIECE {
                out.write_raw(encoder.take_region()).await?;
            }
        }
        if limit.is_none() {
            break;
        }
        after = Some(last);
    }
    out.write_raw(encoder.take_region()).await?;
    out.end_raw(start, 0);
    write_tables(out, encoder.finish()?).await
}

/// Streams `batches` of (text column, `_rowid`) through an accumulator.
pub async fn accumulate(
    tokenizer: Arc<Tokenizer>,
    with_positions: bool,
    mut batches: futures::stream::BoxStream<'static, Result<arrow_array::RecordBatch>>,
) -> Result<Accumulator> {
    let mut acc = Accumulator::new(tokenizer, with_positions);
    while let Some(batch) = batches.next().await {
        acc = add_on_pool(acc, batch?).await?;
    }
    Ok(acc)
}

/// Adds a batch of (text column, `_rowid`) to `acc`, tokenizing on the rayon pool off the
/// async threads.
pub(crate) async fn add_on_pool(
    mut acc: Accumulator,
    batch: arrow_array::RecordBatch,
) -> Result<Accumulator> {
    on_pool(move || {
        let rows = batch
            .column(1)
            .as_primitive::<arrow_array::types::UInt64Type>()
            .values();
        acc.add(batch.column(0).as_ref(), rows)?;
        Ok(acc)
    })
    .await
}

/// What `acc` holds as a segment in memory (`None` without documents), encoded on the pool.
pub(crate) async fn memory_segment(mut acc: Accumulator) -> Result<Option<Segment>> {
    if acc.docs() == 0 {
        return Ok(None);
    }
    let (region, encoded) = on_pool(move || acc.encode()).await?;
    Segment::open(
        usize::MAX,
        encoded.stats,
        &encoded.dictionary,
        &encoded.documents,
        Region::Memory(bytes::Bytes::from(region)),
    )
    .map(Some)
}

/// Runs CPU-bound `work` off the async threads; a panic there becomes an error.
pub async fn on_pool<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("a full-text index task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow_array::StringArray;
    use proptest::prelude::*;

    use super::*;
    use crate::fts::segment::Region;
    use crate::fts::TokenizerConfig;

    /// Words that exercise every filter: case, stop words, stems, diacritics, long tokens.
    const WORDS: &[&str] = &[
        "The",
        "the",
        "running",
        "Runs",
        "run",
        "café",
        "CAFÉ",
        "and",
        "Über",
        "data",
        "databases",
        "x",
        "does",
        "ŒUVRE",
        "naïve",
        "a1b2",
        "Straße",
        "über",
        "averyveryveryveryverylongwordthatisdroppedbythelimit",
    ];

    /// Term → (document, positions) in document order, from `Tokenizer::tokens`.
    type Naive = BTreeMap<String, Vec<(u32, Vec<u32>)>>;

    fn naive(tokenizer: &Tokenizer, texts: &[Option<String>]) -> (Naive, Vec<u32>) {
        let mut index = Naive::new();
        let mut lens = Vec::new();
        for text in texts.iter().flatten() {
            let doc = lens.len() as u32;
            let tokens = tokenizer.tokens(text);
            lens.push(tokens.len() as u32);
            for (term, position) in tokens {
                let list = index.entry(term).or_default();
                match list.last_mut() {
                    Some((d, positions)) if *d == doc => positions.push(position),
                    _ => list.push((doc, vec![position])),
                }
            }
        }
        (index, lens)
    }

    fn check(segment: &Segment, want: &Naive, lens: &[u32]) {
        assert_eq!(segment.lens, lens);
        assert_eq!(segment.stats.terms as usize, want.len());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (term, list) in want {
            let ord = segment
                .lookup(term)
                .unwrap_or_else(|| panic!("{term} missing"));
            let (postings, _) = rt.block_on(segment.postings(ord, None)).unwrap();
            let (docs, freqs) = postings.decode_all().unwrap();
            let (positions, _) = rt
                .block_on(segment.positions(ord, &freqs, None))
                .unwrap()
                .unwrap();
            let want_docs: Vec<u32> = list.iter().map(|(d, _)| *d).collect();
            let want_freqs: Vec<u32> = list.iter().map(|(_, p)| p.len() as u32).collect();
            let want_positions: Vec<u32> = list.iter().flat_map(|(_, p)| p.clone()).collect();
            assert_eq!((&docs, &freqs), (&want_docs, &want_freqs), "{term}");
            assert_eq!(*positions, want_positions, "{term}");
        }
    }

    fn encode(acc: &mut Accumulator) -> Segment {
        let (region, encoded) = acc.encode().unwrap();
        Segment::open(
            0,
            encoded.stats,
            &encoded.dictionary,
            &encoded.documents,
            Region::Memory(region.into()),
        )
        .unwrap()
    }

    fn texts() -> impl Strategy<Value = Vec<Option<String>>> {
        let text = prop::collection::vec(0..WORDS.len(), 0..12).prop_map(|words| {
            words
                .iter()
                .map(|&w| WORDS[w])
                .collect::<Vec<_>>()
                .join(" ")
        });
        prop::collection::vec(prop::option::weighted(0.9, text), 0..900)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Batches of any size, tasks keeping their token caches from batch to batch, and an
        /// encode midway (a spill) give the same postings as tokenizing each text on its own.
        #[test]
        fn postings_equal_a_naive_inversion(texts in texts(), cuts in prop::collection::vec(1usize..400, 1..6), spill_at in 0usize..900) {
            let tokenizer = Arc::new(Tokenizer::new(TokenizerConfig::default()).unwrap());
            let spill_at = spill_at.min(texts.len());
            let mut acc = Accumulator::new(tokenizer.clone(), true);
            let mut segments = Vec::new();
            let mut start = 0;
            let mut sizes = cuts.iter().cycle();
            while start < texts.len() {
                let end = (start + sizes.next().copied().unwrap_or(1)).min(texts.len());
                // Batches never straddle the spill point.
                let end = if start < spill_at && end > spill_at { spill_at } else { end };
                let column = StringArray::from(texts[start..end].to_vec());
                let rows: Vec<u64> = (start as u64..end as u64).collect();
                acc.add(&column, &rows).unwrap();
                start = end;
                if start == spill_at && acc.docs() > 0 {
                    segments.push((encode(&mut acc), 0..spill_at));
                }
            }
            if acc.docs() > 0 {
                segments.push((encode(&mut acc), spill_at.min(texts.len())..texts.len()));
            }
            for (segment, range) in &segments {
                let (want, lens) = naive(&tokenizer, &texts[range.clone()]);
                check(segment, &want, &lens);
                let rows: Vec<u64> = range.clone().filter(|&i| texts[i].is_some()).map(|i| i as u64).collect();
                prop_assert_eq!(&segment.rows, &rows);
            }
        }
    }
}
