//! HTTP client for upstream registries: token and basic authentication, redirects, timeouts.
//!
//! Authentication follows the distribution token flow: a request without credentials gets a
//! `401` with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`; the client asks the realm
//! for a token (with basic credentials when configured) and retries. Tokens are cached per
//! scope until shortly before they expire. Redirects (blob downloads often go to a CDN) are
//! followed without forwarding credentials to another host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::errors::RegistryError;

/// How long to wait for response headers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirect hops followed before giving up.
const MAX_REDIRECTS: usize = 5;
/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// The shared HTTP(S) client.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Builds the client; HTTPS trusts the system's root certificates.
pub fn build_client() -> Result<HttpClient, RegistryError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(Arc::clone(&provider))
    {
        Ok(builder) => builder,
        Err(error) => {
            // Plain-HTTP mirrors still work; HTTPS ones will fail certificate verification.
            tracing::warn!(%error, "no system root certificates found for HTTPS upstreams");
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|error| RegistryError::Config {
                    reason: format!("TLS setup for upstream registries failed: {error}"),
                })?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let connector = builder.https_or_http().enable_http1().wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Username and password for an upstream registry (or its token service).
#[derive(Clone)]
pub struct UpstreamCredentials {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: String,
}

impl std::fmt::Debug for UpstreamCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl UpstreamCredentials {
    fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `bearer` or `basic`, lower case.
    pub scheme: String,
    /// Parameters, keys lower case.
    pub params: HashMap<String, String>,
}

impl Challenge {
    /// Parses `Scheme k=v, k2="quoted, value"`.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = HashMap::new();
        let mut chars = rest.chars().peekable();
        loop {
            while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
            let key: String =
                std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
            if key.trim().is_empty() {
                break;
            }
            if chars.next_if_eq(&'=').is_none() {
                break;
            }
            let mut value = String::new();
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend(chars.next()),
                        other => value.push(other),
                    }
                }
            } else {
                value.extend(std::iter::from_fn(|| chars.next_if(|c| *c != ',')));
            }
            params.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        Some(Self {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

/// One upstream registry with its credentials and token cache.
pub struct Upstream {
    /// Base URL, `scheme://authority`, no trailing slash.
    pub base: String,
    authority: String,
    allow_plain_http: bool,
    credentials: Option<UpstreamCredentials>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Cached tokens are credentials: never printed.
        f.debug_struct("Upstream")
            .field("base", &self.base)
            .field("allow_plain_http", &self.allow_plain_http)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Validates and prepares an upstream. `address` is `http(s)://host[:port]` or `host[:port]`
    /// (HTTPS, or plain HTTP when `allow_plain_http`).
    pub fn new(
        address: &str,
        allow_plain_http: bool,
        credentials: Option<UpstreamCredentials>,
    ) -> Result<Self, RegistryError> {
        let config = |reason: String| RegistryError::Config { reason };
        let address = address.trim().trim_end_matches('/');
        let with_scheme = if address.contains("://") {
            address.to_owned()
        } else if allow_plain_http {
            format!("http://{address}")
        } else {
            format!("https://{address}")
        };
        let uri: Uri = with_scheme.parse().map_err(|error| {
            config(format!("mirror upstream {address:?} is not a URL: {error}"))
        })?;
        let scheme = uri.scheme_str().unwrap_or_default();
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| config(format!("mirror upstream {address:?} has no host")))?;
        match scheme {
            "https" => {}
            "http" if allow_plain_http => {}
            "http" => {
                return Err(config(format!(
                    "mirror upstream {address:?} is plain HTTP; set insecure_plain_http to allow it"
                )))
            }
            other => {
                return Err(config(format!(
                    "mirror upstream scheme {other:?} is not http(s)"
                )))
            }
        }
        if !matches!(uri.path(), "" | "/") {
            return Err(config(format!(
                "mirror upstream {address:?} must not have a path; use upstream_prefix for repositories"
            )));
        }
        Ok(Self {
            base: format!("{scheme}://{authority}"),
            authority,
            allow_plain_http,
            credentials,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn error(&self, what: &str, reason: impl Into<String>) -> RegistryError {
        RegistryError::Upstream {
            upstream: self.base.clone(),
            what: what.to_owned(),
            reason: reason.into(),
        }
    }

    /// Sends `method` to `path` (starting `/v2/`), authenticating for `scope` and following
    /// redirects. Returns the final response, whatever its status.
    pub async fn send(
        &self,
        client: &HttpClient,
        method: Method,
        path: &str,
        accept: Option<&str>,
        scope: &str,
    ) -> Result<Response<Incoming>, RegistryError> {
        let mut url = format!("{}{path}", self.base);
        let mut auth = self.cached_token(scope);
        let mut authenticated = false;
        for _ in 0..=MAX_REDIRECTS + 1 {
            let uri: Uri = url
                .parse()
                .map_err(|error| self.error(path, format!("bad URL {url:?}: {error}")))?;
            let same_host = uri.authority().map(|a| a.as_str()) == Some(self.authority.as_str());
            let mut request = Request::builder().method(method.clone()).uri(uri.clone());
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT, accept);
            }
            if let Some(auth) = auth.as_ref().filter(|_| same_host) {
                request = request.header(header::AUTHORIZATION, auth);
            }
            let request = request
                .body(Empty::new())
                .map_err(|error| self.error(path, error.to_string()))?;
            let response = tokio::time::timeout(RESPONSE_TIMEOUT, client.request(request))
                .await
                .map_err(|_| self.error(path, "no response within 30 seconds"))?
                .map_err(|error| self.error(path, format!("request failed: {error}")))?;
            match response.status() {
                StatusCode::UNAUTHORIZED if same_host && !authenticated => {
                    let challenge = response
                        .headers()
                        .get(header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(Challenge::parse)
                        .ok_or_else(|| {
                            self.error(path, "401 without a usable WWW-Authenticate challenge")
                        })?;
                    auth = Some(self.authorize(client, &challenge, scope).await?);
                    authenticated = true;
                }
                StatusCode::MOVED_PERMANENTLY
                | StatusCode::FOUND
                | StatusCode::SEE_OTHER
                | StatusCode::TEMPORARY_REDIRECT
                | StatusCode::PERMANENT_REDIRECT => {
                    let location = response
                        .headers()
                        .get(header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .ok_or_else(|| self.error(path, "redirect without Location"))?;
                    url = self.resolve_redirect(&uri, location, path)?;
                }
                _ => return Ok(response),
            }
        }
        Err(self.error(path, "too many redirects or authentication rounds"))
    }

    /// Absolute URL of a redirect target; refuses a downgrade to plain HTTP.
    fn resolve_redirect(
        &self,
        from: &Uri,
        location: &str,
        what: &str,
    ) -> Result<String, RegistryError> {
        let target = if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else if location.starts_with('/') {
            let scheme = from.scheme_str().unwrap_or("https");
            let authority = from.authority().map(|a| a.as_str()).unwrap_or_default();
            format!("{scheme}://{authority}{location}")
        } else {
            return Err(self.error(what, format!("unsupported redirect target {location:?}")));
        };
        if target.starts_with("http://") && !self.allow_plain_http {
            return Err(self.error(what, format!("refusing redirect to plain HTTP {target:?}")));
        }
        Ok(target)
    }

    fn remember(&self, scope: &str, value: &str, lifetime: Duration) {
        let expires = Instant::now().checked_add(lifetime);
        if let (Ok(mut tokens), Some(expires)) = (self.tokens.lock(), expires) {
            tokens.insert(scope.to_owned(), (value.to_owned(), expires));
        }
    }

    fn cached_token(&self, scope: &str) -> Option<HeaderValue> {
        let tokens = self.tokens.lock().ok()?;
        let (token, expires) = tokens.get(scope)?;
        (Instant::now() < *expires)
            .then(|| HeaderValue::from_str(token).ok())
            .flatten()
    }

    /// Answers a challenge with credentials: basic directly, bearer through the token service.
    async fn authorize(
        &self,
        client: &HttpClient,
        challenge: &Challenge,
        scope: &str,
    ) -> Result<HeaderValue, RegistryError> {
        let value = match challenge.scheme.as_str() {
            "basic" => {
                let basic = self
                    .credentials
                    .as_ref()
                    .map(UpstreamCredentials::basic)
                    .ok_or_else(|| {
                        self.error(
                            scope,
                            "upstream requires credentials; configure them on the mirror",
                        )
                    })?;
                // Saves the extra 401 round trip on every later request.
                self.remember(scope, &basic, Duration::from_secs(3600));
                basic
            }
            "bearer" => self.fetch_token(client, challenge, scope).await?,
            other => {
                return Err(self.error(
                    scope,
                    format!("unsupported authentication scheme {other:?}"),
                ))
            }
        };
        HeaderValue::from_str(&value)
            .map_err(|_| self.error(scope, "credentials are not a valid header value"))
    }

    async fn fetch_token(
        &self,
        client: &HttpClient,
        challenge: &Challenge,
        scope: &str,
    ) -> Result<String, RegistryError> {
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| self.error(scope, "bearer challenge without realm"))?;
        if !(realm.starts_with("https://")
            || (self.allow_plain_http && realm.starts_with("http://")))
        {
            return Err(self.error(scope, format!("refusing token realm {realm:?}")));
        }
        let scope_param = challenge.params.get("scope").map_or(scope, String::as_str);
        let mut url = format!(
            "{realm}?scope={}",
            super::routes::percent_encode(scope_param)
        );
        if let Some(service) = challenge.params.get("service") {
            url.push_str(&format!(
                "&service={}",
                super::routes::percent_encode(service)
            ));
        }
        let uri: Uri = url
            .parse()
            .map_err(|error| self.error(scope, format!("bad token realm URL {url:?}: {error}")))?;
        let mut request = Request::get(uri);
        if let Some(credentials) = &self.credentials {
            request = request.header(header::AUTHORIZATION, credentials.basic());
        }
        let request = request
            .body(Empty::new())
            .map_err(|error| self.error(scope, error.to_string()))?;
        let response = tokio::time::timeout(RESPONSE_TIMEOUT, client.request(request))
            .await
            .map_err(|_| self.error(scope, "token service did not answer within 30 seconds"))?
            .map_err(|error| self.error(scope, format!("token request failed: {error}")))?;
        if !response.status().is_success() {
            return Err(self.error(
                scope,
                format!("token service answered {}", response.status()),
            ));
        }
        let limited = http_body_util::Limited::new(response.into_body(), MAX_TOKEN_RESPONSE);
        let bytes = tokio::time::timeout(RESPONSE_TIMEOUT, limited.collect())
            .await
            .map_err(|_| self.error(scope, "token response stalled"))?
            .map_err(|error| self.error(scope, format!("reading token response failed: {error}")))?
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|error| self.error(scope, format!("token response is not JSON: {error}")))?;
        let token = json["token"]
            .as_str()
            .or_else(|| json["access_token"].as_str())
            .ok_or_else(|| self.error(scope, "token response has no token"))?;
        let lifetime = json["expires_in"].as_u64().unwrap_or(60).clamp(10, 86_400);
        let value = format!("Bearer {token}");
        // Renew a little early so that a token does not expire mid-request.
        self.remember(scope, &value, Duration::from_secs(lifetime - 5));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_with_quoted_commas() -> anyhow::Result<()> {
        let challenge = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .ok_or_else(|| anyhow::anyhow!("challenge should parse"))?;
        assert_eq!(challenge.scheme, "bearer");
        assert_eq!(challenge.params["realm"], "https://auth.example/token");
        assert_eq!(challenge.params["service"], "registry.example");
        assert_eq!(challenge.params["scope"], "repository:a/b:pull,push");
        let basic = Challenge::parse(r#"Basic realm="x""#);
        assert_eq!(basic.map(|c| c.scheme), Some("basic".to_owned()));
        assert_eq!(Challenge::parse(""), None);
        Ok(())
    }

    #[test]
    fn upstream_addresses_are_validated() -> anyhow::Result<()> {
        assert_eq!(
            Upstream::new("127.0.0.1:5000", true, None)?.base,
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            Upstream::new("registry.example", false, None)?.base,
            "https://registry.example"
        );
        assert_eq!(
            Upstream::new("https://r.example/", false, None)?.base,
            "https://r.example"
        );
        assert!(Upstream::new("http://127.0.0.1:5000", false, None).is_err());
        assert!(Upstream::new("ftp://x", true, None).is_err());
        assert!(Upstream::new("https://r.example/v2/library", false, None).is_err());
        Ok(())
    }

    #[test]
    fn redirects_resolve_and_refuse_downgrades() -> anyhow::Result<()> {
        let upstream = Upstream::new("https://r.example", false, None)?;
        let from: Uri = "https://r.example/v2/a/blobs/x".parse()?;
        assert_eq!(
            upstream.resolve_redirect(&from, "/cdn/x", "blob")?,
            "https://r.example/cdn/x"
        );
        assert_eq!(
            upstream.resolve_redirect(&from, "https://cdn.example/x?sig=1", "blob")?,
            "https://cdn.example/x?sig=1"
        );
        assert!(upstream
            .resolve_redirect(&from, "http://cdn.example/x", "blob")
            .is_err());
        Ok(())
    }

    #[test]
    fn credentials_are_redacted_and_encoded() {
        let credentials = UpstreamCredentials {
            username: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{credentials:?}").contains("secret"));
        assert_eq!(credentials.basic(), "Basic dTpzZWNyZXQ=");
    }
}
