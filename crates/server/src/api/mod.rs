//! The handlers of `/v1`, `/metrics` and the OpenAPI document generated from them.

pub mod model;
pub mod params;

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::de::DeserializeOwned;
use synclog_core::{Filter, LogId, LogStoreExt, NewLog, RunScan, Scan, Status};
use utoipa::OpenApi;

use self::model::*;
use self::params::{only, parse, PathText, FILTER_KEYS, PAGE_KEYS};
use crate::app::App;
use crate::error::{ApiError, ApiResult, ErrorBody};

const RUN_KEYS: &[&str] = &["unfinished", "stale", "older_than"];
const STREAM_KEYS: &[&str] = &["after"];
const COUNT_KEYS: &[&str] = &["by"];

/// The OpenAPI document, generated from the handlers and the types they parse and write.
#[derive(OpenApi)]
#[openapi(
    info(title = "synclog", description = "Durable, verified logs of data-synchronisation runs."),
    paths(append_logs, start_run, finish_run, abandon_run, list_logs, get_log, list_runs, get_run, summary, count, stream, health, metrics),
    components(schemas(ErrorBody, LogIn, AppendBody, LogOut, Receipt, StartIn, FinishIn, AbandonIn, RunAppended, RunOut, RunDetail, LogPage, RunPage, CountOut, CountBy, SummaryOut, Health, Order)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The body, read within the body timeout and the size limit, parsed as JSON.
///
/// A write must say `Content-Type: application/json` (415 otherwise): a browser sends that
/// across sites only after a CORS preflight, which this server never grants, so a page
/// elsewhere cannot post logs through a visitor's browser.
async fn body_json<T: DeserializeOwned>(app: &App, req: Request) -> ApiResult<T> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`; nothing was written",
        ));
    }
    // A declared length over the limit is refused at once, not after waiting for a body
    // that will not be read.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.inner.config.max_body_bytes as u64) {
        return Err(too_large(app));
    }
    let read = Bytes::from_request(req, &());
    let bytes = match tokio::time::timeout(app.inner.config.body_timeout, read).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the request body did not arrive in time; nothing was written",
            ))
        }
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(too_large(app))
        }
        Ok(Err(rejection)) => {
            return Err(ApiError::bad_request(format!(
                "cannot read the body: {}",
                rejection.body_text()
            )))
        }
        Ok(Ok(b)) => b,
    };
    // Numbers are stored exactly or refused, as from the command line: parsing into
    // values would round an integer beyond 64 bits or a long decimal silently.
    // A key given twice would be parsed as its last value, the other dropped unsaid.
    if let Ok(text) = std::str::from_utf8(&bytes) {
        synclog_core::validate::check_exact_numbers(text)?;
        synclog_core::validate::check_unique_keys("body", text)?;
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not the JSON expected: {e}; nothing was written"
        ))
    })
}

fn too_large(app: &App) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "the body is larger than {} bytes; send smaller batches; nothing was written",
            app.inner.config.max_body_bytes
        ),
    )
}

/// The `Idempotency-Key` header, if sent.
fn idempotency_header(headers: &HeaderMap) -> ApiResult<Option<String>> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty())
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| ApiError::bad_request("Idempotency-Key must be visible ASCII text")),
    }
}

/// Appends `batch` as one group at the store's strongest durability; answers once it is
/// durable (and read back, for a guarded pair).
async fn append(app: &App, batch: Vec<NewLog>) -> ApiResult<(StatusCode, Receipt)> {
    let started = Instant::now();
    let n = batch.len();
    let store = &app.inner.store;
    let durability = app.inner.durability;
    let result = match &app.inner.guarded {
        Some(g) => g
            .append_batch(batch, durability)
            .await
            .map(|r| (r.records, r.repeats, Some(r.durable_in), r.verified)),
        None => store
            .commit_report(batch, durability)
            .await
            .map(|c| (c.records, c.repeats, None, false)),
    };
    let (records, repeats, copies, verified) = match result {
        Ok(r) => r,
        // Counted with every other refusal of a write (see `app::count_failures`).
        Err(e) => return Err(ApiError::from(e)),
    };
    let fresh = repeats.iter().filter(|r| !**r).count();
    app.inner.metrics.appended(n, fresh, started.elapsed(), copies);
    let status = if fresh > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Receipt {
            records: records.iter().map(LogOut::from).collect(),
            repeats,
            durable_in: copies.map(Into::into),
            verified,
        },
    ))
}

/// Appends one log or a batch (atomic: all or none).
///
/// An `Idempotency-Key` header sets the key of one log; for a batch, log `i` gets
/// `KEY.i`. A retry with the same key and content returns the stored records (200,
/// `repeats` true); other content under the key is a 409 that writes nothing. A log that
/// leaves `started_at` out under a key already stored takes the stored start time, so the
/// same body sent again is a repeat.
#[utoipa::path(post, path = "/v1/logs", request_body = AppendBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes the append exactly-once")),
    responses(
        (status = 201, description = "stored, durable and read back", body = Receipt),
        (status = 200, description = "every log was a repeat: stored before", body = Receipt),
        (status = 409, description = "an idempotency key with other content, or a finished run", body = ErrorBody),
        (status = 400, description = "bad input: nothing was written", body = ErrorBody), (status = 401, description = "no token, or a wrong one (`WWW-Authenticate` says how)", body = ErrorBody), (status = 403, description = "a read token on a write, or a non-loopback host name on a server without tokens", body = ErrorBody), (status = 408, description = "the body did not arrive in time: nothing was written", body = ErrorBody), (status = 413, description = "the body is over the size limit: nothing was written", body = ErrorBody), (status = 415, description = "the body is not declared `application/json`: nothing was written", body = ErrorBody), (status = 503, description = "too many requests at once (`Retry-After`), or the store cannot serve", body = ErrorBody)))]
pub async fn append_logs(State(app): State<App>, headers: HeaderMap, req: Request) -> ApiResult<Response> {
    let key = idempotency_header(&headers)?;
    let body: AppendBody = body_json(&app, req).await?;
    let (logs, batch) = match body {
        AppendBody::One(log) => (vec![*log], false),
        AppendBody::Many(logs) => (logs, true),
    };
    if logs.is_empty() {
        return Err(ApiError::bad_request("an empty batch; nothing was written"));
    }
    let now = Utc::now();
    let mut out = Vec::with_capacity(logs.len());
    let mut stamped = Vec::with_capacity(logs.len());
    for (i, mut log) in logs.into_iter().enumerate() {
        stamped.push(log.started_at.is_none());
        if let Some(k) = &key {
            if log.idempotency_key.is_some() {
                return Err(ApiError::bad_request(format!(
                    "log #{i} has an idempotency_key and the request an Idempotency-Key header; send one; nothing was written"
                )));
            }
            log.idempotency_key = Some(if batch { format!("{k}.{i}") } else { k.clone() });
        }
        out.push(log.into_new_log(now).map_err(|mut e| {
            if batch {
                e.message = format!("log #{i}: {}", e.message);
            }
            e
        })?);
    }
    // The same body sent again (a retry after a timeout) has no start time either: a key
    // already stored takes the stored one, so the retry is a repeat, not a conflict.
    synclog_core::run::adopt_stored_starts(&*app.inner.store, &mut out, &stamped).await?;
    let (status, receipt) = append(&app, out).await?;
    Ok((status, Json(receipt)).into_response())
}

fn run_answer(status: StatusCode, receipt: Receipt) -> ApiResult<Response> {
    let record = receipt.records.into_iter().next().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the store answered the append without its record",
        )
    })?;
    let body = RunAppended {
        run: record.run.clone().unwrap_or_default(),
        repeat: receipt.repeats.first().copied().unwrap_or(false),
        record,
    };
    Ok((status, Json(body)).into_response())
}

/// Starts a run: appends its `started` record. The answer carries the run key.
#[utoipa::path(post, path = "/v1/runs", request_body = StartIn,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes the start exactly-once; needs `run` and `started_at` in the body")),
    responses((status = 201, body = RunAppended), (status = 200, description = "started before", body = RunAppended),
        (status = 409, description = "the run started with other content, or under an idempotency key with other content", body = ErrorBody),
        (status = 400, description = "bad input: nothing was written", body = ErrorBody), (status = 401, description = "no token, or a wrong one (`WWW-Authenticate` says how)", body = ErrorBody), (status = 403, description = "a read token on a write, or a non-loopback host name on a server without tokens", body = ErrorBody), (status = 408, description = "the body did not arrive in time: nothing was written", body = ErrorBody), (status = 413, description = "the body is over the size limit: nothing was written", body = ErrorBody), (status = 415, description = "the body is not declared `application/json`: nothing was written", body = ErrorBody), (status = 503, description = "too many requests at once (`Retry-After`), or the store cannot serve", body = ErrorBody)))]
pub async fn start_run(State(app): State<App>, headers: HeaderMap, req: Request) -> ApiResult<Response> {
    let key = idempotency_header(&headers)?;
    let body: StartIn = body_json(&app, req).await?;
    let mut log = NewLog::new(body.job, Status::Started).message(body.message);
    if let Some(a) = body.attrs {
        log.attrs = a;
    }
    if let Some(t) = body.started_at {
        log.started_at = t;
    }
    if key.is_some() && (body.run.is_none() || body.started_at.is_none()) {
        // Without them a retry would carry a new run key and start time: other content
        // under the same key, refused, where the client meant the same start.
        return Err(ApiError::bad_request(
            "an Idempotency-Key on a start needs `run` and `started_at` in the body, so that a retry is the same start; nothing was written",
        ));
    }
    log.run = Some(body.run.unwrap_or_else(synclog_core::run::new_run_key));
    log.idempotency_key = key;
    log.validate()?;
    let (status, receipt) = append(&app, vec![log]).await?;
    run_answer(status, receipt)
}

async fn end_run(app: &App, key: &str, log: NewLog) -> ApiResult<Response> {
    if app.inner.store.run_records(key).await?.is_empty() {
        return Err(ApiError::not_found(format!(
            "no run {key:?}; nothing was written"
        )));
    }
    let log = app.inner.store.finish_log(key, log).await?;
    let (status, receipt) = append(app, vec![log]).await?;
    run_answer(status, receipt)
}

/// Finishes a run with its terminal record. Idempotent: the same finish again returns the
/// stored record (200, `repeat`); another finish of an ended run is a 409.
#[utoipa::path(post, path = "/v1/runs/{key}/finish", request_body = FinishIn,
    params(("key" = String, Path, description = "the run key")),
    responses((status = 201, body = RunAppended), (status = 200, description = "finished the same way before", body = RunAppended),
        (status = 404, description = "no such run", body = ErrorBody), (status = 409, description = "the run ended otherwise before", body = ErrorBody),
        (status = 400, description = "bad input: nothing was written", body = ErrorBody), (status = 401, description = "no token, or a wrong one (`WWW-Authenticate` says how)", body = ErrorBody), (status = 403, description = "a read token on a write, or a non-loopback host name on a server without tokens", body = ErrorBody), (status = 408, description = "the body did not arrive in time: nothing was written", body = ErrorBody), (status = 413, description = "the body is over the size limit: nothing was written", body = ErrorBody), (status = 415, description = "the body is not declared `application/json`: nothing was written", body = ErrorBody), (status = 503, description = "too many requests at once (`Retry-After`), or the store cannot serve", body = ErrorBody)))]
pub async fn finish_run(
    State(app): State<App>,
    PathText(key): PathText,
    req: Request,
) -> ApiResult<Response> {
    let body: FinishIn = body_json(&app, req).await?;
    let mut log = NewLog::new("-", body.status.into())
        .counts(body.items_seen, body.items_written, body.items_failed)
        .message(body.message);
    if let Some(a) = body.attrs {
        log.attrs = a;
    }
    end_run(&app, &key, log).await
}

/// Gives up a run that will never finish: appends its `abandoned` record.
#[utoipa::path(post, path = "/v1/runs/{key}/abandon", request_body = AbandonIn,
    params(("key" = String, Path, description = "the run key")),
    responses((status = 201, body = RunAppended), (status = 200, description = "abandoned the same way before", body = RunAppended),
        (status = 404, description = "no such run", body = ErrorBody), (status = 409, description = "the run ended otherwise before", body = ErrorBody),
        (status = 400, description = "bad input: nothing was written", body = ErrorBody), (status = 401, description = "no token, or a wrong one (`WWW-Authenticate` says how)", body = ErrorBody), (status = 403, description = "a read token on a write, or a non-loopback host name on a server without tokens", body = ErrorBody), (status = 408, description = "the body did not arrive in time: nothing was written", body = ErrorBody), (status = 413, description = "the body is over the size limit: nothing was written", body = ErrorBody), (status = 415, description = "the body is not declared `application/json`: nothing was written", body = ErrorBody), (status = 503, description = "too many requests at once (`Retry-After`), or the store cannot serve", body = ErrorBody)))]
pub async fn abandon_run(
    State(app): State<App>,
    PathText(key): PathText,
    req: Request,
) -> ApiResult<Response> {
    let body: AbandonIn = body_json(&app, req).await?;
    end_run(
        &app,
        &key,
        NewLog::new("-", Status::Abandoned).message(body.reason),
    )
    .await
}

fn link_next(path: &str, next: &Option<String>, resp: &mut Response) {
    if let Some(q) = next {
        if let Ok(v) = HeaderValue::from_str(&format!("<{path}?{q}>; rel=\"next\"")) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
}

/// Lists logs matching the filters, a page at a time (keyset paging: follow `next`).
#[utoipa::path(get, path = "/v1/logs", params(model::FilterParams, model::PageParams),
    responses((status = 200, description = "a page; `Link: rel=\"next\"` names the next", body = LogPage),
        (status = 400, description = "a bad parameter", body = ErrorBody), (status = 401, description = "no token, or a wrong one (`WWW-Authenticate` says how)", body = ErrorBody), (status = 403, description = "a read token on a write, or a non-loopback host name on a server without tokens", body = ErrorBody), (status = 503, description = "too many requests at once (`Retry-After`), or the store cannot serve", body = ErrorBody)))]
pub async fn list_logs(State(app): State<App>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let q = q.unwrap_or_default();
    only(&q, &[FILTER_KEYS, PAGE_KEYS])?;
    let filter = parse::<FilterParams>(&q)?.filter(Utc::now())?;
    let page = parse::<PageParams>(&q)?.page()?;
    let scan = Scan {
        after: page.after,
        before: page.before,
        filter,
        limit: page.limit,
        descending: page.descending,
    };
    let logs = app.inner.store.scan(&scan).await?;
    let next = page.next(&q, logs.len(), logs.last().map(|r| r.id));
    let body = LogPage {
        logs: logs.iter().map(LogOut::from).collect(),
        next: next.clone(),
    };
    let mut resp = Json(body).into_response();
    link_next("/v1/logs", &next, &mut resp);
    Ok(resp)
}

fn parse_id(text: &str) -> ApiResult<LogId> {
    text.parse::<u64>()
        .ok()
        .and_then(LogId::new)
        .ok_or_else(|| ApiError::bad_request(format!("{text:?} is not an id (a whole number from 1)")))
}

/// One log by id.
#[utoipa::path(get, path = "/v1/logs/{id}", params(("id" = u64, Path, description = "the log's id")),
    responses((status = 200, body = LogOut), (status = 404, description = "no such log", body = ErrorBody),
        (status = 400, description = "a bad parameter", body = ErrorBody), (status = 401, description = "no token, or a wrong one (`WWW-Authenticate` says how)", body = ErrorBody), (status = 403, description = "a read token on a write, or a non-loopback host name on a server without tokens", body = ErrorBody), (status = 503, description = "too many requests at once (`Retry-After`), or the store cannot serve", body = ErrorBody)))]
pub async fn get_log(State(app): State<App>, PathText(id): PathText) -> ApiResult<Json<LogOut>> {
    let id = parse_id(&id)?;
    match app.inner.store.get(id).await? {
        Some(r) => Ok(Json(LogOut::from(&r))),
        None => Err(ApiError::not_found(format!("no log {id}"))),
    }
}

/// Lists runs (one row each), a page at a time; `stale=true` for runs started more than
/// `older_than` (default 24h) ago and not ended.
#[utoipa::path(get, path = "/v1/runs", params(model::FilterParams, model::PageParams, model::RunParams),
    responses((status = 200, body = RunPage), (status = 400, description = "a bad parameter", body = ErrorBody), (status = 401, description = "no token, or a wrong one (`WWW-Authenticate` says how)", body = ErrorBody), (status = 403, description = "a read token on a write, or a non-loopback host name on a server without tokens", body = ErrorBody), (status = 503, description = "too many requests at once (`Retry-After`), or the store cannot serve", body = ErrorBody)))]
pub async fn list_runs(State(app): State<App>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let q = q.unwrap_or_default();
    only(&q, &[FILTER_KEYS, PAGE_KEYS, RUN_KEYS])?;
    let now = Utc::now();
    let filter = parse::<FilterParams>(&q)?.filter(now)?;
    let page = parse::<PageParams>(&q)?.page()?;
    let which = parse::<RunParams>(&q)?;
    let cutoff = stale_cutoff(&which, now)?;
    let scan = RunScan {
        after: page.after,
        before: page.before,
        filter,
        unfinished: which.unfinished,
        started_before: if which.stale { Some(cutoff) } else { None },
        limit: page.limit,
        descending: page.descending,
    };
    let runs = app.inner.store.runs(&scan).await?;
    let next = page.next(&q, runs.len(), runs.last().map(|r| r.first_id()));
    let body = RunPage {
        runs: runs.iter().map(|r| RunOut::new(r, Some(cutoff))).collect(),
        next: next.clone(),
    };
    let mut resp = Json(body).into_response();
    link_next("/v1/runs", &next, &mut resp);
    Ok(resp)
}

/// The instant before which an unfinished run is stale.
pub fn stale_cutoff(which: &RunParams, now: chrono::DateTime<Utc>) -> ApiResult<chrono::DateTime<Utc>> {
    let age = match &which.older_than {
        Some(s) => synclog_core::retention::parse_duration(s)?,
        None => Duration::from_secs(24 * 3600),
    };
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| ApiError::bad_request("older_than is too long"))
}

/// One run with its records.
#[utoipa::path(get, path = "/v1/runs/{key}", params(("key" = String, Path, description = "the run key")),
    responses((status = 200, body = RunDetail), (status = 404, description = "no such run", body = ErrorBody), (status = 400, description = "a bad parameter", body = ErrorBody), (status = 401, description = "no token, or a wrong one (`WWW-Authenticate` says how)", body = ErrorBody), (status = 403, description = "a read token on a write, or a non-loopback host name on a server without tokens", body = ErrorBody), (status = 503, description = "too many requests at once (`Retry-After`), or the store cannot serve", body = ErrorBody)))]
pub async fn get_run(State(app): State<App>, PathText(key): PathText) -> ApiResult<Json<RunDetail>> {
    let records = app.inner.store.run_records(&key).await?;
    let Some(run) = synclog_core::Run::from_records(&key, &records) else {
        return Err(ApiError::not_found(format!("no run {key:?}")));
    };
    let cutoff = Utc::now() - chrono::Duration::hours(24);
    Ok(Json(RunDetail {
        run: RunOut::new(&run, Some(cutoff)),
        records: records.iter().map(LogOut::from).collect(),
    }))
}

/// Per job over the filters: the latest log, the latest success, failures since,
/// counts by status, sums and first/last time.
#[utoipa::path(get, path = "/v1/summary", params(model::FilterParams),
    responses((status = 200, body = SummaryOut), (status = 400, description = "a bad parameter", body = ErrorBody), (status = 401, description = "no token, or a wrong one (`WWW-Authenticate` says how)", body = ErrorBody), (status = 403, description = "a read token on a write, or a non-loopback host name on a server without tokens", body = ErrorBody), (status = 503, description = "too many requests at once (`Retry-After`), or the store cannot serve", body = ErrorBody)))]
pub async fn summary(State(app): State<App>, RawQuery(q): RawQuery) -> ApiResult<Json<SummaryOut>> {
    let q = q.unwrap_or_default();
    only(&q, &[FILTER_KEYS])?;
    let filter = parse::<FilterParams>(&q)?.filter(Utc::now())?;
    let s = app.inner.store.summary(&filter).await?;
    Ok(Json(SummaryOut {
        all_last_succeeded: s.all_last_succeeded(),
        jobs: s.jobs.iter().map(JobSummaryOut::from).collect(),
    }))
}

/// How many logs match the filters; with `by=status`, also how many of each status.
#[utoipa::path(get, path = "/v1/count", params(model::FilterParams, model::CountParams),
    responses((status = 200, body = CountOut), (status = 400, description = "a bad parameter", body = ErrorBody), (status = 401, description = "no token, or a wrong one (`WWW-Authenticate` says how)", body = ErrorBody), (status = 403, description = "a read token on a write, or a non-loopback host name on a server without tokens", body = ErrorBody), (status = 503, description = "too many requests at once (`Retry-After`), or the store cannot serve", body = ErrorBody)))]
pub async fn count(State(app): State<App>, RawQuery(q): RawQuery) -> ApiResult<Json<CountOut>> {
    let q = q.unwrap_or_default();
    only(&q, &[FILTER_KEYS, COUNT_KEYS])?;
    let filter = parse::<FilterParams>(&q)?.filter(Utc::now())?;
    let out = match parse::<CountParams>(&q)?.by {
        None => CountOut {
            count: app.inner.store.count(&filter).await?,
            by_status: None,
        },
        Some(CountBy::Status) => {
            let counts = app.inner.store.count_by_status(&filter).await?;
            CountOut {
                count: counts.values().sum(),
                by_status: Some(counts.iter().map(|(s, n)| (s.as_str().to_string(), *n)).collect()),
            }
        }
    };
    Ok(Json(out))
}

/// Server-Sent Events of new logs matching the filters (`event: log`, `id:` the log's
/// id, `data:` the log). Reconnecting with `Last-Event-ID` resumes after that id: nothing
/// skipped, nothing repeated.
#[utoipa::path(get, path = "/v1/stream", params(model::FilterParams, model::StreamParams,
        ("Last-Event-ID" = Option<u64>, Header, description = "resume after this id")),
    responses((status = 200, description = "text/event-stream of `log` events", content_type = "text/event-stream", body = LogOut),
        (status = 400, description = "a bad parameter or `Last-Event-ID`", body = ErrorBody), (status = 401, description = "no token, or a wrong one (`WWW-Authenticate` says how)", body = ErrorBody), (status = 403, description = "a read token on a write, or a non-loopback host name on a server without tokens", body = ErrorBody), (status = 503, description = "too many streams (`Retry-After`)", body = ErrorBody)))]
pub async fn stream(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let q = q.unwrap_or_default();
    only(&q, &[FILTER_KEYS, STREAM_KEYS])?;
    let filter: Filter = parse::<FilterParams>(&q)?.filter(Utc::now())?;
    let from_header = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be a log id"))?,
        ),
    };
    let after = match from_header.or(parse::<StreamParams>(&q)?.after) {
        Some(0) => None,
        Some(n) => {
            let id = LogId::new(n).ok_or_else(|| ApiError::bad_request(format!("{n} is not a log id")))?;
            // An id this store never handed out (another store's, or a typo): resuming
            // there would skip every log appended until ids reach it.
            let top = app.inner.store.high_water().await?;
            if top.is_none_or(|top| id > top) {
                return Err(ApiError::bad_request(format!(
                    "cannot resume after log {n}: the newest id this store handed out is {}",
                    top.map_or(0, LogId::get)
                )));
            }
            Some(id)
        }
        None => app.inner.store.last_id().await?,
    };
    let permit = app
        .inner
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::overloaded("too many open streams; retry shortly", 5))?;
    let hub = app.hub().await?;
    let stream = crate::hub::Stream::new(app.inner.store.clone(), hub, filter, after);
    struct Open {
        stream: crate::hub::Stream,
        shutdown: tokio::sync::watch::Receiver<bool>,
        _permit: tokio::sync::OwnedSemaphorePermit,
        failed: bool,
    }
    let state = Open {
        stream,
        shutdown: app.inner.shutdown.clone(),
        _permit: permit,
        failed: false,
    };
    let events = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.failed || *s.shutdown.borrow() {
                return None;
            }
            tokio::select! {
                changed = s.shutdown.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                got = s.stream.next() => match got {
                    Ok(Some(rec)) => {
                        let ev = Event::default()
                            .id(rec.id.get().to_string())
                            .event("log")
                            .json_data(LogOut::from(&rec))
                            .unwrap_or_else(|_| Event::default().event("error").data("a log could not be written as JSON"));
                        return Some((Ok::<_, std::convert::Infallible>(ev), s));
                    }
                    Ok(None) => return None,
                    Err(e) => {
                        s.failed = true;
                        let ev = Event::default().event("error").data(e.to_string());
                        return Some((Ok(ev), s));
                    }
                }
            }
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// The store's state: each copy ok, behind, damaged or full.
#[utoipa::path(get, path = "/v1/health",
    responses((status = 200, description = "the store serves; `status` is `degraded` when a copy is not ok", body = Health),
        (status = 503, description = "the store cannot be read (this body); beyond the connection limit, an `overloaded` error body instead", body = Health), (status = 401, description = "no token, or a wrong one (`WWW-Authenticate` says how)", body = ErrorBody), (status = 403, description = "a read token on a write, or a non-loopback host name on a server without tokens", body = ErrorBody)))]
pub async fn health(State(app): State<App>) -> Response {
    let last_id = app.inner.store.last_id().await;
    let verify = app.last_verify();
    let mut copies = Vec::new();
    match &app.inner.guarded {
        Some(g) => {
            let s = g.stats();
            for (side, store, pending, failures) in [
                (
                    "primary",
                    g.primary().describe(),
                    s.pending_primary,
                    s.primary_failures,
                ),
                (
                    "backup",
                    g.backup().describe(),
                    s.pending_backup,
                    s.backup_failures,
                ),
            ] {
                let damaged = verify
                    .as_ref()
                    .is_some_and(|v| v.damaged.iter().any(|d| d == side));
                let state = if damaged {
                    "damaged"
                } else if crate::disk::is_full(&store) {
                    "full"
                } else if pending > 0 {
                    "behind"
                } else {
                    "ok"
                };
                copies.push(CopyHealth {
                    copy: side.to_string(),
                    store,
                    state: state.to_string(),
                    pending,
                    failures,
                });
            }
        }
        None => {
            let store = app.inner.store.describe();
            let state = if verify.as_ref().is_some_and(|v| !v.clean) {
                "damaged"
            } else if crate::disk::is_full(&store) {
                "full"
            } else {
                "ok"
            };
            copies.push(CopyHealth {
                copy: "store".into(),
                store,
                state: state.into(),
                pending: 0,
                failures: 0,
            });
        }
    }
    let readable = last_id.is_ok();
    let verified_clean = verify.as_ref().is_none_or(|v| v.clean);
    let all_ok = readable && verified_clean && copies.iter().all(|c| c.state == "ok");
    let body = Health {
        status: if all_ok { "ok" } else { "degraded" }.into(),
        last_id: last_id.ok().flatten().map(|i| i.get()),
        copies,
        last_verify: verify.map(|v| VerifyOut {
            at: v.at,
            clean: v.clean,
            detail: v.detail,
        }),
    };
    // 503 only when the store cannot be read: a copy that is behind or damaged is
    // reported in the body (`status: degraded`) while the store still serves.
    let status = if readable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"), (status = 401, description = "no token, or a wrong one (`WWW-Authenticate` says how)", body = ErrorBody), (status = 403, description = "a read token on a write, or a non-loopback host name on a server without tokens", body = ErrorBody)))]
pub async fn metrics(State(app): State<App>) -> Response {
    let summary = app.inner.store.summary(&Filter::default()).await.ok();
    let text = app.inner.metrics.render(
        app.inner.guarded.as_ref().map(|g| g.stats()),
        app.last_verify().as_ref(),
        summary.as_ref(),
        Utc::now(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The OpenAPI document of this API.
pub async fn openapi() -> Response {
    match ApiDoc::openapi().to_pretty_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()).into_response(),
    }
}
