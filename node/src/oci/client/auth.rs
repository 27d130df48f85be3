//! Registry authentication: answering `WWW-Authenticate` challenges (Basic, and the bearer
//! token flow of the distribution spec), and remembering the answer per registry and scope.

use std::collections::{HashMap, HashSet};
use std::sync::PoisonError;

use base64::Engine as _;
use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use super::{
    error_detail, is_loopback, parse_url, read_limited, ClientError, Credentials, RegistryClient,
    JSON_LIMIT,
};

/// The access a request needs, in the token flow's `scope` syntax.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Scope(String);

impl Scope {
    pub(super) fn pull(repository: &str) -> Self {
        Self(format!("repository:{repository}:pull"))
    }

    pub(super) fn push(repository: &str) -> Self {
        Self(format!("repository:{repository}:pull,push"))
    }

    pub(super) fn catalog() -> Self {
        Self("registry:catalog:*".to_owned())
    }
}

/// What the client learnt from earlier challenges.
#[derive(Debug, Default)]
pub(super) struct AuthCache {
    /// `Authorization` values (bearer tokens) per registry and scope.
    tokens: HashMap<(String, Scope), HeaderValue>,
    /// Registries that asked for Basic auth, so later requests send it up front.
    basic: HashSet<String>,
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

impl RegistryClient {
    /// Sends the request `build` makes with whatever authorization is known for `registry` and
    /// `scope`; on a 401 answers the challenge and sends it once more. A final 401 is returned
    /// as a response for the caller to report.
    pub(super) async fn send(
        &self,
        registry: &str,
        scope: &Scope,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        let response = self
            .execute(&build, self.known_authorization(registry, scope))
            .await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let challenges: Vec<Challenge> = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .collect();
        let bearer = challenges
            .iter()
            .find(|c| matches!(c, Challenge::Bearer { .. }));
        let authorization = match bearer.or(challenges.first()) {
            Some(Challenge::Bearer {
                realm,
                service,
                scope: asked,
            }) => {
                let token_scope = asked.as_deref().unwrap_or(&scope.0);
                let token = self
                    .fetch_token(registry, realm, service.as_deref(), token_scope)
                    .await?;
                self.lock_auth()
                    .tokens
                    .insert((registry.to_owned(), scope.clone()), token.clone());
                token
            }
            Some(Challenge::Basic) => match self.basic_authorization(registry) {
                Some(value) => {
                    self.lock_auth().basic.insert(registry.to_owned());
                    value
                }
                None => return Ok(response),
            },
            None => return Ok(response),
        };
        self.execute(&build, Some(authorization)).await
    }

    async fn execute(
        &self,
        build: &impl Fn() -> RequestBuilder,
        authorization: Option<HeaderValue>,
    ) -> Result<Response, ClientError> {
        let mut request = build()
            .build()
            .map_err(|source| ClientError::Build { source })?;
        if let Some(value) = authorization {
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        let method = request.method().clone();
        let url = request.url().clone();
        self.http
            .execute(request)
            .await
            .map_err(|source| ClientError::Http {
                method,
                url: url.to_string(),
                source,
            })
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, AuthCache> {
        // The cache holds no invariant a panicking holder could break half way.
        self.auth.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn known_authorization(&self, registry: &str, scope: &Scope) -> Option<HeaderValue> {
        let cache = self.lock_auth();
        if let Some(token) = cache.tokens.get(&(registry.to_owned(), scope.clone())) {
            return Some(token.clone());
        }
        match self.config.credentials.get(registry) {
            Some(Credentials::Bearer(token)) => sensitive(&format!("Bearer {token}")),
            Some(Credentials::Basic { .. }) if cache.basic.contains(registry) => {
                drop(cache);
                self.basic_authorization(registry)
            }
            _ => None,
        }
    }

    fn basic_authorization(&self, registry: &str) -> Option<HeaderValue> {
        match self.config.credentials.get(registry) {
            Some(Credentials::Basic { username, password }) => {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                sensitive(&format!("Basic {encoded}"))
            }
            _ => None,
        }
    }

    /// Runs the token flow: GET realm?service=…&scope=…, with Basic credentials when the
    /// registry has some, and returns the `Authorization` value for the token.
    async fn fetch_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<HeaderValue, ClientError> {
        let token_error = |reason: String| ClientError::Token {
            realm: realm.to_owned(),
            reason,
        };
        let mut url = parse_url(realm)?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(token_error(format!(
                "unsupported scheme {:?}",
                url.scheme()
            )));
        }
        url.query_pairs_mut()
            .extend_pairs(service.map(|s| ("service", s)))
            .append_pair("scope", scope);
        let credentials = match self.config.credentials.get(registry) {
            Some(Credentials::Basic { username, password }) => Some((username, password)),
            _ => None,
        };
        let secure = url.scheme() == "https" || url.host_str().is_some_and(is_loopback);
        if credentials.is_some() && !secure {
            return Err(ClientError::InsecureCredentials {
                url: url.to_string(),
            });
        }
        let mut request = self.http.get(url.clone());
        if let Some((username, password)) = credentials {
            request = request.basic_auth(username, Some(password));
        }
        let response = request.send().await.map_err(|source| ClientError::Http {
            method: Method::GET,
            url: url.to_string(),
            source,
        })?;
        if response.status() != StatusCode::OK {
            let status = response.status();
            let detail = error_detail(response).await;
            return Err(token_error(format!("status {status} ({detail})")));
        }
        let body = read_limited(response, JSON_LIMIT, &Method::GET, &url).await?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| token_error(format!("invalid token response: {e}")))?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| token_error("the response has no token".to_owned()))?;
        sensitive(&format!("Bearer {token}"))
            .ok_or_else(|| token_error("the token is not a valid header value".to_owned()))
    }
}

fn sensitive(text: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `key=value` or `key="quoted, value"` pairs separated by commas.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if chars.next_if_eq(&'=').is_none() {
            if chars.peek().is_none() {
                return params;
            }
            continue;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| *c != ',')));
        }
        params.push((key.trim().to_owned(), value.trim().to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
    }

    #[test]
    fn challenge_variants() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("basic"), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(r#"bearer realm=https://a/t , service="s\"x""#),
            Some(Challenge::Bearer {
                realm: "https://a/t".into(),
                service: Some("s\"x".into()),
                scope: None,
            })
        );
        assert_eq!(parse_challenge(r#"Bearer service="no realm""#), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge(""), None);
        assert_eq!(
            parse_challenge(r#"Bearer realm="unterminated"#).map(|_| ()),
            Some(())
        );
        assert_eq!(parse_params(",,=,x"), [(String::new(), String::new())]);
        assert_eq!(
            parse_params(r#"a=1,b="2,3""#),
            [("a".into(), "1".into()), ("b".into(), "2,3".into())]
        );
    }

    #[test]
    fn scopes() {
        assert_eq!(Scope::pull("a/b").0, "repository:a/b:pull");
        assert_eq!(Scope::push("a/b").0, "repository:a/b:pull,push");
        assert_eq!(Scope::catalog().0, "registry:catalog:*");
    }
}
