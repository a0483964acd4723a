//! An issue's editions: the whole email for readers who follow everything, and one per choice of
//! themes readers made, holding only those themes' digests. Each edition is rendered, compiled and
//! prepared once, whatever the number of its readers, and shared by the send's workers; a choice
//! whose themes the issue does not carry has no edition (those readers are skipped, saying why).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::PreparedEmail;
use crate::themes::ThemeChoice;

/// Renders the edition of one choice: `None` when the issue holds nothing of it.
pub type RenderEdition = dyn Fn(&ThemeChoice) -> anyhow::Result<Option<PreparedEmail>> + Send + Sync;

/// The editions of one issue, made as they are first needed (or ahead, by `prepare`).
pub struct Editions {
    whole: Arc<PreparedEmail>,
    render: Option<Box<RenderEdition>>,
    /// By `ThemeChoice::key`: the edition, or `None` when the choice gets nothing this week.
    by_choice: Mutex<HashMap<String, Option<Arc<PreparedEmail>>>>,
}

/// What one reader receives of the issue.
pub enum Edition {
    Send(Arc<PreparedEmail>),
    /// Nothing: the issue carries none of the reader's themes.
    Nothing(String),
}

impl Editions {
    /// The same email for every reader, whatever their themes (test copies; sends from tests).
    pub fn one(email: Arc<PreparedEmail>) -> Editions {
        Editions { whole: email, render: None, by_choice: Mutex::new(HashMap::new()) }
    }

    /// The whole email, and `render` for the readers who chose themes.
    pub fn new(whole: Arc<PreparedEmail>, render: Box<RenderEdition>) -> Editions {
        Editions { whole, render: Some(render), by_choice: Mutex::new(HashMap::new()) }
    }

    /// The whole issue's email.
    pub fn whole(&self) -> &Arc<PreparedEmail> {
        &self.whole
    }

    /// Whether copies carry DKIM signatures (the same for every edition).
    pub fn is_signed(&self) -> bool {
        self.whole.is_signed()
    }

    /// Renders the editions of `choices` that are not made yet, on rayon's threads, before the
    /// send: a send to many choices then starts with every edition ready, and an edition that
    /// cannot be made stops the send before anyone receives anything.
    pub fn prepare(&self, choices: &[ThemeChoice]) -> anyhow::Result<()> {
        let Some(render) = &self.render else { return Ok(()) };
        let missing: Vec<&ThemeChoice> = {
            let made = self.by_choice.lock().expect("the editions' lock is never poisoned");
            choices.iter().filter(|c| !made.contains_key(&c.key())).collect()
        };
        let rendered: Vec<(String, Option<Arc<PreparedEmail>>)> = missing
            .into_par_iter()
            .map(|choice| {
                let edition = render(choice)
                    .map_err(|e| e.context(format!("cannot make the edition for the themes {choice}")))?;
                Ok((choice.key(), edition.map(Arc::new)))
            })
            .collect::<anyhow::Result<_>>()?;
        self.by_choice.lock().expect("the editions' lock is never poisoned").extend(rendered);
        Ok(())
    }

    /// The edition for a reader who follows `themes` (`None`: everything). A choice not prepared
    /// ahead (changed during the send) is rendered now, once.
    pub fn for_reader(&self, themes: Option<&ThemeChoice>) -> anyhow::Result<Edition> {
        let (Some(choice), Some(render)) = (themes, &self.render) else {
            return Ok(Edition::Send(self.whole.clone()));
        };
        let key = choice.key();
        let known = self.by_choice.lock().expect("the editions' lock is never poisoned").get(&key).cloned();
        let edition = match known {
            Some(edition) => edition,
            None => {
                let made = render(choice)?.map(Arc::new);
                self.by_choice.lock().expect("the editions' lock is never poisoned").insert(key, made.clone());
                made
            }
        };
        Ok(match edition {
            Some(email) => Edition::Send(email),
            None => Edition::Nothing(format!("this issue has no digest of the themes they follow ({choice})")),
        })
    }

    /// How many editions of chosen themes are made (those with nothing to send included).
    pub fn made(&self) -> usize {
        self.by_choice.lock().expect("the editions' lock is never poisoned").len()
    }
}
