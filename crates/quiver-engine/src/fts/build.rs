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

use super::segment::{EncodedSegment, RegionReader, Segment, SegmentEncoder, SegmentStats};
use super::tokenizer::{TokenBuffers, Tokenizer};
use crate::error::{Error, Result};
use crate::index::scalar::ContainerWriter;

/// Fewest documents a tokenizing task takes.
const MIN_CHUNK_DOCS: usize = 512;
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

/// Calls `emit(term, position)` for every token of row `i` (list rows: each item's, apart).
/// Returns the row's length in tokens.
#[inline]
pub fn tokenize_row(
    tokenizer: &Tokenizer,
    texts: &Texts<'_>,
    i: usize,
    buffers: &mut TokenBuffers,
    emit: &mut impl FnMut(&str, u32),
) -> u32 {
    let mut len = 0u32;
    let mut base = 0u32;
    texts.each(i, &mut |text| {
        let mut last = None;
        tokenizer.tokenize(text, buffers, &mut |t, p| {
            let p = base.saturating_add(p);
            len = len.saturating_add(1);
            last = Some(p);
            emit(t, p)
        });
        if let Some(l) = last {
            base = l.saturating_add(LIST_ITEM_GAP);
        }
    });
    len
}

/// The tokens of a range of documents: each distinct term once in a local dictionary, every
/// occurrence as (local term, document, position) in document order.
struct Chunk {
    dictionary: FastMap<Box<str>, u32>,
    terms: Vec<u32>,
    docs: Vec<u32>,
    positions: Vec<u32>,
    lens: Vec<u32>,
}

/// Builds the postings of a column in memory: a dictionary of the terms seen, and every token
/// occurrence as (term, document, position) in document order — flat arrays, so a build
/// allocates per distinct term, not per posting. Encoding sorts the occurrences by term
/// (a stable counting sort, so each term's documents stay ascending).
pub struct Accumulator {
    tokenizer: Arc<Tokenizer>,
    with_positions: bool,
    dictionary: FastMap<Box<str>, u32>,
    terms: Vec<u32>,
    docs: Vec<u32>,
    positions: Vec<u32>,
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
            terms: Vec::new(),
            docs: Vec::new(),
            positions: Vec::new(),
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
            + self.terms.capacity() * 4
            + self.docs.capacity() * 4
            + self.positions.capacity() * 4
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
        let base = u32::try_from(self.rows.len() + kept.len())
            .ok()
            .filter(|&end| end < u32::MAX)
            .ok_or_else(|| {
                Error::invalid("a full-text index segment holds at most 4,294,967,294 rows")
            })?
            - kept.len() as u32;
        let n = kept.len();
        let tasks = (rayon::current_num_threads() * 4).max(1);
        let chunk = n.div_ceil(tasks).max(MIN_CHUNK_DOCS);
        let starts: Vec<usize> = (0..n).step_by(chunk.max(1)).collect();
        let (tokenizer, with_positions) = (&self.tokenizer, self.with_positions);
        let chunks: Vec<Chunk> = starts
            .par_iter()
            .map(|&start| {
                let end = (start + chunk).min(n);
                let mut out = Chunk {
                    dictionary: fast_map(),
                    terms: Vec::new(),
                    docs: Vec::new(),
                    positions: Vec::new(),
                    lens: Vec::with_capacity(end - start),
                };
                let mut buffers = TokenBuffers::default();
                for (i, &row) in kept[start..end].iter().enumerate() {
                    let doc = base + (start + i) as u32;
                    let Chunk {
                        dictionary,
                        terms,
                        docs,
                        positions,
                        ..
                    } = &mut out;
                    let len = tokenize_row(tokenizer, &texts, row, &mut buffers, &mut |t, p| {
                        let id = match dictionary.get(t) {
                            Some(&id) => id,
                            None => {
                                let id = dictionary.len() as u32;
                                dictionary.insert(t.into(), id);
                                id
                            }
                        };
                        terms.push(id);
                        docs.push(doc);
                        if with_positions {
                            positions.push(p);
                        }
                    });
                    out.lens.push(len);
                }
                out
            })
            .collect();
        for c in chunks {
            // Local term numbers to the accumulator's.
            let mut remap = vec![0u32; c.dictionary.len()];
            for (term, local) in c.dictionary {
                let next = self.dictionary.len() as u32;
                let len = term.len();
                let id = *self.dictionary.entry(term).or_insert_with(|| next);
                if id == next {
                    self.term_bytes += len + 48;
                }
                remap[local as usize] = id;
            }
            self.terms
                .extend(c.terms.iter().map(|&l| remap[l as usize]));
            self.docs.extend_from_slice(&c.docs);
            self.positions.extend_from_slice(&c.positions);
            self.lens.extend_from_slice(&c.lens);
        }
        self.rows.extend(kept.iter().map(|&i| rows[i]));
        Ok(())
    }

    /// Encodes what it holds as a segment, region and all, in memory; leaves it empty.
    /// CPU-bound: run it on the pool.
    pub fn encode(&mut self) -> Result<(Vec<u8>, EncodedSegment)> {
        use rayon::prelude::*;
        let dictionary = std::mem::replace(&mut self.dictionary, fast_map());
        let terms = std::mem::take(&mut self.terms);
        let docs = std::mem::take(&mut self.docs);
        let positions = std::mem::take(&mut self.positions);
        let rows = std::mem::take(&mut self.rows);
        let lens = std::mem::take(&mut self.lens);
        self.term_bytes = 0;
        // Occurrences grouped by term, in document order within each.
        let mut starts = vec![0usize; dictionary.len() + 1];
        for &t in &terms {
            starts[t as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut by_term_docs = vec![0u32; docs.len()];
        let mut by_term_positions = vec![0u32; positions.len()];
        for (i, &t) in terms.iter().enumerate() {
            let at = next[t as usize];
            next[t as usize] += 1;
            by_term_docs[at] = docs[i];
            if self.with_positions {
                by_term_positions[at] = positions[i];
            }
        }
        drop((terms, docs, positions));
        let mut names: Vec<(Box<str>, u32)> = dictionary.into_iter().collect();
        names.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut encoder = SegmentEncoder::new(rows, lens, self.with_positions);
        let (mut term_docs, mut freqs) = (Vec::new(), Vec::new());
        for (name, id) in names {
            let range = starts[id as usize]..starts[id as usize + 1];
            term_docs.clear();
            freqs.clear();
            for &d in &by_term_docs[range.clone()] {
                if term_docs.last() == Some(&d) {
                    if let Some(f) = freqs.last_mut() {
                        *f += 1;
                    }
                } else {
                    term_docs.push(d);
                    freqs.push(1);
                }
            }
            let term_positions = if self.with_positions {
                &by_term_positions[range]
            } else {
                &[][..]
            };
            encoder.add_term(name.as_bytes(), &term_docs, &freqs, term_positions)?;
        }
        let region = encoder.take_region();
        Ok((region, encoder.finish()?))
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

/// Runs CPU-bound `work` off the async threads; a panic there becomes an error.
pub async fn on_pool<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("a full-text index task failed: {e}")))?
}
