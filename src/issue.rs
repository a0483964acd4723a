//! Weekly issues: digests grouped by the week their date falls in (the week starting on the
//! configured day), a section per day inside, closest links resolved across the whole archive.
//! Pure: no clock, no files. The current instant, when needed, is an argument.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::Serialize;

use crate::digest::{CatalogEntry, ClosestTarget, Digest, Listed};
use crate::issue_id::IssueId;

/// How days are cut into weeks: the configured first day of the week and time zone.
#[derive(Debug, Clone, Copy)]
pub struct WeekRule {
    pub starts: Weekday,
    pub timezone: Tz,
}

impl WeekRule {
    /// The first day of the week containing `date`.
    pub fn week_start(&self, date: NaiveDate) -> NaiveDate {
        let back = (date.weekday().num_days_from_monday() + 7 - self.starts.num_days_from_monday()) % 7;
        date - Duration::days(back as i64)
    }

    /// The calendar date of `instant` in the configured zone.
    pub fn local_date(&self, instant: DateTime<Utc>) -> NaiveDate {
        instant.with_timezone(&self.timezone).date_naive()
    }

    /// The last week that has fully ended at `instant`, in the configured zone: the week before the
    /// one `instant` falls in. This is the week a send at `instant` is about.
    pub fn last_complete_week(&self, instant: DateTime<Utc>) -> NaiveDate {
        self.week_start(self.local_date(instant)) - Duration::days(7)
    }

    /// The instant the week starting on `week` begins, in the configured zone (midnight, or the first
    /// instant after it on a day whose midnight is skipped by a clock change).
    pub fn week_begins_at(&self, week: NaiveDate) -> DateTime<Utc> {
        local_midnight(self.timezone, week)
    }

    /// The instant the week starting on `week` has ended.
    pub fn week_ends_at(&self, week: NaiveDate) -> DateTime<Utc> {
        local_midnight(self.timezone, week + Duration::days(7))
    }
}

fn local_midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let mut t = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    // A zone may skip midnight (a few do change clocks at 00:00): take the first instant that exists.
    for _ in 0..4 * 60 {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.with_timezone(&Utc);
        }
        t += Duration::minutes(1);
    }
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

/// A week named on the command line: any date inside it (`2023-07-23`) or an ISO week (`2023-W29`,
/// which names its Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeekSpec(pub NaiveDate);

/// A `--week` that names no week.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a week; give a date inside it (2023-07-23) or an ISO week (2023-W29)")]
pub struct ParseWeekError(String);

impl std::str::FromStr for WeekSpec {
    type Err = ParseWeekError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(WeekSpec(d));
        }
        if let Some((y, w)) = s.split_once(['W', 'w']) {
            let y = y.trim_end_matches('-');
            if let (Ok(year), Ok(week)) = (y.parse::<i32>(), w.parse::<u32>())
                && let Some(d) = NaiveDate::from_isoywd_opt(year, week, Weekday::Mon)
            {
                return Ok(WeekSpec(d));
            }
        }
        Err(ParseWeekError(s.to_string()))
    }
}

/// One weekly issue, of whole digests (`WholeIssue`, what rendering shows) or of catalog entries
/// (`CatalogIssue`, what every build lists, numbers and links).
#[derive(Debug, Clone, Serialize)]
pub struct Issue<D = Digest> {
    /// The first day of the week, `2023-07-17`: stable, and the name of its archive folder.
    pub id: IssueId,
    pub number: u32,
    pub start: NaiveDate,
    /// The last day of the week (inclusive).
    pub end: NaiveDate,
    /// "17–23 July 2023", for people.
    pub label: String,
    /// Days that have digests, in date order.
    pub days: Vec<Day<D>>,
    /// The editor's note for the issue (markdown), shown above its digests.
    pub note: Option<String>,
    /// When its digests last changed after it was published, from the publication record: the
    /// feeds' `updated`. `None` while they never have.
    #[serde(skip)]
    pub revised: Option<DateTime<Utc>>,
    /// When it was published, from the publication record: its date in the feeds. `None` for a
    /// draft.
    #[serde(skip)]
    pub published: Option<DateTime<Utc>>,
}

/// An issue whose every digest was read whole: the only issue rendering takes.
pub type WholeIssue = Issue<Digest>;

/// An issue as the catalog holds it: listed, numbered and linked, not shown.
pub type CatalogIssue = Issue<CatalogEntry>;

#[derive(Debug, Clone, Serialize)]
pub struct Day<D = Digest> {
    pub date: NaiveDate,
    /// "Sunday 23 July 2023".
    pub label: String,
    /// Ordered by file name.
    pub digests: Vec<D>,
}

/// The example digest's id (`digest::EXAMPLE_ID`): a week that holds nothing else is an example,
/// shown in drafts and previews, never published nor numbered, so that a new project's first real
/// issue is #1.
pub use crate::digest::EXAMPLE_ID;

impl<D: Listed> Issue<D> {
    /// Every digest of the week is the example `init` wrote (see `EXAMPLE_ID`).
    pub fn is_example(&self) -> bool {
        self.digests().all(|d| d.id() == EXAMPLE_ID) && self.digest_count() > 0
    }

    pub fn digests(&self) -> impl Iterator<Item = &D> {
        self.days.iter().flat_map(|d| d.digests.iter())
    }

    pub fn digest_count(&self) -> usize {
        self.days.iter().map(|d| d.digests.len()).sum()
    }

    /// Every theme of the week's digests, once each, in the order they first appear.
    pub fn themes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in self.digests() {
            for t in d.themes() {
                if !out.contains(t) {
                    out.push(t.clone());
                }
            }
        }
        out
    }

    /// This issue (its number, dates and note) with `digests`, the whole form of its own, in its
    /// order (day by day, file by file).
    pub fn with_digests(&self, digests: Vec<Digest>) -> WholeIssue {
        let mut digests = digests.into_iter();
        let days = self
            .days
            .iter()
            .map(|day| Day {
                date: day.date,
                label: day.label.clone(),
                digests: digests.by_ref().take(day.digests.len()).collect(),
            })
            .collect();
        Issue {
            id: self.id.clone(),
            number: self.number,
            start: self.start,
            end: self.end,
            label: self.label.clone(),
            days,
            note: self.note.clone(),
            revised: self.revised,
            published: self.published,
        }
    }
}

impl WholeIssue {
    /// A hash of what the issue says: its digests as read (not the links resolved between them,
    /// which change as other weeks are published). The publication record keeps it, so that an
    /// edit to a published issue is noticed.
    pub fn content_hash(&self) -> String {
        content_hash(self.digests(), self.note.as_deref())
    }
}

/// The content hash (`WholeIssue::content_hash`) of an issue of `digests`, in its order, with
/// `note`.
pub fn content_hash<'a>(digests: impl Iterator<Item = &'a Digest>, note: Option<&str>) -> String {
    let mut hasher = crate::fingerprint::Fingerprint::default();
    let mut text = |s: &str| {
        hasher.text(s);
    };
    {
        for d in digests {
            for field in [&d.file_name, &d.title, &d.source_url, &d.link, &d.summary] {
                text(field);
            }
            text(&d.date.to_string());
            for list in [&d.keywords, &d.themes, &d.signals.columns] {
                text(&list.len().to_string());
                list.iter().for_each(|s| text(s));
            }
            text(&d.signals.rows.len().to_string());
            for row in &d.signals.rows {
                text(&row.len().to_string());
                row.iter().for_each(|s| text(s));
            }
            text(&d.closest.len().to_string());
            for c in &d.closest {
                text(&c.title);
                text(&c.reference);
            }
        }
        // Only a note that exists counts, so that issues without one keep the hash they were
        // published with before notes existed.
        if let Some(note) = note {
            text("note");
            text(note);
        }
    }
    hasher.hex(16)
}

impl<D: Listed> fmt::Display for Issue<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {} ({} digests)", self.number, self.label, self.digest_count())
    }
}

/// Issue numbers that readers have already seen, by issue id. They never change once given.
pub type PinnedNumbers = BTreeMap<IssueId, u32>;

/// Groups digests into weekly issues, oldest first, numbers them (`number_issues`) and resolves
/// closest links across all of them.
pub fn group_into_issues(digests: Vec<Digest>, rule: &WeekRule, pinned: &PinnedNumbers) -> Vec<Issue> {
    let mut issues = group_by_week(digests, rule);
    number_issues(&mut issues, pinned);
    resolve_closest(&mut issues, |_| true);
    issues
}

/// Groups digests into weekly issues, oldest first, not yet numbered (0) nor linked: for a caller
/// that numbers and links them by rules of its own (`Project`).
pub fn group_by_week<D: Listed>(digests: Vec<D>, rule: &WeekRule) -> Vec<Issue<D>> {
    let mut weeks: BTreeMap<NaiveDate, BTreeMap<NaiveDate, Vec<D>>> = BTreeMap::new();
    let mut starts: foldhash::HashMap<NaiveDate, NaiveDate> = Default::default();
    for d in digests {
        let start = *starts.entry(d.date()).or_insert_with(|| rule.week_start(d.date()));
        weeks.entry(start).or_default().entry(d.date()).or_default().push(d);
    }
    // Each day by file name (digests usually come in that order already, which sorting notices).
    for day in weeks.values_mut().flat_map(|days| days.values_mut()) {
        day.sort_by(|a, b| a.file_name().cmp(b.file_name()));
    }

    weeks.into_iter().map(|(start, days)| Issue::of_week(start, days.into_iter().collect())).collect()
}

impl<D> Issue<D> {
    /// The issue of the week starting on `start`, with these days (each with digests, in date
    /// order, each day's digests by file name); not yet numbered (0) nor linked.
    pub fn of_week(start: NaiveDate, days: Vec<(NaiveDate, Vec<D>)>) -> Issue<D> {
        let end = start + Duration::days(6);
        Issue {
            label: week_label(start, end),
            id: IssueId::from_week_start(start),
            number: 0,
            start,
            end,
            days: days
                .into_iter()
                .map(|(date, digests)| Day { date, label: date.format("%A %-d %B %Y").to_string(), digests })
                .collect(),
            note: None,
            revised: None,
            published: None,
        }
    }
}

/// Numbers `issues` (oldest first). An issue whose number is recorded (it was published) keeps it;
/// every other one is numbered after the highest recorded number, in week order. With nothing
/// recorded this is simply 1, 2, 3… over the weeks that have digests. A digest added later to an
/// old, empty week therefore makes an issue with the next free number instead of renumbering the
/// issues that followed it.
pub fn number_issues<D: Listed>(issues: &mut [Issue<D>], pinned: &PinnedNumbers) {
    let mut next = pinned.values().copied().max().unwrap_or(0) + 1;
    for issue in issues {
        issue.number = match pinned.get(&issue.id) {
            Some(&n) => n,
            // The example takes no number a real issue will want (it shows as #0 in drafts).
            None if issue.is_example() => 0,
            None => {
                next += 1;
                next - 1
            }
        };
    }
}

/// Fills in `target` of every closest entry whose reference starts with the id of a digest in an
/// issue of `issues` that `linkable` accepts (a published archive links only published issues);
/// every other entry is left without a target.
pub fn resolve_closest(issues: &mut [Issue], linkable: impl Fn(&Issue) -> bool) {
    let homes = Homes::of(issues, linkable);
    issues.iter_mut().for_each(|issue| homes.resolve(issue));
}

/// Which issue each linkable digest is in, by digest id: what closest references resolve against.
/// Built on every load over the whole archive (100,000 digests in the benchmark's), so each digest
/// costs one allocation (its id), and its issue is a place in `issue_ids`.
#[derive(Debug, Default, Clone)]
pub struct Homes {
    /// By digest id, the place in `issue_ids` of its issue.
    home: foldhash::HashMap<Box<str>, u32>,
    issue_ids: Vec<IssueId>,
    /// The lengths of the ids, each once: a reference is matched by its prefixes of these lengths.
    id_lengths: Vec<usize>,
}

impl Homes {
    /// The digests of the issues of `issues` that `linkable` accepts.
    pub fn of<D: Listed>(issues: &[Issue<D>], linkable: impl Fn(&Issue<D>) -> bool) -> Homes {
        let linked: Vec<&Issue<D>> = issues.iter().filter(|i| linkable(i)).collect();
        let count = linked.iter().map(|i| i.digest_count()).sum();
        let mut homes =
            Homes { home: foldhash::HashMap::with_capacity_and_hasher(count, Default::default()), ..Homes::default() };
        for (place, issue) in linked.into_iter().enumerate() {
            let place = u32::try_from(place).expect("fewer than 2^32 issues");
            homes.issue_ids.push(issue.id.clone());
            for d in issue.digests() {
                homes.home.insert(d.id().into(), place);
                if !homes.id_lengths.contains(&d.id().len()) {
                    homes.id_lengths.push(d.id().len());
                }
            }
        }
        homes
    }

    /// Fills in (or clears) `target` of every closest entry of `issue`.
    pub fn resolve(&self, issue: &mut WholeIssue) {
        issue.days.iter_mut().flat_map(|day| day.digests.iter_mut()).for_each(|d| self.resolve_digest(d));
    }

    /// Fills in (or clears) `target` of every closest entry of `d`.
    pub fn resolve_digest(&self, d: &mut Digest) {
        for c in &mut d.closest {
            c.target = self.target(&c.reference).map(|(digest_id, issue_id)| {
                Box::new(ClosestTarget { digest_id: digest_id.into(), issue_id: issue_id.clone() })
            });
        }
    }

    /// Where a closest `reference` leads: the id of the digest it names and the id of that
    /// digest's issue, when it names a linkable one.
    pub fn target<'a>(&'a self, reference: &'a str) -> Option<(&'a str, &'a IssueId)> {
        self.id_lengths
            .iter()
            .filter_map(|&n| reference.get(..n))
            .find_map(|prefix| self.home.get(prefix).map(|&place| (prefix, &self.issue_ids[place as usize])))
    }
}

/// "17–23 July 2023", "31 July – 6 August 2023", "25 December 2023 – 1 January 2024".
pub fn week_label(start: NaiveDate, end: NaiveDate) -> String {
    if start.year() != end.year() {
        format!("{} – {}", start.format("%-d %B %Y"), end.format("%-d %B %Y"))
    } else if start.month() != end.month() {
        format!("{} – {}", start.format("%-d %B"), end.format("%-d %B %Y"))
    } else {
        format!("{}–{}", start.format("%-d"), end.format("%-d %B %Y"))
    }
}

/// Finds the issue of the week containing `day`.
pub fn find_week<'a, D>(issues: &'a [Issue<D>], rule: &WeekRule, day: NaiveDate) -> Option<&'a Issue<D>> {
    let start = rule.week_start(day);
    issues.iter().find(|i| i.start == start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Closest, Signals};

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn digest(file: &str, day: &str) -> Digest {
        Digest {
            id: crate::digest::id_from_file_name(file).unwrap(),
            file_name: file.into(),
            path: file.into(),
            title: format!("title of {file}"),
            date: date(day),
            source_url: String::new(),
            link: "https://example.org".into(),
            summary: "s".into(),
            keywords: vec![],
            themes: vec![],
            signals: Signals::default(),
            closest: vec![],
        }
    }

    const MONDAY: WeekRule = WeekRule { starts: Weekday::Mon, timezone: chrono_tz::Europe::London };
    const SUNDAY: WeekRule = WeekRule { starts: Weekday::Sun, timezone: chrono_tz::Europe::London };

    #[test]
    fn a_sunday_closes_the_monday_week_and_opens_the_sunday_week() {
        // 2023-07-23 is a Sunday.
        assert_eq!(MONDAY.week_start(date("2023-07-23")), date("2023-07-17"));
        assert_eq!(MONDAY.week_start(date("2023-07-17")), date("2023-07-17"));
        assert_eq!(MONDAY.week_start(date("2023-07-24")), date("2023-07-24"));
        assert_eq!(SUNDAY.week_start(date("2023-07-23")), date("2023-07-23"));
        assert_eq!(SUNDAY.week_start(date("2023-07-22")), date("2023-07-16"));
    }

    #[test]
    fn digests_group_by_week_then_day_then_file_name() {
        let ds = vec![
            digest("005_05.txt", "2023-07-23"),
            digest("002_02.txt", "2023-07-18"),
            digest("001_01.txt", "2023-07-23"),
            digest("003_03.txt", "2023-07-24"),
            digest("004_04.txt", "2023-06-01"),
        ];
        let issues = group_into_issues(ds, &MONDAY, &PinnedNumbers::new());
        let shape: Vec<(String, u32, Vec<Vec<&str>>)> = issues
            .iter()
            .map(|i| {
                (
                    i.id.to_string(),
                    i.number,
                    i.days.iter().map(|d| d.digests.iter().map(|x| x.file_name.as_str()).collect()).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("2023-05-29".to_string(), 1, vec![vec!["004_04.txt"]]),
                ("2023-07-17".to_string(), 2, vec![vec!["002_02.txt"], vec!["001_01.txt", "005_05.txt"]]),
                ("2023-07-24".to_string(), 3, vec![vec!["003_03.txt"]]),
            ]
        );
        assert_eq!(issues[1].label, "17–23 July 2023");
        assert_eq!(issues[1].days[1].label, "Sunday 23 July 2023");
    }

    #[test]
    fn week_starts_sunday_moves_the_sunday_digest_forward() {
        let ds = vec![digest("001_01.txt", "2023-07-22"), digest("002_02.txt", "2023-07-23")];
        let monday = group_into_issues(ds.clone(), &MONDAY, &PinnedNumbers::new());
        assert_eq!(monday.len(), 1);
        let sunday = group_into_issues(ds, &SUNDAY, &PinnedNumbers::new());
        assert_eq!(sunday.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), vec!["2023-07-16", "2023-07-23"]);
    }

    #[test]
    fn a_late_digest_in_an_old_empty_week_never_renumbers_sent_issues() {
        let ds = vec![digest("001_01.txt", "2023-07-03"), digest("002_02.txt", "2023-07-17")];
        let first = group_into_issues(ds.clone(), &MONDAY, &PinnedNumbers::new());
        let pinned: PinnedNumbers = first.iter().map(|i| (i.id.clone(), i.number)).collect();
        let mut more = ds;
        more.push(digest("003_03.txt", "2023-07-10")); // the empty week between them
        more.push(digest("004_04.txt", "2023-07-24"));
        let second = group_into_issues(more, &MONDAY, &pinned);
        let numbers: Vec<(&str, u32)> = second.iter().map(|i| (i.id.as_str(), i.number)).collect();
        assert_eq!(numbers, vec![("2023-07-03", 1), ("2023-07-10", 3), ("2023-07-17", 2), ("2023-07-24", 4)]);
    }

    #[test]
    fn closest_references_resolve_by_id_prefix_across_issues() {
        let mut a = digest("001_aaaa000011112222.txt", "2023-07-03");
        let b = digest("002_bbbb000011112222.txt", "2023-07-17");
        a.closest = vec![
            Closest { title: "B".into(), reference: "bbbb000011112222ffffeeeeddddcccc".into(), target: None },
            Closest { title: "Elsewhere".into(), reference: "cccc000011112222ffffeeeeddddcccc".into(), target: None },
        ];
        let issues = group_into_issues(vec![a, b], &MONDAY, &PinnedNumbers::new());
        let c = &issues[0].days[0].digests[0].closest;
        assert_eq!(
            c[0].target.as_deref(),
            Some(&ClosestTarget { digest_id: "bbbb000011112222".into(), issue_id: "2023-07-17".parse().unwrap() })
        );
        assert_eq!(c[1].target, None);
        assert_eq!(c[1].title, "Elsewhere");
    }

    #[test]
    fn homes_skip_the_issues_that_are_not_linkable_and_name_the_right_one_after_them() {
        let issues = group_into_issues(
            vec![
                digest("001_aaaa000011112222.txt", "2023-07-03"),
                digest("002_bbbb000011112222.txt", "2023-07-10"),
                digest("003_cccc000011112222.txt", "2023-07-17"),
                digest("004_dddd000011112222.txt", "2023-07-19"),
            ],
            &MONDAY,
            &PinnedNumbers::new(),
        );
        let homes = Homes::of(&issues, |i| i.id != "2023-07-10");
        assert_eq!(
            homes.target("aaaa000011112222ffff").map(|(d, i)| (d, i.as_str())),
            Some(("aaaa000011112222", "2023-07-03"))
        );
        assert_eq!(homes.target("bbbb000011112222ffff"), None, "a digest of an issue left out leads nowhere");
        assert_eq!(
            homes.target("cccc000011112222ffff").map(|(d, i)| (d, i.as_str())),
            Some(("cccc000011112222", "2023-07-17"))
        );
        assert_eq!(
            homes.target("dddd000011112222").map(|(d, i)| (d, i.as_str())),
            Some(("dddd000011112222", "2023-07-17"))
        );
        assert_eq!(homes.target("dddd00001111"), None, "shorter than any id");
    }

    #[test]
    fn the_content_hash_follows_the_digests_not_the_links_between_weeks() {
        let mut a = digest("001_aaaa000011112222.txt", "2023-07-03");
        a.closest = vec![Closest { title: "B".into(), reference: "bbbb000011112222".into(), target: None }];
        let b = digest("002_bbbb000011112222.txt", "2023-07-17");
        let mut issues = group_into_issues(vec![a.clone(), b], &MONDAY, &PinnedNumbers::new());
        let linked = issues[0].content_hash();
        resolve_closest(&mut issues, |i| i.id != "2023-07-17"); // the week of B not published
        assert_eq!(issues[0].days[0].digests[0].closest[0].target, None);
        assert_eq!(issues[0].content_hash(), linked, "a link that resolves differently is not an edit");
        let mut edited = a;
        edited.summary.push('!');
        let again = group_into_issues(vec![edited], &MONDAY, &PinnedNumbers::new());
        assert_ne!(again[0].content_hash(), linked);
        // Text moved from one field to the next is a change too.
        let mut x = digest("001_aaaa000011112222.txt", "2023-07-03");
        let mut y = x.clone();
        (x.title, x.link) = ("ab".into(), "c".into());
        (y.title, y.link) = ("a".into(), "bc".into());
        let hx = group_into_issues(vec![x], &MONDAY, &PinnedNumbers::new())[0].content_hash();
        let hy = group_into_issues(vec![y], &MONDAY, &PinnedNumbers::new())[0].content_hash();
        assert_ne!(hx, hy);
    }

    #[test]
    fn labels_across_months_and_years() {
        assert_eq!(week_label(date("2023-07-31"), date("2023-08-06")), "31 July – 6 August 2023");
        assert_eq!(week_label(date("2023-12-25"), date("2023-12-31")), "25–31 December 2023");
        assert_eq!(week_label(date("2024-12-30"), date("2025-01-05")), "30 December 2024 – 5 January 2025");
    }

    #[test]
    fn week_specs() {
        assert_eq!("2023-07-23".parse::<WeekSpec>().unwrap().0, date("2023-07-23"));
        assert_eq!("2023-W29".parse::<WeekSpec>().unwrap().0, date("2023-07-17"));
        assert!("2023-W60".parse::<WeekSpec>().is_err());
        assert!("last week".parse::<WeekSpec>().is_err());
    }

    #[test]
    fn last_complete_week_uses_the_configured_zone() {
        // Monday 24 July 2023 00:30 in London is still Sunday 23:30 UTC.
        let t = Utc.with_ymd_and_hms(2023, 7, 23, 23, 30, 0).unwrap();
        assert_eq!(MONDAY.last_complete_week(t), date("2023-07-17"));
        let utc = WeekRule { starts: Weekday::Mon, timezone: chrono_tz::UTC };
        assert_eq!(utc.last_complete_week(t), date("2023-07-10"));
        assert_eq!(MONDAY.week_ends_at(date("2023-07-17")), Utc.with_ymd_and_hms(2023, 7, 23, 23, 0, 0).unwrap());
    }
}
