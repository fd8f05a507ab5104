//! What every request to `distill serve` passes before a handler sees it: the API key, the
//! `Content-Type` of a POST, the declared and actual body size, and a deadline for the body.
//!
//! - Auth runs first, so an unauthenticated client cannot make the server buffer a body.
//! - POSTs must say `Content-Type: application/json`. A web page can send a cross-site "simple"
//!   POST (`text/plain`, form types) without a CORS preflight; a JSON content type forces the
//!   preflight, which this server never grants, so a page cannot drive a local unauthenticated
//!   server from the user's browser.
//! - The body is read here, whole, within `body_timeout` and `max_body_bytes`: a client that
//!   declares more than it sends (a lying `Content-Length`) or trickles bytes gets a 408 and the
//!   connection is closed instead of holding a task and a buffer forever.
//! - After a large body the process gives freed heap back to the OS (glibc keeps it otherwise:
//!   a 200k-message request left RSS 500 MB higher for good).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::server::api_error;

/// Bodies at least this large are followed by [`trim_heap`].
const TRIM_AFTER_BYTES: usize = 1 << 20;

/// Settings of the request guard.
#[derive(Clone, Debug)]
pub struct GuardConfig {
    /// The key requests must present (`Authorization: Bearer KEY`); `None` = open server.
    pub api_key: Option<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Time allowed to receive a whole request body.
    pub body_timeout: Duration,
}

/// The middleware (install with `axum::middleware::from_fn_with_state`).
pub async fn guard(State(cfg): State<Arc<GuardConfig>>, req: Request, next: Next) -> Response {
    // Liveness probes stay open; everything else needs the key.
    if req.uri().path() != "/health"
        && !crate::auth::authorized(cfg.api_key.as_deref(), req.headers())
    {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "invalid or missing API key (send `Authorization: Bearer KEY`)",
            "authentication_error",
            None,
        )
        .into_response();
    }
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    if !is_json(req.headers()) {
        return api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST bodies must be sent with `Content-Type: application/json`",
            "invalid_request_error",
            None,
        )
        .into_response();
    }
    let (parts, body) = req.into_parts();
    let bytes = match read_body(&parts.headers, body, &cfg).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let large = bytes.len() >= TRIM_AFTER_BYTES;
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if large {
        // The handler has dropped the request's buffers; give their pages back.
        tokio::task::spawn_blocking(trim_heap);
    }
    response
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

fn too_large(max: usize) -> Response {
    api_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body exceeds this server's limit of {max} bytes"),
        "invalid_request_error",
        None,
    )
    .into_response()
}

/// The whole body, or the response that ends the request (and, for a stalled body, the
/// connection: the rest of a half-sent body cannot be told apart from the next request).
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    cfg: &GuardConfig,
) -> Result<axum::body::Bytes, Response> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > cfg.max_body_bytes as u64) {
        return Err(too_large(cfg.max_body_bytes));
    }
    let read = axum::body::to_bytes(body, cfg.max_body_bytes);
    match tokio::time::timeout(cfg.body_timeout, read).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let inner = e.into_inner();
            if inner.is::<http_body_util::LengthLimitError>() {
                Err(too_large(cfg.max_body_bytes))
            } else {
                let mut r = api_error(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {inner}"),
                    "invalid_request_error",
                    None,
                )
                .into_response();
                r.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                Err(r)
            }
        }
        Err(_) => {
            tracing::debug!(timeout = ?cfg.body_timeout, "request body not received in time");
            let mut r = api_error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    cfg.body_timeout.as_secs_f64()
                ),
                "invalid_request_error",
                None,
            )
            .into_response();
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            Err(r)
        }
    }
}

/// Returns free heap pages to the OS. glibc keeps freed memory in its arenas (one per thread
/// that allocated), so without this a single huge request raises RSS for the life of the
/// process. A no-op on other platforms and allocators.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: glibc's malloc_trim takes no pointers and only releases memory the allocator
        // holds as free; it is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(is_json(&h("application/json")));
        assert!(is_json(&h("Application/JSON; charset=utf-8")));
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "application/jsonp",
        ] {
            assert!(!is_json(&h(bad)), "{bad}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
