//! Where the engine's trace events go (see `quiver_engine::events`): to stderr or a file when
//! `QUIVER_LOG` asks (env-filter syntax, styled by `QUIVER_LOG_STYLE`, timestamps at
//! `QUIVER_LOG_TS_PRECISION`, into `QUIVER_LOG_FILE`), and to JS subscriptions. Nothing is
//! formatted or sent when neither listens.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::SystemTime;

use napi::bindgen_prelude::Either3;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::errors::coded;

/// One trace event, as a JS subscription receives it.
#[napi(object)]
pub struct NativeTraceEvent {
    pub level: String,
    pub target: String,
    pub fields: HashMap<String, Either3<f64, bool, String>>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: f64,
}

/// Events queued for one subscription before new ones are dropped: a listener that falls
/// behind loses events instead of slowing the engine or growing memory.
const QUEUE: usize = 4096;

type EventCallback =
    ThreadsafeFunction<NativeTraceEvent, (), NativeTraceEvent, napi::Status, false, true, QUEUE>;

struct Subscription {
    id: u32,
    /// Most verbose level wanted, as a rank (1 error … 5 trace).
    rank: u8,
    callback: EventCallback,
}

static SUBSCRIPTIONS: RwLock<Vec<Subscription>> = RwLock::new(Vec::new());
/// The most verbose rank any subscription wants (0: none), read on every event check.
static WANTED: AtomicU8 = AtomicU8::new(0);
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

fn rank(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// Records the most verbose level the subscriptions want, then has every call site ask again
/// (call it without holding the subscription list).
fn update_wanted(most: u8) {
    WANTED.store(most, Ordering::Release);
    tracing::callsite::rebuild_interest_cache();
}

fn most_wanted(subscriptions: &[Subscription]) -> u8 {
    subscriptions.iter().map(|s| s.rank).max().unwrap_or(0)
}

/// Lets events through to the JS layer only while a subscription wants their level. Its
/// answers are cached per call site and its level is tracing's global ceiling, both rebuilt
/// when subscriptions change: with none (and QUIVER_LOG unset) an event site costs one
/// relaxed load, as with no subscriber at all — no per-event check, no plan measured.
struct Wanted;

fn wanted(meta: &Metadata<'_>) -> bool {
    rank(meta.level()) <= WANTED.load(Ordering::Acquire) && meta.target().starts_with("quiver")
}

impl<S> Filter<S> for Wanted {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        wanted(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if wanted(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(match WANTED.load(Ordering::Acquire) {
            0 => LevelFilter::OFF,
            1 => LevelFilter::ERROR,
            2 => LevelFilter::WARN,
            3 => LevelFilter::INFO,
            4 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        })
    }
}

#[derive(Default)]
struct Fields(HashMap<String, Either3<f64, bool, String>>);

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Either3::A(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0
            .insert(field.name().to_string(), Either3::A(value as f64));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0
            .insert(field.name().to_string(), Either3::A(value as f64));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Either3::B(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Either3::C(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), Either3::C(format!("{value:?}")));
    }
}

/// Hands events to JS subscriptions, never waiting: a full queue drops the event.
struct JsLayer;

impl<S: Subscriber> Layer<S> for JsLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let Ok(subscriptions) = SUBSCRIPTIONS.read() else {
            return;
        };
        let level = rank(event.metadata().level());
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1e3);
        let mut fields = Fields::default();
        event.record(&mut fields);
        for s in subscriptions.iter().filter(|s| level <= s.rank) {
            let fields = fields
                .0
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Either3::A(n) => Either3::A(*n),
                        Either3::B(b) => Either3::B(*b),
                        Either3::C(t) => Either3::C(t.clone()),
                    };
                    (k.clone(), v)
                })
                .collect();
            s.callback.call(
                NativeTraceEvent {
                    level: event.metadata().level().to_string(),
                    target: event.metadata().target().to_string(),
                    fields,
                    timestamp,
                },
                ThreadsafeFunctionCallMode::NonBlocking,
            );
        }
    }
}

/// Timestamps in RFC 3339 at the precision `QUIVER_LOG_TS_PRECISION` names.
struct Timer(fn(SystemTime) -> humantime::Rfc3339Timestamp);

impl FormatTime for Timer {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", (self.0)(SystemTime::now()))
    }
}

/// A file the log goes to, shared by the threads that write events.
struct LogFile(Mutex<std::fs::File>);

impl std::io::Write for &LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut f) => f.write(buf),
            Err(poisoned) => poisoned.into_inner().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self.0.lock() {
            Ok(mut f) => f.flush(),
            Err(poisoned) => poisoned.into_inner().flush(),
        }
    }
}

/// The file `QUIVER_LOG_FILE` names, its folders created; `None` (and a note on stderr)
/// when it cannot be opened, so the log goes to stderr instead.
fn log_file(path: &str) -> Option<&'static LogFile> {
    let path = std::path::Path::new(path);
    let opened = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        });
    match opened {
        Ok(file) => Some(Box::leak(Box::new(LogFile(Mutex::new(file))))),
        Err(e) => {
            eprintln!(
                "quiverdb: cannot write the log to QUIVER_LOG_FILE={} ({e}); logging to stderr",
                path.display()
            );
            None
        }
    }
}

/// Installs the process's trace subscriber once (a subscriber another library installed
/// first is kept; QUIVER_LOG and subscriptions then see nothing).
pub(crate) fn init() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let spec = std::env::var("QUIVER_LOG").ok().filter(|s| !s.trim().is_empty());
        let fmt_layer = spec.map(|spec| {
            let filter = EnvFilter::try_new(&spec).unwrap_or_else(|e| {
                eprintln!("quiverdb: QUIVER_LOG={spec:?} is not a valid filter ({e}); using 'info'");
                EnvFilter::new("info")
            });
            let precision = std::env::var("QUIVER_LOG_TS_PRECISION").unwrap_or_default();
            let timer = Timer(match precision.trim() {
                "ns" => humantime::format_rfc3339_nanos,
                "ms" => humantime::format_rfc3339_millis,
                "s" => humantime::format_rfc3339_seconds,
                "us" | "" => humantime::format_rfc3339_micros,
                other => {
                    eprintln!("quiverdb: QUIVER_LOG_TS_PRECISION={other:?} is not ns, us, ms or s; using us");
                    humantime::format_rfc3339_micros
                }
            });
            let file = std::env::var("QUIVER_LOG_FILE")
                .ok()
                .filter(|p| !p.trim().is_empty())
                .and_then(|p| log_file(&p));
            let ansi = match std::env::var("QUIVER_LOG_STYLE").unwrap_or_default().trim() {
                "always" => true,
                "never" => false,
                _ => file.is_none() && std::io::stderr().is_terminal(),
            };
            let layer = tracing_subscriber::fmt::layer()
                .with_timer(timer)
                .with_ansi(ansi);
            match file {
                Some(file) => layer.with_writer(move || file).with_filter(filter).boxed(),
                None => layer
                    .with_writer(std::io::stderr)
                    .with_filter(filter)
                    .boxed(),
            }
        });
        let _ = tracing_subscriber::registry()
            .with(fmt_layer)
            .with(JsLayer.with_filter(Wanted))
            .try_init();
    });
}

/// Starts sending events of `level` and above ("error", "warn", "info", "debug" or "trace")
/// to `callback`; returns the subscription's id for [`unsubscribe_events`].
#[napi]
pub fn subscribe_events(callback: EventCallback, level: Option<String>) -> napi::Result<u32> {
    init();
    let level = level.unwrap_or_else(|| "info".to_string());
    let rank = match level.to_ascii_lowercase().as_str() {
        "error" => 1,
        "warn" => 2,
        "info" => 3,
        "debug" => 4,
        "trace" => 5,
        _ => {
            return Err(coded(
                "InvalidArgument",
                format!("level must be 'error', 'warn', 'info', 'debug' or 'trace', got '{level}'"),
            ))
        }
    };
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut subscriptions = SUBSCRIPTIONS
        .write()
        .map_err(|_| coded("Internal", "the subscription list is poisoned"))?;
    subscriptions.push(Subscription { id, rank, callback });
    let most = most_wanted(&subscriptions);
    drop(subscriptions);
    update_wanted(most);
    Ok(id)
}

/// Stops a subscription (nothing happens for an unknown id).
#[napi]
pub fn unsubscribe_events(id: u32) {
    let most = match SUBSCRIPTIONS.write() {
        Ok(mut subscriptions) => {
            subscriptions.retain(|s| s.id != id);
            most_wanted(&subscriptions)
        }
        Err(_) => return,
    };
    update_wanted(most);
}
