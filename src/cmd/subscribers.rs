//! `gazette subscribers add|remove|list|import|export`: thin wrappers over `store`, which owns the
//! rules (sticky unsubscribes, case-insensitive addresses). Exit codes: 0 done; 1 the input had
//! problems (invalid import rows, an unknown address to remove, an add refused because the
//! address is unsubscribed or bounced); 2 a malformed address, status or theme list on the command
//! line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::error::{Exit, ExitError};
use chrono::{DateTime, Utc};

use crate::store::{
    AddOutcome, NewSubscriber, RemoveOutcome, Source, Status, Store, Subscriber, SubscriberEmail, clean_name,
};
use crate::themes::ThemeChoice;

#[derive(Debug, clap::Subcommand)]
pub enum SubscribersCommand {
    /// Add an active subscriber (an unsubscribed or bounced one stays so without --reactivate).
    #[command(
        after_help = "Examples:\n  gazette subscribers add reader@example.org --name \"Ada Reader\"\n  gazette subscribers add reader@example.org --themes \"Open source; Energy\"\n\n--themes also changes the themes of a subscriber already there (not of an unsubscribed or bounced\none); --themes \"\" makes them follow every theme again."
    )]
    Add {
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// Make an unsubscribed or bounced address active again
        #[arg(long)]
        reactivate: bool,
        /// The themes they follow, separated by `;` (empty: every theme, the default for a new one)
        #[arg(long, value_name = "LIST")]
        themes: Option<String>,
    },
    /// Mark a subscriber unsubscribed (the row is kept, so the unsubscribe sticks).
    #[command(after_help = "Example:\n  gazette subscribers remove reader@example.org")]
    Remove { email: String },
    /// List subscribers, with the themes they follow and until when they paused.
    #[command(
        after_help = "Examples:\n  gazette subscribers list\n  gazette subscribers list --status active --format csv\n  gazette subscribers list --status active --theme \"Open source\"\n  gazette subscribers list --theme \"Open source\" --with-everything\n\n--theme lists the subscribers who chose that theme (the spelling does not matter: \"open-source\"\nis \"Open Source\"). Subscribers who follow every theme (THEMES `all`) receive its digests too;\n--with-everything lists them as well."
    )]
    List {
        /// pending, active, unsubscribed, bounced or complained
        #[arg(long)]
        status: Option<String>,
        /// Only the subscribers who chose this theme
        #[arg(long, value_name = "NAME")]
        theme: Option<String>,
        /// With --theme: also those who follow every theme
        #[arg(long, requires = "theme")]
        with_everything: bool,
        #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
        format: String,
    },
    /// Import a CSV file whose header row names an `email` column (and optionally `name`, `status`, `themes`, `paused_until`).
    #[command(
        after_help = "Example:\n  gazette subscribers import subscribers/example.csv\n\nNew addresses are added with the file's name, status (default active), themes (names separated\nby `;`, empty: every theme) and paused_until (RFC 3339, empty: not paused). An address already\nthere keeps its name and status, so an unsubscribe sticks; when the file has a `themes` or\n`paused_until` column, a subscriber already there who is not unsubscribed, bounced or\ncomplained takes the file's value (an empty `themes` cell: every theme again) and is counted\n`updated`. So an export, edited and imported again, sets everyone's themes. A row the file\ncannot use is named by its line and column and left out; the others are imported."
    )]
    Import { file: PathBuf },
    /// Export subscribers as CSV to standard output (the columns import reads back, themes and pause included).
    #[command(after_help = "Example:\n  gazette subscribers export --status active > active.csv")]
    Export {
        #[arg(long)]
        status: Option<String>,
    },
}

/// Rows fetched per query when listing or exporting: memory stays flat however many there are.
const PAGE: u32 = 10_000;

pub fn run(config: &Config, command: SubscribersCommand, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    // Arguments are checked before the database is opened (or created).
    let command = Checked::from(command)?;
    super::runtime()?.block_on(async {
        let store = Store::open(&config.paths.database).await?;
        let code = match command {
            Checked::Add { email, name, reactivate, themes } => add(&store, email, name, reactivate, themes).await?,
            Checked::Remove { email } => remove(&store, &email).await?,
            Checked::List { status, theme, format } => {
                ok_unless_pipe_closed(list(&store, status, theme.as_ref(), format, now).await)?
            }
            Checked::Import { file, opened } => import(&store, &file, opened).await?,
            Checked::Export { status } => ok_unless_pipe_closed(export(&store, status, now).await)?,
        };
        store.close().await;
        Ok(code)
    })
}

#[derive(Clone, Copy)]
enum Format {
    Table,
    Csv,
    Json,
}

/// `list --theme`: the theme (a choice of one) and whether those who follow everything are listed too.
struct ThemeFilter {
    theme: ThemeChoice,
    with_everything: bool,
}

impl ThemeFilter {
    fn slug(&self) -> &str {
        self.theme.slugs().next().expect("a choice has a theme")
    }

    fn keeps(&self, s: &Subscriber) -> bool {
        s.themes.as_ref().map_or(self.with_everything, |c| c.has_slug(self.slug()))
    }
}

/// The command with its arguments parsed.
enum Checked {
    /// `themes`: `None` leaves them as they are; `Some(None)`: every theme.
    Add {
        email: SubscriberEmail,
        name: Option<String>,
        reactivate: bool,
        themes: Option<Option<ThemeChoice>>,
    },
    Remove {
        email: SubscriberEmail,
    },
    List {
        status: Option<Status>,
        theme: Option<ThemeFilter>,
        format: Format,
    },
    Import {
        file: std::path::PathBuf,
        opened: std::fs::File,
    },
    Export {
        status: Option<Status>,
    },
}

impl Checked {
    fn from(command: SubscribersCommand) -> Result<Checked, ExitError> {
        let email = |s: &str| s.parse::<SubscriberEmail>().map_err(|e| ExitError::unusable(e.to_string()));
        let status = |s: Option<String>| {
            s.map(|s| s.parse::<Status>().map_err(|e| ExitError::unusable(format!("--status: {e}")))).transpose()
        };
        Ok(match command {
            SubscribersCommand::Add { email: e, name, reactivate, themes } => Checked::Add {
                email: email(&e)?,
                name: match name {
                    Some(n) => clean_name(&n).map_err(|e| ExitError::unusable(format!("--name: {e}")))?,
                    None => None,
                },
                reactivate,
                themes: themes
                    .map(|t| ThemeChoice::parse_list(&t).map_err(|e| ExitError::unusable(format!("--themes: {e}"))))
                    .transpose()?,
            },
            SubscribersCommand::Remove { email: e } => Checked::Remove { email: email(&e)? },
            SubscribersCommand::List { status: s, theme, with_everything, format } => Checked::List {
                status: status(s)?,
                theme: match theme {
                    None => None,
                    Some(name) if name.contains(';') => {
                        return Err(ExitError::unusable(format!(
                            "--theme: {name:?} holds a `;`: --theme takes one theme; list each theme's readers with its own --theme"
                        )));
                    }
                    Some(name) => match ThemeChoice::from_names([&name]) {
                        Ok(Some(theme)) => Some(ThemeFilter { theme, with_everything }),
                        Ok(None) => {
                            return Err(ExitError::unusable(
                                "--theme: the name is empty; give a theme's name, as in --theme \"Open source\"",
                            ));
                        }
                        Err(e) => return Err(ExitError::unusable(format!("--theme: {e}"))),
                    },
                },
                format: match format.as_str() {
                    "csv" => Format::Csv,
                    "json" => Format::Json,
                    _ => Format::Table,
                },
            },
            SubscribersCommand::Import { file } => match std::fs::File::open(&file) {
                Ok(opened) => Checked::Import { file, opened },
                // Not a usage error: the file named is the input, and it is missing or unreadable.
                Err(e) => return Err(ExitError::failure(format!("{}: cannot read: {e}", file.display()))),
            },
            SubscribersCommand::Export { status: s } => Checked::Export { status: status(s)? },
        })
    }
}

async fn add(
    store: &Store,
    email: SubscriberEmail,
    name: Option<String>,
    reactivate: bool,
    themes: Option<Option<ThemeChoice>>,
) -> anyhow::Result<ExitCode> {
    let new = NewSubscriber { email, name, status: Status::Active, source: Source::Cli };
    // The themes are set once the row is there (and active): a new subscriber is one statement
    // away from following every theme, which is what any subscriber follows until they choose.
    let themes = themes.as_ref();
    Ok(match store.add(&new, reactivate).await? {
        AddOutcome::Added(s) => {
            say!("added {} (active){}", s.email, set_themes(store, &s, themes).await?);
            ExitCode::SUCCESS
        }
        AddOutcome::Activated(s) => {
            say!("{} was pending confirmation; now active{}", s.email, set_themes(store, &s, themes).await?);
            ExitCode::SUCCESS
        }
        AddOutcome::Unchanged(s) => match set_themes(store, &s, themes).await?.as_str() {
            "" => {
                say!("{} is already {}; nothing changed", s.email, s.status);
                ExitCode::SUCCESS
            }
            changed => {
                say!("{} is already {}{changed}", s.email, s.status);
                ExitCode::SUCCESS
            }
        },
        AddOutcome::Reactivated { previous, subscriber } => {
            say!("{} was {previous}; active again{}", subscriber.email, set_themes(store, &subscriber, themes).await?);
            ExitCode::SUCCESS
        }
        AddOutcome::Suppressed(s) => {
            say!(
                "{} is {} (since {}) and stays so; add --reactivate if they asked to receive the newsletter again",
                s.email,
                s.status,
                s.status_changed_at.format("%Y-%m-%d")
            );
            Exit::Failure.into()
        }
    })
}

/// Gives `s` the themes `chosen` (when given and other than theirs); what changed, as the end of a
/// sentence ("; follows every theme"), or nothing.
async fn set_themes(store: &Store, s: &Subscriber, chosen: Option<&Option<ThemeChoice>>) -> anyhow::Result<String> {
    match chosen {
        Some(chosen) if s.themes != *chosen => {
            store.set_themes(s.id, chosen.as_ref()).await?;
            Ok(format!("; follows {}", followed(chosen.as_ref())))
        }
        _ => Ok(String::new()),
    }
}

/// "every theme", or the themes chosen: "the themes Energy; Open source".
fn followed(themes: Option<&ThemeChoice>) -> String {
    match themes {
        None => "every theme".to_string(),
        Some(c) if c.len() == 1 => format!("the theme {}", c.to_list()),
        Some(c) => format!("the themes {}", c.to_list()),
    }
}

async fn remove(store: &Store, email: &SubscriberEmail) -> anyhow::Result<ExitCode> {
    Ok(match store.unsubscribe(email).await? {
        RemoveOutcome::Unsubscribed(s) => {
            say!("unsubscribed {}", s.email);
            ExitCode::SUCCESS
        }
        RemoveOutcome::AlreadyInactive(s) => {
            say!("{} is already {}; nothing changed", s.email, s.status);
            ExitCode::SUCCESS
        }
        RemoveOutcome::NotFound => {
            say!("no subscriber has the address {email}; nothing changed");
            Exit::Failure.into()
        }
    })
}

async fn import(store: &Store, file: &std::path::Path, opened: std::fs::File) -> anyhow::Result<ExitCode> {
    let shown = file.display().to_string();
    let report = store.import_reader(opened, file, |row| say!("{shown}:{}: {}", row.line, row.reason)).await?;
    // Updates happen only with a `themes` or `paused_until` column: other files report as before.
    let updated = if report.updated > 0 { format!("updated {}, ", report.updated) } else { String::new() };
    say!(
        "added {}, {updated}unchanged {}, skipped {} (unsubscribed or bounced), invalid {}",
        report.added,
        report.unchanged,
        report.skipped,
        report.invalid
    );
    Ok(if report.invalid > 0 { Exit::Failure } else { Exit::Success }.into())
}

/// Calls `each` with every subscriber (of `status`, and of `theme` when given), a page at a time
/// (a page may be empty when no one on it follows the theme); the number of subscribers.
async fn for_each_page(
    store: &Store,
    status: Option<Status>,
    theme: Option<&ThemeFilter>,
    mut each: impl FnMut(&[Subscriber]) -> std::io::Result<()>,
) -> anyhow::Result<u64> {
    let mut after = 0;
    let mut count = 0;
    loop {
        let mut page = store.list_page(status, after, PAGE).await?;
        let Some(last) = page.last() else { return Ok(count) };
        after = last.id;
        // Themes are stored as JSON lists of names, so the theme is matched here, by slug.
        if let Some(theme) = theme {
            page.retain(|s| theme.keeps(s));
        }
        count += page.len() as u64;
        each(&page)?;
    }
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Until when `s` is paused, when that is after `now` (a pause that ended is none).
fn paused(s: &Subscriber, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    s.paused_until.filter(|t| *t > now)
}

/// The THEMES column of the table: `all`, or the names separated by `; `.
fn themes_cell(s: &Subscriber) -> String {
    s.themes.as_ref().map_or_else(|| "all".to_string(), ThemeChoice::to_list)
}

/// The widest the THEMES column gets in the table; longer lists are cut (CSV and JSON have them whole).
const THEMES_WIDTH: usize = 40;

/// `text` cut to `width` characters, an ellipsis marking the cut.
fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(width - 1).collect::<String>())
    }
}

async fn list(
    store: &Store,
    status: Option<Status>,
    theme: Option<&ThemeFilter>,
    format: Format,
    now: DateTime<Utc>,
) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        Format::Csv => write_csv(store, status, theme, &mut out, true, now).await?,
        Format::Json => {
            let mut first = true;
            write!(out, "[")?;
            for_each_page(store, status, theme, |page| {
                for s in page {
                    write!(out, "{}\n  ", if first { "" } else { "," })?;
                    first = false;
                    serde_json::to_writer(&mut out, s)?;
                }
                Ok(())
            })
            .await?;
            writeln!(out, "{}]", if first { "" } else { "\n" })?;
        }
        Format::Table => {
            // Column widths come from the first rows; later rows may stick out, which is fine.
            let mut widths: Option<[usize; 3]> = None;
            // A bounce or complaint says why, when a report gave the reason.
            let with_reason = matches!(status, Some(Status::Bounced | Status::Complained));
            let n = for_each_page(store, status, theme, |page| {
                if page.is_empty() {
                    return Ok(());
                }
                let [email_w, name_w, themes_w] = match widths {
                    Some(w) => w,
                    None => {
                        let email_w = page.iter().map(|s| s.email.chars().count()).max().unwrap_or(0).max(5);
                        let name_w = page
                            .iter()
                            .map(|s| s.name.as_deref().unwrap_or("").chars().count())
                            .max()
                            .unwrap_or(0)
                            .max(4);
                        let themes_w = page
                            .iter()
                            .map(|s| themes_cell(s).chars().count())
                            .max()
                            .unwrap_or(0)
                            .clamp(6, THEMES_WIDTH);
                        // SINCE is always 20 characters wide (an RFC 3339 time in UTC), PAUSED 10
                        // (the day a pause ends, or `-`).
                        let last =
                            if with_reason { format!("{:themes_w$}  REASON", "THEMES") } else { "THEMES".into() };
                        writeln!(
                            out,
                            "{:>7}  {:email_w$}  {:name_w$}  {:12}  {:6}  {:20}  {:10}  {last}",
                            "ID", "EMAIL", "NAME", "STATUS", "SOURCE", "SINCE", "PAUSED"
                        )?;
                        *widths.insert([email_w, name_w, themes_w])
                    }
                };
                for s in page {
                    let themes = shorten(&themes_cell(s), themes_w);
                    let last = if with_reason {
                        format!("{themes:themes_w$}  {}", s.status_reason.as_deref().unwrap_or("-"))
                    } else {
                        themes
                    };
                    let paused = paused(s, now).map_or_else(|| "-".to_string(), |t| t.format("%Y-%m-%d").to_string());
                    writeln!(
                        out,
                        "{:>7}  {:email_w$}  {:name_w$}  {:12}  {:6}  {}  {paused:10}  {last}",
                        s.id,
                        s.email,
                        s.name.as_deref().unwrap_or(""),
                        s.status.as_str(),
                        s.source.as_str(),
                        time(&s.status_changed_at)
                    )?;
                }
                Ok(())
            })
            .await?;
            let who = match theme {
                None => String::new(),
                Some(t) if t.with_everything => {
                    format!(" following the theme `{}` or every theme", t.theme.to_list())
                }
                Some(t) => format!(" following the theme `{}`", t.theme.to_list()),
            };
            match (n, status) {
                (0, None) => writeln!(out, "no subscribers{who}")?,
                (0, Some(st)) => writeln!(out, "no {st} subscribers{who}")?,
                (1, _) => writeln!(out, "1 subscriber{who}")?,
                (n, _) => writeln!(out, "{n} subscribers{who}")?,
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn export(store: &Store, status: Option<Status>, now: DateTime<Utc>) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    write_csv(store, status, None, &mut out, false, now).await?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// CSV with a header row, readable by `import` (which takes `email`, `name`, `status`, `themes`
/// and `paused_until`). `themes` is empty for a subscriber who follows every theme; `paused_until`
/// is empty unless a pause lasts after `now`.
async fn write_csv(
    store: &Store,
    status: Option<Status>,
    theme: Option<&ThemeFilter>,
    out: &mut impl Write,
    with_id: bool,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let header = ["email", "name", "status", "source", "created_at", "status_changed_at", "themes", "paused_until"];
    if with_id {
        w.write_record(std::iter::once("id").chain(header))?;
    } else {
        w.write_record(header)?;
    }
    for_each_page(store, status, theme, |page| {
        for s in page {
            let fields = [
                s.email.clone(),
                s.name.clone().unwrap_or_default(),
                s.status.to_string(),
                s.source.as_str().to_string(),
                time(&s.created_at),
                time(&s.status_changed_at),
                s.themes.as_ref().map(ThemeChoice::to_list).unwrap_or_default(),
                paused(s, now).map(|t| time(&t)).unwrap_or_default(),
            ];
            if with_id {
                w.write_record(std::iter::once(s.id.to_string()).chain(fields))?;
            } else {
                w.write_record(&fields)?;
            }
        }
        Ok(())
    })
    .await?;
    w.flush()?;
    Ok(())
}

/// A reader that closed the pipe (`gazette subscribers export | head`) is not an error.
fn ok_unless_pipe_closed(result: anyhow::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    match result {
        Err(e) if e.chain().any(broken_pipe) => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

/// Whether `e` is, or wraps, a write to a closed pipe: the CSV writer's errors travel inside
/// `io::Error`s of another kind, so the wrapped error is looked at too.
fn broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return io.kind() == std::io::ErrorKind::BrokenPipe || io.get_ref().is_some_and(|inner| broken_pipe(inner));
    }
    if let Some(csv) = e.downcast_ref::<csv::Error>() {
        return matches!(csv.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe);
    }
    false
}
