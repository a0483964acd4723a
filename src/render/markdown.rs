//! Digest summaries are markdown, but only links and emphasis survive: everything else (raw HTML,
//! images, headings, code) is reduced to escaped text, and only http(s) and mailto links are kept,
//! so a digest can never inject markup or a `javascript:` URL into an email or a page.

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

/// Escapes text for HTML (element content and quoted attributes). A `%` is escaped too when it
/// could form `%%`, so that no content can produce a per-subscriber placeholder (see `email`).
pub fn escape_html(s: &str, out: &mut String) {
    let guard_percent = s.contains("%%");
    let mut start = 0;
    // Copy runs of ordinary bytes at once; every special character is ASCII.
    for (i, b) in s.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            b'%' if guard_percent => "&#37;",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(rep);
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

pub fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    escape_html(s, &mut out);
    out
}

/// The plain-text counterpart of the `%` guard: a zero-width space between two `%` keeps any
/// `%%NAME%%` in content from matching a placeholder while reading the same.
pub fn guard_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains("%%") { s.replace('%', "%\u{200b}").into() } else { s.into() }
}

fn allowed_link(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:")
}

fn is_block(tag: &TagEnd) -> bool {
    !matches!(
        tag,
        TagEnd::Emphasis
            | TagEnd::Strong
            | TagEnd::Strikethrough
            | TagEnd::Superscript
            | TagEnd::Subscript
            | TagEnd::Link
            | TagEnd::Image
    )
}

/// One pass over the markdown events, producing either HTML or plain text.
struct Writer {
    html: bool,
    out: String,
    /// A paragraph is open (HTML) or text was written since the last break.
    open: bool,
    /// A block ended: the next inline output starts a new paragraph.
    pending_break: bool,
    /// For each link being read: its URL when it was kept, and for text where its text starts.
    links: Vec<(Option<String>, usize)>,
}

impl Writer {
    /// Called before any inline output: opens the paragraph it belongs to.
    fn inline(&mut self) {
        if self.pending_break && self.open {
            self.out.push_str(if self.html { "</p>\n" } else { "\n\n" });
            self.open = false;
        }
        self.pending_break = false;
        if !self.open {
            if self.html {
                self.out.push_str("<p>");
            }
            self.open = true;
        }
    }

    fn text(&mut self, t: &str) {
        self.inline();
        if self.html { escape_html(t, &mut self.out) } else { self.out.push_str(t) }
    }

    fn tag(&mut self, html: &str) {
        if self.html {
            self.inline();
            self.out.push_str(html);
        }
    }

    fn event(&mut self, ev: Event<'_>) {
        match ev {
            Event::Text(t) | Event::Code(t) | Event::InlineHtml(t) | Event::InlineMath(t) | Event::DisplayMath(t) => self.text(&t),
            // Raw HTML blocks come line by line: shown as text, joined like soft breaks.
            Event::Html(t) => self.text(t.trim_end_matches('\n')),
            Event::SoftBreak => self.text(" "),
            Event::HardBreak => {
                if self.html { self.tag("<br>") } else { self.text("\n") }
            }
            Event::Start(Tag::Emphasis) => self.tag("<em>"),
            Event::End(TagEnd::Emphasis) => self.tag("</em>"),
            Event::Start(Tag::Strong) => self.tag("<strong>"),
            Event::End(TagEnd::Strong) => self.tag("</strong>"),
            Event::Start(Tag::Link { dest_url, .. }) => {
                let keep = allowed_link(&dest_url).then(|| dest_url.trim().to_string());
                if let Some(url) = &keep {
                    self.tag(&format!("<a href=\"{}\">", escaped(url)));
                }
                self.inline();
                self.links.push((keep, self.out.len()));
            }
            Event::End(TagEnd::Link) => match self.links.pop() {
                Some((Some(url), start)) if !self.html => {
                    // Text: the URL follows its text, unless the text is the URL already.
                    let shown = self.out[start..].trim().trim_start_matches("mailto:");
                    if shown != url.trim_start_matches("mailto:") {
                        self.out.push_str(&format!(" <{url}>"));
                    }
                }
                Some((Some(_), _)) => self.tag("</a>"),
                _ => {}
            },
            Event::End(tag) if is_block(&tag) => self.pending_break = true,
            Event::Rule => self.pending_break = true,
            _ => {}
        }
    }
}

fn convert(markdown: &str, html: bool) -> String {
    let mut w = Writer { html, out: String::with_capacity(markdown.len() + 32), open: false, pending_break: false, links: Vec::new() };
    for ev in Parser::new(markdown) {
        w.event(ev);
    }
    if w.open && html {
        w.out.push_str("</p>");
    }
    w.out
}

/// The summary as HTML: paragraphs, `<em>`, `<strong>`, `<a href>` (http, https, mailto); the rest escaped.
pub fn to_html(markdown: &str) -> String {
    convert(markdown, true)
}

/// The summary as plain text, paragraphs separated by a blank line, links as `text <url>`.
pub fn to_text(markdown: &str) -> String {
    convert(markdown, false)
}

/// Greedy word wrap of each line to `width` characters, every line prefixed with `indent`. Words
/// longer than the width (URLs) stay whole; blank lines are kept.
pub fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut col = 0;
        for word in line.split_whitespace() {
            let len = word.chars().count();
            if col > 0 && col + 1 + len > width {
                out.push('\n');
                col = 0;
            }
            if col == 0 {
                out.push_str(indent);
                col = indent.chars().count();
            } else {
                out.push(' ');
                col += 1;
            }
            out.push_str(word);
            col += len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_emphasis_survive_everything_else_is_escaped() {
        let md = "Read *this* and **that** at [the site](https://example.org/a?b=1&c=2).\n\n<script>alert(1)</script> <b>bold</b>\n\n[bad](javascript:alert(1)) ![img](https://x/y.png) [rel](/local)";
        assert_eq!(
            to_html(md),
            "<p>Read <em>this</em> and <strong>that</strong> at <a href=\"https://example.org/a?b=1&amp;c=2\">the site</a>.</p>\n\
             <p>&lt;script&gt;alert(1)&lt;/script&gt; &lt;b&gt;bold&lt;/b&gt;</p>\n<p>bad img rel</p>"
        );
    }

    #[test]
    fn text_keeps_urls_after_link_text() {
        let md = "See [the report](https://example.org/r) or <https://example.org/x>; *really*.\n\nSecond paragraph.";
        assert_eq!(to_text(md), "See the report <https://example.org/r> or https://example.org/x; really.\n\nSecond paragraph.");
    }

    #[test]
    fn percent_pairs_cannot_form_placeholders() {
        assert_eq!(escaped("50% of %%UNSUBSCRIBE_URL%%"), "50&#37; of &#37;&#37;UNSUBSCRIBE_URL&#37;&#37;");
        assert_eq!(escaped("50% off"), "50% off");
        assert!(!to_html("[x](https://e.org/%%UNSUBSCRIBE_URL%%) %%SUBSCRIBER_EMAIL%%").contains("%%"));
        assert!(!guard_text("%%UNSUBSCRIBE_URL%%").contains("%%"));
    }

    #[test]
    fn wrap_respects_width_and_indent() {
        let w = wrap("aaa bbb ccc ddd eee\n\nhttps://a.very.long.example.org/path", 11, "  ");
        assert_eq!(w, "  aaa bbb\n  ccc ddd\n  eee\n\n  https://a.very.long.example.org/path");
        assert!(w.lines().all(|l| l.chars().count() <= 11 || !l.trim().contains(' ')));
    }
}
