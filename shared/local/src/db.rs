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
pub fn open_database(path: &Path) -> rusqlite::Result<SharedConnection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(Arc::new(Mutex::new(conn)))
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
