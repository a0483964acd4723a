//! The themes readers choose from on the subscribe form and the preferences page: those of the
//! newest published issues (`Project::recent_themes`), read when the service starts and again when
//! the publication record changes (or after `MAX_AGE`), so a new issue's themes appear without a
//! restart. A request only clones an `Arc`.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::App;
use crate::config::Config;
use crate::project::Project;
use crate::store::Store;
use crate::store::publications::PublicationRecord;
use crate::themes::{RecentTheme, ThemeChoice};

/// The longest the themes are kept without reading the digests again, for a digest of a published
/// issue edited since (which the record learns only at the next publication).
pub const MAX_AGE: Duration = Duration::from_secs(15 * 60);

pub struct Offered {
    themes: Arc<Vec<RecentTheme>>,
    /// The record the themes were read with.
    record: PublicationRecord,
    /// `None` when they could not be read: the next round tries again.
    read_at: Option<Instant>,
}

impl Offered {
    /// No themes, to be read in the next round: the forms work without them meanwhile.
    pub fn unread() -> Offered {
        Offered { themes: Arc::default(), record: PublicationRecord::default(), read_at: None }
    }
}

/// The lock around what is offered: written by `refresh`, read by every form.
pub type OfferedLock = RwLock<Offered>;

/// The recent themes as a project loaded now finds them, and the record they follow from.
pub async fn read(config: &Config, store: &Store, now: DateTime<Utc>) -> anyhow::Result<Offered> {
    let project = Project::load(config.clone(), Some(store), now).await?;
    Ok(Offered {
        themes: Arc::new(project.recent_themes()),
        record: project.record().clone(),
        read_at: Some(Instant::now()),
    })
}

impl App {
    /// The themes offered now.
    pub fn offered_themes(&self) -> Arc<Vec<RecentTheme>> {
        self.offered.read().unwrap_or_else(|e| e.into_inner()).themes.clone()
    }
}

/// Reads the themes again when the publication record changed since they were read, or they are
/// older than `MAX_AGE`; `now` decides which weeks are due. True when they were read again.
pub async fn refresh_themes_once(app: &App, now: DateTime<Utc>) -> anyhow::Result<bool> {
    let record = app.store.publications().read().await?;
    let stale = {
        let offered = app.offered.read().unwrap_or_else(|e| e.into_inner());
        offered.record != record || offered.read_at.is_none_or(|at| at.elapsed() >= MAX_AGE)
    };
    if !stale {
        return Ok(false);
    }
    // Reading the digests is file work: off the threads that answer requests.
    let (config, store) = (app.config.clone(), app.store.clone());
    let handle = tokio::runtime::Handle::current();
    let fresh = tokio::task::spawn_blocking(move || handle.block_on(read(&config, &store, now))).await??;
    tracing::info!("the subscribe form offers {} themes of the newest published issues", fresh.themes.len());
    *app.offered.write().unwrap_or_else(|e| e.into_inner()) = fresh;
    Ok(true)
}

/// `serve`'s background task: a round of `refresh_themes_once` every
/// `Options::refresh_themes_every`, until the task is dropped.
pub async fn refresh_themes(app: App) {
    let mut every = tokio::time::interval(app.options.refresh_themes_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await; // the first tick is at once, and the themes were just read
    loop {
        every.tick().await;
        if let Err(e) = refresh_themes_once(&app, Utc::now()).await {
            tracing::error!("cannot read the recent themes again: {e:#}; the form keeps the ones it had");
        }
    }
}

/// The themes a reader may tick: those offered, and the ones `current` holds that recent issues no
/// longer use (so a reader can keep or drop them), these last with no count.
pub fn choosable(offered: &[RecentTheme], current: Option<&ThemeChoice>) -> Vec<RecentTheme> {
    let mut all = offered.to_vec();
    if let Some(current) = current {
        for (slug, name) in current.slugs().zip(current.names()) {
            if !all.iter().any(|t| t.slug == slug) {
                all.push(RecentTheme { name: name.to_string(), slug: slug.to_string(), digests: 0 });
            }
        }
    }
    all
}

/// The choice of the `ticked` themes (slugs or names, as the form or JSON sends them) among
/// `choosable`: `None` for none (every theme); refused, naming it, for one not among them.
pub fn chosen(ticked: &[String], choosable: &[RecentTheme]) -> Result<Option<ThemeChoice>, String> {
    let mut names = Vec::new();
    for t in ticked.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        let slug = crate::render::slug(t);
        match choosable.iter().find(|c| c.slug == slug) {
            Some(c) => names.push(c.name.as_str()),
            None => {
                let shown: String = t.chars().take(60).flat_map(char::escape_default).collect();
                let offered: Vec<&str> = choosable.iter().map(|c| c.name.as_str()).collect();
                return Err(if offered.is_empty() {
                    format!(
                        "\"{shown}\" is not a theme of this newsletter: no issue has themes yet, so leave the themes out"
                    )
                } else {
                    format!(
                        "\"{shown}\" is not one of the themes offered ({}); tick those you want, or none for every theme",
                        offered.join(", ")
                    )
                });
            }
        }
    }
    ThemeChoice::from_names(names).map_err(|e| e.0)
}

/// The checkboxes of `choosable`, ticked as `ticked` (slugs or names) says.
pub fn theme_fields(legend: &str, choosable: &[RecentTheme], ticked: &[String]) -> Option<crate::render::ThemeFields> {
    if choosable.is_empty() {
        return None;
    }
    let ticked: Vec<String> = ticked.iter().map(|t| crate::render::slug(t)).collect();
    let options = choosable
        .iter()
        .map(|t| crate::render::ThemeOption {
            name: t.name.clone(),
            slug: t.slug.clone(),
            detail: match t.digests {
                0 => "not in recent issues".into(),
                1 => "1 recent digest".into(),
                n => format!("{n} recent digests"),
            },
            checked: ticked.contains(&t.slug),
        })
        .collect();
    Some(crate::render::ThemeFields {
        legend: legend.into(),
        hint: "Tick none to receive every theme, as new themes appear too.".into(),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered() -> Vec<RecentTheme> {
        vec![
            RecentTheme { name: "Energy transition".into(), slug: "energy-transition".into(), digests: 3 },
            RecentTheme { name: "Open source".into(), slug: "open-source".into(), digests: 1 },
        ]
    }

    #[test]
    fn ticked_themes_are_matched_by_slug_and_others_refused_by_name() {
        let c = chosen(&["open-source".into(), "Energy Transition".into()], &offered()).unwrap().unwrap();
        assert_eq!(c.names().collect::<Vec<_>>(), ["Energy transition", "Open source"]);
        assert_eq!(chosen(&[], &offered()).unwrap(), None);
        assert_eq!(chosen(&[" ".into()], &offered()).unwrap(), None);
        let err = chosen(&["open-source".into(), "<b>crypto</b>".into()], &offered()).unwrap_err();
        assert!(
            err.contains("\"<b>crypto</b>\" is not one of the themes offered (Energy transition, Open source)"),
            "{err}"
        );
        assert!(chosen(&["x".into()], &[]).unwrap_err().contains("no issue has themes yet"));
    }

    #[test]
    fn a_readers_old_themes_stay_choosable_and_boxes_are_ticked_as_stored() {
        let current = ThemeChoice::from_names(["Open source", "Retired theme"]).unwrap();
        let all = choosable(&offered(), current.as_ref());
        assert_eq!(all.len(), 3);
        assert_eq!(all[2], RecentTheme { name: "Retired theme".into(), slug: "retired-theme".into(), digests: 0 });
        let ticked: Vec<String> = current.unwrap().slugs().map(str::to_string).collect();
        let fields = theme_fields("Themes", &all, &ticked).unwrap();
        let state: Vec<(&str, &str, bool)> =
            fields.options.iter().map(|o| (o.slug.as_str(), o.detail.as_str(), o.checked)).collect();
        assert_eq!(
            state,
            [
                ("energy-transition", "3 recent digests", false),
                ("open-source", "1 recent digest", true),
                ("retired-theme", "not in recent issues", true)
            ]
        );
        assert!(theme_fields("Themes", &[], &[]).is_none());
    }
}
