//! `http-echo`: a `wasi:http/proxy` component that answers every request with a JSON echo of
//! it (method, authority, path, headers, body) and the value of env `POD_NAME`.
//!
//! Built for `wasm32-wasip2` as a component exporting `wasi:http/incoming-handler`. Besides the
//! proxy world's imports it imports `wasi:cli/environment` to read `POD_NAME`, so the host must
//! provide that too (`wasmtime serve -Scli` does; so must Bramble's node agent). The pod listens
//! on whatever port the runtime binds for it; its manifest declares `containerPort: 8080`.
//!
//! Bodies over [`MAX_BODY`] bytes get `413` with a JSON `error` document instead of an echo; a
//! body that cannot be read gets `400`. The document format is described in [`echo`].

mod echo;

use std::io::{self, Read, Write};

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse,
    ResponseOutparam,
};

/// Largest request body echoed back; the whole body is held in memory to render it.
pub const MAX_BODY: u64 = 1024 * 1024;

/// Why a request could not be echoed.
#[derive(Debug, thiserror::Error)]
enum EchoError {
    #[error("request body was already consumed")]
    BodyTaken,
    #[error("reading the request body failed: {0}")]
    ReadBody(#[source] io::Error),
    #[error("request body is larger than {MAX_BODY} bytes")]
    BodyTooLarge,
}

impl EchoError {
    /// The HTTP status each failure is answered with.
    fn status(&self) -> u16 {
        match self {
            Self::BodyTaken => 500,
            Self::ReadBody(_) => 400,
            Self::BodyTooLarge => 413,
        }
    }
}

/// The exported handler.
struct HttpEcho;

wasi::http::proxy::export!(HttpEcho);

impl Guest for HttpEcho {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let pod = pod_name();
        let (status, document) = match read_body(&request) {
            Ok(body) => {
                let method = method_name(request.method());
                let authority = request.authority();
                let path = request.path_with_query().unwrap_or_default();
                let headers = request.headers().entries();
                let echoed = echo::Request {
                    pod: pod.as_deref(),
                    method: &method,
                    authority: authority.as_deref(),
                    path: &path,
                    headers: &headers,
                    body: &body,
                };
                (200, echo::render(&echoed))
            }
            Err(err) => (
                err.status(),
                echo::render_error(pod.as_deref(), &err.to_string()),
            ),
        };
        respond(response_out, status, document.as_bytes());
    }
}

fn pod_name() -> Option<String> {
    wasi::cli::environment::get_environment()
        .into_iter()
        .find_map(|(name, value)| (name == "POD_NAME").then_some(value))
}

fn method_name(method: Method) -> String {
    match method {
        Method::Get => "GET".to_owned(),
        Method::Head => "HEAD".to_owned(),
        Method::Post => "POST".to_owned(),
        Method::Put => "PUT".to_owned(),
        Method::Delete => "DELETE".to_owned(),
        Method::Connect => "CONNECT".to_owned(),
        Method::Options => "OPTIONS".to_owned(),
        Method::Trace => "TRACE".to_owned(),
        Method::Patch => "PATCH".to_owned(),
        Method::Other(other) => other,
    }
}

/// Reads the whole request body, up to [`MAX_BODY`] bytes.
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, EchoError> {
    let body = request.consume().map_err(|()| EchoError::BodyTaken)?;
    let mut bytes = Vec::new();
    // The stream is a child of `body` and must be dropped before the body is finished.
    let read = match body.stream() {
        Ok(mut stream) => stream
            .by_ref()
            .take(MAX_BODY + 1)
            .read_to_end(&mut bytes)
            .map_err(EchoError::ReadBody),
        Err(()) => Err(EchoError::BodyTaken),
    };
    // Trailers are not echoed, so the future for them is dropped unread.
    drop(IncomingBody::finish(body));
    read?;
    if u64::try_from(bytes.len()).map_or(true, |len| len > MAX_BODY) {
        return Err(EchoError::BodyTooLarge);
    }
    Ok(bytes)
}

/// Sends `document` as a JSON response with `status`.
fn respond(response_out: ResponseOutparam, status: u16, document: &[u8]) {
    let headers = Fields::new();
    for (name, value) in [
        ("content-type", b"application/json".to_vec()),
        ("content-length", document.len().to_string().into_bytes()),
    ] {
        if let Err(err) = headers.append(name, &value) {
            log(format_args!(
                "setting response header {name} failed: {err:?}"
            ));
        }
    }
    let response = OutgoingResponse::new(headers);
    if response.set_status_code(status).is_err() {
        log(format_args!("status {status} was refused by the host"));
    }
    let Ok(body) = response.body() else {
        let error = ErrorCode::InternalError(Some("response body unavailable".to_owned()));
        ResponseOutparam::set(response_out, Err(error));
        return;
    };
    ResponseOutparam::set(response_out, Ok(response));
    // The stream is a child of `body` and must be dropped before the body is finished.
    let written = match body.write() {
        Ok(mut stream) => stream
            .write_all(document)
            .and_then(|()| Write::flush(&mut stream)),
        Err(()) => Err(io::Error::other("response body stream was already taken")),
    };
    if let Err(err) = written {
        // The client went away or the host gave up; there is nobody left to tell.
        log(format_args!("writing the response body failed: {err}"));
        return;
    }
    if let Err(err) = OutgoingBody::finish(body, None) {
        log(format_args!("finishing the response body failed: {err:?}"));
    }
}

/// Logs to stderr; errors are dropped because a failed log must not fail the request.
fn log(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr(), "http-echo: {args}");
}
