//! Errors as the API answers them: `{"error": {"kind", "message"}}` with the status that
//! fits, never a panic message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use synclog_core::{Error, ErrorKind};
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable name (`invalid_input`, `unauthorized`, `conflict`, ...).
    pub kind: &'static str,
    /// What happened, for a person.
    pub message: String,
    /// Seconds to wait before retrying (`Retry-After`), for 503.
    pub retry_after: Option<u32>,
    /// The authentication scheme to ask for on 401.
    pub challenge: Option<&'static str>,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error: its kind and message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable name to match on: `invalid_input`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `refused`, `too_large`, `timeout`, `overloaded`,
    /// `unavailable`, `corrupt`, `unsupported`, `internal`.
    pub kind: String,
    /// What happened.
    pub message: String,
}

impl ApiError {
    /// An error with `status`, `kind` and `message`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
            challenge: None,
        }
    }

    /// 400: the request was malformed; nothing was written.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 with `Retry-After`.
    pub fn overloaded(message: impl Into<String>, retry_after: u32) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let (status, kind, retry) = match e.kind() {
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_input", None),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found", None),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict", None),
            ErrorKind::Refused => (StatusCode::CONFLICT, "refused", None),
            ErrorKind::Corrupt => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt", None),
            ErrorKind::Unsupported => (StatusCode::NOT_IMPLEMENTED, "unsupported", None),
            ErrorKind::Locked | ErrorKind::Busy => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", Some(1)),
            ErrorKind::Closed => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", Some(5)),
            ErrorKind::Io | ErrorKind::Backend => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", Some(5)),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", Some(5)),
        };
        ApiError {
            retry_after: retry,
            ..ApiError::new(status, kind, e.to_string())
        }
    }
}

/// The kind of the error a response carries, in its extensions (for the metrics).
#[derive(Debug, Clone, Copy)]
pub struct ErrorKindTag(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let tag = ErrorKindTag(self.kind);
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind.to_string(),
                message: self.message,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(scheme) = self.challenge {
            if let Ok(v) = HeaderValue::from_str(&format!("{scheme} realm=\"synclog\"")) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        resp.extensions_mut().insert(tag);
        resp
    }
}

/// What a handler returns.
pub type ApiResult<T> = std::result::Result<T, ApiError>;
