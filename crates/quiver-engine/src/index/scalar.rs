//! What scalar indexes share: keys (column values in one total order), the queries a filter
//! plans into, their results, and the file container both scalar kinds write.
//!
//! Keys. Numbers become order-preserving `u64` ordinals (signed integers offset by 2^63,
//! floats by the IEEE total-order trick, so `-0.0 < 0.0` and NaN sorts last, exactly as
//! arrow's comparison kernels order them); dates, times, timestamps and durations are their
//! integer values; booleans 0 and 1. Strings and binaries are their bytes (UTF-8 order).
//!
//! Container (FORMAT.md §7): parts (each a checksummed block) one after another, then the
//! lookup (a checksummed protobuf block: one entry per part with its offset, length, entry
//! count, null count and min/max key), then a 24-byte footer: lookup offset (u64 LE), lookup
//! length (u64 LE), magic `QSIX`, container version (u32 LE). Readers load the lookup once and
//! each part on demand.

use std::ops::Bound;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float16Type, Float32Type, Float64Type, Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use bytes::Bytes;
use object_store::path::Path;
use roaring::RoaringTreemap;

use super::{PartContext, DROPPED_ROW};
use crate::error::{Error, Result};
use crate::format::{decode_block, decode_block_message, encode_block};
use crate::storage::{Storage, StorageWriter};

/// A key in the index's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Num(u64),
    Bytes(Vec<u8>),
}

/// A borrowed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyRef<'a> {
    Num(u64),
    Bytes(&'a [u8]),
}

impl Key {
    pub fn as_ref(&self) -> KeyRef<'_> {
        match self {
            Key::Num(n) => KeyRef::Num(*n),
            Key::Bytes(b) => KeyRef::Bytes(b),
        }
    }

    /// The stored form (lookup min/max, bitmap dictionary).
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Key::Num(n) => n.to_le_bytes().to_vec(),
            Key::Bytes(b) => b.clone(),
        }
    }

    pub(crate) fn decode(kind: KeyKind, bytes: &[u8]) -> Option<Key> {
        match kind {
            KeyKind::Num => Some(Key::Num(u64::from_le_bytes(bytes.try_into().ok()?))),
            KeyKind::Bytes => Some(Key::Bytes(bytes.to_vec())),
        }
    }
}

impl KeyRef<'_> {
    pub fn to_owned(self) -> Key {
        match self {
            KeyRef::Num(n) => Key::Num(n),
            KeyRef::Bytes(b) => Key::Bytes(b.to_vec()),
        }
    }
}

/// Which form a column's keys take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Num = 0,
    Bytes = 1,
}

impl KeyKind {
    pub(crate) fn from_code(code: u32) -> Option<KeyKind> {
        match code {
            0 => Some(KeyKind::Num),
            1 => Some(KeyKind::Bytes),
            _ => None,
        }
    }
}

/// The key form of values of `data_type`, if scalar indexes take them.
pub fn key_kind(data_type: &DataType) -> Option<KeyKind> {
    use DataType::*;
    match data_type {
        Boolean
        | Int8
        | Int16
        | Int32
        | Int64
        | UInt8
        | UInt16
        | UInt32
        | UInt64
        | Float16
        | Float32
        | Float64
        | Date32
        | Date64
        | Time32(_)
        | Time64(_)
        | Timestamp(_, _)
        | Duration(_) => Some(KeyKind::Num),
        Utf8 | LargeUtf8 | Binary | LargeBinary => Some(KeyKind::Bytes),
        _ => None,
    }
}

/// Types scalar indexes take, for error messages.
pub const SUPPORTED_TYPES: &str =
    "booleans, integers, floats, dates, times, timestamps, durations, strings and binaries";

#[inline]
fn signed(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

#[inline]
fn float64(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

#[inline]
fn float32(v: f32) -> u64 {
    let bits = v.to_bits();
    u64::from(if bits >> 31 == 1 {
        !bits
    } else {
        bits | (1 << 31)
    })
}

#[inline]
fn float16(v: half::f16) -> u64 {
    let bits = v.to_bits();
    u64::from(if bits >> 15 == 1 {
        !bits
    } else {
        bits | (1 << 15)
    })
}

/// The keys of an array's rows (`None` for nulls), computed a batch at a time.
pub enum ColumnKeys<'a> {
    Num {
        ordinals: Vec<u64>,
        array: &'a dyn Array,
    },
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Binary(&'a arrow_array::BinaryArray),
    LargeBinary(&'a arrow_array::LargeBinaryArray),
}

impl<'a> ColumnKeys<'a> {
    /// The keys of `array` (of a type [`key_kind`] takes).
    pub fn new(array: &'a dyn Array) -> Result<Self> {
        use DataType::*;
        let unsupported = || {
            Error::invalid(format!(
                "scalar indexes take {SUPPORTED_TYPES}, not {}",
                array.data_type()
            ))
        };
        let ordinals: Vec<u64> = match array.data_type() {
            Utf8 => return Ok(ColumnKeys::Utf8(array.as_string::<i32>())),
            LargeUtf8 => return Ok(ColumnKeys::LargeUtf8(array.as_string::<i64>())),
            Binary => return Ok(ColumnKeys::Binary(array.as_binary::<i32>())),
            LargeBinary => return Ok(ColumnKeys::LargeBinary(array.as_binary::<i64>())),
            Boolean => array.as_boolean().values().iter().map(u64::from).collect(),
            Float64 => array
                .as_primitive::<Float64Type>()
                .values()
                .iter()
                .map(|&v| float64(v))
                .collect(),
            Float32 => array
                .as_primitive::<Float32Type>()
                .values()
                .iter()
                .map(|&v| float32(v))
                .collect(),
            Float16 => array
                .as_primitive::<Float16Type>()
                .values()
                .iter()
                .map(|&v| float16(v))
                .collect(),
            UInt8 | UInt16 | UInt32 | UInt64 => {
                let cast = arrow_cast::cast(array, &UInt64).map_err(|_| unsupported())?;
                cast.as_primitive::<UInt64Type>().values().to_vec()
            }
            Int8
            | Int16
            | Int32
            | Int64
            | Date32
            | Date64
            | Time32(_)
            | Time64(_)
            | Timestamp(_, _)
            | Duration(_) => {
                let cast = integer_values(array).ok_or_else(unsupported)?;
                cast.as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .map(|&v| signed(v))
                    .collect()
            }
            _ => return Err(unsupported()),
        };
        Ok(ColumnKeys::Num { ordinals, array })
    }

    /// The key of row `i` (`None` when null).
    #[inline]
    pub fn get(&self, i: usize) -> Option<KeyRef<'_>> {
        match self {
            ColumnKeys::Num { ordinals, array } => {
                (!array.is_null(i)).then(|| KeyRef::Num(ordinals[i]))
            }
            ColumnKeys::Utf8(a) => (!a.is_null(i)).then(|| KeyRef::Bytes(a.value(i).as_bytes())),
            ColumnKeys::LargeUtf8(a) => {
                (!a.is_null(i)).then(|| KeyRef::Bytes(a.value(i).as_bytes()))
            }
            ColumnKeys::Binary(a) => (!a.is_null(i)).then(|| KeyRef::Bytes(a.value(i))),
            ColumnKeys::LargeBinary(a) => (!a.is_null(i)).then(|| KeyRef::Bytes(a.value(i))),
        }
    }
}

/// The integer values of a signed integer or temporal array, as int64 (the raw values: days,
/// milliseconds, … — never converted between units, so the order is the stored order).
fn integer_values(array: &dyn Array) -> Option<ArrayRef> {
    use DataType::*;
    let data = array.to_data();
    let width = match array.data_type() {
        Int8 => return arrow_cast::cast(array, &Int64).ok(),
        Int16 => return arrow_cast::cast(array, &Int64).ok(),
        Int32 | Date32 | Time32(_) => 4,
        _ => 8,
    };
    let as_int = if width == 4 { Int32 } else { Int64 };
    // Same buffers, read as plain integers.
    let data = data.into_builder().data_type(as_int).build().ok()?;
    arrow_cast::cast(&arrow_array::make_array(data), &Int64).ok()
}

/// The key of a one-value literal array (`None` when it is null).
pub fn literal_key(literal: &dyn Array) -> Result<Option<Key>> {
    if literal.is_empty() {
        return Ok(None);
    }
    let keys = ColumnKeys::new(literal)?;
    Ok(keys.get(0).map(KeyRef::to_owned))
}

/// A question a scalar index answers.
#[derive(Debug, Clone, PartialEq)]
pub enum ScalarQuery {
    /// Values in a range (equality is a range of one value).
    Range {
        lower: Bound<Key>,
        upper: Bound<Key>,
    },
    /// Values equal to one of these.
    In(Vec<Key>),
    IsNull,
    IsNotNull,
    /// Lists holding any of these values (`array_has`, `array_has_any`).
    HasAny(Vec<Key>),
    /// Lists holding all of these values (`array_has_all`; at least one value).
    HasAll(Vec<Key>),
    /// Non-null values that do *not* match a `Range` or `In` (`x != v`, `NOT (x < v)`,
    /// `x NOT IN (…)`): rows whose value is NULL match neither.
    Not(Box<ScalarQuery>),
}

impl ScalarQuery {
    pub fn equals(key: Key) -> Self {
        ScalarQuery::Range {
            lower: Bound::Included(key.clone()),
            upper: Bound::Included(key),
        }
    }

    /// Whether `key` lies in the range.
    pub(crate) fn range_contains(lower: &Bound<Key>, upper: &Bound<Key>, key: KeyRef<'_>) -> bool {
        let above = match lower {
            Bound::Included(l) => key >= l.as_ref(),
            Bound::Excluded(l) => key > l.as_ref(),
            Bound::Unbounded => true,
        };
        above
            && match upper {
                Bound::Included(u) => key <= u.as_ref(),
                Bound::Excluded(u) => key < u.as_ref(),
                Bound::Unbounded => true,
            }
    }

    /// Describes the query for plans.
    pub fn describe(&self) -> String {
        match self {
            ScalarQuery::Range {
                lower: Bound::Included(l),
                upper: Bound::Included(u),
            } if l == u => "equals".into(),
            ScalarQuery::Range { .. } => "range".into(),
            ScalarQuery::In(keys) => format!("in ({} values)", keys.len()),
            ScalarQuery::IsNull => "is null".into(),
            ScalarQuery::IsNotNull => "is not null".into(),
            ScalarQuery::HasAny(keys) => format!("has any of {} labels", keys.len()),
            ScalarQuery::HasAll(keys) => format!("has all of {} labels", keys.len()),
            ScalarQuery::Not(inner) => format!("not {}", inner.describe()),
        }
    }

    /// Whether a non-null `key` matches a `Range`, `In` (its keys sorted in `sorted_in`) or
    /// their `Not`.
    pub(crate) fn matches_key(&self, key: KeyRef<'_>, sorted_in: &[&Key]) -> bool {
        match self {
            ScalarQuery::Range { lower, upper } => Self::range_contains(lower, upper, key),
            ScalarQuery::In(_) => sorted_in.binary_search_by(|k| k.as_ref().cmp(&key)).is_ok(),
            ScalarQuery::IsNotNull => true,
            ScalarQuery::Not(inner) => !inner.matches_key(key, sorted_in),
            _ => false,
        }
    }

    /// The keys of an `In` (or of the `In` inside a `Not`), sorted.
    pub(crate) fn sorted_in_keys(&self) -> Vec<&Key> {
        let mut keys: Vec<&Key> = match self {
            ScalarQuery::In(keys) => keys.iter().collect(),
            ScalarQuery::Not(inner) => return inner.sorted_in_keys(),
            _ => Vec::new(),
        };
        keys.sort_unstable();
        keys
    }
}

/// What a scalar search found.
#[derive(Debug, Clone, Default)]
pub struct ScalarSearch {
    /// Row addresses (translated to the version read).
    pub rows: RoaringTreemap,
    /// Parts (pages, bitmaps) read from storage to answer (cache hits not counted).
    pub parts_loaded: u64,
}

/// Magic of the scalar index container's footer.
pub const SCALAR_MAGIC: &[u8; 4] = b"QSIX";
/// Version of the container layout.
pub const CONTAINER_VERSION: u32 = 1;
/// Bytes of the footer.
pub const FOOTER_LEN: u64 = 24;
/// Largest lookup accepted (a file claiming more is corrupt).
pub const MAX_LOOKUP_BYTES: u64 = 256 << 20;
/// Largest part accepted.
pub const MAX_PART_BYTES: u64 = 512 << 20;

/// One part as the lookup lists it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PartProto {
    #[prost(uint64, tag = "1")]
    pub offset: u64,
    #[prost(uint64, tag = "2")]
    pub length: u64,
    /// Entries (rows of a page; rows of a bitmap).
    #[prost(uint64, tag = "3")]
    pub entries: u64,
    /// Entries whose value is null (null pages; the null bitmap).
    #[prost(uint64, tag = "4")]
    pub null_count: u64,
    /// Smallest and largest key (encoded); empty for null parts.
    #[prost(bytes = "vec", tag = "5")]
    pub min: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    pub max: Vec<u8>,
}

/// The lookup of a scalar index file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LookupProto {
    /// `BTREE`, `BITMAP` or `LABEL_LIST`.
    #[prost(string, tag = "1")]
    pub index_type: String,
    /// [`KeyKind`] code.
    #[prost(uint32, tag = "2")]
    pub key_kind: u32,
    #[prost(message, repeated, tag = "3")]
    pub parts: Vec<PartProto>,
    /// Entries of all parts.
    #[prost(uint64, tag = "4")]
    pub entries: u64,
}

/// What the manifest records of a scalar index (`IndexMetadata.details`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScalarDetailsProto {
    /// [`KeyKind`] code.
    #[prost(uint32, tag = "1")]
    pub key_kind: u32,
    /// Parts of the file (pages, or distinct values plus the null bitmap).
    #[prost(uint64, tag = "2")]
    pub parts: u64,
    #[prost(uint64, tag = "3")]
    pub entries: u64,
    /// Distinct non-null values (bitmaps and label lists).
    #[prost(uint64, tag = "4")]
    pub distinct_values: u64,
}

/// Writes a container part by part.
pub(crate) struct ContainerWriter {
    writer: StorageWriter,
    parts: Vec<PartProto>,
    entries: u64,
}

impl ContainerWriter {
    pub(crate) fn new(storage: &Storage, path: &Path) -> Self {
        ContainerWriter {
            writer: storage.writer(path),
            parts: Vec::new(),
            entries: 0,
        }
    }

    /// Appends a part holding `payload`.
    pub(crate) async fn part(
        &mut self,
        payload: Vec<u8>,
        entries: u64,
        null_count: u64,
        min: Vec<u8>,
        max: Vec<u8>,
    ) -> Result<()> {
        let block = encode_block(payload);
        let offset = self.writer.position();
        let length = block.len() as u64;
        self.writer.write(Bytes::from(block)).await?;
        self.entries += entries;
        self.parts.push(PartProto {
            offset,
            length,
            entries,
            null_count,
            min,
            max,
        });
        Ok(())
    }

    /// Where the next byte goes: the start of a raw part (see [`Self::write_raw`]).
    pub(crate) fn position(&self) -> u64 {
        self.writer.position()
    }

    /// Appends bytes of a raw part: one without the block trailer, written in pieces, whose
    /// reader checks its contents itself (full-text data regions).
    pub(crate) async fn write_raw(&mut self, bytes: Vec<u8>) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.writer.write(Bytes::from(bytes)).await
    }

    /// Ends the raw part that began at `start`.
    pub(crate) fn end_raw(&mut self, start: u64, entries: u64) {
        self.entries += entries;
        self.parts.push(PartProto {
            offset: start,
            length: self.writer.position() - start,
            entries,
            null_count: 0,
            min: Vec::new(),
            max: Vec::new(),
        });
    }

    /// Writes the lookup and footer; returns the lookup and the file's size.
    pub(crate) async fn finish(
        mut self,
        index_type: &str,
        key_kind: KeyKind,
    ) -> Result<(LookupProto, u64)> {
        let lookup = LookupProto {
            index_type: index_type.to_string(),
            key_kind: key_kind as u32,
            parts: std::mem::take(&mut self.parts),
            entries: self.entries,
        };
        let block = encode_block(prost::Message::encode_to_vec(&lookup));
        let offset = self.writer.position();
        let length = block.len() as u64;
        let mut footer = Vec::with_capacity(FOOTER_LEN as usize);
        footer.extend_from_slice(&offset.to_le_bytes());
        footer.extend_from_slice(&length.to_le_bytes());
        footer.extend_from_slice(SCALAR_MAGIC);
        footer.extend_from_slice(&CONTAINER_VERSION.to_le_bytes());
        self.writer.write(Bytes::from(block)).await?;
        self.writer.write(Bytes::from(footer)).await?;
        let size = self.writer.finish().await?;
        Ok((lookup, size))
    }
}

/// An open container: its lookup, and where its parts lie. Parts are read through the store
/// handle of the operation reading them (not the opener's), so each query's I/O figures
/// count the parts it read.
#[derive(Debug)]
pub(crate) struct Container {
    pub path: Path,
    pub lookup: LookupProto,
    pub key_kind: KeyKind,
    /// Decoded min/max keys of each part (`None` for null parts).
    pub bounds: Vec<Option<(Key, Key)>>,
    /// The end of the file as read when it opened (from this offset on): parts lying in it
    /// are served without a request, so a small index costs one request in all.
    tail: (u64, Bytes),
}

/// Bytes read from the end of an index file when it opens: the footer, the lookup and, in a
/// small file, every part, in one request (a round trip on a cloud store costs about as much
/// as transferring this much).
pub(crate) const TAIL_READ: u64 = 64 * 1024;

/// The ends of an index file read when it opens, in one round trip.
pub(crate) struct Prefetch {
    /// The last bytes of the file (all of it when small).
    pub tail: Bytes,
    /// The file's size.
    pub size: u64,
    /// Its first bytes, when asked for (a part known to come first, e.g. a vector model).
    pub head: Option<Bytes>,
}

impl Prefetch {
    /// Reads the last [`TAIL_READ`] bytes of the file and, at the same time, its first
    /// `head_len` (capped at `size_bytes`, the size the manifest records; 0: none).
    pub(crate) async fn read(
        storage: &Storage,
        path: &Path,
        size_bytes: u64,
        head_len: u64,
    ) -> Result<Self> {
        let head_len = head_len.min(size_bytes);
        if head_len == 0 || size_bytes <= TAIL_READ {
            let (tail, size) = storage.read_tail(path, TAIL_READ).await?;
            return Ok(Prefetch {
                tail,
                size,
                head: None,
            });
        }
        let (tail, head) = futures::join!(
            storage.read_tail(path, TAIL_READ),
            storage.read_range(path, 0..head_len)
        );
        let (tail, size) = tail?;
        // A head that cannot be read (the file is shorter than recorded) is left to the
        // checks that follow, which say what is wrong.
        Ok(Prefetch {
            tail,
            size,
            head: head.ok(),
        })
    }

    /// The footer, when the tail holds one.
    pub(crate) fn footer(&self) -> Option<&[u8]> {
        let len = self.tail.len();
        (len as u64 >= FOOTER_LEN).then(|| &self.tail[len - FOOTER_LEN as usize..])
    }

    /// Whether the file ends with a container footer.
    pub(crate) fn is_container(&self) -> bool {
        self.footer().is_some_and(|f| &f[16..20] == SCALAR_MAGIC)
    }
}

impl Container {
    /// Reads the footer and lookup of the file at `path` (of `size_bytes` when recorded),
    /// checking that every part lies inside the file and its keys decode.
    pub(crate) async fn open(
        storage: &Storage,
        path: &Path,
        size_bytes: u64,
        index_type: &str,
    ) -> Result<Self> {
        let prefetch = Prefetch::read(storage, path, size_bytes, 0).await?;
        Self::open_with(storage, path, size_bytes, index_type, true, prefetch).await
    }

    /// Opens a container whose parts carry no keys (vector and full-text indexes): parts are
    /// checked to lie inside the file, and their sizes are left to the kind, which knows what
    /// each holds.
    pub(crate) async fn open_parts(
        storage: &Storage,
        path: &Path,
        size_bytes: u64,
        index_type: &str,
    ) -> Result<Self> {
        let prefetch = Prefetch::read(storage, path, size_bytes, 0).await?;
        Self::open_prefetched(storage, path, size_bytes, index_type, prefetch).await
    }

    /// [`Container::open_parts`] from ends of the file already read.
    pub(crate) async fn open_prefetched(
        storage: &Storage,
        path: &Path,
        size_bytes: u64,
        index_type: &str,
        prefetch: Prefetch,
    ) -> Result<Self> {
        Self::open_with(storage, path, size_bytes, index_type, false, prefetch).await
    }

    async fn open_with(
        storage: &Storage,
        path: &Path,
        size_bytes: u64,
        index_type: &str,
        keyed: bool,
        prefetch: Prefetch,
    ) -> Result<Self> {
        let size = prefetch.size;
        let bad = |why: String| Error::corrupt(path, format!("{index_type} index: {why}"));
        if size_bytes != 0 && size != size_bytes {
            return Err(bad(format!(
                "the file holds {size} bytes, the manifest says {size_bytes}"
            )));
        }
        let tail = match prefetch.footer() {
            Some(f) if &f[16..20] == SCALAR_MAGIC => f,
            _ => return Err(bad("no index footer".into())),
        };
        let u64_at = |i: usize| u64::from_le_bytes(tail[i..i + 8].try_into().unwrap_or([0; 8]));
        let version = u32::from_le_bytes(tail[20..24].try_into().unwrap_or([0; 4]));
        if version > CONTAINER_VERSION {
            return Err(Error::IncompatibleVersion {
                path: path.to_string(),
                found: version.to_string(),
                supported: format!("{CONTAINER_VERSION}"),
            });
        }
        let (offset, length) = (u64_at(0), u64_at(8));
        if length > MAX_LOOKUP_BYTES || offset.checked_add(length) != Some(size - FOOTER_LEN) {
            return Err(bad("its lookup lies outside the file".into()));
        }
        let tail_start = size - prefetch.tail.len() as u64;
        let block = if offset >= tail_start {
            let at = (offset - tail_start) as usize;
            prefetch.tail.slice(at..at + length as usize)
        } else {
            storage.read_range(path, offset..offset + length).await?
        };
        let lookup: LookupProto = decode_block_message(&block, path, "index lookup")?;
        let key_kind = KeyKind::from_code(lookup.key_kind)
            .ok_or_else(|| bad(format!("unknown key kind {}", lookup.key_kind)))?;
        if lookup.index_type != index_type {
            return Err(bad(format!("the file holds a {} index", lookup.index_type)));
        }
        let mut bounds = Vec::with_capacity(lookup.parts.len());
        let mut entries = 0u64;
        for part in &lookup.parts {
            let end = part.offset.checked_add(part.length);
            if end.is_none_or(|e| e > offset) || (keyed && part.length > MAX_PART_BYTES) {
                return Err(bad("a part lies outside the file".into()));
            }
            entries = entries.saturating_add(part.entries);
            if !keyed {
                bounds.push(None);
                continue;
            }
            if part.null_count > 0 && part.min.is_empty() {
                bounds.push(None);
                continue;
            }
            let min = Key::decode(key_kind, &part.min);
            let max = Key::decode(key_kind, &part.max);
            match (min, max) {
                (Some(min), Some(max)) if min <= max => bounds.push(Some((min, max))),
                _ => return Err(bad("a part's key range does not decode".into())),
            }
        }
        if entries != lookup.entries {
            return Err(bad("its parts do not add up to its entry count".into()));
        }
        // Only the parts' share of the tail is worth keeping.
        let parts_end = offset;
        let kept = if parts_end > tail_start {
            (
                tail_start,
                Bytes::copy_from_slice(&prefetch.tail[..(parts_end - tail_start) as usize]),
            )
        } else {
            (parts_end, Bytes::new())
        };
        Ok(Container {
            path: path.clone(),
            lookup,
            key_kind,
            bounds,
            tail: kept,
        })
    }

    /// The checked payload of part `i`, read through `storage` (a part load: reported to
    /// `quiver::io_events`).
    pub(crate) async fn read_part(&self, storage: &Storage, i: usize) -> Result<Bytes> {
        let vector = self.lookup.index_type.starts_with("IVF");
        crate::events::part_loaded(vector, &self.path, i);
        self.read_part_from(storage, i, None).await
    }

    /// The checked payload of part `i`, taken from `head` (the file's first bytes) or the
    /// tail read at open when either holds it, read through `storage` otherwise.
    pub(crate) async fn read_part_from(
        &self,
        storage: &Storage,
        i: usize,
        head: Option<&Bytes>,
    ) -> Result<Bytes> {
        let part = self
            .lookup
            .parts
            .get(i)
            .ok_or_else(|| Error::Internal(format!("index part {i} does not exist")))?;
        let (start, end) = (part.offset, part.offset + part.length);
        let (tail_start, tail) = &self.tail;
        let block = if start >= *tail_start && end <= tail_start + tail.len() as u64 {
            tail.slice((start - tail_start) as usize..(end - tail_start) as usize)
        } else if let Some(head) = head.filter(|h| end <= h.len() as u64) {
            head.slice(start as usize..end as usize)
        } else {
            storage.read_range(&self.path, start..end).await?
        };
        let len = decode_block(&block, &self.path, "index part")?.len();
        Ok(block.slice(0..len))
    }

    /// Heap bytes of the lookup and of the parts' bytes kept from the open.
    pub(crate) fn heap_bytes(&self) -> usize {
        256 + self.tail.1.len()
            + self
                .lookup
                .parts
                .iter()
                .map(|p| 96 + 2 * (p.min.len() + p.max.len()))
                .sum::<usize>()
    }
}

/// Translates `rows` through `parts` and removes dropped ones, keeping their order.
pub(crate) async fn translate_rows(parts: &PartContext<'_>, rows: &mut Vec<u64>) -> Result<()> {
    if parts.translate.is_identity() {
        return Ok(());
    }
    parts.translate.translate(rows).await?;
    rows.retain(|&r| r != DROPPED_ROW);
    Ok(())
}

/// A treemap of `rows` (any order).
pub(crate) fn treemap_of(mut rows: Vec<u64>) -> RoaringTreemap {
    rows.sort_unstable();
    rows.dedup();
    RoaringTreemap::from_sorted_iter(rows).unwrap_or_default()
}
