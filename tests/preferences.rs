//! The reader's side of themes over real HTTP: the subscribe form's theme checkboxes, and the
//! preferences page behind the signed link in every email (themes, pause, resume, a change of
//! address confirmed from a link mailed to the new address through a real SMTP sink, unsubscribe);
//! then the same in headless Chromium with real clicks, checked by axe-core at desktop width and at
//! 375 px.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::web::{Reply, Running, get, http, link_path, post_form, wait_for_mail};
use common::{Project, Sink};
use gazette::server::{Options, Rate};
use gazette::store::{Purpose, Status, TokenKey, address_token};
use gazette::themes::{RecentTheme, ThemeChoice};
use serde_json::{Value, json};

/// The themes the service offers (those of the example digests' recent issues): at least three.
fn offered(s: &Running) -> Vec<RecentTheme> {
    let themes = s.app.offered_themes().to_vec();
    assert!(themes.len() >= 3, "the example digests' recent issues have themes: {themes:?}");
    themes
}

fn key(s: &Running) -> TokenKey {
    let store = s.app.store().clone();
    s.rt.block_on(async move { store.token_key().await.unwrap() })
}

fn set_themes(s: &Running, id: i64, names: &[&str]) {
    let store = s.app.store().clone();
    let choice = ThemeChoice::from_names(names).unwrap();
    s.rt.block_on(async move { store.set_themes(id, choice.as_ref()).await.unwrap() });
}

fn slugs(s: &Running, id: i64) -> Option<Vec<String>> {
    s.subscriber(id).themes.map(|c| c.slugs().map(str::to_string).collect())
}

/// A form body: `pairs` URL-encoded.
fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// A date as the pages write it.
fn day(t: chrono::DateTime<Utc>) -> String {
    t.format("%A %-d %B %Y").to_string()
}

/// Options whose rate limits these tests, which post many times from one client, stay under.
fn roomy() -> Options {
    let generous = Rate { burst: 100, every: Duration::from_secs(1) };
    Options { per_client: generous, overall: generous, ..Options::default() }
}

fn checkbox(slug: &str, checked: bool) -> String {
    format!(r#"id="theme-{slug}" name="themes" value="{slug}"{}>"#, if checked { " checked" } else { "" })
}

#[test]
fn themes_pause_and_resume_change_on_post_only_and_say_what_changed() {
    let p = Project::new("");
    let s = Running::start(&p, Options::default());
    let themes = offered(&s);
    let (a, b, c) = (&themes[0], &themes[1], &themes[2]);
    let id = s.add("ada@example.org", Status::Active);
    let path = format!("/preferences/{}", s.token(id, Purpose::Preferences));
    let unsubscribe = s.token(id, Purpose::Unsubscribe);

    let page = get(s.addr, &path);
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    for shown in [
        "What Signals Weekly sends to ada@example.org.",
        "You receive every theme.",
        "<legend>Themes you receive</legend>",
        "Tick none to receive every theme",
        &checkbox(&a.slug, false),
        &format!("{} <span class=\"meta\">({} recent digest", a.name, a.digests),
        r#"<select id="weeks" name="weeks">"#,
        r#"<input type="hidden" name="action" value="pause">"#,
        r#"<input id="new-email" name="email" type="email""#,
        &format!(r#"<form method="post" action="https://signals.example.org/unsubscribe/{unsubscribe}">"#),
    ] {
        assert!(page.body.contains(shown), "the page shows {shown:?}:\n{}", page.body);
    }
    assert_eq!(page.body.matches("<option value=").count(), 12, "a pause of 1 to 12 weeks");
    assert!(!page.body.contains("Resume now"), "not paused");

    // A GET changes nothing, whatever its query says.
    let before = s.subscriber(id);
    assert_eq!(get(s.addr, &format!("{path}?action=pause&weeks=3")).status, 200);
    assert_eq!(get(s.addr, &format!("{path}?action=themes&themes={}", a.slug)).status, 200);
    assert_eq!(s.subscriber(id), before, "a GET changed the subscriber");

    // Two themes ticked: stored, said, and ticked on the page that answers.
    let r = post_form(s.addr, &path, &form(&[("action", "themes"), ("themes", &a.slug), ("themes", &b.slug)]), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let mut names = [a.name.as_str(), b.name.as_str()];
    names.sort_by_key(|n| gazette::render::slug(n));
    assert!(r.body.contains(&format!("You now receive: {}, {}.", names[0], names[1])), "{}", r.body);
    assert!(r.body.contains(r#"role="status""#), "the change is announced");
    assert!(r.body.contains(&checkbox(&a.slug, true)) && r.body.contains(&checkbox(&c.slug, false)), "{}", r.body);
    let mut want = vec![a.slug.clone(), b.slug.clone()];
    want.sort();
    assert_eq!(slugs(&s, id), Some(want.clone()));

    // A theme that is not offered is refused, naming it, and nothing changes.
    let r = post_form(s.addr, &path, &form(&[("action", "themes"), ("themes", &c.slug), ("themes", "made-up")]), &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("&quot;made-up&quot; is not one of the themes offered"), "{}", r.body);
    assert!(r.body.contains(&checkbox(&c.slug, true)), "the boxes stay as sent: {}", r.body);
    assert_eq!(slugs(&s, id), Some(want));

    // None ticked: every theme.
    let r = post_form(s.addr, &path, "action=themes", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("You now receive every theme."), "{}", r.body);
    assert_eq!(slugs(&s, id), None);

    // A pause of three weeks, shown with its end; out-of-range pauses are refused.
    let asked = Utc::now();
    let r = post_form(s.addr, &path, "action=pause&weeks=3", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let until = s.subscriber(id).paused_until.expect("paused");
    let ahead = until - asked;
    assert!(
        ahead >= chrono::Duration::days(21) - chrono::Duration::seconds(5)
            && ahead <= chrono::Duration::days(21) + chrono::Duration::seconds(60),
        "paused for {ahead:?}"
    );
    assert!(r.body.contains(&format!("Paused until {}", day(until))), "{}", r.body);
    assert!(r.body.contains("Resume now") && r.body.contains(r#"value="resume""#), "{}", r.body);
    for weeks in ["0", "13", "-1", "three", ""] {
        let r = post_form(s.addr, &path, &form(&[("action", "pause"), ("weeks", weeks)]), &[]);
        assert_eq!(r.status, 400, "weeks={weeks}");
        assert!(r.body.contains("Choose a pause of 1 to 12 weeks"), "{}", r.body);
    }
    assert_eq!(s.subscriber(id).paused_until, Some(until), "a refused pause changes nothing");
    let page = get(s.addr, &path);
    assert!(page.body.contains(&format!("Paused until {}", day(until))), "the GET shows the pause too");

    let r = post_form(s.addr, &path, "action=resume", &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Resumed: the next issue goes to ada@example.org."), "{}", r.body);
    assert_eq!(s.subscriber(id).paused_until, None);

    // A form the page does not have.
    let r = post_form(s.addr, &path, "action=explode", &[]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("reload the page"), "{}", r.body);
}

#[test]
fn forged_links_are_not_found_and_only_active_readers_change_anything() {
    let p = Project::new("");
    let s = Running::start(&p, Options::default());
    let themes = offered(&s);
    let id = s.add("ada@example.org", Status::Active);
    let other = s.add("bob@example.org", Status::Active);
    let token = s.token(id, Purpose::Preferences);
    let (_, mac) = token.split_once('.').unwrap();
    let flipped = format!("{}{}", &token[..token.len() - 1], if token.ends_with('0') { '1' } else { '0' });
    for forged in [
        format!("{other}.{mac}"),
        flipped,
        token[..token.len() - 2].to_string(),
        s.token(id, Purpose::Unsubscribe),
        s.token(id, Purpose::Confirm),
        "garbage".to_string(),
    ] {
        let path = format!("/preferences/{forged}");
        let r = get(s.addr, &path);
        assert_eq!(r.status, 404, "GET {forged}");
        assert!(r.body.contains("This preferences link is not valid"), "{}", r.body);
        let r = post_form(s.addr, &path, &form(&[("action", "themes"), ("themes", &themes[0].slug)]), &[]);
        assert_eq!(r.status, 404, "POST {forged}");
    }
    assert_eq!(slugs(&s, id), None);
    assert_eq!(slugs(&s, other), None);

    // Unsubscribed or bounced: a page saying so, with a way back; nothing changes.
    s.rt.block_on(s.app.store().unsubscribe_by_id(id)).unwrap();
    let path = format!("/preferences/{token}");
    let r = get(s.addr, &path);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("ada@example.org is unsubscribed from Signals Weekly"), "{}", r.body);
    assert!(r.body.contains(r#"href="https://signals.example.org/subscribe""#), "{}", r.body);
    assert!(!r.body.contains("<form"), "{}", r.body);
    let r = post_form(s.addr, &path, "action=pause&weeks=2", &[]);
    assert_eq!(r.status, 409);
    assert_eq!(s.subscriber(id).paused_until, None);
    s.rt.block_on(s.app.store().set_status(other, Status::Bounced)).unwrap();
    let r = get(s.addr, &format!("/preferences/{}", s.token(other, Purpose::Preferences)));
    assert!(r.body.contains("its mail server refused the issues"), "{}", r.body);
}

#[test]
fn an_address_change_waits_for_the_link_mailed_to_the_new_address() {
    let sink = Sink::start(&[]);
    let p = Project::new(&sink.smtp_config());
    let s = Running::start(&p, roomy());
    let id = s.add("ada@example.org", Status::Active);
    s.add("bob@example.org", Status::Active);
    let path = format!("/preferences/{}", s.token(id, Purpose::Preferences));
    let ask = |email: &str| post_form(s.addr, &path, &form(&[("action", "address"), ("email", email)]), &[]);

    // Refused: another subscriber's address, the reader's own, and no address at all.
    let r = ask("Bob@Example.org");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("Bob@Example.org belongs to another subscription to Signals Weekly"), "{}", r.body);
    let r = ask("ADA@example.org");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("ADA@example.org is already the address issues go to"), "{}", r.body);
    let r = ask("not-an-address");
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("`not-an-address` is not a valid email address")
            && r.body.contains(r#"value="not-an-address""#),
        "{}",
        r.body
    );

    // Asked: a link goes to the new address; the old one stays until it is used.
    let r = ask("ada.new@example.org");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body
            .contains("A confirmation link is on its way to ada.new@example.org. Issues keep going to ada@example.org"),
        "{}",
        r.body
    );
    let mail = wait_for_mail(&sink, "ada.new@example.org", 1);
    assert_eq!(mail.len(), 1);
    assert!(mail[0].subject.contains("Confirm your new address for Signals Weekly"), "{}", mail[0].subject);
    assert!(mail[0].raw.contains("instead of ada@example.org"), "{}", mail[0].raw);
    let first = link_path(&mail[0], "/address/");
    assert_eq!(s.subscriber(id).email, "ada@example.org");
    let page = get(s.addr, &first);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("receive Signals Weekly at ada.new@example.org instead of ada@example.org")
            && page.body.contains(r#"<button type="submit">"#),
        "{}",
        page.body
    );
    assert_eq!(s.subscriber(id).email, "ada@example.org", "a GET changes nothing");

    // Forged links: another subscriber, another request, another address, an altered MAC.
    let token = first.trim_start_matches("/address/");
    let (ids, mac) = token.rsplit_once('.').unwrap();
    let (_, change) = ids.split_once('.').unwrap();
    let change: i64 = change.parse().unwrap();
    let flipped = format!("{}{}", &token[..token.len() - 1], if token.ends_with('0') { '1' } else { '0' });
    for forged in [
        format!("{}.{change}.{mac}", id + 1),
        format!("{id}.{}.{mac}", change + 1),
        address_token(&key(&s), id, change, "mallory@example.org"),
        flipped,
        s.token(id, Purpose::Preferences),
    ] {
        for method in ["GET", "POST"] {
            let r = http(s.addr, method, &format!("/address/{forged}"), &[], b"");
            assert_eq!(r.status, 404, "{method} {forged}: {}", r.body);
        }
    }
    assert_eq!(s.subscriber(id).email, "ada@example.org");

    // A second request supersedes the first, whose link is then refused, saying so.
    assert_eq!(ask("ada.other@example.org").status, 200);
    let second = link_path(&wait_for_mail(&sink, "ada.other@example.org", 1)[0], "/address/");
    let r = post_form(s.addr, &first, "", &[]);
    assert_eq!(r.status, 410, "{}", r.body);
    assert!(r.body.contains("replaced by a later request"), "{}", r.body);
    assert_eq!(s.subscriber(id).email, "ada@example.org");

    // The address is taken before its link is used: refused, saying so.
    s.add("Ada.Other@example.org", Status::Active);
    let r = post_form(s.addr, &second, "", &[]);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("ada.other@example.org has been taken by another subscription"), "{}", r.body);
    assert_eq!(s.subscriber(id).email, "ada@example.org");

    // A third, used: the subscription moves, the old address is free; using it again is fine.
    assert_eq!(ask("Ada.Third@example.org").status, 200);
    let third = link_path(&wait_for_mail(&sink, "Ada.Third@example.org", 1)[0], "/address/");
    let r = post_form(s.addr, &third, "", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("Signals Weekly now goes to Ada.Third@example.org. ada@example.org receives no more issues."),
        "{}",
        r.body
    );
    assert_eq!(s.subscriber(id).email, "Ada.Third@example.org");
    assert_eq!(s.subscriber(id).status, Status::Active);
    assert_eq!(s.status_of("ada@example.org"), None);
    assert_eq!(s.status_of("ada.third@example.org"), Some(Status::Active));
    assert_eq!(post_form(s.addr, &third, "", &[]).status, 200);
    // The preferences link still works, for the new address.
    let page = get(s.addr, &path);
    assert!(page.body.contains("What Signals Weekly sends to Ada.Third@example.org."), "{}", page.body);
}

#[test]
fn address_changes_are_rate_limited_and_the_other_forms_are_not() {
    let sink = Sink::start(&[]);
    let p = Project::new(&sink.smtp_config());
    let minute = Duration::from_secs(60);
    let options = Options {
        per_client: Rate { burst: 2, every: minute },
        overall: Rate { burst: 100, every: minute },
        ..Options::default()
    };
    let s = Running::start(&p, options);
    let id = s.add("ada@example.org", Status::Active);
    let path = format!("/preferences/{}", s.token(id, Purpose::Preferences));
    let ask = |n: usize| {
        let body = form(&[("action", "address"), ("email", &format!("new{n}@example.org"))]);
        post_form(s.addr, &path, &body, &[("X-Forwarded-For", "192.0.2.7")])
    };
    assert_eq!(ask(1).status, 200);
    assert_eq!(ask(2).status, 200);
    let r = ask(3);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some_and(|w| w.parse::<u64>().unwrap() > 0));
    assert_eq!(wait_for_mail(&sink, "new2@example.org", 1).len(), 1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink.messages().iter().all(|m| m.rcpt != "new3@example.org"), "a refused request sends nothing");
    let r = post_form(s.addr, &path, "action=pause&weeks=1", &[("X-Forwarded-For", "192.0.2.7")]);
    assert_eq!(r.status, 200, "a pause sends no mail and is not limited");
}

/// The answer to a subscribe, with the address taken out: the same for every address.
fn answer_without(r: &Reply, email: &str) -> (u16, String) {
    (r.status, r.body.replace(email, "ADDRESS"))
}

#[test]
fn the_subscribe_form_stores_ticked_themes_for_new_readers_and_leaves_active_ones_alone() {
    let sink = Sink::start(&[]);
    let p = Project::new(&sink.smtp_config());
    let s = Running::start(&p, roomy());
    let themes = offered(&s);
    let (a, b, c) = (&themes[0], &themes[1], &themes[2]);

    let page = get(s.addr, "/subscribe");
    assert_eq!(page.status, 200);
    for shown in [
        "<fieldset",
        "<legend>Themes (optional)</legend>",
        "Tick none to receive every theme",
        &checkbox(&a.slug, false),
        &format!("{} <span class=\"meta\">({} recent digests)</span>", a.name, a.digests),
    ] {
        assert!(page.body.contains(shown), "the form shows {shown:?}:\n{}", page.body);
    }
    assert_eq!(page.body.matches(r#"type="checkbox""#).count(), themes.len(), "one box per recent theme");

    // A new reader with two themes ticked: stored with the pending subscription.
    let subscribe = |email: &str, ticked: &[&str]| {
        let mut pairs = vec![("email", email)];
        pairs.extend(ticked.iter().map(|t| ("themes", *t)));
        post_form(s.addr, "/subscribe", &form(&pairs), &[])
    };
    let new = subscribe("new@example.org", &[&a.slug, &b.slug]);
    assert_eq!(new.status, 200, "{}", new.body);
    let new_id = s.add("new@example.org", Status::Pending); // already there: its id
    assert_eq!(s.subscriber(new_id).status, Status::Pending);
    let mut two = vec![a.slug.clone(), b.slug.clone()];
    two.sort();
    assert_eq!(slugs(&s, new_id), Some(two.clone()));
    // Asked again while pending: the latest choice counts.
    assert_eq!(subscribe("new@example.org", &[&c.slug]).status, 200);
    assert_eq!(slugs(&s, new_id), Some(vec![c.slug.clone()]));

    // An active reader's themes stay as they are, and the answer is the same as for anyone.
    let active = s.add("active@example.org", Status::Active);
    set_themes(&s, active, &[&c.name]);
    let r = subscribe("active@example.org", &[&a.slug, &b.slug]);
    assert_eq!(answer_without(&r, "active@example.org"), answer_without(&new, "new@example.org"));
    assert_eq!(slugs(&s, active), Some(vec![c.slug.clone()]));
    let r = subscribe("active@example.org", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(slugs(&s, active), Some(vec![c.slug.clone()]), "ticking none changes nothing either");

    // An unsubscribed reader coming back (through a new confirmation) chooses afresh.
    let gone = s.add("gone@example.org", Status::Active);
    set_themes(&s, gone, &[&c.name]);
    s.rt.block_on(s.app.store().unsubscribe_by_id(gone)).unwrap();
    assert_eq!(subscribe("gone@example.org", &[&a.slug]).status, 200);
    assert_eq!(slugs(&s, gone), Some(vec![a.slug.clone()]));
    assert_eq!(s.status_of("gone@example.org"), Some(Status::Unsubscribed), "until the new link is used");

    // JSON names the themes.
    let body = json!({"email": "json@example.org", "themes": [a.name, b.name]}).to_string();
    let r = http(s.addr, "POST", "/subscribe", &[("Content-Type", "application/json")], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.body);
    let json_id = s.add("json@example.org", Status::Pending);
    assert_eq!(slugs(&s, json_id), Some(two));

    // A theme not offered is refused, naming it, with the form as sent; nothing is stored.
    let r = subscribe("odd@example.org", &[&a.slug, "no-such-theme"]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("&quot;no-such-theme&quot; is not one of the themes offered"), "{}", r.body);
    assert!(r.body.contains(&checkbox(&a.slug, true)) && r.body.contains(r#"value="odd@example.org""#), "{}", r.body);
    assert_eq!(s.status_of("odd@example.org"), None);
    let body = json!({"email": "odd@example.org", "themes": ["Astrology"]}).to_string();
    let r = http(s.addr, "POST", "/subscribe", &[("Content-Type", "application/json")], body.as_bytes());
    assert_eq!(r.status, 400);
    let message: Value = serde_json::from_str(&r.body).unwrap();
    assert!(
        message["message"].as_str().unwrap().contains("\"Astrology\" is not one of the themes offered"),
        "{}",
        r.body
    );
    assert_eq!(s.status_of("odd@example.org"), None);
}

// ---------------------------------------------------------------------------------------------
// In headless Chromium

/// Where .ci/run installs axe-core (as tests/reader.rs looks for it).
fn axe_path() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("AXE_CORE_JS") {
        return p.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    cache.join("gazette-npm/node_modules/axe-core/axe.min.js")
}

/// Runs tests/browser.py with `steps`; returns their outputs.
fn browse(chromium: &str, steps: Vec<Value>) -> Vec<Value> {
    let out = std::process::Command::new("python3")
        .arg(common::repo().join("tests/browser.py"))
        .arg(Value::Array(steps).to_string())
        .env("CHROMIUM", chromium)
        .output()
        .unwrap();
    assert!(out.status.success(), "browser.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What is wrong with a page from its overflow and axe-core outputs: one line per problem.
fn problems(page: &str, overflow: &Value, axe: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let (width, scroll) = (overflow["width"].as_u64().unwrap(), overflow["scroll_width"].as_u64().unwrap());
    if scroll > width {
        found.push(format!("{page}: {scroll} px wide on a {width} px screen"));
    }
    for e in overflow["offenders"].as_array().unwrap() {
        found.push(format!("{page}: passes the right edge: {}", e.as_str().unwrap()));
    }
    for v in axe.as_array().expect("axe-core ran") {
        found.push(format!(
            "{page}: axe {} ({}): {}; {} at {}",
            v["id"], v["impact"], v["help"], v["why"], v["targets"]
        ));
    }
    found
}

/// A reader ticks two themes on the subscribe form, types an address and submits; another, on the
/// preferences page, changes themes and pauses for three weeks through the select. Real clicks and
/// keys; axe-core finds nothing on either page, at desktop width and at 375 px, and nothing passes
/// the screen's right edge.
#[test]
fn a_reader_chooses_themes_and_pauses_in_a_real_browser_on_pages_axe_finds_nothing_on() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let axe = axe_path();
    let present = std::path::Path::new(&chromium).exists() && axe.exists() && common::python_with(&["json"]).is_some();
    let what =
        format!("the browser test of the preferences page needs {chromium}, python3 and axe-core ({})", axe.display());
    if !common::needs(present, &what) {
        return;
    }
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let p = Project::new("");
    let s = Running::start(&p, Options::default());
    let themes = offered(&s);
    let (a, b) = (&themes[0], &themes[themes.len() - 1]);
    let base = format!("http://{}", s.addr);
    let desktop = json!({"desktop": {"width": 1280, "height": 900}});
    let phone = json!({"device": {"width": 375, "height": 812, "scale": 1}});
    let checks = || [json!({"overflow": true}), json!({"axe": axe})];

    // The subscribe form: two themes ticked by clicks, an address typed, the button clicked.
    let [overflow, axe_run] = checks();
    let out = browse(
        &chromium,
        vec![
            desktop.clone(),
            json!({"visit": format!("{base}/subscribe")}),
            overflow,
            axe_run,
            json!({"click": format!("#theme-{}", a.slug)}),
            json!({"click": format!("#theme-{}", b.slug)}),
            json!({"click": "#email"}),
            json!({"type": "chooser@example.org"}),
            json!({"screenshot": shots.join("subscribe-themes.png"), "full_page": true}),
            json!({"click": "form button[type=submit]", "navigates": true}),
            json!({"text": true}),
        ],
    );
    let mut found = problems("the subscribe form at 1280 px", &out[0], &out[1]);
    assert!(out[2].as_str().unwrap().contains("Check your inbox"), "{}", out[2]);
    let chooser = s.add("chooser@example.org", Status::Pending);
    let mut two = vec![a.slug.clone(), b.slug.clone()];
    two.sort();
    assert_eq!(slugs(&s, chooser), Some(two), "the two ticked themes were stored");

    // The preferences page of an active reader: a theme ticked and saved, then a pause chosen.
    let reader = s.add("reader@example.org", Status::Active);
    let prefs = format!("{base}/preferences/{}", s.token(reader, Purpose::Preferences));
    let [overflow, axe_run] = checks();
    let [overflow2, axe_run2] = checks();
    let out = browse(
        &chromium,
        vec![
            desktop,
            json!({"visit": prefs}),
            overflow,
            axe_run,
            json!({"click": format!("#theme-{}", a.slug)}),
            json!({"click": "#themes-submit", "navigates": true}),
            json!({"text": true}),
            json!({"select": "#weeks", "value": "3"}),
            json!({"click": "#pause-submit", "navigates": true}),
            json!({"text": true}),
            json!({"screenshot": shots.join("preferences.png"), "full_page": true}),
            overflow2,
            axe_run2,
        ],
    );
    found.extend(problems("the preferences page at 1280 px", &out[0], &out[1]));
    assert!(out[2].as_str().unwrap().contains(&format!("You now receive: {}.", a.name)), "{}", out[2]);
    assert_eq!(slugs(&s, reader), Some(vec![a.slug.clone()]));
    let until = s.subscriber(reader).paused_until.expect("paused through the page");
    let ahead = until - Utc::now();
    assert!(ahead > chrono::Duration::days(20) && ahead <= chrono::Duration::days(21), "{ahead:?}");
    assert!(out[3].as_str().unwrap().contains(&format!("Paused until {}", day(until))), "{}", out[3]);
    found.extend(problems("the preferences page, paused, at 1280 px", &out[4], &out[5]));

    // The same pages on a phone.
    let [o1, a1] = checks();
    let [o2, a2] = checks();
    let out = browse(
        &chromium,
        vec![
            phone,
            json!({"visit": format!("{base}/subscribe")}),
            o1,
            a1,
            json!({"visit": prefs}),
            json!({"screenshot": shots.join("preferences-phone.png"), "full_page": true}),
            o2,
            a2,
        ],
    );
    found.extend(problems("the subscribe form at 375 px", &out[0], &out[1]));
    found.extend(problems("the preferences page at 375 px", &out[2], &out[3]));
    eprintln!("screenshots: {}", shots.display());
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// A new issue's themes reach the forms without a restart: the service reads them again once the
/// publication record changes, and not before.
#[test]
fn a_new_issues_themes_are_offered_without_a_restart() {
    let p = Project::with_own_digests("");
    let s = Running::start(&p, Options::default());
    let has_tidal = |s: &Running| s.app.offered_themes().iter().any(|t| t.slug == "tidal-power");
    assert!(!has_tidal(&s));
    // A digest of a later week (long due) whose only theme is new.
    let model = std::fs::read_to_string(p.path("digests/059_1d344c7fec7326af.txt")).unwrap();
    let (head, rest) = model.split_once("## Themes").unwrap();
    let after = &rest[rest.find("\n## ").unwrap()..];
    let text = format!("{}## Themes\n\n* Tidal power\n{after}", head.replace("20230819", "20230829"));
    std::fs::write(p.path("digests/100_0123456789abcdef.txt"), text).unwrap();
    let refresh = |s: &Running| {
        let app = s.app.clone();
        s.rt.block_on(async move { gazette::server::refresh_themes_once(&app, Utc::now()).await.unwrap() })
    };
    assert!(!refresh(&s), "the record has not changed: the digests are not read again");
    assert!(!has_tidal(&s));
    p.expect(0, &["build"]);
    assert!(refresh(&s), "the record changed: the themes are read again");
    let themes = s.app.offered_themes();
    let tidal = themes.iter().find(|t| t.slug == "tidal-power").expect("the new issue's theme is offered");
    assert_eq!((tidal.name.as_str(), tidal.digests), ("Tidal power", 1));
    assert!(get(s.addr, "/subscribe").body.contains(&checkbox("tidal-power", false)));
    assert!(!refresh(&s), "read once per change");
}

/// `gazette serve` itself logs each change by subscriber id: never an address, never a token.
#[test]
fn the_log_names_readers_by_id_and_shows_neither_addresses_nor_tokens() {
    let sink = Sink::start(&[]);
    let p = Project::new(&sink.smtp_config());
    let reader = p.import_readers(1).remove(0);
    let list: Value = serde_json::from_str(&p.expect(0, &["subscribers", "list", "--format", "json"])).unwrap();
    let id = list[0]["id"].as_i64().unwrap();
    // The secret tests/common gives the binary.
    let key = TokenKey::from_secret(b"test-secret-0123456789abcdef0123456789".to_vec()).unwrap();
    let token = gazette::store::sign_token(&key, id, Purpose::Preferences);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port()).parse().unwrap();
    let mut child =
        p.command(&["serve", "--listen", &addr.to_string()]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "gazette serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let path = format!("/preferences/{token}");
    let theme = get(addr, "/subscribe").body;
    let slug = theme
        .split(r#"name="themes" value=""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a theme box")
        .to_string();
    assert_eq!(post_form(addr, &path, &form(&[("action", "themes"), ("themes", &slug)]), &[]).status, 200);
    assert_eq!(post_form(addr, &path, "action=pause&weeks=2", &[]).status, 200);
    assert_eq!(post_form(addr, &path, "action=address&email=moved%40example.org", &[]).status, 200);
    let mail = wait_for_mail(&sink, "moved@example.org", 1);
    // Without a reverse proxy, `serve` writes its links for the address it listens on.
    let raw = mail[0].raw.replace("=\r\n", "").replace("=\n", "");
    let link: String =
        raw[raw.find("/address/").expect("an address link")..].chars().take_while(|c| !c.is_whitespace()).collect();
    assert_eq!(post_form(addr, &link, "", &[]).status, 200);

    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    for line in [
        "POST /preferences/{token} 200".to_string(),
        "POST /address/{token} 200".to_string(),
        format!("subscriber {id} now receives 1 theme"),
        format!("subscriber {id} paused for 2 weeks"),
        format!("subscriber {id} asked to change address: confirmation mail on its way"),
        format!("subscriber {id} changed address"),
    ] {
        assert!(log.contains(&line), "the log says {line:?}:\n{log}");
    }
    let address_token = link.trim_start_matches("/address/");
    for secret in [reader.as_str(), "moved@example.org", token.as_str(), address_token] {
        assert!(!log.contains(secret), "the log shows {secret:?}:\n{log}");
    }
}

/// A host that serves the archive without the digests still serves the forms, without themes, and
/// offers them once the digests can be read.
#[test]
fn without_the_digests_the_forms_offer_no_themes_until_they_can_be_read() {
    let p = Project::with_own_digests("");
    p.expect(0, &["build"]);
    std::fs::rename(p.path("digests"), p.path("digests.away")).unwrap();
    let s = Running::start(&p, Options::default());
    assert!(s.app.offered_themes().is_empty());
    let page = get(s.addr, "/subscribe");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<fieldset") && page.body.contains(r#"id="email""#), "{}", page.body);
    let r = post_form(s.addr, "/subscribe", "email=early%40example.org&themes=energy", &[]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("no issue has themes yet"), "{}", r.body);
    std::fs::rename(p.path("digests.away"), p.path("digests")).unwrap();
    let app = s.app.clone();
    assert!(s.rt.block_on(async move { gazette::server::refresh_themes_once(&app, Utc::now()).await.unwrap() }));
    offered(&s);
    assert!(get(s.addr, "/subscribe").body.contains("<fieldset"));
}

/// The whole way of a reader who chooses, in headless Chromium with real clicks: two themes ticked
/// on the subscribe form, the confirmation link opened and its button pressed, the welcome
/// received; the next issue's email (sent by `gazette send` to a real SMTP sink) holds the
/// digests of those two themes and nothing else; then, from that email's preferences link, one
/// theme dropped and a pause of two weeks chosen, on a page axe-core finds nothing on at 375 px.
#[test]
fn a_reader_subscribes_with_two_themes_gets_the_welcome_then_only_those_themes_and_changes_them() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let axe = axe_path();
    let present = std::path::Path::new(&chromium).exists() && axe.exists() && common::python_with(&["json"]).is_some();
    if !common::needs(
        present,
        &format!("the reader's journey needs {chromium}, python3 and axe-core ({})", axe.display()),
    ) {
        return;
    }
    let sink = Sink::start(&[]);
    let p = Project::new(&sink.smtp_config());
    let s = Running::start(&p, roomy());
    let base = format!("http://{}", s.addr);

    // The week sent next, and two offered themes that take some of its digests and leave others.
    let week = chrono::NaiveDate::from_ymd_opt(2023, 7, 17).unwrap();
    let digests: Vec<_> = common::digest_facts(&common::repo().join("digests"))
        .into_iter()
        .filter(|d| d.date >= week && d.date < week + chrono::Duration::days(7))
        .collect();
    let slug = |name: &str| gazette::render::slug(name);
    let takes = |chosen: &[&RecentTheme]| -> std::collections::BTreeSet<String> {
        digests
            .iter()
            .filter(|d| d.themes.iter().any(|t| chosen.iter().any(|c| c.slug == slug(t))))
            .map(|d| d.link.clone())
            .collect()
    };
    let themes = offered(&s);
    let (a, b) = themes
        .iter()
        .flat_map(|a| themes.iter().map(move |b| (a, b)))
        .find(|(a, b)| {
            a.slug < b.slug && !takes(&[a]).is_empty() && !takes(&[b]).is_empty() && {
                let n = takes(&[a, b]).len();
                n > takes(&[a]).len() && n < digests.len()
            }
        })
        .expect("two offered themes that take some of the week's digests and not all");
    let expected = takes(&[a, b]);

    // Subscribe with the two themes, by clicks.
    let address = "chooser@example.org";
    let out = browse(
        &chromium,
        vec![
            json!({"visit": format!("{base}/subscribe")}),
            json!({"click": format!("#theme-{}", a.slug)}),
            json!({"click": format!("#theme-{}", b.slug)}),
            json!({"click": "#email"}),
            json!({"type": address}),
            json!({"click": "form button[type=submit]", "navigates": true}),
            json!({"text": true}),
        ],
    );
    assert!(out[0].as_str().unwrap().contains("Check your inbox"), "{}", out[0]);

    // The confirmation link, opened and confirmed in the browser; the welcome follows, once.
    let confirmation = wait_for_mail(&sink, address, 1);
    assert_eq!(confirmation.len(), 1, "one confirmation mail");
    let out = browse(
        &chromium,
        vec![
            json!({"visit": format!("{base}{}", common::web::confirm_path(&confirmation[0]))}),
            json!({"click": "form button[type=submit]", "navigates": true}),
            json!({"text": true}),
        ],
    );
    assert!(out[0].as_str().unwrap().contains("You are subscribed"), "{}", out[0]);
    let mail = wait_for_mail(&sink, address, 2);
    let welcomes: Vec<_> = mail.iter().filter(|m| m.subject.starts_with("Welcome to")).collect();
    assert_eq!(welcomes.len(), 1, "one welcome: {:?}", mail.iter().map(|m| &m.subject).collect::<Vec<_>>());
    let id = s.app.store().clone();
    let id = s.rt.block_on(async move { id.subscriber_by_email(&address.parse().unwrap()).await.unwrap().unwrap() });
    assert_eq!(id.status, Status::Active);

    // The next issue: the reader's copy holds exactly the digests of the two themes. The send signs
    // its links with the key the service uses (the database's: no GAZETTE_SECRET for either).
    let sent = p.command(&["send", "--week", "2023-07-23"]).env_remove("GAZETTE_SECRET").output().unwrap();
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    let issue: Vec<_> = wait_for_mail(&sink, address, 3).into_iter().filter(|m| m.subject.contains('#')).collect();
    assert_eq!(issue.len(), 1, "one issue message");
    let parsed = mail_parser::MessageParser::default().parse(issue[0].raw.as_bytes()).unwrap();
    let html = parsed.body_html(0).unwrap().into_owned();
    let present: std::collections::BTreeSet<String> =
        digests.iter().map(|d| d.link.clone()).filter(|l| html.contains(&format!("href=\"{l}\""))).collect();
    assert_eq!(present, expected, "the issue holds the digests of {} and {} only", a.name, b.name);
    assert!(html.contains("Only the themes you follow:"), "the email says it holds the reader's themes only");

    // From the issue's preferences link: drop one theme, then pause for two weeks.
    let prefs = link_path(&issue[0], "/preferences/");
    let [overflow, axe_run] = [json!({"overflow": true}), json!({"axe": axe})];
    let out = browse(
        &chromium,
        vec![
            json!({"device": {"width": 375, "height": 812, "scale": 1}}),
            json!({"visit": format!("{base}{prefs}")}),
            json!({"text": true}),
            overflow,
            axe_run,
            json!({"click": format!("#theme-{}", a.slug)}),
            json!({"click": "#themes-submit", "navigates": true}),
            json!({"text": true}),
            json!({"select": "#weeks", "value": "2"}),
            json!({"click": "#pause-submit", "navigates": true}),
            json!({"text": true}),
        ],
    );
    assert!(out[0].as_str().unwrap().contains(address), "the page names the reader: {}", out[0]);
    let found = problems("the preferences page from the issue, at 375 px", &out[1], &out[2]);
    assert!(found.is_empty(), "{}", found.join("\n"));
    assert!(out[3].as_str().unwrap().contains(&format!("You now receive: {}.", b.name)), "{}", out[3]);
    let now = s.subscriber(id.id);
    assert_eq!(now.themes.map(|c| c.slugs().map(str::to_string).collect::<Vec<_>>()), Some(vec![b.slug.clone()]));
    let ahead = now.paused_until.expect("paused from the page") - Utc::now();
    assert!(ahead > chrono::Duration::days(13) && ahead <= chrono::Duration::days(14), "{ahead:?}");
    assert!(out[4].as_str().unwrap().contains("Paused until"), "{}", out[4]);
}
