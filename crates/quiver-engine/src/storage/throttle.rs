//! The request-rate throttle and retry loop that wrap cloud stores (never local or memory
//! ones): one AIMD token bucket per class of operation (read, write, delete, list). A
//! throttling response (HTTP 429 or 503, S3's `SlowDown`) halves the class's rate; a second
//! without one adds to it. Every request waits for a token, so a throttled store sees fewer
//! requests instead of the same number retried harder. Transient failures (5xx, dropped
//! connections, timeouts) are retried with jittered exponential backoff until the retry
//! count or the retry timeout runs out.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use rand::Rng;

use crate::error::{Error, Result};

/// Settings of the AIMD throttle (see the module header). Storage options
/// `quiver_aimd_*` win over environment variables `QUIVER_AIMD_*`, which win over defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AimdConfig {
    /// Requests per second a class starts at.
    pub initial_rate: f64,
    /// The rate never drops below this.
    pub min_rate: f64,
    /// Nor rises above this.
    pub max_rate: f64,
    /// A throttling response multiplies the rate by this (0 < f < 1).
    pub decrease_factor: f64,
    /// Requests per second added for each second without a throttling response.
    pub additive_increment: f64,
    /// Tokens a class may save up: requests that may go at once after a quiet spell.
    pub burst_capacity: f64,
}

impl Default for AimdConfig {
    fn default() -> Self {
        AimdConfig {
            initial_rate: 2000.0,
            min_rate: 1.0,
            max_rate: 5000.0,
            decrease_factor: 0.5,
            additive_increment: 300.0,
            burst_capacity: 100.0,
        }
    }
}

/// (setting, option key, environment variable)
const AIMD_KEYS: [(&str, &str, &str); 6] = [
    (
        "initial_rate",
        "quiver_aimd_initial_rate",
        "QUIVER_AIMD_INITIAL_RATE",
    ),
    ("min_rate", "quiver_aimd_min_rate", "QUIVER_AIMD_MIN_RATE"),
    ("max_rate", "quiver_aimd_max_rate", "QUIVER_AIMD_MAX_RATE"),
    (
        "decrease_factor",
        "quiver_aimd_decrease_factor",
        "QUIVER_AIMD_DECREASE_FACTOR",
    ),
    (
        "additive_increment",
        "quiver_aimd_additive_increment",
        "QUIVER_AIMD_ADDITIVE_INCREMENT",
    ),
    (
        "burst_capacity",
        "quiver_aimd_burst_capacity",
        "QUIVER_AIMD_BURST_CAPACITY",
    ),
];

/// A positive finite number from an option or an environment variable.
fn number(name: &str, value: &str) -> Result<f64> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)
        .ok_or_else(|| Error::invalid(format!("{name} must be a number above 0, got '{value}'")))
}

impl AimdConfig {
    /// The settings `options` (normalised storage options) and the environment give.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        Self::from_sources(options, |name| std::env::var(name).ok())
    }

    fn from_sources(
        options: &BTreeMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let mut config = AimdConfig::default();
        for (setting, key, var) in AIMD_KEYS {
            let value = match options.get(key) {
                Some(v) => Some(number(key, v)?),
                None => env(var).map(|v| number(var, &v)).transpose()?,
            };
            if let Some(v) = value {
                match setting {
                    "initial_rate" => config.initial_rate = v,
                    "min_rate" => config.min_rate = v,
                    "max_rate" => config.max_rate = v,
                    "decrease_factor" => config.decrease_factor = v,
                    "additive_increment" => config.additive_increment = v,
                    _ => config.burst_capacity = v,
                }
            }
        }
        if let Some(unknown) = options
            .keys()
            .find(|k| k.starts_with("quiver_aimd_") && !AIMD_KEYS.iter().any(|(_, o, _)| o == k))
        {
            return Err(Error::invalid(format!(
                "unknown storage option '{unknown}'; the throttle's are {}",
                AIMD_KEYS.map(|(_, o, _)| o).join(", ")
            )));
        }
        if config.decrease_factor >= 1.0 {
            return Err(Error::invalid(format!(
                "quiver_aimd_decrease_factor must be below 1, got {}",
                config.decrease_factor
            )));
        }
        if config.min_rate > config.max_rate {
            return Err(Error::invalid(format!(
                "quiver_aimd_min_rate ({}) is above quiver_aimd_max_rate ({})",
                config.min_rate, config.max_rate
            )));
        }
        config.initial_rate = config.initial_rate.clamp(config.min_rate, config.max_rate);
        config.burst_capacity = config.burst_capacity.max(1.0);
        Ok(config)
    }
}

/// How failed requests are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySettings {
    /// Retries of one request (0: none).
    pub max_retries: u32,
    /// No retry starts after this long since the first attempt.
    pub retry_timeout: Duration,
    /// First backoff; doubles per retry up to `max_backoff`, with full jitter.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetrySettings {
    /// `max_retries` and `retry_timeout` from normalised storage options.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<Self> {
        let mut settings = RetrySettings::default();
        if let Some(v) = options.get("max_retries") {
            settings.max_retries = v.trim().parse().map_err(|_| {
                Error::invalid(format!(
                    "storage option 'maxRetries' must be a whole number >= 0, got '{v}'"
                ))
            })?;
        }
        if let Some(v) = options.get("retry_timeout") {
            let seconds = v
                .trim()
                .trim_end_matches('s')
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok());
            settings.retry_timeout = seconds.ok_or_else(|| {
                Error::invalid(format!(
                    "storage option 'retryTimeout' must be a number of seconds, got '{v}'"
                ))
            })?;
        }
        Ok(settings)
    }

    fn backoff(&self, retry: u32) -> Duration {
        let cap = self
            .initial_backoff
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_backoff);
        // Full jitter: concurrent clients that failed together do not retry together.
        cap.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

/// A class of operation, throttled apart (S3 limits reads and writes per prefix apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpClass {
    Read = 0,
    Write = 1,
    Delete = 2,
    List = 3,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    refilled: Instant,
    /// When the rate last grew (or was cut): growth is per second without throttling.
    grown: Instant,
    /// When the rate was last cut: one burst of throttling responses cuts it once.
    cut: Option<Instant>,
}

/// One class's AIMD token bucket.
#[derive(Debug)]
pub struct Aimd {
    config: AimdConfig,
    bucket: Mutex<Bucket>,
}

impl Aimd {
    pub fn new(config: AimdConfig) -> Self {
        let now = Instant::now();
        Aimd {
            config,
            bucket: Mutex::new(Bucket {
                rate: config.initial_rate,
                tokens: config.burst_capacity,
                refilled: now,
                grown: now,
                cut: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        match self.bucket.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Current requests per second.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// Takes a token: how long to wait before sending (zero when one was there). Tokens are
    /// reserved ahead, so waiting requests go in order at the bucket's rate.
    pub fn reserve(&self, now: Instant) -> Duration {
        let mut b = self.lock();
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.rate).min(self.config.burst_capacity);
        b.refilled = now;
        b.tokens -= 1.0;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / b.rate)
        }
    }

    /// A request succeeded: the rate grows by the increment per second since it last grew
    /// or was cut (linear growth between cuts, as in TCP's congestion avoidance).
    pub fn succeeded(&self, now: Instant) {
        let mut b = self.lock();
        let seconds = now.saturating_duration_since(b.grown).as_secs_f64();
        b.rate = (b.rate + self.config.additive_increment * seconds).min(self.config.max_rate);
        b.grown = now;
    }

    /// The store throttled a request: the rate is cut, at most once per second, since every
    /// request in flight when the store began throttling reports it: one overload, one cut.
    pub fn throttled(&self, now: Instant) {
        let mut b = self.lock();
        if b.cut
            .is_some_and(|c| now.saturating_duration_since(c) < CUT_WINDOW)
        {
            return;
        }
        b.rate = (b.rate * self.config.decrease_factor).max(self.config.min_rate);
        b.tokens = b.tokens.min(0.0);
        b.cut = Some(now);
        b.grown = now;
    }
}

/// Throttling responses closer together than this are one overload (one cut of the rate).
const CUT_WINDOW: Duration = Duration::from_secs(1);

/// What a failure calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The store asks for fewer requests: cut the rate, then retry.
    Throttle,
    /// A 5xx, a dropped connection or a timeout: retry.
    Transient,
    /// Not found, exists, denied, malformed: retrying cannot help.
    Permanent,
}

/// What the text of a throttling answer contains (429, 503, S3's and other stores' codes).
const THROTTLE_SIGNS: &[&str] = &[
    "status code: 503",
    "status code: 429",
    "SlowDown",
    "TooManyRequests",
    "RequestLimitExceeded",
    "Throttling",
];

/// What the text of a failure a retry may fix contains: 5xx answers, S3's `InternalError`,
/// and transport failures (connect, send, timeout, a body cut short).
const TRANSIENT_SIGNS: &[&str] = &[
    "status code: 5",
    "HTTP error",
    "InternalError",
    "error sending request",
    "connection",
    "timed out",
    "error decoding response body",
];

/// Classifies an object_store error from its variant and, for HTTP failures (which
/// object_store does not expose as types), from the text of its cause chain.
pub fn classify(error: &object_store::Error) -> Failure {
    use object_store::Error as E;
    match error {
        E::NotFound { .. }
        | E::AlreadyExists { .. }
        | E::Precondition { .. }
        | E::NotModified { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::InvalidPath { .. }
        | E::UnknownConfigurationKey { .. } => return Failure::Permanent,
        _ => {}
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(" | ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if THROTTLE_SIGNS.iter().any(|s| text.contains(s)) {
        Failure::Throttle
    } else if TRANSIENT_SIGNS.iter().any(|s| text.contains(s)) {
        Failure::Transient
    } else {
        Failure::Permanent
    }
}

/// Counters of the throttle (tests read them).
#[derive(Debug, Default)]
pub struct ThrottleStats {
    /// Throttling responses seen.
    pub throttled: AtomicU64,
    /// Requests sent again.
    pub retried: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    inner: Arc<dyn ObjectStore>,
    classes: [Aimd; 4],
    retry: RetrySettings,
    stats: ThrottleStats,
}

/// A cloud store behind the AIMD throttle and the retry loop.
#[derive(Debug, Clone)]
pub struct ThrottledStore {
    shared: Arc<Shared>,
}

impl std::fmt::Display for ThrottledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.shared.inner)
    }
}

/// Deletions sent in one bulk request (S3's limit).
const DELETE_CHUNK: usize = 1000;

impl ThrottledStore {
    pub fn new(inner: Arc<dyn ObjectStore>, aimd: AimdConfig, retry: RetrySettings) -> Self {
        ThrottledStore {
            shared: Arc::new(Shared {
                inner,
                classes: [
                    Aimd::new(aimd),
                    Aimd::new(aimd),
                    Aimd::new(aimd),
                    Aimd::new(aimd),
                ],
                retry,
                stats: ThrottleStats::default(),
            }),
        }
    }

    /// The bucket of a class.
    pub fn class(&self, class: OpClass) -> &Aimd {
        &self.shared.classes[class as usize]
    }

    pub fn stats(&self) -> &ThrottleStats {
        &self.shared.stats
    }
}

impl Shared {
    /// Runs `op` under the class's throttle, retrying what a retry can fix.
    async fn run<T, F, Fut>(&self, class: OpClass, mut op: F) -> object_store::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let bucket = &self.classes[class as usize];
        let start = Instant::now();
        let mut retries = 0u32;
        loop {
            let wait = bucket.reserve(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let error = match op().await {
                Ok(value) => {
                    bucket.succeeded(Instant::now());
                    return Ok(value);
                }
                Err(e) => e,
            };
            match classify(&error) {
                Failure::Permanent => return Err(error),
                Failure::Throttle => {
                    bucket.throttled(Instant::now());
                    self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                }
                Failure::Transient => {}
            }
            if retries >= self.retry.max_retries || start.elapsed() >= self.retry.retry_timeout {
                return Err(error);
            }
            tokio::time::sleep(self.retry.backoff(retries)).await;
            retries += 1;
            self.stats.retried.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A whole GET, body included: a connection dropped mid-body is retried like one dropped
    /// before the headers (callers read whole ranges anyway).
    async fn get(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.run(OpClass::Read, || async {
            let result = self.inner.get_opts(location, options.clone()).await?;
            if options.head {
                return Ok(result);
            }
            let meta = result.meta.clone();
            let range = result.range.clone();
            let attributes = result.attributes.clone();
            let extensions = result.extensions.clone();
            let bytes = result.bytes().await?;
            Ok(GetResult {
                payload: GetResultPayload::Stream(
                    futures::stream::once(async move { Ok(bytes) }).boxed(),
                ),
                meta,
                range,
                attributes,
                extensions,
            })
        })
        .await
    }
}

#[async_trait]
impl ObjectStore for ThrottledStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let create = matches!(opts.mode, PutMode::Create);
        let mut attempts = 0u32;
        let result = self
            .shared
            .run(OpClass::Write, || {
                attempts += 1;
                self.shared
                    .inner
                    .put_opts(location, payload.clone(), opts.clone())
            })
            .await;
        match result {
            // A create that was retried may have landed the first time, its response lost:
            // the object then holds exactly these bytes (callers' objects are unique, e.g. a
            // manifest names its own transaction), and the create succeeded.
            Err(object_store::Error::AlreadyExists { path, source }) if create && attempts > 1 => {
                let existing = match self.shared.get(location, GetOptions::default()).await {
                    Ok(existing) => existing.bytes().await.ok(),
                    Err(_) => None,
                };
                let ours = existing.is_some_and(|b| {
                    b.len() == payload.content_length()
                        && payload.iter().flat_map(|c| c.iter()).eq(b.iter())
                });
                if ours {
                    Ok(PutResult {
                        e_tag: None,
                        version: None,
                        extensions: Default::default(),
                    })
                } else {
                    Err(object_store::Error::AlreadyExists { path, source })
                }
            }
            other => other,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let retry: Arc<dyn object_store::retry::RetryPolicy> = Arc::new(PartRetry {
            settings: self.shared.retry,
        });
        let opts = opts.with_retry_policy(retry);
        self.shared
            .run(OpClass::Write, || {
                self.shared.inner.put_multipart_opts(location, opts.clone())
            })
            .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.shared.get(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        // Independent ranges go in parallel, each throttled and retried on its own.
        futures::stream::iter(ranges.iter().cloned())
            .map(|range| async move {
                let options = GetOptions::new().with_range(Some(range));
                self.shared.get(location, options).await?.bytes().await
            })
            .buffered(16)
            .try_collect()
            .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let shared = self.shared.clone();
        locations
            .chunks(DELETE_CHUNK)
            .then(move |chunk| {
                let shared = shared.clone();
                async move {
                    let paths: Vec<Path> = match chunk.into_iter().collect() {
                        Ok(paths) => paths,
                        Err(e) => return vec![Err(e)],
                    };
                    let deleted = shared
                        .run(OpClass::Delete, || {
                            let batch = futures::stream::iter(paths.clone().into_iter().map(Ok));
                            shared
                                .inner
                                .delete_stream(batch.boxed())
                                .map(|r| match r {
                                    Err(object_store::Error::NotFound { path, .. }) => {
                                        Ok(Path::from(path))
                                    }
                                    r => r,
                                })
                                .try_collect::<Vec<Path>>()
                        })
                        .await;
                    match deleted {
                        Ok(paths) => paths.into_iter().map(Ok).collect(),
                        Err(e) => vec![Err(e)],
                    }
                }
            })
            .flat_map(futures::stream::iter)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        // A listing is retried whole; its pages are small next to what callers do with it.
        let shared = self.shared.clone();
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            shared
                .run(OpClass::List, || {
                    shared
                        .inner
                        .list(prefix.as_ref())
                        .try_collect::<Vec<ObjectMeta>>()
                })
                .await
        })
        .map(|listing| match listing {
            Ok(metas) => futures::stream::iter(metas.into_iter().map(Ok)).boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.shared
            .run(OpClass::List, || {
                self.shared.inner.list_with_delimiter(prefix)
            })
            .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.shared
            .run(OpClass::Write, || {
                self.shared.inner.copy_opts(from, to, options.clone())
            })
            .await
    }
}

/// Retries of multipart parts (object_store's policy hook): the same backoff and limits.
#[derive(Debug)]
struct PartRetry {
    settings: RetrySettings,
}

#[async_trait]
impl object_store::retry::RetryPolicy for PartRetry {
    async fn retry(&self, context: object_store::retry::RetryContext) -> bool {
        let attempt = u32::try_from(context.attempt).unwrap_or(u32::MAX);
        if attempt > self.settings.max_retries || context.elapsed >= self.settings.retry_timeout {
            return false;
        }
        tokio::time::sleep(self.settings.backoff(attempt.saturating_sub(1))).await;
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;
    use std::sync::atomic::AtomicUsize;

    /// What a [`FlakyStore`] does to request `n` (0-based) of an operation.
    pub(crate) type Schedule = Box<dyn Fn(usize, &str) -> Option<Fault> + Send + Sync>;

    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Fault {
        /// Answer 503 SlowDown without doing anything.
        SlowDown,
        /// Do the request, then lose the response (a connection reset after the server acted).
        LostResponse,
        /// Fail with an error no retry can fix.
        Denied,
        /// Ignore `PutMode::Create` (a store that does not honour conditional writes).
        Overwrite,
    }

    /// An in-memory store that fails requests on a schedule. Multipart uploads pass their
    /// aborts (`abort_multipart`) through the schedule too, to be recorded.
    pub(crate) struct FlakyStore {
        inner: InMemory,
        schedule: Arc<Schedule>,
        pub calls: Arc<AtomicUsize>,
    }

    /// An upload of a [`FlakyStore`].
    struct ScheduledUpload {
        inner: Box<dyn MultipartUpload>,
        schedule: Arc<Schedule>,
        calls: Arc<AtomicUsize>,
    }

    impl std::fmt::Debug for ScheduledUpload {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "ScheduledUpload")
        }
    }

    #[async_trait]
    impl MultipartUpload for ScheduledUpload {
        fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
            self.inner.put_part(data)
        }

        async fn complete(&mut self) -> object_store::Result<PutResult> {
            self.inner.complete().await
        }

        async fn abort(&mut self) -> object_store::Result<()> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            // Recorded only: an abort is not made to fail.
            let _ = (self.schedule)(n, "abort_multipart");
            self.inner.abort().await
        }
    }

    impl std::fmt::Debug for FlakyStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "FlakyStore")
        }
    }

    impl std::fmt::Display for FlakyStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "FlakyStore")
        }
    }

    fn status(code: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: format!(
                "Server returned non-2xx status code: {code}: <Error><Code>SlowDown</Code></Error>"
            )
            .into(),
        }
    }

    impl FlakyStore {
        pub(crate) fn new(schedule: Schedule) -> Self {
            FlakyStore {
                inner: InMemory::new(),
                schedule: Arc::new(schedule),
                calls: Arc::new(AtomicUsize::new(0)),
            }
        }

        fn fault(&self, op: &str) -> Option<Fault> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            (self.schedule)(n, op)
        }
    }

    #[async_trait]
    impl ObjectStore for FlakyStore {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            mut opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            match self.fault("put") {
                Some(Fault::SlowDown) => Err(status("503 Service Unavailable")),
                Some(Fault::Denied) => Err(object_store::Error::PermissionDenied {
                    path: location.to_string(),
                    source: "denied".into(),
                }),
                Some(Fault::LostResponse) => {
                    self.inner.put_opts(location, payload, opts).await?;
                    Err(status("500 Internal Server Error"))
                }
                Some(Fault::Overwrite) => {
                    opts.mode = PutMode::Overwrite;
                    self.inner.put_opts(location, payload, opts).await
                }
                None => self.inner.put_opts(location, payload, opts).await,
            }
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            match self.fault("put_multipart") {
                Some(_) => Err(status("503 Service Unavailable")),
                None => Ok(Box::new(ScheduledUpload {
                    inner: self.inner.put_multipart_opts(location, opts).await?,
                    schedule: self.schedule.clone(),
                    calls: self.calls.clone(),
                })),
            }
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            match self.fault("get") {
                Some(Fault::SlowDown) => Err(status("503 Service Unavailable")),
                Some(Fault::Denied) => Err(object_store::Error::PermissionDenied {
                    path: location.to_string(),
                    source: "denied".into(),
                }),
                _ => self.inner.get_opts(location, options).await,
            }
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn fast_retries() -> RetrySettings {
        RetrySettings {
            max_retries: 20,
            retry_timeout: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        }
    }

    #[test]
    fn the_rate_halves_on_throttling_and_grows_by_the_increment_per_second() {
        let config = AimdConfig::default();
        let aimd = Aimd::new(config);
        let t0 = Instant::now();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        assert_eq!(aimd.rate(), 2000.0);
        aimd.throttled(t0);
        assert_eq!(aimd.rate(), 1000.0);
        // The other responses of the same overload do not cut it again.
        aimd.throttled(t0 + Duration::from_millis(1));
        aimd.throttled(t0 + Duration::from_millis(900));
        assert_eq!(aimd.rate(), 1000.0);
        // Growth since the cut: 300 per second.
        aimd.succeeded(t0 + Duration::from_millis(500));
        assert!(close(aimd.rate(), 1150.0), "{}", aimd.rate());
        aimd.throttled(t0 + Duration::from_millis(1200));
        assert!(close(aimd.rate(), 575.0), "{}", aimd.rate());
        aimd.succeeded(t0 + Duration::from_millis(3200));
        assert!(close(aimd.rate(), 1175.0), "{}", aimd.rate());
        aimd.succeeded(t0 + Duration::from_secs(60));
        assert_eq!(aimd.rate(), 5000.0, "capped at the max rate");
        for i in 0..100 {
            aimd.throttled(t0 + Duration::from_secs(61 + i));
        }
        assert_eq!(aimd.rate(), 1.0, "floored at the min rate");
    }

    #[test]
    fn tokens_pace_requests_at_the_rate_after_the_burst() {
        let config = AimdConfig {
            initial_rate: 100.0,
            burst_capacity: 10.0,
            ..AimdConfig::default()
        };
        let aimd = Aimd::new(config);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(aimd.reserve(t0), Duration::ZERO);
        }
        // The 11th waits one interval, the 12th two: reservations queue in order.
        assert_eq!(aimd.reserve(t0), Duration::from_millis(10));
        assert_eq!(aimd.reserve(t0), Duration::from_millis(20));
        // After a quiet second the bucket is full again (never more than the burst).
        assert_eq!(aimd.reserve(t0 + Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn settings_come_from_options_then_environment_then_defaults() {
        let env = |name: &str| match name {
            "QUIVER_AIMD_INITIAL_RATE" => Some("50".to_string()),
            "QUIVER_AIMD_MAX_RATE" => Some("800".to_string()),
            _ => None,
        };
        let options = BTreeMap::from([("quiver_aimd_max_rate".to_string(), "900".to_string())]);
        let config = AimdConfig::from_sources(&options, env).unwrap();
        assert_eq!(config.initial_rate, 50.0);
        assert_eq!(
            config.max_rate, 900.0,
            "the option wins over the environment"
        );
        assert_eq!(config.decrease_factor, 0.5);
        let bad = |k: &str, v: &str| {
            let options = BTreeMap::from([(k.to_string(), v.to_string())]);
            AimdConfig::from_sources(&options, |_| None)
                .unwrap_err()
                .to_string()
        };
        assert!(bad("quiver_aimd_min_rate", "0").contains("above 0"));
        assert!(bad("quiver_aimd_decrease_factor", "1.5").contains("below 1"));
        assert!(bad("quiver_aimd_min_rate", "9000").contains("above quiver_aimd_max_rate"));
        assert!(bad("quiver_aimd_speed", "1").contains("unknown storage option"));
        let env_bad = AimdConfig::from_sources(&BTreeMap::new(), |n| {
            (n == "QUIVER_AIMD_BURST_CAPACITY").then(|| "lots".to_string())
        });
        assert!(env_bad
            .unwrap_err()
            .to_string()
            .contains("QUIVER_AIMD_BURST_CAPACITY"));
    }

    #[test]
    fn failures_are_classified() {
        assert_eq!(
            classify(&status("503 Service Unavailable")),
            Failure::Throttle
        );
        assert_eq!(
            classify(&status("429 Too Many Requests")),
            Failure::Throttle
        );
        let internal = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 500 Internal Server Error: ".into(),
        };
        assert_eq!(classify(&internal), Failure::Transient);
        let missing = object_store::Error::NotFound {
            path: "x".into(),
            source: "gone".into(),
        };
        assert_eq!(classify(&missing), Failure::Permanent);
    }

    /// Under a store that throttles most requests for a while, every request still succeeds,
    /// the rate comes down, and permanent errors are not retried.
    #[tokio::test]
    async fn requests_succeed_through_a_throttling_store() {
        let flaky = Arc::new(FlakyStore::new(Box::new(|n, _| {
            (n < 200 && n % 4 != 0).then_some(Fault::SlowDown)
        })));
        let store = ThrottledStore::new(flaky.clone(), AimdConfig::default(), fast_retries());
        for i in 0..40 {
            let path = Path::from(format!("f/{i}"));
            store
                .put(&path, PutPayload::from(vec![i as u8; 10]))
                .await
                .unwrap();
            let back = store.get(&path).await.unwrap().bytes().await.unwrap();
            assert_eq!(back.as_ref(), &[i as u8; 10]);
        }
        assert!(store.stats().throttled.load(Ordering::SeqCst) > 50);
        assert!(store.class(OpClass::Write).rate() < 2000.0);
        assert!(store.class(OpClass::Read).rate() < 2000.0);
        assert_eq!(
            store.class(OpClass::Delete).rate(),
            2000.0,
            "classes are apart"
        );

        let denied = Arc::new(FlakyStore::new(Box::new(|_, _| Some(Fault::Denied))));
        let store = ThrottledStore::new(denied.clone(), AimdConfig::default(), fast_retries());
        let err = store.get(&Path::from("x")).await.unwrap_err();
        assert!(matches!(err, object_store::Error::PermissionDenied { .. }));
        assert_eq!(denied.calls.load(Ordering::SeqCst), 1, "not retried");
    }

    /// A create whose response was lost is retried; the retry finds the object and, seeing
    /// its own bytes there, reports success. Someone else's object is still a lost race.
    #[tokio::test]
    async fn a_create_whose_response_was_lost_is_not_reported_as_a_lost_race() {
        let flaky = Arc::new(FlakyStore::new(Box::new(|n, op| {
            (n == 0 && op == "put").then_some(Fault::LostResponse)
        })));
        let store = ThrottledStore::new(flaky, AimdConfig::default(), fast_retries());
        let create = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let path = Path::from("_versions/1");
        store
            .put_opts(&path, PutPayload::from_static(b"mine"), create())
            .await
            .expect("the first attempt landed: the create succeeded");
        let err = store
            .put_opts(&path, PutPayload::from_static(b"theirs"), create())
            .await
            .unwrap_err();
        assert!(matches!(err, object_store::Error::AlreadyExists { .. }));

        let flaky = Arc::new(FlakyStore::new(Box::new(|n, op| {
            (n == 1 && op == "put").then_some(Fault::LostResponse)
        })));
        let store = ThrottledStore::new(flaky, AimdConfig::default(), fast_retries());
        store
            .put_opts(&path, PutPayload::from_static(b"first"), create())
            .await
            .unwrap();
        // The second writer's attempt is refused... and its retry sees different bytes.
        let err = store
            .put_opts(&path, PutPayload::from_static(b"other"), create())
            .await
            .unwrap_err();
        assert!(matches!(err, object_store::Error::AlreadyExists { .. }));
    }
}
