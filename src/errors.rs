//! Errors crossing into JS: engine errors mapped to coded messages, panics caught.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use quiver_engine::Error as EngineError;

/// The stable error code of an engine error (the TS layer maps codes to classes).
pub(crate) fn error_code(e: &EngineError) -> &'static str {
    match e {
        EngineError::InvalidArgument(_) => "InvalidArgument",
        EngineError::SchemaMismatch(_) | EngineError::UnsupportedType { .. } => "SchemaMismatch",
        EngineError::TableAlreadyExists(_) => "TableExists",
        EngineError::TableNotFound(_) => "TableNotFound",
        EngineError::TableDropped { .. } => "TableDropped",
        EngineError::VersionNotFound { .. } => "VersionNotFound",
        EngineError::MissingFile(_) => "MissingFile",
        EngineError::RowNotFound(_) => "RowNotFound",
        EngineError::IndexNotFound(_) => "IndexNotFound",
        EngineError::TagNotFound(_) => "TagNotFound",
        EngineError::TagAlreadyExists(_) => "TagExists",
        EngineError::Corrupt { .. } | EngineError::IncompatibleVersion { .. } => "Corruption",
        EngineError::CommitConflict(_) => "CommitConflict",
        EngineError::CommitTimeout { .. } => "CommitTimeout",
        EngineError::ReadOnlyVersion(_) => "ReadOnlyVersion",
        // Retrying cannot fix missing or refused credentials.
        EngineError::Storage(
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. },
        ) => "AccessDenied",
        EngineError::Storage(_) => "Io",
        EngineError::UnsupportedStore(_) => "UnsupportedStore",
        EngineError::Arrow(_) => "InvalidArgument",
        EngineError::Filter(_) => "Filter",
        EngineError::Internal(_) => "Internal",
    }
}

pub(crate) fn to_js_error(e: EngineError) -> napi::Error {
    let mut message = format!("[{}] {e}", error_code(&e));
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    napi::Error::from_reason(message)
}

pub(crate) fn coded(code: &str, message: impl std::fmt::Display) -> napi::Error {
    napi::Error::from_reason(format!("[{code}] {message}"))
}

/// Runs engine work and turns both errors and panics into rejected promises.
pub(crate) async fn guarded<T>(
    work: impl Future<Output = quiver_engine::Result<T>>,
) -> napi::Result<T> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result.map_err(to_js_error),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(coded("Internal", format!("the engine panicked: {what}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn reason<T>(work: impl Future<Output = quiver_engine::Result<T>>) -> String {
        match guarded(work).now_or_never() {
            Some(Err(error)) => error.reason,
            Some(Ok(_)) => panic!("expected an error"),
            None => panic!("the guarded future did not complete"),
        }
    }

    #[test]
    fn refused_credentials_are_not_retryable_io_errors() {
        let denied = EngineError::Storage(object_store::Error::PermissionDenied {
            path: "b/x".into(),
            source: "403 Forbidden".into(),
        });
        assert_eq!(error_code(&denied), "AccessDenied");
        let unauthenticated = EngineError::Storage(object_store::Error::Unauthenticated {
            path: "b/x".into(),
            source: "401".into(),
        });
        assert_eq!(error_code(&unauthenticated), "AccessDenied");
        let transient = EngineError::Storage(object_store::Error::Generic {
            store: "S3",
            source: "503".into(),
        });
        assert_eq!(error_code(&transient), "Io");
    }

    #[test]
    fn panics_become_internal_errors() {
        let literal = reason(async {
            panic!("boom");
            #[allow(unreachable_code)]
            Ok(())
        });
        assert_eq!(literal, "[Internal] the engine panicked: boom");
        let row = 3;
        let formatted = reason(async move {
            if row > 0 {
                panic!("bad row {row}");
            }
            Ok(())
        });
        assert_eq!(formatted, "[Internal] the engine panicked: bad row 3");
    }

    #[test]
    fn engine_errors_keep_their_code() {
        let error =
            reason(async { Err::<(), _>(EngineError::InvalidArgument("k must be > 0".into())) });
        assert!(error.starts_with("[InvalidArgument]"), "{error}");
        assert!(error.contains("k must be > 0"), "{error}");
    }
}
