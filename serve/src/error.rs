//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`, with the
//! status the official SDKs map to their exception classes (400 `BadRequestError`, 401
//! `AuthenticationError`, 404 `NotFoundError`, 409 `ConflictError`, 413, 429
//! `RateLimitError`, 500 `InternalServerError`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// The error object.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ErrorObject {
    /// What went wrong, for a person.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `not_found_error`,
    /// `rate_limit_error`, `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code.
    pub code: Option<String>,
}

/// The error body.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

/// An API error and its status.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The body.
    pub error: ErrorObject,
    /// Seconds a client should wait (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            error: ErrorObject {
                message: message.into(),
                kind: kind.into(),
                param: None,
                code: Some(code.into()),
            },
            retry_after: None,
        }
    }

    /// 400: the request is wrong; `param` names the field.
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_value",
            message,
        );
        if !param.is_empty() {
            e.error.param = Some(param.into());
        }
        e
    }

    /// 400 with a code of its own.
    pub fn bad_code(param: &str, code: &str, message: impl Into<String>) -> Self {
        let mut e = Self::bad(param, message);
        e.error.code = Some(code.into());
        e
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            message,
        )
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "forbidden",
            message,
        )
    }

    /// 404 for an id the caller cannot see (someone else's is answered the same).
    pub fn not_found(what: &str, id: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "not_found",
            format!("no {what} with id {id:?}"),
        );
        e.error.param = Some("id".into());
        e
    }

    /// 409: the object is not in a state that allows this (a remix of a running video).
    pub fn conflict(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "conflict",
            message,
        );
        e.error.param = Some(param.into());
        e
    }

    /// 413.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("the request body is over the server's limit of {limit} bytes"),
        )
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(code: &str, message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            code,
            message,
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// 500: the server failed (logged; the message says what without internals).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            message,
        )
    }

    /// 404 for a route that does not exist.
    pub fn no_route(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            format!("unknown request URL: {method} {path}"),
        )
    }

    /// 405.
    pub fn method(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            format!("{path} does not take {method}"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!("{e}");
        ApiError::internal("the job store failed; see the server's log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(ErrorBody { error: self.error })).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}
