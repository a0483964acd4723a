//! An issue's id: the first day of its week, as `2023-07-17`. It names the issue everywhere (the
//! archive's page, notes files, the publication record, the delivery ledger, bounce tokens), so
//! it has one type, made from the week's start date or checked once when read back from text.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;

/// How an id is written: the week's start date, ISO 8601, zero-padded.
const FORMAT: &str = "%Y-%m-%d";

/// The id of the issue of the week starting on a date. Its text is `YYYY-MM-DD`, so ids sort as
/// their weeks do; it is stored as that text (TEXT in SQLite and PostgreSQL, a string in JSON).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IssueId(String);

/// Text that is not an issue's id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an issue's id; an issue is named by the first day of its week, as 2023-07-17")]
pub struct ParseIssueIdError(pub String);

impl IssueId {
    /// The id of the issue of the week that starts on `start`.
    pub fn from_week_start(start: NaiveDate) -> IssueId {
        IssueId(start.format(FORMAT).to_string())
    }

    /// The first day of the issue's week.
    pub fn week_start(&self) -> NaiveDate {
        NaiveDate::parse_from_str(&self.0, FORMAT).expect("an IssueId holds a date it was made from or checked as")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Only the spelling `from_week_start` makes: `2023-7-17` or ` 2023-07-17` would name the same
/// week with another text, and the text is what the store and the tokens compare.
impl FromStr for IssueId {
    type Err = ParseIssueIdError;

    fn from_str(s: &str) -> Result<IssueId, ParseIssueIdError> {
        match NaiveDate::parse_from_str(s, FORMAT) {
            Ok(date) if date.format(FORMAT).to_string() == s => Ok(IssueId(s.to_string())),
            _ => Err(ParseIssueIdError(s.to_string())),
        }
    }
}

impl From<NaiveDate> for IssueId {
    fn from(start: NaiveDate) -> IssueId {
        IssueId::from_week_start(start)
    }
}

impl fmt::Display for IssueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for IssueId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by `IssueId` can be looked up with a `&str`: the order and the hash are the text's.
impl std::borrow::Borrow<str> for IssueId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for IssueId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for IssueId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl serde::Serialize for IssueId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for IssueId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<IssueId, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

// Stored as TEXT, like the `String` ids it replaces: the same column types, the same bytes.
impl<DB: sqlx::Database> sqlx::Type<DB> for IssueId
where
    String: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for IssueId
where
    String: sqlx::Encode<'q, DB>,
{
    fn encode_by_ref(&self, buf: &mut DB::ArgumentBuffer) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        self.0.encode_by_ref(buf)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for IssueId
where
    String: sqlx::Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<IssueId, sqlx::error::BoxDynError> {
        Ok(<String as sqlx::Decode<DB>>::decode(value)?.parse()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn an_id_is_its_weeks_first_day_written_one_way() {
        let id = IssueId::from_week_start(date(2023, 7, 17));
        assert_eq!(id.to_string(), "2023-07-17");
        assert_eq!(id.as_str(), "2023-07-17");
        assert_eq!(id.week_start(), date(2023, 7, 17));
        assert_eq!("2023-07-17".parse::<IssueId>(), Ok(id.clone()));
        assert_eq!(IssueId::from(date(2023, 7, 17)), id);
        assert_eq!(id, "2023-07-17");
        for bad in
            ["2023-7-17", " 2023-07-17", "2023-07-17 ", "2023-02-30", "17/07/2023", "2023-W29", "", "0000000000000000"]
        {
            assert_eq!(bad.parse::<IssueId>(), Err(ParseIssueIdError(bad.to_string())), "{bad}");
        }
        let e = "2023-7-17".parse::<IssueId>().unwrap_err().to_string();
        assert_eq!(
            e,
            "`2023-7-17` is not an issue's id; an issue is named by the first day of its week, as 2023-07-17"
        );
    }

    #[test]
    fn ids_sort_as_their_weeks_and_look_up_as_text() {
        let (a, b) = (IssueId::from_week_start(date(2023, 12, 25)), IssueId::from_week_start(date(2024, 1, 1)));
        assert!(a < b);
        let map: std::collections::BTreeMap<IssueId, u32> = [(a, 1), (b, 2)].into_iter().collect();
        assert_eq!(map.get("2024-01-01"), Some(&2));
    }

    #[test]
    fn serde_writes_and_reads_the_same_string() {
        let id = IssueId::from_week_start(date(2023, 7, 17));
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"2023-07-17\"");
        assert_eq!(serde_json::from_str::<IssueId>("\"2023-07-17\"").unwrap(), id);
        assert!(serde_json::from_str::<IssueId>("\"2023-7-17\"").is_err());
    }

    #[test]
    fn both_backends_store_it_as_their_text_type() {
        fn stored_as_text<DB: sqlx::Database>() -> bool
        where
            IssueId: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB> + for<'r> sqlx::Decode<'r, DB>,
            String: sqlx::Type<DB>,
        {
            <IssueId as sqlx::Type<DB>>::type_info() == <String as sqlx::Type<DB>>::type_info()
        }
        assert!(stored_as_text::<sqlx::Sqlite>());
        assert!(stored_as_text::<sqlx::Postgres>());
    }

    #[tokio::test]
    async fn sqlite_stores_it_as_text() {
        use sqlx::Connection;
        let mut db = sqlx::SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let id = IssueId::from_week_start(date(2023, 7, 17));
        let (text, kind): (String, String) =
            sqlx::query_as("SELECT $1, typeof($1)").bind(&id).fetch_one(&mut db).await.unwrap();
        assert_eq!((text.as_str(), kind.as_str()), ("2023-07-17", "text"));
        let back: IssueId = sqlx::query_scalar("SELECT '2023-07-17'").fetch_one(&mut db).await.unwrap();
        assert_eq!(back, id);
        let bad = sqlx::query_scalar::<_, IssueId>("SELECT 'next week'").fetch_one(&mut db).await;
        assert!(bad.is_err());
    }
}
