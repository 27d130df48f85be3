//! The node's OCI client and image cache against a real registry: Debian's `docker-registry`
//! (distribution 2.8) on loopback, started through the shared harness by each test, optionally behind an in-test TCP proxy
//! that cuts transfers or demands token auth.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bramble_node::image_cache::ImageCache;
use bramble_node::oci::client::{ClientConfig, ClientError, Credentials, RegistryClient};
use bramble_node::oci::wasm::build_artifact;
use bramble_node::oci::{media, Digest, ImageKind, Reference};
use bramble_tests::upstream_registry::UpstreamRegistry;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A CA with a server certificate for localhost/127.0.0.1 and a client certificate.
struct TestPki {
    ca: String,
    server_cert: String,
    server_key: String,
    /// Client certificate followed by its key.
    client_identity: String,
}

impl TestPki {
    fn new() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, SanType,
        };
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "bramble test ca");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert").pem();
        let issuer = Issuer::new(ca_params, &ca_key);
        let leaf = |names: Vec<String>, usage| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).expect("cert");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) =
            leaf(vec!["client".into()], ExtendedKeyUsagePurpose::ClientAuth);
        Self {
            ca,
            server_cert,
            server_key,
            client_identity: format!("{client_cert}{client_key}"),
        }
    }
}

fn client() -> RegistryClient {
    client_with(ClientConfig::default())
}

fn client_with(config: ClientConfig) -> RegistryClient {
    RegistryClient::new(ClientConfig {
        plain_http_loopback: true,
        chunk_size: 64 * 1024,
        ..config
    })
    .expect("client")
}

fn reference(host: &str, path: &str) -> Reference {
    Reference::parse(&format!("{host}/{path}")).expect("reference")
}

/// A valid core module of roughly `padding` bytes (a custom section pads it), distinct per seed.
fn module(padding: usize, seed: u8) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    let mut custom = vec![7];
    custom.extend_from_slice(b"padding");
    custom.extend((0..padding).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    m.push(0);
    let mut len = custom.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            m.push(byte);
            break;
        }
        m.push(byte | 0x80);
    }
    m.extend(custom);
    m
}

async fn push(client: &RegistryClient, target: &Reference, wasm: &[u8]) -> Digest {
    let artifact = build_artifact(wasm, "app.wasm").expect("artifact");
    let digest = client
        .push_wasm(target, &artifact, Bytes::from(wasm.to_vec()), None)
        .await
        .expect("push");
    assert_eq!(digest, artifact.manifest_digest);
    digest
}

#[tokio::test]
async fn push_then_pull_by_tag_and_by_digest() {
    let registry = UpstreamRegistry::start().expect("docker-registry starts");
    let client = client();
    let small = module(1000, 1);
    let big = module(300 * 1024, 2);
    let small_ref = reference(&registry.host(), "samples/small:v1");
    let big_ref = reference(&registry.host(), "samples/big:v1");
    push(&client, &small_ref, &small).await;
    let big_digest = push(&client, &big_ref, &big).await;

    // Through a logging proxy: the small module goes in one PUT, the big one in PATCH chunks.
    let proxy = Proxy::start(registry.addr, ProxyMode::Pass).await;
    push(
        &client,
        &reference(&proxy.host(), "logged/small:v1"),
        &small,
    )
    .await;
    push(&client, &reference(&proxy.host(), "logged/big:v1"), &big).await;
    let patches: Vec<Logged> = proxy
        .log()
        .into_iter()
        .filter(|l| l.request_line.starts_with("PATCH"))
        .collect();
    assert_eq!(patches.len(), big.len().div_ceil(64 * 1024), "{patches:?}");
    assert!(patches
        .iter()
        .all(|l| l.request_line.contains("logged/big")));

    let layer = Digest::of(&big);
    assert!(client.blob_exists(&big_ref, &layer).await.expect("head"));
    let again = client
        .push_blob(&big_ref, &layer, Bytes::from(big.clone()), None)
        .await
        .expect("re-push");
    assert!(!again, "an existing blob is not uploaded twice");

    let fetched = client.get_manifest(&big_ref).await.expect("manifest");
    assert_eq!(fetched.digest, big_digest);
    assert_eq!(fetched.media_type, media::OCI_MANIFEST);

    let dir = tempfile::tempdir().expect("tempdir");
    let cache = ImageCache::open(dir.path(), 10 << 20).await.expect("cache");
    let image = cache.pull(&client, &big_ref).await.expect("pull by tag");
    assert_eq!(image.kind, ImageKind::Wasm);
    assert_eq!(image.manifest_digest, big_digest);
    let module_path = image.module_path().expect("module path");
    assert_eq!(std::fs::read(module_path).expect("read"), big);
    let config = image.wasm_config().expect("wasm config");
    assert_eq!(
        (config.architecture.as_str(), config.os.as_str()),
        ("wasm", "wasip1")
    );

    let by_digest = big_ref.with_digest(big_digest.clone());
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = ImageCache::open(other_dir.path(), 10 << 20)
        .await
        .expect("cache");
    let image = other
        .pull(&client, &by_digest)
        .await
        .expect("pull by digest");
    assert_eq!(image.manifest_digest, big_digest);
    let module_path = image.module_path().expect("module path");
    assert_eq!(std::fs::read(module_path).expect("read"), big);
    let small_image = other.pull(&client, &small_ref).await.expect("pull small");
    let small_path = small_image.module_path().expect("module path");
    assert_eq!(std::fs::read(small_path).expect("read"), small);

    let mut repos = client.catalog(&registry.host()).await.expect("catalog");
    repos.sort();
    assert_eq!(
        repos,
        ["logged/big", "logged/small", "samples/big", "samples/small"]
    );
    assert_eq!(client.list_tags(&big_ref).await.expect("tags"), ["v1"]);
}

#[tokio::test]
async fn missing_and_bad_references_are_refused() {
    let registry = UpstreamRegistry::start().expect("docker-registry starts");
    let client = client();
    let host = registry.host();
    for bad in [
        format!("{host}/Samples/hello:v1"),
        format!("{host}/samples/hello:"),
        format!("{host}/samples//hello"),
        format!("{host}/samples/hello@sha256:1234"),
        format!("{host}/samples/hello:bad tag"),
    ] {
        assert!(Reference::parse(&bad).is_err(), "{bad} must be refused");
    }
    let present = reference(&host, "samples/hello:v1");
    push(&client, &present, &module(10, 3)).await;

    let missing_tag = reference(&host, "samples/hello:v2");
    let err = client
        .get_manifest(&missing_tag)
        .await
        .expect_err("no such tag");
    assert!(matches!(err, ClientError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("MANIFEST_UNKNOWN"), "{err}");

    let wrong_digest = present.with_digest(Digest::of(b"something else"));
    let err = client
        .get_manifest(&wrong_digest)
        .await
        .expect_err("no such digest");
    assert!(matches!(err, ClientError::NotFound { .. }), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let cache = ImageCache::open(dir.path(), 1 << 20).await.expect("cache");
    let err = cache.pull(&client, &missing_tag).await.expect_err("pull");
    assert!(err.to_string().contains("samples/hello:v2"), "{err}");
    assert!(cache.images().is_empty());
}

#[tokio::test]
async fn corrupted_cache_entries_are_fetched_again() {
    let registry = UpstreamRegistry::start().expect("docker-registry starts");
    let client = client();
    let wasm = module(50_000, 4);
    let target = reference(&registry.host(), "samples/corrupt:v1");
    push(&client, &target, &wasm).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let cache = ImageCache::open(dir.path(), 10 << 20).await.expect("cache");
    let image = cache.pull(&client, &target).await.expect("pull");
    let path = image.module_path().expect("module").to_path_buf();

    // Corrupted while the cache is open: lookup notices, pull fetches it again.
    let mut bad = wasm.clone();
    bad[100] ^= 0xff;
    std::fs::write(&path, &bad).expect("corrupt");
    assert!(cache.lookup(&target).await.expect("lookup").is_none());
    assert!(!path.exists(), "the corrupted blob is deleted");
    cache.pull(&client, &target).await.expect("pull again");
    assert_eq!(std::fs::read(&path).expect("read"), wasm);
    drop(cache);

    // Corrupted while the node is down: open deletes it, pull fetches it again.
    std::fs::write(&path, &bad).expect("corrupt");
    let cache = ImageCache::open(dir.path(), 10 << 20)
        .await
        .expect("reopen");
    assert!(!path.exists(), "open deletes the corrupted blob");
    assert!(cache.lookup(&target).await.expect("lookup").is_none());
    let image = cache.pull(&client, &target).await.expect("pull again");
    assert_eq!(
        std::fs::read(image.module_path().expect("module")).expect("read"),
        wasm
    );
    assert!(cache.lookup(&target).await.expect("lookup").is_some());
}

#[tokio::test]
async fn eviction_keeps_images_in_use() {
    let registry = UpstreamRegistry::start().expect("docker-registry starts");
    let client = client();
    let host = registry.host();
    let mut refs = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let target = reference(&host, &format!("samples/{name}:v1"));
        push(&client, &target, &module(100_000, i as u8)).await;
        refs.push(target);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Room for two images of ~100 kB, not three.
    let cache = ImageCache::open(dir.path(), 250_000).await.expect("cache");
    let a = cache.pull(&client, &refs[0]).await.expect("pull a");
    cache.mark_in_use(&a.manifest_digest);
    let b = cache.pull(&client, &refs[1]).await.expect("pull b");
    let c = cache.pull(&client, &refs[2]).await.expect("pull c");

    let cached: Vec<Digest> = cache.images().into_iter().map(|i| i.digest).collect();
    assert!(
        cached.contains(&a.manifest_digest),
        "in use: kept though oldest"
    );
    assert!(cached.contains(&c.manifest_digest), "just pulled: kept");
    assert!(
        !cached.contains(&b.manifest_digest),
        "least recently used unused image evicted"
    );
    assert!(a.module_path().expect("a").exists());
    assert!(!b.module_path().expect("b").exists());
    assert!(cache.usage().await.expect("usage") <= 250_000);

    // Once released, a is the least recently used and goes first.
    cache.release(&a.manifest_digest);
    let b = cache.pull(&client, &refs[1]).await.expect("pull b again");
    let cached: Vec<Digest> = cache.images().into_iter().map(|i| i.digest).collect();
    assert_eq!(
        cached,
        vec![c.manifest_digest.clone(), b.manifest_digest.clone()]
    );
}

/// What the proxy saw of one connection.
#[derive(Debug, Clone)]
struct Logged {
    request_line: String,
    range: Option<String>,
    response_bytes: u64,
}

/// What the proxy does besides forwarding.
#[derive(Debug, Clone)]
enum ProxyMode {
    /// Forward and log only.
    Pass,
    /// Cut the response of the first request whose path contains `path_contains` after
    /// `after` bytes.
    Cut { path_contains: String, after: u64 },
    /// Require `Authorization: Bearer <token>`, handing tokens out at `/token` for Basic
    /// `user:pass`.
    Token,
}

const USER: &str = "robot";
const PASSWORD: &str = "s3cret";
const TOKEN: &str = "token-123";

/// A TCP proxy in front of the registry that forwards one request per connection (it adds
/// `Connection: close`), logs it, and applies its mode.
struct Proxy {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Logged>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start(upstream: SocketAddr, mode: ProxyMode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let cut_done = Arc::new(Mutex::new(false));
        let task_log = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (log, mode, cut_done) = (task_log.clone(), mode.clone(), cut_done.clone());
                tokio::spawn(async move {
                    let _ = relay(client, upstream, addr, mode, log, cut_done).await;
                });
            }
        });
        Self { addr, log, task }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn log(&self) -> Vec<Logged> {
        self.log.lock().expect("log").clone()
    }
}

async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    proxy: SocketAddr,
    mode: ProxyMode,
    log: Arc<Mutex<Vec<Logged>>>,
    cut_done: Arc<Mutex<bool>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await? == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let path = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let mut entry = Logged {
        request_line: request_line.clone(),
        range: header("range"),
        response_bytes: 0,
    };

    if let ProxyMode::Token = mode {
        use base64::Engine as _;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        );
        let reply = if path.starts_with("/token") {
            Some(if header("authorization") == Some(basic) {
                let body = format!(r#"{{"token":"{TOKEN}"}}"#);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            })
        } else if header("authorization") != Some(format!("Bearer {TOKEN}")) {
            Some(format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer \
                 realm=\"http://{proxy}/token\",service=\"test-registry\"\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            ))
        } else {
            None
        };
        if let Some(reply) = reply {
            entry.response_bytes = reply.len() as u64;
            log.lock().expect("log").push(entry);
            client.write_all(reply.as_bytes()).await?;
            return client.shutdown().await;
        }
    }

    let cut_after = match &mode {
        ProxyMode::Cut {
            path_contains,
            after,
        } if path.contains(path_contains.as_str()) => {
            let mut done = cut_done.lock().expect("cut flag");
            let first = !*done;
            *done = true;
            first.then_some(*after)
        }
        _ => None,
    };
    let mut upstream = TcpStream::connect(upstream).await?;
    let mut forwarded = format!("{request_line}\r\n");
    for (name, value) in &headers {
        if name != "connection" && name != "authorization" {
            forwarded.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    forwarded.push_str("connection: close\r\n\r\n");
    upstream.write_all(forwarded.as_bytes()).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let body = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
    });
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = upstream_read.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        let allowed = match cut_after {
            Some(limit) => (limit.saturating_sub(entry.response_bytes) as usize).min(n),
            None => n,
        };
        client_write.write_all(&buffer[..allowed]).await?;
        entry.response_bytes += allowed as u64;
        if allowed < n || cut_after.is_some_and(|limit| entry.response_bytes >= limit) {
            break;
        }
    }
    body.abort();
    log.lock().expect("log").push(entry);
    Ok(())
}

#[tokio::test]
async fn interrupted_blob_downloads_resume_with_a_range_request() {
    let registry = UpstreamRegistry::start().expect("docker-registry starts");
    let client = client();
    let wasm = module(1 << 20, 5);
    let size = wasm.len() as u64;
    let layer = Digest::of(&wasm);
    let direct = reference(&registry.host(), "samples/resume:v1");
    push(&client, &direct, &wasm).await;

    // Through the cache: one pull call, the cut is resumed inside it.
    let proxy = Proxy::start(
        registry.addr,
        ProxyMode::Cut {
            path_contains: layer.hex().to_owned(),
            after: size / 2,
        },
    )
    .await;
    let via_proxy = reference(&proxy.host(), "samples/resume:v1");
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = ImageCache::open(dir.path(), 10 << 20).await.expect("cache");
    let image = cache.pull(&client, &via_proxy).await.expect("pull resumes");
    assert_eq!(
        std::fs::read(image.module_path().expect("module")).expect("read"),
        wasm
    );
    let blob_gets: Vec<Logged> = proxy
        .log()
        .into_iter()
        .filter(|l| l.request_line.starts_with("GET") && l.request_line.contains(layer.hex()))
        .collect();
    assert_eq!(blob_gets.len(), 2, "{blob_gets:?}");
    assert_eq!(blob_gets[0].range, None);
    assert_eq!(
        blob_gets[0].response_bytes,
        size / 2,
        "first transfer was cut"
    );
    let range = blob_gets[1]
        .range
        .as_deref()
        .expect("second attempt sends Range");
    let offset: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .expect("bytes=N-");
    assert!(offset > 0 && offset < size, "{range}");
    assert!(
        blob_gets[1].response_bytes < size - offset + 1024,
        "the second transfer carried only the rest: {} bytes",
        blob_gets[1].response_bytes
    );
    assert!(blob_gets[1].response_bytes < size);

    // Through the client alone: the first call fails and keeps the partial file.
    let proxy = Proxy::start(
        registry.addr,
        ProxyMode::Cut {
            path_contains: layer.hex().to_owned(),
            after: size / 3,
        },
    )
    .await;
    let via_proxy = reference(&proxy.host(), "samples/resume:v1");
    let fetched = client.get_manifest(&via_proxy).await.expect("manifest");
    let bramble_node::oci::Manifest::Image(manifest) = fetched.manifest else {
        panic!("expected an image manifest");
    };
    let descriptor = &manifest.layers[0];
    let dest = dir.path().join("module.wasm");
    let err = client
        .download_blob(&via_proxy, descriptor, &dest, None)
        .await
        .expect_err("cut");
    assert!(matches!(err, ClientError::Interrupted { .. }), "{err}");
    assert!(!dest.exists());
    let done = client
        .download_blob(&via_proxy, descriptor, &dest, None)
        .await
        .expect("resume");
    assert!(done.resumed_from > 0, "{done:?}");
    assert_eq!(done.resumed_from + done.fetched, size);
    assert!(done.fetched < size);
    assert_eq!(std::fs::read(&dest).expect("read"), wasm);
}

#[tokio::test]
async fn token_auth_flow_for_push_and_pull() {
    let registry = UpstreamRegistry::start().expect("docker-registry starts");
    let proxy = Proxy::start(registry.addr, ProxyMode::Token).await;
    let target = reference(&proxy.host(), "secure/app:v1");
    let wasm = module(200_000, 6);

    let anonymous = client();
    let err = anonymous
        .get_manifest(&target)
        .await
        .expect_err("anonymous");
    assert!(err.to_string().contains("token request"), "{err}");

    let wrong = client_with(ClientConfig {
        credentials: [(
            proxy.host(),
            Credentials::Basic {
                username: USER.into(),
                password: "wrong".into(),
            },
        )]
        .into(),
        ..ClientConfig::default()
    });
    let artifact = build_artifact(&wasm, "app.wasm").expect("artifact");
    let err = wrong
        .push_wasm(&target, &artifact, Bytes::from(wasm.clone()), None)
        .await
        .expect_err("wrong password");
    assert!(matches!(err, ClientError::Token { .. }), "{err}");

    let authed = client_with(ClientConfig {
        credentials: [(
            proxy.host(),
            Credentials::Basic {
                username: USER.into(),
                password: PASSWORD.into(),
            },
        )]
        .into(),
        ..ClientConfig::default()
    });
    let digest = push(&authed, &target, &wasm).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = ImageCache::open(dir.path(), 10 << 20).await.expect("cache");
    let image = cache.pull(&authed, &target).await.expect("pull");
    assert_eq!(image.manifest_digest, digest);
    assert_eq!(
        std::fs::read(image.module_path().expect("module")).expect("read"),
        wasm
    );

    let log = proxy.log();
    let token_requests: Vec<&Logged> = log
        .iter()
        .filter(|l| l.request_line.starts_with("GET /token"))
        .collect();
    assert!(
        token_requests.iter().any(|l| l
            .request_line
            .contains("scope=repository%3Asecure%2Fapp%3Apull%2Cpush")),
        "{token_requests:?}"
    );
    assert!(token_requests
        .iter()
        .all(|l| l.request_line.contains("service=test-registry")));
    // Tokens are reused: far fewer token requests than registry requests.
    assert!(token_requests.len() <= 4, "{token_requests:?}");
}

#[tokio::test]
async fn https_with_custom_ca_and_client_certificate() {
    let pki = TestPki::new();
    let registry = UpstreamRegistry::start_tls(&pki.server_cert, &pki.server_key, &pki.ca)
        .expect("docker-registry starts with TLS");
    let target = reference(
        &format!("localhost:{}", registry.addr.port()),
        "secure/tls:v1",
    );
    let wasm = module(20_000, 7);
    let tls_client = |ca: Option<&str>, identity: Option<&str>| {
        RegistryClient::new(ClientConfig {
            ca_pem: ca.map(|c| c.as_bytes().to_vec()),
            identity_pem: identity.map(|i| i.as_bytes().to_vec()),
            ..ClientConfig::default()
        })
        .expect("client")
    };

    let full = tls_client(Some(&pki.ca), Some(&pki.client_identity));
    let digest = push(&full, &target, &wasm).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = ImageCache::open(dir.path(), 10 << 20).await.expect("cache");
    let image = cache.pull(&full, &target).await.expect("pull over https");
    assert_eq!(image.manifest_digest, digest);
    assert_eq!(
        std::fs::read(image.module_path().expect("module")).expect("read"),
        wasm
    );

    let no_identity = tls_client(Some(&pki.ca), None);
    let err = no_identity
        .get_manifest(&target)
        .await
        .expect_err("client certificate required");
    assert!(matches!(err, ClientError::Http { .. }), "{err}");

    let web_roots = tls_client(None, Some(&pki.client_identity));
    let err = web_roots
        .get_manifest(&target)
        .await
        .expect_err("unknown CA");
    assert!(matches!(err, ClientError::Http { .. }), "{err}");
}

#[tokio::test]
async fn unreachable_registry_falls_back_to_the_cache() {
    let registry = UpstreamRegistry::start().expect("docker-registry starts");
    let client = client();
    let wasm = module(5_000, 8);
    let target = reference(&registry.host(), "samples/offline:v1");
    let digest = push(&client, &target, &wasm).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = ImageCache::open(dir.path(), 10 << 20).await.expect("cache");
    cache.pull(&client, &target).await.expect("pull");
    let never_pulled = reference(&registry.host(), "samples/other:v1");
    drop(registry);

    let image = cache.pull(&client, &target).await.expect("offline pull");
    assert_eq!(image.manifest_digest, digest);
    let by_digest = target.with_digest(digest);
    assert!(cache.pull(&client, &by_digest).await.is_ok());
    let err = cache
        .pull(&client, &never_pulled)
        .await
        .expect_err("nothing cached");
    assert!(err.to_string().contains("samples/other:v1"), "{err}");
}
