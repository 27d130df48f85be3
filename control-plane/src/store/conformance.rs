//! Behaviour every [`Store`] backend must show, written once and run against each backend by
//! [`conformance_tests!`] (so the in-memory fake cannot drift from SQLite).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use futures::StreamExt;

use super::{Compare, EventKind, KeyValue, Op, Revision, Store, StoreError, Txn, WatchStream};

/// Generous bound on waits that only time out if the store is broken (a lost event, a writer
/// blocked by a watcher), so a bug fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(60);

/// Expands to one `#[tokio::test]` per conformance check. `$open` is a closure taking the watch
/// buffer size and returning `anyhow::Result<(Arc<dyn Store>, guard)>`; the guard (a temp dir)
/// lives as long as the test.
macro_rules! conformance_tests {
    ($open:expr) => {
        conformance_tests!(@each $open;
            cas_create_update_delete,
            revisions_and_versions,
            concurrent_cas_is_serialized,
            range_by_prefix_now_and_past,
            watch_replays_history_then_live_under_concurrent_writers,
            watch_events_carry_prev_kv_and_respect_prefix,
            compaction_limits_reads_and_watches,
            slow_watcher_is_cut_off_without_blocking_writers,
            watch_ends_when_store_shuts_down,
        );
    };
    (@each $open:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> anyhow::Result<()> {
                let buffer = $crate::store::conformance::watch_buffer_for(stringify!($name));
                let (store, _guard) = ($open)(buffer)?;
                $crate::store::conformance::$name(store).await
            }
        )*
    };
}
pub(crate) use conformance_tests;

/// Watch buffer the backend is opened with for the check `name`.
pub(crate) fn watch_buffer_for(name: &str) -> usize {
    if name == "slow_watcher_is_cut_off_without_blocking_writers" {
        4
    } else {
        super::watch::DEFAULT_WATCH_BUFFER
    }
}

pub(crate) fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: Bytes::from(value.to_owned()),
    }
}

pub(crate) fn create(key: &str, value: &str) -> Txn {
    Txn {
        compare: vec![Compare::Absent { key: key.into() }],
        success: vec![put(key, value)],
        failure: vec![],
    }
}

pub(crate) fn update(key: &str, value: &str, mod_revision: Revision) -> Txn {
    Txn {
        compare: vec![Compare::ModRevision {
            key: key.into(),
            equals: mod_revision,
        }],
        success: vec![put(key, value)],
        failure: vec![],
    }
}

pub(crate) fn delete(key: &str, mod_revision: Revision) -> Txn {
    Txn {
        compare: vec![Compare::ModRevision {
            key: key.into(),
            equals: mod_revision,
        }],
        success: vec![Op::Delete { key: key.into() }],
        failure: vec![],
    }
}

pub(crate) fn blind_put(key: &str, value: &str) -> Txn {
    Txn {
        success: vec![put(key, value)],
        ..Txn::default()
    }
}

/// The value of `kv` as text (every test value is).
fn value_of(kv: Option<&KeyValue>) -> Option<&str> {
    kv.and_then(|kv| std::str::from_utf8(&kv.value).ok())
}

/// Keys and values of a range, for compact assertions.
fn pairs(kvs: &[KeyValue]) -> Vec<(&str, &[u8])> {
    kvs.iter()
        .map(|kv| (kv.key.as_str(), &kv.value[..]))
        .collect()
}

/// The next item of `watch`, failing the test if none comes.
async fn next(watch: &mut WatchStream) -> Result<Option<Result<super::Event, StoreError>>> {
    tokio::time::timeout(PATIENCE, watch.next())
        .await
        .context("watch produced nothing")
}

pub(crate) async fn cas_create_update_delete(store: Arc<dyn Store>) -> Result<()> {
    let created = store.txn(create("/a", "1")).await?;
    ensure!(created.succeeded && created.revision == 1, "{created:?}");
    let again = store.txn(create("/a", "2")).await?;
    ensure!(
        !again.succeeded && again.revision == 1,
        "create of an existing key must fail: {again:?}"
    );
    ensure!(
        value_of(again.current[0].as_ref()) == Some("1"),
        "failed create reports the existing value"
    );

    let stale = store.txn(update("/a", "3", 7)).await?;
    ensure!(
        !stale.succeeded,
        "update with a stale mod_revision must fail"
    );
    ensure!(
        stale.current[0].as_ref().map(|kv| kv.mod_revision) == Some(1),
        "conflict shows the current rv"
    );
    let updated = store.txn(update("/a", "3", 1)).await?;
    ensure!(updated.succeeded && updated.revision == 2, "{updated:?}");
    ensure!(value_of(updated.prev_kvs[0].as_ref()) == Some("1"));

    let missing = store.txn(update("/b", "x", 5)).await?;
    ensure!(
        !missing.succeeded && missing.current == vec![None],
        "update of a missing key: {missing:?}"
    );

    ensure!(
        !store.txn(delete("/a", 1)).await?.succeeded,
        "delete with a stale rv must fail"
    );
    ensure!(value_of(store.get("/a").await?.as_ref()) == Some("3"));
    let deleted = store.txn(delete("/a", 2)).await?;
    ensure!(deleted.succeeded && deleted.revision == 3, "{deleted:?}");
    ensure!(value_of(deleted.prev_kvs[0].as_ref()) == Some("3"));
    ensure!(store.get("/a").await?.is_none());

    let bad = store
        .txn(Txn {
            success: vec![put("/ok", "1"), put("", "x")],
            ..Txn::default()
        })
        .await;
    ensure!(matches!(bad, Err(StoreError::EmptyKey)), "{bad:?}");
    ensure!(
        store.current_revision() == 3 && store.get("/ok").await?.is_none(),
        "a rejected txn changes nothing"
    );
    Ok(())
}

pub(crate) async fn revisions_and_versions(store: Arc<dyn Store>) -> Result<()> {
    for (i, value) in ["1", "2", "3"].into_iter().enumerate() {
        let response = store.txn(blind_put("/v", value)).await?;
        ensure!(
            response.revision == i as Revision + 1,
            "each write bumps the revision by one"
        );
    }
    let kv = store.get("/v").await?.context("/v exists")?;
    ensure!(
        (kv.create_revision, kv.mod_revision, kv.version) == (1, 3, 3),
        "{kv:?}"
    );

    let noop = store
        .txn(Txn {
            success: vec![Op::Delete {
                key: "/absent".into(),
            }],
            ..Txn::default()
        })
        .await?;
    ensure!(
        noop.revision == 3 && store.current_revision() == 3,
        "deleting nothing keeps the revision"
    );
    let failed = store.txn(update("/v", "x", 1)).await?;
    ensure!(
        !failed.succeeded && failed.revision == 3,
        "a failed compare with no failure ops keeps it"
    );

    store.txn(delete("/v", 3)).await?;
    let recreated = store.txn(create("/v", "new")).await?;
    let kv = store.get("/v").await?.context("/v recreated")?;
    ensure!(
        recreated.revision == 5 && (kv.create_revision, kv.version) == (5, 1),
        "{kv:?}"
    );

    let multi = Txn {
        success: vec![put("/m1", "a"), put("/m2", "b")],
        ..Txn::default()
    };
    ensure!(
        store.txn(multi).await?.revision == 6,
        "a multi-op txn is one revision"
    );
    let m1 = store.get("/m1").await?.context("/m1")?;
    let m2 = store.get("/m2").await?.context("/m2")?;
    ensure!(m1.mod_revision == 6 && m2.mod_revision == 6);
    ensure!(store.current_revision() == 6);
    Ok(())
}

pub(crate) async fn concurrent_cas_is_serialized(store: Arc<dyn Store>) -> Result<()> {
    // Many creates of one key at once (one group-commit batch for SQLite): exactly one wins.
    let creators: Vec<_> = (0..32)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.txn(create("/once", &i.to_string())).await })
        })
        .collect();
    let mut winners = 0;
    for creator in creators {
        winners += usize::from(creator.await??.succeeded);
    }
    ensure!(winners == 1, "{winners} creates of one key succeeded");

    // Read-modify-write with CAS retries from many tasks loses no increment.
    store.txn(create("/counter", "0")).await?;
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for _ in 0..10 {
                    loop {
                        let kv = store.get("/counter").await?.context("counter exists")?;
                        let n: u64 = std::str::from_utf8(&kv.value)?.parse()?;
                        if store
                            .txn(update("/counter", &(n + 1).to_string(), kv.mod_revision))
                            .await?
                            .succeeded
                        {
                            break;
                        }
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let kv = store.get("/counter").await?.context("counter exists")?;
    ensure!(&kv.value[..] == b"80" && kv.version == 81, "{kv:?}");
    Ok(())
}

pub(crate) async fn range_by_prefix_now_and_past(store: Arc<dyn Store>) -> Result<()> {
    for key in ["/r/a", "/r/b", "/rx", "/s/a"] {
        store.txn(blind_put(key, "1")).await?; // revisions 1..=4
    }
    store.txn(update("/r/a", "2", 1)).await?; // 5
    store.txn(delete("/r/b", 2)).await?; // 6
    store.txn(create("/r/c", "1")).await?; // 7

    let now = store.range("/r/", None).await?;
    ensure!(
        now.revision == 7 && pairs(&now.kvs) == [("/r/a", &b"2"[..]), ("/r/c", b"1")],
        "{now:?}"
    );
    let at4 = store.range("/r/", Some(4)).await?;
    ensure!(
        at4.revision == 4 && pairs(&at4.kvs) == [("/r/a", &b"1"[..]), ("/r/b", b"1")],
        "{at4:?}"
    );
    ensure!(
        at4.kvs[0]
            == KeyValue {
                key: "/r/a".into(),
                value: Bytes::from("1"),
                create_revision: 1,
                mod_revision: 1,
                version: 1
            }
    );
    let at5 = store.range("/r/", Some(5)).await?;
    ensure!(
        pairs(&at5.kvs) == [("/r/a", &b"2"[..]), ("/r/b", b"1")],
        "{at5:?}"
    );
    ensure!(store.range("/r/", Some(0)).await?.kvs.is_empty());
    let all = store.range("", None).await?;
    let keys: Vec<_> = all.kvs.iter().map(|kv| kv.key.as_str()).collect();
    ensure!(keys == ["/r/a", "/r/c", "/rx", "/s/a"], "{keys:?}");
    let at7 = store.range("/r/", Some(7)).await?;
    ensure!(at7 == now, "range at the current revision equals range now");

    let future = store.range("/r/", Some(8)).await;
    ensure!(
        matches!(
            future,
            Err(StoreError::FutureRevision {
                requested: 8,
                current: 7
            })
        ),
        "{future:?}"
    );
    let negative = store.range("/r/", Some(-1)).await;
    ensure!(
        matches!(negative, Err(StoreError::InvalidRevision { revision: -1 })),
        "{negative:?}"
    );
    Ok(())
}

pub(crate) async fn watch_replays_history_then_live_under_concurrent_writers(
    store: Arc<dyn Store>,
) -> Result<()> {
    for i in 0..50 {
        store
            .txn(blind_put(&format!("/w/k{}", i % 7), &i.to_string()))
            .await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    // The in-memory store never awaits; let the watcher's task run.
                    tokio::task::yield_now().await;
                    // Writer 0 writes outside the prefix: revisions the watch must skip.
                    let key = if w == 0 {
                        format!("/other/{i}")
                    } else {
                        format!("/w/{w}/{}", i % 3)
                    };
                    let revision = store.txn(blind_put(&key, "v")).await?.revision;
                    if w != 0 {
                        mine.push(revision);
                    }
                }
                anyhow::Ok(mine)
            })
        })
        .collect();
    // Start watching while the writers are busy, so registration races with commits, and let
    // them go on long enough for live events to follow.
    let reach = |revision: Revision| {
        let store = Arc::clone(&store);
        let wait = async move {
            while store.current_revision() < revision {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(PATIENCE, wait)
    };
    reach(100).await.context("writers stalled")?;
    let mut watch = store.watch("/w/", 20).await?;
    reach(store.current_revision() + 100)
        .await
        .context("writers stalled")?;
    stop.store(true, Ordering::Relaxed);
    let mut expected: BTreeSet<Revision> = (21..=50).collect();
    for writer in writers {
        expected.extend(writer.await??);
    }
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        let event = next(&mut watch).await?.context("watch ended early")??;
        ensure!(
            event.kv.key.starts_with("/w/"),
            "event outside the prefix: {event:?}"
        );
        seen.push(event.kv.mod_revision);
    }
    ensure!(
        seen == expected.into_iter().collect::<Vec<_>>(),
        "revisions out of order, missing or repeated: {seen:?}"
    );
    // Nothing is delivered twice: the next event is the next write.
    let marker = store.txn(blind_put("/w/marker", "end")).await?.revision;
    let event = next(&mut watch).await?.context("watch ended early")??;
    ensure!(event.kv.mod_revision == marker, "stray event {event:?}");
    Ok(())
}

pub(crate) async fn watch_events_carry_prev_kv_and_respect_prefix(
    store: Arc<dyn Store>,
) -> Result<()> {
    store.txn(create("/p/a", "1")).await?; // 1
    store.txn(create("/q/a", "1")).await?; // 2
    store.txn(update("/p/a", "2", 1)).await?; // 3
    store.txn(delete("/p/a", 3)).await?; // 4
    let mut watch = store.watch("/p/", 0).await?;
    store.txn(create("/p/b", "live")).await?; // 5
    store.txn(delete("/p/b", 5)).await?; // 6

    let mut events = Vec::new();
    for _ in 0..5 {
        events.push(next(&mut watch).await?.context("watch ended early")??);
    }
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.kind,
                e.kv.key.as_str(),
                e.kv.mod_revision,
                value_of(Some(&e.kv)),
                value_of(e.prev_kv.as_ref()),
            )
        })
        .collect();
    let expected = vec![
        (EventKind::Put, "/p/a", 1, Some("1"), None),
        (EventKind::Put, "/p/a", 3, Some("2"), Some("1")),
        (EventKind::Delete, "/p/a", 4, Some(""), Some("2")),
        (EventKind::Put, "/p/b", 5, Some("live"), None),
        (EventKind::Delete, "/p/b", 6, Some(""), Some("live")),
    ];
    ensure!(summary == expected, "{summary:?}");
    ensure!(
        events[1].kv.version == 2 && events[1].kv.create_revision == 1,
        "{:?}",
        events[1]
    );
    ensure!(events[2].prev_kv.as_ref().map(|kv| kv.mod_revision) == Some(3));
    Ok(())
}

pub(crate) async fn compaction_limits_reads_and_watches(store: Arc<dyn Store>) -> Result<()> {
    store.txn(blind_put("/c/a", "1")).await?; // 1
    store.txn(blind_put("/c/b", "1")).await?; // 2
    store.txn(blind_put("/c/a", "2")).await?; // 3
    store.txn(delete("/c/b", 2)).await?; // 4
    store.txn(blind_put("/c/c", "1")).await?; // 5
    store.txn(blind_put("/c/a", "3")).await?; // 6
    store.compact(4).await?;

    let old = store.range("/c/", Some(3)).await;
    ensure!(
        matches!(
            old,
            Err(StoreError::Compacted {
                requested: 3,
                compacted: 4
            })
        ),
        "{old:?}"
    );
    let old_watch = store.watch("/c/", 3).await;
    ensure!(
        matches!(
            old_watch,
            Err(StoreError::Compacted {
                requested: 3,
                compacted: 4
            })
        ),
        "{old_watch:?}"
    );

    let at4 = store.range("/c/", Some(4)).await?;
    ensure!(pairs(&at4.kvs) == [("/c/a", &b"2"[..])], "{at4:?}");
    let at5 = store.range("/c/", Some(5)).await?;
    ensure!(
        pairs(&at5.kvs) == [("/c/a", &b"2"[..]), ("/c/c", b"1")],
        "{at5:?}"
    );

    let mut watch = store.watch("/c/", 4).await?;
    let first = next(&mut watch).await?.context("event at 5")??;
    let second = next(&mut watch).await?.context("event at 6")??;
    ensure!(
        first.kv.mod_revision == 5 && first.prev_kv.is_none(),
        "{first:?}"
    );
    ensure!(
        second.kv.mod_revision == 6 && value_of(second.prev_kv.as_ref()) == Some("2"),
        "{second:?}"
    );

    store.compact(2).await?; // at or below the compaction point: nothing to do
    let future = store.compact(100).await;
    ensure!(
        matches!(
            future,
            Err(StoreError::FutureRevision { requested: 100, .. })
        ),
        "{future:?}"
    );
    store.compact(6).await?;
    let at6 = store.range("/c/", Some(6)).await?;
    ensure!(
        pairs(&at6.kvs) == [("/c/a", &b"3"[..]), ("/c/c", b"1")],
        "{at6:?}"
    );
    ensure!(matches!(
        store.range("/c/", Some(5)).await,
        Err(StoreError::Compacted { .. })
    ));
    Ok(())
}

pub(crate) async fn slow_watcher_is_cut_off_without_blocking_writers(
    store: Arc<dyn Store>,
) -> Result<()> {
    // Opened with a 4-event buffer (see watch_buffer_for).
    let mut watch = store.watch("", 0).await?;
    for i in 0..50 {
        let write = store.txn(blind_put("/slow", &i.to_string()));
        tokio::time::timeout(PATIENCE, write)
            .await
            .context("a slow watcher blocked a writer")??;
    }
    for revision in 1..=4 {
        let event = next(&mut watch).await?.context("buffered event")??;
        ensure!(event.kv.mod_revision == revision, "{event:?}");
    }
    let overflow = next(&mut watch).await?;
    ensure!(
        matches!(
            overflow,
            Some(Err(StoreError::WatchOverflow { capacity: 4, .. }))
        ),
        "{overflow:?}"
    );
    ensure!(
        next(&mut watch).await?.is_none(),
        "the stream ends after the overflow error"
    );
    Ok(())
}

pub(crate) async fn watch_ends_when_store_shuts_down(store: Arc<dyn Store>) -> Result<()> {
    store.txn(blind_put("/x", "1")).await?;
    let mut watch = store.watch("", 0).await?;
    drop(store);
    let first = next(&mut watch)
        .await?
        .context("history survives shutdown")??;
    ensure!(first.kv.key == "/x");
    ensure!(
        next(&mut watch).await?.is_none(),
        "the stream ends when the store shuts down"
    );
    Ok(())
}
