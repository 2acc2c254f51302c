//! A segment of a full-text index: its term dictionary (an FST from term to ordinal, with
//! each term's document frequency, where its postings lie, their checksums and score
//! bounds), its documents (row address and length in tokens), and a data region of posting
//! lists and positions in term order. The dictionary and documents stay resident; posting
//! lists are read one term at a time, through the index cache for file segments.
//!
//! Rows not yet indexed become a segment too, built in memory at query time, so every query
//! operator reads both the same way.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;

use super::codec::{encode_positions, encode_postings, get_varint64, put_varint64, Postings};
use crate::error::{Error, Result};
use crate::index::cache::IndexCache;
use crate::storage::Storage;

/// BM25's term-frequency saturation and length normalisation (Lucene's and LanceDB's).
pub const K1: f32 = 1.2;
pub const B: f32 = 0.75;

/// The term-frequency part of BM25: `tf·(k1+1) / (tf + k1·(1 − b + b·len/avg_len))`.
#[inline]
pub fn tf_score(tf: u32, len: u32, avg_len: f32) -> f32 {
    let tf = tf as f32;
    let norm = K1 * (1.0 - B + B * len as f32 / avg_len);
    tf * (K1 + 1.0) / (tf + norm)
}

/// Lucene's BM25 idf: `ln(1 + (N − df + 0.5) / (df + 0.5))`, never negative.
#[inline]
pub fn idf(df: u64, docs: u64) -> f32 {
    let (df, n) = (df as f64, docs as f64);
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln() as f32
}

/// Average document length of `docs` documents holding `tokens` tokens (1 for an empty
/// corpus, so scores stay finite).
pub fn avg_len(tokens: u64, docs: u64) -> f32 {
    if docs == 0 || tokens == 0 {
        1.0
    } else {
        (tokens as f64 / docs as f64) as f32
    }
}

/// What the dictionary holds of one term.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TermMeta {
    /// Documents holding the term.
    pub df: u32,
    /// Where its posting list starts in the data region.
    pub offset: u64,
    pub postings_len: u32,
    /// Bytes of positions after the postings (0 without positions).
    pub positions_len: u32,
    pub postings_crc: u32,
    pub positions_crc: u32,
    /// Bounds of its term-frequency score over all its documents (see `BlockHeader`).
    pub max_score: f32,
    pub max_tf: u32,
    pub min_len: u32,
}

/// Bytes of a term's entry in the dictionary part.
const TERM_META_BYTES: usize = 40;

impl TermMeta {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.df.to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.postings_len.to_le_bytes());
        out.extend_from_slice(&self.positions_len.to_le_bytes());
        out.extend_from_slice(&self.postings_crc.to_le_bytes());
        out.extend_from_slice(&self.positions_crc.to_le_bytes());
        out.extend_from_slice(&self.max_score.to_le_bytes());
        out.extend_from_slice(&self.max_tf.to_le_bytes());
        out.extend_from_slice(&self.min_len.to_le_bytes());
    }

    fn read(b: &[u8]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        TermMeta {
            df: u32_at(0),
            offset: u64::from(u32_at(4)) | (u64::from(u32_at(8)) << 32),
            postings_len: u32_at(12),
            positions_len: u32_at(16),
            postings_crc: u32_at(20),
            positions_crc: u32_at(24),
            max_score: f32::from_bits(u32_at(28)),
            max_tf: u32_at(32),
            min_len: u32_at(36),
        }
    }

    /// Bound of the term-frequency score of any of its documents at `avg_len`, given the
    /// segment's own average `built_avg` the stored bound was computed at: a longer average
    /// raises scores by at most its ratio, and `(max_tf, min_len)` bounds them at any average.
    #[inline]
    pub fn bound(max_score: f32, max_tf: u32, min_len: u32, built_avg: f32, avg_len: f32) -> f32 {
        let scaled = max_score * (avg_len / built_avg).max(1.0);
        scaled.min(tf_score(max_tf, min_len, avg_len)) * BOUND_SLACK
    }
}

/// Rounding headroom of score bounds: a bound must never fall below a score it bounds.
const BOUND_SLACK: f32 = 1.0001;

/// Encodes a segment term by term, in term order: posting lists into the data region (taken
/// out in pieces to write as it grows), the dictionary and documents at the end.
pub struct SegmentEncoder {
    lens: Vec<u32>,
    rows: Vec<u64>,
    avg_len: f32,
    total_tokens: u64,
    with_positions: bool,
    region: Vec<u8>,
    /// Bytes of the region taken out before `region`.
    flushed: u64,
    dictionary: fst::MapBuilder<Vec<u8>>,
    metas: Vec<u8>,
    terms: u64,
}

/// Encodes one term's posting list and positions against a segment's document lengths.
#[derive(Clone, Copy)]
pub struct TermCoder<'a> {
    lens: &'a [u32],
    avg_len: f32,
    with_positions: bool,
}

/// Terms encoded apart from their segment: their lists, back to back, and entries whose
/// offsets count from the run's start.
#[derive(Default)]
pub struct TermRun {
    region: Vec<u8>,
    metas: Vec<TermMeta>,
}

impl TermRun {
    /// Bytes of lists it holds.
    pub fn bytes(&self) -> usize {
        self.region.len()
    }

    /// Encodes a term (held by `docs` `freqs` times at `positions`, as `add_term` takes).
    pub fn add(
        &mut self,
        coder: TermCoder<'_>,
        docs: &[u32],
        freqs: &[u32],
        positions: &[u32],
    ) -> Result<()> {
        let meta = coder.encode(docs, freqs, positions, &mut self.region)?;
        self.metas.push(meta);
        Ok(())
    }
}

impl TermCoder<'_> {
    /// Appends the term's lists to `out`; its entry's offset is where they start in `out`.
    fn encode(
        self,
        docs: &[u32],
        freqs: &[u32],
        positions: &[u32],
        out: &mut Vec<u8>,
    ) -> Result<TermMeta> {
        let lens = self.lens;
        let avg = self.avg_len;
        let (mut max_score, mut max_tf, mut min_len) = (0f32, 0u32, u32::MAX);
        let offset = out.len();
        encode_postings(
            docs,
            freqs,
            |range| {
                let (mut s, mut t, mut l) = (0f32, 0u32, u32::MAX);
                for j in range {
                    let len = lens[docs[j] as usize];
                    s = s.max(tf_score(freqs[j], len, avg));
                    t = t.max(freqs[j]);
                    l = l.min(len);
                }
                max_score = max_score.max(s);
                max_tf = max_tf.max(t);
                min_len = min_len.min(l);
                (s, t, l)
            },
            out,
        );
        let postings_len = out.len() - offset;
        let postings_crc = crc32fast::hash(&out[offset..]);
        let mut positions_len = 0;
        let mut positions_crc = 0;
        if self.with_positions {
            let start = out.len();
            let mut at = 0usize;
            for &f in freqs {
                let end = at + f as usize;
                encode_positions(&positions[at..end], out);
                at = end;
            }
            positions_len = out.len() - start;
            positions_crc = crc32fast::hash(&out[start..]);
        }
        let too_big = |n: usize| {
            u32::try_from(n).map_err(|_| {
                Error::invalid(format!(
                    "a term's posting list exceeds 4 GiB ({} documents); split the column's text",
                    docs.len()
                ))
            })
        };
        Ok(TermMeta {
            df: docs.len() as u32,
            offset: offset as u64,
            postings_len: too_big(postings_len)?,
            positions_len: too_big(positions_len)?,
            postings_crc,
            positions_crc,
            max_score,
            max_tf,
            min_len,
        })
    }
}

/// A segment's encoded parts and figures.
pub struct EncodedSegment {
    pub dictionary: Vec<u8>,
    pub documents: Vec<u8>,
    pub stats: SegmentStats,
}

/// What a segment holds, as the index details record it.
#[derive(Clone, Copy, PartialEq, Debug, Default)]
pub struct SegmentStats {
    pub docs: u64,
    pub tokens: u64,
    pub terms: u64,
}

impl SegmentEncoder {
    /// A segment of the documents `rows` with lengths `lens` (document `i` is `rows[i]`).
    pub fn new(rows: Vec<u64>, lens: Vec<u32>, with_positions: bool) -> Self {
        let total_tokens: u64 = lens.iter().map(|&l| u64::from(l)).sum();
        SegmentEncoder {
            avg_len: avg_len(total_tokens, lens.len() as u64),
            lens,
            rows,
            total_tokens,
            with_positions,
            region: Vec::new(),
            flushed: 0,
            dictionary: fst::MapBuilder::memory(),
            metas: Vec::new(),
            terms: 0,
        }
    }

    /// Adds a term (greater than the previous one) held by `docs` (ascending) `freqs` times,
    /// at `positions` (each document's, ascending, concatenated) when the index keeps them.
    pub fn add_term(
        &mut self,
        term: &[u8],
        docs: &[u32],
        freqs: &[u32],
        positions: &[u32],
    ) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        let base = self.flushed;
        let coder = TermCoder {
            lens: &self.lens,
            avg_len: self.avg_len,
            with_positions: self.with_positions,
        };
        let mut meta = coder.encode(docs, freqs, positions, &mut self.region)?;
        meta.offset += base;
        self.push_term(term, &meta)
    }

    /// What encodes one term's lists for this segment; shareable between threads, so runs
    /// of terms can be encoded apart (`TermRun`) and appended in order (`append_run`).
    pub fn coder(&self) -> TermCoder<'_> {
        TermCoder {
            lens: &self.lens,
            avg_len: self.avg_len,
            with_positions: self.with_positions,
        }
    }

    /// Appends a run of terms encoded apart: `terms` (ascending, after the last term added)
    /// are the run's, in its order.
    pub fn append_run<'t>(
        &mut self,
        terms: impl IntoIterator<Item = &'t [u8]>,
        run: TermRun,
    ) -> Result<()> {
        let base = self.flushed + self.region.len() as u64;
        let mut metas = run.metas.into_iter();
        for term in terms {
            let Some(mut meta) = metas.next() else {
                return Err(Error::Internal(
                    "a full-text build's run has fewer lists than terms".into(),
                ));
            };
            meta.offset += base;
            self.push_term(term, &meta)?;
        }
        if metas.next().is_some() {
            return Err(Error::Internal(
                "a full-text build's run has more lists than terms".into(),
            ));
        }
        self.region.extend_from_slice(&run.region);
        Ok(())
    }

    fn push_term(&mut self, term: &[u8], meta: &TermMeta) -> Result<()> {
        meta.write(&mut self.metas);
        self.dictionary.insert(term, self.terms).map_err(|e| {
            Error::Internal(format!("terms out of order in a full-text build: {e}"))
        })?;
        self.terms += 1;
        Ok(())
    }

    /// Region bytes written since the last call (for the caller to write out).
    pub fn take_region(&mut self) -> Vec<u8> {
        self.flushed += self.region.len() as u64;
        std::mem::take(&mut self.region)
    }

    /// Makes room for `bytes` more bytes of region.
    pub fn reserve(&mut self, bytes: usize) {
        self.region.reserve(bytes);
    }

    /// Region bytes pending.
    pub fn pending(&self) -> usize {
        self.region.len()
    }

    /// The dictionary and documents parts. Take the region's rest first.
    pub fn finish(self) -> Result<EncodedSegment> {
        let fst = self
            .dictionary
            .into_inner()
            .map_err(|e| Error::Internal(format!("finishing a term dictionary failed: {e}")))?;
        let dictionary = dictionary_bytes(self.terms, &fst, &self.metas);
        let documents = documents_bytes(&self.rows, &self.lens);
        Ok(EncodedSegment {
            dictionary,
            documents,
            stats: SegmentStats {
                docs: self.rows.len() as u64,
                tokens: self.total_tokens,
                terms: self.terms,
            },
        })
    }
}

/// The dictionary part: term count, FST length, FST, term entries.
fn dictionary_bytes(terms: u64, fst: &[u8], metas: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + fst.len() + metas.len());
    out.extend_from_slice(&terms.to_le_bytes());
    out.extend_from_slice(&(fst.len() as u64).to_le_bytes());
    out.extend_from_slice(fst);
    out.extend_from_slice(metas);
    out
}

/// The documents part: row addresses, then lengths.
fn documents_bytes(rows: &[u64], lens: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 3);
    let mut prev = 0u64;
    for &r in rows {
        // Zigzag of the wrapping difference: addresses mostly ascend by one (a byte each),
        // but a translated segment's may go anywhere.
        let delta = r.wrapping_sub(prev) as i64;
        put_varint64(((delta << 1) ^ (delta >> 63)) as u64, &mut out);
        prev = r;
    }
    for &l in lens {
        put_varint64(u64::from(l), &mut out);
    }
    out
}

/// Decodes the documents part of `docs` documents: row addresses and lengths.
fn parse_documents(bytes: &[u8], docs: usize) -> Option<(Vec<u64>, Vec<u32>)> {
    // Each document takes at least two bytes, which bounds what a damaged count allocates.
    if bytes.len() / 2 < docs {
        return None;
    }
    let mut at = 0;
    let mut rows = Vec::with_capacity(docs);
    let mut prev = 0u64;
    for _ in 0..docs {
        let z = get_varint64(bytes, &mut at)?;
        let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
        prev = prev.wrapping_add(delta as u64);
        rows.push(prev);
    }
    let mut lens = Vec::with_capacity(docs);
    for _ in 0..docs {
        lens.push(u32::try_from(get_varint64(bytes, &mut at)?).ok()?);
    }
    (at == bytes.len()).then_some((rows, lens))
}

/// Where a segment's data region is.
#[derive(Debug, Clone)]
pub enum Region {
    /// In the index file: `offset..offset + len`.
    File {
        storage: Storage,
        path: Path,
        offset: u64,
        len: u64,
    },
    /// In memory (rows not yet indexed).
    Memory(Bytes),
}

/// How a query reads file segments: through the index cache (under `key`, the index's
/// prefix) and the query's own store handle, so its I/O figures count the lists it reads.
#[derive(Clone, Copy)]
pub struct FileReads<'a> {
    pub cache: &'a IndexCache,
    pub key: &'a str,
    pub storage: &'a Storage,
}

/// A segment ready to search.
pub struct Segment {
    /// Its number in the index (cache keys).
    pub id: usize,
    pub stats: SegmentStats,
    pub avg_len: f32,
    pub terms: fst::Map<Vec<u8>>,
    metas: Vec<u8>,
    /// Row address of each document (translated to the version read; dropped rows are
    /// `DROPPED_ROW`).
    pub rows: Vec<u64>,
    pub lens: Vec<u32>,
    pub region: Region,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("id", &self.id)
            .field("stats", &self.stats)
            .finish()
    }
}

fn corrupt(what: String) -> Error {
    Error::corrupt("full-text index", what)
}

impl Segment {
    /// Opens a segment from its dictionary and documents parts.
    pub fn open(
        id: usize,
        stats: SegmentStats,
        dictionary: &[u8],
        documents: &[u8],
        region: Region,
    ) -> Result<Self> {
        let bad = |why: &str| corrupt(format!("segment {id}: {why}"));
        if dictionary.len() < 16 {
            return Err(bad("its dictionary is truncated"));
        }
        let terms = u64::from_le_bytes(dictionary[0..8].try_into().unwrap_or_default());
        let fst_len = u64::from_le_bytes(dictionary[8..16].try_into().unwrap_or_default());
        let metas_len = terms.checked_mul(TERM_META_BYTES as u64);
        let fits = fst_len
            .checked_add(16)
            .zip(metas_len)
            .and_then(|(a, b)| a.checked_add(b))
            == Some(dictionary.len() as u64);
        if terms != stats.terms || !fits {
            return Err(bad("its dictionary does not match its description"));
        }
        let fst_end = 16 + fst_len as usize;
        let map = fst::Map::new(dictionary[16..fst_end].to_vec())
            .map_err(|e| bad(&format!("its term dictionary does not decode: {e}")))?;
        if map.len() as u64 != terms {
            return Err(bad("its term dictionary holds another number of terms"));
        }
        let docs = usize::try_from(stats.docs).unwrap_or(usize::MAX);
        let (rows, lens) = parse_documents(documents, docs)
            .ok_or_else(|| bad("its document table does not match its description"))?;
        let tokens: u64 = lens.iter().map(|&l| u64::from(l)).sum();
        if tokens != stats.tokens {
            return Err(bad("its document lengths do not add up to its token count"));
        }
        let region_len = match &region {
            Region::File { len, .. } => *len,
            Region::Memory(b) => b.len() as u64,
        };
        let metas = dictionary[fst_end..].to_vec();
        let segment = Segment {
            id,
            stats,
            avg_len: avg_len(stats.tokens, stats.docs),
            terms: map,
            metas,
            rows,
            lens,
            region,
        };
        for ord in 0..terms as usize {
            let m = segment.meta(ord);
            let end = m
                .offset
                .checked_add(u64::from(m.postings_len) + u64::from(m.positions_len));
            if m.df == 0 || m.df as u64 > stats.docs || end.is_none_or(|e| e > region_len) {
                return Err(bad("a term's postings lie outside its data"));
            }
        }
        Ok(segment)
    }

    /// The dictionary entry of term `ord`.
    #[inline]
    pub fn meta(&self, ord: usize) -> TermMeta {
        TermMeta::read(&self.metas[ord * TERM_META_BYTES..(ord + 1) * TERM_META_BYTES])
    }

    /// Its dictionary and documents parts as they are written (row addresses as read, so
    /// compactions are folded in).
    pub(crate) fn tables(&self) -> EncodedSegment {
        EncodedSegment {
            dictionary: dictionary_bytes(
                self.stats.terms,
                self.terms.as_fst().as_bytes(),
                &self.metas,
            ),
            documents: documents_bytes(&self.rows, &self.lens),
            stats: self.stats,
        }
    }

    /// The ordinal of `term`, if the segment holds it.
    pub fn lookup(&self, term: &str) -> Option<usize> {
        self.terms.get(term).map(|o| o as usize)
    }

    /// Bound of term `ord`'s term-frequency score in any of its documents at `avg_len`.
    pub fn term_bound(&self, ord: usize, avg_len: f32) -> f32 {
        let m = self.meta(ord);
        TermMeta::bound(m.max_score, m.max_tf, m.min_len, self.avg_len, avg_len)
    }

    /// Bytes of the region, read through `reads`' store when given (a query's), else through
    /// the one the segment was opened with.
    async fn read(
        &self,
        reads: Option<FileReads<'_>>,
        start: u64,
        len: u32,
        crc: u32,
        what: &str,
    ) -> Result<Bytes> {
        match &self.region {
            Region::Memory(bytes) => Ok(bytes.slice(start as usize..start as usize + len as usize)),
            Region::File {
                storage,
                path,
                offset,
                ..
            } => {
                let at = offset + start;
                let storage = reads.map_or(storage, |r| r.storage);
                let bytes = storage.read_range(path, at..at + u64::from(len)).await?;
                if crc32fast::hash(&bytes) != crc {
                    return Err(Error::corrupt(
                        path,
                        format!("full-text index: a term's {what} fail their checksum"),
                    ));
                }
                Ok(bytes)
            }
        }
    }

    /// Term `ord`'s posting list (file segments: through the cache, read once); the flag says
    /// whether this call read it from storage.
    pub async fn postings(
        &self,
        ord: usize,
        reads: Option<FileReads<'_>>,
    ) -> Result<(Arc<Postings>, bool)> {
        let m = self.meta(ord);
        let load = async {
            let bytes = self
                .read(reads, m.offset, m.postings_len, m.postings_crc, "postings")
                .await?;
            let list = Postings::parse(bytes, m.df as usize)?;
            let heap = list.heap_bytes();
            Ok((list, heap))
        };
        match (reads, &self.region) {
            (Some(reads), Region::File { .. }) => {
                let key = format!("{}#s{}p{ord}", reads.key, self.id);
                reads.cache.get_or_load(&key, load).await
            }
            (_, Region::File { .. }) => Ok((Arc::new(load.await?.0), true)),
            (_, Region::Memory(_)) => Ok((Arc::new(load.await?.0), false)),
        }
    }

    /// Term `ord`'s positions, each document's in posting order, concatenated (`freqs` are
    /// the posting list's, which say how many each document has). `None`: none stored. The
    /// flag says whether this call read them from storage.
    pub async fn positions(
        &self,
        ord: usize,
        freqs: &[u32],
        reads: Option<FileReads<'_>>,
    ) -> Result<Option<(Arc<Vec<u32>>, bool)>> {
        let m = self.meta(ord);
        if m.positions_len == 0 {
            return Ok(None);
        }
        let load = async {
            let bytes = self
                .read(
                    reads,
                    m.offset + u64::from(m.postings_len),
                    m.positions_len,
                    m.positions_crc,
                    "positions",
                )
                .await?;
            let mut out = Vec::new();
            super::codec::decode_positions(&bytes, freqs, &mut out)?;
            let heap = out.len() * 4 + 64;
            Ok((out, heap))
        };
        Ok(Some(match (reads, &self.region) {
            (Some(reads), Region::File { .. }) => {
                let key = format!("{}#s{}q{ord}", reads.key, self.id);
                reads.cache.get_or_load(&key, load).await?
            }
            (_, Region::File { .. }) => (Arc::new(load.await?.0), true),
            (_, Region::Memory(_)) => (Arc::new(load.await?.0), false),
        }))
    }

    /// Reads the raw postings and positions of term `ord` through a sequential `reader`
    /// (merges).
    pub(crate) async fn raw_term(
        &self,
        ord: usize,
        reader: &mut RegionReader,
    ) -> Result<(Postings, Bytes)> {
        let m = self.meta(ord);
        let bytes = reader
            .read(
                m.offset,
                u64::from(m.postings_len) + u64::from(m.positions_len),
            )
            .await?;
        let (postings, positions) = bytes.split_at(m.postings_len as usize);
        if crc32fast::hash(postings) != m.postings_crc
            || (m.positions_len > 0 && crc32fast::hash(positions) != m.positions_crc)
        {
            return Err(corrupt(format!(
                "segment {}: a term's postings fail their checksum",
                self.id
            )));
        }
        let positions = bytes.slice(m.postings_len as usize..);
        let postings = Postings::parse(bytes.slice(..m.postings_len as usize), m.df as usize)?;
        Ok((postings, positions))
    }

    /// Heap bytes held resident.
    pub fn heap_bytes(&self) -> usize {
        self.terms.as_fst().as_bytes().len()
            + self.metas.len()
            + self.rows.len() * 8
            + self.lens.len() * 4
            + match &self.region {
                Region::Memory(b) => b.len(),
                Region::File { .. } => 0,
            }
            + 256
    }
}

/// Reads a segment's data region front to back in large pieces (merges read every term).
pub(crate) struct RegionReader {
    region: Region,
    buffer: Bytes,
    /// Region offset of `buffer`'s first byte.
    start: u64,
}

/// Bytes a [`RegionReader`] reads at a time.
const READ_AHEAD: u64 = 8 << 20;

impl RegionReader {
    pub(crate) fn new(region: Region) -> Self {
        RegionReader {
            region,
            buffer: Bytes::new(),
            start: 0,
        }
    }

    /// Bytes `offset..offset + len` of the region; offsets must not go backwards by more than
    /// the buffer holds.
    async fn read(&mut self, offset: u64, len: u64) -> Result<Bytes> {
        match &self.region {
            Region::Memory(b) => Ok(b.slice(offset as usize..(offset + len) as usize)),
            Region::File {
                storage,
                path,
                offset: base,
                len: region_len,
            } => {
                let end = offset + len;
                if offset < self.start || end > self.start + self.buffer.len() as u64 {
                    let read_end = (offset + len.max(READ_AHEAD)).min(*region_len).max(end);
                    self.buffer = storage
                        .read_range(path, base + offset..base + read_end)
                        .await?;
                    self.start = offset;
                }
                let from = (offset - self.start) as usize;
                Ok(self.buffer.slice(from..from + len as usize))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any addresses (translated ones go anywhere, dropped ones are u64::MAX) and lengths
        /// round-trip; damaged or cut bytes never panic and never decode to the wrong count.
        #[test]
        fn documents_round_trip(
            docs in prop::collection::vec((any::<u64>(), any::<u32>(), 0u64..3), 0..200),
            flip in any::<(usize, u8)>(),
        ) {
            // Mostly ascending runs, as builds write them, with arbitrary jumps.
            let mut rows = Vec::new();
            let mut lens = Vec::new();
            let mut at = 0u64;
            for &(jump, len, step) in &docs {
                at = if step == 0 { jump } else { at.wrapping_add(step) };
                rows.push(at);
                lens.push(len);
            }
            let bytes = documents_bytes(&rows, &lens);
            prop_assert_eq!(parse_documents(&bytes, rows.len()), Some((rows.clone(), lens.clone())));
            if !bytes.is_empty() {
                prop_assert_eq!(parse_documents(&bytes[..bytes.len() - 1], rows.len()), None);
                let mut damaged = bytes.clone();
                let i = flip.0 % damaged.len();
                damaged[i] ^= flip.1.max(1);
                if let Some((r, l)) = parse_documents(&damaged, rows.len()) {
                    prop_assert_eq!((r.len(), l.len()), (rows.len(), lens.len()));
                }
            }
            prop_assert_eq!(parse_documents(&bytes, rows.len() + 1), None);
        }
    }
}
