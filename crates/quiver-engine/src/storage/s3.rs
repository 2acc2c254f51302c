//! `s3://bucket/prefix` stores: storage options (camelCase as JS passes them, or the
//! `aws_*` / snake_case keys other tools use), the `AWS_*` environment and shared credentials
//! file as fallbacks, and the throttled, retrying client built from them.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{ObjectStore, RetryConfig};

use super::throttle::{AimdConfig, RetrySettings, ThrottledStore};
use crate::error::{Error, Result};

/// The documented options: (name in JS, what it sets). Every alias normalises to the
/// snake_case form of the name (`accessKeyId` → `access_key_id`), optionally `aws_`-prefixed.
pub const S3_OPTIONS: &[(&str, &str)] = &[
    (
        "region",
        "AWS region of the bucket (default: AWS_REGION, then us-east-1)",
    ),
    (
        "endpoint",
        "URL of an S3-compatible server (MinIO, R2, moto, a proxy)",
    ),
    ("accessKeyId", "access key id"),
    ("secretAccessKey", "secret access key"),
    ("sessionToken", "session token of temporary credentials"),
    (
        "allowHttp",
        "'true' to allow a plain http:// endpoint (implied by an http:// endpoint)",
    ),
    (
        "virtualHostedStyleRequest",
        "'true' for bucket.host URLs instead of host/bucket",
    ),
    ("timeout", "per-request timeout, e.g. '30s' (default 30s)"),
    (
        "connectTimeout",
        "connection timeout, e.g. '5s' (default 5s)",
    ),
    (
        "maxRetries",
        "retries of a failed or throttled request (default 10)",
    ),
    (
        "retryTimeout",
        "time after which a request is no longer retried, e.g. '3m' (default 180s)",
    ),
];

/// Options that are Quiver's own (not object_store's), in snake_case.
const RETRY_KEYS: &[&str] = &["max_retries", "retry_timeout"];

/// The normalised form of an option name: `accessKeyId` → `access_key_id`,
/// `AWS_REGION` → `aws_region`.
pub(crate) fn normalise_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut previous: Option<char> = None;
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            if previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit()) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c == '-' {
            out.push('_');
        } else {
            out.push(c);
        }
        previous = Some(c);
    }
    out
}

fn accepted_names() -> String {
    let mut names: Vec<&str> = S3_OPTIONS.iter().map(|(n, _)| *n).collect();
    names.push("quiverAimd* (see the README's environment table)");
    names.push("or any aws_* key of object_store's S3 configuration");
    names.join(", ")
}

/// A duration option: a number of seconds, or a number with a unit (ms, s, m, h).
fn duration_of(key: &str, value: &str) -> Result<Duration> {
    let value = value.trim();
    let (number, scale) = if let Some(n) = value.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = value.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (value, 1.0)
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .and_then(|n| Duration::try_from_secs_f64(n * scale).ok())
        .ok_or_else(|| {
            Error::invalid(format!(
                "storage option '{key}' must be a duration such as '30s', '500ms' or a number of seconds, got '{value}'"
            ))
        })
}

fn bool_of(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(Error::invalid(format!(
            "storage option '{key}' must be 'true' or 'false', got '{other}'"
        ))),
    }
}

/// Storage options split by who reads them. Keys are normalised; values as given.
#[derive(Debug, Default, Clone)]
pub(crate) struct ParsedOptions {
    /// object_store's S3 configuration.
    pub s3: Vec<(AmazonS3ConfigKey, String)>,
    /// Quiver's retry settings and AIMD throttle settings (`quiver_aimd_*`).
    pub quiver: BTreeMap<String, String>,
}

/// Sorts raw options into object_store's S3 keys and Quiver's own; an unknown key is an
/// error naming the accepted ones.
pub(crate) fn parse_options(raw: &BTreeMap<String, String>) -> Result<ParsedOptions> {
    let mut parsed = ParsedOptions::default();
    for (key, value) in raw {
        let normal = normalise_key(key);
        let bare = normal.strip_prefix("aws_").unwrap_or(&normal);
        if normal.starts_with("quiver_") || RETRY_KEYS.contains(&bare) {
            parsed.quiver.insert(
                normal.strip_prefix("aws_").unwrap_or(&normal).to_string(),
                value.clone(),
            );
            continue;
        }
        match normal.parse::<AmazonS3ConfigKey>() {
            Ok(config) => parsed.s3.push((config, value.clone())),
            Err(_) => {
                return Err(Error::invalid(format!(
                    "unknown storage option '{key}'; accepted: {}",
                    accepted_names()
                )))
            }
        }
    }
    Ok(parsed)
}

/// Installs ring as the process's TLS crypto provider (once; a provider another library
/// installed first is kept).
fn install_tls_provider() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Keys of the shared credentials file (`~/.aws/credentials`, or AWS_SHARED_CREDENTIALS_FILE)
/// for the profile AWS_PROFILE names (default `default`), and the region of `~/.aws/config`:
/// the last links of the standard credential chain, which object_store does not read.
fn shared_profile() -> Vec<(AmazonS3ConfigKey, String)> {
    let Some(home) = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE")) else {
        return Vec::new();
    };
    let home = std::path::PathBuf::from(home);
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_string());
    let credentials = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| home.join(".aws").join("credentials"));
    let config = std::env::var_os("AWS_CONFIG_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| home.join(".aws").join("config"));
    let mut out = Vec::new();
    for (file, section) in [
        (credentials, profile.clone()),
        (
            config,
            if profile == "default" {
                profile.clone()
            } else {
                format!("profile {profile}")
            },
        ),
    ] {
        // A credentials file is small; one larger than 1 MiB is not one.
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.len() > 1 << 20 {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let mut inside = false;
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                inside = name.trim() == section;
                continue;
            }
            if !inside {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let key = match k.trim() {
                "aws_access_key_id" => AmazonS3ConfigKey::AccessKeyId,
                "aws_secret_access_key" => AmazonS3ConfigKey::SecretAccessKey,
                "aws_session_token" => AmazonS3ConfigKey::Token,
                "region" => AmazonS3ConfigKey::Region,
                _ => continue,
            };
            out.push((key, v.trim().to_string()));
        }
    }
    out
}

/// What [`open`] built: the store, and the prefix the database lives under in its bucket.
pub(crate) struct S3Store {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: String,
}

/// Opens `s3://bucket/prefix`: options win over `AWS_*` environment variables, which win over
/// the shared credentials file; with no keys at all, object_store's chain (web identity,
/// container and instance credentials) applies.
pub(crate) fn open(uri: &str, raw: &BTreeMap<String, String>) -> Result<S3Store> {
    let rest = uri.strip_prefix("s3://").unwrap_or(uri);
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::invalid(format!(
            "'{uri}' names no bucket; use s3://bucket/optional/prefix"
        )));
    }
    let options = parse_options(raw)?;
    install_tls_provider();

    // The AWS_* environment first; the shared credentials file fills in what it lacks (its
    // keys only when neither the environment nor the options give keys: a key pair is taken
    // whole from one place).
    let mut builder = AmazonS3Builder::from_env();
    let keys_given = builder
        .get_config_value(&AmazonS3ConfigKey::AccessKeyId)
        .is_some()
        || options
            .s3
            .iter()
            .any(|(k, _)| matches!(k, AmazonS3ConfigKey::AccessKeyId));
    for (key, value) in shared_profile() {
        let is_key = matches!(
            key,
            AmazonS3ConfigKey::AccessKeyId
                | AmazonS3ConfigKey::SecretAccessKey
                | AmazonS3ConfigKey::Token
        );
        if builder.get_config_value(&key).is_none() && !(is_key && keys_given) {
            builder = builder.with_config(key, value);
        }
    }
    let mut allow_http = None;
    for (key, value) in &options.s3 {
        use object_store::ClientConfigKey as Client;
        // Checked here so a bad value fails at connect with the option's JS name, and
        // durations accept a bare number of seconds.
        let value = match key {
            AmazonS3ConfigKey::Client(Client::AllowHttp) => {
                allow_http = Some(bool_of("allowHttp", value)?);
                value.clone()
            }
            AmazonS3ConfigKey::VirtualHostedStyleRequest => {
                bool_of("virtualHostedStyleRequest", value)?.to_string()
            }
            AmazonS3ConfigKey::Client(Client::Timeout) => {
                format!("{}ms", duration_of("timeout", value)?.as_millis())
            }
            AmazonS3ConfigKey::Client(Client::ConnectTimeout) => {
                format!("{}ms", duration_of("connectTimeout", value)?.as_millis())
            }
            _ => value.clone(),
        };
        builder = builder.with_config(*key, value);
    }
    builder = builder.with_bucket_name(bucket);
    // An explicit http:// endpoint is the user's choice of plain HTTP (a local server).
    let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
    if allow_http.is_none()
        && endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
    {
        builder = builder.with_allow_http(true);
    }

    let retry = RetrySettings::from_options(&options.quiver)?;
    let aimd = AimdConfig::from_options(&options.quiver)?;
    // Retries are the throttle's, which sees every throttling response (object_store's own
    // retries would hide them from it).
    builder = builder.with_retry(RetryConfig {
        max_retries: 0,
        ..RetryConfig::default()
    });
    let s3 = builder.build().map_err(|e| {
        Error::invalid(format!(
            "cannot open '{uri}': {e}; check the storage options (accepted: {})",
            accepted_names()
        ))
    })?;
    Ok(S3Store {
        store: Arc::new(ThrottledStore::new(Arc::new(s3), aimd, retry)),
        prefix: prefix.trim_matches('/').to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_names_normalise_to_snake_case() {
        assert_eq!(normalise_key("accessKeyId"), "access_key_id");
        assert_eq!(normalise_key("aws_access_key_id"), "aws_access_key_id");
        assert_eq!(normalise_key("AWS_REGION"), "aws_region");
        assert_eq!(
            normalise_key("quiverAimdInitialRate"),
            "quiver_aimd_initial_rate"
        );
        assert_eq!(
            normalise_key("virtualHostedStyleRequest"),
            "virtual_hosted_style_request"
        );
    }

    #[test]
    fn every_documented_option_is_accepted() {
        let raw: BTreeMap<String, String> = S3_OPTIONS
            .iter()
            .map(|(k, _)| (k.to_string(), "1".to_string()))
            .collect();
        let parsed = parse_options(&raw).unwrap();
        assert_eq!(parsed.s3.len() + parsed.quiver.len(), S3_OPTIONS.len());
    }

    #[test]
    fn unknown_options_name_the_accepted_ones() {
        let raw = BTreeMap::from([("acessKeyId".to_string(), "x".to_string())]);
        let err = parse_options(&raw).unwrap_err().to_string();
        assert!(err.contains("unknown storage option 'acessKeyId'"), "{err}");
        assert!(
            err.contains("accessKeyId") && err.contains("endpoint"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_typed_errors() {
        let open_with = |k: &str, v: &str| {
            let raw = BTreeMap::from([(k.to_string(), v.to_string())]);
            open("s3://bucket/prefix", &raw)
                .err()
                .map(|e| e.to_string())
        };
        assert!(open_with("timeout", "soon").unwrap().contains("duration"));
        assert!(open_with("allowHttp", "perhaps")
            .unwrap()
            .contains("'true' or 'false'"));
        assert!(open_with("maxRetries", "-1")
            .unwrap()
            .contains("maxRetries"));
        assert!(open_with("quiver_aimd_decrease_factor", "2").is_some());
        assert!(open("s3:///x", &BTreeMap::new()).is_err());
        assert!(open_with("timeout", "250ms").is_none());
    }
}
