//! Importing subscribers from CSV: streamed (flat memory), idempotent, and fast. A blocking thread
//! reads and checks the rows in chunks of 100,000; this task writes each chunk in one
//! `BEGIN IMMEDIATE` transaction of multi-row INSERTs (on PostgreSQL: one `COPY` into a temporary
//! table and one INSERT from it) while the next chunk is read. Columns: `email` (required), `name`
//! and `status` (optional, default active; so an export reads back with its unsubscribes),
//! `themes` (names separated by `;`, empty: every theme) and `paused_until` (RFC 3339, empty: not
//! paused); others are ignored.
//!
//! An existing row keeps its name and status, so a suppressed address (unsubscribed, bounced,
//! complained) stays suppressed. Only the reader's choices change, and only when the file has
//! their column: a row that was there before the import and is not suppressed takes the file's
//! `themes` (an empty cell: every theme again) and `paused_until`. The file is then the list as
//! the editor wants it, as after editing an export. Those rows are counted `updated` when a value
//! changed. Of two rows for one address, the first in the file counts.
//!
//! The file is refused, with nothing written, when its header row is not UTF-8, has no `email`
//! column, or the file is binary. Rows are checked one by one: a row that is not UTF-8, has no
//! address Gazette can send to (`SubscriberEmail`), a name with control characters, an unknown
//! status, a list of themes `ThemeChoice` refuses or a time that is not RFC 3339 is reported with
//! its line number and column and left out; the other rows are imported. A name
//! longer than `Subscriber::MAX_NAME_CHARS` is cut, not refused. Blank lines are ignored. Should
//! reading fail midway (an I/O error), the chunks already written stay; importing the file again
//! completes it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::subscribers::{Status, SubscriberEmail, clean_name};
use super::{Pool, Store, StoreError, now};
use crate::themes::ThemeChoice;

/// Rows per INSERT statement (measured: 100-300 rows per statement is the sweet spot on SQLite).
const ROWS_PER_STATEMENT: usize = 250;
/// Rows per transaction: big enough to amortise the commit, small enough that a concurrent
/// writer waits well under the busy timeout. A chunk is read and checked before its transaction
/// begins, so a slowly read file never holds the write lock.
const ROWS_PER_TRANSACTION: usize = 100_000;
/// Bytes looked at to tell a text file from a binary one.
const SNIFF_LEN: usize = 8192;

/// What an import did, row by row. `added + updated + unchanged + skipped + invalid` is the number
/// of data rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// New subscribers.
    pub added: u64,
    /// Already there before the import, not suppressed, and given other themes or another pause
    /// by the file's `themes` or `paused_until` column.
    pub updated: u64,
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
    themes: Option<usize>,
    paused_until: Option<usize>,
    names: Vec<String>,
}

impl Columns {
    fn choices(&self) -> Choices {
        Choices { themes: self.themes.is_some(), paused_until: self.paused_until.is_some() }
    }
}

/// Which of a reader's choices the file gives: only those are written (and parsed, so a file
/// without them is imported as fast as before they existed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Choices {
    themes: bool,
    paused_until: bool,
}

impl Choices {
    fn any(self) -> bool {
        self.themes || self.paused_until
    }

    /// The names of the columns given, in the order rows bind them.
    fn columns(self) -> impl Iterator<Item = &'static str> {
        [("themes", self.themes), ("paused_until", self.paused_until)].into_iter().filter(|c| c.1).map(|c| c.0)
    }
}

/// A checked row waiting for its batch.
struct Row {
    email: SubscriberEmail,
    name: Option<String>,
    status: Status,
    /// `ThemeChoice::to_stored`; `None`: every theme (or no `themes` column).
    themes: Option<String>,
    /// Unix seconds; `None`: not paused (or no `paused_until` column).
    paused_until: Option<i64>,
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
        let choices = columns.choices();

        // One chunk queued, one being written, one being read: memory stays flat however long
        // the file is.
        let (sender, mut parsed) = tokio::sync::mpsc::channel::<Chunk>(1);
        let parser = tokio::task::spawn_blocking(move || parse_rows(csv, &columns, &sender));

        let at = now();
        let mut report = ImportReport::default();
        // The rows there before the import: only they take the file's choices (a row the file
        // added earlier keeps those of its first row).
        let before = Before { id: self.last_subscriber_id().await.map_err(store_err)?, choices };
        let pool = match &self.pool {
            Pool::Sqlite(pool) => pool.clone(),
            Pool::Postgres(pool) => {
                let written = write_postgres(pool, &mut parsed, at, before, &mut report, &mut on_invalid)
                    .await
                    .map_err(store_err);
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
                    write_batch(&mut conn, batch, at, before, &mut report).await.map_err(store_err)?;
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

/// What tells the rows an import may update from the others: the highest id before it began, and
/// the choices its file gives.
#[derive(Clone, Copy)]
struct Before {
    id: i64,
    choices: Choices,
}

impl Store {
    /// The highest subscriber id (0 with none).
    async fn last_subscriber_id(&self) -> Result<i64, StoreError> {
        Ok(with_pool!(&self.pool, p => sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM subscribers").fetch_one(p).await)?.unwrap_or(0))
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
                Ok(row) => chunk.rows.push(row),
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
    Ok(Columns {
        email,
        name: find("name"),
        status: find("status"),
        themes: find("themes"),
        paused_until: find("paused_until"),
        names,
    })
}

/// Checks one data row: UTF-8 throughout, a valid address, a name without control characters, a
/// known status (`active` when absent or empty), themes `ThemeChoice` takes, a pause in RFC 3339.
fn check_row(record: &csv::ByteRecord, columns: &Columns) -> Result<Row, String> {
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
    let themes = match columns.themes {
        None => None,
        Some(i) => ThemeChoice::parse_list(text(i).unwrap_or_default())
            .map_err(|e| format!("in the {}: {e} (for {email})", column(i)))?
            .map(|choice| choice.to_stored()),
    };
    let paused_until = match columns.paused_until.map(|i| (i, text(i).unwrap_or_default())) {
        None | Some((_, "")) => None,
        Some((i, t)) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    let shown: String = t.chars().take(40).collect();
                    format!(
                        "in the {}: {shown:?} is not a time; write it as in 2026-12-31T00:00:00Z, or leave it empty for no pause (for {email})",
                        column(i)
                    )
                })?
                .timestamp(),
        ),
    };
    Ok(Row { email, name, status, themes, paused_until })
}

/// Writes one batch, sorted by address key: inserts the rows whose address is new, in one statement, then counts each
/// row. Only when some address was already there does it look up their statuses (and, when the
/// file gives choices, update those of the rows there before the import). Runs inside a
/// `BEGIN IMMEDIATE` transaction, so the ids of the rows just inserted are the last ones.
async fn write_batch(
    conn: &mut sqlx::SqliteConnection,
    batch: &[Row],
    at: i64,
    before: Before,
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
    let choices = before.choices;
    let chosen: String = choices.columns().map(|c| format!(", {c}")).collect();
    let chosen_params = ",?".repeat(choices.columns().count());
    let templates = Status::ALL.map(|status| {
        let stamp = |s: Status| if status == s { at.to_string() } else { "NULL".to_string() };
        format!(
            "(?,?,?{chosen_params},'{}','import',{at},{at},{},{},{},{})",
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
        "INSERT OR IGNORE INTO subscribers (email, email_key, name{chosen}, status, source, created_at, status_changed_at, \
         confirmed_at, unsubscribed_at, bounced_at, complained_at) VALUES {values}"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in &distinct {
        q = q.bind(r.email.as_str()).bind(r.email.key()).bind(r.name.as_deref());
        if choices.themes {
            q = q.bind(r.themes.as_deref());
        }
        if choices.paused_until {
            q = q.bind(r.paused_until);
        }
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
    if choices.any() && !existing.is_empty() {
        let updated = update_choices(conn, &distinct, &existing, before).await?;
        report.unchanged -= updated;
        report.updated += updated;
    }
    Ok(())
}

/// Gives the rows of `distinct` that were there before the import and are not suppressed the
/// file's choices; the number of rows whose choices changed.
async fn update_choices(
    conn: &mut sqlx::SqliteConnection,
    distinct: &[&Row],
    existing: &HashMap<String, Status>,
    before: Before,
) -> Result<u64, StoreError> {
    let rows: Vec<&&Row> =
        distinct.iter().filter(|r| existing.get(r.email.key()).is_some_and(|s| !s.is_suppressed())).collect();
    if rows.is_empty() {
        return Ok(0);
    }
    let choices = before.choices;
    let names: Vec<&str> = choices.columns().collect();
    let row = format!("(?{})", ",?".repeat(names.len()));
    let set: Vec<String> = names.iter().map(|c| format!("{c} = v.{c}")).collect();
    let differ: Vec<String> = names.iter().map(|c| format!("subscribers.{c} IS NOT v.{c}")).collect();
    let sql = format!(
        "WITH v(email_key, {}) AS (VALUES {}) UPDATE subscribers SET {} FROM v \
         WHERE subscribers.email_key = v.email_key AND subscribers.id <= ? AND subscribers.status IN ({}) AND ({})",
        names.join(", "),
        placeholders(rows.len(), &row),
        set.join(", "),
        receiving_statuses(),
        differ.join(" OR ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in &rows {
        q = q.bind(r.email.key());
        if choices.themes {
            q = q.bind(r.themes.as_deref());
        }
        if choices.paused_until {
            q = q.bind(r.paused_until);
        }
    }
    Ok(q.bind(before.id).execute(&mut *conn).await?.rows_affected())
}

/// The statuses that are not suppressed, as an SQL list of literals (`'pending','active'`).
fn receiving_statuses() -> String {
    Status::ALL.iter().filter(|s| !s.is_suppressed()).map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(",")
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
/// there are read back in one more (and, when the file gives choices, those there before the
/// import updated in one more).
async fn write_postgres(
    pool: &sqlx::PgPool,
    parsed: &mut tokio::sync::mpsc::Receiver<Chunk>,
    at: i64,
    before: Before,
    report: &mut ImportReport,
    on_invalid: &mut impl FnMut(&InvalidRow),
) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    // Named for its columns: a pooled session keeps its temporary tables.
    sqlx::query("CREATE TEMPORARY TABLE IF NOT EXISTS import_rows_chosen (email TEXT NOT NULL, email_key TEXT NOT NULL, name TEXT, status TEXT NOT NULL, themes TEXT, paused_until BIGINT)")
        .execute(&mut *conn)
        .await?;
    let choices = before.choices;
    let update = choices.any().then(|| {
        let names: Vec<&str> = choices.columns().collect();
        let set: Vec<String> = names.iter().map(|c| format!("{c} = i.{c}")).collect();
        let differ: Vec<String> = names.iter().map(|c| format!("s.{c} IS DISTINCT FROM i.{c}")).collect();
        format!(
            "UPDATE subscribers s SET {} FROM import_rows_chosen i \
             WHERE s.email_key = i.email_key AND s.id <= $1 AND s.status IN ({}) AND ({})",
            set.join(", "),
            receiving_statuses(),
            differ.join(" OR ")
        )
    });
    while let Some(chunk) = parsed.recv().await {
        if !chunk.report_invalid(report, on_invalid) {
            continue;
        }
        let (first, distinct) = dedupe(&chunk.rows);
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query("TRUNCATE import_rows_chosen").execute(&mut *tx).await?;
        let mut data = Vec::with_capacity(distinct.len() * 64);
        for r in &distinct {
            let paused = r.paused_until.map(|t| t.to_string());
            for (i, field) in [
                Some(r.email.as_str()),
                Some(r.email.key()),
                r.name.as_deref(),
                Some(r.status.as_str()),
                r.themes.as_deref(),
                paused.as_deref(),
            ]
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
        let mut copy = tx
            .copy_in_raw("COPY import_rows_chosen (email, email_key, name, status, themes, paused_until) FROM STDIN")
            .await?;
        copy.send(data).await?;
        copy.finish().await?;
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO subscribers (email, email_key, name, status, source, created_at, status_changed_at,
                                      confirmed_at, unsubscribed_at, bounced_at, complained_at, themes, paused_until)
             SELECT email, email_key, name, status, 'import', $1, $1,
                    CASE status WHEN 'active' THEN $1 END, CASE status WHEN 'unsubscribed' THEN $1 END,
                    CASE status WHEN 'bounced' THEN $1 END, CASE status WHEN 'complained' THEN $1 END,
                    themes, paused_until
             FROM import_rows_chosen ON CONFLICT (email_key) DO NOTHING RETURNING email_key",
        )
        .bind(at)
        .fetch_all(&mut *tx)
        .await?;
        let mut existing: HashMap<String, Status> = HashMap::new();
        if inserted.len() < distinct.len() {
            let new: std::collections::HashSet<String> = inserted.into_iter().collect();
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT s.email_key, s.status FROM subscribers s JOIN import_rows_chosen i ON i.email_key = s.email_key",
            )
            .fetch_all(&mut *tx)
            .await?;
            for (key, status) in rows.into_iter().filter(|(key, _)| !new.contains(key)) {
                let status = status.parse().map_err(|_| StoreError::Corrupt(format!("{key} has an unknown status")))?;
                existing.insert(key, status);
            }
        }
        let updated = match &update {
            Some(sql) if !existing.is_empty() => {
                sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(before.id).execute(&mut *tx).await?.rows_affected()
            }
            _ => 0,
        };
        tx.commit().await?;
        tally(&chunk.rows, &first, &existing, report);
        report.unchanged -= updated;
        report.updated += updated;
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
mod tests_support {
    use super::*;

    pub async fn import(store: &Store, bytes: &[u8]) -> (Result<ImportReport, ImportError>, Vec<InvalidRow>) {
        let mut invalid = Vec::new();
        let r = store
            .import_reader(std::io::Cursor::new(bytes.to_vec()), Path::new("list.csv"), |row| invalid.push(row.clone()))
            .await;
        (r, invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::import;
    use super::*;

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
            assert_eq!(r.unwrap(), ImportReport { added: 2, updated: 0, unchanged: 1, skipped: 0, invalid: 4 });
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
            assert_eq!(r.unwrap(), ImportReport { added: 497, updated: 0, unchanged: 499, skipped: 4, invalid: 0 });
            let r12 = store.subscriber_by_email(&"R12@EXAMPLE.ORG".parse().unwrap()).await.unwrap().unwrap();
            assert_eq!((r12.email.as_str(), r12.name.as_deref()), ("r12@example.org", Some("Reader 12")));
            assert_eq!(
                store.subscriber_by_email(&"r7@example.org".parse().unwrap()).await.unwrap().unwrap().status,
                Status::Unsubscribed
            );
            let (again, _) = import(&store, file.as_bytes()).await;
            assert_eq!(again.unwrap(), ImportReport { added: 0, updated: 0, unchanged: 996, skipped: 4, invalid: 0 });
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
            assert_eq!(r.unwrap(), ImportReport { added: 2, updated: 0, unchanged: 0, skipped: 0, invalid: 2 });
            let zoe = store.subscriber_by_email(&"zoe@example.org".parse().unwrap()).await.unwrap().unwrap();
            assert_eq!(zoe.name.as_deref(), Some("Zoe"));
            assert_eq!(zoe.email, "zoe@example.org");
        }
    }
}

#[cfg(test)]
mod choice_tests {
    use super::tests_support::import;
    use super::*;
    use crate::store::{NewSubscriber, Source};

    async fn add(store: &Store, addr: &str, status: Status, themes: Option<&str>) -> i64 {
        let new =
            NewSubscriber { email: addr.parse().unwrap(), name: None, status: Status::Active, source: Source::Cli };
        let id = match store.add(&new, false).await.unwrap() {
            crate::store::AddOutcome::Added(s) => s.id,
            other => panic!("{other:?}"),
        };
        store.set_status(id, status).await.unwrap();
        let choice = themes.map(|t| ThemeChoice::parse_list(t).unwrap().unwrap());
        store.set_themes(id, choice.as_ref()).await.unwrap();
        id
    }

    async fn stored(store: &Store, addr: &str) -> (Vec<String>, Option<i64>) {
        let s = store.subscriber_by_email(&addr.parse().unwrap()).await.unwrap().unwrap();
        (
            s.themes.map(|c| c.names().map(String::from).collect()).unwrap_or_default(),
            s.paused_until.map(|t| t.timestamp()),
        )
    }

    #[tokio::test]
    async fn themes_and_pauses_are_set_on_new_rows_and_on_rows_there_that_are_not_suppressed() {
        for store in crate::store::testing::stores().await {
            add(&store, "keep@example.org", Status::Active, Some("Energy")).await;
            add(&store, "pending@example.org", Status::Pending, None).await;
            add(&store, "gone@example.org", Status::Unsubscribed, None).await;
            let many: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
            let file = format!(
                "email,Themes,paused_until\n\
                 new@example.org,Open source; energy;,2030-01-01T00:00:00Z\n\
                 keep@example.org,,\n\
                 pending@example.org,Public health,2030-01-01T01:00:00+01:00\n\
                 gone@example.org,Energy,\n\
                 NEW@example.org,Other,\n\
                 bad@example.org,\"a\u{7}b\",\n\
                 late@example.org,,2030-13-01\n\
                 many@example.org,{},\n\
                 long@example.org,{},\n",
                many.join(";"),
                "x".repeat(201)
            );
            let (r, invalid) = import(&store, file.as_bytes()).await;
            let invalid: Vec<(u64, &str)> = invalid.iter().map(|i| (i.line, i.reason.as_str())).collect();
            assert_eq!(invalid.len(), 4, "{invalid:?}");
            for ((line, reason), (expected_line, column, why)) in invalid.iter().zip([
                (7, "`Themes`", "control character"),
                (8, "`paused_until`", "\"2030-13-01\" is not a time"),
                (9, "`Themes`", "at most 100"),
                (10, "`Themes`", "longer than 200 characters"),
            ]) {
                assert_eq!(*line, expected_line, "{reason}");
                assert!(reason.starts_with(&format!("in the {column} column: ")) && reason.contains(why), "{reason}");
            }
            assert_eq!(r.unwrap(), ImportReport { added: 1, updated: 2, unchanged: 1, skipped: 1, invalid: 4 });
            // The first row of an address gives its choices; a pause's offset is kept as its moment.
            assert_eq!(
                stored(&store, "new@example.org").await,
                (vec!["energy".into(), "Open source".into()], Some(1893456000))
            );
            // An empty cell is every theme again.
            assert_eq!(stored(&store, "keep@example.org").await, (vec![], None));
            assert_eq!(stored(&store, "pending@example.org").await, (vec!["Public health".into()], Some(1893456000)));
            // An unsubscribe sticks, and so do the choices of a suppressed reader.
            assert_eq!(stored(&store, "gone@example.org").await, (vec![], None));
            assert!(store.subscriber_by_email(&"bad@example.org".parse().unwrap()).await.unwrap().is_none());

            // The same file again changes nothing.
            let (again, _) = import(&store, file.as_bytes()).await;
            assert_eq!(again.unwrap(), ImportReport { added: 0, updated: 0, unchanged: 4, skipped: 1, invalid: 4 });
            // A file without the columns leaves every choice as it is.
            let (plain, _) = import(&store, b"email\npending@example.org\nnew@example.org\n").await;
            assert_eq!(plain.unwrap(), ImportReport { added: 0, updated: 0, unchanged: 2, skipped: 0, invalid: 0 });
            assert_eq!(stored(&store, "pending@example.org").await, (vec!["Public health".into()], Some(1893456000)));
            // A file with only `paused_until` changes the pause, not the themes.
            let (pause, _) = import(&store, b"email,paused_until\npending@example.org,\n").await;
            assert_eq!(pause.unwrap(), ImportReport { added: 0, updated: 1, unchanged: 0, skipped: 0, invalid: 0 });
            assert_eq!(stored(&store, "pending@example.org").await, (vec!["Public health".into()], None));
        }
    }

    #[tokio::test]
    async fn a_later_row_of_an_address_the_import_added_does_not_change_its_themes() {
        for store in crate::store::testing::stores().await {
            // One address sorted first, then 500 addresses twice with other themes each time: the
            // pair at rows 250 and 251 falls into two statements, so the second row finds the
            // first one's row already there.
            let mut file = String::from("email,themes\na000@example.org,\n");
            for i in 0..500 {
                file.push_str(&format!("r{i}@example.org,First\n"));
            }
            for i in 0..500 {
                file.push_str(&format!("R{i}@example.org,Second\n"));
            }
            let (r, invalid) = import(&store, file.as_bytes()).await;
            assert!(invalid.is_empty(), "{invalid:?}");
            assert_eq!(r.unwrap(), ImportReport { added: 501, updated: 0, unchanged: 500, skipped: 0, invalid: 0 });
            let mut after = 0;
            let mut seen = 0;
            loop {
                let page = store.list_page(None, after, 200).await.unwrap();
                let Some(last) = page.last() else { break };
                after = last.id;
                for s in page.iter().filter(|s| s.email.starts_with('r')) {
                    assert_eq!(s.themes.as_ref().map(|c| c.to_list()).as_deref(), Some("First"), "{}", s.email);
                    seen += 1;
                }
            }
            assert_eq!(seen, 500);
        }
    }
}
