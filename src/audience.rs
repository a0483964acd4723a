//! Whom the readers' choices of themes reach, for the editor (`gazette status`, `gazette issues`):
//! how many active readers follow every theme, and how many chose each theme (a reader with
//! several themes counts for each). Made from `Store::theme_choices`, one row per distinct choice,
//! so it costs the same whatever the list's size.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::Listed;
use crate::issue::Issue;
use crate::themes::{RecentTheme, ThemeChoice};

/// The active readers by the themes they follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audience {
    /// Active readers who follow every theme (they chose none).
    pub everything: i64,
    /// Active readers who chose some themes.
    pub choosing: i64,
    /// Each theme some active reader chose, most chosen first, then by name.
    pub themes: Vec<ThemeAudience>,
}

/// One theme's readers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThemeAudience {
    pub name: String,
    pub slug: String,
    /// Active readers who chose it.
    pub followers: i64,
    /// Active readers whose email carries its digests: its followers and those who follow every theme.
    pub receive: i64,
}

/// What an issue's email reaches: the themes of its digests that readers chose, and how many
/// active readers get a digest of it at all (everyone else's week is skipped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueAudience {
    pub reach: i64,
    pub everything: i64,
    pub themes: Vec<ThemeAudience>,
}

/// The widest a theme's name is shown in the table; longer names are cut.
const NAME_WIDTH: usize = 40;

impl Audience {
    /// `None` when no active reader chose themes: everyone receives everything, and there is
    /// nothing to show. A theme is named as `recent` (the digests, the editor's spelling) names
    /// it, and otherwise as the most readers who chose it spell it.
    pub fn of(choices: &[(Option<ThemeChoice>, i64)], recent: &[RecentTheme]) -> Option<Audience> {
        let mut everything = 0;
        let mut choosing = 0;
        // slug -> (name, followers, readers of the spelling kept)
        let mut by_slug: BTreeMap<&str, (&str, i64, i64)> = BTreeMap::new();
        for (choice, n) in choices {
            let Some(choice) = choice else {
                everything += n;
                continue;
            };
            choosing += n;
            for (slug, name) in choice.slugs().zip(choice.names()) {
                let entry = by_slug.entry(slug).or_insert((name, 0, 0));
                entry.1 += n;
                if *n > entry.2 {
                    (entry.0, entry.2) = (name, *n);
                }
            }
        }
        if choosing == 0 {
            return None;
        }
        let mut themes: Vec<ThemeAudience> = by_slug
            .into_iter()
            .map(|(slug, (name, followers, _))| ThemeAudience {
                name: recent.iter().find(|t| t.slug == slug).map_or(name, |t| t.name.as_str()).to_string(),
                slug: slug.to_string(),
                followers,
                receive: followers + everything,
            })
            .collect();
        themes.sort_by(|a, b| {
            b.followers.cmp(&a.followers).then_with(|| a.name.to_lowercase().cmp(&b.name.to_lowercase()))
        });
        Some(Audience { everything, choosing, themes })
    }

    /// What `issue`'s email reaches, from the same `choices`.
    pub fn of_issue<D: Listed>(&self, choices: &[(Option<ThemeChoice>, i64)], issue: &Issue<D>) -> IssueAudience {
        let carried = |slug: &str| issue.digests().any(|d| d.themes().iter().any(|t| crate::render::slug(t) == slug));
        let reach = choices
            .iter()
            .filter(|(choice, _)| choice.as_ref().is_none_or(|c| issue.digests().any(|d| c.wants(d.themes()))))
            .map(|(_, n)| n)
            .sum();
        IssueAudience {
            reach,
            everything: self.everything,
            themes: self.themes.iter().filter(|t| carried(&t.slug)).cloned().collect(),
        }
    }

    /// The table `status` and `issues` show under their own output.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "audience by theme (active readers): {} with every theme, {} with themes they chose",
            self.everything, self.choosing
        )];
        let width = self.themes.iter().map(|t| t.name.chars().count()).max().unwrap_or(0).clamp(5, NAME_WIDTH);
        lines.push(format!("  {:width$}  {:>9}  {:>10}", "theme", "chose it", "receive it"));
        for t in &self.themes {
            lines.push(format!("  {:width$}  {:>9}  {:>10}", shorten(&t.name, width), t.followers, t.receive));
        }
        lines
    }
}

/// `text` cut to `width` characters, an ellipsis marking the cut.
fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(width - 1).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(list: &str) -> Option<ThemeChoice> {
        ThemeChoice::parse_list(list).unwrap()
    }

    fn recent(name: &str) -> RecentTheme {
        RecentTheme { name: name.into(), slug: crate::render::slug(name), digests: 1 }
    }

    #[test]
    fn nobody_choosing_is_no_audience_to_show() {
        assert_eq!(Audience::of(&[(None, 40)], &[]), None);
        assert_eq!(Audience::of(&[], &[]), None);
    }

    #[test]
    fn each_reader_counts_for_each_theme_they_chose_and_names_follow_the_digests() {
        // Two spellings of one choice, stored by different versions, come as two rows.
        let choices = [
            (None, 10),
            (choice("energy transition; Public Health"), 3),
            (choice("Public health"), 2),
            (choice("public-health"), 4),
            (choice("Zoology"), 1),
        ];
        let a = Audience::of(&choices, &[recent("Energy Transition")]).unwrap();
        assert_eq!((a.everything, a.choosing), (10, 10));
        let rows: Vec<(&str, &str, i64, i64)> =
            a.themes.iter().map(|t| (t.name.as_str(), t.slug.as_str(), t.followers, t.receive)).collect();
        assert_eq!(
            rows,
            [
                // The spelling most of its readers chose, none of the digests having it.
                ("public-health", "public-health", 9, 19),
                ("Energy Transition", "energy-transition", 3, 13),
                ("Zoology", "zoology", 1, 11),
            ]
        );
        let lines = a.lines();
        assert_eq!(lines[0], "audience by theme (active readers): 10 with every theme, 10 with themes they chose");
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn long_names_are_cut_in_the_table() {
        let long = "n".repeat(60);
        let a = Audience::of(&[(choice(&long), 1)], &[]).unwrap();
        let row = &a.lines()[2];
        assert!(row.starts_with(&format!("  {}…  ", "n".repeat(39))), "{row}");
        assert_eq!(a.themes[0].name, long, "the JSON keeps it whole");
    }
}
