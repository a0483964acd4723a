//! Importing subscribers from CSV: streamed (flat memory), idempotent, and fast. A blocking thread
//! reads and checks the rows in chunks of 100,000; this task writes each chunk in one
//! `BEGIN IMMEDIATE` transaction of multi-row INSERTs (on PostgreSQL: one `COPY` into a temporary
//! table and one INSERT from it) while the next chunk is read. Existing rows
//! are never changed by an import, so a suppressed address (unsubscribed, bounced, complained)
//! stays suppressed. Columns: `email` (required), `name` and `status` (optional, default active;
//! so an export reads back with its unsubscribes); others are ignored.
//!
//! The file is refused, with nothing written, when its header row is not UTF-8, has no `email`
//! column, or the file is binary. Rows are checked one by one: a row that is not UTF-8, has no
//! address Gazette can send to (`SubscriberEmail`), a name with control characters or an unknown
//! status is reported with its line number and left out; the other rows are imported. A name
//! longer than `Subscriber::MAX_NAME_CHARS` is cut, not refused. Blank lines are ignored. Should
//! reading fail midway (an I/O error), the chunks already written stay; importing the file again
//! completes it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::subscribers::{Status, SubscriberEmail, clean_name};
use super::{Pool, Store, StoreError, now};

/// Rows per INSERT statement (measured: 100-300 rows per statement is the sweet spot on SQLite).
const ROWS_PER_STATEMENT: usize = 250;
/// Rows per transaction: big enough to amortise the commit, small enough that a concurrent
/// writer waits well under the busy timeout. A chunk is read and checked before its transaction
/// begins, so a slowly read file never holds the write lock.
const ROWS_PER_TRANSACTION: usize = 100_000;
/// Bytes looked at to tell a text file from a binary one.
const SNIFF_LEN: usize = 8192;

/// What an import did, row by row. `added + unchanged + skipped + invalid` is the number of data rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// New subscribers.
    pub added: u64,
    /// Already there (or earlier in the same file) and not suppressed: nothing changed.
    pub unchanged: u64,
    /// Already there as unsubscribed, bounced or complained: left so.
    pub skipped: u64,
    /// Left out; each was reported through the callback.
    pub invalid: u64,
}

/// A row left out of an import: its line number in the file (1 is the header) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRow {
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for InvalidRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    // The causes are part of the message (and deliberately not `source`s), so that the error
    // chain printed by `main` says everything once.
    #[error("{path}: cannot read: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    /// The file as a whole is unusable; nothing was written.
    #[error("{path}: {reason}; nothing was imported")]
    Refused { path: PathBuf, reason: String },
    #[error("{path}: {cause}")]
    Store { path: PathBuf, cause: StoreError },
}

impl ImportError {
    /// The user's file is the problem (as opposed to the database).
    pub fn is_input_problem(&self) -> bool {
        !matches!(self, ImportError::Store { .. })
    }
}

/// Where each known column is in the header row.
struct Columns {
    email: usize,
    name: Option<usize>,
    status: Option<usize>,
    names: Vec<String>,
}

/// A checked row waiting for its batch.
struct Row {
    email: SubscriberEmail,
    name: Option<String>,
    status: Status,
}

impl Store {
    /// Imports the CSV file at `path`; see the module documentation. `on_invalid` hears about each
    /// row left out, as it is found.
    pub async fn import_csv(
        &self,
        path: &Path,
        on_invalid: impl FnMut(&InvalidRow),
    ) -> Result<ImportReport, ImportError> {
        let file = std::fs::File::open(path).map_err(|e| ImportError::Io { path: path.to_path_buf(), cause: e })?;
        self.import_reader(file, path, on_invalid).await
    }

    /// As `import_csv`, from any reader; `path` names it in messages. The header is checked
    /// here; the rows are then parsed on a blocking thread while this task writes the batches,
    /// so parsing and SQLite run side by side.
    pub async fn import_reader(
        &self,
        reader: impl Read + Send + 'static,
        path: &Path,
        mut on_invalid: impl FnMut(&InvalidRow),
    ) -> Result<ImportReport, ImportError> {
        let io = |e: std::io::Error| ImportError::Io { path: path.to_path_buf(), cause: e };
        let refuse = |reason: String| ImportError::Refused { path: path.to_path_buf(), reason };
        let store_err = |e: StoreError| ImportError::Store { path: path.to_path_buf(), cause: e };

        let mut reader = BufReader::with_capacity(64 * 1024, reader);
        sniff(reader.fill_buf().map_err(io)?).map_err(refuse)?;
        // Records end at '\n' only (a '\r' before it is trimmed with the field), and the stream
        // gets a final '\n' so every record is terminated: the line a record starts on is then
        // the line after it, less one, less the line breaks inside its quoted fields. (The csv
        // crate's own start position counts blank lines skipped before a record.)
        let mut csv = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .terminator(csv::Terminator::Any(b'\n'))
            .buffer_capacity(64 * 1024)
            .from_reader(reader.chain(&b"\n"[..]));
        let columns = read_header(&mut csv).map_err(refuse)?;

        // One chunk queued, one being written, one being read: memory stays flat however long
        // the file is.
        let (sender, mut parsed) = tokio::sync::mpsc::channel::<Chunk>(1);
        let parser = tokio::task::spawn_blocking(move || parse_rows(csv, &columns, &sender));

        let at = now();
        let mut report = ImportReport::default();
        let pool = match &self.pool {
            Pool::Sqlite(pool) => pool.clone(),
            Pool::Postgres(pool) => {
                let written =
                    write_postgres(pool, &mut parsed, at, &mut report, &mut on_invalid).await.map_err(store_err);
                drop(parsed);
                written?;
                parser.await.map_err(|e| io(std::io::Error::other(e)))?.map_err(io)?;
                return Ok(report);
            }
        };

        // One connection for the whole import. Its commits do not checkpoint the WAL into the
        // database file (a fifth of the writer's time, measured); a task on another connection
        // does that after each commit instead, on the other core.
        let mut conn = pool.acquire().await.map_err(|e| store_err(e.into()))?;
        sqlx::query("PRAGMA wal_autocheckpoint = 0").execute(&mut *conn).await.map_err(|e| store_err(e.into()))?;
        let mut checkpoint: Option<tokio::task::JoinHandle<()>> = None;
        // Transactions are begun and committed with plain statements on `conn` (sqlx's
        // `Transaction` would borrow it for the whole loop); on any error the open one is rolled
        // back below before the connection goes back to the pool.
        let mut in_transaction = false;
        let written: Result<(), ImportError> = async {
            while let Some(chunk) = parsed.recv().await {
                if !chunk.report_invalid(&mut report, &mut on_invalid) {
                    continue;
                }
                sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(|e| store_err(e.into()))?;
                in_transaction = true;
                for batch in chunk.rows.chunks(ROWS_PER_STATEMENT) {
                    write_batch(&mut conn, batch, at, &mut report).await.map_err(store_err)?;
                }
                sqlx::query("COMMIT").execute(&mut *conn).await.map_err(|e| store_err(e.into()))?;
                in_transaction = false;
                if checkpoint.as_ref().is_none_or(|c| c.is_finished()) {
                    let pool = pool.clone();
                    checkpoint = Some(tokio::spawn(async move {
                        // PASSIVE: copies what it can without waiting for the writer; best effort.
                        let _ = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await;
                    }));
                }
            }
            // The channel closed: the parser is done, or stopped on a read error (the chunk it was
            // reading is not written; earlier ones are committed).
            parser.await.map_err(|e| io(std::io::Error::other(e)))?.map_err(io)?;
            Ok(())
        }
        .await;
        if in_transaction {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        }
        if let Some(c) = checkpoint {
            let _ = c.await;
        }
        let restored = sqlx::query("PRAGMA wal_autocheckpoint = 1000").execute(&mut *conn).await;
        written?;
        restored.map_err(|e| store_err(e.into()))?;
        Ok(report)
    }
}

/// What the parsing thread hands to the writer: one transaction's rows, and the rows left out
/// while reading them.
#[derive(Default)]
struct Chunk {
    rows: Vec<Row>,
    invalid: Vec<InvalidRow>,
}

impl Chunk {
    /// Counts and reports the rows left out; true when there are rows to write.
    fn report_invalid(&self, report: &mut ImportReport, on_invalid: &mut impl FnMut(&InvalidRow)) -> bool {
        for row in &self.invalid {
            report.invalid += 1;
            on_invalid(row);
        }
        !self.rows.is_empty()
    }
}

/// Reads and checks every data row, in chunks of up to `ROWS_PER_TRANSACTION` rows. A chunk's
/// valid rows are sorted by address key (stably, so the first of two duplicates stays first):
/// the unique index's inserts then walk the B-tree in order, which more than halved SQLite's time
/// for addresses in random order. One message per chunk, so the next chunk is parsed while this
/// one is written. Stops early, without error, when the writer has gone (it failed and reports why).
fn parse_rows<R: Read>(
    mut csv: csv::Reader<R>,
    columns: &Columns,
    sender: &tokio::sync::mpsc::Sender<Chunk>,
) -> Result<(), std::io::Error> {
    let mut chunk = Chunk::default();
    let mut record = csv::ByteRecord::new();
    loop {
        // The line the reader is at: the record's first, or a blank line skipped before it.
        let before = csv.position().line();
        let more = match csv.read_byte_record(&mut record) {
            Ok(more) => more,
            Err(e) => match e.kind() {
                csv::ErrorKind::Io(_) => return Err(std::io::Error::other(e.to_string())),
                // With `flexible`, byte records and '\n' terminators the csv crate has no other
                // errors today; should one appear, it is the row's problem, not the file's.
                _ => {
                    let line = e.position().map_or(0, |p| p.line());
                    chunk.invalid.push(InvalidRow { line, reason: format!("is not readable as CSV: {e}") });
                    continue;
                }
            },
        };
        if more && record.iter().all(|f| f.trim_ascii().is_empty()) {
            continue; // a blank line, or one of only separators and spaces
        }
        if more {
            match check_row(&record, columns) {
                Ok((email, name, status)) => chunk.rows.push(Row { email, name, status }),
                Err(reason) => {
                    // A quote left open at the end of the file takes the final '\n' into its
                    // field: the record then ends on its last line, not after it. `before`
                    // keeps it from being named at the line above (the header, for the first
                    // row); after blank lines, it is named at the last of them.
                    let breaks = record.as_slice().iter().filter(|b| **b == b'\n').count() as u64;
                    let line = csv.position().line().saturating_sub(1 + breaks).max(before);
                    chunk.invalid.push(InvalidRow { line, reason });
                }
            }
        }
        let size = chunk.rows.len() + chunk.invalid.len();
        if size == ROWS_PER_TRANSACTION || (!more && size > 0) {
            let mut full = std::mem::take(&mut chunk);
            full.rows.sort_by(|a, b| a.email.key().cmp(b.email.key()));
            if sender.blocking_send(full).is_err() {
                return Ok(());
            }
        }
        if !more {
            return Ok(());
        }
    }
}

/// Refuses files that are clearly not CSV text, from their first bytes.
fn sniff(start: &[u8]) -> Result<(), String> {
    if start.is_empty() {
        return Err("the file is empty; expected a header row naming an `email` column".into());
    }
    if start.starts_with(&[0xFF, 0xFE]) || start.starts_with(&[0xFE, 0xFF]) {
        return Err("the file is UTF-16, not UTF-8; save it as \"CSV UTF-8\" and import it again".into());
    }
    let head = &start[..start.len().min(SNIFF_LEN)];
    if head.contains(&0) {
        return Err("this is not a CSV file (it contains binary data); export a CSV file with a header row naming an `email` column".into());
    }
    Ok(())
}

fn read_header<R: Read>(csv: &mut csv::Reader<R>) -> Result<Columns, String> {
    let header = csv.byte_headers().map_err(|e| format!("cannot read the header row as CSV: {e}"))?.clone();
    let mut names = Vec::with_capacity(header.len());
    for (i, field) in header.iter().enumerate() {
        let field = if i == 0 { field.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(field) } else { field };
        match std::str::from_utf8(field) {
            Ok(s) => names.push(s.trim().to_string()),
            Err(e) => {
                return Err(format!(
                    "line 1: the header row is not UTF-8 (byte 0x{:02X} in column {}); save the file as \"CSV UTF-8\" and import it again",
                    field[e.valid_up_to()],
                    i + 1
                ));
            }
        }
    }
    let find = |wanted: &str| names.iter().position(|n| n.eq_ignore_ascii_case(wanted));
    let Some(email) = find("email") else {
        let found = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        let hint = if names.len() == 1 && [';', '\t', '|'].iter().any(|c| names[0].contains(*c)) {
            " (the columns look separated by something other than commas; Gazette reads comma-separated files)"
        } else {
            ""
        };
        return Err(format!(
            "line 1: the header row has no `email` column (found {found}){hint}; the first line must name the columns, as in `email,name`"
        ));
    };
    Ok(Columns { email, name: find("name"), status: find("status"), names })
}

/// Checks one data row: UTF-8 throughout, a valid address, a name without control characters, a
/// known status (`active` when absent or empty).
fn check_row(record: &csv::ByteRecord, columns: &Columns) -> Result<(SubscriberEmail, Option<String>, Status), String> {
    let column =
        |i: usize| columns.names.get(i).map_or_else(|| format!("column {}", i + 1), |n| format!("`{n}` column"));
    if std::str::from_utf8(record.as_slice()).is_err() {
        for (i, field) in record.iter().enumerate() {
            if let Err(e) = std::str::from_utf8(field) {
                return Err(format!("is not UTF-8 (byte 0x{:02X} in the {})", field[e.valid_up_to()], column(i)));
            }
        }
    }
    // Every field is UTF-8 from here on.
    let text = |i: usize| record.get(i).map(|f| std::str::from_utf8(f).unwrap_or_default().trim());
    let email = match text(columns.email) {
        None | Some("") => return Err("has no email address".into()),
        Some(e) => SubscriberEmail::parse(e).map_err(|e| e.to_string())?,
    };
    let name = match columns.name.and_then(text) {
        None => None,
        Some(n) => clean_name(n).map_err(|e| format!("{e} (for {email})"))?,
    };
    let status = match columns.status.and_then(text) {
        None | Some("") => Status::Active,
        Some(s) => s.parse().map_err(|e: super::StatusParseError| format!("{e} (for {email})"))?,
    };
    Ok((email, name, status))
}

/// Writes one batch, sorted by address key: inserts the rows whose address is new, in one statement, then counts each
/// row. Only when some address was already there does it look up their statuses. Runs inside a
/// `BEGIN IMMEDIATE` transaction, so the ids of the rows just inserted are the last ones.
async fn write_batch(
    conn: &mut sqlx::SqliteConnection,
    batch: &[Row],
    at: i64,
    report: &mut ImportReport,
) -> Result<(), StoreError> {
    let (first, distinct) = dedupe(batch);

    // A plain multi-row VALUES list with three anonymous parameters per row (SQLite finds a
    // numbered parameter by a linear search, which makes ?NNN quadratic). The status, source and
    // timestamp are SQL literals: they come from Gazette (`Status::as_str` and an integer clock),
    // never from the file, and the statement stays the same from batch to batch, so it is prepared
    // once. `OR IGNORE` rather than `ON CONFLICT DO NOTHING`: with no constraint able to abort the
    // statement, SQLite keeps no statement journal (a sixth of its time with random addresses);
    // the CHECKs cannot fail here, as the values come from `Status`.
    let templates = Status::ALL.map(|status| {
        let stamp = |s: Status| if status == s { at.to_string() } else { "NULL".to_string() };
        format!(
            "(?,?,?,'{}','import',{at},{at},{},{},{},{})",
            status.as_str(),
            stamp(Status::Active),
            stamp(Status::Unsubscribed),
            stamp(Status::Bounced),
            stamp(Status::Complained)
        )
    });
    let mut values = String::with_capacity(distinct.len() * (templates[0].len() + 1));
    for (i, r) in distinct.iter().enumerate() {
        if i > 0 {
            values.push(',');
        }
        let t = Status::ALL.iter().position(|s| *s == r.status).expect("every status is in ALL");
        values.push_str(&templates[t]);
    }
    let sql = format!(
        "INSERT OR IGNORE INTO subscribers (email, email_key, name, status, source, created_at, status_changed_at, \
         confirmed_at, unsubscribed_at, bounced_at, complained_at) VALUES {values}"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in &distinct {
        q = q.bind(r.email.as_str()).bind(r.email.key()).bind(r.name.as_deref());
    }
    let done = q.execute(&mut *conn).await?;
    let inserted = done.rows_affected();

    // The statuses of the addresses that were there before this statement.
    let mut existing: HashMap<String, Status> = HashMap::new();
    if inserted < distinct.len() as u64 {
        // Rows get ids above every existing one, so the new ones are the last `inserted`.
        let first_new_id = if inserted == 0 { i64::MAX } else { done.last_insert_rowid() - inserted as i64 + 1 };
        let sql = format!(
            "SELECT email_key, status FROM subscribers WHERE id < ? AND email_key IN ({})",
            placeholders(distinct.len(), "?")
        );
        let mut q = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql)).bind(first_new_id);
        for r in &distinct {
            q = q.bind(r.email.key());
        }
        for (key, status) in q.fetch_all(&mut *conn).await? {
            let status = status.parse().map_err(|_| StoreError::Corrupt(format!("{key} has an unknown status")))?;
            existing.insert(key, status);
        }
        if existing.len() as u64 + inserted != distinct.len() as u64 {
            return Err(StoreError::Corrupt(format!(
                "an import batch of {} addresses inserted {inserted} but found {} already there",
                distinct.len(),
                existing.len()
            )));
        }
    }

    tally(batch, &first, &existing, report);
    Ok(())
}

/// The batch is sorted by key (stably), so a duplicate follows the row it repeats: `first[i]` is
/// the index of the first row with row i's address; the second list holds each address once.
fn dedupe(batch: &[Row]) -> (Vec<usize>, Vec<&Row>) {
    debug_assert!(batch.windows(2).all(|w| w[0].email.key() <= w[1].email.key()), "an import batch must be sorted");
    let mut first: Vec<usize> = Vec::with_capacity(batch.len());
    let mut distinct: Vec<&Row> = Vec::with_capacity(batch.len());
    for (i, row) in batch.iter().enumerate() {
        match first.last() {
            Some(&f) if batch[f].email.key() == row.email.key() => first.push(f),
            _ => {
                first.push(i);
                distinct.push(row);
            }
        }
    }
    (first, distinct)
}

/// Counts each row of a written batch: added (the first row of a new address), or, for an address
/// that was there before (`existing`, with its status) or earlier in the batch, skipped when
/// suppressed and unchanged otherwise.
fn tally(batch: &[Row], first: &[usize], existing: &HashMap<String, Status>, report: &mut ImportReport) {
    for (i, row) in batch.iter().enumerate() {
        let key = row.email.key();
        let suppressed = match existing.get(key) {
            Some(status) => status.is_suppressed(),
            None if first[i] == i => {
                report.added += 1;
                continue;
            }
            None => batch[first[i]].status.is_suppressed(),
        };
        if suppressed {
            report.skipped += 1;
        } else {
            report.unchanged += 1;
        }
    }
}

/// The PostgreSQL writer: each chunk in one transaction, its rows sent with `COPY` (text format)
/// into a temporary table, then inserted from there in one statement; the addresses already
/// there are read back in one more.
async fn write_postgres(
    pool: &sqlx::PgPool,
    parsed: &mut tokio::sync::mpsc::Receiver<Chunk>,
    at: i64,
    report: &mut ImportReport,
    on_invalid: &mut impl FnMut(&InvalidRow),
) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("CREATE TEMPORARY TABLE IF NOT EXISTS import_rows (email TEXT NOT NULL, email_key TEXT NOT NULL, name TEXT, status TEXT NOT NULL)")
        .execute(&mut *conn)
        .await?;
    while let Some(chunk) = parsed.recv().await {
        if !chunk.report_invalid(report, on_invalid) {
            continue;
        }
        let (first, distinct) = dedupe(&chunk.rows);
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query("TRUNCATE import_rows").execute(&mut *tx).await?;
        let mut data = Vec::with_capacity(distinct.len() * 64);
        for r in &distinct {
            for (i, field) in [Some(r.email.as_str()), Some(r.email.key()), r.name.as_deref(), Some(r.status.as_str())]
                .into_iter()
                .enumerate()
            {
                if i > 0 {
                    data.push(b'\t');
                }
                match field {
                    Some(text) => copy_escape(text, &mut data),
                    None => data.extend_from_slice(b"\\N"),
                }
            }
            data.push(b'\n');
        }
        let mut copy = tx.copy_in_raw("COPY import_rows (email, email_key, name, status) FROM STDIN").await?;
        copy.send(data).await?;
        copy.finish().await?;
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO subscribers (email, email_key, name, status, source, created_at, status_changed_at,
                                      confirmed_at, unsubscribed_at, bounced_at, complained_at)
             SELECT email, email_key, name, status, 'import', $1, $1,
                    CASE status WHEN 'active' THEN $1 END, CASE status WHEN 'unsubscribed' THEN $1 END,
                    CASE status WHEN 'bounced' THEN $1 END, CASE status WHEN 'complained' THEN $1 END
             FROM import_rows ON CONFLICT (email_key) DO NOTHING RETURNING email_key",
        )
        .bind(at)
        .fetch_all(&mut *tx)
        .await?;
        let mut existing: HashMap<String, Status> = HashMap::new();
        if inserted.len() < distinct.len() {
            let new: std::collections::HashSet<String> = inserted.into_iter().collect();
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT s.email_key, s.status FROM subscribers s JOIN import_rows i ON i.email_key = s.email_key",
            )
            .fetch_all(&mut *tx)
            .await?;
            for (key, status) in rows.into_iter().filter(|(key, _)| !new.contains(key)) {
                let status = status.parse().map_err(|_| StoreError::Corrupt(format!("{key} has an unknown status")))?;
                existing.insert(key, status);
            }
        }
        tx.commit().await?;
        tally(&chunk.rows, &first, &existing, report);
    }
    Ok(())
}

/// `text` as a field of COPY's text format: backslash, tab, newline and carriage return escaped.
fn copy_escape(text: &str, out: &mut Vec<u8>) {
    for b in text.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// `n` copies of `one`, comma-separated.
fn placeholders(n: usize, one: &str) -> String {
    let mut s = String::with_capacity(n * (one.len() + 1));
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(one);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn import(store: &Store, bytes: &[u8]) -> (Result<ImportReport, ImportError>, Vec<InvalidRow>) {
        let mut invalid = Vec::new();
        let r = store
            .import_reader(std::io::Cursor::new(bytes.to_vec()), Path::new("list.csv"), |row| invalid.push(row.clone()))
            .await;
        (r, invalid)
    }

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(3, "?"), "?,?,?");
    }

    #[tokio::test]
    async fn header_problems_refuse_the_file_and_write_nothing() {
        for store in crate::store::testing::stores().await {
            let cases: [(&[u8], &str); 6] = [
                (b"", "empty"),
                (b"name,address\nAda,ada@example.org\n", "no `email` column (found `name`, `address`)"),
                (b"email;name\nada@example.org;Ada\n", "separated by something other than commas"),
                (b"\xFF\xFEe\0m\0a\0i\0l\0", "UTF-16"),
                (b"PK\x03\x04\x14\0\0\0\x08\0", "binary"),
                (b"em\xE9il,name\nada@example.org,Ada\n", "header row is not UTF-8 (byte 0xE9 in column 1)"),
            ];
            for (bytes, expected) in cases {
                let (r, invalid) = import(&store, bytes).await;
                let err = r.unwrap_err();
                assert!(err.is_input_problem());
                let msg = err.to_string();
                assert!(
                    msg.starts_with("list.csv: ") && msg.contains(expected) && msg.ends_with("nothing was imported"),
                    "{msg}"
                );
                assert!(invalid.is_empty());
            }
            assert_eq!(store.list_page(None, 0, 10).await.unwrap(), vec![]);
        }
    }

    #[tokio::test]
    async fn mixed_rows_are_counted_and_reported_by_line() {
        for store in crate::store::testing::stores().await {
            let file: &[u8] = b"\xEF\xBB\xBFEmail,Name,extra\n\
                ada@example.org,Ada,x\n\
                not-an-address,Bob\n\
                ADA@EXAMPLE.ORG,Ada again\n\
                \n\
                \"quoted@example.org\",\"Multi\nline\"\n\
                caf\xE9@example.org,Latin-1\n\
                ,Nobody\n\
                zoe@example.org\n";
            let (r, invalid) = import(&store, file).await;
            let lines: Vec<(u64, &str)> = invalid.iter().map(|i| (i.line, i.reason.as_str())).collect();
            assert_eq!(lines.len(), 4, "{lines:?}");
            assert_eq!(lines[0].0, 3);
            assert!(lines[0].1.contains("`not-an-address`"), "{}", lines[0].1);
            assert_eq!(lines[1].0, 6);
            assert!(lines[1].1.contains("control character"), "{}", lines[1].1);
            assert_eq!(lines[2], (8, "is not UTF-8 (byte 0xE9 in the `Email` column)"));
            assert_eq!(lines[3], (9, "has no email address"));
            assert_eq!(r.unwrap(), ImportReport { added: 2, unchanged: 1, skipped: 0, invalid: 4 });
        }
    }

    #[tokio::test]
    async fn duplicates_across_statements_and_existing_rows_are_counted_exactly() {
        use crate::store::{NewSubscriber, Source};
        for store in crate::store::testing::stores().await {
            for (addr, status) in [
                ("r7@example.org", Status::Unsubscribed),
                ("r8@example.org", Status::Bounced),
                ("r9@example.org", Status::Active),
            ] {
                let new = NewSubscriber {
                    email: addr.parse().unwrap(),
                    name: None,
                    status: Status::Active,
                    source: Source::Cli,
                };
                let id = match store.add(&new, false).await.unwrap() {
                    crate::store::AddOutcome::Added(s) => s.id,
                    other => panic!("{other:?}"),
                };
                store.set_status(id, status).await.unwrap();
            }
            // 1,000 rows, 500 addresses each given twice (the second time upper-cased), 500 rows apart:
            // four statements' worth, so duplicates meet both within a statement and across them.
            let mut file = String::from("email,name\n");
            for i in 0..1000 {
                let addr = format!("r{}@example.org", i % 500);
                let addr = if i >= 500 { addr.to_uppercase() } else { addr };
                file.push_str(&format!("{addr},Reader {i}\n"));
            }
            let (r, invalid) = import(&store, file.as_bytes()).await;
            assert!(invalid.is_empty());
            assert_eq!(r.unwrap(), ImportReport { added: 497, unchanged: 499, skipped: 4, invalid: 0 });
            let r12 = store.subscriber_by_email(&"R12@EXAMPLE.ORG".parse().unwrap()).await.unwrap().unwrap();
            assert_eq!((r12.email.as_str(), r12.name.as_deref()), ("r12@example.org", Some("Reader 12")));
            assert_eq!(
                store.subscriber_by_email(&"r7@example.org".parse().unwrap()).await.unwrap().unwrap().status,
                Status::Unsubscribed
            );
            let (again, _) = import(&store, file.as_bytes()).await;
            assert_eq!(again.unwrap(), ImportReport { added: 0, unchanged: 996, skipped: 4, invalid: 0 });
        }
    }

    #[tokio::test]
    async fn a_quote_left_open_at_the_end_is_named_at_its_own_line() {
        for store in crate::store::testing::stores().await {
            // Found by tests/hostile_input.rs: this row was named at line 1, the header.
            let (r, invalid) = import(&store, b"email,name\nbad,\"Ada").await;
            assert_eq!(invalid.iter().map(|i| i.line).collect::<Vec<_>>(), [2], "{invalid:?}");
            assert_eq!(r.unwrap().invalid, 1);
            let (_, invalid) = import(&store, b"email,name\nada@example.org,Ada\nbad,\"Multi\nline").await;
            assert_eq!(invalid.iter().map(|i| i.line).collect::<Vec<_>>(), [3], "{invalid:?}");
        }
    }

    #[tokio::test]
    async fn crlf_files_and_a_missing_final_line_break_keep_line_numbers() {
        for store in crate::store::testing::stores().await {
            let file: &[u8] =
                b"name,email\r\nAda,ada@example.org\r\n\r\n,,\r\nBob,bob@\r\n\"Zoe\",zoe@example.org\r\nEve,eve@";
            let (r, invalid) = import(&store, file).await;
            assert_eq!(invalid.iter().map(|i| i.line).collect::<Vec<_>>(), [5, 7]);
            assert_eq!(r.unwrap(), ImportReport { added: 2, unchanged: 0, skipped: 0, invalid: 2 });
            let zoe = store.subscriber_by_email(&"zoe@example.org".parse().unwrap()).await.unwrap().unwrap();
            assert_eq!(zoe.name.as_deref(), Some("Zoe"));
            assert_eq!(zoe.email, "zoe@example.org");
        }
    }
}
