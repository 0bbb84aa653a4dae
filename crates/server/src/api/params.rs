//! Query strings into filters and pages: every parameter checked, unknown ones refused (a
//! typo must not widen a query silently), and the next page's query.

use serde::de::DeserializeOwned;
use synclog_core::query::{AttrEq, TimeRange};
use synclog_core::{Filter, LogId, Timestamp};

use super::model::{FilterParams, Order, PageParams};
use crate::error::{ApiError, ApiResult};

/// The filter parameters.
pub const FILTER_KEYS: &[&str] = &[
    "job",
    "status",
    "from",
    "until",
    "finished_from",
    "finished_until",
    "recorded_from",
    "recorded_until",
    "attr",
    "run",
];
/// The paging parameters.
pub const PAGE_KEYS: &[&str] = &["after", "before", "limit", "order"];
/// The default page.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest page.
pub const MAX_LIMIT: usize = 1000;

/// Refuses a parameter outside `allowed`.
pub fn only(query: &str, allowed: &[&[&str]]) -> ApiResult<()> {
    for (k, _) in form_urlencoded::parse(query.as_bytes()) {
        if !allowed.iter().any(|set| set.contains(&k.as_ref())) {
            let mut names: Vec<&str> = allowed.iter().flat_map(|s| s.iter().copied()).collect();
            names.sort_unstable();
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {k:?}; this endpoint takes {}",
                names.join(", ")
            )));
        }
    }
    Ok(())
}

/// Parses the query into `T` (ignoring parameters `T` does not name). An empty value
/// (`status=`, what an HTML form sends for "any") means the parameter is not given.
pub fn parse<T: DeserializeOwned>(query: &str) -> ApiResult<T> {
    let given: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(query.as_bytes()).filter(|(_, v)| !v.is_empty()))
        .finish();
    serde_html_form::from_str(&given).map_err(|e| ApiError::bad_request(format!("bad query: {e}")))
}

fn when(field: &str, v: &Option<String>, now: Timestamp) -> ApiResult<Option<Timestamp>> {
    v.as_deref()
        .map(|s| {
            synclog_core::timefmt::parse_when(s, now)
                .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
        })
        .transpose()
}

fn range(from: Option<Timestamp>, until: Option<Timestamp>, names: &str) -> ApiResult<TimeRange> {
    if let (Some(f), Some(u)) = (from, until) {
        if f > u {
            return Err(ApiError::bad_request(format!(
                "{names}: {} is after {}; nothing was read",
                f.to_rfc3339(),
                u.to_rfc3339()
            )));
        }
    }
    Ok(TimeRange { from, until })
}

impl FilterParams {
    /// The filter, checked.
    pub fn filter(&self, now: Timestamp) -> ApiResult<Filter> {
        let attrs = self
            .attr
            .iter()
            .map(|a| AttrEq::parse(a))
            .collect::<synclog_core::Result<Vec<_>>>()?;
        let filter = Filter {
            jobs: self.job.clone(),
            statuses: self.status.iter().map(|s| (*s).into()).collect(),
            started: range(
                when("from", &self.from, now)?,
                when("until", &self.until, now)?,
                "from/until",
            )?,
            finished: range(
                when("finished_from", &self.finished_from, now)?,
                when("finished_until", &self.finished_until, now)?,
                "finished_from/finished_until",
            )?,
            recorded: range(
                when("recorded_from", &self.recorded_from, now)?,
                when("recorded_until", &self.recorded_until, now)?,
                "recorded_from/recorded_until",
            )?,
            attrs,
            run: self.run.clone(),
        };
        filter.validate()?;
        Ok(filter)
    }
}

/// A page's bounds, checked.
pub struct Page {
    pub after: Option<LogId>,
    pub before: Option<LogId>,
    pub limit: usize,
    pub descending: bool,
}

impl PageParams {
    /// The page, checked.
    pub fn page(&self) -> ApiResult<Page> {
        let id = |name: &str, v: Option<u64>| -> ApiResult<Option<LogId>> {
            match v {
                None => Ok(None),
                Some(0) if name == "after" => Ok(None),
                Some(n) => LogId::new(n).map(Some).ok_or_else(|| {
                    ApiError::bad_request(format!("{name}: {n} is not an id (ids start at 1)"))
                }),
            }
        };
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad_request(format!(
                "limit: {limit} is not between 1 and {MAX_LIMIT}; page with the `next` link"
            )));
        }
        Ok(Page {
            after: id("after", self.after)?,
            before: id("before", self.before)?,
            limit,
            descending: self.order == Some(Order::Desc),
        })
    }
}

impl Page {
    /// The query of the next page, when this one came back full (`len` items, the last
    /// with key `last`); `None` on the last page.
    pub fn next(&self, query: &str, len: usize, last: Option<LogId>) -> Option<String> {
        (len == self.limit)
            .then(|| last.map(|l| next_query(query, l, self.descending)))
            .flatten()
    }
}

/// The query of the page after one that ended at `last`: the same parameters with the
/// cursor moved (`after` ascending, `before` descending).
pub fn next_query(query: &str, last: LogId, descending: bool) -> String {
    let cursor = if descending { "before" } else { "after" };
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != cursor {
            out.append_pair(&k, &v);
        }
    }
    out.append_pair(cursor, &last.get().to_string());
    out.finish()
}

/// A path's one parameter (a run key, a log id) as text; a path that does not decode
/// (`/v1/runs/%FF`: not UTF-8) is a JSON 400 like every other error, not axum's plain
/// text rejection.
pub struct PathText(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathText {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(text)) => Ok(PathText(text)),
            Err(rejection) => Err(ApiError::bad_request(format!(
                "the path does not read: {}; nothing was done",
                rejection.body_text()
            ))),
        }
    }
}
