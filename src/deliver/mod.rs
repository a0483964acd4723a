//! Delivery: an issue's prepared email to every subscriber in its ledger, exactly once each.
//!
//! The send loop claims small batches of deliveries (marking them `sending` before any SMTP
//! transaction starts), hands them to one worker per connection, and records outcomes in batched
//! commits. A crash leaves at most the in-flight window plus one unrecorded batch uncertain; the
//! next run puts those back to pending and resends them with the same Message-ID.

pub mod message;
pub mod smtp;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use lettre::message::Mailbox;
use tokio::sync::{Mutex, mpsc};

use crate::config::{Config, SmtpTarget};
use crate::store::ledger::{self, Claimed, Counts, Outcome};
use crate::store::{Purpose, Store, SubscriberEmail, TokenKey, sign_token};
pub use message::{PreparedEmail, Recipient};
use smtp::{Attempt, ServerSpec, SmtpSession};

/// After a stop, how long messages in flight may take before their connections are dropped
/// (their deliveries go back to pending): a stop takes effect within a few seconds, whatever
/// the server does.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Deliveries recorded per commit (at most this many can be resent after a crash, plus those in flight).
const RECORD_BATCH: usize = 200;
const RECORD_EVERY: Duration = Duration::from_millis(250);
const LEASE_TTL: i64 = 60;
/// Retries of a deferred message within one run, and the waits before them.
const RETRY_WAITS: [i64; 2] = [1, 3];
/// A deferred message not due within this long is left for the next run.
const RETRY_HORIZON: i64 = 30;
/// After the waits above, a deferred message waits this long: in practice, for the next run.
const LATER: i64 = 600;

/// Where messages go.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Each message as a `.eml` file in this folder.
    Outbox(PathBuf),
    Smtp(ServerSpec),
}

impl Transport {
    pub fn from_config(config: &Config) -> anyhow::Result<Transport> {
        Ok(match &config.smtp.target {
            SmtpTarget::Outbox(dir) => Transport::Outbox(dir.clone()),
            SmtpTarget::Server { host, port, tls } => {
                let credentials = match &config.smtp.username {
                    Some(user) => {
                        let password = std::env::var("GAZETTE_SMTP_PASSWORD").map_err(|_| {
                            crate::config::ConfigError(format!(
                                "[smtp] username is `{user}` but GAZETTE_SMTP_PASSWORD is not set; export the password in that variable"
                            ))
                        })?;
                        Some((user.clone(), password))
                    }
                    None => None,
                };
                Transport::Smtp(ServerSpec {
                    host: host.clone(),
                    port: *port,
                    tls: tls.clone(),
                    credentials,
                    hello: config.email.from.email.domain().to_string(),
                    timeout: config.smtp.timeout,
                })
            }
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Transport::Outbox(dir) => format!("the outbox folder {}", dir.display()),
            Transport::Smtp(s) => format!("smtp://{}:{}", s.host, s.port),
        }
    }
}

/// How a send ended.
#[derive(Debug)]
pub struct SendReport {
    pub issue_id: String,
    /// False when the send had already started before this run (this run resumed it).
    pub started_now: bool,
    /// Deliveries found `sending` (a crashed run's) and put back to pending.
    pub requeued: u64,
    pub sent_now: u64,
    pub counts: Counts,
    pub interrupted: bool,
}

/// Stops a send between messages, or the scheduler's sleep (SIGINT/SIGTERM, or a test).
#[derive(Clone, Default)]
pub struct StopFlag(tokio_util::sync::CancellationToken);

impl StopFlag {
    pub fn stop(&self) {
        self.0.cancel();
    }
    pub fn is_stopped(&self) -> bool {
        self.0.is_cancelled()
    }
    /// Completes once `stop` has been called.
    pub async fn stopped(&self) {
        self.0.cancelled().await
    }
    /// Sets the flag on the first SIGINT or SIGTERM.
    pub fn on_signals(&self) {
        let flag = self.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::warn!("stopping: finishing the messages in flight, then recording them");
            flag.stop();
        });
    }
}

fn clock() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The one-click unsubscribe URL of a subscriber.
pub fn unsubscribe_url(config: &Config, key: &TokenKey, subscriber_id: i64) -> String {
    crate::urls::unsubscribe(&config.site, &sign_token(key, subscriber_id, Purpose::Unsubscribe))
}

fn mailbox(email: &str, name: Option<&str>) -> anyhow::Result<Mailbox> {
    let address: lettre::Address = email.parse().with_context(|| format!("stored address `{email}` is not valid"))?;
    Ok(Mailbox::new(name.map(str::to_owned), address))
}

/// A unique id for this sender, for the lease.
fn holder_id() -> String {
    let host = hostname_or_local();
    format!("{host}:{}:{:x}", std::process::id(), rand::random::<u64>())
}

/// True when a lease holder named by `holder_id` ran on this machine and its process is gone
/// (killed, crashed): its lease need not be waited out.
fn holder_is_dead(holder: &str) -> bool {
    let mut parts = holder.split(':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next().and_then(|p| p.parse::<u32>().ok())) else { return false };
    host == hostname_or_local() && pid != std::process::id() && !gazette_is_running(pid)
}

/// Whether `pid` is a live (not zombie) process of this program, per /proc. A pid reused by
/// another program counts as gone.
fn gazette_is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let me = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    !matches!(state, Some('Z' | 'X') | None) && comm == me
}

fn hostname_or_local() -> String {
    std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

/// Sends `issue_id` to its audience (fixed now if this is the first run), resuming where an earlier
/// run stopped. Refuses when another sender holds the issue's lease.
pub async fn send_issue(
    store: &Store,
    config: &Config,
    issue_id: &str,
    number: u32,
    email: Arc<PreparedEmail>,
    transport: &Transport,
    stop: &StopFlag,
) -> anyhow::Result<SendReport> {
    let pool = store.pool();
    let holder = holder_id();
    let now = clock();
    if !ledger::acquire_lease(pool, issue_id, &holder, now, now + LEASE_TTL).await? {
        let (who, until) = ledger::lease_holder(pool, issue_id).await?.unwrap_or_default();
        if !(holder_is_dead(&who) && ledger::take_over_lease(pool, issue_id, &who, &holder, now + LEASE_TTL).await?) {
            anyhow::bail!(
                "issue {issue_id} is being sent by another process ({who}); its lease runs until {}. \
                 If that process is gone, run the send again after that time and it will resume.",
                chrono::DateTime::from_timestamp(until, 0).map(|t| t.to_rfc3339()).unwrap_or_default()
            );
        }
        tracing::warn!("the sender that held issue {issue_id} ({who}) is gone; taking over its send");
    }
    let result = send_with_lease(store, config, issue_id, number, email, transport, stop, &holder).await;
    let _ = ledger::release_lease(pool, issue_id, &holder).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn send_with_lease(
    store: &Store,
    config: &Config,
    issue_id: &str,
    number: u32,
    email: Arc<PreparedEmail>,
    transport: &Transport,
    stop: &StopFlag,
    holder: &str,
) -> anyhow::Result<SendReport> {
    let pool = store.pool();
    let domain = config.email.from.email.domain().to_string();
    let nonce = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    let started_now = ledger::start_send(pool, issue_id, number, email.subject(), &domain, &nonce, clock()).await?;
    let requeued = ledger::requeue_in_flight(pool, issue_id, clock()).await?;
    if requeued > 0 {
        tracing::warn!("{requeued} deliveries of issue {issue_id} were in flight when an earlier run stopped; sending them again with the same Message-ID");
    }
    let before = ledger::counts(pool, issue_id).await?;
    if before.is_finished() {
        ledger::finish_if_done(pool, issue_id, clock()).await?;
        return Ok(SendReport { issue_id: issue_id.into(), started_now, requeued, sent_now: 0, counts: before, interrupted: false });
    }

    let key = Arc::new(store.token_key().await?);
    let concurrency = config.smtp.concurrency as usize;
    let window = (concurrency * 4).max(8);
    let (jobs_tx, jobs_rx) = mpsc::channel::<Claimed>(window);
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let (results_tx, mut results_rx) = mpsc::unbounded_channel::<WorkerEvent>();
    let limiter = Arc::new(RateLimiter::new(config.smtp.rate_per_second));
    let worker_stop = StopFlag::default();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let ctx = WorkerContext {
            jobs: jobs_rx.clone(),
            results: results_tx.clone(),
            email: email.clone(),
            transport: transport.clone(),
            key: key.clone(),
            config: Arc::new(config.clone()),
            limiter: limiter.clone(),
            stop: worker_stop.clone(),
        };
        workers.spawn(ctx.run());
    }
    drop(results_tx);

    let progress = Progress::new(before.total as u64, (before.total - before.pending - before.sending) as u64);
    let mut in_flight = 0usize;
    let mut exhausted = false;
    let mut unrecorded: Vec<(i64, Outcome)> = Vec::new();
    let mut last_flush = Instant::now();
    let mut last_renew = Instant::now();
    let mut sent_now = 0u64;
    let mut fatal: Option<String> = None;
    let mut interrupted = false;
    let mut claims = 0u64;
    let mut deferrals: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    // Claimed and handed to the workers, outcome not known yet.
    let mut pending_outcome: std::collections::HashSet<i64> = std::collections::HashSet::new();
    let mut stop_deadline: Option<Instant> = None;

    loop {
        let stopping = stop.is_stopped() || fatal.is_some();
        if stopping && !worker_stop.is_stopped() {
            interrupted = stop.is_stopped();
            worker_stop.stop();
            stop_deadline = Some(Instant::now() + STOP_GRACE);
        }
        if stop_deadline.is_some_and(|d| Instant::now() >= d) && in_flight > 0 {
            // The server has not answered in time: drop the connections. What was queued for a
            // worker was never tried; what a worker had on the wire has an unknown outcome, and is
            // tried again (same Message-ID) by the next run.
            workers.abort_all();
            while let Ok(event) = results_rx.try_recv() {
                if let WorkerEvent::Done(id, outcome) = event {
                    pending_outcome.remove(&id);
                    if matches!(outcome, Outcome::Sent) {
                        sent_now += 1;
                    }
                    unrecorded.push((id, outcome));
                }
            }
            while let Ok(job) = jobs_rx.lock().await.try_recv() {
                pending_outcome.remove(&job.subscriber_id);
                unrecorded.push((job.subscriber_id, Outcome::Unclaimed));
            }
            let error = "stopped while the server had not answered; the outcome is unknown, so it is sent again".to_string();
            unrecorded.extend(pending_outcome.drain().map(|id| (id, Outcome::Deferred { error: error.clone(), retry_at: 0 })));
            tracing::warn!("{error}: the deliveries in flight go back to pending");
            flush(pool, issue_id, &mut unrecorded, &mut last_flush).await?;
            break;
        }
        if !stopping && !exhausted && in_flight < window / 2 {
            let batch = ledger::claim(pool, issue_id, (window - in_flight) as i64, clock()).await?;
            exhausted = batch.len() < window - in_flight;
            // A safety net: every delivery is tried a bounded number of times per run.
            claims += batch.len() as u64;
            anyhow::ensure!(
                claims <= (before.total as u64 + 1) * (RETRY_WAITS.len() as u64 + 2),
                "internal error: deliveries of issue {issue_id} keep coming back; stopping to avoid sending them again and again"
            );
            for job in batch {
                in_flight += 1;
                pending_outcome.insert(job.subscriber_id);
                jobs_tx.send(job).await.map_err(|_| anyhow::anyhow!("every send worker stopped"))?;
            }
        }
        if in_flight == 0 {
            flush(pool, issue_id, &mut unrecorded, &mut last_flush).await?;
            if stopping {
                break;
            }
            match ledger::next_retry_at(pool, issue_id).await? {
                Some(at) if at <= clock() + RETRY_HORIZON => {
                    let wait = (at - clock()).max(0) as u64;
                    for _ in 0..wait * 10 {
                        if stop.is_stopped() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    exhausted = false;
                    continue;
                }
                _ => break,
            }
        }
        tokio::select! {
            event = results_rx.recv() => match event {
                Some(WorkerEvent::Done(id, mut outcome)) => {
                    in_flight -= 1;
                    pending_outcome.remove(&id);
                    if let Outcome::Deferred { retry_at, .. } = &mut outcome {
                        // Back off within this run; after the last wait, leave it for the next run.
                        let n = deferrals.entry(id).or_insert(0usize);
                        *retry_at = clock() + RETRY_WAITS.get(*n).copied().unwrap_or(LATER);
                        *n += 1;
                    }
                    if matches!(outcome, Outcome::Sent) {
                        sent_now += 1;
                        progress.inc();
                    }
                    if matches!(outcome, Outcome::Deferred { .. }) {
                        exhausted = false;
                    }
                    unrecorded.push((id, outcome));
                }
                Some(WorkerEvent::Fatal(why)) => {
                    if fatal.is_none() {
                        tracing::error!("{why}");
                        fatal = Some(why);
                    }
                }
                None => anyhow::bail!("every send worker stopped unexpectedly"),
            },
            _ = tokio::time::sleep(RECORD_EVERY) => {}
        }
        if unrecorded.len() >= RECORD_BATCH || last_flush.elapsed() >= RECORD_EVERY {
            flush(pool, issue_id, &mut unrecorded, &mut last_flush).await?;
        }
        if last_renew.elapsed() >= Duration::from_secs((LEASE_TTL / 4) as u64) {
            if !ledger::renew_lease(pool, issue_id, holder, clock() + LEASE_TTL).await? {
                fatal = Some(format!("lost the lease on issue {issue_id} to another sender; stopping"));
            }
            last_renew = Instant::now();
        }
    }
    drop(jobs_tx);
    worker_stop.stop();
    // Workers end when the queue closes, saying QUIT to their servers; a server that does not
    // answer that either is not waited for long.
    let grace = stop_deadline.map_or(STOP_GRACE, |d| d.saturating_duration_since(Instant::now()));
    if tokio::time::timeout(grace, async { while workers.join_next().await.is_some() {} }).await.is_err() {
        workers.abort_all();
    }
    flush(pool, issue_id, &mut unrecorded, &mut last_flush).await?;
    progress.finish();
    ledger::finish_if_done(pool, issue_id, clock()).await?;
    let counts = ledger::counts(pool, issue_id).await?;
    if let Some(why) = fatal {
        anyhow::bail!(
            "{why}\nthe send of issue {issue_id} stopped: {} sent so far, {} still pending; run `gazette send --week {issue_id}` again to resume",
            counts.sent,
            counts.pending
        );
    }
    Ok(SendReport { issue_id: issue_id.into(), started_now, requeued, sent_now, counts, interrupted })
}

async fn flush(pool: &sqlx::SqlitePool, issue_id: &str, unrecorded: &mut Vec<(i64, Outcome)>, last: &mut Instant) -> anyhow::Result<()> {
    if !unrecorded.is_empty() {
        ledger::record(pool, issue_id, unrecorded, clock()).await.context("recording delivery outcomes")?;
        unrecorded.clear();
    }
    *last = Instant::now();
    Ok(())
}

enum WorkerEvent {
    Done(i64, Outcome),
    Fatal(String),
}

struct WorkerContext {
    jobs: Arc<Mutex<mpsc::Receiver<Claimed>>>,
    results: mpsc::UnboundedSender<WorkerEvent>,
    email: Arc<PreparedEmail>,
    transport: Transport,
    key: Arc<TokenKey>,
    config: Arc<Config>,
    limiter: Arc<RateLimiter>,
    stop: StopFlag,
}

impl WorkerContext {
    async fn run(self) {
        let mut session: Option<SmtpSession> = None;
        loop {
            let job = { self.jobs.lock().await.recv().await };
            let Some(job) = job else { break };
            if self.stop.is_stopped() {
                let _ = self.results.send(WorkerEvent::Done(job.subscriber_id, Outcome::Unclaimed));
                continue;
            }
            let outcome = self.deliver(&job, &mut session).await;
            let _ = self.results.send(WorkerEvent::Done(job.subscriber_id, outcome));
        }
        if let Some(s) = session {
            s.quit().await;
        }
    }

    async fn deliver(&self, job: &Claimed, session: &mut Option<SmtpSession>) -> Outcome {
        let url = unsubscribe_url(&self.config, &self.key, job.subscriber_id);
        let message = match mailbox(&job.email, job.name.as_deref()).and_then(|mailbox| {
            self.email.build(&Recipient { mailbox, unsubscribe_url: &url, message_id: &job.message_id })
        }) {
            Ok(m) => m,
            Err(e) => return Outcome::Failed(format!("cannot build the message: {e:#}")),
        };
        self.limiter.wait().await;
        let attempt = match transmit(&self.transport, session, &message, &job.message_id, &self.stop).await {
            Ok(attempt) => attempt,
            Err(why) => {
                let _ = self.results.send(WorkerEvent::Fatal(why));
                self.stop.stop();
                return Outcome::Unclaimed;
            }
        };
        match attempt {
            Attempt::Accepted => Outcome::Sent,
            Attempt::Bounced(e) => Outcome::Bounced(e),
            Attempt::Rejected(e) => Outcome::Failed(e),
            // The send loop sets when to retry.
            Attempt::Deferred(e) => Outcome::Deferred { error: e, retry_at: 0 },
        }
    }
}

async fn connect_with_retries(spec: &ServerSpec, stop: &StopFlag) -> Result<SmtpSession, String> {
    let mut last = String::new();
    for (i, wait) in [0u64, 1, 2].into_iter().enumerate() {
        if stop.is_stopped() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(wait)).await;
        match SmtpSession::connect(spec).await {
            Ok(s) => return Ok(s),
            Err(e) => {
                tracing::warn!("connection attempt {} failed: {e}", i + 1);
                last = e;
            }
        }
    }
    Err(format!("cannot reach the SMTP server: {last}"))
}

/// Writes a message into the outbox folder, named after its Message-ID, so a resend replaces it.
fn write_eml(dir: &std::path::Path, message_id: &str, bytes: &[u8]) -> Attempt {
    let name: String = message_id
        .trim_matches(['<', '>'])
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') { c } else { '_' })
        .collect();
    let path = dir.join(format!("{name}.eml"));
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&tmp, bytes)).and_then(|_| std::fs::rename(&tmp, &path));
    match result {
        Ok(()) => Attempt::Accepted,
        Err(e) => Attempt::Deferred(format!("cannot write {}: {e}", path.display())),
    }
}

/// Spaces messages out to at most `rate` per second across all workers.
struct RateLimiter {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl RateLimiter {
    fn new(rate: Option<f64>) -> RateLimiter {
        RateLimiter { interval: rate.map(|r| Duration::from_secs_f64(1.0 / r)), next: Mutex::new(Instant::now()) }
    }

    async fn wait(&self) {
        let Some(interval) = self.interval else { return };
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + interval;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

/// A progress bar on a terminal, a log line every few seconds otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: std::sync::atomic::AtomicU64,
    last_log: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new(total: u64, done: u64) -> Progress {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} sent, {per_sec}, {eta} left").expect("valid template"),
            );
            bar.set_position(done);
            bar
        });
        Progress { bar, total, done: done.into(), last_log: std::sync::Mutex::new(Instant::now()) }
    }

    fn inc(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else {
            let mut last = self.last_log.lock().expect("progress lock");
            if last.elapsed() >= Duration::from_secs(5) {
                tracing::info!("{done}/{} sent", self.total);
                *last = Instant::now();
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Sends a copy to each address in `to`: `[TEST]` subject, never recorded in the ledger.
pub async fn send_test(store: &Store, config: &Config, email: &PreparedEmail, transport: &Transport, to: &[Mailbox]) -> anyhow::Result<Vec<(String, Result<(), String>)>> {
    let key = store.token_key().await?;
    let mut session: Option<SmtpSession> = None;
    let mut results = Vec::new();
    let domain = config.email.from.email.domain();
    for mailbox in to {
        // A subscriber's copy carries their real unsubscribe link; anyone else's a link that names nobody.
        let id = match SubscriberEmail::parse(mailbox.email.as_ref()) {
            Ok(email) => store.subscriber_by_email(&email).await?.map(|s| s.id).unwrap_or(0),
            Err(_) => 0,
        };
        let url = unsubscribe_url(config, &key, id);
        let message_id = format!("<test.{:016x}@{domain}>", rand::random::<u64>());
        let message = email.build(&Recipient { mailbox: mailbox.clone(), unsubscribe_url: &url, message_id: &message_id })?;
        let attempt = transmit(transport, &mut session, &message, &message_id, &StopFlag::default()).await.map_err(anyhow::Error::msg)?;
        let result = match attempt {
            Attempt::Accepted => Ok(()),
            Attempt::Deferred(e) | Attempt::Bounced(e) | Attempt::Rejected(e) => Err(e),
        };
        results.push((mailbox.to_string(), result));
    }
    if let Some(s) = session {
        s.quit().await;
    }
    Ok(results)
}

/// Sends one message outside any issue's ledger (a confirmation mail): into the outbox folder, or
/// over a connection of its own. The error says what the server answered.
pub async fn send_single(transport: &Transport, message: &lettre::Message, message_id: &str) -> Result<(), String> {
    let mut session = None;
    let attempt = transmit(transport, &mut session, message, message_id, &StopFlag::default()).await?;
    if let Some(s) = session {
        s.quit().await;
    }
    match attempt {
        Attempt::Accepted => Ok(()),
        Attempt::Deferred(e) | Attempt::Bounced(e) | Attempt::Rejected(e) => Err(e),
    }
}

/// Puts one message on its way: a file in the outbox, or an SMTP transaction on `session`, which is
/// connected (or reconnected when broken) as needed. `Err` only when the server cannot be reached.
async fn transmit(
    transport: &Transport,
    session: &mut Option<SmtpSession>,
    message: &lettre::Message,
    message_id: &str,
    stop: &StopFlag,
) -> Result<Attempt, String> {
    let bytes = message.formatted();
    match transport {
        Transport::Outbox(dir) => Ok(write_eml(dir, message_id, &bytes)),
        Transport::Smtp(spec) => {
            if session.as_ref().is_none_or(|s| s.is_broken()) {
                *session = Some(connect_with_retries(spec, stop).await?);
            }
            let s = session.as_mut().expect("connected above");
            let envelope = message.envelope();
            let (Some(from), Some(to)) = (envelope.from(), envelope.to().first()) else {
                return Ok(Attempt::Rejected("the message has no sender or recipient".into()));
            };
            Ok(s.transmit(from, to, &bytes).await)
        }
    }
}

/// Builds every message the send would produce, without connecting: the recipients and sizes.
pub async fn dry_run(store: &Store, config: &Config, email: &PreparedEmail) -> anyhow::Result<(u64, u64, Vec<String>)> {
    let key = store.token_key().await?;
    let (mut count, mut bytes, mut sample) = (0u64, 0u64, Vec::new());
    let mut after = 0i64;
    loop {
        let batch = ledger::active_after(store.pool(), after, 1000).await?;
        let Some(last) = batch.last() else { break };
        after = last.0;
        for (id, address, name) in batch {
            let url = unsubscribe_url(config, &key, id);
            let message_id = format!("<dry-run.{id}@{}>", config.email.from.email.domain());
            let m = email.build(&Recipient { mailbox: mailbox(&address, name.as_deref())?, unsubscribe_url: &url, message_id: &message_id })?;
            count += 1;
            bytes += m.formatted().len() as u64;
            if sample.len() < 10 {
                sample.push(address);
            }
        }
    }
    Ok((count, bytes, sample))
}

