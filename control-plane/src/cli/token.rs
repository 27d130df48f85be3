//! `bramble token create|ls|revoke`: join tokens for nodes, stored as kubeadm-style bootstrap
//! token Secrets in kube-system through the Kubernetes API (found through the kubeconfig as
//! kubectl finds it).

use serde_json::Value;
use time::OffsetDateTime;

use super::kubeconfig::{self, ClusterAccess, KubeconfigArgs};
use crate::bootstrap_token::{self, StoredToken, NAMESPACE, NAME_PREFIX};

/// `bramble token create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// How long the token works: e.g. 30m, 24h, 7d; 0 for never.
    #[arg(long, default_value = "24h")]
    pub ttl: String,
    /// Free text shown by `bramble token ls`.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Which kubeconfig and context.
    #[command(flatten)]
    pub kube: KubeconfigArgs,
}

/// `bramble token ls`.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Which kubeconfig and context.
    #[command(flatten)]
    pub kube: KubeconfigArgs,
}

/// `bramble token revoke`.
#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The token, or just its id (the part before the dot).
    pub token: String,
    /// Which kubeconfig and context.
    #[command(flatten)]
    pub kube: KubeconfigArgs,
}

/// Parses `30s`, `15m`, `24h`, `7d`; `0` means no expiry.
pub fn parse_ttl(text: &str) -> Result<Option<time::Duration>, String> {
    if text == "0" {
        return Ok(None);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("ttl {text:?} must be a number with a unit, e.g. 30m, 24h, 7d"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" | "" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(format!(
                "ttl {text:?} has an unknown unit (use s, m, h or d)"
            ))
        }
    };
    Ok(Some(time::Duration::seconds(seconds)))
}

fn client(access: &ClusterAccess) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().use_rustls_tls();
    if let Some(ca) = &access.ca_pem {
        builder = builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca)?);
    }
    if access.insecure_skip_tls_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let (Some(cert), Some(key)) = (&access.client_certificate_pem, &access.client_key_pem) {
        let mut pem = cert.clone();
        pem.extend_from_slice(key);
        builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
    }
    Ok(builder.build()?)
}

fn request(
    client: &reqwest::Client,
    access: &ClusterAccess,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    let url = format!("{}{path}", access.server.trim_end_matches('/'));
    let mut req = client.request(method, url);
    if let Some(token) = &access.token {
        req = req.bearer_auth(token);
    } else if let Some((user, password)) = &access.basic {
        req = req.basic_auth(user, Some(password));
    }
    req
}

async fn checked(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["message"].as_str().unwrap_or("no message");
        anyhow::bail!("the API server answered {status}: {message}");
    }
    Ok(body)
}

/// Creates a token and prints it.
pub async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let ttl = parse_ttl(&args.ttl).map_err(anyhow::Error::msg)?;
    let access = kubeconfig::load(&args.kube)?;
    let ca = access.ca_pem.as_deref().ok_or_else(|| {
        anyhow::anyhow!("the kubeconfig has no certificate-authority: a join token carries the CA's hash, so it needs one")
    })?;
    let hash = bootstrap_token::ca_hash(ca).ok_or_else(|| {
        anyhow::anyhow!("the kubeconfig's certificate-authority holds no certificate")
    })?;
    let token = bootstrap_token::generate(&hash);
    let expires = ttl.map(|d| OffsetDateTime::now_utc() + d);
    let secret = bootstrap_token::to_secret(&token, expires, &args.description);
    let client = client(&access)?;
    checked(
        request(
            &client,
            &access,
            reqwest::Method::POST,
            &format!("/api/v1/namespaces/{NAMESPACE}/secrets"),
        )
        .json(&secret)
        .send()
        .await?,
    )
    .await?;
    println!("{}", token.to_printed());
    Ok(())
}

/// Lists tokens.
pub async fn ls(args: LsArgs) -> anyhow::Result<()> {
    let access = kubeconfig::load(&args.kube)?;
    let client = client(&access)?;
    let list = checked(
        request(
            &client,
            &access,
            reqwest::Method::GET,
            &format!(
                "/api/v1/namespaces/{NAMESPACE}/secrets?fieldSelector=type%3D{}",
                bootstrap_token::SECRET_TYPE.replace('/', "%2F")
            ),
        )
        .send()
        .await?,
    )
    .await?;
    let now = OffsetDateTime::now_utc();
    println!("{:<8} {:<22} {:<8} DESCRIPTION", "ID", "EXPIRES", "STATUS");
    for item in list["items"].as_array().into_iter().flatten() {
        let Some(token) = StoredToken::from_secret(item) else {
            continue;
        };
        let expires = token
            .expires
            .map(bootstrap_token::rfc3339)
            .unwrap_or_else(|| "never".into());
        let status = if token.expired(now) {
            "expired"
        } else {
            "valid"
        };
        println!(
            "{:<8} {:<22} {:<8} {}",
            token.id, expires, status, token.description
        );
    }
    Ok(())
}

/// Deletes a token: nodes can no longer join with it (joined nodes keep their certificates).
pub async fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let id = args
        .token
        .rsplit("::")
        .next()
        .unwrap_or_default()
        .split('.')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        anyhow::bail!("{:?} is not a token or token id", args.token);
    }
    let access = kubeconfig::load(&args.kube)?;
    let client = client(&access)?;
    checked(
        request(
            &client,
            &access,
            reqwest::Method::DELETE,
            &format!("/api/v1/namespaces/{NAMESPACE}/secrets/{NAME_PREFIX}{id}"),
        )
        .send()
        .await?,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot revoke token {id}: {e}"))?;
    println!("token {id} revoked");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttls_read_like_kubeadm() {
        assert_eq!(parse_ttl("0"), Ok(None));
        assert_eq!(parse_ttl("90s"), Ok(Some(time::Duration::seconds(90))));
        assert_eq!(parse_ttl("2h"), Ok(Some(time::Duration::hours(2))));
        assert_eq!(parse_ttl("7d"), Ok(Some(time::Duration::days(7))));
        assert!(parse_ttl("soon").is_err());
        assert!(parse_ttl("5y").is_err());
    }
}
