//! The server's shared state and the router with its layers (auth, limits, errors).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Router};
use synclog_core::guarded::Guarded;
use synclog_core::LogStore;
use tokio::sync::{watch, Semaphore};
use tower::ServiceBuilder;

use crate::auth::{Access, Need};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::{api, dashboard};

/// How the server behaves: limits and access.
#[derive(Debug, Clone)]
pub struct Config {
    /// Who may read and write.
    pub access: Access,
    /// The largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Requests handled at once (streams aside); more get 503 with `Retry-After`.
    pub max_concurrent: usize,
    /// Open event streams at once; more get 503 with `Retry-After`.
    pub max_streams: usize,
    /// How long a client may take to send its body (408 beyond): a slow client never
    /// reaches the writer.
    pub body_timeout: Duration,
    /// How long a client may take to send a request's head (its line and headers), or sit
    /// idle between keep-alive requests, before its connection is closed: a client that
    /// sends part of a request and stops never holds a connection for ever.
    pub header_timeout: Duration,
    /// Connections open at once (event streams included); a new one beyond gets 503 with
    /// `Retry-After` and is closed.
    pub max_connections: usize,
    /// How often to verify the store in the background (`None`: never); the result is in
    /// `/metrics` and `/v1/health`.
    pub verify_every: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            access: Access::default(),
            max_body_bytes: 4 << 20,
            max_concurrent: 512,
            max_streams: 4096,
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(30),
            max_connections: 8192,
            verify_every: None,
        }
    }
}

/// What a background verify found.
#[derive(Debug, Clone)]
pub struct VerifyOutcome {
    /// When it finished.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Every record intact (and, for a pair, both copies in step).
    pub clean: bool,
    /// What it found, in a line.
    pub detail: String,
    /// The copies it found damaged or missing records in (`primary`, `backup`, `store`).
    pub damaged: Vec<String>,
}

/// The state every handler shares (cheap to clone).
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub store: Arc<dyn LogStore>,
    /// The store's strongest durability: what every append asks for (read once).
    pub durability: synclog_core::Durability,
    pub guarded: Option<Arc<Guarded>>,
    pub config: Config,
    pub metrics: Metrics,
    pub streams: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
    pub verify: Mutex<Option<VerifyOutcome>>,
    pub charts: dashboard::ChartCache,
    pub hub: tokio::sync::OnceCell<Arc<crate::hub::Hub>>,
}

impl App {
    /// State over `store`; `guarded`: the same store as a guarded pair, when it is one (for
    /// health and the pair's metrics). `shutdown` turning `true` ends the event streams.
    pub fn new(
        store: Arc<dyn LogStore>,
        guarded: Option<Arc<Guarded>>,
        config: Config,
        shutdown: watch::Receiver<bool>,
    ) -> App {
        let streams = Arc::new(Semaphore::new(config.max_streams));
        let metrics = Metrics::default();
        if let Some(g) = &guarded {
            g.observe_groups(metrics.group_observer());
        }
        App {
            inner: Arc::new(Inner {
                durability: store.capabilities().strongest_durability(),
                store,
                guarded,
                config,
                metrics,
                streams,
                shutdown,
                verify: Mutex::new(None),
                charts: dashboard::ChartCache::default(),
                hub: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn LogStore> {
        &self.inner.store
    }

    /// The follower every event stream shares, started with the first stream.
    pub(crate) async fn hub(&self) -> synclog_core::Result<Arc<crate::hub::Hub>> {
        self.inner
            .hub
            .get_or_try_init(|| crate::hub::Hub::start(self.inner.store.clone(), self.inner.shutdown.clone()))
            .await
            .cloned()
    }

    /// The last background verify's outcome.
    pub fn last_verify(&self) -> Option<VerifyOutcome> {
        self.inner.verify.lock().map(|v| v.clone()).unwrap_or(None)
    }

    /// Verifies the store (both copies of a pair) and keeps the outcome for `/metrics`.
    pub async fn verify_now(&self) -> VerifyOutcome {
        let outcome = match &self.inner.guarded {
            Some(g) => match g.check(false).await {
                Ok(r) => VerifyOutcome {
                    at: chrono::Utc::now(),
                    clean: !r.found_problems(),
                    damaged: [
                        ("primary", r.damaged_in_primary.len() + r.missing_in_primary.len()),
                        ("backup", r.damaged_in_backup.len() + r.missing_in_backup.len()),
                        // Nothing intact left, or two versions of a record: both copies.
                        ("primary", r.damaged_in_both.len() + r.conflicts.len()),
                        ("backup", r.damaged_in_both.len() + r.conflicts.len()),
                    ]
                    .into_iter()
                    .chain(r.unreadable.iter().chain(&r.problems).map(|p| (p.copy.name(), 1)))
                    .filter(|(_, n)| *n > 0)
                    .map(|(side, _)| side.to_string())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                    detail: format!(
                        "{} in both copies; {} missing in the primary, {} in the backup, {} damaged",
                        r.in_both,
                        r.missing_in_primary.len(),
                        r.missing_in_backup.len(),
                        r.damaged_in_primary.len() + r.damaged_in_backup.len() + r.damaged_in_both.len()
                    ),
                },
                Err(e) => VerifyOutcome {
                    at: chrono::Utc::now(),
                    clean: false,
                    damaged: vec![],
                    detail: format!("the check failed: {e}"),
                },
            },
            None => match self.inner.store.verify(Default::default()).await {
                Ok(r) => VerifyOutcome {
                    at: chrono::Utc::now(),
                    clean: r.is_clean(),
                    damaged: if r.is_clean() {
                        vec![]
                    } else {
                        vec!["store".into()]
                    },
                    detail: format!(
                        "{} records checked, {} missing, {} damaged",
                        r.checked,
                        r.missing_count(),
                        r.corrupt.len()
                    ),
                },
                Err(e) => VerifyOutcome {
                    at: chrono::Utc::now(),
                    clean: false,
                    damaged: vec![],
                    detail: format!("verify failed: {e}"),
                },
            },
        };
        if let Ok(mut v) = self.inner.verify.lock() {
            *v = Some(outcome.clone());
        }
        outcome
    }
}

/// The whole router: the API under `/v1`, `/metrics`, and the dashboard.
pub fn router(app: App) -> Router {
    let config = &app.inner.config;
    let limited = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|e: BoxError| async move {
            if e.is::<tower::load_shed::error::Overloaded>() {
                ApiError::overloaded("too many requests at once; retry shortly", 1)
            } else {
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the request could not be served",
                )
            }
        }))
        .load_shed()
        // One semaphore shared by every route (`Router::layer` wraps each route apart).
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            config.max_concurrent,
        ));

    let writes = Router::new()
        .route("/v1/logs", post(api::append_logs))
        .route("/v1/runs", post(api::start_run))
        .route("/v1/runs/{key}/finish", post(api::finish_run))
        .route("/v1/runs/{key}/abandon", post(api::abandon_run))
        .route_layer(axum::middleware::from_fn(no_query))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), require_write));
    let reads = Router::new()
        .route("/v1/logs", get(api::list_logs))
        .route("/v1/logs/{id}", get(api::get_log))
        .route("/v1/runs", get(api::list_runs))
        .route("/v1/runs/{key}", get(api::get_run))
        .route("/v1/summary", get(api::summary))
        .route("/v1/count", get(api::count))
        .route("/v1/openapi.json", get(api::openapi))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), require_read));
    // What monitoring asks: answered however busy the server is (a load balancer must not
    // take a busy node for a dead one), so outside the request limit.
    let probes = Router::new()
        .route("/v1/health", get(api::health))
        .route("/metrics", get(api::metrics))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), require_read));
    let pages = Router::new()
        .route("/", get(dashboard::index))
        .route("/run", get(dashboard::run_page_by_query))
        .route("/runs/{key}", get(dashboard::run_page))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_read_browser,
        ));
    // Streams are long-lived: they have their own limit, not the request limit.
    let streams = Router::new()
        .route("/v1/stream", get(api::stream))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), require_read));

    Router::new()
        .merge(writes)
        .merge(reads)
        .merge(pages)
        .layer(limited)
        // Outside the request limit, so that a write it turns away is counted too.
        .layer(axum::middleware::from_fn_with_state(app.clone(), count_failures))
        .merge(streams)
        .merge(probes)
        .fallback(|| async { ApiError::not_found("no such endpoint; see /v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see /v1/openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the server met an internal error; nothing was acknowledged",
            )
            .into_response()
        }))
        .with_state(app)
}

async fn require(app: &App, req: Request, next: Next, need: Need, browser: bool) -> Response {
    let access = &app.inner.config.access;
    if !access.has_tokens() && !crate::auth::loopback_host(req.headers()) {
        return ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            "without a token this server answers only requests to a loopback host name (localhost, 127.0.0.1, [::1])",
        )
        .into_response();
    }
    match access.check(req.headers(), need, browser) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Counts every write (every `POST`) that was refused or failed, by the kind of its error:
/// bad input, auth, limits and the store's own failures alike (nothing acknowledged in
/// each).
async fn count_failures(State(app): State<App>, req: Request, next: Next) -> Response {
    let write = req.method() == axum::http::Method::POST;
    let resp = next.run(req).await;
    if !write {
        return resp;
    }
    if let Some(crate::error::ErrorKindTag(kind)) = resp.extensions().get() {
        app.inner.metrics.append_failed(kind);
    }
    resp
}

/// Refuses a query string where the endpoint takes none: a parameter it does not know
/// (`POST /v1/logs?dry_run=true`) must not be ignored while the request goes on and writes.
async fn no_query(req: Request, next: Next) -> Response {
    match req.uri().query() {
        Some(q) if !q.is_empty() => ApiError::bad_request(format!(
            "unknown query parameters {q:?}: this endpoint takes none; nothing was done"
        ))
        .into_response(),
        _ => next.run(req).await,
    }
}

async fn require_write(State(app): State<App>, req: Request, next: Next) -> Response {
    require(&app, req, next, Need::Write, false).await
}

async fn require_read(State(app): State<App>, req: Request, next: Next) -> Response {
    require(&app, req, next, Need::Read, false).await
}

async fn require_read_browser(State(app): State<App>, req: Request, next: Next) -> Response {
    require(&app, req, next, Need::Read, true).await
}
