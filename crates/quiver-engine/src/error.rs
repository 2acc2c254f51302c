//! Typed errors of the engine. Every message says what went wrong and, where it can, what to do.

use std::fmt;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error the engine can return. The binding maps each variant to a typed JS error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller passed something the engine cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// Data does not match the table's schema (names the offending field).
    #[error("schema mismatch: {0}")]
    SchemaMismatch(String),

    /// The data type is not one Quiver stores.
    #[error("unsupported data type for field '{field}': {data_type}. Supported: bool, int8-64, uint8-64, float16/32/64, utf8, large_utf8, binary, large_binary, date32, timestamp, fixed_size_list of float16/32/64/uint8/int8, list of utf8 or of a primitive, and structs of these")]
    UnsupportedType { field: String, data_type: String },

    /// A table with this name already exists and the mode forbids replacing it.
    #[error("table '{0}' already exists; open it, or create it with mode 'overwrite' or exist_ok")]
    TableAlreadyExists(String),

    /// No table with this name exists.
    #[error("table '{0}' was not found; check the name with table_names()")]
    TableNotFound(String),

    /// The table a handle read was dropped (and perhaps created again) before its write
    /// could commit.
    #[error("table '{table}' was dropped (and perhaps created again) after this handle read version {read_version}; nothing was written. Open the table again with open_table()")]
    TableDropped { table: String, read_version: u64 },

    /// The requested version is not in the table's history.
    #[error("version {version} of table '{table}' was not found; list the available ones with list_versions()")]
    VersionNotFound { table: String, version: u64 },

    /// No index of this name exists.
    #[error("index {0} was not found; list the table's indexes with list_indices()")]
    IndexNotFound(String),

    /// No tag of that name (see `Table::tags`).
    #[error("tag '{0}' does not exist; list the table's tags with tags().list()")]
    TagNotFound(String),

    /// A tag of that name already exists.
    #[error("tag '{0}' already exists; use update() to move it to another version")]
    TagAlreadyExists(String),

    /// A file the handle's version references is gone: a cleanup removed that version (or
    /// something outside Quiver deleted it).
    #[error("file '{0}' of this table version no longer exists: a cleanup removed the version (superseded longer ago than the retention), or the file was deleted outside Quiver; call checkout_latest() to read the newest version")]
    MissingFile(String),

    /// A row address does not exist or was deleted.
    #[error("row {0} was not found: it is out of range or deleted")]
    RowNotFound(String),

    /// A stored file is damaged: bad checksum, truncated, or impossible contents.
    #[error("corrupt file '{path}': {reason}. The file was damaged after it was written; restore it from a backup or check out an older version")]
    Corrupt { path: String, reason: String },

    /// The file was written by a newer, incompatible format version.
    #[error("file '{path}' uses format version {found}, this build reads up to {supported}; upgrade quiverdb")]
    IncompatibleVersion {
        path: String,
        found: String,
        supported: String,
    },

    /// Another writer committed an operation that truly conflicts with this one.
    #[error("commit conflict: {0}. Re-read the table and retry the operation")]
    CommitConflict(String),

    /// Rebasing kept losing the race to other writers until the operation's deadline.
    #[error("commit gave up after {waited_ms} ms and {attempts} attempts: other writers committed {commits} versions first; retry the operation, or give it more time (timeoutMs)")]
    CommitTimeout {
        waited_ms: u64,
        attempts: u32,
        commits: u64,
    },

    /// The table handle was opened at an old version and cannot be written.
    #[error("table is checked out at version {0} (read-only); call checkout_latest() or restore() before writing")]
    ReadOnlyVersion(u64),

    /// A SQL filter or expression is malformed or does not fit the table (says what and where).
    #[error(transparent)]
    Filter(#[from] FilterError),

    /// The object store lacks something Quiver needs to stay safe (conditional writes).
    #[error("unsupported object store: {0}")]
    UnsupportedStore(String),

    /// An error from the underlying object store.
    #[error("storage error: {0}")]
    Storage(#[from] object_store::Error),

    /// An error from the Arrow library.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),

    /// A background task failed unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What is wrong with a SQL filter or expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterErrorKind {
    /// The text does not parse.
    Syntax,
    /// A column name is not in the table.
    UnknownColumn,
    /// Operand types do not fit the operator or function.
    TypeMismatch,
    /// Valid SQL that Quiver does not evaluate.
    Unsupported,
    /// A literal or argument with a bad value (a malformed date, an invalid regex).
    InvalidValue,
    /// Nested deeper than the engine's limits (see `filter::MAX_DEPTH`): such text comes from
    /// programs, and is refused before it could exhaust the stack.
    TooComplex,
}

impl fmt::Display for FilterErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FilterErrorKind::Syntax => "syntax error",
            FilterErrorKind::UnknownColumn => "unknown column",
            FilterErrorKind::TypeMismatch => "type mismatch",
            FilterErrorKind::Unsupported => "unsupported",
            FilterErrorKind::InvalidValue => "invalid value",
            FilterErrorKind::TooComplex => "too complex",
        })
    }
}

/// A typed filter error, with the 1-based line and column where the problem starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub kind: FilterErrorKind,
    pub message: String,
    pub position: Option<(u64, u64)>,
}

impl FilterError {
    pub fn new(kind: FilterErrorKind, message: impl Into<String>) -> Self {
        FilterError {
            kind,
            message: message.into(),
            position: None,
        }
    }

    /// Sets the position unless one is already known (the innermost position is the precise one).
    pub fn at(mut self, position: Option<(u64, u64)>) -> Self {
        if self.position.is_none() {
            self.position = position;
        }
        self
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some((line, column)) = self.position {
            write!(f, " (at line {line}, column {column})")?;
        }
        Ok(())
    }
}

impl std::error::Error for FilterError {}

impl Error {
    pub(crate) fn corrupt(path: impl fmt::Display, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.to_string(),
            reason: reason.into(),
        }
    }

    /// This error said of the file at `path`, after `context`: a stored schema is checked
    /// before it is known which file it came from, so its `Corrupt` names no real file.
    pub(crate) fn corrupt_in(self, path: impl fmt::Display, context: &str) -> Self {
        match self {
            Error::Corrupt { reason, .. } => Error::corrupt(path, format!("{context}: {reason}")),
            other => Error::corrupt(path, format!("{context}: {other}")),
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}
