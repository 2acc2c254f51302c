//! FTS as an index kind: its build (tokenize on all cores, spill segments past the memory
//! budget, merge them), its file (segments of three container parts each), its loaded form
//! and its update (`optimize()`: the new rows become a new segment; segments are merged when
//! they multiply or hold deleted rows).

use std::sync::Arc;

use arrow_schema::{DataType, Field};
use futures::future::BoxFuture;
use object_store::path::Path;

use super::build::{
    add_on_pool, memory_segment, merge_segments, on_pool, write_segment, write_tables, Accumulator,
};
use super::segment::{avg_len, Region, Segment, SegmentStats};
use super::tokenizer::{BaseTokenizer, Language, Tokenizer, TokenizerConfig};
use crate::error::{Error, Result};
use crate::index::scalar::{Container, ContainerWriter, KeyKind};
use crate::index::{
    BuildJob, Built, ColumnSource, Index, IndexConfig, IndexDetails, IndexFamily, IndexFile,
    IndexType, UpdateJob, DROPPED_ROW,
};
use crate::storage::Storage;

/// The manifest's type name of full-text indexes.
pub const FTS: &str = "FTS";
/// Segments an index may hold before `optimize()` merges them into one.
pub const MAX_SEGMENTS: usize = 8;
/// Default memory budget of a build's in-memory postings (past it, they spill to a segment).
pub const DEFAULT_MEMORY_LIMIT: usize = 1 << 30;

/// How to build a full-text index.
#[derive(Debug, Clone, PartialEq)]
pub struct FtsParams {
    pub tokenizer: TokenizerConfig,
    /// Keep token positions (phrase queries need them; the index grows).
    pub with_position: bool,
    /// Bytes of postings held in memory before they are written out as a segment.
    pub memory_limit: usize,
}

impl Default for FtsParams {
    fn default() -> Self {
        FtsParams {
            tokenizer: TokenizerConfig::default(),
            with_position: false,
            memory_limit: DEFAULT_MEMORY_LIMIT,
        }
    }
}

/// A segment as the manifest records it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FtsSegmentProto {
    #[prost(uint64, tag = "1")]
    pub docs: u64,
    #[prost(uint64, tag = "2")]
    pub tokens: u64,
    #[prost(uint64, tag = "3")]
    pub terms: u64,
}

/// What the manifest records of a full-text index (`IndexMetadata.details`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FtsDetailsProto {
    #[prost(string, tag = "1")]
    pub base_tokenizer: String,
    #[prost(string, tag = "2")]
    pub language: String,
    /// 0: no limit.
    #[prost(uint32, tag = "3")]
    pub max_token_length: u32,
    #[prost(bool, tag = "4")]
    pub lowercase: bool,
    #[prost(bool, tag = "5")]
    pub stem: bool,
    #[prost(bool, tag = "6")]
    pub remove_stop_words: bool,
    #[prost(bool, tag = "7")]
    pub has_custom_stop_words: bool,
    #[prost(string, repeated, tag = "8")]
    pub custom_stop_words: Vec<String>,
    #[prost(bool, tag = "9")]
    pub ascii_folding: bool,
    #[prost(uint32, tag = "10")]
    pub ngram_min: u32,
    #[prost(uint32, tag = "11")]
    pub ngram_max: u32,
    #[prost(bool, tag = "12")]
    pub prefix_only: bool,
    #[prost(bool, tag = "13")]
    pub with_position: bool,
    #[prost(message, repeated, tag = "14")]
    pub segments: Vec<FtsSegmentProto>,
}

impl FtsDetailsProto {
    fn new(params: &FtsParams, segments: &[SegmentStats]) -> Self {
        let t = &params.tokenizer;
        FtsDetailsProto {
            base_tokenizer: t.base.name().to_string(),
            language: t.language.name().to_string(),
            max_token_length: t.max_token_length.map_or(0, |l| l as u32),
            lowercase: t.lowercase,
            stem: t.stem,
            remove_stop_words: t.remove_stop_words,
            has_custom_stop_words: t.custom_stop_words.is_some(),
            custom_stop_words: t.custom_stop_words.clone().unwrap_or_default(),
            ascii_folding: t.ascii_folding,
            ngram_min: t.ngram_min as u32,
            ngram_max: t.ngram_max as u32,
            prefix_only: t.prefix_only,
            with_position: params.with_position,
            segments: segments
                .iter()
                .map(|s| FtsSegmentProto {
                    docs: s.docs,
                    tokens: s.tokens,
                    terms: s.terms,
                })
                .collect(),
        }
    }

    /// The build parameters recorded.
    pub fn params(&self) -> Result<FtsParams> {
        Ok(FtsParams {
            tokenizer: TokenizerConfig {
                base: self.base_tokenizer.parse::<BaseTokenizer>()?,
                language: self.language.parse::<Language>()?,
                max_token_length: (self.max_token_length > 0)
                    .then_some(self.max_token_length as usize),
                lowercase: self.lowercase,
                stem: self.stem,
                remove_stop_words: self.remove_stop_words,
                custom_stop_words: self
                    .has_custom_stop_words
                    .then(|| self.custom_stop_words.clone()),
                ascii_folding: self.ascii_folding,
                ngram_min: self.ngram_min as usize,
                ngram_max: self.ngram_max as usize,
                prefix_only: self.prefix_only,
            },
            with_position: self.with_position,
            memory_limit: DEFAULT_MEMORY_LIMIT,
        })
    }

    fn stats(&self) -> Vec<SegmentStats> {
        self.segments
            .iter()
            .map(|s| SegmentStats {
                docs: s.docs,
                tokens: s.tokens,
                terms: s.terms,
            })
            .collect()
    }
}

/// Decodes a full-text index's manifest details.
pub fn decode_details(details: &[u8]) -> Result<FtsDetailsProto> {
    prost::Message::decode(details)
        .map_err(|e| Error::corrupt("manifest", format!("full-text index details: {e}")))
}

/// Whether `column` holds text an FTS index takes.
fn check_column(column: &Field) -> std::result::Result<(), String> {
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let ok = match column.data_type() {
        DataType::List(item) | DataType::LargeList(item) => text(item.data_type()),
        other => text(other),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a full-text index takes string columns (utf8, large_utf8) or lists of strings; '{}' is {}",
            column.name(),
            column.data_type()
        ))
    }
}

/// A loaded full-text index: its segments' dictionaries and documents (postings are read per
/// term through the index cache).
#[derive(Debug)]
pub struct FtsIndex {
    pub params: FtsParams,
    pub tokenizer: Arc<Tokenizer>,
    pub segments: Vec<Segment>,
    pub path: Path,
}

impl FtsIndex {
    /// Documents and tokens of all segments.
    pub fn totals(&self) -> (u64, u64) {
        self.segments
            .iter()
            .fold((0, 0), |(d, t), s| (d + s.stats.docs, t + s.stats.tokens))
    }

    /// Average document length over all segments.
    pub fn avg_len(&self) -> f32 {
        let (d, t) = self.totals();
        avg_len(t, d)
    }
}

impl Index for FtsIndex {
    fn index_type(&self) -> &'static str {
        FTS
    }

    fn heap_bytes(&self) -> usize {
        self.segments.iter().map(Segment::heap_bytes).sum::<usize>() + 512
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn into_any_arc(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// Opens the segments of the container at `path`.
async fn open_segments(
    storage: &Storage,
    path: &Path,
    size_bytes: u64,
    stats: &[SegmentStats],
    translate: Option<&dyn crate::index::RowTranslate>,
) -> Result<Vec<Segment>> {
    let container = Container::open_parts(storage, path, size_bytes, FTS).await?;
    if container.lookup.parts.len() != stats.len() * 3 {
        return Err(Error::corrupt(
            path,
            "full-text index: the file holds another number of segments than the manifest says",
        ));
    }
    let mut segments = Vec::with_capacity(stats.len());
    for (id, s) in stats.iter().enumerate() {
        let region = &container.lookup.parts[id * 3];
        let dictionary = container.read_part(storage, id * 3 + 1).await?;
        let documents = container.read_part(storage, id * 3 + 2).await?;
        let mut segment = Segment::open(
            id,
            *s,
            &dictionary,
            &documents,
            Region::File {
                storage: storage.clone(),
                path: path.clone(),
                offset: region.offset,
                len: region.length,
            },
        )?;
        if let Some(t) = translate.filter(|t| !t.is_identity()) {
            t.translate(&mut segment.rows).await?;
        }
        segments.push(segment);
    }
    Ok(segments)
}

/// Builds segments from `source`, spilling to `spill` past the memory limit. Returns the
/// in-memory rest (if any rows) and the spilled segments' stats.
async fn invert(
    source: &dyn ColumnSource,
    tokenizer: &Arc<Tokenizer>,
    params: &FtsParams,
    spill: &mut Option<(ContainerWriter, Vec<SegmentStats>)>,
    storage: &Storage,
    spill_path: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Accumulator> {
    let mut acc = Accumulator::new(tokenizer.clone(), params.with_position);
    let mut batches = source.batches()?;
    let mut done = 0u64;
    use futures::StreamExt;
    let mut next = batches.next().await;
    while let Some(batch) = next {
        let batch = batch?;
        done += batch.num_rows() as u64;
        // The next batch is read while this one is tokenized.
        let (added, following) = futures::join!(add_on_pool(acc, batch), batches.next());
        acc = added?;
        next = following;
        progress(done);
        if acc.bytes() > params.memory_limit {
            let (region, encoded, back) = on_pool(move || {
                let (r, e) = acc.encode()?;
                Ok((r, e, acc))
            })
            .await?;
            acc = back;
            let (writer, stats) = spill
                .get_or_insert_with(|| (ContainerWriter::new(storage, spill_path), Vec::new()));
            stats.push(write_segment(writer, region, encoded).await?);
        }
    }
    Ok(acc)
}

/// The segments an update keeps: those of the index, rows `keep` rejects dropped when they
/// are merged (`merge`), copied as they are otherwise.
struct Kept<'a> {
    old: &'a [&'a Segment],
    keep: &'a (dyn Fn(u64) -> bool + Sync),
    merge: bool,
}

/// Writes the final file: the kept segments, then the new rows' segment (the in-memory rest,
/// merged with the spilled segments if any), or everything merged into one.
async fn write_index(
    storage: &Storage,
    file: &Path,
    params: &FtsParams,
    kept: Kept<'_>,
    mut acc: Accumulator,
    spill: Option<(ContainerWriter, Vec<SegmentStats>)>,
    spill_path: &Path,
) -> Result<(Vec<SegmentStats>, u64)> {
    let Kept {
        old,
        keep,
        merge: merge_old,
    } = kept;
    let mut out = ContainerWriter::new(storage, file);
    let mut stats = Vec::new();
    let spilled = match spill {
        Some((mut writer, mut spilled)) => {
            if acc.docs() > 0 {
                let (region, encoded, _) = on_pool(move || {
                    let (r, e) = acc.encode()?;
                    Ok((r, e, acc))
                })
                .await?;
                spilled.push(write_segment(&mut writer, region, encoded).await?);
            }
            let (_, size) = writer.finish(FTS, KeyKind::Bytes).await?;
            let segments = open_segments(storage, spill_path, size, &spilled, None).await?;
            acc = Accumulator::new(Arc::new(Tokenizer::new(params.tokenizer.clone())?), false);
            Some(segments)
        }
        None => None,
    };
    let new: Vec<&Segment> = spilled.iter().flatten().collect();
    if merge_old {
        // One segment of everything kept: the old segments' rows, then the new.
        let mut all: Vec<&Segment> = old.to_vec();
        all.extend(new.iter().copied());
        let in_memory = memory_segment(acc).await?;
        all.extend(in_memory.as_ref());
        if !all.is_empty() {
            stats
                .push(merge_segments(&all, old.len(), keep, params.with_position, &mut out).await?);
        }
    } else {
        for s in old {
            stats.push(copy_segment(s, &mut out).await?);
        }
        if !new.is_empty() {
            stats.push(merge_segments(&new, 0, &|_| true, params.with_position, &mut out).await?);
        } else if acc.docs() > 0 {
            let (region, encoded, _) = on_pool(move || {
                let (r, e) = acc.encode()?;
                Ok((r, e, acc))
            })
            .await?;
            stats.push(write_segment(&mut out, region, encoded).await?);
        }
    }
    let (_, size) = out.finish(FTS, KeyKind::Bytes).await?;
    if spilled.is_some() {
        storage.delete(spill_path).await?;
    }
    Ok((stats, size))
}

/// Copies a segment whose documents all stay: its region byte for byte, its dictionary, and
/// its documents with their row addresses as read (so compactions are folded in).
async fn copy_segment(segment: &Segment, out: &mut ContainerWriter) -> Result<SegmentStats> {
    let start = out.position();
    if let Region::File {
        storage,
        path,
        offset,
        len,
    } = &segment.region
    {
        let mut at = 0;
        while at < *len {
            let end = (at + (8 << 20)).min(*len);
            let bytes = storage.read_range(path, offset + at..offset + end).await?;
            out.write_raw(bytes.to_vec()).await?;
            at = end;
        }
    }
    out.end_raw(start, 0);
    write_tables(out, segment.tables()).await
}

/// The FTS index kind.
pub struct FtsType;

/// Registry entry of the FTS kind.
pub static FTS_TYPE: FtsType = FtsType;

impl FtsType {
    async fn loaded(
        storage: &Storage,
        file: &Path,
        params: &FtsParams,
        (stats, size_bytes): (Vec<SegmentStats>, u64),
    ) -> Result<Built> {
        let details = prost::Message::encode_to_vec(&FtsDetailsProto::new(params, &stats));
        let segments = open_segments(storage, file, size_bytes, &stats, None).await?;
        let entries = stats.iter().map(|s| s.docs).sum();
        Ok(Built {
            details,
            size_bytes,
            entries,
            removed: 0,
            loaded: Some(Arc::new(FtsIndex {
                params: params.clone(),
                tokenizer: Arc::new(Tokenizer::new(params.tokenizer.clone())?),
                segments,
                path: file.clone(),
            })),
        })
    }
}

fn spill_path_of(file: &Path) -> Path {
    Path::from(format!("{file}.spill"))
}

impl IndexType for FtsType {
    fn name(&self) -> &'static str {
        FTS
    }

    fn family(&self) -> IndexFamily {
        IndexFamily::FullText
    }

    fn supports(&self, column: &Field) -> std::result::Result<(), String> {
        check_column(column)
    }

    fn check(&self, details: &[u8], column: &Field) -> std::result::Result<(), String> {
        check_column(column)?;
        let d = decode_details(details).map_err(|e| e.to_string())?;
        d.params().map(|_| ()).map_err(|e| e.to_string())
    }

    fn describe(&self, details: &[u8]) -> Result<IndexDetails> {
        let d = decode_details(details)?;
        Ok(IndexDetails {
            num_distinct_values: Some(d.segments.iter().map(|s| s.terms).sum()),
            ..Default::default()
        })
    }

    fn build<'a>(&'a self, job: BuildJob<'a>) -> BoxFuture<'a, Result<Built>> {
        Box::pin(async move {
            let IndexConfig::Fts(params) = job.config else {
                return Err(Error::invalid(
                    "an FTS index takes Index.fts() parameters, not another index kind's",
                ));
            };
            check_column(job.column).map_err(Error::invalid)?;
            let tokenizer = Arc::new(Tokenizer::new(params.tokenizer.clone())?);
            let total = job.source.rows();
            let spill_path = spill_path_of(job.file);
            let mut spill = None;
            job.report("tokenize", 0, total);
            let acc = invert(
                job.source,
                &tokenizer,
                params,
                &mut spill,
                job.storage,
                &spill_path,
                &|done| job.report("tokenize", done.min(total), total),
            )
            .await?;
            job.report("tokenize", total, total);
            job.report("write", 0, 1);
            let written = write_index(
                job.storage,
                job.file,
                params,
                Kept {
                    old: &[],
                    keep: &|_| true,
                    merge: spill.is_some(),
                },
                acc,
                spill,
                &spill_path,
            )
            .await?;
            job.report("write", 1, 1);
            Self::loaded(job.storage, job.file, params, written).await
        })
    }

    fn open<'a>(&'a self, file: IndexFile<'a>) -> BoxFuture<'a, Result<Arc<dyn Index>>> {
        Box::pin(async move {
            let d = decode_details(file.details)?;
            let params = d.params()?;
            let segments = open_segments(
                file.storage,
                file.path,
                file.size_bytes,
                &d.stats(),
                Some(file.translate),
            )
            .await?;
            Ok(Arc::new(FtsIndex {
                tokenizer: Arc::new(Tokenizer::new(params.tokenizer.clone())?),
                params,
                segments,
                path: file.path.clone(),
            }) as Arc<dyn Index>)
        })
    }

    fn update<'a>(&'a self, job: UpdateJob<'a>) -> BoxFuture<'a, Result<Built>> {
        Box::pin(async move {
            let index = job
                .current
                .as_any()
                .downcast_ref::<FtsIndex>()
                .ok_or_else(|| Error::Internal("an FTS update got another index".into()))?;
            let params = &index.params;
            let spill_path = spill_path_of(job.file);
            let mut spill = None;
            let acc = invert(
                job.added,
                &index.tokenizer,
                params,
                &mut spill,
                job.storage,
                &spill_path,
                &|_| {},
            )
            .await?;
            let old: Vec<&Segment> = index.segments.iter().collect();
            let dropped: u64 = old
                .iter()
                .flat_map(|s| s.rows.iter())
                .filter(|&&r| r == DROPPED_ROW || !(job.keep)(r))
                .count() as u64;
            let segments_after = old.len() + usize::from(acc.docs() > 0 || spill.is_some());
            let merge = dropped > 0 || segments_after > MAX_SEGMENTS;
            let written = write_index(
                job.storage,
                job.file,
                params,
                Kept {
                    old: &old,
                    keep: job.keep,
                    merge,
                },
                acc,
                spill,
                &spill_path,
            )
            .await?;
            let mut built = Self::loaded(job.storage, job.file, params, written).await?;
            built.removed = dropped;
            Ok(built)
        })
    }
}
