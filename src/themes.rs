//! A reader's choice of themes: everything (no choice, the default) or some themes by name. Two
//! names are the same theme when their slugs are (`render::slug`, the theme feeds' rule), so a
//! reader who chose "Open source" receives the digests an editor tagged "open source".
//!
//! Stored as a JSON array of names, ordered by slug, one name per slug; written in CSV files and
//! on the command line as names separated by `;`.

use std::collections::BTreeMap;
use std::fmt;

use crate::digest::Listed;
use crate::issue::Issue;
use crate::render::slug;

/// Some themes, at least one, at most `MAX`, each at most `MAX_NAME_CHARS` long.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThemeChoice {
    /// (slug, name), ordered and unique by slug.
    themes: Vec<(String, String)>,
}

/// A list of themes that cannot be a choice, phrased for whoever typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidThemes(pub String);

impl ThemeChoice {
    /// The most themes one reader may choose.
    pub const MAX: usize = 100;
    /// The longest theme name accepted.
    pub const MAX_NAME_CHARS: usize = 200;

    /// The choice of these names; `None` when none is left once blanks are dropped (everything).
    pub fn from_names<I, S>(names: I) -> Result<Option<ThemeChoice>, InvalidThemes>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut by_slug = BTreeMap::new();
        for name in names {
            let name = name.as_ref().trim();
            if name.is_empty() {
                continue;
            }
            if name.chars().any(char::is_control) {
                return Err(InvalidThemes(format!(
                    "the theme {:?} holds a control character; a theme is one line of text",
                    cut(name)
                )));
            }
            if name.chars().count() > Self::MAX_NAME_CHARS {
                return Err(InvalidThemes(format!(
                    "the theme {:?} is longer than {} characters",
                    cut(name),
                    Self::MAX_NAME_CHARS
                )));
            }
            by_slug.entry(slug(name)).or_insert_with(|| name.to_string());
        }
        if by_slug.len() > Self::MAX {
            return Err(InvalidThemes(format!(
                "{} themes were given; a reader can follow at most {}",
                by_slug.len(),
                Self::MAX
            )));
        }
        Ok((!by_slug.is_empty()).then(|| ThemeChoice { themes: by_slug.into_iter().collect() }))
    }

    /// A list as written in CSV files and on the command line: names separated by `;`. Empty (or
    /// only separators) is everything: `None`.
    pub fn parse_list(text: &str) -> Result<Option<ThemeChoice>, InvalidThemes> {
        ThemeChoice::from_names(text.split(';'))
    }

    /// The stored form (a JSON array of the names).
    pub fn to_stored(&self) -> String {
        serde_json::to_string(&self.names().collect::<Vec<_>>()).expect("a list of strings is JSON")
    }

    /// Reads the stored form back; `None` for NULL or an empty list.
    pub fn from_stored(stored: Option<&str>) -> Result<Option<ThemeChoice>, InvalidThemes> {
        let Some(stored) = stored else { return Ok(None) };
        let names: Vec<String> = serde_json::from_str(stored)
            .map_err(|e| InvalidThemes(format!("the stored themes {:?} are not a JSON list: {e}", cut(stored))))?;
        ThemeChoice::from_names(names)
    }

    /// The names, ordered by slug.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.themes.iter().map(|(_, name)| name.as_str())
    }

    /// The slugs, ordered.
    pub fn slugs(&self) -> impl Iterator<Item = &str> {
        self.themes.iter().map(|(slug, _)| slug.as_str())
    }

    /// Whether the theme of this slug is chosen.
    pub fn has_slug(&self, slug: &str) -> bool {
        self.themes.binary_search_by(|(s, _)| s.as_str().cmp(slug)).is_ok()
    }

    /// Whether a digest with these themes is one the reader chose.
    pub fn wants<S: AsRef<str>>(&self, digest_themes: &[S]) -> bool {
        digest_themes.iter().any(|t| self.has_slug(&slug(t.as_ref())))
    }

    /// One text per distinct choice, whatever the names' spelling: what variants are cached by.
    pub fn key(&self) -> String {
        self.slugs().collect::<Vec<_>>().join(",")
    }

    /// The list as written in CSV files: `a; b`.
    pub fn to_list(&self) -> String {
        self.names().collect::<Vec<_>>().join("; ")
    }

    pub fn len(&self) -> usize {
        self.themes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.themes.is_empty()
    }
}

/// As the list of names (JSON output of `subscribers list`).
impl serde::Serialize for ThemeChoice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.names())
    }
}

impl fmt::Display for ThemeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().collect::<Vec<_>>().join(", "))
    }
}

/// How many of the newest published issues the subscribe form and the preferences page take their
/// themes from, and `check` looks in for the themes readers follow.
pub const RECENT_ISSUES: usize = 8;

/// A theme that recent issues used: its name (the first spelling met, newest issue first), its
/// slug, and how many of their digests carry it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecentTheme {
    pub name: String,
    pub slug: String,
    pub digests: usize,
}

/// The themes of `issues` (newest first), most used first, then by name.
pub fn recent_themes<'a, D: Listed + 'a>(issues: impl IntoIterator<Item = &'a Issue<D>>) -> Vec<RecentTheme> {
    let mut by_slug: BTreeMap<String, RecentTheme> = BTreeMap::new();
    for issue in issues {
        for d in issue.digests() {
            // A digest counts once per theme, however many spellings of it it gives.
            let mut seen: Vec<String> = Vec::new();
            for name in d.themes() {
                let slug = slug(name);
                if seen.contains(&slug) {
                    continue;
                }
                by_slug
                    .entry(slug.clone())
                    .or_insert_with(|| RecentTheme { name: name.trim().to_string(), slug: slug.clone(), digests: 0 })
                    .digests += 1;
                seen.push(slug);
            }
        }
    }
    let mut themes: Vec<RecentTheme> = by_slug.into_values().collect();
    themes.sort_by(|a, b| b.digests.cmp(&a.digests).then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase())));
    themes
}

/// `text` cut to 60 characters for a message.
fn cut(text: &str) -> String {
    let mut s: String = text.chars().take(60).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_theme_per_slug_in_slug_order() {
        let c = ThemeChoice::parse_list(" Open Source ; energy transition;;open source; ").unwrap().unwrap();
        assert_eq!(c.names().collect::<Vec<_>>(), ["energy transition", "Open Source"]);
        assert_eq!(c.key(), "energy-transition,open-source");
        assert_eq!(c.to_list(), "energy transition; Open Source");
        assert!(c.wants(&["OPEN SOURCE"]));
        assert!(c.wants(&["x", "Energy Transition"]));
        assert!(!c.wants(&["public health"]));
        assert!(!c.wants::<&str>(&[]));
    }

    #[test]
    fn an_empty_list_is_everything() {
        assert_eq!(ThemeChoice::parse_list("").unwrap(), None);
        assert_eq!(ThemeChoice::parse_list(" ; ;").unwrap(), None);
        assert_eq!(ThemeChoice::from_stored(None).unwrap(), None);
        assert_eq!(ThemeChoice::from_stored(Some("[]")).unwrap(), None);
    }

    #[test]
    fn the_stored_form_reads_back() {
        let c = ThemeChoice::parse_list("b; a \"quoted\"; ünïcode").unwrap().unwrap();
        let back = ThemeChoice::from_stored(Some(&c.to_stored())).unwrap().unwrap();
        assert_eq!(back, c);
        assert!(ThemeChoice::from_stored(Some("not json")).unwrap_err().0.contains("not a JSON list"));
    }

    #[test]
    fn bad_names_are_refused_saying_why() {
        assert!(ThemeChoice::parse_list("a\u{7}b").unwrap_err().0.contains("control character"));
        assert!(ThemeChoice::parse_list(&"x".repeat(201)).unwrap_err().0.contains("longer than 200"));
        let many: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
        assert!(ThemeChoice::from_names(&many).unwrap_err().0.contains("at most 100"));
    }
}
