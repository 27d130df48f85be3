//! Reading responses: status checks with the registry's error details, and size-capped
//! bodies.

use futures::StreamExt;
use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;

use super::ClientError;

/// Returns the response if its status is one of `ok`, else the matching error with the
/// registry's error details.
pub(super) async fn expect_status(
    response: Response,
    method: &Method,
    ok: &[StatusCode],
) -> Result<Response, ClientError> {
    let status = response.status();
    if ok.contains(&status) {
        return Ok(response);
    }
    let url = response.url().clone();
    let detail = error_detail(response).await;
    let method = method.clone();
    Err(match status {
        StatusCode::NOT_FOUND => ClientError::NotFound {
            method,
            url: url.to_string(),
            detail,
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ClientError::Unauthorized {
            method,
            url: url.to_string(),
            detail,
        },
        status => ClientError::Status {
            method,
            url: url.to_string(),
            status,
            detail,
        },
    })
}

/// The registry's `{"errors":[{"code","message"}]}` as `CODE: message; …`, else the start of
/// the body.
pub(super) async fn error_detail(response: Response) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(Deserialize)]
    struct ErrorItem {
        code: Option<String>,
        message: Option<String>,
    }
    let status = response.status();
    let url = response.url().clone();
    let body = read_limited(response, 64 * 1024, &Method::GET, &url)
        .await
        .unwrap_or_default();
    if let Ok(errors) = serde_json::from_slice::<Errors>(&body) {
        let text: Vec<String> = errors
            .errors
            .into_iter()
            .map(|e| match (e.code, e.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(s), None) | (None, Some(s)) => s,
                (None, None) => String::new(),
            })
            .collect();
        return text.join("; ");
    }
    let text = String::from_utf8_lossy(&body);
    let text: String = text.trim().chars().take(200).collect();
    if text.is_empty() {
        status.to_string()
    } else {
        text
    }
}

/// Reads a whole body, refusing more than `limit` bytes (so a hostile server cannot exhaust
/// memory).
pub(super) async fn read_limited(
    response: Response,
    limit: usize,
    method: &Method,
    url: &Url,
) -> Result<Vec<u8>, ClientError> {
    let too_large = || ClientError::TooLarge {
        url: url.to_string(),
        limit,
    };
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| ClientError::Http {
            method: method.clone(),
            url: url.to_string(),
            source,
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
