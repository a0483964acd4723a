//! When an issue is due. Pure: the cron schedule, the week rule, the moment of the round, the last
//! round and which issues were already sent go in; what to do comes out. The loop that sleeps,
//! builds and sends around it lives in `scheduler`.
//!
//! At a fire time the due issue is the last complete week before it. Fire times are grouped by the
//! week they are due for, so two fire times for one week (a daily schedule, or the hour repeated
//! when clocks go back) can never mean two sends: the send record in the database decides.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use crate::issue::WeekRule;

/// How far back a round looks for fire times it has not handled yet.
const LOOKBACK_DAYS: i64 = 35;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Build and send the issue of `week` now (`fire` is the fire time it is due for).
    Send { week: NaiveDate, fire: DateTime<Utc> },
    /// The issue of `week` was due at `fire` but is more than `max_lateness` late: log it, leave it to the editor.
    Missed { week: NaiveDate, fire: DateTime<Utc> },
    /// Already sent (or its send already started): nothing to do.
    AlreadySent { week: NaiveDate },
}

/// Decides a round at `now`. `last_round` is when the previous round ran (None on the first one);
/// `is_sent(week)` says whether that week's send has started before.
pub fn decide(
    cron: &cron::Schedule,
    rule: &WeekRule,
    now: DateTime<Utc>,
    last_round: Option<DateTime<Utc>>,
    max_lateness: Duration,
    is_sent: impl Fn(NaiveDate) -> bool,
) -> Vec<Decision> {
    let fires = fire_times(cron, rule, now, last_round);
    let Some(&latest) = fires.last() else { return Vec::new() };
    // The latest fire time per due week.
    let mut by_week: BTreeMap<NaiveDate, DateTime<Utc>> = BTreeMap::new();
    for fire in fires {
        by_week.insert(rule.last_complete_week(fire), fire);
    }
    let lateness = chrono::Duration::from_std(max_lateness).unwrap_or(chrono::Duration::MAX);
    by_week
        .into_iter()
        .map(|(week, fire)| {
            if is_sent(week) {
                Decision::AlreadySent { week }
            } else if fire == latest && now - fire <= lateness {
                Decision::Send { week, fire }
            } else {
                Decision::Missed { week, fire }
            }
        })
        .collect()
}

/// Fire times this round is responsible for, oldest first: those after the last round, and always
/// the latest one at or before `now`.
fn fire_times(
    cron: &cron::Schedule,
    rule: &WeekRule,
    now: DateTime<Utc>,
    last_round: Option<DateTime<Utc>>,
) -> Vec<DateTime<Utc>> {
    let floor = now - chrono::Duration::days(LOOKBACK_DAYS);
    let all: Vec<DateTime<Utc>> = fires_after(cron, rule, floor).take_while(|t| *t <= now).take(100_000).collect();
    let Some(&latest) = all.last() else { return Vec::new() };
    let mut out: Vec<DateTime<Utc>> = match last_round {
        Some(last) => all.into_iter().filter(|t| *t > last).collect(),
        None => Vec::new(),
    };
    if out.last() != Some(&latest) {
        out.push(latest);
    }
    out
}

/// The last week whose issue is due at `now`: the week that the latest fire time at or before
/// `now` is for. An issue is due from the first fire time after its week has ended, so every week
/// up to this one is due. `None` when the schedule has never fired in the last hundred years.
pub fn due_through(cron: &cron::Schedule, rule: &WeekRule, now: DateTime<Utc>) -> Option<NaiveDate> {
    latest_fire(cron, rule, now).map(|latest| rule.last_complete_week(latest))
}

/// The latest fire time at or before `now`, if the schedule fired in the last hundred years.
pub fn latest_fire(cron: &cron::Schedule, rule: &WeekRule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // Widening windows: a schedule that fires every minute is found in the first, a yearly one later.
    for days in [1, 8, 64, 512, 4096, 36_600] {
        let floor = now - chrono::Duration::days(days);
        if let Some(latest) = fires_after(cron, rule, floor).take_while(|t| *t <= now).last() {
            return Some(latest);
        }
    }
    None
}

/// When the issue of the week starting on `week` falls due: the first fire time at or after the
/// week's end. `None` when the schedule never fires again.
pub fn due_at(cron: &cron::Schedule, rule: &WeekRule, week: NaiveDate) -> Option<DateTime<Utc>> {
    fires_after(cron, rule, rule.week_ends_at(week) - chrono::Duration::seconds(1)).next()
}

/// Whether a round at `now` sends the issue of `week` (not sent yet) on its own: it is the week of
/// the latest fire time, and that fire time is at most `max_lateness` ago (as `decide` says).
pub fn sends_on_its_own(
    cron: &cron::Schedule,
    rule: &WeekRule,
    now: DateTime<Utc>,
    max_lateness: Duration,
    week: NaiveDate,
) -> bool {
    let lateness = chrono::Duration::from_std(max_lateness).unwrap_or(chrono::Duration::MAX);
    latest_fire(cron, rule, now).is_some_and(|fire| rule.last_complete_week(fire) == week && now - fire <= lateness)
}

/// The next fire time after `now`, and the week it will be due for.
pub fn next_fire(cron: &cron::Schedule, rule: &WeekRule, now: DateTime<Utc>) -> Option<(DateTime<Utc>, NaiveDate)> {
    let t = fires_after(cron, rule, now).find(|t| *t > now)?;
    Some((t, rule.last_complete_week(t)))
}

/// When the schedule fires, for readers: "every Monday at 08:00 (Europe/London time)" for a
/// schedule at one time of day on some weekdays (or every day), the cron expression itself for any
/// other. Pure: the same words whenever it is asked.
pub fn in_words(cron: &cron::Schedule, timezone: chrono_tz::Tz) -> String {
    use cron::TimeUnitSpec;
    let hours: Vec<u32> = cron.hours().iter().collect();
    let minutes: Vec<u32> = cron.minutes().iter().collect();
    let weekly = cron.days_of_month().is_all() && cron.months().is_all() && cron.years().is_all();
    let (&[hour], &[minute], true) = (hours.as_slice(), minutes.as_slice(), weekly && cron.seconds().count() == 1)
    else {
        return format!("on the schedule `{}` ({timezone} time)", cron.source());
    };
    // cron counts the days of the week from Sunday = 1.
    const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
    let days: Vec<&str> = cron.days_of_week().iter().filter_map(|d| DAYS.get(d as usize - 1).copied()).collect();
    let when = if cron.days_of_week().is_all() {
        "every day".to_string()
    } else {
        // Monday first, as the week reads.
        let mut days = days;
        days.sort_by_key(|d| (DAYS.iter().position(|x| x == d).unwrap_or(0) + 6) % 7);
        match days.split_last() {
            Some((last, [])) => format!("every {last}"),
            Some((last, rest)) => format!("every {} and {last}", rest.join(", ")),
            None => "never".to_string(),
        }
    };
    format!("{when} at {hour:02}:{minute:02} ({timezone} time)")
}

/// Fire times after `from`, read on the wall clock of the configured zone. The cron crate, given
/// a zone, skips a time that a clock change removes (01:30 on the last Sunday of March in London),
/// which would lose that week's issue; here such a time fires at the first instant after the gap.
/// A wall-clock time that happens twice (clocks going back) fires once, at its first occurrence.
fn fires_after<'a>(
    cron: &'a cron::Schedule,
    rule: &WeekRule,
    from: DateTime<Utc>,
) -> impl Iterator<Item = DateTime<Utc>> + 'a {
    let tz = rule.timezone;
    let wall = from.with_timezone(&tz).naive_local() - chrono::Duration::hours(3);
    cron.after(&Utc.from_utc_datetime(&wall)).map(move |w| to_instant(tz, w.naive_utc())).filter(move |t| *t > from)
}

fn to_instant(tz: chrono_tz::Tz, wall: chrono::NaiveDateTime) -> DateTime<Utc> {
    let mut t = wall;
    for _ in 0..=180 {
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return dt.with_timezone(&Utc);
        }
        t += chrono::Duration::minutes(1);
    }
    Utc.from_utc_datetime(&wall)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;
    use std::str::FromStr;

    #[test]
    fn the_schedule_reads_as_words_for_a_reader() {
        let words = |text: &str| in_words(&text.parse().unwrap(), chrono_tz::Europe::London);
        assert_eq!(words("0 0 8 * * Mon"), "every Monday at 08:00 (Europe/London time)");
        assert_eq!(words("0 30 17 * * Fri,Mon"), "every Monday and Friday at 17:30 (Europe/London time)");
        assert_eq!(words("0 5 6 * * Sun,Tue,Sat"), "every Tuesday, Saturday and Sunday at 06:05 (Europe/London time)");
        assert_eq!(words("0 0 7 * * *"), "every day at 07:00 (Europe/London time)");
        // Anything else is said as it is written rather than wrongly.
        assert_eq!(words("0 0 8 1 * *"), "on the schedule `0 0 8 1 * *` (Europe/London time)");
        assert_eq!(words("0 0 8,20 * * Mon"), "on the schedule `0 0 8,20 * * Mon` (Europe/London time)");
    }

    const LONDON: WeekRule = WeekRule { starts: Weekday::Mon, timezone: chrono_tz::Europe::London };

    fn cron(s: &str) -> cron::Schedule {
        cron::Schedule::from_str(s).unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn day(s: &str) -> NaiveDate {
        NaiveDate::from_str(s).unwrap()
    }

    const SIX_HOURS: Duration = Duration::from_secs(6 * 3600);

    #[test]
    fn monday_eight_o_clock_sends_last_week() {
        let d = decide(&cron("0 0 8 * * Mon"), &LONDON, at("2023-07-24T08:05:00+01:00"), None, SIX_HOURS, |_| false);
        assert_eq!(d, vec![Decision::Send { week: day("2023-07-17"), fire: at("2023-07-24T08:00:00+01:00") }]);
    }

    #[test]
    fn before_the_fire_time_last_weeks_fire_is_what_counts() {
        // Monday 07:59: the latest fire is a week old, so far past max_lateness.
        let d = decide(&cron("0 0 8 * * Mon"), &LONDON, at("2023-07-24T07:59:00+01:00"), None, SIX_HOURS, |_| false);
        assert_eq!(d, vec![Decision::Missed { week: day("2023-07-10"), fire: at("2023-07-17T08:00:00+01:00") }]);
    }

    #[test]
    fn a_sent_week_is_not_sent_again() {
        let d = decide(&cron("0 0 8 * * Mon"), &LONDON, at("2023-07-24T08:05:00+01:00"), None, SIX_HOURS, |w| {
            w == day("2023-07-17")
        });
        assert_eq!(d, vec![Decision::AlreadySent { week: day("2023-07-17") }]);
    }

    #[test]
    fn the_week_boundary_is_in_the_configured_zone() {
        // Midnight at the start of Monday in London is 23:00 UTC on Sunday: a fire then is about the
        // week that just ended in London, although it is still Sunday in UTC.
        let d = decide(&cron("0 0 0 * * Mon"), &LONDON, at("2023-07-23T23:00:30Z"), None, SIX_HOURS, |_| false);
        assert_eq!(d, vec![Decision::Send { week: day("2023-07-17"), fire: at("2023-07-23T23:00:00Z") }]);
    }

    #[test]
    fn a_missed_fire_inside_max_lateness_is_sent_and_outside_is_reported() {
        let c = cron("0 0 8 * * Mon");
        let inside = decide(&c, &LONDON, at("2023-07-24T13:59:00+01:00"), None, SIX_HOURS, |_| false);
        assert!(matches!(inside[..], [Decision::Send { .. }]), "{inside:?}");
        let outside = decide(&c, &LONDON, at("2023-07-24T14:01:00+01:00"), None, SIX_HOURS, |_| false);
        assert!(matches!(outside[..], [Decision::Missed { .. }]), "{outside:?}");
    }

    #[test]
    fn weeks_missed_while_down_are_reported_and_only_the_latest_is_sent() {
        let c = cron("0 0 8 * * Mon");
        let d = decide(
            &c,
            &LONDON,
            at("2023-07-24T09:00:00+01:00"),
            Some(at("2023-07-03T09:00:00+01:00")),
            SIX_HOURS,
            |_| false,
        );
        assert_eq!(
            d,
            vec![
                Decision::Missed { week: day("2023-07-03"), fire: at("2023-07-10T08:00:00+01:00") },
                Decision::Missed { week: day("2023-07-10"), fire: at("2023-07-17T08:00:00+01:00") },
                Decision::Send { week: day("2023-07-17"), fire: at("2023-07-24T08:00:00+01:00") },
            ]
        );
    }

    /// Runs a round at every minute of a day, as a scheduler would, and counts the sends it decides.
    fn sends_over(c: &cron::Schedule, from: &str, to: &str) -> Vec<NaiveDate> {
        let mut sent: Vec<NaiveDate> = Vec::new();
        let mut last = None;
        let mut now = at(from);
        while now <= at(to) {
            for d in decide(c, &LONDON, now, last, SIX_HOURS, |w| sent.contains(&w)) {
                if let Decision::Send { week, .. } = d {
                    sent.push(week);
                }
            }
            last = Some(now);
            now += chrono::Duration::minutes(1);
        }
        sent
    }

    #[test]
    fn clocks_going_back_in_october_fire_twice_but_send_once() {
        // 01:30 happens twice in London on Sunday 29 October 2023.
        let c = cron("0 30 1 * * Sun");
        let fires: Vec<_> = c
            .after(&chrono_tz::Europe::London.with_ymd_and_hms(2023, 10, 29, 0, 0, 0).unwrap())
            .take_while(|t| t.with_timezone(&Utc) < at("2023-10-29T12:00:00Z"))
            .collect();
        assert!(!fires.is_empty());
        let sent = sends_over(&c, "2023-10-28T22:00:00Z", "2023-10-29T04:00:00Z");
        assert_eq!(sent, vec![day("2023-10-16")], "exactly one send for the week before");
    }

    #[test]
    fn clocks_going_forward_in_march_lose_no_send() {
        // 01:30 does not exist in London on Sunday 26 March 2023; the issue must still go out once.
        let c = cron("0 30 1 * * Sun");
        let sent = sends_over(&c, "2023-03-25T22:00:00Z", "2023-03-26T12:00:00Z");
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0], day("2023-03-13"));
    }

    #[test]
    fn a_week_is_due_from_the_first_fire_time_after_it_ends() {
        let c = cron("0 0 8 * * Mon");
        // Monday 24 July 2023 07:59 in London: the week of the 17th has ended but is not due yet.
        assert_eq!(due_through(&c, &LONDON, at("2023-07-24T07:59:00+01:00")), Some(day("2023-07-10")));
        assert_eq!(due_through(&c, &LONDON, at("2023-07-24T08:00:00+01:00")), Some(day("2023-07-17")));
        // Mid-week, the week in progress is never due.
        assert_eq!(due_through(&c, &LONDON, at("2023-07-27T12:00:00+01:00")), Some(day("2023-07-17")));
        // A schedule that fires mid-week (Thursday) publishes the last complete week then, not the current one.
        assert_eq!(
            due_through(&cron("0 0 9 * * Thu"), &LONDON, at("2023-07-27T12:00:00+01:00")),
            Some(day("2023-07-17"))
        );
        // A yearly schedule still finds its last fire time.
        assert_eq!(
            due_through(&cron("0 0 8 1 Jan *"), &LONDON, at("2023-07-27T12:00:00+01:00")),
            Some(day("2022-12-19"))
        );
    }

    #[test]
    fn a_week_falls_due_at_the_first_fire_after_it_ends_and_is_sent_on_its_own_until_late() {
        let c = cron("0 0 8 * * Mon");
        assert_eq!(due_at(&c, &LONDON, day("2023-07-17")), Some(at("2023-07-24T08:00:00+01:00")));
        // A fire at the very end of the week (midnight) is that week's.
        assert_eq!(due_at(&cron("0 0 0 * * Mon"), &LONDON, day("2023-07-17")), Some(at("2023-07-24T00:00:00+01:00")));
        let sends = |now: &str, week: &str| sends_on_its_own(&c, &LONDON, at(now), SIX_HOURS, day(week));
        assert!(sends("2023-07-24T13:59:00+01:00", "2023-07-17"));
        assert!(!sends("2023-07-24T14:01:00+01:00", "2023-07-17"), "more than six hours late");
        assert!(!sends("2023-07-24T09:00:00+01:00", "2023-07-10"), "an older week is never sent on its own");
        assert!(!sends("2023-07-24T07:59:00+01:00", "2023-07-17"), "not due yet");
    }

    #[test]
    fn next_fire_names_the_week_it_is_for() {
        let (t, week) = next_fire(&cron("0 0 8 * * Mon"), &LONDON, at("2023-07-20T10:00:00Z")).unwrap();
        assert_eq!(t, at("2023-07-24T07:00:00Z"));
        assert_eq!(week, day("2023-07-17"));
    }
}
