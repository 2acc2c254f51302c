//! Ranged reads of local files without object_store's per-request cost.
//!
//! `LocalFileSystem` opens the file and hops to a blocking thread for every ranged read. Our
//! files are immutable once named (uuid names, written once), so open handles are kept in a
//! small cache and read with `pread`; reads up to [`INLINE_BYTES`] run on the calling task (a
//! page-cache hit costs microseconds, less than waking a thread), larger ones (scan pages) on
//! a blocking thread into buffers that are not zeroed first. With `memory_map` on, exact search
//! reads vector pages through memory maps of whole files, kept beside the handles.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use quick_cache::sync::Cache;

use crate::error::{Error, Result};

/// Reads of at most this many bytes in total run inline.
const INLINE_BYTES: u64 = 512 * 1024;
/// Open handles kept.
const HANDLES: usize = 512;

/// Open read handles of local files, keyed by object path.
#[derive(Debug)]
pub(crate) struct LocalFiles {
    /// The store the files belong to: it maps object paths to files.
    store: Arc<LocalFileSystem>,
    handles: Cache<Path, Arc<File>>,
    /// Memory maps of whole files, when the store maps files.
    maps: Option<Cache<Path, Arc<memmap2::Mmap>>>,
}

fn store_error(path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::Storage(object_store::Error::NotFound {
            path: path.to_string(),
            source: Box::new(e),
        })
    } else {
        Error::Storage(object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        })
    }
}

/// Reads a large `range` of the file at `path` through its own handle: `read_to_end` fills
/// the buffer's spare capacity without zeroing it first (pages of megabytes: zeroing them cost
/// as much as a sixth of an exact search). Stops early at the end of the file, and allocates
/// no more than the file holds, whatever range a damaged file led the caller to ask for.
/// Reads `range` of `file` (opened for this call alone: it moves the file's cursor) into a
/// buffer that is not zeroed first.
fn read_large(file: &mut File, size: u64, range: &Range<u64>) -> std::io::Result<Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(range.start))?;
    let len = range.end.min(size).saturating_sub(range.start);
    let capacity = usize::try_from(len).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "range too large to read")
    })?;
    let mut buf = Vec::with_capacity(capacity);
    Read::by_ref(file).take(len).read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

/// Reads `range` of `file`; stops early at the end of the file (the caller checks lengths).
fn read_range(file: &File, range: &Range<u64>) -> std::io::Result<Bytes> {
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], range.start + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}

impl LocalFiles {
    pub(crate) fn new(store: Arc<LocalFileSystem>, memory_map: bool) -> Self {
        LocalFiles {
            store,
            handles: Cache::new(HANDLES),
            maps: memory_map.then(|| Cache::new(HANDLES)),
        }
    }

    /// The file an object path names, exactly as the store maps it.
    fn fs_path(&self, path: &Path) -> Result<std::path::PathBuf> {
        Ok(self.store.path_to_filesystem(path)?)
    }

    fn open(&self, path: &Path) -> Result<Arc<File>> {
        if let Some(file) = self.handles.get(path) {
            return Ok(file);
        }
        let file = Arc::new(File::open(self.fs_path(path)?).map_err(|e| store_error(path, e))?);
        self.handles.insert(path.clone(), file.clone());
        Ok(file)
    }

    /// A memory map of the whole file at `path`, kept like the handles; `None` unless the
    /// store maps files.
    pub(crate) fn mapping(&self, path: &Path) -> Result<Option<Arc<memmap2::Mmap>>> {
        let Some(maps) = &self.maps else {
            return Ok(None);
        };
        if let Some(map) = maps.get(path) {
            return Ok(Some(map));
        }
        let file = self.open(path)?;
        // SAFETY: our data files are immutable once named (written to a staging name, then
        // linked into place; never modified or truncated after), so the mapped bytes do not
        // change under the slices handed out. Only another program rewriting the file in
        // place breaks this, which is the documented cost of `memory_map`.
        let map = unsafe { memmap2::Mmap::map(&*file) }.map_err(|e| store_error(path, e))?;
        let map = Arc::new(map);
        maps.insert(path.clone(), map.clone());
        Ok(Some(map))
    }

    /// The size of the file at `path`, `None` when there is none (a folder counts as none,
    /// as for `LocalFileSystem::head`).
    pub(crate) fn size_of(&self, path: &Path) -> Result<Option<u64>> {
        match std::fs::metadata(self.fs_path(path)?) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(store_error(path, e)),
        }
    }

    /// The cached open handle of the file at `path`.
    pub(crate) fn handle(&self, path: &Path) -> Result<Arc<File>> {
        self.open(path)
    }

    /// Reads each of `ranges` (already coalesced) of the file at `path`.
    pub(crate) async fn read_ranges(
        &self,
        path: &Path,
        ranges: &[Range<u64>],
    ) -> Result<Vec<Bytes>> {
        let total: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        if total <= INLINE_BYTES {
            let file = self.open(path)?;
            return ranges
                .iter()
                .map(|r| read_range(&file, r).map_err(|e| store_error(path, e)))
                .collect();
        }
        let ranges = ranges.to_vec();
        let owned = path.clone();
        let local = self.fs_path(path)?;
        tokio::task::spawn_blocking(move || {
            // One open for all the ranges (a take of scattered rows has hundreds).
            let mut file = File::open(&local).map_err(|e| store_error(&owned, e))?;
            let size = file.metadata().map_err(|e| store_error(&owned, e))?.len();
            ranges
                .iter()
                .map(|r| read_large(&mut file, size, r).map_err(|e| store_error(&owned, e)))
                .collect()
        })
        .await
        .map_err(|e| Error::Internal(format!("read task failed: {e}")))?
    }

    /// The last `len` bytes of the file (all of it when smaller) and the file's size.
    pub(crate) async fn read_tail(&self, path: &Path, len: u64) -> Result<(Bytes, u64)> {
        let file = self.open(path)?;
        let size = file.metadata().map_err(|e| store_error(path, e))?.len();
        let range = size.saturating_sub(len)..size;
        let mut out = self.read_ranges(path, std::slice::from_ref(&range)).await?;
        Ok((out.pop().unwrap_or_default(), size))
    }
}
