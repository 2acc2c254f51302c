//! Deletion vectors: which rows of a fragment are deleted, as a roaring bitmap of row offsets.
//!
//! Each delete writes a new file per affected fragment holding the fragment's complete set of
//! deleted rows (the previous set plus the new rows), so a reader needs one file per fragment.
//! The file is the bitmap's portable roaring serialization framed as a checksummed block.

use bytes::Bytes;
use roaring::RoaringBitmap;

use super::manifest::{DeletionFileProto, DELETIONS_DIR};
use crate::error::{Error, Result};
use crate::format::{decode_block, encode_block};
use crate::storage::Storage;

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
    table
        .put(&table.path(&relative), Bytes::from(encode_block(payload)))
        .await?;
    Ok(DeletionFileProto {
        path: relative,
        num_deleted_rows: deleted.len(),
    })
}

/// Reads and checks a deletion vector.
pub async fn read_deletion_file(
    table: &Storage,
    file: &DeletionFileProto,
) -> Result<RoaringBitmap> {
    let path = table.path(&file.path);
    let bytes = table.read_all(&path).await?;
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
