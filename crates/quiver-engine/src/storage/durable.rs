//! Durability: making written files survive power loss, and sharing the flushes that costs.
//!
//! A store's writes reach the page cache first; a power cut or OS crash loses whatever the
//! disk had not received, in any order. [`Flush`] makes chosen objects durable, content and
//! name. Local disks flush with `fsync` of each file and of the directories that name it
//! ([`LocalFlush`]); tests put a simulated disk behind the same trait; other stores are durable
//! by their API and have no flusher. What is flushed when is the caller's choice, see
//! [`Durability`] and `Storage::put`.

use std::collections::{HashMap, HashSet};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use crate::error::{Error, Result};

/// How much of a commit survives a power cut before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every file a commit writes, the manifest that publishes it and their folder entries are
    /// on disk before the commit is acknowledged: an acknowledged commit survives power loss.
    #[default]
    Full,
    /// Nothing is flushed on commit: an acknowledged commit survives the process being killed
    /// but a power cut may take back the last seconds of commits (the table still opens, at
    /// an older version). For bulk loads and scratch data.
    Process,
}

impl Durability {
    /// Parses the names used by the API: `"full"` or `"process"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "full" => Ok(Durability::Full),
            "process" => Ok(Durability::Process),
            other => Err(Error::invalid(format!(
                "unknown durability '{other}'; use \"full\" (commits survive power loss) or \"process\" (commits survive a killed process)"
            ))),
        }
    }
}

/// Makes written objects durable.
pub trait Flush: Send + Sync + std::fmt::Debug {
    /// Makes the current state of each of `paths` durable: its content and its name, or its
    /// absence when it was deleted.
    fn flush<'a>(&'a self, paths: &'a [Path]) -> BoxFuture<'a, Result<()>>;

    /// Makes everything written so far durable (used before deleting files that older
    /// versions need, whatever the durability of commits).
    fn flush_all(&self) -> BoxFuture<'_, Result<()>>;
}

fn io_error(what: &str, path: &FsPath, e: std::io::Error) -> Error {
    Error::Storage(object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("{what} {}: {e}", path.display()).into(),
    })
}

/// One directory's group flush: writers that changed entries in it while a flush of it was
/// running share the next one, so concurrent commits pay one directory `fsync` between them.
#[derive(Debug, Default)]
struct DirGroup {
    /// Bumped by every writer that needs the directory flushed.
    requested: AtomicU64,
    /// The highest request number a finished flush covered.
    flushed: AtomicU64,
    /// Held while a flush runs (by a blocking thread: flushes run off the async runtime).
    running: Mutex<()>,
}

/// `fsync` of local files and of the directories naming them.
#[derive(Debug)]
pub(crate) struct LocalFlush {
    store: Arc<LocalFileSystem>,
    dirs: Arc<DirFlusher>,
}

/// The directory side of [`LocalFlush`], shared with the blocking threads that flush.
#[derive(Debug)]
struct DirFlusher {
    /// The database folder: directories from a file's parent up to this one's parent are
    /// flushed (any of them may have been created by the write).
    root: PathBuf,
    groups: Mutex<HashMap<PathBuf, Arc<DirGroup>>>,
    /// Directories whose own entry, and every ancestor's up to the root, is known durable,
    /// with the inode they had then (a folder removed and made again is a new inode).
    durable_dirs: Mutex<HashMap<PathBuf, u64>>,
}

#[cfg(unix)]
fn inode(path: &FsPath) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

#[cfg(not(unix))]
fn inode(_path: &FsPath) -> Option<u64> {
    None
}

fn sync_file(path: &FsPath) -> Result<()> {
    match std::fs::File::open(path) {
        Ok(file) => file.sync_all().map_err(|e| io_error("flushing", path, e)),
        // Deleted (or never written): only its directory entry needs flushing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("opening to flush", path, e)),
    }
}

fn sync_dir(path: &FsPath) -> Result<()> {
    #[cfg(unix)]
    {
        match std::fs::File::open(path) {
            Ok(dir) => dir
                .sync_all()
                .map_err(|e| io_error("flushing folder", path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("opening to flush folder", path, e)),
        }
    }
    #[cfg(not(unix))]
    {
        // Windows commits directory entries with the file (NTFS metadata journal).
        let _ = path;
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("flush task failed: {e}")))?
}

impl LocalFlush {
    pub(crate) fn new(store: Arc<LocalFileSystem>, root: PathBuf) -> Self {
        LocalFlush {
            store,
            dirs: Arc::new(DirFlusher {
                root,
                groups: Mutex::new(HashMap::new()),
                durable_dirs: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl DirFlusher {
    fn group(&self, dir: &FsPath) -> Arc<DirGroup> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups.entry(dir.to_path_buf()).or_default().clone()
    }

    /// Flushes `dir` once after this call started, sharing the flush with other callers.
    fn flush_dir(&self, dir: &FsPath) -> Result<()> {
        let group = self.group(dir);
        let ticket = group.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let _running = group.running.lock().unwrap_or_else(|p| p.into_inner());
        if group.flushed.load(Ordering::Acquire) >= ticket {
            // A flush that started after our entries changed has finished.
            return Ok(());
        }
        let covers = group.requested.load(Ordering::Acquire);
        sync_dir(dir)?;
        group.flushed.fetch_max(covers, Ordering::AcqRel);
        Ok(())
    }

    /// The directories to flush for a file in `parent`: the parent, and its ancestors up to
    /// the database folder's parent unless they are known durable already.
    fn dirs_for(&self, parent: &FsPath) -> Vec<PathBuf> {
        let mut dirs = vec![parent.to_path_buf()];
        let known = self.durable_dirs.lock().unwrap_or_else(|p| p.into_inner());
        let stop = self.root.parent().unwrap_or(&self.root);
        let mut dir = parent;
        while dir.starts_with(stop) && dir != stop {
            let durable = known
                .get(dir)
                .is_some_and(|&ino| inode(dir).is_some_and(|now| now == ino));
            if durable {
                break;
            }
            match dir.parent() {
                Some(up) => {
                    dirs.push(up.to_path_buf());
                    dir = up;
                }
                None => break,
            }
        }
        dirs
    }

    /// Flushes the folders naming `files` (any of them may have been created by the write),
    /// deepest first.
    fn flush_dirs_of(&self, files: &[PathBuf]) -> Result<()> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut seen = HashSet::new();
        for file in files {
            if let Some(parent) = file.parent() {
                for dir in self.dirs_for(parent) {
                    if seen.insert(dir.clone()) {
                        dirs.push(dir);
                    }
                }
            }
        }
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in &dirs {
            self.flush_dir(dir)?;
        }
        let mut known = self.durable_dirs.lock().unwrap_or_else(|p| p.into_inner());
        for dir in dirs {
            if let Some(ino) = inode(&dir) {
                known.insert(dir, ino);
            }
        }
        Ok(())
    }
}

impl Flush for LocalFlush {
    fn flush<'a>(&'a self, paths: &'a [Path]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut files = Vec::with_capacity(paths.len());
            for path in paths {
                files.push(self.store.path_to_filesystem(path)?);
            }
            // One hop to a blocking thread for the whole flush, contents first, then names.
            // Sequential on purpose: the file's fsync commits the file system's journal with
            // the new name in it, so the folder's fsync after it finds little left to do;
            // fsyncs issued at once can each wait for their own journal commit instead.
            let dirs = self.dirs.clone();
            blocking(move || {
                files.iter().try_for_each(|f| sync_file(f))?;
                dirs.flush_dirs_of(&files)
            })
            .await
        })
    }

    fn flush_all(&self) -> BoxFuture<'_, Result<()>> {
        let root = self.dirs.root.clone();
        Box::pin(async move {
            blocking(move || {
                #[cfg(target_os = "linux")]
                {
                    use std::os::unix::io::AsRawFd;
                    let dir = match std::fs::File::open(&root) {
                        Ok(dir) => dir,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                        Err(e) => return Err(io_error("opening to flush", &root, e)),
                    };
                    // SAFETY: `syncfs` takes a file descriptor we own and keep open for the call.
                    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
                        return Err(io_error(
                            "flushing the file system of",
                            &root,
                            std::io::Error::last_os_error(),
                        ));
                    }
                    Ok(())
                }
                #[cfg(all(unix, not(target_os = "linux")))]
                {
                    let _ = &root;
                    // SAFETY: `sync` takes no arguments and cannot fail.
                    unsafe { libc::sync() };
                    Ok(())
                }
                #[cfg(not(unix))]
                {
                    let _ = &root;
                    Ok(())
                }
            })
            .await
        })
    }
}
