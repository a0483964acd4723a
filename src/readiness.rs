//! `gazette check`'s question: would `build`, `preview`, `send` and `run` go through? Everything
//! they would refuse is found here, each as one line naming the file, line or key to fix:
//! digest problems, template errors (a required placeholder included), emails Gmail would clip,
//! the DKIM key, the token secret, the SMTP password, and (with a real relay) the placeholders of
//! `gazette init` that must not reach readers. `send` and `run` ask `ready_for_readers`, the same rule.
//! It also warns about themes readers follow that no recent digest carries (a renamed theme leaves
//! its readers with nothing), without counting them as problems.

use chrono::{DateTime, Utc};

use crate::build_cache::CacheUse;
use crate::config::{Config, SmtpTarget};
use crate::deliver::{self, Transport};
use crate::error::ExitError;
use crate::project::{self, Project};
use crate::render;
use crate::store::{SECRET_VAR, TokenKey};

/// How bad a finding is: content problems hold back the issues they touch; configuration
/// problems stop Gazette from working at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Content,
    Config,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub severity: Severity,
    pub text: String,
}

#[derive(Debug, Default)]
pub struct Readiness {
    pub findings: Vec<Finding>,
    /// Digest problems, and how many files they are in.
    pub digest_problems: usize,
    pub broken_files: usize,
    pub digests: usize,
    pub issues: usize,
    pub published: usize,
    pub drafts: usize,
    /// Issues whose email had to be shortened to fit `[email] max_html_kb`, each with how: not
    /// problems, but an editor wants to know what readers of the email miss.
    pub shortened: Vec<String>,
    /// Other things to know before going on, not problems.
    pub notes: Vec<String>,
    /// Files of the digests folder that are not read as digests, each with why: not problems (the
    /// folder may hold other files), but a digest saved under a wrong name would be missed.
    pub unread: Vec<String>,
    /// Themes active readers follow that no digest of the recent issues carries, each with how
    /// many follow it: not problems (a theme may come back), but a renamed theme reaches no one.
    pub themes: Vec<String>,
}

impl Readiness {
    /// The worst finding, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    fn add(&mut self, severity: Severity, text: impl Into<String>) {
        let text = text.into();
        // One broken template fails every issue alike: say it once.
        if !self.findings.iter().any(|f| f.text == text) {
            self.findings.push(Finding { severity, text });
        }
    }
}

/// Checks the project at `config` as it would be used at `now`. Only an unreadable digests folder
/// is an error; everything else is a finding.
pub async fn check(config: &Config, now: DateTime<Utc>) -> anyhow::Result<Readiness> {
    let mut r = Readiness::default();
    let loaded = Project::load_if_recorded(config.clone(), now, CacheUse::Read).await;
    // Without a project (a template is broken), the digests are read on their own: their problems
    // are listed all the same, and an unreadable folder is an error.
    let problems = match &loaded {
        Ok(project) => project.problems.clone(),
        Err(_) => project::read_digests(config, &project::week_rule(config), CacheUse::Read)?.0.problems,
    };
    let mut files: Vec<_> = problems.iter().map(|p| &p.path).collect();
    files.dedup();
    r.broken_files = files.len();
    r.digest_problems = problems.len();
    for p in problems {
        r.add(Severity::Content, p.to_string());
    }
    // The folder was read above: listing it again cannot fail but for a race; then say nothing.
    r.unread = crate::digest::unread_files(&config.paths.digests)
        .unwrap_or_default()
        .into_iter()
        .map(|(path, why)| format!("warning: {} is not read: {why}", path.display()))
        .collect();
    match loaded {
        Err(e) => r.add(Severity::Config, format!("{e:#}")),
        Ok(project) => {
            check_rendering(&project, &mut r);
            if r.published == 0 {
                r.notes.push(feed_id_note(config));
            }
            // Looking creates no database: without one, no reader chose anything.
            if config.paths.database.exists() {
                match followed_themes(config, &project).await {
                    Ok(warnings) => r.themes = warnings,
                    Err(e) => r.add(Severity::Config, format!("{e:#}")),
                }
            }
        }
    }
    check_sending(config, &mut r);
    Ok(r)
}

/// Every issue's email (the placeholders it must carry, its size), the published archive and
/// feeds, and the web service's pages.
fn check_rendering(project: &Project, r: &mut Readiness) {
    let (config, templates) = (&project.config, &project.templates);
    r.digests = project.digest_count;
    r.issues = project.issues().len();
    r.published = project.published().len();
    r.drafts = r.issues - r.published;
    let issues: Vec<_> = project.issues().iter().collect();
    // The whole email, text part included: each part must carry its unsubscribe link.
    let sizes = render::par_map(&issues, |i| project.email(i).map(|e| (e.html.len(), e.shortened)));
    for (issue, size) in issues.iter().zip(sizes) {
        if let Ok((bytes, shortened)) = &size
            && let Some(report) = shortened.report(config.email.max_html_bytes, issue.digest_count())
        {
            r.shortened.push(format!(
                "issue #{} ({}): the email ({} KB) is {report}",
                issue.number,
                issue.id,
                bytes.div_ceil(1024)
            ));
        }
        match size {
            Err(e) => r.add(Severity::Config, e.to_string()),
            Ok((bytes, _)) if bytes > render::GMAIL_CLIP_BYTES => r.add(
                Severity::Content,
                format!(
                    "issue #{} ({}): the email's HTML is {} KB; Gmail clips messages over about 100 KB and hides the unsubscribe link",
                    issue.number,
                    issue.id,
                    bytes / 1024
                ),
            ),
            Ok(_) => {}
        }
    }
    // Whole, as `check` reads every digest anyway (the emails above).
    let published: anyhow::Result<Vec<_>> = project.published().into_iter().map(|i| project.whole_issue(i)).collect();
    let published = match published {
        Ok(published) => published,
        Err(e) => return r.add(Severity::Content, format!("{e:#}")),
    };
    // The newest page only (none without a published issue): the others render alike.
    let newest = published.last().map(|i| i.id.clone());
    if let Err(e) = render::render_site(config, templates, &published, newest.as_ref()) {
        r.add(Severity::Config, e.to_string());
    }
    if let Err(e) = crate::server::check_pages(config, templates) {
        r.add(Severity::Config, e.to_string());
    }
    check_welcome(project, r);
}

/// The welcome a confirmed reader receives, with the latest published issue's contents as
/// `serve` would send it: its template (a required placeholder included) and its size.
fn check_welcome(project: &Project, r: &mut Readiness) {
    let latest = project.published().last().copied();
    match render::render_welcome(&project.config, &project.templates, latest) {
        Err(e) => r.add(Severity::Config, e.to_string()),
        Ok(welcome) if latest.is_some() && welcome.shortened != render::Shortening::Whole => r.shortened.push(format!(
            "the welcome email leaves out the latest issue's contents to fit [email] max_html_kb = {}",
            project.config.email.max_html_bytes / 1024
        )),
        Ok(_) => {}
    }
}

/// The warnings about themes readers follow that recent digests do not carry.
async fn followed_themes(config: &Config, project: &Project) -> anyhow::Result<Vec<String>> {
    let store = crate::store::Store::open(&config.paths.database).await?;
    let choices = store.theme_choices().await;
    store.close().await;
    let looked_at = project.published().len().min(crate::themes::RECENT_ISSUES);
    Ok(themes_not_carried(&choices?, &project.recent_themes(), looked_at))
}

/// One warning per theme that active readers chose (`choices`, as `Store::theme_choices` gives
/// them) and no recent digest carries (`recent`, from the last `looked_at` published issues),
/// compared by slug, most followed first; then how many readers follow only such themes. Nothing
/// before the first publication: no digest has reached anyone yet.
pub fn themes_not_carried(
    choices: &[(Option<crate::themes::ThemeChoice>, i64)],
    recent: &[crate::themes::RecentTheme],
    looked_at: usize,
) -> Vec<String> {
    if looked_at == 0 {
        return Vec::new();
    }
    let carried = |slug: &str| recent.iter().any(|t| t.slug == slug);
    // slug -> (name as the most readers spell it, followers, readers of that spelling)
    let mut missing: std::collections::BTreeMap<&str, (&str, i64, i64)> = Default::default();
    let mut stranded = 0;
    for (choice, n) in choices {
        let Some(choice) = choice else { continue };
        for (slug, name) in choice.slugs().zip(choice.names()).filter(|(slug, _)| !carried(slug)) {
            let entry = missing.entry(slug).or_insert((name, 0, 0));
            entry.1 += n;
            if *n > entry.2 {
                (entry.0, entry.2) = (name, *n);
            }
        }
        if !choice.slugs().any(carried) {
            stranded += n;
        }
    }
    let issues = if looked_at == 1 { "the last issue".to_string() } else { format!("the last {looked_at} issues") };
    let readers = |n: i64| if n == 1 { "1 reader follows".to_string() } else { format!("{n} readers follow") };
    let mut missing: Vec<(&str, i64)> = missing.into_values().map(|(name, n, _)| (name, n)).collect();
    missing.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.to_lowercase().cmp(&b.0.to_lowercase())));
    let mut warnings: Vec<String> = missing
        .iter()
        .map(|(name, n)| {
            format!(
                "warning: {} the theme `{name}`, which no digest of {issues} carries: was it renamed? Readers who follow only such themes receive nothing.",
                readers(*n)
            )
        })
        .collect();
    if stranded > 0 {
        warnings.push(format!(
            "warning: {} only such themes, so their weeks are skipped; `gazette subscribers list --theme NAME` lists a theme's readers, and an import with a `themes` column changes their choice",
            readers(stranded)
        ));
    }
    warnings
}

/// Feed entry ids are tag URIs made from `base_url`'s host (`render::feeds`). They stay as they
/// are: changing how they are made would show every issue twice to the feed readers of projects
/// that already publish. So, before the first publication, the editor is told to fix the host now.
fn feed_id_note(config: &Config) -> String {
    format!(
        "nothing is published yet: feed entry ids are made from the host of [site] base_url ({}), so set it to its final value before the first publication; changing the host later makes feed readers show every issue twice",
        config.site.host()
    )
}

/// What `check --smtp` found.
pub enum SmtpCheck {
    /// No server: messages go to this folder.
    Outbox(std::path::PathBuf),
    /// Connected, encrypted and logged in as a send would.
    Ready { server: String, facts: crate::deliver::smtp::ServerFacts },
    /// Why a send would not get through.
    Refused(String),
}

/// Connects to `[smtp]` as a send would (TLS, the login), sends nothing, and says goodbye.
pub async fn check_smtp(config: &Config) -> anyhow::Result<SmtpCheck> {
    let spec = match Transport::from_config(config)? {
        Transport::Outbox(dir) => return Ok(SmtpCheck::Outbox(dir)),
        Transport::Smtp(spec) => spec,
    };
    let server = format!("{}:{}", spec.host, spec.port);
    Ok(match crate::deliver::smtp::SmtpSession::connect(&spec).await {
        Ok(session) => {
            let facts = session.facts.clone();
            session.quit().await;
            SmtpCheck::Ready { server, facts }
        }
        Err(e) => SmtpCheck::Refused(e.to_string()),
    })
}

/// What a send needs besides the content: the DKIM key, the token secret, the SMTP login.
fn check_sending(config: &Config, r: &mut Readiness) {
    if let Some(dkim) = &config.dkim
        && let Err(e) = deliver::message::load_dkim(dkim)
    {
        r.add(Severity::Config, format!("{e:#}"));
    }
    if let Some(secret) = std::env::var_os(SECRET_VAR) {
        let why = match secret.into_string() {
            Err(_) => Some("is not valid UTF-8".to_string()),
            Ok(s) => TokenKey::from_secret(s.into_bytes()).err().map(|e| e.to_string()),
        };
        if let Some(why) = why {
            r.add(Severity::Config, format!("{SECRET_VAR}: {why}"));
        }
    }
    if let Err(e) = Transport::from_config(config) {
        r.add(Severity::Config, format!("{e:#}"));
    }
    if through_relay(config) && !placeholders_allowed() {
        for p in placeholders(config) {
            r.add(Severity::Config, format!("{}: {p}", config.describe_source()));
        }
    }
}

/// Lets a rehearsal through a local test relay (a mail catcher) send with the example values:
/// the refusal becomes a warning. Never set it where readers are mailed.
pub const ALLOW_PLACEHOLDERS_VAR: &str = "GAZETTE_ALLOW_PLACEHOLDERS";

fn placeholders_allowed() -> bool {
    std::env::var_os(ALLOW_PLACEHOLDERS_VAR).is_some_and(|v| !v.is_empty() && v != "0")
}

/// True when messages go to an SMTP server rather than into the outbox folder.
pub fn through_relay(config: &Config) -> bool {
    matches!(config.smtp.target, SmtpTarget::Server { .. })
}

/// A key still holding a value that only works on this machine or in an example (what
/// `gazette init` writes): readers' links, replies or bounces would go nowhere.
#[derive(Debug, Clone, PartialEq)]
pub struct Placeholder {
    pub key: &'static str,
    pub value: String,
    /// Why, as a phrase: "is a loopback address".
    pub why: String,
}

impl std::fmt::Display for Placeholder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fix = match self.key {
            "[site] base_url" => {
                "readers' links and List-Unsubscribe would point there; set it to the newsletter's public https:// address"
            }
            "[email] editor" => "test copies would go nowhere; use the editor's real address",
            "[email] bounce_address" => "failure notices would go nowhere; use an address at your own domain",
            _ => "readers' replies would go nowhere; use an address at your own domain",
        };
        write!(f, "{}: `{}` {}: {fix}", self.key, self.value, self.why)
    }
}

/// Every placeholder in the configuration, in the order of the file.
pub fn placeholders(config: &Config) -> Vec<Placeholder> {
    let mut found = Vec::new();
    if let Some(why) =
        url::Url::parse(&config.site.base_url).ok().and_then(|u| u.host().and_then(|h| placeholder_host(&h)))
    {
        found.push(Placeholder { key: "[site] base_url", value: config.site.base_url.clone(), why });
    }
    let email = &config.email;
    let addresses = [
        ("[email] from", Some(email.from.email.clone())),
        ("[email] reply_to", email.reply_to.as_ref().map(|m| m.email.clone())),
        ("[email] editor", email.editor.as_ref().map(|m| m.email.clone())),
        ("[email] bounce_address", email.bounce_address.clone()),
    ];
    for (key, address) in addresses {
        if let Some(address) = address
            && let Some(why) = example_domain(address.domain())
        {
            found.push(Placeholder { key, value: address.to_string(), why });
        }
    }
    found
}

/// Why a host cannot be the public address of a newsletter, if it cannot.
fn placeholder_host(host: &url::Host<&str>) -> Option<String> {
    use std::net::IpAddr;
    let ip = match host {
        url::Host::Domain(name) => return example_domain(name),
        url::Host::Ipv4(a) => IpAddr::V4(*a),
        url::Host::Ipv6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(*a)),
    };
    let why = match ip {
        IpAddr::V4(a) if a.is_loopback() => "is a loopback address (this machine only)",
        IpAddr::V4(a) if a.is_private() => "is a private address (RFC 1918), not reachable from readers' machines",
        IpAddr::V4(a) if a.is_link_local() => "is a link-local address, not reachable from readers' machines",
        IpAddr::V4(a) if a.is_unspecified() => "is the unspecified address",
        IpAddr::V6(a) if a.is_loopback() => "is a loopback address (this machine only)",
        IpAddr::V6(a) if a.is_unspecified() => "is the unspecified address",
        // fc00::/7, unique local; fe80::/10, link-local.
        IpAddr::V6(a) if a.segments()[0] & 0xfe00 == 0xfc00 => {
            "is a private address (fc00::/7), not reachable from readers' machines"
        }
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => {
            "is a link-local address, not reachable from readers' machines"
        }
        _ => return None,
    };
    Some(why.into())
}

/// Why a domain is reserved for examples or for this machine (RFC 2606, RFC 6761), if it is.
fn example_domain(domain: &str) -> Option<String> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let under = |suffix: &str| d == suffix || d.ends_with(&format!(".{suffix}"));
    if under("localhost") {
        return Some("names this machine (localhost)".into());
    }
    let reserved = ["example.com", "example.net", "example.org", "example", "test", "invalid"];
    reserved.iter().find(|r| under(r)).map(|r| format!("is at {d}, a domain reserved for examples ({r}, RFC 2606)"))
}

/// The rule for sending to readers: through a relay, no placeholder may be left (each is named,
/// exit 2). The outbox folder is a rehearsal and always allowed.
pub fn ready_for_readers(config: &Config) -> Result<(), ExitError> {
    let found = if through_relay(config) { placeholders(config) } else { Vec::new() };
    if found.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = found.iter().map(|p| format!("{}: {p}", config.describe_source())).collect();
    if placeholders_allowed() {
        tracing::warn!("{ALLOW_PLACEHOLDERS_VAR} is set: sending to readers with example values:\n{}", list.join("\n"));
        return Ok(());
    }
    Err(ExitError::unusable(format!(
        "{}\nnot sending to readers through {} with these example values; fix them in {} (`gazette send --test` to the editor works meanwhile)",
        list.join("\n"),
        config.smtp.url,
        config.describe_source()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::themes::{RecentTheme, ThemeChoice};

    fn choice(list: &str) -> Option<ThemeChoice> {
        ThemeChoice::parse_list(list).unwrap()
    }

    fn recent(names: &[&str]) -> Vec<RecentTheme> {
        names.iter().map(|n| RecentTheme { name: n.to_string(), slug: crate::render::slug(n), digests: 1 }).collect()
    }

    #[test]
    fn themes_no_recent_digest_carries_are_named_with_their_readers() {
        let choices = [
            (None, 50),
            (choice("Energy transition; Old name"), 3),
            (choice("old-name"), 1),
            (choice("Gone"), 1),
            (choice("ENERGY TRANSITION"), 7),
        ];
        let warnings = themes_not_carried(&choices, &recent(&["energy transition", "public health"]), 1);
        assert_eq!(
            warnings,
            [
                "warning: 4 readers follow the theme `Old name`, which no digest of the last issue carries: was it renamed? Readers who follow only such themes receive nothing.",
                "warning: 1 reader follows the theme `Gone`, which no digest of the last issue carries: was it renamed? Readers who follow only such themes receive nothing.",
                "warning: 2 readers follow only such themes, so their weeks are skipped; `gazette subscribers list --theme NAME` lists a theme's readers, and an import with a `themes` column changes their choice",
            ]
        );
        // Nothing published yet, or every chosen theme carried: nothing to say.
        assert!(themes_not_carried(&choices, &[], 0).is_empty());
        assert!(themes_not_carried(&[(choice("Energy transition"), 3)], &recent(&["Energy Transition"]), 8).is_empty());
    }
}
