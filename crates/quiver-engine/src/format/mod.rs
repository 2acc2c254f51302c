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

/// Decodes a protobuf message from a checksummed block.
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
