//! Subscribe (double opt-in), confirm and unsubscribe. A subscribe answers the same whatever the
//! address's state, so no one can learn who is subscribed; links carry signed tokens; a GET never
//! changes anything (mail scanners open every link), a POST does.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Form, FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use lettre::message::header::ContentType;
use serde::Deserialize;

use super::{App, ClientIp, offered, retry_after};
use crate::deliver::SendError;
use crate::deliver::message::recipient_mailbox;
use crate::render::{Page, PageForm, PageLink};
use crate::store::{
    AddOutcome, ConfirmOutcome, NewSubscriber, Purpose, RemoveOutcome, Source, Status, Subscriber, SubscriberEmail,
    clean_name, sign_token, verify_token,
};
use crate::themes::{RecentTheme, ThemeChoice};
use crate::urls;

#[derive(Debug, Default, Deserialize)]
pub struct SubscribeForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: Option<String>,
    /// The themes ticked (their slugs) or, in JSON, named; none: every theme.
    #[serde(default)]
    themes: Vec<String>,
}

impl SubscribeForm {
    /// The form's fields from its pairs: `themes` once per ticked box, the last of the others.
    fn from_pairs(pairs: Vec<(String, String)>) -> SubscribeForm {
        let mut form = SubscribeForm::default();
        for (k, v) in pairs {
            match k.as_str() {
                "email" => form.email = v,
                "name" => form.name = Some(v),
                "themes" => form.themes.push(v),
                _ => {}
            }
        }
        form
    }
}

fn subscribe_page(error: Option<String>, form: &SubscribeForm, offered: &[RecentTheme]) -> Page {
    let mut lines = vec!["One email a week with the new issue. We send a confirmation link first; nothing else arrives until you use it.".into()];
    if !offered.is_empty() {
        lines.push("Choose themes to receive only the digests about them, or none to receive everything.".into());
    }
    Page {
        title: "Subscribe".into(),
        lines,
        error,
        form: Some(PageForm {
            button: "Subscribe".into(),
            subscribe_fields: true,
            email: form.email.clone(),
            name: form.name.clone().unwrap_or_default(),
            themes: offered::theme_fields("Themes (optional)", offered, &form.themes),
            ..PageForm::default()
        }),
        ..Page::default()
    }
}

/// One of each page, rendered at start-up to find template errors before a reader does.
pub fn sample_pages() -> Vec<Page> {
    let themes = [RecentTheme { name: "theme".into(), slug: "theme".into(), digests: 2 }];
    let ticked = SubscribeForm { themes: vec!["theme".into()], ..SubscribeForm::default() };
    vec![
        subscribe_page(Some("error".into()), &ticked, &themes),
        Page {
            title: "Unsubscribe".into(),
            form: Some(PageForm { button: "Unsubscribe".into(), one_click: true, ..PageForm::default() }),
            link: Some(PageLink { href: "/".into(), text: "link".into() }),
            ..Page::default()
        },
    ]
}

pub async fn form(State(app): State<App>) -> Response {
    app.page(StatusCode::OK, &subscribe_page(None, &SubscribeForm::default(), &app.offered_themes()))
}

/// `POST /subscribe`, a form or JSON (`{"email": …, "name": …, "themes": […]}`), answered in kind.
pub async fn subscribe(State(app): State<App>, ClientIp(ip): ClientIp, request: Request) -> Response {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let answer = |status: StatusCode, page: Page| {
        if json {
            let message = page.error.clone().unwrap_or_else(|| page.lines.join(" "));
            (status, Json(serde_json::json!({ "message": message }))).into_response()
        } else {
            app.page(status, &page)
        }
    };
    if let Err(wait) = app.limiter.check(ip) {
        tracing::warn!("subscribe requests from {ip} (or from everyone) are over the limit");
        let page = Page {
            title: "Too many requests".into(),
            lines: vec!["Too many sign-ups at once. Please try again in a few minutes.".into()],
            ..Page::default()
        };
        let mut response = answer(StatusCode::TOO_MANY_REQUESTS, page);
        response.headers_mut().insert(header::RETRY_AFTER, retry_after(wait));
        return response;
    }
    let asked = match read_subscribe_request(request, json, &app.offered_themes()).await {
        Ok(c) => c,
        Err(Refusal::Undecodable(rejection)) => return rejection,
        Err(Refusal::Invalid(page)) => return answer(StatusCode::BAD_REQUEST, *page),
    };
    let email = asked.email.clone();
    if let Err(e) = register(&app, asked).await {
        return app.unavailable(format!("subscribe: {e}"));
    }
    // The same words for a new, pending, active or unsubscribed address.
    let lines = vec![
        format!("If {email} can receive mail, a message with a confirmation link is on its way to it."),
        format!(
            "Open that link to start receiving {}. If nothing arrives within a few minutes, look in the spam folder.",
            app.config.site.title
        ),
    ];
    answer(StatusCode::OK, Page { title: "Check your inbox".into(), lines, ..Page::default() })
}

/// Why a subscribe request is not taken.
pub enum Refusal {
    /// The body is not a form (or not JSON, for a JSON request): the extractor's own answer.
    Undecodable(Response),
    /// The address or the name is refused: the form again, filled in as sent, saying why.
    Invalid(Box<Page>),
}

/// A subscribe request, decoded and checked.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub email: SubscriberEmail,
    pub name: Option<String>,
    /// The themes chosen among those offered; `None`: every theme.
    pub themes: Option<ThemeChoice>,
}

/// The body of a `POST /subscribe`, a form or JSON (`json`), decoded and checked: the address, the
/// name and the themes (among `offered`; any other is refused, naming it) to register. Public for
/// the property tests, which feed it hostile bodies.
pub async fn read_subscribe_request(
    request: Request,
    json: bool,
    offered: &[RecentTheme],
) -> Result<SubscribeRequest, Refusal> {
    let form = if json {
        Json::<SubscribeForm>::from_request(request, &()).await.map(|j| j.0).map_err(IntoResponse::into_response)
    } else {
        Form::<Vec<(String, String)>>::from_request(request, &())
            .await
            .map(|f| SubscribeForm::from_pairs(f.0))
            .map_err(IntoResponse::into_response)
    };
    let form = form.map_err(Refusal::Undecodable)?;
    let checked = SubscriberEmail::parse(&form.email).map_err(|e| e.to_string()).and_then(|email| {
        let name = clean_name(form.name.as_deref().unwrap_or(""))?;
        let themes = offered::chosen(&form.themes, offered)?;
        Ok(SubscribeRequest { email, name, themes })
    });
    checked.map_err(|why| {
        let page = subscribe_page(Some(format!("{why}. Please correct it and try again.")), &form, offered);
        Refusal::Invalid(Box::new(page))
    })
}

/// Records the sign-up and, when one is due, sends the confirmation mail in the background (so the
/// answer takes as long whether a mail goes out or not). The themes are stored only for a reader
/// who is not subscribed (new, pending or unsubscribed): whoever types an active reader's address
/// changes nothing of theirs.
async fn register(app: &App, asked: SubscribeRequest) -> anyhow::Result<()> {
    let SubscribeRequest { email, name, themes } = asked;
    let new = NewSubscriber { email, name, status: Status::Pending, source: Source::Web };
    let subscriber = match app.store.add(&new, false).await? {
        AddOutcome::Added(s) | AddOutcome::Unchanged(s) | AddOutcome::Suppressed(s) | AddOutcome::Activated(s) => s,
        AddOutcome::Reactivated { subscriber, .. } => subscriber,
    };
    // Active: nothing to confirm. Bounced or complained: never mailed again from a web form.
    if !matches!(subscriber.status, Status::Pending | Status::Unsubscribed) {
        tracing::info!("subscriber {} asked to subscribe; already {}: nothing sent", subscriber.id, subscriber.status);
        return Ok(());
    }
    if subscriber.themes != themes {
        app.store.set_themes(subscriber.id, themes.as_ref()).await?;
    }
    let due = app.store.request_confirmation(subscriber.id, chrono::Utc::now(), app.options.resend_after).await?;
    // Ids, not addresses: the log should not become a list of readers.
    tracing::info!(
        "subscriber {} asked to subscribe ({}): {}",
        subscriber.id,
        subscriber.status,
        if due { "confirmation mail on its way" } else { "a confirmation mail went out recently; not again yet" }
    );
    if due {
        let app = app.clone();
        app.mails_in_flight.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            deliver_confirmation(&app, &subscriber).await;
            app.mails_in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

/// Sends `subscriber`'s confirmation mail; when it does not go out, records so: for a passing
/// reason (4xx, the server unreachable) `retry_confirmations` tries again, for a refusal (5xx)
/// only a new subscribe does.
async fn deliver_confirmation(app: &App, subscriber: &Subscriber) {
    let Err(e) = send_confirmation(app, subscriber).await else { return };
    let permanent = e.downcast_ref::<SendError>().is_some_and(SendError::is_permanent);
    let next = if permanent {
        "refused for good: the next subscribe with this address tries again"
    } else {
        "tried again in the background"
    };
    tracing::error!("cannot send the confirmation mail to subscriber {}: {e:#}; {next}", subscriber.id);
    if let Err(e) = app.store.confirmation_not_sent(subscriber.id, permanent).await {
        tracing::error!("{e}");
    }
}

/// Confirmation mails a round of `retry_confirmations` sends at most: the relay was down for all
/// of them alike, and the rest follow in the next rounds.
const RETRIES_PER_ROUND: i64 = 50;

/// One round: sends again the confirmation mails that did not go out for a passing reason, while
/// their request is younger than `Options::confirm_within` (after that the reader has moved on).
/// Returns how many it tried.
pub async fn retry_confirmations_once(app: &App, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<usize> {
    let ids = app.store.confirmations_to_retry(now - app.options.confirm_within, now, RETRIES_PER_ROUND).await?;
    for id in &ids {
        match app.store.subscriber_by_id(*id).await? {
            // Confirmed, or stopped by a bounce, meanwhile: nothing to send.
            Some(s) if matches!(s.status, Status::Pending | Status::Unsubscribed) => {
                tracing::info!("sending again the confirmation mail of subscriber {id}, which did not go out");
                deliver_confirmation(app, &s).await;
            }
            _ => {}
        }
    }
    Ok(ids.len())
}

/// `serve`'s background task: a round of `retry_confirmations_once` and `retry_welcomes_once` every
/// `Options::retry_confirmations_every`, until the task is dropped.
pub async fn retry_confirmations(app: App) {
    let mut every = tokio::time::interval(app.options.retry_confirmations_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = retry_confirmations_once(&app, chrono::Utc::now()).await {
            tracing::error!(
                "cannot retry the confirmation mails that did not go out: {e:#}; trying again in the next round"
            );
        }
        if let Err(e) = super::retry_welcomes_once(&app, chrono::Utc::now()).await {
            tracing::error!("cannot retry the welcomes that did not go out: {e:#}; trying again in the next round");
        }
    }
}

async fn send_confirmation(app: &App, subscriber: &Subscriber) -> anyhow::Result<()> {
    let config = &app.config;
    let title = &config.site.title;
    let url = urls::confirm(&config.site, &sign_token(&app.key, subscriber.id, Purpose::Confirm));
    let body = format!(
        "Hello,\n\nSomeone, probably you, asked to receive {title} at {email}.\n\
         To confirm, open this link and press the button on the page:\n\n{url}\n\n\
         If it was not you, ignore this message: nothing more is sent unless the link is used.\n\n-- \n{title}\n{base}\n",
        email = subscriber.email,
        base = urls::home(&config.site),
    );
    let to = recipient_mailbox(subscriber.name.as_deref(), subscriber.email.parse()?);
    let subject = format!("Confirm your subscription to {title}");
    send_plain(app, to, &subject, body, &format!("confirm.{}", subscriber.id)).await
}

/// Sends one plain-text mail of the service (a confirmation link) to `to`, under a fresh
/// Message-ID that starts with `id_prefix`. The typed error goes back: a refusal is not retried.
pub(super) async fn send_plain(
    app: &App,
    to: lettre::message::Mailbox,
    subject: &str,
    body: String,
    id_prefix: &str,
) -> anyhow::Result<()> {
    let config = &app.config;
    let message_id = format!("<{id_prefix}.{:016x}@{}>", rand::random::<u64>(), config.email.from.email.domain());
    let mut builder = lettre::Message::builder()
        .from(config.email.from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(message_id.clone()))
        // lettre writes MIME-Version itself only for multipart bodies; RFC 2045 §4 wants it on
        // any message that declares a Content-Type.
        .header(lettre::message::header::MIME_VERSION_1_0)
        .header(ContentType::TEXT_PLAIN);
    if let Some(reply_to) = &config.email.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    let message = builder.body(body)?;
    Ok(crate::deliver::send_single(&app.transport, &message, &message_id).await?)
}

/// The subscriber a link names, or the answer to give instead (404: forged, altered, for the
/// other purpose, or naming no one).
pub(super) async fn linked(app: &App, token: &str, purpose: Purpose) -> Result<Subscriber, Response> {
    let Some(id) = verify_token(&app.key, token, purpose) else { return Err(invalid_link(app, purpose)) };
    match app.store.subscriber_by_id(id).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(invalid_link(app, purpose)),
        Err(e) => Err(app.unavailable(e)),
    }
}

pub(super) fn invalid_link(app: &App, purpose: Purpose) -> Response {
    let what = match purpose {
        Purpose::Confirm => "confirmation",
        Purpose::Preferences => "preferences",
        Purpose::ChangeAddress => "change of address",
        Purpose::Unsubscribe | Purpose::Bounce => "unsubscribe",
    };
    let lines = vec![format!(
        "This {what} link is not valid: it may have been cut short or altered. Copy the whole link from the email into the address bar."
    )];
    app.page(StatusCode::NOT_FOUND, &Page { title: "Link not valid".into(), lines, ..Page::default() })
}

pub async fn confirm_page(State(app): State<App>, Path(token): Path<String>) -> Response {
    let s = match linked(&app, &token, Purpose::Confirm).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let title = &app.config.site.title;
    if s.status == Status::Active {
        return app.page(StatusCode::OK, &subscribed_page(&app, &s));
    }
    let lines = vec![format!("Press the button to start receiving {title} at {}.", s.email)];
    let form = PageForm { button: "Confirm my subscription".into(), ..PageForm::default() };
    app.page(
        StatusCode::OK,
        &Page { title: "Confirm your subscription".into(), lines, form: Some(form), ..Page::default() },
    )
}

pub async fn confirm(State(app): State<App>, Path(token): Path<String>) -> Response {
    let s = match linked(&app, &token, Purpose::Confirm).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match app.store.confirm_request(s.id, chrono::Utc::now(), app.options.confirm_within).await {
        Ok(ConfirmOutcome::Confirmed(s)) => {
            tracing::info!("subscriber {} confirmed: active", s.id);
            super::welcome::after_confirm(&app, s.id);
            app.page(StatusCode::OK, &subscribed_page(&app, &s))
        }
        Ok(ConfirmOutcome::AlreadyActive(s)) => app.page(StatusCode::OK, &subscribed_page(&app, &s)),
        Ok(ConfirmOutcome::Refused(s)) => {
            let lines = vec![format!("This confirmation link no longer works for {}.", s.email)];
            let link =
                PageLink { href: urls::subscribe(&app.config.site), text: "Subscribe again for a new link".into() };
            app.page(
                StatusCode::GONE,
                &Page { title: "Link expired".into(), lines, link: Some(link), ..Page::default() },
            )
        }
        Ok(ConfirmOutcome::NotFound) => invalid_link(&app, Purpose::Confirm),
        Err(e) => app.unavailable(e),
    }
}

fn subscribed_page(app: &App, s: &Subscriber) -> Page {
    let lines = vec![format!(
        "{} will receive {} with each new issue. Every issue has a link to unsubscribe.",
        s.email, app.config.site.title
    )];
    Page { title: "You are subscribed".into(), lines, ..Page::default() }
}

/// `GET /unsubscribe/{token}`: shows the address and a button; changes nothing.
pub async fn unsubscribe_page(State(app): State<App>, Path(token): Path<String>) -> Response {
    let s = match linked(&app, &token, Purpose::Unsubscribe).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !matches!(s.status, Status::Active | Status::Pending) {
        return app.page(StatusCode::OK, &unsubscribed_page(&app, &s));
    }
    let lines = vec![format!("Stop sending {} to {}?", app.config.site.title, s.email)];
    let form = PageForm { button: "Unsubscribe".into(), one_click: true, ..PageForm::default() };
    app.page(StatusCode::OK, &Page { title: "Unsubscribe".into(), lines, form: Some(form), ..Page::default() })
}

/// `POST /unsubscribe/{token}`: the one-click unsubscribe of RFC 8058 §3.1 (whatever the body),
/// at once and idempotent; 200, no redirect, no cookie.
pub async fn unsubscribe(State(app): State<App>, Path(token): Path<String>) -> Response {
    let s = match linked(&app, &token, Purpose::Unsubscribe).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match app.store.unsubscribe_by_id(s.id).await {
        Ok(RemoveOutcome::Unsubscribed(s)) => {
            tracing::info!("subscriber {} unsubscribed", s.id);
            app.page(StatusCode::OK, &unsubscribed_page(&app, &s))
        }
        Ok(RemoveOutcome::AlreadyInactive(s)) => app.page(StatusCode::OK, &unsubscribed_page(&app, &s)),
        Ok(RemoveOutcome::NotFound) => invalid_link(&app, Purpose::Unsubscribe),
        Err(e) => app.unavailable(e),
    }
}

fn unsubscribed_page(app: &App, s: &Subscriber) -> Page {
    let lines = vec![format!("{} will not be sent to {} any more.", app.config.site.title, s.email)];
    let link = PageLink { href: urls::subscribe(&app.config.site), text: "Changed your mind? Subscribe again".into() };
    Page { title: "You are unsubscribed".into(), lines, link: Some(link), ..Page::default() }
}
