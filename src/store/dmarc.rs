//! The DMARC aggregate reports read (`crate::dmarc`): one row per report, one per record of it,
//! kept once however often the same report (reporter and report id) is delivered.

use super::{Pool, Store, StoreError, now};
use crate::dmarc::{AggregateReport, StoredRow, Summary};

/// What recording a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// New: kept, with this many records.
    Kept { rows: usize },
    /// The same reporter's report of that id was kept before: nothing changed.
    Duplicate,
}

/// The statements about DMARC reports, on the store they were taken from (`Store::dmarc`).
#[derive(Debug, Clone, Copy)]
pub struct DmarcReports<'a> {
    pool: &'a Pool,
}

impl Store {
    /// The DMARC aggregate reports of this store.
    pub fn dmarc(&self) -> DmarcReports<'_> {
        DmarcReports { pool: &self.pool }
    }
}

/// org, report_id, domain, begins_at, source_ip, count, dkim, spf, header_from.
type Row = (String, String, String, i64, String, i64, String, String, String);

fn pass_or_fail(passed: bool) -> &'static str {
    if passed { "pass" } else { "fail" }
}

impl DmarcReports<'_> {
    /// Keeps `report`, read at `source`, unless it was kept before; the report and its records
    /// in one transaction.
    pub async fn record(&self, report: &AggregateReport, source: &str) -> Result<Recorded, StoreError> {
        with_pool!(self.pool, p => {
            let mut tx = p.begin().await?;
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO dmarc_reports (org, report_id, begins_at, ends_at, domain, source, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (org, report_id) DO NOTHING RETURNING id",
            )
            .bind(&report.org)
            .bind(&report.report_id)
            .bind(report.begin)
            .bind(report.end)
            .bind(&report.domain)
            .bind(source)
            .bind(now())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(id) = id else { return Ok(Recorded::Duplicate) };
            for row in &report.rows {
                sqlx::query(
                    "INSERT INTO dmarc_rows (report, source_ip, count, disposition, dkim, spf, header_from)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(id)
                .bind(row.source_ip.to_string())
                .bind(row.count)
                .bind(row.disposition)
                .bind(pass_or_fail(row.dkim_aligned))
                .bind(pass_or_fail(row.spf_aligned))
                .bind(&row.header_from)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(Recorded::Kept { rows: report.rows.len() })
    }

    /// How many reports are kept, of any date.
    pub async fn count(&self) -> Result<i64, StoreError> {
        Ok(with_pool!(self.pool, p => sqlx::query_scalar("SELECT count(*) FROM dmarc_reports").fetch_one(p).await?))
    }

    /// The summary (`dmarc::summarise`) of the reports whose period begins at `since` or later;
    /// `None` when no report at all has been kept.
    pub async fn summary_since(&self, since: i64) -> Result<Option<Summary>, StoreError> {
        if self.count().await? == 0 {
            return Ok(None);
        }
        Ok(Some(crate::dmarc::summarise(&self.rows_since(since).await?)))
    }

    /// The records of every report whose period begins at `since` (Unix seconds) or later, by
    /// period and reporter.
    pub async fn rows_since(&self, since: i64) -> Result<Vec<StoredRow>, StoreError> {
        let rows: Vec<Row> = with_pool!(self.pool, p => {
            sqlx::query_as(
                "SELECT r.org, r.report_id, r.domain, r.begins_at, w.source_ip, w.count, w.dkim, w.spf, w.header_from
                 FROM dmarc_reports r JOIN dmarc_rows w ON w.report = r.id
                 WHERE r.begins_at >= $1 ORDER BY r.begins_at, r.org, r.report_id, w.source_ip, w.count",
            )
            .bind(since)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(org, report_id, domain, begin, source_ip, count, dkim, spf, header_from)| StoredRow {
                org,
                report_id,
                domain,
                begin,
                source_ip,
                count,
                dkim_aligned: dkim == "pass",
                spf_aligned: spf == "pass",
                header_from,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dmarc::ReportRow;

    fn report(org: &str, id: &str, rows: usize) -> AggregateReport {
        AggregateReport {
            org: org.into(),
            report_id: id.into(),
            begin: 1764547200,
            end: 1764633599,
            domain: "signals.example.org".into(),
            rows: (0..rows)
                .map(|i| ReportRow {
                    source_ip: format!("192.0.2.{i}").parse().unwrap(),
                    count: 10 + i as i64,
                    disposition: "none",
                    dkim_aligned: i % 2 == 0,
                    spf_aligned: i == 0,
                    header_from: "signals.example.org".into(),
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn a_report_is_kept_once_with_its_rows_and_read_back_by_period() {
        for store in crate::store::testing::stores().await {
            let dmarc = store.dmarc();
            assert_eq!(dmarc.count().await.unwrap(), 0);
            assert_eq!(dmarc.record(&report("google.com", "1", 3), "a.eml").await.unwrap(), Recorded::Kept { rows: 3 });
            assert_eq!(dmarc.record(&report("google.com", "1", 3), "b.eml").await.unwrap(), Recorded::Duplicate);
            // The same id from another reporter is another report.
            assert_eq!(dmarc.record(&report("Yahoo", "1", 1), "c.eml").await.unwrap(), Recorded::Kept { rows: 1 });
            assert_eq!(dmarc.count().await.unwrap(), 2);
            let rows = dmarc.rows_since(1764547200).await.unwrap();
            assert_eq!(rows.len(), 4);
            let google: Vec<(String, i64, bool, bool)> = rows
                .iter()
                .filter(|r| r.org == "google.com")
                .map(|r| (r.source_ip.clone(), r.count, r.dkim_aligned, r.spf_aligned))
                .collect();
            assert_eq!(
                google,
                [
                    ("192.0.2.0".to_string(), 10, true, true),
                    ("192.0.2.1".to_string(), 11, false, false),
                    ("192.0.2.2".to_string(), 12, true, false)
                ]
            );
            assert!(dmarc.rows_since(1764547201).await.unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn store_copy_takes_the_reports_along_and_the_copy_still_refuses_a_duplicate() {
        let mut stores = crate::store::testing::stores().await;
        if stores.len() < 2 {
            return; // PostgreSQL is not installed (under CI it is).
        }
        let (to, from) = (stores.pop().unwrap(), stores.pop().unwrap());
        from.dmarc().record(&report("google.com", "1", 3), "a.eml").await.unwrap();
        from.dmarc().record(&report("Yahoo", "7", 2), "b.eml").await.unwrap();
        crate::store::copy::copy(&from, &to).await.unwrap();
        assert_eq!(to.dmarc().rows_since(0).await.unwrap(), from.dmarc().rows_since(0).await.unwrap());
        assert_eq!(to.dmarc().record(&report("Yahoo", "7", 2), "c.eml").await.unwrap(), Recorded::Duplicate);
        // The next new report takes an id after the copied ones.
        assert_eq!(to.dmarc().record(&report("Yahoo", "8", 1), "d.eml").await.unwrap(), Recorded::Kept { rows: 1 });
        assert_eq!(to.dmarc().count().await.unwrap(), 3);
    }
}
