//! Database file layout, connection settings and row decoding for the SQLite backend.
//!
//! Tables:
//! - `meta(name, value)`: `revision` (the store revision, persisted with every commit) and
//!   `compacted` (history at or below it is incomplete).
//! - `kv(key, value, create_rev, mod_rev, version)`: the current value of every live key.
//! - `history(rev, seq, key, value, create_rev, version, prev_rev)`: one row per change, in
//!   `(rev, seq)` order; `value` is NULL for a delete; `prev_rev` is the `mod_revision` the key
//!   had before the change (0 if absent), so the previous value is the row `(prev_rev, key)`.
//!
//! Keys are stored as BLOBs so a prefix is the byte range `[prefix, successor(prefix))`, served
//! by the primary-key index with plain comparisons.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};

use crate::store::{KeyValue, Revision, StoreError};

/// Schema version kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

/// How long a connection waits for a lock held by another connection. Only checkpoints and a
/// second process opening the same file contend; WAL readers never wait for the writer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound on the WAL file size kept after a checkpoint, so a burst does not leave a large file
/// behind on small storage.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

const CREATE: &str = "
    CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE kv (
        key BLOB PRIMARY KEY,
        value BLOB NOT NULL,
        create_rev INTEGER NOT NULL,
        mod_rev INTEGER NOT NULL,
        version INTEGER NOT NULL
    );
    CREATE TABLE history (
        rev INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        key BLOB NOT NULL,
        value BLOB,
        create_rev INTEGER NOT NULL,
        version INTEGER NOT NULL,
        prev_rev INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX history_position ON history (rev, seq);
    INSERT INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
";

/// Opens the writer's connection: WAL with full fsync on commit, schema created or checked.
pub(super) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(open_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::JournalMode {
            path: path.to_owned(),
            mode,
        });
    }
    // FULL: the WAL is fsynced at every commit, so an acknowledged txn survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
        .map_err(open_err)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(open_err)?;
    match version {
        0 => {
            let sql = format!(
                "BEGIN IMMEDIATE; {CREATE} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            );
            conn.execute_batch(&sql).map_err(open_err)?;
        }
        SCHEMA_VERSION => {}
        found => {
            return Err(StoreError::SchemaVersion {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            })
        }
    }
    Ok(conn)
}

/// Opens a connection for reads. It never writes: `query_only` turns a stray write into an
/// error instead of a second writer.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(open_err)?;
    Ok(conn)
}

/// Reads one `meta` value.
pub(super) fn meta(conn: &Connection, name: &'static str) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)).optional())
        .map_err(|source| StoreError::Sqlite {
            operation: "read store metadata",
            source,
        })?
        .ok_or_else(|| StoreError::Corrupt {
            what: format!("meta row {name:?} is missing"),
        })
}

/// Writes one `meta` value.
pub(super) fn set_meta(
    conn: &Connection,
    name: &'static str,
    value: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")
        .and_then(|mut stmt| stmt.execute((name, value)))
        .map_err(|source| StoreError::Sqlite {
            operation: "write store metadata",
            source,
        })?;
    Ok(())
}

/// The current value of `key` in `kv`.
pub(super) fn current(conn: &Connection, key: &str) -> Result<Option<KeyValue>, StoreError> {
    let sql = "SELECT key, value, create_rev, mod_rev, version FROM kv WHERE key = ?1";
    let row = conn
        .prepare_cached(sql)
        .and_then(|mut stmt| stmt.query_row([key.as_bytes()], raw_kv).optional())
        .map_err(|source| StoreError::Sqlite {
            operation: "read key",
            source,
        })?;
    row.map(RawKv::decode).transpose()
}

/// The exclusive upper bound of the keys starting with `prefix`. Keys are UTF-8, which never
/// contains the byte 0xFF, so incrementing the last byte cannot overflow and `[0xFF]` is above
/// every key.
pub(super) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    match end.last_mut() {
        Some(last) => *last += 1,
        None => end.push(0xFF),
    }
    end
}

/// A key-value row as SQLite returns it, before the key is checked to be UTF-8.
pub(super) struct RawKv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub version: i64,
}

impl RawKv {
    /// Turns the row into a [`KeyValue`].
    pub fn decode(self) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: decode_key(self.key)?,
            value: Bytes::from(self.value),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        })
    }
}

/// Reads `key, value, create_rev, mod_rev, version` from the start of a row.
pub(super) fn raw_kv(row: &Row<'_>) -> rusqlite::Result<RawKv> {
    Ok(RawKv {
        key: row.get(0)?,
        value: row.get(1)?,
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
        version: row.get(4)?,
    })
}

/// Checks a stored key is UTF-8, as every key written through the store is.
pub(super) fn decode_key(key: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(key).map_err(|e| StoreError::Corrupt {
        what: format!(
            "stored key {:?} is not UTF-8",
            String::from_utf8_lossy(e.as_bytes())
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_exactly_the_keys_with_the_prefix() {
        let end = prefix_end("/registry/pods/");
        assert!(b"/registry/pods/a".as_slice() < end.as_slice());
        assert!(b"/registry/pods0".as_slice() >= end.as_slice());
        assert!("/registry/pods/\u{10FFFF}".as_bytes() < end.as_slice());
        assert_eq!(prefix_end(""), vec![0xFF]);
        assert!("\u{10FFFF}".as_bytes() < prefix_end("").as_slice());
    }

    #[test]
    fn non_utf8_key_is_reported_as_corruption() {
        assert!(matches!(
            decode_key(vec![0x66, 0xFF]),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(decode_key(b"ok".to_vec()).ok().as_deref(), Some("ok"));
    }

    #[test]
    fn writer_commits_durably_in_wal_mode() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let conn = open_writer(&dir.path().join("store.db"))?;
        let mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
        let synchronous: i64 = conn.pragma_query_value(None, "synchronous", |row| row.get(0))?;
        assert_eq!((mode.as_str(), synchronous), ("wal", 2), "2 is FULL");
        assert_eq!(meta(&conn, "revision")?, 0);
        Ok(())
    }

    #[test]
    fn newer_schema_is_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("store.db");
        drop(open_writer(&path)?);
        Connection::open(&path)?.pragma_update(None, "user_version", SCHEMA_VERSION + 1)?;
        let result = open_writer(&path);
        assert!(
            matches!(result, Err(StoreError::SchemaVersion { found: 2, .. })),
            "{result:?}"
        );
        Ok(())
    }

    #[test]
    fn missing_directory_is_an_open_error_naming_the_path() {
        let path = Path::new("/nonexistent-bramble-dir/store.db");
        match open_writer(path) {
            Err(e @ StoreError::Open { .. }) => {
                assert!(e.to_string().contains("/nonexistent-bramble-dir"))
            }
            other => panic!("expected an open error, got {other:?}"),
        }
    }
}
