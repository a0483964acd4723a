//! The subscriber store: every SQL statement of Gazette lives under this module. Two backends sit
//! behind the same functions: SQLite through sqlx (the default: one file, WAL mode with a busy
//! timeout, so a running send and a subscriber command can use the database at once), and
//! PostgreSQL, for a list that outgrows one machine: several senders and schedulers on several hosts
//! share one database. Each statement is written once and runs on both (`with_pool!`); where the
//! two dialects differ, `Backend` says how. Migrations (`subscribers/migrations/<backend>/`) are
//! applied whenever the store is opened.
//!
//! One shape of API: the rest of Gazette calls methods of `Store`, or of the handles it returns for
//! the delivery ledger (`Store::ledger`) and the publication record (`Store::publications`); the
//! pool itself never leaves this module.

/// Runs `$body` once per backend, with `$p` bound to that backend's pool: one text, type-checked
/// and compiled for each. `with_pool!(store.pool(), p => sqlx::query("…").execute(p).await)`.
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::store::Pool::Sqlite($p) => $body,
            $crate::store::Pool::Postgres($p) => $body,
        }
    };
}

/// Gives a field-less enum its text form (`as_str`) and makes it a TEXT value on both backends
/// (sqlx's derive would make it a PostgreSQL enum type of its own).
macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }
        impl<DB: sqlx::Database> sqlx::Type<DB> for $ty where str: sqlx::Type<DB> {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }
        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $ty where &'static str: sqlx::Encode<'q, DB> {
            fn encode_by_ref(&self, buf: &mut DB::ArgumentBuffer) -> std::result::Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                self.as_str().encode_by_ref(buf)
            }
        }
        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $ty where &'r str: sqlx::Decode<'r, DB> {
            fn decode(value: DB::ValueRef<'r>) -> std::result::Result<Self, sqlx::error::BoxDynError> {
                match <&str as sqlx::Decode<DB>>::decode(value)? {
                    $($text => Ok($ty::$variant),)+
                    other => Err(format!("unknown {} `{other}`", stringify!($ty)).into()),
                }
            }
        }
    };
}

/// Where a delivery is (the `deliveries.state` column; the diagram in `ledger`). Queries bind
/// these rather than spelling the states out. Here rather than in `ledger`, as the store's
/// vocabulary: the bounce policy reads the ledger's states too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Sending,
    Sent,
    Failed,
    Bounced,
    Skipped,
}

text_enum!(DeliveryState { Pending => "pending", Sending => "sending", Sent => "sent", Failed => "failed", Bounced => "bounced", Skipped => "skipped" });

/// `subscribers.status_reason` for a failure: the reason's name, then the server's words
/// (`userunknown: 550 5.1.1 <x@y>: user unknown`); the words alone without a reason.
pub fn status_reason(reason: Option<crate::bounces::reason::Reason>, words: &str) -> String {
    match reason {
        Some(r) => format!("{r}: {words}"),
        None => words.to_string(),
    }
}

/// The reason a `status_reason` starts with, if it names one (older rows and complaints do not).
pub fn reason_in(status_reason: &str) -> Option<crate::bounces::reason::Reason> {
    crate::bounces::reason::Reason::parse(status_reason.split_once(": ")?.0)
}

mod address_changes;
pub mod bounces;
mod confirmations;
pub mod copy;
pub mod dmarc;
pub mod holds;
mod import;
pub mod journal;
pub mod ledger;
pub mod publications;
mod subscribers;
pub mod unreadable;
pub mod welcomes;

use std::sync::LazyLock;
use std::time::Duration;

use sqlx::migrate::Migrator;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqlitePool};

pub use crate::config::Database;
pub use crate::token::{
    Purpose, TokenKey, address_token, bounce_token, sign_token, verify_address_token, verify_bounce_token, verify_token,
};
pub use address_changes::{AddressChange, AddressChangeOutcome, AddressChangeRequest};
pub use confirmations::ConfirmOutcome;
pub use import::{ImportError, ImportReport, InvalidRow};
pub use subscribers::{
    AddOutcome, InvalidEmail, NewSubscriber, RemoveOutcome, Source, Status, StatusParseError, Subscriber,
    SubscriberEmail, clean_name,
};

/// The environment variable holding the token secret; without it, a random secret is kept in the database.
pub const SECRET_VAR: &str = "GAZETTE_SECRET";

/// The environment variable holding the PostgreSQL password (otherwise `~/.pgpass` or `PGPASSFILE`).
pub const DATABASE_PASSWORD_VAR: &str = "GAZETTE_DATABASE_PASSWORD";

/// How long a statement waits for another process's write to finish before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The migrations of each backend (`subscribers/migrations/<backend>/`), compiled in. Listed here
/// rather than found by sqlx's `migrate!`: that macro's crate would compile SQLite's C and both
/// drivers a second time, for the compiler (issue 16, the clean build). A test checks that the
/// lists and the folders agree.
static SQLITE_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| {
    migrator(&[
        ("0001_subscribers.sql", include_str!("../../subscribers/migrations/sqlite/0001_subscribers.sql")),
        ("0002_deliveries.sql", include_str!("../../subscribers/migrations/sqlite/0002_deliveries.sql")),
        ("0003_confirmations.sql", include_str!("../../subscribers/migrations/sqlite/0003_confirmations.sql")),
        ("0004_publications.sql", include_str!("../../subscribers/migrations/sqlite/0004_publications.sql")),
        ("0005_bounces.sql", include_str!("../../subscribers/migrations/sqlite/0005_bounces.sql")),
        ("0006_unreadable.sql", include_str!("../../subscribers/migrations/sqlite/0006_unreadable.sql")),
        ("0007_refusals.sql", include_str!("../../subscribers/migrations/sqlite/0007_refusals.sql")),
        ("0008_skips.sql", include_str!("../../subscribers/migrations/sqlite/0008_skips.sql")),
        ("0009_dmarc.sql", include_str!("../../subscribers/migrations/sqlite/0009_dmarc.sql")),
        ("0010_holds.sql", include_str!("../../subscribers/migrations/sqlite/0010_holds.sql")),
        ("0011_themes.sql", include_str!("../../subscribers/migrations/sqlite/0011_themes.sql")),
        ("0012_address_changes.sql", include_str!("../../subscribers/migrations/sqlite/0012_address_changes.sql")),
        ("0013_welcomes.sql", include_str!("../../subscribers/migrations/sqlite/0013_welcomes.sql")),
    ])
});
static POSTGRES_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| {
    migrator(&[
        ("0001_store.sql", include_str!("../../subscribers/migrations/postgres/0001_store.sql")),
        ("0002_unreadable.sql", include_str!("../../subscribers/migrations/postgres/0002_unreadable.sql")),
        ("0003_refusals.sql", include_str!("../../subscribers/migrations/postgres/0003_refusals.sql")),
        ("0004_skips.sql", include_str!("../../subscribers/migrations/postgres/0004_skips.sql")),
        ("0005_dmarc.sql", include_str!("../../subscribers/migrations/postgres/0005_dmarc.sql")),
        ("0006_holds.sql", include_str!("../../subscribers/migrations/postgres/0006_holds.sql")),
        ("0007_themes.sql", include_str!("../../subscribers/migrations/postgres/0007_themes.sql")),
        ("0008_address_changes.sql", include_str!("../../subscribers/migrations/postgres/0008_address_changes.sql")),
        ("0009_welcomes.sql", include_str!("../../subscribers/migrations/postgres/0009_welcomes.sql")),
    ])
});

/// A migrator of `(file name, SQL)` pairs, read as sqlx reads a folder: `<version>_<description>.sql`,
/// the checksum over the SQL as it is (so databases migrated by earlier versions agree).
fn migrator(files: &[(&str, &'static str)]) -> Migrator {
    let migrations = files
        .iter()
        .map(|(name, sql)| {
            let (version, description) = name
                .trim_end_matches(".sql")
                .split_once('_')
                .expect("migration files are named <version>_<description>.sql");
            sqlx::migrate::Migration::new(
                version.parse().expect("a migration's version is a number"),
                description.replace('_', " ").into(),
                sqlx::migrate::MigrationType::Simple,
                sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(*sql)),
                sql.starts_with("-- no-transaction"),
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// The key of the PostgreSQL advisory lock that `Backend::begin_write` takes: write transactions
/// that must not interleave (numbering issues, fixing a send's audience) take turns on it, as
/// SQLite's `BEGIN IMMEDIATE` makes every writer do. ("gazette" in ASCII.)
const WRITE_LOCK: i64 = 0x67_617a_6574_7465;

/// An open pool of either backend.
#[derive(Debug, Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Pool::Postgres(_))
    }

    /// The SQLite pool, for tests that look at the file's tables directly.
    #[cfg(test)]
    pub fn sqlite(&self) -> &SqlitePool {
        match self {
            Pool::Sqlite(p) => p,
            Pool::Postgres(_) => panic!("a SQLite store was expected"),
        }
    }
}

/// What differs between the backends, for statements written once (`with_pool!`).
pub(crate) trait Backend {
    type Db: sqlx::Database;
    /// A transaction that holds the write lock from its first statement, so that a read in it stays
    /// true until it commits: SQLite's `BEGIN IMMEDIATE`; on PostgreSQL, a transaction-scoped
    /// advisory lock shared by every such transaction.
    fn begin_write(&self) -> impl Future<Output = sqlx::Result<sqlx::Transaction<'static, Self::Db>>> + Send;
    /// SQL for 16 random hex digits, drawn per row.
    fn random_hex16(&self) -> &'static str;
}

impl Backend for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
    fn random_hex16(&self) -> &'static str {
        "lower(hex(randomblob(8)))"
    }
}

impl Backend for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITE_LOCK).execute(&mut *tx).await?;
        Ok(tx)
    }
    // gen_random_uuid() is built in since PostgreSQL 13 and draws from a strong source; md5 mixes
    // its 122 random bits into 64.
    fn random_hex16(&self) -> &'static str {
        "left(md5(gen_random_uuid()::text), 16)"
    }
}

/// Something went wrong below the level of the user's input: the database could not be opened,
/// migrated or queried, or the token secret is unusable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // Causes are in the message rather than `source`s, so `main`'s chain says them once.
    #[error("cannot open the subscriber database {path}: {cause}; check {}", what_to_check(path))]
    Open { path: Box<Database>, cause: Box<dyn std::error::Error + Send + Sync> },
    #[error("cannot bring the subscriber database {path} up to date: {cause}")]
    Migrate { path: Box<Database>, cause: sqlx::migrate::MigrateError },
    #[error("subscriber database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{SECRET_VAR}: is not valid UTF-8")]
    SecretNotText,
    #[error("{SECRET_VAR}: {0}")]
    Secret(crate::token::ShortSecret),
    #[error("subscriber database: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Refused(String),
}

/// Where the fix for a database that does not open is.
fn what_to_check(location: &Database) -> &'static str {
    match location {
        Database::Sqlite(_) => "[paths] database in publish.toml",
        Database::Postgres(_) => {
            "[paths] database in publish.toml, and the password in GAZETTE_DATABASE_PASSWORD or ~/.pgpass"
        }
    }
}

/// The open database: a small pool of connections to either backend.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    location: Database,
}

impl Store {
    /// Opens the database, creating a SQLite file (and its folder) when missing, and applies any
    /// migration not yet applied.
    pub async fn open(location: impl Into<Database>) -> Result<Store, StoreError> {
        // A 32 MiB page cache per connection (the default is 2 MiB) holds a 100,000-row import
        // transaction without spilling to the WAL mid-way.
        Store::open_with_cache(&location.into(), 32 * 1024, 4, std::env::var_os(DATABASE_PASSWORD_VAR), true).await
    }

    /// As `open`, with one connection and a 4 MiB page cache: for `gazette send` and the scheduler,
    /// whose memory must stay flat however large the audience (under 64 MB for 1,000,000
    /// subscribers; with `open`'s four 32 MiB caches a send to 1,000,000 peaked at 111 MB). The
    /// send loop is the only user and runs its statements one after another, so one connection
    /// keeps its cache warm instead of each statement finding pages another connection changed.
    ///
    /// On PostgreSQL its sessions commit with `synchronous_commit = off`, the counterpart of
    /// SQLite's `synchronous = NORMAL` here: a commit survives the death of Gazette's process at
    /// once (it is in the server's memory), and the server's own crash only if it came 200 ms or
    /// more before it. What such a crash loses is outcomes, never subscribers: those messages are
    /// sent again, with the same Message-ID, as after a kill -9 of the sender. Every outcome then
    /// costs a round trip instead of a flush of the server's log.
    pub async fn open_for_sending(location: impl Into<Database>) -> Result<Store, StoreError> {
        Store::open_with_cache(&location.into(), 4 * 1024, 1, std::env::var_os(DATABASE_PASSWORD_VAR), false).await
    }

    /// `cache_kib`: SQLite's page cache per connection, in KiB; `password`: PostgreSQL's
    /// (`GAZETTE_DATABASE_PASSWORD`), when not left to `.pgpass`; `flush_commits`: PostgreSQL's
    /// `synchronous_commit` (see `open_for_sending`).
    async fn open_with_cache(
        location: &Database,
        cache_kib: u32,
        connections: u32,
        password: Option<std::ffi::OsString>,
        flush_commits: bool,
    ) -> Result<Store, StoreError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: Box::new(location.clone()),
            cause: e,
        };
        let pool = match location {
            Database::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| open_err(Box::new(e)))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(BUSY_TIMEOUT)
                    .foreign_keys(true)
                    // 16 KiB pages (for a new database; an existing one keeps its own): a million-row import
                    // took a seventh less CPU than with 4 KiB. Temporary data stays in memory.
                    .pragma("page_size", "16384")
                    .pragma("cache_size", format!("-{cache_kib}"))
                    .pragma("temp_store", "memory");
                let pool = SqlitePoolOptions::new().max_connections(connections).connect_with(options).await;
                Pool::Sqlite(pool.map_err(|e| open_err(Box::new(e)))?)
            }
            Database::Postgres(url) => {
                let mut options: PgConnectOptions =
                    url.as_str().parse().map_err(|e: sqlx::Error| open_err(Box::new(e)))?;
                if let Some(password) = password {
                    let password = password
                        .into_string()
                        .map_err(|_| open_err(format!("{DATABASE_PASSWORD_VAR} is not valid UTF-8").into()))?;
                    options = options.password(&password);
                }
                options = options.application_name("gazette");
                if !flush_commits {
                    options = options.options([("synchronous_commit", "off")]);
                }
                // One connection first, alone: the pool would retry a refused connection or a wrong
                // password until its timeout, then say only that it timed out.
                let first = sqlx::PgConnection::connect_with(&options).await.map_err(|e| open_err(Box::new(e)))?;
                first.close().await.map_err(|e| open_err(Box::new(e)))?;
                // A sender's claim and record statements, the renewal of its lease, and whatever the
                // command reads besides: two connections at least.
                let pool = PgPoolOptions::new()
                    .max_connections(connections.max(2))
                    .acquire_timeout(BUSY_TIMEOUT)
                    .connect_with(options)
                    .await;
                Pool::Postgres(pool.map_err(|e| open_err(Box::new(e)))?)
            }
        };
        let store = Store { pool, location: location.clone() };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations inside one write transaction: two processes opening a fresh
    /// database at once then take turns instead of both creating tables.
    async fn migrate(&self) -> Result<(), StoreError> {
        let migrate_err =
            |e: sqlx::migrate::MigrateError| StoreError::Migrate { path: Box::new(self.location.clone()), cause: e };
        match &self.pool {
            Pool::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                SQLITE_MIGRATIONS.run(&mut *tx).await.map_err(migrate_err)?;
                tx.commit().await?;
            }
            // sqlx takes an advisory lock of its own around PostgreSQL migrations.
            Pool::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await.map_err(migrate_err)?,
        }
        Ok(())
    }

    /// The connection pool, for the store's own modules (private: everything else asks the
    /// store, or the handles it returns, such as `ledger()`).
    fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The SQLite pool, for tests that look at the file's tables directly.
    #[cfg(test)]
    pub fn sqlite(&self) -> &SqlitePool {
        self.pool.sqlite()
    }

    /// A small named value the application keeps for itself (such as the scheduler's last round).
    pub async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            with_pool!(&self.pool, p => sqlx::query_scalar("SELECT value FROM settings WHERE name = $1").bind(name).fetch_optional(p).await?),
        )
    }

    pub async fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        with_pool!(&self.pool, p => {
            sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
                .bind(name)
                .bind(value)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(())
    }

    /// One round trip to the database (the health check).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(&self.pool, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Where the database is: a file, or a server's URL (without a password).
    pub fn location(&self) -> &Database {
        &self.location
    }

    /// Waits for every connection to close. On SQLite it first copies the write-ahead log into the
    /// database and empties it: a command leaves no large `-wal` file behind it.
    pub async fn close(self) {
        match &self.pool {
            Pool::Sqlite(pool) => {
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await {
                    tracing::debug!("checkpointing {}: {e}", self.location);
                }
                pool.close().await;
            }
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    /// The key tokens are signed with: `GAZETTE_SECRET` when set, otherwise a random secret
    /// generated into the database on first use (so links keep working across runs).
    pub async fn token_key(&self) -> Result<TokenKey, StoreError> {
        self.token_key_from(std::env::var_os(SECRET_VAR)).await
    }

    /// `token_key` with the environment variable's value passed in (for tests).
    async fn token_key_from(&self, secret: Option<std::ffi::OsString>) -> Result<TokenKey, StoreError> {
        match secret {
            Some(v) => {
                let v = v.into_string().map_err(|_| StoreError::SecretNotText)?;
                TokenKey::from_secret(v.into_bytes()).map_err(StoreError::Secret)
            }
            None => self.stored_token_key().await,
        }
    }

    async fn stored_token_key(&self) -> Result<TokenKey, StoreError> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        // Whoever inserts first wins; everyone then reads the same secret.
        let stored: String = with_pool!(&self.pool, p => {
            sqlx::query("INSERT INTO settings (name, value) VALUES ('token_secret', $1) ON CONFLICT (name) DO NOTHING")
                .bind(fresh)
                .execute(p)
                .await?;
            sqlx::query_scalar("SELECT value FROM settings WHERE name = 'token_secret'").fetch_one(p).await?
        });
        let bytes = hex::decode(&stored)
            .map_err(|_| StoreError::Corrupt("the stored token secret (settings.token_secret) is not hex".into()))?;
        TokenKey::from_secret(bytes).map_err(|e| StoreError::Corrupt(format!("the stored token secret: {e}")))
    }
}

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` values each: the VALUES of a multi-row insert.
fn values_list(rows: usize, columns: usize) -> String {
    let row = |r: usize| {
        format!("({})", (1..=columns).map(|c| format!("${}", r * columns + c)).collect::<Vec<_>>().join(", "))
    };
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}

/// Now, as the store writes timestamps: whole seconds since 1970 (UTC), which sqlx reads back as
/// `DateTime<Utc>` (in the sqlite3 shell: `datetime(created_at, 'unixepoch')`).
fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The PostgreSQL cluster of the tests (one file for unit and integration tests).
#[cfg(test)]
#[path = "../../tests/common/postgres.rs"]
mod cluster;

/// For the store's unit tests: the same test against each backend.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Database, Store, cluster};

    /// An open test store, with the folder of its SQLite file.
    pub struct TestStore {
        pub store: Store,
        _dir: Option<tempfile::TempDir>,
    }

    impl std::ops::Deref for TestStore {
        type Target = Store;
        fn deref(&self) -> &Store {
            &self.store
        }
    }

    /// A fresh SQLite store and, when PostgreSQL is installed (always under CI), a fresh database of
    /// the test process's PostgreSQL cluster.
    pub async fn stores() -> Vec<TestStore> {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Store::open(&dir.path().join("t.db")).await.unwrap();
        let mut stores = vec![TestStore { store: sqlite, _dir: Some(dir) }];
        if cluster::available() {
            let url = tokio::task::spawn_blocking(|| cluster::Cluster::shared().fresh_database()).await.unwrap();
            let url = Database::Postgres(url.parse().unwrap());
            let store = Store::open_with_cache(&url, 1024, 4, Some(cluster::PASSWORD.into()), true).await.unwrap();
            stores.push(TestStore { store, _dir: None });
        }
        stores
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_creates_the_folder_and_migrates_from_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/folder/gazette.db");
        let store = Store::open(&path).await.unwrap();
        assert!(path.exists());
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name",
        )
        .fetch_all(store.pool().sqlite())
        .await
        .unwrap();
        assert_eq!(
            tables,
            [
                "address_changes",
                "bounce_events",
                "confirmations",
                "deliveries",
                "dmarc_reports",
                "dmarc_rows",
                "hold_lifts",
                "publications",
                "refusals",
                "send_leases",
                "sends",
                "settings",
                "subscribers",
                "unreadable_messages",
                "welcomes"
            ]
        );
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(store.pool().sqlite()).await.unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(store.pool().sqlite()).await.unwrap();
        assert_eq!(fk, 1);
        let page: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(store.pool().sqlite()).await.unwrap();
        assert_eq!(page, 16384);
        let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(store.pool().sqlite()).await.unwrap();
        assert_eq!(timeout, 10_000);
        store.close().await;
        // A second open finds everything applied.
        let again = Store::open(&path).await.unwrap();
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(again.pool().sqlite()).await.unwrap();
        assert_eq!(applied as usize, SQLITE_MIGRATIONS.iter().count());
    }

    /// `.cargo/config.toml` builds SQLite without the extensions the store never uses (a shorter
    /// clean build); this fails if that setting stops reaching the C compile, and if something the
    /// store needs goes with them.
    #[tokio::test]
    async fn sqlite_is_built_without_the_unused_extensions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("gazette.db")).await.unwrap();
        let options: Vec<String> =
            sqlx::query_scalar("PRAGMA compile_options").fetch_all(store.pool().sqlite()).await.unwrap();
        for gone in ["ENABLE_FTS3", "ENABLE_FTS5", "ENABLE_RTREE", "ENABLE_DBSTAT_VTAB", "SOUNDEX"] {
            assert!(!options.iter().any(|o| o == gone), "{gone} is still compiled in: {options:?}");
        }
        for kept in ["ENABLE_COLUMN_METADATA", "DEFAULT_FOREIGN_KEYS", "THREADSAFE=1"] {
            assert!(options.iter().any(|o| o == kept), "{kept} is missing: {options:?}");
        }
        let json: String = sqlx::query_scalar("SELECT json_extract('{\"a\":[1,2]}', '$.a')")
            .fetch_one(store.pool().sqlite())
            .await
            .unwrap();
        assert_eq!(json, "[1,2]");
        store.close().await;
    }

    #[test]
    fn the_compiled_in_migrations_are_the_folders_files_with_sqlxs_checksums() {
        for (backend, migrator) in [("sqlite", &*SQLITE_MIGRATIONS), ("postgres", &*POSTGRES_MIGRATIONS)] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("subscribers/migrations").join(backend);
            let mut files: Vec<String> =
                std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            files.sort();
            let listed: Vec<String> =
                migrator.iter().map(|m| format!("{:04}_{}.sql", m.version, m.description.replace(' ', "_"))).collect();
            assert_eq!(listed, files, "list every file of {} in store/mod.rs", dir.display());
            for m in migrator.iter() {
                let sql = std::fs::read_to_string(dir.join(format!(
                    "{:04}_{}.sql",
                    m.version,
                    m.description.replace(' ', "_")
                )))
                .unwrap();
                assert_eq!(m.sql.as_str(), sql);
                // What sqlx's migrate! would have recorded: SHA-384 of the file as it is.
                use sha2::Digest;
                assert_eq!(&*m.checksum, sha2::Sha384::digest(sql.as_bytes()).as_slice());
            }
        }
    }

    #[tokio::test]
    async fn settings_and_the_generated_secret_are_kept_on_either_backend() {
        for store in testing::stores().await {
            assert_eq!(store.setting("last_round").await.unwrap(), None);
            store.set_setting("last_round", "one").await.unwrap();
            store.set_setting("last_round", "two").await.unwrap();
            assert_eq!(store.setting("last_round").await.unwrap().as_deref(), Some("two"));
            let key = store.token_key_from(None).await.unwrap();
            assert_eq!(store.token_key_from(None).await.unwrap(), key);
            store.ping().await.unwrap();
        }
    }

    #[tokio::test]
    async fn the_generated_secret_is_kept_and_gazette_secret_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gazette.db");
        let store = Store::open(&path).await.unwrap();
        let a = store.token_key_from(None).await.unwrap();
        let b = store.token_key_from(None).await.unwrap();
        assert_eq!(a, b);
        let t = sign_token(&a, 3, Purpose::Confirm);
        store.close().await;
        let reopened = Store::open(&path).await.unwrap();
        let c = reopened.token_key_from(None).await.unwrap();
        assert_eq!(verify_token(&c, &t, Purpose::Confirm), Some(3));
        // Another database generates another secret.
        let other = Store::open(&dir.path().join("other.db")).await.unwrap();
        assert_eq!(verify_token(&other.token_key_from(None).await.unwrap(), &t, Purpose::Confirm), None);
        // GAZETTE_SECRET wins over the stored secret, and must be long enough.
        let env = reopened.token_key_from(Some("an operator-chosen secret".into())).await.unwrap();
        assert_eq!(env, TokenKey::from_secret(b"an operator-chosen secret".to_vec()).unwrap());
        assert_eq!(verify_token(&env, &t, Purpose::Confirm), None);
        let err = reopened.token_key_from(Some("short".into())).await.unwrap_err().to_string();
        assert!(err.starts_with("GAZETTE_SECRET: the secret is 5 bytes long"), "{err}");
    }
}
