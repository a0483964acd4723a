//! The subscriber store: every SQL statement of Gazette lives under this module, so that a second
//! backend (PostgreSQL) can be added behind the same functions. SQLite through sqlx, in WAL mode
//! with a busy timeout, so a running send and a subscriber command can use the database at once.
//! Migrations (`subscribers/migrations/`) are applied whenever the store is opened.

pub mod bounces;
mod confirmations;
mod import;
pub mod ledger;
pub mod publications;
mod subscribers;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqlitePool};

pub use confirmations::ConfirmOutcome;
pub use crate::token::{Purpose, TokenKey, bounce_token, sign_token, verify_bounce_token, verify_token};
pub use import::{ImportError, ImportReport, InvalidRow};
pub use subscribers::{clean_name, AddOutcome, InvalidEmail, NewSubscriber, RemoveOutcome, Source, Status, StatusParseError, Subscriber, SubscriberEmail};

/// The environment variable holding the token secret; without it, a random secret is kept in the database.
pub const SECRET_VAR: &str = "GAZETTE_SECRET";

/// How long a statement waits for another process's write to finish before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("subscribers/migrations");

/// Something went wrong below the level of the user's input: the database could not be opened,
/// migrated or queried, or the token secret is unusable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // Causes are in the message rather than `source`s, so `main`'s chain says them once.
    #[error("cannot open the subscriber database {path}: {cause}; check [paths] database in publish.toml")]
    Open { path: PathBuf, cause: Box<dyn std::error::Error + Send + Sync> },
    #[error("cannot bring the subscriber database {path} up to date: {cause}")]
    Migrate { path: PathBuf, cause: sqlx::migrate::MigrateError },
    #[error("subscriber database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{SECRET_VAR}: {0}")]
    Secret(String),
    #[error("subscriber database: {0}")]
    Corrupt(String),
}

/// The open database: a small pool of SQLite connections.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

impl Store {
    /// Opens the database at `path`, creating it (and its folder) when missing, and applies any
    /// migration not yet applied.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        // A 32 MiB page cache per connection (the default is 2 MiB) holds a 100,000-row import
        // transaction without spilling to the WAL mid-way.
        Store::open_with_cache(path, 32 * 1024, 4).await
    }

    /// As `open`, with one connection and a 4 MiB page cache: for `gazette send` and the scheduler,
    /// whose memory must stay flat however large the audience (under 64 MB for 1,000,000
    /// subscribers; with `open`'s four 32 MiB caches a send to 1,000,000 peaked at 111 MB). The
    /// send loop is the only user and runs its statements one after another, so one connection
    /// keeps its cache warm instead of each statement finding pages another connection changed.
    pub async fn open_for_sending(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(path, 4 * 1024, 1).await
    }

    /// `cache_kib`: SQLite's page cache per connection, in KiB.
    async fn open_with_cache(path: &Path, cache_kib: u32, connections: u32) -> Result<Store, StoreError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open { path: path.to_path_buf(), cause: e };
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
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .connect_with(options)
            .await
            .map_err(|e| open_err(Box::new(e)))?;
        let store = Store { pool, path: path.to_path_buf() };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations inside one `BEGIN IMMEDIATE` transaction: two processes opening a
    /// fresh database at once then take turns (the busy timeout) instead of both creating tables.
    async fn migrate(&self) -> Result<(), StoreError> {
        let migrate_err = |e: sqlx::migrate::MigrateError| StoreError::Migrate { path: self.path.clone(), cause: e };
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        MIGRATOR.run(&mut *tx).await.map_err(migrate_err)?;
        tx.commit().await?;
        Ok(())
    }

    /// The connection pool, for sibling modules of `store` that keep their own tables.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A small named value the application keeps for itself (such as the scheduler's last round).
    pub async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM settings WHERE name = ?1").bind(name).fetch_optional(&self.pool).await?)
    }

    pub async fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies the write-ahead log into the database and empties it, then waits for every
    /// connection to close: a command leaves no large `-wal` file behind it.
    pub async fn close(self) {
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await {
            tracing::debug!("checkpointing {}: {e}", self.path.display());
        }
        self.pool.close().await;
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
                let v = v.into_string().map_err(|_| StoreError::Secret("is not valid UTF-8".into()))?;
                TokenKey::new(v.into_bytes()).map_err(StoreError::Secret)
            }
            None => self.stored_token_key().await,
        }
    }

    async fn stored_token_key(&self) -> Result<TokenKey, StoreError> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        // Whoever inserts first wins; everyone then reads the same secret.
        sqlx::query("INSERT INTO settings (name, value) VALUES ('token_secret', ?) ON CONFLICT (name) DO NOTHING")
            .bind(fresh)
            .execute(&self.pool)
            .await?;
        let stored: String = sqlx::query_scalar("SELECT value FROM settings WHERE name = 'token_secret'")
            .fetch_one(&self.pool)
            .await?;
        let bytes = hex::decode(&stored)
            .map_err(|_| StoreError::Corrupt("the stored token secret (settings.token_secret) is not hex".into()))?;
        TokenKey::new(bytes).map_err(|e| StoreError::Corrupt(format!("the stored token secret: {e}")))
    }
}

/// Now, as the store writes timestamps: whole seconds since 1970 (UTC), which sqlx reads back as
/// `DateTime<Utc>` (in the sqlite3 shell: `datetime(created_at, 'unixepoch')`).
fn now() -> i64 {
    chrono::Utc::now().timestamp()
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
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name")
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert_eq!(tables, ["bounce_events", "confirmations", "deliveries", "publications", "send_leases", "sends", "settings", "subscribers"]);
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(store.pool()).await.unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(store.pool()).await.unwrap();
        assert_eq!(fk, 1);
        let page: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(store.pool()).await.unwrap();
        assert_eq!(page, 16384);
        let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(store.pool()).await.unwrap();
        assert_eq!(timeout, 10_000);
        store.close().await;
        // A second open finds everything applied.
        let again = Store::open(&path).await.unwrap();
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(again.pool()).await.unwrap();
        assert_eq!(applied as usize, MIGRATOR.iter().count());
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
        assert_eq!(env, TokenKey::new(b"an operator-chosen secret".to_vec()).unwrap());
        assert_eq!(verify_token(&env, &t, Purpose::Confirm), None);
        let err = reopened.token_key_from(Some("short".into())).await.unwrap_err().to_string();
        assert!(err.starts_with("GAZETTE_SECRET: the secret is 5 bytes long"), "{err}");
    }
}
