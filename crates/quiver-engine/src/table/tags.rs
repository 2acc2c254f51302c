//! Tags: names for versions. A tag is the object `_refs/tags/<name>.json` under the table's
//! folder holding `{"version":N}`. Creating one is a conditional put, so of two writers
//! creating the same name exactly one wins; moving one replaces the object atomically. Tags
//! are not table versions: creating, moving or deleting one commits nothing, and works on a
//! handle checked out at an old version too.

use bytes::Bytes;

use super::Table;
use crate::error::{Error, Result};

const TAGS_DIR: &str = "_refs/tags";
const SUFFIX: &str = ".json";
/// Longest tag name: a path component on every file system.
const MAX_NAME_BYTES: usize = 200;

/// A tag and the version it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    pub name: String,
    pub version: u64,
}

/// Tag names become object names: letters, digits, `.`, `_`, `-` (not leading `.` or `-`, no
/// `..`), so no name can reach outside the tags folder or collide with a temporary file.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.starts_with(['.', '-'])
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid tag name {name:?}: use 1 to {MAX_NAME_BYTES} letters, digits, '.', '_' or '-', not starting with '.' or '-' and without '..'"
        )))
    }
}

fn encode(version: u64) -> Bytes {
    Bytes::from(format!("{{\"version\":{version}}}\n"))
}

fn decode(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let (key, value) = inner.split_once(':')?;
    (key.trim() == "\"version\"")
        .then(|| value.trim().parse::<u64>().ok())
        .flatten()
        .filter(|&v| v > 0)
}

impl Table {
    fn tag_path(&self, name: &str) -> object_store::path::Path {
        self.inner
            .storage
            .path(&format!("{TAGS_DIR}/{name}{SUFFIX}"))
    }

    /// Every tag, sorted by name.
    pub async fn list_tags(&self) -> Result<Vec<TagInfo>> {
        let prefix = self.inner.storage.path(TAGS_DIR);
        let mut tags = Vec::new();
        for object in self.inner.storage.list(&prefix).await? {
            let Some(name) = object
                .location
                .filename()
                .and_then(|f| f.strip_suffix(SUFFIX))
                .filter(|n| check_name(n).is_ok())
            else {
                // Staging files of an interrupted write, or foreign files: not tags.
                continue;
            };
            let name = name.to_string();
            let version = match self.tag_version(&name).await {
                Ok(v) => v,
                // A tag file a power cut took the bytes of (its creation was never
                // acknowledged), or one damaged outside Quiver: it names no version, so it
                // is no tag; `delete_tag` removes it.
                Err(Error::Corrupt { .. }) | Err(Error::TagNotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            tags.push(TagInfo { name, version });
        }
        tags.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tags)
    }

    /// The version `name` points at.
    pub async fn tag_version(&self, name: &str) -> Result<u64> {
        check_name(name)?;
        let path = self.tag_path(name);
        let bytes = match self
            .inner
            .storage
            .read_all_at_most(&path, 4096, "tag file")
            .await
        {
            Ok((bytes, _)) => bytes,
            Err(Error::Storage(object_store::Error::NotFound { .. })) => {
                return Err(Error::TagNotFound(name.to_string()))
            }
            Err(e) => return Err(e),
        };
        decode(&bytes).ok_or_else(|| Error::corrupt(&path, "a tag file must hold {\"version\":N}"))
    }

    /// Names `version` (which must exist) `name`; fails if the tag exists.
    pub async fn create_tag(&self, name: &str, version: u64) -> Result<()> {
        check_name(name)?;
        self.inner.manifest(version).await?;
        let created = self
            .inner
            .storage
            .put_if_absent(&self.tag_path(name), encode(version))
            .await?;
        if created {
            Ok(())
        } else {
            Err(Error::TagAlreadyExists(name.to_string()))
        }
    }

    /// Moves the existing tag `name` to `version` (which must exist).
    pub async fn update_tag(&self, name: &str, version: u64) -> Result<()> {
        self.tag_version(name).await?;
        self.inner.manifest(version).await?;
        self.inner
            .storage
            .put(&self.tag_path(name), encode(version))
            .await
    }

    /// Removes the tag `name` (the version stays); a damaged tag file is removed too.
    pub async fn delete_tag(&self, name: &str) -> Result<()> {
        match self.tag_version(name).await {
            Ok(_) | Err(Error::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
        self.inner.storage.delete(&self.tag_path(name)).await
    }

    /// Checks out the version `name` points at (read-only, like [`Table::checkout`]).
    pub async fn checkout_tag(&self, name: &str) -> Result<u64> {
        let version = self.tag_version(name).await?;
        self.checkout(version).await?;
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_tags_folder() {
        for good in ["v1", "release-2024.01", "a_b", "X"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_NAME_BYTES + 1);
        for bad in [
            "", "../x", "a/b", ".hidden", "-x", "a..b", "a b", "é", "a\0b", &long,
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tag_files_round_trip_and_refuse_garbage() {
        assert_eq!(decode(&encode(42)), Some(42));
        assert_eq!(decode(b" { \"version\" : 7 } "), Some(7));
        for bad in [
            &b""[..],
            b"{}",
            b"{\"version\":0}",
            b"{\"v\":1}",
            b"\xff",
            b"{\"version\":-1}",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
