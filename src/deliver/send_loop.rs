//! The send loop of one issue: claims batches of deliveries (marking them `sending` before any
//! message goes out), hands them to one worker per connection, and keeps each outcome as soon as
//! the server has answered it (`Recorder`): on SQLite an accepted message is a line appended to the
//! send's journal (`store::journal`), folded into the ledger every 200 ms; any other outcome, and
//! every outcome on PostgreSQL, is a commit. Outcomes that arrive together are kept together. A
//! worker offers its next message's envelope (MAIL, RCPT, DATA) while its last outcome is being
//! kept, and sends the message itself only once it is, so a crash (kill -9) leaves at most one
//! message per connection that the server may have taken unrecorded; the next run reads the
//! journal into the ledger, puts the rest of what was in flight back to pending and resends it with
//! the same Message-ID.
//!
//! On SQLite a lease in the database keeps a second sender of the same issue out. On PostgreSQL
//! several senders (on several hosts) share an issue: each holds a lease of its own, renewed while
//! it lives, and claims its batches with `FOR UPDATE SKIP LOCKED`; when a sender dies, the others
//! take its claims over once its lease has expired (at once when it ran on the same host and its
//! process is gone), and a sender with nothing left to claim stays until the others' deliveries in
//! flight are settled, so the survivors always finish the issue.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};

use super::message::{Building, Built};
use super::transport::{Connection, Connector, SendError};
use super::{Edition, Editions, StopFlag, clock, mailbox, preferences_url, unsubscribe_url};
use crate::config::Config;
use crate::issue_id::IssueId;
use crate::store::bounces::RefusedAtSending;
use crate::store::journal::{self, SentJournal};
use crate::store::ledger::{Claimed, Counts, Ledger, Outcome};
use crate::store::{Store, TokenKey};
use crate::themes::ThemeChoice;

/// After a stop, how long messages in flight may take before their connections are dropped
/// (their deliveries go back to pending): a stop takes effect within a few seconds, whatever
/// the server does.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How often the loop looks at the stop flag and the lease when no outcome arrives.
const TICK: Duration = Duration::from_millis(250);
const LEASE_TTL: i64 = 60;
/// Retries of a deferred message within one run, and the waits before them.
const RETRY_WAITS: [i64; 2] = [1, 3];
/// A deferred message not due within this long is left for the next run.
const RETRY_HORIZON: i64 = 30;
/// After the waits above, a deferred message waits this long: in practice, for the next run.
const LATER: i64 = 600;
/// How a send ended.
#[derive(Debug)]
pub struct SendReport {
    pub issue_id: IssueId,
    /// False when the send had already started before this run (this run resumed it).
    pub started_now: bool,
    /// Deliveries found `sending` (a crashed run's) and put back to pending.
    pub requeued: u64,
    /// Deliveries a crashed run's sent journal shows the server accepted: recorded sent by this
    /// run, not sent again.
    pub recovered: u64,
    pub sent_now: u64,
    pub counts: Counts,
    pub interrupted: bool,
}

/// What a person watching a send sees: the command line draws a bar, the scheduler logs.
pub trait Progress: Send + Sync {
    /// The send (re)starts with `done` of `total` deliveries behind it.
    fn start(&self, _total: u64, _done: u64) {}
    /// One more message was taken by the server.
    fn sent(&self) {}
    fn finish(&self) {}
}

/// A log line every few seconds.
pub struct LogProgress {
    state: std::sync::Mutex<(u64, u64, Instant)>,
}

impl Default for LogProgress {
    fn default() -> LogProgress {
        LogProgress { state: std::sync::Mutex::new((0, 0, Instant::now())) }
    }
}

impl Progress for LogProgress {
    fn start(&self, total: u64, done: u64) {
        *self.state.lock().expect("progress lock") = (total, done, Instant::now());
    }
    fn sent(&self) {
        let mut s = self.state.lock().expect("progress lock");
        s.1 += 1;
        if s.2.elapsed() >= Duration::from_secs(5) {
            tracing::info!("{}/{} sent", s.1, s.0);
            s.2 = Instant::now();
        }
    }
}

/// A unique id for this sender, for the lease: `host:pid:random:scope`.
fn holder_id() -> String {
    let host = hostname_or_local();
    format!("{host}:{}:{:x}:{}", std::process::id(), rand::random::<u64>(), pid_scope())
}

/// Where this process's pid means something: the kernel's boot and the pid namespace. Two
/// containers may share a host name, or a kernel, and still number their processes apart; only a
/// holder of the same scope can be looked up in /proc.
fn pid_scope() -> String {
    use sha2::Digest;
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let namespace = std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(format!("{}/{namespace}", boot.trim()))[..6])
}

/// True when a lease holder named by `holder_id` ran on this machine, in this pid namespace, and
/// its process is gone (killed, crashed): its lease need not be waited out. Anything else (another
/// host, another container, a holder named by an older version) is waited out until its lease
/// expires.
fn holder_is_dead(holder: &str) -> bool {
    let parts: Vec<&str> = holder.split(':').collect();
    let [host, pid, _, scope] = parts[..] else { return false };
    let Ok(pid) = pid.parse::<u32>() else { return false };
    host == hostname_or_local() && scope == pid_scope() && pid != std::process::id() && !gazette_is_running(pid)
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

/// The lease on an issue while we hold it. `release` gives it back; on any other way out of the
/// send (a panic, the future dropped) the guard gives it back from a task of its own, since a
/// release is a query.
struct Lease {
    store: Store,
    issue_id: IssueId,
    holder: String,
    released: bool,
}

impl Lease {
    async fn release(mut self) {
        self.released = true;
        if let Err(e) = self.store.ledger().release_lease(&self.issue_id, &self.holder).await {
            tracing::warn!("could not release the lease on issue {} (it expires by itself): {e}", self.issue_id);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (store, issue_id, holder) = (self.store.clone(), self.issue_id.clone(), std::mem::take(&mut self.holder));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.ledger().release_lease(&issue_id, &holder).await {
                    tracing::warn!("could not release the lease on issue {issue_id} (it expires by itself): {e}");
                }
            });
        }
    }
}

/// Sends `issue_id` to its audience (fixed now if this is the first run), resuming where an earlier
/// run stopped. On SQLite it refuses when another sender holds the issue's lease; on PostgreSQL it
/// joins the other senders.
#[allow(clippy::too_many_arguments)]
pub async fn send_issue<T: Connector>(
    store: &Store,
    config: &Config,
    issue_id: &IssueId,
    number: u32,
    editions: Arc<Editions>,
    transport: &T,
    stop: &StopFlag,
    progress: &dyn Progress,
) -> anyhow::Result<SendReport> {
    let ledger = store.ledger();
    let holder = holder_id();
    let now = clock();
    if ledger.is_postgres() {
        expire_dead_holders(ledger, issue_id).await?;
    }
    if !ledger.acquire_lease(issue_id, &holder, now, now + LEASE_TTL).await? {
        let (who, until) = ledger.lease_holder(issue_id).await?.unwrap_or_default();
        if !(holder_is_dead(&who) && ledger.take_over_lease(issue_id, &who, &holder, now + LEASE_TTL).await?) {
            anyhow::bail!(
                "issue {issue_id} is being sent by another process ({who}); its lease runs until {}. \
                 If that process is gone, run the send again after that time and it will resume.",
                chrono::DateTime::from_timestamp(until, 0).map(|t| t.to_rfc3339()).unwrap_or_default()
            );
        }
        tracing::warn!("the sender that held issue {issue_id} ({who}) is gone; taking over its send");
    }
    let lease = Lease { store: store.clone(), issue_id: issue_id.clone(), holder, released: false };
    let job = SendJob { store, config, issue_id, number, editions, stop, progress, holder: &lease.holder };
    let result = run_send(job, transport).await;
    lease.release().await;
    result
}

/// Ends the leases on `issue_id` of senders that ran on this host and are gone, so that their
/// deliveries in flight are taken over now rather than when their leases would have expired.
async fn expire_dead_holders(ledger: Ledger<'_>, issue_id: &IssueId) -> anyhow::Result<()> {
    for (who, _) in ledger.leases(issue_id).await? {
        if holder_is_dead(&who) {
            tracing::warn!("the sender {who} of issue {issue_id} is gone; taking over what it had in flight");
            ledger.expire_lease(issue_id, &who).await?;
        }
    }
    Ok(())
}

/// Renews this sender's lease once a quarter of its time has passed since `last_renew`; on
/// PostgreSQL, also takes over what senders that died had in flight. The error to stop with when
/// the lease was lost (it expired and someone else took it or ended it).
async fn tend_lease(
    ledger: Ledger<'_>,
    issue_id: &IssueId,
    holder: &str,
    last_renew: &mut Instant,
) -> anyhow::Result<Option<SendError>> {
    if last_renew.elapsed() < Duration::from_secs((LEASE_TTL / 4) as u64) {
        return Ok(None);
    }
    *last_renew = Instant::now();
    if !ledger.renew_lease(issue_id, holder, clock() + LEASE_TTL).await? {
        return Ok(Some(SendError::unreachable(format!(
            "lost the lease on issue {issue_id} to another sender; stopping"
        ))));
    }
    if ledger.is_postgres() {
        take_over(ledger, issue_id).await?;
    }
    Ok(None)
}

/// PostgreSQL: puts back to pending what senders that died had in flight (their leases expired,
/// or they ran on this host and are gone), for whoever claims next.
async fn take_over(ledger: Ledger<'_>, issue_id: &IssueId) -> anyhow::Result<()> {
    expire_dead_holders(ledger, issue_id).await?;
    let requeued = ledger.requeue_in_flight(issue_id, clock()).await?;
    if requeued > 0 {
        tracing::warn!(
            "took over {requeued} deliveries of issue {issue_id} that a sender that is gone had in flight; they go again with the same Message-ID"
        );
    }
    Ok(())
}

/// One run of an issue's send, with the lease held.
struct SendJob<'a> {
    store: &'a Store,
    config: &'a Config,
    issue_id: &'a IssueId,
    number: u32,
    editions: Arc<Editions>,
    stop: &'a StopFlag,
    progress: &'a dyn Progress,
    holder: &'a str,
}

/// One run of an issue's send: it starts (or resumes) the send, then a `SendRun` drives it.
async fn run_send<T: Connector>(job: SendJob<'_>, transport: &T) -> anyhow::Result<SendReport> {
    let (store, issue_id) = (job.store, job.issue_id);
    let ledger = store.ledger();
    let domain = job.config.email.from.email.domain().to_string();
    let nonce = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    let started_now =
        ledger.start_send(issue_id, job.number, job.editions.whole().subject(), &domain, &nonce, clock()).await?;
    // Before the deliveries in flight go back to pending: those a journal says were accepted.
    let (recorder, recovered) = Recorder::open(store, issue_id, job.config.bounces.temporary_limit).await?;
    let requeued = ledger.requeue_in_flight(issue_id, clock()).await?;
    if !ledger.is_postgres() || ledger.leases(issue_id).await?.iter().all(|(who, _)| who == job.holder) {
        // The only sender (on SQLite, always): the retries of earlier runs start afresh.
        ledger.retry_now(issue_id).await?;
    }
    if requeued > 0 {
        tracing::warn!(
            "{requeued} deliveries of issue {issue_id} were in flight when an earlier run stopped; sending them again with the same Message-ID"
        );
    }
    let before = ledger.counts(issue_id).await?;
    let report = |sent_now, counts, interrupted| SendReport {
        issue_id: issue_id.clone(),
        started_now,
        requeued,
        recovered,
        sent_now,
        counts,
        interrupted,
    };
    if before.is_finished() {
        recorder.finish().await?;
        ledger.finish_if_done(issue_id, clock()).await?;
        return Ok(report(0, before, false));
    }

    // Every edition the readers' choices of themes need, made before the first message goes out.
    let choices: Vec<ThemeChoice> = store.theme_choices().await?.into_iter().filter_map(|(c, _)| c).collect();
    job.editions.prepare(&choices)?;
    if job.editions.made() > 0 {
        tracing::info!("issue {issue_id}: {} editions for the readers' choices of themes", job.editions.made());
    }
    let key = Arc::new(store.token_key().await?);
    let mut run = SendRun::start(job, transport, recorder, before, key);
    run.drive().await?;
    let (sent_now, counts, interrupted) = run.wind_down().await?;
    Ok(report(sent_now, counts, interrupted))
}

/// The state of a send between two events: what is claimed and in flight, what the server has
/// answered and is not kept yet, and whether (and since when) the send is stopping.
struct SendRun<'a> {
    job: SendJob<'a>,
    ledger: Ledger<'a>,
    recorder: Recorder<'a>,
    before: Counts,
    /// Deliveries claimed ahead of the workers. A crash resends none of those that were claimed
    /// and not yet on the wire (the sink never saw them), so the window only trades claim commits
    /// against how late an unsubscribe is noticed.
    window: usize,
    jobs: async_channel::Sender<Claimed>,
    /// The workers' queue, read here only to take back what no worker took, after the grace.
    queued: async_channel::Receiver<Claimed>,
    results: mpsc::UnboundedReceiver<WorkerEvent>,
    worker_stop: StopFlag,
    workers: tokio::task::JoinSet<()>,
    pacer: Arc<Pacer>,
    in_flight: usize,
    /// The last claim found fewer deliveries than it asked for.
    exhausted: bool,
    unrecorded: Vec<(i64, Outcome)>,
    /// The workers waiting for their outcomes to be kept.
    acks: Vec<Recorded>,
    last_renew: Instant,
    sent_now: u64,
    fatal: Option<SendError>,
    interrupted: bool,
    /// Deliveries claimed by this run, counted for a safety net.
    claims: u64,
    deferrals: HashMap<i64, usize>,
    /// Claimed and handed to the workers, outcome not known yet.
    pending_outcome: HashSet<i64>,
    stop_deadline: Option<Instant>,
}

impl<'a> SendRun<'a> {
    /// Opens one connection per worker (`[smtp] concurrency`), each worker taking messages from
    /// the shared queue.
    fn start<T: Connector>(
        job: SendJob<'a>,
        transport: &T,
        recorder: Recorder<'a>,
        before: Counts,
        key: Arc<TokenKey>,
    ) -> SendRun<'a> {
        let concurrency = job.config.smtp.concurrency as usize;
        let window = (concurrency * 16).max(32);
        let (jobs, queued) = async_channel::bounded::<Claimed>(window);
        let (results_tx, results) = mpsc::unbounded_channel::<WorkerEvent>();
        let pacer = Arc::new(Pacer::new(job.config.smtp.rate_per_second));
        let config = Arc::new(job.config.clone());
        let worker_stop = StopFlag::default();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let ctx = WorkerContext {
                jobs: queued.clone(),
                results: results_tx.clone(),
                editions: job.editions.clone(),
                connection: transport.open(),
                key: key.clone(),
                config: config.clone(),
                issue_id: job.issue_id.clone(),
                pacer: pacer.clone(),
                stop: worker_stop.clone(),
            };
            workers.spawn(ctx.run());
        }
        job.progress.start(before.total as u64, (before.total - before.pending - before.sending) as u64);
        SendRun {
            ledger: job.store.ledger(),
            job,
            recorder,
            before,
            window,
            jobs,
            queued,
            results,
            worker_stop,
            workers,
            pacer,
            in_flight: 0,
            exhausted: false,
            unrecorded: Vec::new(),
            acks: Vec::new(),
            last_renew: Instant::now(),
            sent_now: 0,
            fatal: None,
            interrupted: false,
            claims: 0,
            deferrals: HashMap::new(),
            pending_outcome: HashSet::new(),
            stop_deadline: None,
        }
    }

    /// Claims deliveries, hands them to the workers and keeps their outcomes, until nothing is
    /// left to send, or the send stopped, or the grace after a stop is over.
    async fn drive(&mut self) -> anyhow::Result<()> {
        loop {
            let stopping = self.note_stop();
            if self.stop_deadline.is_some_and(|d| Instant::now() >= d) && self.in_flight > 0 {
                return self.abandon_in_flight().await;
            }
            if !stopping && !self.exhausted && self.in_flight < self.window / 2 {
                self.claim_batch().await?;
            }
            if self.in_flight == 0 {
                self.recorder.flush(&mut self.unrecorded, &mut self.acks).await?;
                self.recorder.fold().await?;
                if stopping || !self.more_to_come().await? {
                    return Ok(());
                }
                continue;
            }
            self.take_outcomes().await?;
            // As soon as the server has answered: what a crash can resend is only what is on the wire.
            self.recorder.flush(&mut self.unrecorded, &mut self.acks).await?;
            self.tend_lease().await?;
        }
    }

    /// Whether the send is stopping (asked to, or something fatal happened); on the first sight
    /// of it, the workers are told and the grace starts.
    fn note_stop(&mut self) -> bool {
        let stopping = self.job.stop.is_stopped() || self.fatal.is_some();
        if stopping && !self.worker_stop.is_stopped() {
            self.interrupted = self.job.stop.is_stopped();
            self.worker_stop.stop();
            self.stop_deadline = Some(Instant::now() + STOP_GRACE);
        }
        stopping
    }

    /// The server has not answered in time after a stop: drop the connections. What was queued
    /// for a worker was never tried; what a worker had on the wire has an unknown outcome, and is
    /// tried again (same Message-ID) by the next run.
    async fn abandon_in_flight(&mut self) -> anyhow::Result<()> {
        self.workers.abort_all();
        while let Ok(event) = self.results.try_recv() {
            if let WorkerEvent::Done(id, outcome, _) = event {
                self.pending_outcome.remove(&id);
                if matches!(outcome, Outcome::Sent) {
                    self.sent_now += 1;
                }
                self.unrecorded.push((id, outcome));
            }
        }
        while let Ok(job) = self.queued.try_recv() {
            self.pending_outcome.remove(&job.subscriber_id);
            self.unrecorded.push((job.subscriber_id, Outcome::Unclaimed));
        }
        let error =
            "stopped while the server had not answered; the outcome is unknown, so it is sent again".to_string();
        self.unrecorded.extend(
            self.pending_outcome.drain().map(|id| (id, Outcome::Deferred { error: error.clone(), retry_at: 0 })),
        );
        tracing::warn!("{error}: the deliveries in flight go back to pending");
        self.recorder.flush(&mut self.unrecorded, &mut self.acks).await
    }

    /// Claims deliveries up to the window and queues them for the workers.
    async fn claim_batch(&mut self) -> anyhow::Result<()> {
        let (issue_id, room) = (self.job.issue_id, self.window - self.in_flight);
        let batch = self.ledger.claim(issue_id, self.job.holder, room as i64, clock()).await?;
        self.exhausted = batch.len() < room;
        // A safety net: every delivery is tried a bounded number of times per run.
        self.claims += batch.len() as u64;
        anyhow::ensure!(
            self.claims <= (self.before.total as u64 + 1) * (RETRY_WAITS.len() as u64 + 2),
            "internal error: deliveries of issue {issue_id} keep coming back; stopping to avoid sending them again and again"
        );
        for job in batch {
            self.in_flight += 1;
            self.pending_outcome.insert(job.subscriber_id);
            self.jobs.send(job).await.map_err(|_| anyhow::anyhow!("every send worker stopped"))?;
        }
        Ok(())
    }

    /// Nothing is in flight: waits for what may still come (a retry due soon; on PostgreSQL, the
    /// deliveries other senders have in flight). False when the send is over for this run.
    async fn more_to_come(&mut self) -> anyhow::Result<bool> {
        let (issue_id, holder) = (self.job.issue_id, self.job.holder);
        match self.ledger.next_retry_at(issue_id).await? {
            Some(at) if at <= clock() + RETRY_HORIZON => {
                let wait = Duration::from_secs((at - clock()).max(0) as u64);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.job.stop.stopped() => {}
                }
            }
            _ if self.ledger.is_postgres() && self.ledger.in_flight_elsewhere(issue_id, holder).await? > 0 => {
                // Nothing left to claim, but other senders have deliveries in flight: stay
                // until they are settled, and take over the claims of a sender that dies.
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.tend_lease().await?;
                take_over(self.ledger, issue_id).await?;
            }
            _ => return Ok(false),
        }
        self.exhausted = false;
        Ok(true)
    }

    /// Waits a tick for the workers' outcomes; takes the first and every other that has arrived
    /// meanwhile, to be kept together.
    async fn take_outcomes(&mut self) -> anyhow::Result<()> {
        let event = tokio::select! {
            event = self.results.recv() => event,
            _ = tokio::time::sleep(TICK) => return Ok(()),
        };
        let Some(event) = event else { anyhow::bail!("every send worker stopped unexpectedly") };
        let mut next = Some(event);
        while let Some(event) = next.take() {
            self.take(event);
            next = self.results.try_recv().ok();
        }
        Ok(())
    }

    fn take(&mut self, event: WorkerEvent) {
        match event {
            WorkerEvent::Done(id, mut outcome, ack) => {
                self.in_flight -= 1;
                self.pending_outcome.remove(&id);
                self.acks.push(ack);
                if let Outcome::Deferred { retry_at, .. } = &mut outcome {
                    // Back off within this run; after the last wait, leave it for the next run.
                    let n = self.deferrals.entry(id).or_insert(0usize);
                    *retry_at = clock() + RETRY_WAITS.get(*n).copied().unwrap_or(LATER);
                    *n += 1;
                }
                if matches!(outcome, Outcome::Sent) {
                    self.sent_now += 1;
                    self.job.progress.sent();
                }
                if matches!(outcome, Outcome::Deferred { .. }) {
                    self.exhausted = false;
                }
                self.unrecorded.push((id, outcome));
            }
            WorkerEvent::Fatal(why) => {
                if self.fatal.is_none() {
                    tracing::error!("{why}");
                    self.fatal = Some(why);
                }
            }
        }
    }

    /// Renews the lease when due (`tend_lease`); a lost lease is fatal.
    async fn tend_lease(&mut self) -> anyhow::Result<()> {
        let lost = tend_lease(self.ledger, self.job.issue_id, self.job.holder, &mut self.last_renew).await?;
        self.fatal = self.fatal.take().or(lost);
        Ok(())
    }

    /// The queue closes and the workers end, saying QUIT to their servers (a server that does not
    /// answer that either is not waited for long); the last outcomes are kept. What was sent now,
    /// the counts, and whether a stop interrupted the send; or why it stopped.
    async fn wind_down(mut self) -> anyhow::Result<(u64, Counts, bool)> {
        self.jobs.close();
        self.worker_stop.stop();
        let grace = self.stop_deadline.map_or(STOP_GRACE, |d| d.saturating_duration_since(Instant::now()));
        let workers = &mut self.workers;
        if tokio::time::timeout(grace, async { while workers.join_next().await.is_some() {} }).await.is_err() {
            workers.abort_all();
        }
        self.recorder.flush(&mut self.unrecorded, &mut self.acks).await?;
        self.recorder.finish().await?;
        self.job.progress.finish();
        if let (slowdowns @ 1.., Some(rate)) = self.pacer.summary() {
            tracing::info!(
                "the server asked to slow down {slowdowns} time(s); those messages went again, and the send ended at {rate:.1} messages a second"
            );
        }
        let issue_id = self.job.issue_id;
        self.ledger.finish_if_done(issue_id, clock()).await?;
        let counts = self.ledger.counts(issue_id).await?;
        if let Some(why) = self.fatal {
            if why.is_configuration() {
                // The fix is in publish.toml or the secret: exit 2, like any configuration error.
                return Err(crate::error::ExitError::unusable(format!(
                    "{why}\nthe send of issue {issue_id} stopped: {} sent so far, {} still pending; fix that, then run `gazette send --week {issue_id}`",
                    counts.sent, counts.pending
                ))
                .into());
            }
            anyhow::bail!(
                "{why}\nthe send of issue {issue_id} stopped: {} sent so far, {} still pending; run `gazette send --week {issue_id}` again to resume",
                counts.sent,
                counts.pending
            );
        }
        Ok((self.sent_now, counts, self.interrupted))
    }
}

/// Keeps each outcome before its worker may send again. On SQLite, when every outcome that
/// arrived together is an accepted message (nearly always), their ids are appended to the send's
/// journal (`store::journal`: one system call) and folded into the ledger every `FOLD_EVERY`; any
/// other outcome, and every outcome on PostgreSQL, is committed to the ledger at once.
struct Recorder<'a> {
    store: &'a Store,
    ledger: Ledger<'a>,
    issue_id: &'a IssueId,
    /// `[bounces] temporary_limit`, for the refusals that count as temporary failures.
    temporary_limit: u32,
    journal: Option<SentJournal>,
    last_fold: Instant,
}

/// How often the journal's ids are committed to the ledger (and so seen by `gazette status`).
const FOLD_EVERY: Duration = Duration::from_millis(200);

impl<'a> Recorder<'a> {
    /// For a send on SQLite, first reads into the ledger what an earlier run's journal holds
    /// (those messages were accepted), then starts the journal afresh.
    async fn open(
        store: &'a Store,
        issue_id: &'a IssueId,
        temporary_limit: u32,
    ) -> anyhow::Result<(Recorder<'a>, u64)> {
        let ledger = store.ledger();
        let mut recovered = 0;
        let journal = match store.location() {
            crate::config::Database::Sqlite(database) => {
                recovered = ledger.replay_journal(database, issue_id, clock()).await?;
                let path = journal::path_of(database, issue_id);
                Some(
                    SentJournal::create(database, issue_id)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                )
            }
            crate::config::Database::Postgres(_) => None,
        };
        Ok((Recorder { store, ledger, issue_id, temporary_limit, journal, last_fold: Instant::now() }, recovered))
    }

    /// Keeps the outcomes not yet kept, then tells their workers they may go on.
    async fn flush(&mut self, unrecorded: &mut Vec<(i64, Outcome)>, acks: &mut Vec<Recorded>) -> anyhow::Result<()> {
        if !unrecorded.is_empty() {
            match &mut self.journal {
                Some(journal) if unrecorded.iter().all(|(_, o)| matches!(o, Outcome::Sent)) => {
                    let ids: Vec<i64> = unrecorded.iter().map(|(id, _)| *id).collect();
                    journal.append(&ids).with_context(|| format!("cannot write {}", journal.path().display()))?;
                }
                _ => {
                    // What refusals do to their readers first: should the outcomes then be lost
                    // (a crash), the deliveries are sent again, and a refusal again is known.
                    let refused: Vec<RefusedAtSending> = unrecorded
                        .iter()
                        .filter_map(|(id, o)| match o {
                            Outcome::Refused { error, refusal } => {
                                Some(RefusedAtSending { subscriber_id: *id, refusal: *refusal, detail: error.clone() })
                            }
                            _ => None,
                        })
                        .collect();
                    if !refused.is_empty() {
                        self.store
                            .record_refused_at_sending(self.issue_id, &refused, self.temporary_limit)
                            .await
                            .context("recording refusals")?;
                    }
                    self.ledger
                        .record(self.issue_id, unrecorded, clock())
                        .await
                        .context("recording delivery outcomes")?
                }
            }
            unrecorded.clear();
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        if self.last_fold.elapsed() >= FOLD_EVERY {
            self.fold().await?;
        }
        Ok(())
    }

    /// Commits the journal's ids to the ledger, and empties it.
    async fn fold(&mut self) -> anyhow::Result<()> {
        self.last_fold = Instant::now();
        let Some(journal) = &mut self.journal else { return Ok(()) };
        if journal.unfolded().is_empty() {
            return Ok(());
        }
        let sent: Vec<(i64, Outcome)> = journal.unfolded().iter().map(|id| (*id, Outcome::Sent)).collect();
        self.ledger.record(self.issue_id, &sent, clock()).await.context("recording delivery outcomes")?;
        journal.folded().with_context(|| format!("cannot empty {}", journal.path().display()))
    }

    /// The send is over: everything into the ledger, and the journal goes.
    async fn finish(mut self) -> anyhow::Result<()> {
        self.fold().await?;
        if let Some(journal) = self.journal {
            let path = journal.path().to_path_buf();
            journal.remove().with_context(|| format!("cannot remove {}", path.display()))?;
        }
        Ok(())
    }
}

/// Sent to a worker once its outcome is kept (journal or ledger).
type Recorded = oneshot::Sender<()>;

enum WorkerEvent {
    Done(i64, Outcome, Recorded),
    Fatal(SendError),
}

/// How many signed copies a worker has being built and signed ahead of the one on the wire: an
/// RSA-2048-signed send ran at 0.54 of the unsigned one with one ahead, 0.57 with four, the same run
/// (BENCHMARKS.md).
const SIGNED_AHEAD: usize = 4;

/// One worker: one connection, messages one after another from the shared queue.
struct WorkerContext<C> {
    jobs: async_channel::Receiver<Claimed>,
    results: mpsc::UnboundedSender<WorkerEvent>,
    editions: Arc<Editions>,
    connection: C,
    key: Arc<TokenKey>,
    config: Arc<Config>,
    issue_id: IssueId,
    pacer: Arc<Pacer>,
    stop: StopFlag,
}

impl<C: Connection> WorkerContext<C> {
    async fn run(mut self) {
        // The keeping of this connection's last outcome (`Recorder::flush`), awaited before the next
        // message goes on the wire: at any instant, at most one message of this connection has an
        // outcome that neither the ledger nor the journal holds.
        let mut recorded: Option<oneshot::Receiver<()>> = None;
        // A signed copy is built and signed on rayon's threads: the next ones are started while this
        // one is on the wire, so that the connection does not wait for their signatures.
        let mut next: VecDeque<(Claimed, NextCopy)> = VecDeque::with_capacity(SIGNED_AHEAD);
        loop {
            let (job, building) = match next.pop_front() {
                Some(started) => started,
                None => match self.jobs.recv().await {
                    Ok(job) => {
                        let building = self.start_building(&job);
                        (job, building)
                    }
                    Err(_) => break,
                },
            };
            while self.editions.is_signed()
                && next.len() < SIGNED_AHEAD
                && let Ok(following) = self.jobs.try_recv()
            {
                let building = self.start_building(&following);
                next.push_back((following, building));
            }
            let outcome = match building {
                _ if self.stop.is_stopped() => Outcome::Unclaimed,
                NextCopy::Building(building) => self.deliver(&job, building.await, &mut recorded).await,
                NextCopy::Nothing(why) => {
                    // Nothing went on the wire: the connection's last message is still the one
                    // whose keeping the next message waits for.
                    let (ack, _) = oneshot::channel();
                    let _ = self.results.send(WorkerEvent::Done(job.subscriber_id, Outcome::Skipped(why), ack));
                    continue;
                }
            };
            let (ack, done) = oneshot::channel();
            recorded = Some(done);
            let _ = self.results.send(WorkerEvent::Done(job.subscriber_id, outcome, ack));
        }
        self.connection.close().await;
    }

    /// The copy of `job` in the reader's edition, built (and signed, on rayon's threads, when it
    /// is signed) from now on; or nothing, when the issue carries none of the reader's themes.
    fn start_building(&self, job: &Claimed) -> NextCopy {
        let email = match self.editions.for_reader(job.themes.as_ref()) {
            Ok(Edition::Send(email)) => email,
            Ok(Edition::Nothing(why)) => return NextCopy::Nothing(why),
            Err(e) => return NextCopy::Building(Building::failed(e)),
        };
        let url = unsubscribe_url(&self.config, &self.key, job.subscriber_id);
        let preferences = preferences_url(&self.config, &self.key, job.subscriber_id);
        NextCopy::Building(match mailbox(&job.email, job.name.as_deref()) {
            Ok(mailbox) => email.start_building(mailbox, &url, &preferences, &job.message_id),
            Err(e) => Building::failed(e),
        })
    }

    async fn deliver(
        &mut self,
        job: &Claimed,
        built: anyhow::Result<Built>,
        recorded: &mut Option<oneshot::Receiver<()>>,
    ) -> Outcome {
        let message = match built {
            Ok(m) => m,
            Err(e) => return Outcome::Failed(format!("cannot build the message: {e:#}")),
        };
        let return_path = || super::return_path(&self.config, &self.key, &self.issue_id, job.subscriber_id);
        // Made again only for a try after a slow-down: the first costs no copy.
        let mut first_path = Some(return_path());
        // The keeping of the last outcome, awaited by the gate of this message's first try that gets
        // as far as the message itself (a refusal before DATA leaves it for the next try).
        let mut last = recorded.take();
        let gate_closed = AtomicBool::new(false);
        let mut throttled_since: Option<Instant> = None;
        let sent = loop {
            self.pacer.wait(&self.stop).await;
            if self.stop.is_stopped() {
                // Nothing of this message is on the wire: it goes back to pending as it was.
                return Outcome::Unclaimed;
            }
            let gate = async {
                let open = match last.take() {
                    Some(done) => done.await.is_ok(),
                    None => true,
                };
                gate_closed.store(!open, Ordering::Relaxed);
                open
            };
            let path = first_path.take().unwrap_or_else(return_path);
            let sent = super::transmit(&mut self.connection, &message, &job.message_id, path, &self.stop, gate).await;
            if gate_closed.load(Ordering::Relaxed) {
                // The loop could not record the last outcome and has given up: send nothing more.
                self.stop.stop();
                return Outcome::Unclaimed;
            }
            match &sent {
                Ok(()) => self.pacer.accepted(),
                // The server asks to slow down: not this message's failure. It goes again, on this
                // connection, once the pace allows (`Pacer`), unless the send stops or the server
                // has refused it so for `THROTTLE_PATIENCE`: then it is deferred as any 4xx.
                Err(e) if e.is_throttled() => {
                    self.pacer.slow_down(e);
                    let since = *throttled_since.get_or_insert_with(Instant::now);
                    if self.stop.is_stopped() {
                        return Outcome::Unclaimed;
                    }
                    if since.elapsed() < THROTTLE_PATIENCE {
                        continue;
                    }
                }
                Err(_) => {}
            }
            break sent;
        };
        match sent {
            Ok(()) => Outcome::Sent,
            Err(e) if e.stops_the_send() => {
                let _ = self.results.send(WorkerEvent::Fatal(e));
                self.stop.stop();
                Outcome::Unclaimed
            }
            Err(e) => outcome_of(e),
        }
    }
}

/// A worker's next message: its copy being built, or nothing to send the reader, with why.
enum NextCopy {
    Building(Building),
    Nothing(String),
}

/// What a refusal means for the delivery. The send loop sets when a deferred one is retried.
pub(crate) fn outcome_of(e: SendError) -> Outcome {
    match e.refusal() {
        Some(r) if e.is_bounce() => Outcome::Bounced { error: e.to_string(), reason: r.reason },
        Some(refusal) => Outcome::Refused { error: e.to_string(), refusal },
        None if e.is_permanent() => Outcome::Failed(e.to_string()),
        None => Outcome::Deferred { error: e.to_string(), retry_at: 0 },
    }
}

/// How long one message may be met with "slow down" before it is deferred as any 4xx (it is then
/// retried by the later waits, `RETRY_WAITS`, and counts towards them).
const THROTTLE_PATIENCE: Duration = Duration::from_secs(300);
/// The pace after a slow-down: this share of the pace before it (multiplicative decrease)...
const DECREASE: f64 = 0.5;
/// ...once for a burst, since the refusals of one overload come together: not again until the
/// time this many messages take at the new pace has passed (a round trip of the connections' worth
/// in flight), between `DECREASE_GAP` (very fast) and a second (slow)...
const DECREASE_AFTER: f64 = 8.0;
const DECREASE_GAP: Duration = Duration::from_millis(50);
/// ...and never under this many messages a second.
const MIN_RATE: f64 = 1.0;
/// Then, with each message accepted, the pace grows by this many messages a second per second
/// (additive increase), up to `[smtp] rate_per_second` when it is set.
const INCREASE: f64 = 10.0;

/// Spaces messages out across all workers: at most `[smtp] rate_per_second`, and, once a server has
/// asked to slow down (`SendError::is_throttled`), at a pace found by AIMD: halved on a slow-down,
/// raised a little with each message accepted, so that it settles under the server's limit and
/// keeps probing for more. Until a slow-down and without a ceiling it takes no lock: `wait` and
/// `accepted` read one flag and count one message.
struct Pacer {
    ceiling: Option<f64>,
    /// A server asked to slow down: every message is paced from now on.
    throttled: AtomicBool,
    /// Messages accepted before the first slow-down, for the pace it halves.
    accepted: AtomicU64,
    started: Instant,
    state: std::sync::Mutex<Pace>,
}

struct Pace {
    /// Messages a second, when paced.
    rate: f64,
    /// The next free slot.
    next: Instant,
    last_decrease: Option<Instant>,
    /// How many times a server asked to slow down, and how many times the pace went down.
    slowdowns: u64,
    decreases: u64,
}

impl Pacer {
    fn new(ceiling: Option<f64>) -> Pacer {
        let now = Instant::now();
        let rate = ceiling.unwrap_or(f64::INFINITY);
        Pacer {
            ceiling,
            throttled: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            started: now,
            state: std::sync::Mutex::new(Pace { rate, next: now, last_decrease: None, slowdowns: 0, decreases: 0 }),
        }
    }

    fn pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for this message's slot (or a stop).
    async fn wait(&self, stop: &StopFlag) {
        if self.ceiling.is_none() && !self.throttled.load(Ordering::Relaxed) {
            return;
        }
        let at = {
            let mut pace = self.pace();
            let at = pace.next.max(Instant::now());
            pace.next = at + Duration::from_secs_f64(1.0 / pace.rate);
            at
        };
        tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => {}
            _ = stop.stopped() => {}
        }
    }

    /// A message was accepted: once paced, the pace grows (additive increase).
    fn accepted(&self) {
        if !self.throttled.load(Ordering::Relaxed) {
            self.accepted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut pace = self.pace();
        pace.rate = (pace.rate + INCREASE / pace.rate).min(self.ceiling.unwrap_or(f64::INFINITY));
    }

    /// A server asked to slow down: the pace is halved (multiplicative decrease), once a burst.
    fn slow_down(&self, why: &SendError) {
        let now = Instant::now();
        let mut pace = self.pace();
        pace.slowdowns += 1;
        let gap = Duration::from_secs_f64(DECREASE_AFTER / pace.rate).clamp(DECREASE_GAP, Duration::from_secs(1));
        if pace.last_decrease.is_some_and(|t| now.duration_since(t) < gap) {
            return;
        }
        let before = if self.throttled.load(Ordering::Relaxed) || self.ceiling.is_some() {
            pace.rate
        } else {
            // Unpaced until now: the pace so far.
            self.accepted.load(Ordering::Relaxed) as f64 / now.duration_since(self.started).as_secs_f64().max(0.001)
        };
        pace.rate = (before * DECREASE).max(MIN_RATE);
        pace.last_decrease = Some(now);
        pace.decreases += 1;
        self.throttled.store(true, Ordering::Relaxed);
        if pace.decreases == 1 {
            tracing::warn!(
                "the server asks to slow down ({why}); the send slows to {:.1} messages a second and speeds up again as they are accepted",
                pace.rate
            );
        } else {
            tracing::debug!("the server asks to slow down again ({why}): {:.1} messages a second", pace.rate);
        }
    }

    /// How many times a server asked to slow down, and the pace at the end (`None`: never paced).
    fn summary(&self) -> (u64, Option<f64>) {
        let pace = self.pace();
        (pace.slowdowns, self.throttled.load(Ordering::Relaxed).then_some(pace.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The issue of the week starting on `start` (`2023-07-17`).
    fn week(start: &str) -> IssueId {
        start.parse().expect("an issue's id")
    }
    use crate::deliver::PreparedEmail;
    use crate::deliver::transport::memory::Memory;
    use crate::render::{SUBSCRIBER_EMAIL, UNSUBSCRIBE_URL};
    use crate::store::{NewSubscriber, Source, Status};

    #[test]
    fn only_a_gone_holder_of_this_host_and_pid_namespace_counts_as_dead() {
        let me = holder_id();
        assert!(!holder_is_dead(&me), "this process is alive");
        // A pid no process has (above the kernel's pid_max), same host and scope: gone.
        let parts: Vec<&str> = me.split(':').collect();
        let gone = format!("{}:4294967290:1f:{}", parts[0], parts[3]);
        assert!(holder_is_dead(&gone));
        // The same pid elsewhere (another container, another host, an older holder id) is waited out.
        assert!(!holder_is_dead(&format!("{}:4294967290:1f:000000000000", parts[0])));
        assert!(!holder_is_dead(&format!("elsewhere.example.org:4294967290:1f:{}", parts[3])));
        assert!(!holder_is_dead(&format!("{}:4294967290:1f", parts[0])));
    }

    async fn setup(addresses: &[&str]) -> (tempfile::TempDir, Store, Config, Arc<Editions>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("g.db")).await.unwrap();
        for a in addresses {
            let new =
                NewSubscriber { email: a.parse().unwrap(), name: None, status: Status::Active, source: Source::Cli };
            store.add(&new, false).await.unwrap();
        }
        let config = Config::parse("[smtp]\nconcurrency = 2\n", &dir.path().join("publish.toml")).unwrap();
        let html = format!("<p>Hello {SUBSCRIBER_EMAIL}</p><a href=\"{UNSUBSCRIBE_URL}\">unsubscribe</a>");
        let text = format!("Hello\nUnsubscribe: {UNSUBSCRIBE_URL}\n");
        let email = Arc::new(
            PreparedEmail::new(&config, "Issue #1", &html, &text, false, std::time::SystemTime::now()).unwrap(),
        );
        (dir, store, config, Arc::new(Editions::one(email)))
    }

    /// A reader who chose themes gets their edition; one whose themes the issue lacks, and one
    /// paused, are skipped saying why; a pause that has ended is no pause.
    #[tokio::test]
    async fn each_reader_gets_the_edition_of_their_themes_or_is_skipped_saying_why() {
        let addresses =
            ["all@example.org", "ab@example.org", "c@example.org", "paused@example.org", "back@example.org"];
        let (_dir, store, config, whole) = setup(&addresses).await;
        let id = async |a: &str| store.subscriber_by_email(&a.parse().unwrap()).await.unwrap().unwrap().id;
        let choice = |list: &str| ThemeChoice::parse_list(list).unwrap().unwrap();
        store.set_themes(id("ab@example.org").await, Some(&choice("Beta; alpha"))).await.unwrap();
        store.set_themes(id("c@example.org").await, Some(&choice("c"))).await.unwrap();
        let now = chrono::Utc::now();
        store.set_pause(id("paused@example.org").await, Some(now + chrono::Duration::weeks(2))).await.unwrap();
        store.set_pause(id("back@example.org").await, Some(now - chrono::Duration::days(1))).await.unwrap();
        // An edition says which choice it was made for; the issue has nothing of `c`.
        let made = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (render_config, log) = (config.clone(), made.clone());
        let render = move |themes: &ThemeChoice| -> anyhow::Result<Option<PreparedEmail>> {
            log.lock().unwrap().push(themes.key());
            if themes.has_slug("c") {
                return Ok(None);
            }
            let html = format!("<p>edition {}</p><a href=\"{UNSUBSCRIBE_URL}\">unsubscribe</a>", themes.key());
            Ok(Some(PreparedEmail::new(&render_config, "Issue #1", &html, &html, false, std::time::SystemTime::now())?))
        };
        let editions = Arc::new(Editions::new(whole.whole().clone(), Box::new(render)));
        let memory = Memory::default();
        let report = send_issue(
            &store,
            &config,
            &week("2023-07-17"),
            1,
            editions,
            &memory,
            &StopFlag::default(),
            &LogProgress::default(),
        )
        .await
        .unwrap();
        assert_eq!(memory.recipients(), ["ab@example.org", "all@example.org", "back@example.org"]);
        let body = |to: &str| {
            let messages = memory.messages.lock().unwrap();
            String::from_utf8(messages.iter().find(|(t, _)| t == to).unwrap().1.clone()).unwrap()
        };
        assert!(body("ab@example.org").contains("edition alpha,beta"), "{}", body("ab@example.org"));
        assert!(body("all@example.org").contains("Hello") && !body("all@example.org").contains("edition"));
        assert!(body("back@example.org").contains("Hello"));
        let mut made = made.lock().unwrap().clone();
        made.sort();
        assert_eq!(made, ["alpha,beta", "c"], "one edition per distinct choice, made before the send");
        let c = &report.counts;
        assert_eq!((c.sent, c.skipped, c.pending, c.sending), (3, 2, 0, 0), "{c:?}");
        let skipped: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT s.email, d.last_error, d.attempts FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
             WHERE d.state = 'skipped' ORDER BY s.email",
        )
        .fetch_all(store.sqlite())
        .await
        .unwrap();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(skipped[0].0, "c@example.org");
        assert_eq!(skipped[0].1, "this issue has no digest of the themes they follow (c)");
        assert_eq!(skipped[1].0, "paused@example.org");
        let until = (now + chrono::Duration::weeks(2)).date_naive().to_string();
        assert_eq!(skipped[1].1, format!("the reader paused their issues until {until}"));
        assert!(skipped.iter().all(|s| s.2 == 0), "a skip is not an attempt: {skipped:?}");
    }

    /// A reader who changes themes during the send still gets one message: the edition of the
    /// themes they have when their delivery is claimed again (here, after a 450 to the first try).
    #[tokio::test]
    async fn a_change_of_themes_during_the_send_makes_no_second_message() {
        let (_dir, store, config, whole) = setup(&["later@example.org", "other@example.org"]).await;
        let id = store.subscriber_by_email(&"later@example.org".parse().unwrap()).await.unwrap().unwrap().id;
        let choice = |list: &str| ThemeChoice::parse_list(list).unwrap().unwrap();
        store.set_themes(id, Some(&choice("alpha"))).await.unwrap();
        let render_config = config.clone();
        let render = move |themes: &ThemeChoice| -> anyhow::Result<Option<PreparedEmail>> {
            let html = format!("<p>edition {}</p><a href=\"{UNSUBSCRIBE_URL}\">unsubscribe</a>", themes.key());
            Ok(Some(PreparedEmail::new(&render_config, "Issue #1", &html, &html, false, std::time::SystemTime::now())?))
        };
        let editions = Arc::new(Editions::new(whole.whole().clone(), Box::new(render)));
        let memory = Memory::default();
        // Once the first try has been refused for now, the reader chooses another theme.
        let (watch, changer) = (memory.clone(), store.clone());
        let change = tokio::spawn(async move {
            while watch.deferred.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            changer.set_themes(id, Some(&choice("beta"))).await.unwrap();
        });
        let report = send_issue(
            &store,
            &config,
            &week("2023-07-17"),
            1,
            editions.clone(),
            &memory,
            &StopFlag::default(),
            &LogProgress::default(),
        )
        .await
        .unwrap();
        change.await.unwrap();
        assert_eq!(memory.recipients(), ["later@example.org", "other@example.org"], "one message each");
        let messages = memory.messages.lock().unwrap();
        let later =
            String::from_utf8(messages.iter().find(|(t, _)| t == "later@example.org").unwrap().1.clone()).unwrap();
        assert!(later.contains("edition beta"), "the edition of the themes at the retry: {later}");
        assert_eq!((report.counts.sent, report.counts.total), (2, 2));
        assert_eq!(editions.made(), 2, "alpha made before the send, beta when it was first needed");
    }

    #[tokio::test]
    async fn refusals_are_sorted_into_sent_bounced_failed_and_retried() {
        let addresses =
            ["a@example.org", "gone@example.org", "spam@example.org", "later@example.org", "full@example.org"];
        let (_dir, store, config, email) = setup(&addresses).await;
        let memory = Memory::default();
        let report = send_issue(
            &store,
            &config,
            &week("2023-07-17"),
            1,
            email,
            &memory,
            &StopFlag::default(),
            &LogProgress::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            memory.recipients(),
            ["a@example.org", "later@example.org"],
            "each once; the deferred one on its retry"
        );
        let c = &report.counts;
        assert_eq!((c.sent, c.bounced, c.failed, c.pending, c.sending), (2, 1, 2, 0, 0));
        let subscriber = async |a: &str| store.subscriber_by_email(&a.parse().unwrap()).await.unwrap().unwrap();
        // The address does not work: bounced, the reason named first.
        let gone = subscriber("gone@example.org").await;
        assert_eq!((gone.status, gone.reason), (Status::Bounced, Some(crate::bounces::Reason::UserUnknown)));
        assert!(gone.status_reason.as_deref().is_some_and(|r| r.starts_with("userunknown: 550 5.1.1")), "{gone:?}");
        // The sender's problem: the reader stays, and the refusal is counted for the provider.
        assert_eq!(subscriber("spam@example.org").await.status, Status::Active);
        let refusals = store.refusals(&week("2023-07-17")).await.unwrap();
        assert_eq!(
            refusals.iter().map(|r| (r.provider.as_str(), r.reason.as_str(), r.messages)).collect::<Vec<_>>(),
            [("example.org", "spamdetected", 1)]
        );
        // The mailbox's: still active, one temporary failure counted for the issue.
        assert_eq!(subscriber("full@example.org").await.status, Status::Active);
        let events: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT kind, reason_code FROM bounce_events").fetch_all(store.sqlite()).await.unwrap();
        assert_eq!(events, [("temporary".to_string(), Some("mailboxfull".to_string()))]);
        // A second run finds nothing to do, and the lease was given back.
        let again = Memory::default();
        let report = send_issue(
            &store,
            &config,
            &week("2023-07-17"),
            1,
            setup_email(&config),
            &again,
            &StopFlag::default(),
            &LogProgress::default(),
        )
        .await
        .unwrap();
        assert_eq!((report.sent_now, again.recipients().len()), (0, 0));
        assert_eq!(store.ledger().lease_holder(&week("2023-07-17")).await.unwrap(), None);
        // A send whose future is dropped half-way gives the lease back too.
        let hang = setup_hang(&store).await;
        let (stop, progress) = (StopFlag::default(), LogProgress::default());
        let later = week("2023-07-24");
        let send = send_issue(&store, &config, &later, 2, setup_email(&config), &hang, &stop, &progress);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), send).await.is_err(),
            "the send hangs on its only recipient"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.ledger().lease_holder(&week("2023-07-24")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_slow_down_sends_the_message_again_slower_and_fails_nobody() {
        let (_dir, store, config, email) = setup(&["slow1@example.org", "a@example.org", "slow2@example.org"]).await;
        let memory = Memory::default();
        let issue = week("2023-07-17");
        let report =
            send_issue(&store, &config, &issue, 1, email, &memory, &StopFlag::default(), &LogProgress::default())
                .await
                .unwrap();
        assert_eq!(memory.recipients(), ["a@example.org", "slow1@example.org", "slow2@example.org"], "each once");
        assert_eq!(memory.deferred.lock().unwrap().len(), 2, "both were told to slow down first");
        let c = &report.counts;
        assert_eq!((c.sent, c.failed, c.pending), (3, 0, 0));
        // Not a failure of theirs: no attempt counted, no error kept.
        assert!(store.ledger().problems(&issue, 10).await.unwrap().is_empty());
    }

    #[test]
    fn the_pace_halves_on_a_slow_down_once_a_burst_and_grows_back_a_little_with_each_message() {
        let pacer = Pacer::new(Some(100.0));
        let why = SendError::throttled("421 4.7.0 slow down");
        pacer.slow_down(&why);
        pacer.slow_down(&why);
        assert_eq!(pacer.summary(), (2, Some(50.0)), "one burst, one halving");
        for _ in 0..50 {
            pacer.accepted();
        }
        let (_, Some(rate)) = pacer.summary() else { panic!("paced") };
        assert!((59.0..61.0).contains(&rate), "about 10 a second more after a second's messages: {rate}");
        for _ in 0..100_000 {
            pacer.accepted();
        }
        assert_eq!(pacer.summary().1, Some(100.0), "never over [smtp] rate_per_second");
        // Unpaced, nothing is counted but the messages.
        let free = Pacer::new(None);
        free.accepted();
        assert_eq!(free.summary(), (0, None));
    }

    #[tokio::test]
    async fn with_a_bounce_address_each_delivery_has_its_own_signed_envelope_sender() {
        let (dir, store, plain, email) = setup(&["a@example.org", "b@example.org"]).await;
        let memory = Memory::default();
        send_issue(
            &store,
            &plain,
            &week("2023-07-17"),
            1,
            email,
            &memory,
            &StopFlag::default(),
            &LogProgress::default(),
        )
        .await
        .unwrap();
        for e in memory.envelopes.lock().unwrap().iter() {
            assert_eq!(
                (e.from.to_string().as_str(), &e.dsn_envid),
                ("newsletter@signals.example.org", &None),
                "without bounce_address nothing changes"
            );
        }

        let config = Config::parse(
            "[email]\nbounce_address = \"bounces@signals.example.org\"\n",
            &dir.path().join("publish.toml"),
        )
        .unwrap();
        let memory = Memory::default();
        send_issue(
            &store,
            &config,
            &week("2023-07-24"),
            2,
            setup_email(&config),
            &memory,
            &StopFlag::default(),
            &LogProgress::default(),
        )
        .await
        .unwrap();
        let key = store.token_key().await.unwrap();
        let envelopes = memory.envelopes.lock().unwrap().clone();
        assert_eq!(envelopes.len(), 2);
        let mut senders = std::collections::HashSet::new();
        for e in &envelopes {
            let subscriber = store.subscriber_by_email(&e.to.to_string().parse().unwrap()).await.unwrap().unwrap();
            let (local, domain) = (e.from.user(), e.from.domain());
            assert_eq!(domain, "signals.example.org");
            let token = local.strip_prefix("bounces+").unwrap_or_else(|| panic!("VERP sender: {}", e.from));
            assert_eq!(crate::store::verify_bounce_token(&key, token), Some((subscriber.id, week("2023-07-24"))));
            assert_eq!(e.dsn_envid.as_deref(), Some(format!("2023-07-24.{}", subscriber.id).as_str()));
            senders.insert(e.from.to_string());
        }
        assert_eq!(senders.len(), 2, "one sender per delivery");
    }

    /// Leaves one active subscriber, whose server never answers.
    async fn setup_hang(store: &Store) -> Memory {
        for s in store.list_page(None, 0, 100).await.unwrap() {
            store.unsubscribe_by_id(s.id).await.unwrap();
        }
        let new = NewSubscriber {
            email: "hang@example.org".parse().unwrap(),
            name: None,
            status: Status::Active,
            source: Source::Cli,
        };
        store.add(&new, false).await.unwrap();
        Memory::default()
    }

    fn setup_email(config: &Config) -> Arc<Editions> {
        Arc::new(Editions::one(Arc::new(
            PreparedEmail::new(config, "x", UNSUBSCRIBE_URL, UNSUBSCRIBE_URL, false, std::time::SystemTime::now())
                .unwrap(),
        )))
    }

    #[tokio::test]
    async fn a_stop_ends_the_send_within_the_grace_whatever_the_server_does() {
        let (_dir, store, config, email) =
            setup(&["a@example.org", "hang1@example.org", "hang2@example.org", "b@example.org"]).await;
        let memory = Memory::default();
        let stop = StopFlag::default();
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stopper.stop();
        });
        let started = Instant::now();
        let report =
            send_issue(&store, &config, &week("2023-07-17"), 1, email, &memory, &stop, &LogProgress::default())
                .await
                .unwrap();
        assert!(started.elapsed() < STOP_GRACE + Duration::from_secs(1), "{:?}", started.elapsed());
        assert!(report.interrupted);
        let c = &report.counts;
        // Both connections hang on a message: nothing is left `sending`, the hung ones are pending.
        assert_eq!(c.sending, 0, "{c:?}");
        assert_eq!(c.sent + c.pending, 4, "{c:?}");
        assert_eq!(c.sent as usize, memory.recipients().len());
        let problems = store.ledger().problems(&week("2023-07-17"), 10).await.unwrap();
        assert!(
            problems.iter().any(|(email, state, _, error)| email.starts_with("hang")
                && state == "pending"
                && error.contains("outcome is unknown")),
            "{problems:?}"
        );
    }
}
