//! Tests of the etcd store against a real etcd (see `bramble_tests::etcd`): the shared conformance
//! suite, then what only a shared, remote store shows.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use futures::StreamExt;

use super::branch::Branch;
use super::codec::{from_etcd, to_etcd};
use super::*;
use crate::store::conformance::{blind_put, conformance_tests, create, put, update};
use crate::store::{Compare, Event, MAX_TXN_OPS};
use bramble_tests::etcd::{EtcdServer, ServerTls};

/// Bound on waits that only time out if something is broken.
const PATIENCE: Duration = Duration::from_secs(60);

// With a prefix, so every path adds and strips it.
conformance_tests!(
    |watch_buffer: usize| -> Result<(Arc<dyn Store>, EtcdServer)> {
        let etcd = EtcdServer::start()?;
        let options = EtcdOptions {
            prefix: Some("/conformance".into()),
            watch_buffer,
            ..EtcdOptions::default()
        };
        let endpoints = etcd.endpoints();
        // The conformance suite opens stores in a plain closure, on a multi-threaded runtime.
        let store = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(EtcdStore::connect_with(&endpoints, options))
        })?;
        Ok((Arc::new(store), etcd))
    }
);

async fn connect(etcd: &EtcdServer, prefix: &str) -> Result<EtcdStore> {
    let options = EtcdOptions {
        prefix: Some(prefix.into()),
        ..EtcdOptions::default()
    };
    Ok(EtcdStore::connect_with(&etcd.endpoints(), options).await?)
}

async fn next(watch: &mut WatchStream) -> Result<Option<Result<Event, StoreError>>> {
    tokio::time::timeout(PATIENCE, watch.next())
        .await
        .context("watch produced nothing")
}

#[test]
fn revisions_map_between_bramble_and_etcd() {
    assert_eq!(to_etcd(0), 1, "an empty store");
    assert_eq!(to_etcd(5), 6);
    assert_eq!(
        to_etcd(Revision::MAX),
        i64::MAX,
        "saturates into the future"
    );
    assert_eq!(from_etcd(1), 0);
    assert_eq!(from_etcd(6), 5);
    assert_eq!(from_etcd(0), 0, "absent, or a delete event's kv, stays 0");
}

#[test]
fn branches_read_only_compared_keys_they_do_not_report_otherwise() {
    let txn = Txn {
        compare: vec![
            Compare::ModRevision {
                key: "/written".into(),
                equals: 3,
            },
            Compare::Absent {
                key: "/absent".into(),
            },
            Compare::Exists {
                key: "/exists".into(),
            },
            Compare::ModRevision {
                key: "/exists".into(),
                equals: 2,
            },
        ],
        success: vec![put("/written", "x")],
        failure: vec![Op::Delete {
            key: "/exists".into(),
        }],
    };
    let success = Branch::plan(&txn, &txn.success, true);
    assert_eq!(success.reads, ["/exists"], "each key once; absent is known");
    assert!(success.inline);
    let failure = Branch::plan(&txn, &txn.failure, false);
    assert_eq!(
        failure.reads,
        ["/written", "/absent"],
        "any compare may have failed; /exists comes back as the delete's prev_kv"
    );

    let full = Txn {
        compare: (0..MAX_TXN_OPS)
            .map(|i| Compare::Exists {
                key: format!("/c/{i}"),
            })
            .collect(),
        success: vec![put("/c/0", "x")],
        failure: vec![],
    };
    let success = Branch::plan(&full, &full.success, true);
    assert_eq!(success.reads.len(), MAX_TXN_OPS - 1);
    assert!(success.inline, "127 reads and one write fit in one branch");
    let full = Txn {
        success: vec![put("/other", "x")],
        ..full
    };
    assert!(!Branch::plan(&full, &full.success, true).inline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_control_planes_share_one_etcd() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let a = connect(&etcd, "/shared").await?;
    let b = connect(&etcd, "/shared").await?;
    let mut watch = b.watch("/pods/", 0).await?;

    let created = a.txn(create("/pods/p", "1")).await?;
    ensure!(created.succeeded && created.revision == 1, "{created:?}");
    let seen = b.get("/pods/p").await?.context("b sees a's write")?;
    ensure!(seen.value == "1" && seen.mod_revision == 1, "{seen:?}");

    // b updates; a's update from the old revision conflicts and shows b's value at once.
    ensure!(b.txn(update("/pods/p", "2", 1)).await?.succeeded);
    let stale = a.txn(update("/pods/p", "3", 1)).await?;
    ensure!(!stale.succeeded, "{stale:?}");
    let current = stale.current[0].as_ref().context("current value")?;
    ensure!(
        current.value == "2" && current.mod_revision == 2,
        "{current:?}"
    );
    ensure!(
        a.current_revision() == 2,
        "a's revision follows b's write through the failed txn's header"
    );

    for expected in [("1", 1), ("2", 2)] {
        let event = next(&mut watch).await?.context("watch ended")??;
        ensure!(
            (&event.kv.value[..], event.kv.mod_revision) == (expected.0.as_bytes(), expected.1),
            "{event:?}"
        );
    }
    ensure!(a.range("/pods/", None).await? == b.range("/pods/", None).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_keep_stores_apart() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let one = connect(&etcd, "/one").await?;
    let two = connect(&etcd, "/two").await?;
    let whole = EtcdStore::connect(&etcd.endpoints(), None, None).await?;

    one.txn(blind_put("/k", "one")).await?;
    two.txn(blind_put("/k", "two")).await?;
    ensure!(one.get("/k").await?.map(|kv| kv.value) == Some(Bytes::from("one")));
    ensure!(two.get("/k").await?.map(|kv| kv.value) == Some(Bytes::from("two")));
    let keys: Vec<_> = one
        .range("", None)
        .await?
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    ensure!(keys == ["/k"], "the prefix is stripped: {keys:?}");
    let all: Vec<_> = whole
        .range("", None)
        .await?
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    ensure!(all == ["/one/k", "/two/k"], "{all:?}");

    // A CAS in one prefix does not see the other's key.
    ensure!(one.txn(create("/only-two", "x")).await?.succeeded);
    ensure!(two.get("/only-two").await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compares_map_to_etcd_exactly() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let store = connect(&etcd, "/cmp").await?;
    store.txn(blind_put("/present", "1")).await?; // revision 1
    let holds = |compare: Compare| {
        let store = &store;
        async move {
            let response = store
                .txn(Txn {
                    compare: vec![compare],
                    ..Txn::default()
                })
                .await?;
            anyhow::Ok(response.succeeded)
        }
    };
    let mod_revision = |key: &str, equals| Compare::ModRevision {
        key: key.into(),
        equals,
    };
    ensure!(holds(mod_revision("/present", 1)).await?);
    ensure!(!holds(mod_revision("/present", 2)).await?);
    ensure!(!holds(mod_revision("/present", 0)).await?);
    ensure!(holds(mod_revision("/missing", 0)).await?, "0 means absent");
    ensure!(
        !holds(mod_revision("/missing", -1)).await?,
        "a negative revision never holds, not even for an absent key"
    );
    ensure!(!holds(mod_revision("/present", -1)).await?);
    ensure!(!holds(mod_revision("/present", Revision::MAX)).await?);
    ensure!(
        holds(Compare::Exists {
            key: "/present".into()
        })
        .await?
    );
    ensure!(
        !holds(Compare::Exists {
            key: "/missing".into()
        })
        .await?
    );
    ensure!(
        holds(Compare::Absent {
            key: "/missing".into()
        })
        .await?
    );
    ensure!(
        !holds(Compare::Absent {
            key: "/present".into()
        })
        .await?
    );
    ensure!(store.current_revision() == 1, "compares change nothing");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_reports_every_compared_key_in_both_branches() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let store = connect(&etcd, "/cur").await?;
    store.txn(blind_put("/a", "a1")).await?; // 1
    store.txn(blind_put("/b", "b1")).await?; // 2
    let txn = |a_revision| Txn {
        compare: vec![
            Compare::ModRevision {
                key: "/a".into(),
                equals: a_revision,
            },
            Compare::Exists { key: "/b".into() },
            Compare::Absent { key: "/c".into() },
        ],
        success: vec![put("/a", "a2")],
        failure: vec![Op::Delete { key: "/b".into() }],
    };

    let failed = store.txn(txn(7)).await?;
    ensure!(!failed.succeeded && failed.revision == 3, "{failed:?}");
    let values: Vec<_> = failed
        .current
        .iter()
        .map(|kv| kv.as_ref().map(|kv| kv.value.clone()))
        .collect();
    ensure!(
        values == [Some(Bytes::from("a1")), Some(Bytes::from("b1")), None],
        "{values:?}"
    );
    ensure!(
        failed.prev_kvs.len() == 1
            && failed.prev_kvs[0].as_ref().map(|kv| kv.mod_revision) == Some(2)
    );

    store.txn(blind_put("/b", "b2")).await?; // 4
    let succeeded = store.txn(txn(1)).await?;
    ensure!(
        succeeded.succeeded && succeeded.revision == 5,
        "{succeeded:?}"
    );
    let summary: Vec<_> = succeeded
        .current
        .iter()
        .map(|kv| {
            kv.as_ref()
                .map(|kv| (kv.value.clone(), kv.mod_revision, kv.version))
        })
        .collect();
    ensure!(
        summary
            == [
                Some((Bytes::from("a1"), 1, 1)),
                Some((Bytes::from("b2"), 4, 1)),
                None
            ],
        "values before the txn: {summary:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn largest_txn_reads_compared_keys_after_it_at_the_revision_it_ran_on() -> Result<()> {
    let etcd = EtcdServer::start()?;
    let store = connect(&etcd, "/big").await?;
    // 128 compares and 128 writes per branch: no room left in either branch for the reads.
    let keys: Vec<String> = (0..MAX_TXN_OPS).map(|i| format!("/k/{i:03}")).collect();
    let mut compare = vec![Compare::Exists {
        key: "/flag".into(),
    }];
    compare.extend(keys[1..].iter().map(|key| Compare::ModRevision {
        key: key.clone(),
        equals: 0,
    }));
    let txn = Txn {
        compare,
        success: keys.iter().map(|key| put(key, "new")).collect(),
        failure: (0..MAX_TXN_OPS)
            .map(|i| put(&format!("/f/{i:03}"), "f"))
            .collect(),
    };

    store.txn(blind_put("/k/005", "old")).await?; // 1
    let failed = store.txn(txn.clone()).await?; // 2
    ensure!(
        !failed.succeeded && failed.revision == 2,
        "{:?}",
        failed.revision
    );
    ensure!(failed.prev_kvs.len() == MAX_TXN_OPS && failed.prev_kvs.iter().all(Option::is_none));
    let present: Vec<_> = failed
        .current
        .iter()
        .enumerate()
        .filter_map(|(i, kv)| kv.as_ref().map(|kv| (i, kv.value.clone(), kv.mod_revision)))
        .collect();
    ensure!(present == [(5, Bytes::from("old"), 1)], "{present:?}");
    ensure!(store.range("/f/", None).await?.kvs.len() == MAX_TXN_OPS);

    ensure!(store.txn(update("/k/005", "x", 1)).await?.revision == 3);
    ensure!(
        store
            .txn(Txn {
                success: vec![Op::Delete {
                    key: "/k/005".into()
                }],
                ..Txn::default()
            })
            .await?
            .revision
            == 4
    );
    store.txn(blind_put("/flag", "up")).await?; // 5
    let succeeded = store.txn(txn).await?; // 6
    ensure!(
        succeeded.succeeded && succeeded.revision == 6,
        "{:?}",
        succeeded.revision
    );
    let flag = succeeded.current[0]
        .as_ref()
        .context("/flag was read back")?;
    ensure!(flag.value == "up" && flag.mod_revision == 5, "{flag:?}");
    ensure!(succeeded.current[1..].iter().all(Option::is_none));
    ensure!(store.range("/k/", None).await?.kvs.len() == MAX_TXN_OPS);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_with_an_error_when_etcd_dies() -> Result<()> {
    let mut etcd = EtcdServer::start()?;
    let store = connect(&etcd, "/dies").await?;
    let mut watch = store.watch("/", 0).await?;
    store.txn(blind_put("/x", "1")).await?;
    let event = next(&mut watch).await?.context("event")??;
    ensure!(event.kv.key == "/x");
    etcd.kill()?;
    let end = next(&mut watch).await?;
    ensure!(
        matches!(end, Some(Err(StoreError::EtcdWatch { .. }))),
        "{end:?}"
    );
    ensure!(
        next(&mut watch).await?.is_none(),
        "the stream ends after the error"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_clearly_without_etcd() -> Result<()> {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let options = EtcdOptions {
        connect_timeout: Duration::from_secs(2),
        ..EtcdOptions::default()
    };
    let endpoints = [format!("http://127.0.0.1:{port}")];
    let result = tokio::time::timeout(PATIENCE, EtcdStore::connect_with(&endpoints, options))
        .await
        .context("connect hung")?;
    let error = result.err().context("connected to nothing")?;
    ensure!(matches!(error, StoreError::EtcdConnect { .. }), "{error:?}");
    let message = error.to_string();
    ensure!(message.contains(&endpoints[0]), "{message}");
    Ok(())
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
fn certificates(dir: &std::path::Path) -> Result<(ServerTls, EtcdTls)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server_key = KeyPair::generate()?;
    let server =
        CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(&server_key, &issuer)?;
    let client_key = KeyPair::generate()?;
    let client =
        CertificateParams::new(vec!["bramble".to_owned()])?.signed_by(&client_key, &issuer)?;

    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).map(|()| path)
    };
    let server_tls = ServerTls {
        ca: write("ca.crt", &ca.pem())?,
        cert: write("server.crt", &server.pem())?,
        key: write("server.key", &server_key.serialize_pem())?,
    };
    let client_cert = write("client.crt", &client.pem())?;
    let client_key = write("client.key", &client_key.serialize_pem())?;
    let client_tls = EtcdTls::from_files(&server_tls.ca, Some((&client_cert, &client_key)))?;
    Ok((server_tls, client_tls))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (server_tls, client_tls) = certificates(dir.path())?;
    let etcd = EtcdServer::start_tls(&server_tls)?;
    ensure!(etcd.endpoints()[0].starts_with("https://"));

    let store = EtcdStore::connect(
        &etcd.endpoints(),
        Some("/tls".into()),
        Some(client_tls.clone()),
    )
    .await?;
    ensure!(store.txn(create("/secure", "1")).await?.succeeded);
    let mut watch = store.watch("/", 0).await?;
    let event = next(&mut watch).await?.context("event")??;
    ensure!(event.kv.key == "/secure");

    // etcd was started with --client-cert-auth: no certificate, no store.
    let anonymous = EtcdTls {
        identity: None,
        ..client_tls
    };
    let options = EtcdOptions {
        tls: Some(anonymous),
        connect_timeout: Duration::from_secs(5),
        ..EtcdOptions::default()
    };
    let refused = EtcdStore::connect_with(&etcd.endpoints(), options).await;
    ensure!(
        matches!(refused, Err(StoreError::EtcdConnect { .. })),
        "{refused:?}"
    );
    let missing = EtcdTls::from_files(dir.path().join("nope.crt"), None);
    ensure!(
        matches!(
            missing,
            Err(StoreError::EtcdTlsFile {
                what: "CA certificate",
                ..
            })
        ),
        "{missing:?}"
    );
    Ok(())
}
