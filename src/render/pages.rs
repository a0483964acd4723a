//! The web service's small pages (subscribe, confirm, unsubscribe, preferences, errors): one template,
//! `page.html`, in the archive's layout, so every page has the site title and links the feeds.

use minijinja::context;
use minijinja::value::{Serde, Value};
use serde::Serialize;

use super::{RenderError, Templates, feeds_value};
use crate::config::Config;

/// What a page says. Every text is plain (escaped by the template).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Page {
    pub title: String,
    pub lines: Vec<String>,
    /// Shown first, as an alert: what was wrong with the input.
    pub error: Option<String>,
    pub form: Option<PageForm>,
    /// A link shown last, such as "Subscribe again".
    pub link: Option<PageLink>,
    /// Shown first, as a status: what the form just sent changed ("You now receive: a, b.").
    pub notice: Option<String>,
    /// Parts after the lines and the form, each under its heading with a form of its own (the
    /// preferences page).
    pub sections: Vec<PageSection>,
}

/// A part of a page under its own heading, with its forms.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PageSection {
    pub heading: String,
    pub lines: Vec<String>,
    pub forms: Vec<PageForm>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PageLink {
    pub href: String,
    pub text: String,
}

/// A form that posts to the page's own address.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PageForm {
    pub button: String,
    /// The subscribe form's email and name inputs, with these values.
    pub subscribe_fields: bool,
    pub email: String,
    pub name: String,
    /// Posts `List-Unsubscribe=One-Click`, as a mail provider's one-click POST does (RFC 8058).
    pub one_click: bool,
    /// Where the form posts, when not to the page's own address.
    pub action: Option<String>,
    /// The value of a hidden `action` field: which of a page's forms was sent.
    pub kind: Option<String>,
    /// Checkboxes for themes, in a fieldset (`themes=<slug>` once per ticked box).
    pub themes: Option<ThemeFields>,
    /// A drop-down list, such as the pause's weeks.
    pub select: Option<PageSelect>,
    /// An input for a new email address (`email`), with `email` as its value.
    pub address_field: bool,
}

/// Theme checkboxes: a legend, a hint (what ticking none means), one box per theme.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ThemeFields {
    pub legend: String,
    pub hint: String,
    pub options: Vec<ThemeOption>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ThemeOption {
    pub name: String,
    /// The theme's slug: the box's value, and its id's end.
    pub slug: String,
    /// Shown after the name, such as "3 recent digests".
    pub detail: String,
    pub checked: bool,
}

/// A labelled `<select>`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PageSelect {
    pub id: String,
    pub name: String,
    pub label: String,
    pub options: Vec<SelectOption>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SelectOption {
    pub value: String,
    pub text: String,
    pub selected: bool,
}

pub fn render_page(config: &Config, templates: &Templates, page: &Page) -> Result<String, RenderError> {
    let ctx = context! { site => Value::from(Serde(&config.site)), feeds => feeds_value(config), page => Value::from(Serde(page)) };
    templates.render("page.html", &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_escapes_its_text_and_links_the_feeds() {
        let config = crate::render::testing::config();
        let templates = Templates::builtin("x").unwrap();
        let page = Page {
            title: "Unsubscribe".into(),
            lines: vec!["Stop sending to <b>a&b</b>@example.org?".into()],
            error: None,
            form: Some(PageForm { button: "Unsubscribe".into(), one_click: true, ..PageForm::default() }),
            link: None,
            ..Page::default()
        };
        let html = render_page(&config, &templates, &page).unwrap();
        assert!(html.contains("&lt;b&gt;a&amp;b&lt;/b&gt;@example.org"), "{html}");
        assert!(html.contains(r#"<link rel="alternate" type="application/rss+xml""#));
        assert!(html.contains(r#"<input type="hidden" name="List-Unsubscribe" value="One-Click">"#));
        assert!(!html.contains("name=\"email\""));
        assert!(html.contains("<title>Unsubscribe · "));
    }
}
