//! `gazette check`'s question: would `build`, `preview`, `send` and `run` go through? Everything
//! they would refuse is found here, each as one line naming the file, line or key to fix:
//! digest problems, template errors (a required placeholder included), emails Gmail would clip,
//! the DKIM key, the token secret, the SMTP password.

use chrono::{DateTime, Utc};

use crate::build_cache::CacheUse;
use crate::config::Config;
use crate::deliver::{self, Transport};
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
    match loaded {
        Err(e) => r.add(Severity::Config, format!("{e:#}")),
        Ok(project) => check_rendering(&project, &mut r),
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
            r.shortened.push(format!("issue #{} ({}): the email ({} KB) is {report}", issue.number, issue.id, bytes.div_ceil(1024)));
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
    let published: anyhow::Result<Vec<_>> = project.published().into_iter().map(|i| project.whole(i).map(|w| w.into_owned())).collect();
    let published = match published {
        Ok(published) => published,
        Err(e) => return r.add(Severity::Content, format!("{e:#}")),
    };
    let newest = published.last().map(|i| i.id.clone()).unwrap_or_default();
    if let Err(e) = render::render_site(config, templates, &published, Some(&newest)) {
        r.add(Severity::Config, e.to_string());
    }
    if let Err(e) = crate::server::check_pages(config, templates) {
        r.add(Severity::Config, e.to_string());
    }
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
        let checked = secret.into_string().map_err(|_| "is not valid UTF-8".to_string()).and_then(|s| TokenKey::new(s.into_bytes()));
        if let Err(e) = checked {
            r.add(Severity::Config, format!("{SECRET_VAR}: {e}"));
        }
    }
    if let Err(e) = Transport::from_config(config) {
        r.add(Severity::Config, format!("{e:#}"));
    }
}
