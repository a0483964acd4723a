//! TEMPORARY stand-in until the render branch lands (replaced by it).
use std::path::Path;

use crate::config::Config;
use crate::issue::Issue;

pub struct Templates;

impl Templates {
    pub fn load(_dir: &Path) -> anyhow::Result<Templates> {
        Ok(Templates)
    }
}

pub struct EmailBody {
    pub subject: String,
    pub html: String,
    pub text: String,
}

pub fn render_email(_config: &Config, _templates: &Templates, issue: &Issue) -> anyhow::Result<EmailBody> {
    Ok(EmailBody {
        subject: format!("Signals #{}", issue.number),
        html: format!("<p>{}</p><a href=\"%%UNSUBSCRIBE_URL%%\">unsubscribe</a>", issue.label),
        text: format!("{}\nunsubscribe: %%UNSUBSCRIBE_URL%%\n", issue.label),
    })
}
