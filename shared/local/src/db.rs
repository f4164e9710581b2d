use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cvops_core::ports::{QueueError, TableError};
use rusqlite::Connection;

/// One connection shared by the table and the queue of a process.
pub type SharedConnection = Arc<Mutex<Connection>>;

/// Opens (creating if needed) the platform database: WAL, so readers never wait for the writer
/// and another `cvops` process can read while one writes; a busy timeout instead of instant
/// `SQLITE_BUSY` errors between processes.
///
/// `synchronous = FULL`: every commit flushes the write-ahead log before it returns, so a write
/// a function has reported (a catalog record, an acknowledged message, a registered version)
/// survives a power cut, not only a crash of the process, as a DynamoDB or SQS write would.
/// (`NORMAL` in WAL mode keeps the database consistent but may lose the last commits.) Fails
/// when the file system cannot give WAL (a network share without shared memory, say), rather
/// than running with weaker guarantees than these.
pub fn open_database(path: &Path) -> rusqlite::Result<SharedConnection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        let why = format!(
            "{} cannot use write-ahead logging (journal mode {mode}); keep the data directory on a local disk",
            path.display()
        );
        return Err(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN), Some(why)));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    // macOS's fsync leaves data in the drive's cache; F_FULLFSYNC does not.
    #[cfg(target_vendor = "apple")]
    conn.pragma_update(None, "fullfsync", true)?;
    Ok(Arc::new(Mutex::new(conn)))
}

/// SQLite's `PRAGMA integrity_check`: `Ok(())`, or the problems it lists. For `cvops` checks and
/// the durability tests.
pub fn integrity_check(conn: &SharedConnection) -> rusqlite::Result<Result<(), Vec<String>>> {
    let conn = conn.lock().expect("database connection poisoned");
    let mut statement = conn.prepare("PRAGMA integrity_check")?;
    let lines = statement.query_map([], |row| row.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(if lines == ["ok"] { Ok(()) } else { Err(lines) })
}

/// SQLITE_BUSY and SQLITE_LOCKED are worth a retry; everything else is not.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

pub(crate) fn table_error(e: rusqlite::Error) -> TableError {
    TableError::Backend { message: e.to_string(), retryable: is_busy(&e), source: Some(Box::new(e)) }
}

pub(crate) fn queue_error(e: rusqlite::Error) -> QueueError {
    QueueError::Backend { message: e.to_string(), retryable: is_busy(&e), source: Some(Box::new(e)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_runs_in_wal_with_full_synchronous_commits() {
        let dir = crate::fs_store::TestDir::new();
        let db = open_database(&dir.path().join("db.sqlite")).unwrap();
        {
            let conn = db.lock().unwrap();
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
            let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |row| row.get(0)).unwrap();
            assert_eq!((mode.as_str(), synchronous), ("wal", 2), "2 is FULL");
            conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
        }
        assert_eq!(integrity_check(&db).unwrap(), Ok(()));
    }
}
