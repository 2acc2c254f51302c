//! Deletion vectors: which rows of a fragment are deleted, as a roaring bitmap of row offsets.
//!
//! Each delete writes a new file per affected fragment holding the fragment's complete set of
//! deleted rows (the previous set plus the new rows), so a reader needs one file per fragment.
//! The file is the bitmap's portable roaring serialization framed as a checksummed block.

use bytes::Bytes;
use roaring::RoaringBitmap;

use super::manifest::{DeletionFileProto, FragmentProto, DELETIONS_DIR};
use crate::error::{Error, Result};
use crate::format::{decode_block, encode_block, BLOCK_TRAILER_LEN};
use crate::storage::Storage;

/// The most bytes the portable serialization of a bitmap of `n` values takes: a cookie and
/// container count (8), the run-container flags (one bit per container, at most 8 KiB), and
/// per container a key, cardinality and offset (8) and its values: an array (2 bytes a value),
/// runs (2 + 4 bytes a run, at most one run a value) or a bitmap (8 KiB, used only above 4,096
/// values, so under 2 bytes a value). A deletion file is checked against it (with the
/// manifest's count) before it is read.
fn max_serialized_size(n: u64) -> u64 {
    let containers = n.min(1 << 16);
    8 + 8192 + containers * 10 + n * 4 + BLOCK_TRAILER_LEN as u64
}

/// Writes the deletion vector of `fragment_id` and returns its manifest entry.
pub async fn write_deletion_file(
    table: &Storage,
    fragment_id: u64,
    version: u64,
    deleted: &RoaringBitmap,
) -> Result<DeletionFileProto> {
    let mut payload = Vec::with_capacity(deleted.serialized_size());
    deleted
        .serialize_into(&mut payload)
        .map_err(|e| Error::Internal(format!("serializing deletion vector: {e}")))?;
    let relative = format!(
        "{DELETIONS_DIR}/{fragment_id}-{version}-{}.del",
        uuid::Uuid::new_v4().simple()
    );
    let bytes = Bytes::from(encode_block(payload));
    let size_bytes = bytes.len() as u64;
    table.put(&table.path(&relative), bytes).await?;
    Ok(DeletionFileProto {
        path: relative,
        num_deleted_rows: deleted.len(),
        size_bytes,
    })
}

/// Reads and checks a deletion vector: its size against the count the manifest gives, its
/// checksum, and that it holds that many rows (the roaring decoder bounds its own allocations
/// by the container count, at most 65,536, and reads no further than the bytes).
pub async fn read_deletion_file(
    table: &Storage,
    file: &DeletionFileProto,
) -> Result<RoaringBitmap> {
    let path = table.path(&file.path);
    let limit = max_serialized_size(file.num_deleted_rows);
    let (bytes, _) = table
        .read_all_at_most(&path, limit, "deletion vector")
        .await?;
    let payload = decode_block(&bytes, &path, "deletion vector")?;
    let bitmap = RoaringBitmap::deserialize_from(payload)
        .map_err(|e| Error::corrupt(&path, format!("deletion vector does not decode: {e}")))?;
    if bitmap.len() != file.num_deleted_rows {
        return Err(Error::corrupt(
            &path,
            format!(
                "deletion vector holds {} rows but the manifest says {}",
                bitmap.len(),
                file.num_deleted_rows
            ),
        ));
    }
    Ok(bitmap)
}

/// Checks that `deleted` names only rows `fragment` has: a row address keeps the offset in 32
/// bits, so a crafted vector could otherwise hide rows of nothing and throw counts off.
pub fn check_rows(
    deleted: &RoaringBitmap,
    fragment: &FragmentProto,
    path: &dyn std::fmt::Display,
) -> Result<()> {
    match deleted.max() {
        Some(last) if u64::from(last) >= fragment.physical_rows => Err(Error::corrupt(
            path,
            format!(
                "deletion vector names row {last} of fragment {}, which has {} rows",
                fragment.id, fragment.physical_rows
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The size limit derived from the manifest's count never refuses a real file:
        /// single rows (arrays), dense runs (bitmaps, or run containers once optimised),
        /// every other row (the most runs a container can hold).
        #[test]
        fn size_limit_covers_every_serialized_bitmap(
            rows in proptest::collection::vec(0u32..4_000_000, 0..300),
            ranges in proptest::collection::vec((0u32..4_000_000, 0u32..70_000), 0..4),
            alternate in proptest::option::of(0u32..200_000),
            optimize in any::<bool>(),
        ) {
            let mut bitmap: RoaringBitmap = rows.into_iter().collect();
            for (start, len) in ranges {
                bitmap.insert_range(start..start.saturating_add(len));
            }
            if let Some(start) = alternate {
                bitmap.extend((start..start + 70_000).step_by(2));
            }
            if optimize {
                bitmap.optimize();
            }
            let framed = (bitmap.serialized_size() + BLOCK_TRAILER_LEN) as u64;
            prop_assert!(framed <= max_serialized_size(bitmap.len()));
        }
    }

    #[test]
    fn rows_past_the_fragment_are_corrupt() {
        let fragment = FragmentProto {
            id: 4,
            physical_rows: 10,
            ..Default::default()
        };
        let fits: RoaringBitmap = [0, 9].into_iter().collect();
        check_rows(&fits, &fragment, &"d").expect("rows of the fragment");
        check_rows(&RoaringBitmap::new(), &fragment, &"d").expect("nothing deleted");
        let past: RoaringBitmap = [3, 10].into_iter().collect();
        let err = check_rows(&past, &fragment, &"d").unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
