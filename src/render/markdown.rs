//! Digest summaries are markdown, but only links and emphasis survive: everything else (raw HTML,
//! images, headings, code) is reduced to escaped text, and only http(s) and mailto links are kept,
//! so a digest can never inject markup or a `javascript:` URL into an email or a page.

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

pub use crate::digest::{MAX_NESTING, nesting};

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
    /// Text only: whether a link's URL follows its text.
    urls: bool,
    out: String,
    /// A paragraph is open (HTML) or text was written since the last break.
    open: bool,
    /// A block ended: the next inline output starts a new paragraph.
    pending_break: bool,
    /// For each link being read: its URL when it was kept, and for text where its text starts.
    links: Vec<(Option<String>, usize)>,
    /// For each emphasis being read: whether its tag was written (not past `MAX_NESTING`).
    marks: Vec<bool>,
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
            Event::Text(t) | Event::Code(t) | Event::InlineHtml(t) | Event::InlineMath(t) | Event::DisplayMath(t) => {
                self.text(&t)
            }
            // Raw HTML blocks come line by line: shown as text, joined like soft breaks.
            Event::Html(t) => self.text(t.trim_end_matches('\n')),
            Event::SoftBreak => self.text(" "),
            Event::HardBreak => {
                if self.html {
                    self.tag("<br>")
                } else {
                    self.text("\n")
                }
            }
            Event::Start(Tag::Emphasis) => self.open_mark("<em>"),
            Event::End(TagEnd::Emphasis) => self.close_mark("</em>"),
            Event::Start(Tag::Strong) => self.open_mark("<strong>"),
            Event::End(TagEnd::Strong) => self.close_mark("</strong>"),
            Event::Start(Tag::Link { dest_url, .. }) => {
                let keep = (allowed_link(&dest_url) && self.depth() < MAX_NESTING).then(|| dest_url.trim().to_string());
                if let Some(url) = &keep {
                    self.tag(&format!("<a href=\"{}\">", escaped(url)));
                }
                self.inline();
                self.links.push((keep, self.out.len()));
            }
            Event::End(TagEnd::Link) => match self.links.pop() {
                Some((Some(_), _)) if !self.html && !self.urls => {}
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

impl Writer {
    /// Inline elements open around the text being written.
    fn depth(&self) -> usize {
        self.marks.iter().filter(|m| **m).count() + self.links.iter().filter(|l| l.0.is_some()).count()
    }

    fn open_mark(&mut self, tag: &str) {
        let write = self.depth() < MAX_NESTING;
        self.marks.push(write);
        if write {
            self.tag(tag);
        }
    }

    fn close_mark(&mut self, tag: &str) {
        if self.marks.pop() == Some(true) {
            self.tag(tag);
        }
    }
}

fn convert(markdown: &str, html: bool, urls: bool) -> String {
    let mut w = Writer {
        html,
        urls,
        out: String::with_capacity(markdown.len() + 32),
        open: false,
        pending_break: false,
        links: Vec::new(),
        marks: Vec::new(),
    };
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
    convert(markdown, true, true)
}

/// The summary as plain text, paragraphs separated by a blank line, links as `text <url>`.
pub fn to_text(markdown: &str) -> String {
    convert(markdown, false, true)
}

/// The summary as plain text without the links' URLs: for a line or an excerpt that stands for it.
fn to_plain(markdown: &str) -> String {
    convert(markdown, false, false)
}

/// The start of `markdown`, at most about `max` bytes, ended at a sentence (or a paragraph) that
/// is not inside a link or emphasis, so that it renders as whole markup; `None` when `markdown`
/// is short enough to show whole. With no sentence end in reach, the text is cut at a word and
/// given an ellipsis, as plain text.
pub fn excerpt(markdown: &str, max: usize) -> Option<String> {
    let markdown = markdown.trim();
    // Shortening a summary by less than a third of the limit is not worth the click it costs.
    if markdown.len() <= max + max / 3 {
        return None;
    }
    let mut inline_depth = 0usize;
    let mut best = None;
    for (ev, range) in Parser::new(markdown).into_offset_iter() {
        match ev {
            Event::Start(Tag::Paragraph) | Event::Start(Tag::Item) | Event::Start(Tag::List(_)) => {}
            Event::End(TagEnd::Paragraph | TagEnd::Item) if range.end <= max && inline_depth == 0 => {
                best = Some(range.end)
            }
            Event::End(TagEnd::Paragraph | TagEnd::Item | TagEnd::List(_)) => {}
            Event::Start(_) => inline_depth += 1,
            Event::End(_) => inline_depth = inline_depth.saturating_sub(1),
            // Only text that stands in the source as it is (no escapes): its offsets are exact.
            Event::Text(text) if inline_depth == 0 && markdown.get(range.clone()) == Some(&*text) => {
                for (i, _) in text.match_indices(['.', '!', '?']) {
                    let end = range.start + i + 1;
                    if end > max {
                        break;
                    }
                    if markdown[end..].chars().next().is_none_or(char::is_whitespace) {
                        best = Some(end);
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(end) = best.filter(|&end| end >= max / 3) {
        return Some(markdown[..end].trim_end().to_string());
    }
    let text = to_plain(markdown);
    let cut = cut_at_word(&text, max);
    Some(format!("{}…", escape_markdown(cut)))
}

/// The first sentence of `markdown` as one line of plain text, at most `max` characters (cut at a
/// word, with an ellipsis, when longer): the line of a digest listed in brief.
pub fn first_line(markdown: &str, max: usize) -> String {
    let text = to_plain(markdown);
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let sentence = flat.match_indices(". ").map(|(i, _)| &flat[..=i]).next().unwrap_or(&flat);
    if sentence.chars().count() <= max {
        return sentence.to_string();
    }
    format!("{}…", cut_at_word(sentence, max))
}

/// At most `max` characters of `text`, ending before a space when there is one in the last half.
fn cut_at_word(text: &str, max: usize) -> &str {
    let end = text.char_indices().nth(max).map_or(text.len(), |(i, _)| i);
    let head = &text[..end];
    match head.rfind(char::is_whitespace) {
        Some(space) if space >= end / 2 => head[..space].trim_end_matches([',', ';', ':', ' ']),
        _ => head,
    }
}

/// Plain text made safe to read as markdown: every character markdown could take as markup is
/// backslash-escaped.
fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if "\\`*_{}[]()<>#+-.!|~&".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Greedy word wrap of each line to `width` characters, every line prefixed with `indent`. Words
/// longer than the width (URLs) stay whole; blank lines are kept.
pub fn wrap(text: &str, width: usize, indent: &str) -> String {
    wrap_hanging(text, width, indent, indent)
}

/// As `wrap`, with the very first line prefixed by `first` instead (a list item's `- `).
pub fn wrap_hanging(text: &str, width: usize, first: &str, indent: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut prefix = first;
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
                out.push_str(prefix);
                col = prefix.chars().count();
                prefix = indent;
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
    fn nesting_past_the_limit_is_flattened_and_measured() {
        let deep = format!("{}deep{}", "*".repeat(20_000), "*".repeat(20_000));
        let html = to_html(&deep);
        assert!(html.matches("<em>").count() + html.matches("<strong>").count() <= MAX_NESTING, "{}", &html[..200]);
        assert_eq!(html.matches("<em>").count(), html.matches("</em>").count());
        assert_eq!(html.matches("<strong>").count(), html.matches("</strong>").count());
        assert!(html.contains("deep"));
        let (depth, over) = nesting(&deep);
        assert!(depth > MAX_NESTING);
        assert!(over.is_some());
        assert_eq!(nesting("*a* and **b [c](https://x.org)**"), (3, None));
        // Nested quotes and lists count too.
        assert!(nesting(&">".repeat(40)).1.is_some());
    }

    #[test]
    fn text_keeps_urls_after_link_text() {
        let md = "See [the report](https://example.org/r) or <https://example.org/x>; *really*.\n\nSecond paragraph.";
        assert_eq!(
            to_text(md),
            "See the report <https://example.org/r> or https://example.org/x; really.\n\nSecond paragraph."
        );
    }

    #[test]
    fn percent_pairs_cannot_form_placeholders() {
        assert_eq!(escaped("50% of %%UNSUBSCRIBE_URL%%"), "50&#37; of &#37;&#37;UNSUBSCRIBE_URL&#37;&#37;");
        assert_eq!(escaped("50% off"), "50% off");
        assert!(!to_html("[x](https://e.org/%%UNSUBSCRIBE_URL%%) %%SUBSCRIBER_EMAIL%%").contains("%%"));
        assert!(!guard_text("%%UNSUBSCRIBE_URL%%").contains("%%"));
    }

    #[test]
    fn excerpts_end_at_a_sentence_outside_markup() {
        let md = "First sentence here. Second one, with [a link. Inside](https://e.org/a) it. Third sentence follows! Fourth.";
        assert_eq!(excerpt(md, 1000), None, "short enough: whole");
        // The link holds a period at 44; the cut may not fall inside it.
        let e = excerpt(md, 60).unwrap();
        assert_eq!(e, "First sentence here.");
        let e = excerpt(md, 76).unwrap();
        assert_eq!(e, "First sentence here. Second one, with [a link. Inside](https://e.org/a) it.");
        assert_eq!(to_html(&e).matches("<a ").count(), 1);
        // Decimal points and versions are not sentence ends.
        let md = "Version 2.5 costs 3.50 dollars and ships today without any further delay at all. Then more text comes here.";
        assert_eq!(
            excerpt(md, 80).unwrap(),
            "Version 2.5 costs 3.50 dollars and ships today without any further delay at all."
        );
        // No sentence end in reach: cut at a word, as escaped plain text.
        let md = format!("*{}end* tail", "word ".repeat(60));
        let e = excerpt(&md, 50).unwrap();
        assert!(e.ends_with('…') && e.chars().count() < 52 && !e.contains('*'), "{e}");
        let e = excerpt("[a *b*](https://e.org) c_d ".repeat(20).trim(), 50).unwrap();
        assert!(to_html(&e).starts_with("<p>a b c_d a b") && !to_html(&e).contains("<em>"), "{e}");
        assert!(!to_html("a\\*b\\* [x\\](y)").contains("<em>"));
    }

    #[test]
    fn a_first_line_is_one_sentence_of_text() {
        assert_eq!(first_line("The *first* one. The second.", 100), "The first one.");
        assert_eq!(first_line("no end at all but many words here", 20), "no end at all but…");
        assert_eq!(first_line("Line one\ncontinues [here](https://e.org).", 100), "Line one continues here.");
    }

    #[test]
    fn wrap_respects_width_and_indent() {
        let w = wrap("aaa bbb ccc ddd eee\n\nhttps://a.very.long.example.org/path", 11, "  ");
        assert_eq!(w, "  aaa bbb\n  ccc ddd\n  eee\n\n  https://a.very.long.example.org/path");
        assert!(w.lines().all(|l| l.chars().count() <= 11 || !l.trim().contains(' ')));
        assert_eq!(wrap_hanging("aaa bbb ccc", 8, "- ", "  "), "- aaa\n  bbb\n  ccc");
    }
}
