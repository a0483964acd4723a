//! A reader's preferences page, behind the signed link in every email's footer: the themes they
//! receive, a pause of 1 to 12 weeks, a change of address (confirmed from a link mailed to the new
//! one; the old one keeps receiving until then) and a button to unsubscribe. Every form is a plain
//! HTML POST to the page (a hidden `action` names which) answered with the page again, saying what
//! changed; a GET never changes anything (mail scanners open every link). The clock is read once
//! per request, in the handler; the pages are built from what is passed in.

use std::sync::atomic::Ordering;

use axum::extract::{Form, Path, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};

use super::subscribe::{invalid_link, linked, send_plain};
use super::{App, ClientIp, offered, retry_after};
use crate::deliver::message::recipient_mailbox;
use crate::render::{Page, PageForm, PageLink, PageSection, PageSelect, SelectOption};
use crate::store::{
    AddressChange, AddressChangeOutcome, AddressChangeRequest, Purpose, Status, Subscriber, SubscriberEmail,
    address_token, sign_token, verify_address_token,
};
use crate::themes::RecentTheme;
use crate::token::address_token_ids;
use crate::urls;

/// The longest pause a reader can choose, in weeks.
pub const MAX_PAUSE_WEEKS: u32 = 12;

/// A date as the pages write it: "Monday 4 January 2027" (UTC).
fn day(t: DateTime<Utc>) -> String {
    t.format("%A %-d %B %Y").to_string()
}

/// What the preferences page shows besides the subscriber: everything it depends on, passed in.
struct View<'a> {
    site_title: &'a str,
    subscriber: &'a Subscriber,
    /// The themes the reader may tick (`offered::choosable`).
    choosable: &'a [RecentTheme],
    /// The boxes to tick (slugs or names): as stored, or as sent back with an error.
    ticked: Vec<String>,
    /// The reader's one-click unsubscribe link (`urls::unsubscribe`).
    unsubscribe_url: String,
    now: DateTime<Utc>,
    /// What the form just sent changed.
    notice: Option<String>,
    /// What was wrong with what the form just sent.
    error: Option<String>,
    /// The new address field's value (as sent back with an error).
    new_address: String,
    /// The weeks selected in the pause's list.
    weeks: u32,
}

impl<'a> View<'a> {
    fn new(
        site_title: &'a str,
        s: &'a Subscriber,
        choosable: &'a [RecentTheme],
        unsubscribe_url: String,
        now: DateTime<Utc>,
    ) -> View<'a> {
        View {
            site_title,
            subscriber: s,
            choosable,
            ticked: s.themes.iter().flat_map(|c| c.slugs().map(str::to_string)).collect(),
            unsubscribe_url,
            now,
            notice: None,
            error: None,
            new_address: String::new(),
            weeks: 1,
        }
    }
}

/// Until when `s` is paused, if the pause is not over at `now`.
fn paused_until(s: &Subscriber, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    s.paused_until.filter(|t| *t > now)
}

/// "You receive every theme." or "You receive: a, b."
fn receiving(s: &Subscriber) -> String {
    match &s.themes {
        None => "You receive every theme.".into(),
        Some(c) => format!("You receive: {c}."),
    }
}

fn preferences_page(v: View) -> Page {
    let s = v.subscriber;
    let mut themes_lines = vec![receiving(s)];
    if v.choosable.is_empty() {
        themes_lines.push("No issue has themes yet: there is nothing to choose from.".into());
    }
    let themes = PageSection {
        heading: "Themes".into(),
        lines: themes_lines,
        forms: vec![PageForm {
            button: "Save themes".into(),
            kind: Some("themes".into()),
            themes: offered::theme_fields("Themes you receive", v.choosable, &v.ticked),
            ..PageForm::default()
        }]
        .into_iter()
        .filter(|f| f.themes.is_some())
        .collect(),
    };
    let options = (1..=MAX_PAUSE_WEEKS)
        .map(|w| SelectOption {
            value: w.to_string(),
            text: format!(
                "{w} week{} (until {})",
                if w == 1 { "" } else { "s" },
                day(v.now + chrono::Duration::weeks(w.into()))
            ),
            selected: w == v.weeks,
        })
        .collect();
    let pause_form = PageForm {
        kind: Some("pause".into()),
        select: Some(PageSelect { id: "weeks".into(), name: "weeks".into(), label: "Pause for".into(), options }),
        ..PageForm::default()
    };
    let pause = match paused_until(s, v.now) {
        Some(until) => PageSection {
            heading: "Pause".into(),
            lines: vec![format!("Paused until {}: no issue is sent to {} before then.", day(until), s.email)],
            forms: vec![
                PageForm { button: "Resume now".into(), kind: Some("resume".into()), ..PageForm::default() },
                PageForm { button: "Pause instead".into(), ..pause_form },
            ],
        },
        None => PageSection {
            heading: "Pause".into(),
            lines: vec!["Away for a while? Pause the issues; they start again by themselves.".into()],
            forms: vec![PageForm { button: "Pause".into(), ..pause_form }],
        },
    };
    let address = PageSection {
        heading: "Email address".into(),
        lines: vec![format!(
            "Issues go to {}. To move them to another address, give it below: we send it a link, and issues keep going to {} until the link is used.",
            s.email, s.email
        )],
        forms: vec![PageForm {
            button: "Send a confirmation link".into(),
            kind: Some("address".into()),
            address_field: true,
            email: v.new_address,
            ..PageForm::default()
        }],
    };
    let unsubscribe = PageSection {
        heading: "Unsubscribe".into(),
        lines: vec![format!("Stop sending {} to {}.", v.site_title, s.email)],
        forms: vec![PageForm {
            button: "Unsubscribe".into(),
            action: Some(v.unsubscribe_url),
            one_click: true,
            ..PageForm::default()
        }],
    };
    Page {
        title: "Your preferences".into(),
        lines: vec![format!("What {} sends to {}.", v.site_title, s.email)],
        error: v.error,
        notice: v.notice,
        sections: vec![themes, pause, address, unsubscribe],
        ..Page::default()
    }
}

/// The page for a reader who cannot change anything (not or no longer subscribed), saying why.
fn not_subscribed_page(site_title: &str, subscribe_url: String, s: &Subscriber) -> Page {
    let line = match s.status {
        Status::Pending => format!(
            "{} has not confirmed the subscription to {site_title} yet: use the link in the confirmation email, or subscribe again for a new one.",
            s.email
        ),
        Status::Unsubscribed => format!("{} is unsubscribed from {site_title}: there is nothing to change.", s.email),
        Status::Bounced => format!(
            "{site_title} no longer goes to {}: its mail server refused the issues. Subscribe again, with this or another address.",
            s.email
        ),
        Status::Complained | Status::Active => {
            format!("{site_title} no longer goes to {}: an issue was reported as spam from it.", s.email)
        }
    };
    Page {
        title: "Not subscribed".into(),
        lines: vec![line],
        link: Some(PageLink { href: subscribe_url, text: format!("Subscribe to {site_title}") }),
        ..Page::default()
    }
}

/// One of each page this module shows, rendered at start-up to find template errors.
pub fn sample_pages() -> Vec<Page> {
    let now = DateTime::from_timestamp(1_800_000_000, 0).expect("a valid time");
    let themes = crate::themes::ThemeChoice::from_names(["theme"]).expect("a valid theme");
    let s = Subscriber {
        id: 1,
        email: "reader@example.org".into(),
        name: None,
        status: Status::Active,
        source: crate::store::Source::Web,
        created_at: now,
        status_changed_at: now,
        confirmed_at: Some(now),
        unsubscribed_at: None,
        bounced_at: None,
        complained_at: None,
        status_reason: None,
        reason: None,
        themes,
        paused_until: Some(now + chrono::Duration::weeks(2)),
    };
    let choosable = offered::choosable(
        &[RecentTheme { name: "other".into(), slug: "other".into(), digests: 2 }],
        s.themes.as_ref(),
    );
    let view = View {
        notice: Some("notice".into()),
        error: Some("error".into()),
        ..View::new("site", &s, &choosable, "/unsubscribe/x".into(), now)
    };
    let unpaused = Subscriber { paused_until: None, ..s.clone() };
    vec![
        preferences_page(view),
        preferences_page(View::new("site", &unpaused, &[], "/unsubscribe/x".into(), now)),
        not_subscribed_page("site", "/subscribe".into(), &Subscriber { status: Status::Bounced, ..s.clone() }),
        confirm_address_page("site", &s, "new@example.org"),
    ]
}

/// `GET /preferences/{token}`: the page; changes nothing.
pub async fn page(State(app): State<App>, Path(token): Path<String>) -> Response {
    let now = Utc::now();
    let s = match linked(&app, &token, Purpose::Preferences).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if s.status != Status::Active {
        return app
            .page(StatusCode::OK, &not_subscribed_page(&app.config.site.title, urls::subscribe(&app.config.site), &s));
    }
    let offered = app.offered_themes();
    let choosable = offered::choosable(&offered, s.themes.as_ref());
    let view = View::new(&app.config.site.title, &s, &choosable, unsubscribe_url(&app, &s), now);
    app.page(StatusCode::OK, &preferences_page(view))
}

fn unsubscribe_url(app: &App, s: &Subscriber) -> String {
    urls::unsubscribe(&app.config.site, &sign_token(&app.key, s.id, Purpose::Unsubscribe))
}

/// What one of the page's forms did.
enum Outcome {
    /// The subscriber as they now are, and what changed, in words.
    Changed(Subscriber, String),
    /// Nothing changed: what was wrong with what the form sent (shown with the form as sent).
    Refused(StatusCode, String),
    /// Another answer than the page: a rate limit, a store that does not answer.
    Other(Response),
}

/// `POST /preferences/{token}`: one of the page's forms, named by its `action` field, answered
/// with the page as it now is, saying what changed or what was wrong.
pub async fn change(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    Path(token): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let now = Utc::now();
    let s = match linked(&app, &token, Purpose::Preferences).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if s.status != Status::Active {
        let page = not_subscribed_page(&app.config.site.title, urls::subscribe(&app.config.site), &s);
        return app.page(StatusCode::CONFLICT, &page);
    }
    let field = |name: &str| fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.trim());
    let ticked: Vec<String> = fields.iter().filter(|(k, _)| k == "themes").map(|(_, v)| v.clone()).collect();
    let offered = app.offered_themes();
    let choosable = offered::choosable(&offered, s.themes.as_ref());
    let outcome = match field("action").unwrap_or("") {
        "themes" => change_themes(&app, &s, &ticked, &choosable).await,
        "pause" => pause(&app, &s, field("weeks").unwrap_or(""), now).await,
        "resume" => stored(&app, app.store.set_pause(s.id, None).await, |changed| {
            tracing::info!("subscriber {} resumed", changed.id);
            format!("Resumed: the next issue goes to {}.", changed.email)
        }),
        "address" => ask_address_change(&app, ip, &s, field("email").unwrap_or(""), now).await,
        _ => Outcome::Refused(
            StatusCode::BAD_REQUEST,
            "The form sent is not one of this page's; reload the page and use its buttons".into(),
        ),
    };
    let title = &app.config.site.title;
    match outcome {
        Outcome::Changed(changed, notice) => {
            let view = View {
                notice: Some(notice),
                ..View::new(title, &changed, &choosable, unsubscribe_url(&app, &changed), now)
            };
            app.page(StatusCode::OK, &preferences_page(view))
        }
        Outcome::Refused(status, why) => {
            let view = View {
                error: Some(format!("{why}. Please correct it and try again.")),
                ticked,
                new_address: field("email").unwrap_or("").to_string(),
                weeks: field("weeks")
                    .and_then(|w| w.parse().ok())
                    .filter(|w| (1..=MAX_PAUSE_WEEKS).contains(w))
                    .unwrap_or(1),
                ..View::new(title, &s, &choosable, unsubscribe_url(&app, &s), now)
            };
            app.page(status, &preferences_page(view))
        }
        Outcome::Other(response) => response,
    }
}

/// The page's answer to a store call that changed the subscriber: the subscriber as it returns
/// them, with `notice` (what changed, from them); or the answer to give instead.
fn stored(
    app: &App,
    result: Result<Option<Subscriber>, crate::store::StoreError>,
    notice: impl FnOnce(&Subscriber) -> String,
) -> Outcome {
    match result {
        Ok(Some(changed)) => {
            let notice = notice(&changed);
            Outcome::Changed(changed, notice)
        }
        Ok(None) => Outcome::Other(invalid_link(app, Purpose::Preferences)),
        Err(e) => Outcome::Other(app.unavailable(e)),
    }
}

async fn change_themes(app: &App, s: &Subscriber, ticked: &[String], choosable: &[RecentTheme]) -> Outcome {
    let choice = match offered::chosen(ticked, choosable) {
        Ok(c) => c,
        Err(why) => return Outcome::Refused(StatusCode::BAD_REQUEST, why),
    };
    let chosen = match choice.as_ref().map(|c| c.len()) {
        None => "every theme".to_string(),
        Some(1) => "1 theme".to_string(),
        Some(n) => format!("{n} themes"),
    };
    stored(app, app.store.set_themes(s.id, choice.as_ref()).await, |changed| {
        tracing::info!("subscriber {} now receives {chosen}", changed.id);
        match &changed.themes {
            None => "You now receive every theme.".to_string(),
            Some(c) => format!("You now receive: {c}."),
        }
    })
}

async fn pause(app: &App, s: &Subscriber, weeks: &str, now: DateTime<Utc>) -> Outcome {
    let Some(weeks) = weeks.parse::<u32>().ok().filter(|w| (1..=MAX_PAUSE_WEEKS).contains(w)) else {
        let why = format!("Choose a pause of 1 to {MAX_PAUSE_WEEKS} weeks from the list");
        return Outcome::Refused(StatusCode::BAD_REQUEST, why);
    };
    let until = now + chrono::Duration::weeks(weeks.into());
    stored(app, app.store.set_pause(s.id, Some(until)).await, |changed| {
        tracing::info!("subscriber {} paused for {weeks} weeks", changed.id);
        format!("Paused until {}: no issue is sent to {} before then.", day(until), changed.email)
    })
}

/// Records a change of address to `new` and mails its link there; rate-limited like a subscribe,
/// since each sends a mail.
async fn ask_address_change(app: &App, ip: std::net::IpAddr, s: &Subscriber, new: &str, now: DateTime<Utc>) -> Outcome {
    if let Err(wait) = app.limiter.check(ip) {
        tracing::warn!("change-of-address requests from {ip} (or from everyone) are over the limit");
        let page = Page {
            title: "Too many requests".into(),
            lines: vec!["Too many requests at once. Please try again in a few minutes.".into()],
            ..Page::default()
        };
        let mut response = app.page(StatusCode::TOO_MANY_REQUESTS, &page);
        response.headers_mut().insert(header::RETRY_AFTER, retry_after(wait));
        return Outcome::Other(response);
    }
    let new = match SubscriberEmail::parse(new) {
        Ok(e) => e,
        Err(e) => return Outcome::Refused(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match app.store.request_address_change(s.id, &new, now).await {
        Ok(AddressChangeRequest::Requested(change)) => {
            tracing::info!("subscriber {} asked to change address: confirmation mail on its way", s.id);
            send_in_background(app, s, change);
            let notice = format!(
                "A confirmation link is on its way to {new}. Issues keep going to {} until you use it.",
                s.email
            );
            Outcome::Changed(s.clone(), notice)
        }
        Ok(AddressChangeRequest::Unchanged) => {
            Outcome::Refused(StatusCode::BAD_REQUEST, format!("{new} is already the address issues go to"))
        }
        Ok(AddressChangeRequest::Taken) => {
            tracing::info!("subscriber {} asked to change address to one another subscriber has", s.id);
            let why = format!(
                "{new} belongs to another subscription to {}. Give another address, or unsubscribe {} and keep the other",
                app.config.site.title, s.email
            );
            Outcome::Refused(StatusCode::CONFLICT, why)
        }
        Err(e) => Outcome::Other(app.unavailable(e)),
    }
}

/// Mails the link of `change` to its new address, in the background (so that the answer takes as
/// long whether the relay is quick or not); a failure is logged, and the reader can ask again.
fn send_in_background(app: &App, s: &Subscriber, change: AddressChange) {
    let app = app.clone();
    let s = s.clone();
    app.mails_in_flight.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        if let Err(e) = send_address_confirmation(&app, &s, &change).await {
            tracing::error!("cannot send the change-of-address link of subscriber {}: {e:#}; they can ask again", s.id);
        }
        app.mails_in_flight.fetch_sub(1, Ordering::SeqCst);
    });
}

async fn send_address_confirmation(app: &App, s: &Subscriber, change: &AddressChange) -> anyhow::Result<()> {
    let config = &app.config;
    let title = &config.site.title;
    let token = address_token(&app.key, s.id, change.id, &change.new_email_key);
    let url = urls::confirm_address(&config.site, &token);
    let body = format!(
        "Hello,\n\nSomeone, probably you, asked to receive {title} at {new} instead of {old}.\n\
         To confirm, open this link and press the button on the page:\n\n{url}\n\n\
         If it was not you, ignore this message: nothing changes unless the link is used.\n\n-- \n{title}\n{base}\n",
        new = change.new_email,
        old = s.email,
        base = urls::home(&config.site),
    );
    let to = recipient_mailbox(s.name.as_deref(), change.new_email.parse()?);
    send_plain(app, to, &format!("Confirm your new address for {title}"), body, &format!("address.{}", s.id)).await
}

/// The request an address link names, or the answer to give instead (404: forged, altered, or
/// naming no request).
async fn linked_change(app: &App, token: &str) -> Result<AddressChange, Response> {
    let invalid = || invalid_link(app, Purpose::ChangeAddress);
    let Some((id, change_id)) = address_token_ids(token) else { return Err(invalid()) };
    let change = match app.store.address_change(change_id).await {
        Ok(Some(c)) if c.subscriber_id == id => c,
        Ok(_) => return Err(invalid()),
        Err(e) => return Err(app.unavailable(e)),
    };
    match verify_address_token(&app.key, token, &change.new_email_key) {
        Some(_) => Ok(change),
        None => Err(invalid()),
    }
}

fn confirm_address_page(site_title: &str, s: &Subscriber, new: &str) -> Page {
    Page {
        title: "Confirm your new address".into(),
        lines: vec![format!("Press the button to receive {site_title} at {new} instead of {}.", s.email)],
        form: Some(PageForm { button: format!("Move my subscription to {new}"), ..PageForm::default() }),
        ..Page::default()
    }
}

fn changed_page(site_title: &str, s: &Subscriber, old: Option<&str>) -> Page {
    let mut line = format!("{site_title} now goes to {}.", s.email);
    if let Some(old) = old {
        line.push_str(&format!(" {old} receives no more issues."));
    }
    Page { title: "Address changed".into(), lines: vec![line], ..Page::default() }
}

/// A link that no longer works: why, and what to do.
fn refused_link(app: &App, status: StatusCode, why: String) -> Response {
    app.page(status, &Page { title: "Address not changed".into(), lines: vec![why], ..Page::default() })
}

fn superseded(app: &App) -> Response {
    refused_link(
        app,
        StatusCode::GONE,
        "This link was replaced by a later request to change the address: use the link in the newest of these emails. The address stays as it was.".into(),
    )
}

fn expired(app: &App) -> Response {
    let days = app.options.confirm_within.num_days();
    refused_link(
        app,
        StatusCode::GONE,
        format!(
            "This link is more than {days} days old. Ask again from the preferences page (the link at the foot of every issue). The address stays as it was."
        ),
    )
}

/// `GET /address/{token}`: shows the change and a button; changes nothing.
pub async fn address_page(State(app): State<App>, Path(token): Path<String>) -> Response {
    let now = Utc::now();
    let change = match linked_change(&app, &token).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let s = match app.store.subscriber_by_id(change.subscriber_id).await {
        Ok(Some(s)) => s,
        Ok(None) => return invalid_link(&app, Purpose::ChangeAddress),
        Err(e) => return app.unavailable(e),
    };
    let title = &app.config.site.title;
    if change.confirmed_at.is_some() {
        return app.page(StatusCode::OK, &changed_page(title, &s, None));
    }
    if change.superseded {
        return superseded(&app);
    }
    if now - change.requested_at > app.options.confirm_within {
        return expired(&app);
    }
    if s.status != Status::Active {
        return app.page(StatusCode::OK, &not_subscribed_page(title, urls::subscribe(&app.config.site), &s));
    }
    app.page(StatusCode::OK, &confirm_address_page(title, &s, &change.new_email))
}

/// `POST /address/{token}`: moves the subscription to the new address, if the link is still good.
pub async fn confirm_address(State(app): State<App>, Path(token): Path<String>) -> Response {
    let now = Utc::now();
    let change = match linked_change(&app, &token).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let title = &app.config.site.title;
    match app.store.confirm_address_change(change.id, now, app.options.confirm_within).await {
        Ok(AddressChangeOutcome::Changed { subscriber, old_email }) => {
            tracing::info!("subscriber {} changed address", subscriber.id);
            app.page(StatusCode::OK, &changed_page(title, &subscriber, Some(&old_email)))
        }
        Ok(AddressChangeOutcome::AlreadyDone(s)) => app.page(StatusCode::OK, &changed_page(title, &s, None)),
        Ok(AddressChangeOutcome::Superseded(_)) => superseded(&app),
        Ok(AddressChangeOutcome::Expired(_)) => expired(&app),
        Ok(AddressChangeOutcome::Taken(c)) => {
            tracing::info!("subscriber {} confirmed an address another subscriber has taken since", c.subscriber_id);
            refused_link(
                &app,
                StatusCode::CONFLICT,
                format!(
                    "{} has been taken by another subscription since this link was sent, so the address stays as it was. Ask again with another address from the preferences page.",
                    c.new_email
                ),
            )
        }
        Ok(AddressChangeOutcome::Inactive(s)) => {
            app.page(StatusCode::CONFLICT, &not_subscribed_page(title, urls::subscribe(&app.config.site), &s))
        }
        Ok(AddressChangeOutcome::NotFound) => invalid_link(&app, Purpose::ChangeAddress),
        Err(e) => app.unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_says_what_the_reader_receives_and_until_when_a_pause_lasts() {
        let pages = sample_pages();
        let text = serde_json::to_string(&pages[0]).unwrap();
        // 1_800_000_000 is Friday 15 January 2027; paused two weeks from then.
        assert!(text.contains("Paused until Friday 29 January 2027"), "{text}");
        assert!(text.contains("You receive: theme."), "{text}");
        assert!(text.contains("\"kind\":\"resume\""), "{text}");
        assert!(text.contains("12 weeks (until Friday 9 April 2027)"), "{text}");
        let unpaused = serde_json::to_string(&pages[1]).unwrap();
        assert!(!unpaused.contains("resume") && unpaused.contains("No issue has themes yet"), "{unpaused}");
    }
}
