//! The template set: built-in defaults compiled into the binary, each replaceable by a file of the
//! same name in `[paths] templates`, plus the `[email] subject` line. Everything is compiled when
//! the set is made, so a broken template is reported by `check` before anything is sent.

use std::collections::BTreeMap;
use std::path::PathBuf;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, State};

use super::RenderError;
use super::markdown;

/// The built-in templates, by name. A user's folder may override any of them and add partials.
pub const BUILTIN: &[(&str, &str)] = &[
    ("email.mjml", include_str!("../../templates/email.mjml")),
    ("email.txt", include_str!("../../templates/email.txt")),
    ("welcome.mjml", include_str!("../../templates/welcome.mjml")),
    ("welcome.txt", include_str!("../../templates/welcome.txt")),
    ("issue.html", include_str!("../../templates/issue.html")),
    (crate::urls::INDEX, include_str!("../../templates/index.html")),
    ("_layout.html", include_str!("../../templates/_layout.html")),
    ("_digest.html", include_str!("../../templates/_digest.html")),
    ("page.html", include_str!("../../templates/page.html")),
];

/// The name the subject line is compiled under.
pub const SUBJECT: &str = "subject";

/// A template file read from the templates folder.
#[derive(Debug, Clone)]
pub struct TemplateFile {
    /// The file name, which is also the template's name (`email.mjml`).
    pub name: String,
    pub path: PathBuf,
    pub source: String,
}

#[derive(Clone)]
pub struct Templates {
    env: Environment<'static>,
    /// Where each template came from, for error messages: a path, or "built-in email.mjml".
    origins: BTreeMap<String, String>,
    /// A hash of every template's name and source: what an incremental build compares.
    fingerprint: String,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").field("origins", &self.origins).finish()
    }
}

impl Templates {
    /// The built-in templates and the given subject line.
    pub fn builtin(subject: &str) -> Result<Templates, RenderError> {
        Templates::new(subject, Vec::new())
    }

    /// The built-ins, with `files` replacing (or adding to) them by name; `subject` is the
    /// `[email] subject` template. The first error names its file and line.
    pub fn new(subject: &str, files: Vec<TemplateFile>) -> Result<Templates, RenderError> {
        let mut env = Environment::new();
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .keep_trailing_newline(true)
                .build()
                .expect("valid syntax"),
        );
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") || name.ends_with(".mjml") { AutoEscape::Html } else { AutoEscape::None }
        });
        env.set_formatter(format_value);
        env.add_filter("markdown", |s: &str| Value::from_safe_string(markdown::to_html(s)));
        env.add_filter("markdown_text", |s: &str| markdown::to_text(s));
        // wrap(width, indent, first): `first` starts the first line instead of `indent` (`"* "`).
        env.add_filter("wrap", |s: &str, width: Option<usize>, indent: Option<&str>, first: Option<&str>| {
            let indent = indent.unwrap_or("");
            markdown::wrap_hanging(s, width.unwrap_or(72), first.unwrap_or(indent), indent)
        });

        let mut sources: BTreeMap<String, (String, String)> =
            BUILTIN.iter().map(|(n, s)| (n.to_string(), (format!("built-in {n}"), s.to_string()))).collect();
        for f in files {
            sources.insert(f.name, (f.path.display().to_string(), f.source));
        }
        sources.insert(SUBJECT.into(), ("[email] subject".into(), subject.to_string()));

        let fingerprint = {
            let mut hasher = crate::fingerprint::Fingerprint::default();
            for (name, (_, source)) in &sources {
                hasher.text(name).text(source);
            }
            hasher.finish()
        };
        let mut origins = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, (origin, source)) in sources {
            origins.insert(name.clone(), origin);
            if let Err(e) = env.add_template_owned(name, source) {
                problems.push(e);
            }
        }
        let templates = Templates { env, origins, fingerprint };
        if let Some(e) = problems.into_iter().next() {
            return Err(templates.error(e));
        }
        // Only syntax is checked here: a missing include shows when rendering, which `check` does.
        Ok(templates)
    }

    /// Renders `name` with `ctx`.
    pub fn render(&self, name: &str, ctx: &Value) -> Result<String, RenderError> {
        let t = self.env.get_template(name).map_err(|e| self.error(e))?;
        t.render(ctx).map_err(|e| self.error(e))
    }

    /// Renders `source`, a template written in the configuration rather than in a file (the
    /// `[email] welcome_subject` line); its errors name `origin`.
    pub fn render_text(&self, origin: &str, source: &str, ctx: &Value) -> Result<String, RenderError> {
        self.env.render_named_str(origin, source, ctx).map_err(|e| self.error(e))
    }

    /// Renders `name` and, from the same run, its block `block` alone (a page and the content
    /// that its feed entry carries).
    pub fn render_with_block(&self, name: &str, block: &str, ctx: &Value) -> Result<(String, String), RenderError> {
        let t = self.env.get_template(name).map_err(|e| self.error(e))?;
        let mut captured = t.render_captured(ctx).map_err(|e| self.error(e))?;
        let content = captured.with_state_mut(|state| state.render_block(block)).map_err(|e| self.error(e))?;
        Ok((captured.into_output(), content))
    }

    /// A hash of every template (and the subject line): equal sets render alike.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Where the template `name` comes from.
    pub fn origin(&self, name: &str) -> String {
        self.origins.get(name).cloned().unwrap_or_else(|| name.to_string())
    }

    /// A template error, naming the file (or `[email] subject`) and the line.
    fn error(&self, e: Error) -> RenderError {
        let name = e.name().unwrap_or("template").to_string();
        let mut message = e.detail().map(str::to_owned).unwrap_or_else(|| e.kind().to_string());
        // Errors in an included template arrive wrapped: name the innermost cause too.
        let mut source = std::error::Error::source(&e);
        while let Some(inner) = source {
            message.push_str(&format!(": {inner}"));
            source = inner.source();
        }
        RenderError::Template { file: self.origin(&name), line: e.line(), message }
    }
}

/// Like minijinja's default formatter, with two differences: HTML escaping leaves `/` alone
/// (URLs stay readable) and guards `%%`, and plain-text output guards `%%` too, so content can
/// never spell a per-subscriber placeholder. `none` prints as nothing.
fn format_value(out: &mut minijinja::Output, state: &mut State, value: &Value) -> Result<(), Error> {
    if value.is_none() || value.is_undefined() {
        return Ok(());
    }
    if value.is_safe() {
        return out.write_str(value.as_str().unwrap_or_default()).map_err(Error::from);
    }
    let text = value.to_string();
    let rendered = match state.auto_escape() {
        AutoEscape::Html => markdown::escaped(&text),
        _ => markdown::guard_text(&text).into_owned(),
    };
    out.write_str(&rendered).map_err(Error::from)
}
