//! Quiver's columnar data file format (specified byte by byte in docs/FORMAT.md).
//!
//! This module owns the file layout: header, per-column pages, checksummed metadata blocks
//! (column metadata with its page table and statistics, the column index) and the fixed-size
//! footer. [`writer`] produces files from record batches; [`reader`] opens them, reads pages for
//! scans and fetches single values for `take`. Block framing here is shared with manifests and
//! deletion files so that every metadata block in a table carries a version and a CRC-32.

pub mod encoding;
pub mod reader;
pub mod stats;
pub mod writer;

use crate::error::{Error, Result};
use crate::schema::FieldProto;

/// Major format version: readers refuse files with a larger one.
pub const FORMAT_MAJOR: u16 = 1;
/// Minor format version: additions a reader of the same major version may ignore.
pub const FORMAT_MINOR: u16 = 0;

/// Magic bytes at the start and at the very end of a data file.
pub const DATA_MAGIC: &[u8; 4] = b"QVRD";
/// Length of the file header (magic + major + minor).
pub const HEADER_LEN: u64 = 8;
/// Length of the fixed footer at the end of a data file.
pub const FOOTER_LEN: u64 = 40;
/// Every page starts at a multiple of this in the file.
pub const PAGE_ALIGNMENT: u64 = 64;
/// Trailer appended to every metadata block: major (u16) + minor (u16) + crc32 (u32).
pub const BLOCK_TRAILER_LEN: usize = 8;

// Limits on what a file may claim. Every size, count and offset read from a file is checked
// against the file's length and against these before anything is read or allocated from it,
// so a crafted file costs at most a bounded read and a bounded allocation, then `Corrupt`.

/// Most rows a data file (and so a fragment) holds: a row address keeps the offset in 32 bits.
pub const MAX_FILE_ROWS: u64 = u32::MAX as u64;
/// Largest column index block a reader accepts (some 300,000 columns).
pub const MAX_COLUMN_INDEX_BYTES: u64 = 4 << 20;
/// Largest metadata region (the column metadata blocks of one data file) a reader accepts:
/// room for about 1.5 million pages, some 6 TB at the default page size.
pub const MAX_METADATA_BYTES: u64 = 64 << 20;
/// Most heap memory decoding the metadata of one file (a data file's blocks together, or a
/// manifest) may take, as bounded by [`decoded_size`] before decoding.
pub const MAX_DECODED_BYTES: u64 = 512 << 20;

/// What decoding a protobuf message allocates, enough to bound it from the encoded bytes
/// before decoding. Protobuf amplifies: an empty nested message is two bytes encoded but a
/// whole struct decoded, a packed varint one byte encoded but eight decoded, so a small
/// crafted block could otherwise claim gigabytes. Every message-typed field of a stored
/// message must be listed here (a field left out would be counted as bytes only).
#[derive(Debug)]
pub struct Shape {
    /// `size_of` the decoded struct (or map entry).
    pub size: usize,
    /// Message-typed and map fields, by tag.
    pub messages: &'static [(u32, &'static Shape)],
    /// Tags of repeated scalar fields (each value decodes to up to 8 bytes).
    pub repeated: &'static [u32],
}

/// A `map<string, string>` entry: the two strings' headers and the hash table's overhead.
pub static MAP_ENTRY_SHAPE: Shape = Shape {
    size: std::mem::size_of::<(String, String)>() + 16,
    messages: &[],
    repeated: &[],
};

/// An upper bound of the heap bytes decoding `payload` as a message of `shape` allocates
/// (strings, byte fields, vectors, nested structs; not counting the growth slack of vectors).
/// Fails on bytes that are not protobuf. Recursion follows `shape`, so it is as deep as the
/// message definitions, whatever the bytes say.
pub fn decoded_size(payload: &[u8], shape: &Shape) -> std::result::Result<u64, String> {
    fn varint(buf: &mut &[u8]) -> std::result::Result<u64, String> {
        prost::encoding::decode_varint(buf).map_err(|e| e.to_string())
    }
    fn split(buf: &[u8], len: u64) -> std::result::Result<(&[u8], &[u8]), String> {
        usize::try_from(len)
            .ok()
            .filter(|&len| len <= buf.len())
            .map(|len| buf.split_at(len))
            .ok_or_else(|| "a field runs past the end of its message".to_string())
    }
    let mut buf = payload;
    let mut total = 0u64;
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let tag = u32::try_from(key >> 3).map_err(|_| "field tag out of range".to_string())?;
        let repeated = shape.repeated.contains(&tag);
        match key & 7 {
            0 => {
                varint(&mut buf)?;
            }
            1 => buf = split(buf, 8)?.1,
            5 => buf = split(buf, 4)?.1,
            2 => {
                let len = varint(&mut buf)?;
                let field;
                (field, buf) = split(buf, len)?;
                total += match shape.messages.iter().find(|(t, _)| *t == tag) {
                    Some((_, child)) => child.size as u64 + decoded_size(field, child)?,
                    // Packed: up to one 8-byte value per byte.
                    None if repeated => 8 * field.len() as u64,
                    None => field.len() as u64,
                };
                continue;
            }
            wire => return Err(format!("wire type {wire} is not used by Quiver")),
        }
        // A scalar lives in its struct, unless it is one more value of a repeated field.
        if repeated {
            total += 8;
        }
    }
    Ok(total)
}

/// Decodes a protobuf message from a checksummed block after bounding what decoding it
/// allocates: the bound is taken from `budget` (shared by the blocks of one file), and a
/// block that would exceed it is corrupt.
pub fn decode_bounded_message<M: prost::Message + Default>(
    block: &[u8],
    path: &dyn std::fmt::Display,
    what: &str,
    shape: &Shape,
    budget: &mut u64,
) -> Result<M> {
    let payload = decode_block(block, path, what)?;
    let size = decoded_size(payload, shape)
        .map_err(|e| Error::corrupt(path, format!("{what} block does not decode: {e}")))?;
    *budget = budget.checked_sub(size).ok_or_else(|| {
        Error::corrupt(
            path,
            format!(
                "{what} block would take more than the {MAX_DECODED_BYTES} bytes of memory \
                 allowed for a file's metadata"
            ),
        )
    })?;
    M::decode(payload)
        .map_err(|e| Error::corrupt(path, format!("{what} block does not decode: {e}")))
}

/// Frames `payload` as a metadata block: payload, format version, CRC-32 of both.
pub fn encode_block(mut payload: Vec<u8>) -> Vec<u8> {
    payload.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
    payload.extend_from_slice(&FORMAT_MINOR.to_le_bytes());
    let crc = crc32fast::hash(&payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    payload
}

/// Checks a block's CRC and version and returns its payload.
pub fn decode_block<'a>(
    block: &'a [u8],
    path: &dyn std::fmt::Display,
    what: &str,
) -> Result<&'a [u8]> {
    if block.len() < BLOCK_TRAILER_LEN {
        return Err(Error::corrupt(path, format!("{what} block is truncated")));
    }
    let (body, crc_bytes) = block.split_at(block.len() - 4);
    let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if crc32fast::hash(body) != stored {
        return Err(Error::corrupt(
            path,
            format!("{what} block checksum mismatch"),
        ));
    }
    let (payload, version) = body.split_at(body.len() - 4);
    let major = u16::from_le_bytes([version[0], version[1]]);
    let minor = u16::from_le_bytes([version[2], version[3]]);
    if major > FORMAT_MAJOR {
        return Err(Error::IncompatibleVersion {
            path: path.to_string(),
            found: format!("{major}.{minor}"),
            supported: format!("{FORMAT_MAJOR}.x"),
        });
    }
    Ok(payload)
}

/// Decodes a protobuf message from a checksummed block whose size the caller has already
/// checked against what it declares (index files; metadata uses [`decode_bounded_message`]).
pub fn decode_block_message<M: prost::Message + Default>(
    block: &[u8],
    path: &dyn std::fmt::Display,
    what: &str,
) -> Result<M> {
    let payload = decode_block(block, path, what)?;
    M::decode(payload)
        .map_err(|e| Error::corrupt(path, format!("{what} block does not decode: {e}")))
}

/// Per-page entry of the page table (protobuf message `Page`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PageProto {
    /// Absolute offset of the page in the file (a multiple of 64).
    #[prost(uint64, tag = "1")]
    pub offset: u64,
    #[prost(uint64, tag = "2")]
    pub length: u64,
    #[prost(uint64, tag = "3")]
    pub num_rows: u64,
    /// Nulls in the column's top-level values on this page.
    #[prost(uint64, tag = "4")]
    pub null_count: u64,
    /// CRC-32 of the page bytes.
    #[prost(uint32, tag = "5")]
    pub crc32: u32,
    /// Buffer table: (offset, length) pairs relative to the page start, depth-first order.
    #[prost(uint64, repeated, tag = "6")]
    pub buffers: Vec<u64>,
    /// Smallest non-null value, encoded as described in FORMAT.md "Statistics".
    #[prost(bytes = "vec", optional, tag = "7")]
    pub min: Option<Vec<u8>>,
    /// Largest non-null value.
    #[prost(bytes = "vec", optional, tag = "8")]
    pub max: Option<Vec<u8>>,
    /// Whether any float value on the page is NaN (min/max then ignore NaNs).
    #[prost(bool, tag = "9")]
    pub has_nan: bool,
}

/// Metadata of one column of a data file (protobuf message `ColumnMetadata`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ColumnMetadataProto {
    /// Top-level field id of the column in the table schema.
    #[prost(int32, tag = "1")]
    pub field_id: i32,
    /// The column's field subtree (its own field first), to check it against the table schema.
    #[prost(message, repeated, tag = "2")]
    pub fields: Vec<FieldProto>,
    /// Page table, in row order.
    #[prost(message, repeated, tag = "3")]
    pub pages: Vec<PageProto>,
}

/// Location of one column metadata block.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ColumnLocation {
    #[prost(int32, tag = "1")]
    pub field_id: i32,
    #[prost(uint64, tag = "2")]
    pub offset: u64,
    #[prost(uint64, tag = "3")]
    pub length: u64,
}

/// The column index block the footer points at (protobuf message `ColumnIndex`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ColumnIndexProto {
    #[prost(message, repeated, tag = "1")]
    pub columns: Vec<ColumnLocation>,
    #[prost(uint64, tag = "2")]
    pub num_rows: u64,
}

/// [`PageProto`]: `buffers` is repeated; statistics are bytes.
pub static PAGE_SHAPE: Shape = Shape {
    size: std::mem::size_of::<PageProto>(),
    messages: &[],
    repeated: &[6],
};

/// [`ColumnMetadataProto`].
pub static COLUMN_METADATA_SHAPE: Shape = Shape {
    size: std::mem::size_of::<ColumnMetadataProto>(),
    messages: &[(2, &crate::schema::FIELD_SHAPE), (3, &PAGE_SHAPE)],
    repeated: &[],
};

static COLUMN_LOCATION_SHAPE: Shape = Shape {
    size: std::mem::size_of::<ColumnLocation>(),
    messages: &[],
    repeated: &[],
};

/// [`ColumnIndexProto`].
pub static COLUMN_INDEX_SHAPE: Shape = Shape {
    size: std::mem::size_of::<ColumnIndexProto>(),
    messages: &[(1, &COLUMN_LOCATION_SHAPE)],
    repeated: &[],
};

/// The fixed 40-byte footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    pub column_index_offset: u64,
    pub column_index_length: u32,
    pub num_columns: u32,
    pub num_rows: u64,
    pub major: u16,
    pub minor: u16,
}

impl Footer {
    pub fn encode(&self) -> [u8; FOOTER_LEN as usize] {
        let mut out = [0u8; FOOTER_LEN as usize];
        out[0..8].copy_from_slice(&self.column_index_offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.column_index_length.to_le_bytes());
        out[12..16].copy_from_slice(&self.num_columns.to_le_bytes());
        out[16..24].copy_from_slice(&self.num_rows.to_le_bytes());
        out[24..26].copy_from_slice(&self.major.to_le_bytes());
        out[26..28].copy_from_slice(&self.minor.to_le_bytes());
        // 28..32 reserved, zero.
        let crc = crc32fast::hash(&out[0..32]);
        out[32..36].copy_from_slice(&crc.to_le_bytes());
        out[36..40].copy_from_slice(DATA_MAGIC);
        out
    }

    pub fn decode(bytes: &[u8], path: &dyn std::fmt::Display) -> Result<Self> {
        let b: &[u8; FOOTER_LEN as usize] = bytes
            .try_into()
            .map_err(|_| Error::corrupt(path, "footer is truncated"))?;
        if &b[36..40] != DATA_MAGIC {
            return Err(Error::corrupt(
                path,
                "not a Quiver data file (bad magic at end); it may be truncated",
            ));
        }
        let crc = u32::from_le_bytes([b[32], b[33], b[34], b[35]]);
        if crc32fast::hash(&b[0..32]) != crc {
            return Err(Error::corrupt(path, "footer checksum mismatch"));
        }
        let u64_at = |i: usize| {
            u64::from_le_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let footer = Footer {
            column_index_offset: u64_at(0),
            column_index_length: u32_at(8),
            num_columns: u32_at(12),
            num_rows: u64_at(16),
            major: u16::from_le_bytes([b[24], b[25]]),
            minor: u16::from_le_bytes([b[26], b[27]]),
        };
        if footer.major > FORMAT_MAJOR {
            return Err(Error::IncompatibleVersion {
                path: path.to_string(),
                found: format!("{}.{}", footer.major, footer.minor),
                supported: format!("{FORMAT_MAJOR}.x"),
            });
        }
        Ok(footer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_detects_any_flipped_byte() {
        let block = encode_block(b"hello metadata".to_vec());
        assert_eq!(
            decode_block(&block, &"t", "test").unwrap(),
            b"hello metadata"
        );
        for i in 0..block.len() {
            let mut bad = block.clone();
            bad[i] ^= 0x40;
            assert!(
                decode_block(&bad, &"t", "test").is_err(),
                "flip at {i} undetected"
            );
        }
        assert!(decode_block(&block[..5], &"t", "test").is_err());
    }

    #[test]
    fn decoded_size_bounds_what_decoding_allocates() {
        // A real column's metadata: the bound covers its structs, strings and buffer table.
        let page = PageProto {
            offset: 64,
            length: 4096,
            num_rows: 100,
            buffers: vec![0, 0, 0, 400],
            min: Some(vec![1; 8]),
            ..Default::default()
        };
        let column = ColumnMetadataProto {
            field_id: 3,
            fields: vec![FieldProto {
                id: 3,
                parent_id: -1,
                name: "x".into(),
                logical_type: "int32".into(),
                metadata: [("k".to_string(), "v".to_string())].into(),
                ..Default::default()
            }],
            pages: vec![page.clone(), page],
        };
        let bytes = prost::Message::encode_to_vec(&column);
        let bound = decoded_size(&bytes, &COLUMN_METADATA_SHAPE).unwrap();
        let structs = 2 * std::mem::size_of::<PageProto>() + std::mem::size_of::<FieldProto>();
        assert!(bound >= (structs + 2 * (32 + 8) + 2) as u64, "{bound}");

        // A crafted block of empty pages: two bytes each encoded, a whole struct each decoded.
        let empties: Vec<u8> = [0x1a, 0x00].repeat(1 << 20);
        let bound = decoded_size(&empties, &COLUMN_METADATA_SHAPE).unwrap();
        assert_eq!(bound, (1 << 20) * std::mem::size_of::<PageProto>() as u64);
        let mut budget = bound - 1;
        let block = encode_block(empties);
        let err = decode_bounded_message::<ColumnMetadataProto>(
            &block,
            &"f",
            "column metadata",
            &COLUMN_METADATA_SHAPE,
            &mut budget,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");

        // Packed varints: one byte each encoded, eight decoded.
        let packed = PageProto {
            buffers: vec![1; 1000],
            ..Default::default()
        };
        let bytes = prost::Message::encode_to_vec(&packed);
        assert!(decoded_size(&bytes, &PAGE_SHAPE).unwrap() >= 8000);

        // Not protobuf: a length past the end, an unused wire type.
        assert!(decoded_size(&[0x1a, 0x05, 0x00], &COLUMN_METADATA_SHAPE).is_err());
        assert!(decoded_size(&[0x0b], &COLUMN_METADATA_SHAPE).is_err());
    }

    #[test]
    fn footer_round_trip() {
        let f = Footer {
            column_index_offset: 12345,
            column_index_length: 99,
            num_columns: 3,
            num_rows: 1 << 40,
            major: FORMAT_MAJOR,
            minor: FORMAT_MINOR,
        };
        assert_eq!(Footer::decode(&f.encode(), &"t").unwrap(), f);
    }
}
