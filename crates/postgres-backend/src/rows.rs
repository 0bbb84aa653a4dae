//! Rows into records, runs and prune markers: every value read back is decoded and its
//! checksum-covered fields rebuilt here.

use super::*;

pub(crate) fn decode(row: &Row, store: &str) -> Result<LogRecord> {
    let e = |err| pg_err(store, "decoding a row of", err);
    let id: i64 = row.try_get(0).map_err(e)?;
    let bad = |what: String| Error::corrupt(format!("{store} log {id}"), what);
    let unsigned = |i: usize| -> Result<u64> {
        let v: i64 = row.try_get(i).map_err(e)?;
        u64::try_from(v).map_err(|_| bad(format!("negative counter {v}")))
    };
    let status: String = row.try_get(3).map_err(e)?;
    Ok(LogRecord {
        id: LogId::new(id as u64).ok_or_else(|| bad("invalid id".into()))?,
        recorded_at: row.try_get(1).map_err(e)?,
        job: row.try_get(2).map_err(e)?,
        status: status
            .parse::<Status>()
            .map_err(|_| bad(format!("unknown status {status:?}")))?,
        started_at: row.try_get(4).map_err(e)?,
        finished_at: row.try_get(5).map_err(e)?,
        items_seen: unsigned(6)?,
        items_written: unsigned(7)?,
        items_failed: unsigned(8)?,
        message: row.try_get(9).map_err(e)?,
        attrs: Attrs::from_stored(row.try_get(10).map_err(e)?),
        checksum: Checksum(row.try_get::<_, i64>(11).map_err(e)? as u32),
        run: row.try_get(12).map_err(e)?,
        idempotency_key: row.try_get(13).map_err(e)?,
    })
}

/// A row of a runs query (see `Sql::runs_head`) as [`Run::from_records`] would make it
/// from the run's records.
pub(crate) fn decode_run(row: &Row, store: &str) -> Result<Run> {
    let e = |err| pg_err(store, "decoding a run of", err);
    let key: String = row.try_get(0).map_err(e)?;
    let bad = |what: String| Error::corrupt(format!("{store} run {key:?}"), what);
    let unsigned = |i: usize| -> Result<u64> {
        let v: i64 = row.try_get(i).map_err(e)?;
        u64::try_from(v).map_err(|_| bad(format!("negative counter {v}")))
    };
    let status: String = row.try_get(2).map_err(e)?;
    let status = status
        .parse::<Status>()
        .map_err(|_| bad(format!("unknown status {status:?}")))?;
    let started_at: DateTime<Utc> = row.try_get(3).map_err(e)?;
    let finished = status.is_terminal();
    let finished_at = match finished {
        true => {
            let at: Option<DateTime<Utc>> = row.try_get(4).map_err(e)?;
            Some(match at {
                Some(at) => at,
                None => row.try_get(5).map_err(e)?,
            })
        }
        false => None,
    };
    let ids: Vec<i64> = row.try_get(10).map_err(e)?;
    let record_ids = ids
        .into_iter()
        .map(|i| LogId::new(i as u64).ok_or_else(|| bad(format!("invalid id {i}"))))
        .collect::<Result<Vec<_>>>()?;
    if record_ids.is_empty() {
        return Err(bad("no records".into()));
    }
    Ok(Run {
        job: row.try_get(1).map_err(e)?,
        status,
        finished,
        started_at,
        finished_at,
        duration_ms: finished_at.map(|f| (f - started_at).num_milliseconds()),
        items_seen: unsigned(6)?,
        items_written: unsigned(7)?,
        items_failed: unsigned(8)?,
        message: row.try_get(9).map_err(e)?,
        record_ids,
        key,
    })
}

/// The arrays of one `UNNEST` insert.
#[derive(Default)]
pub(crate) struct Columns {
    pub(crate) id: Vec<i64>,
    pub(crate) recorded_at: Vec<DateTime<Utc>>,
    pub(crate) job: Vec<String>,
    pub(crate) status: Vec<&'static str>,
    pub(crate) started_at: Vec<DateTime<Utc>>,
    pub(crate) finished_at: Vec<Option<DateTime<Utc>>>,
    pub(crate) seen: Vec<i64>,
    pub(crate) written: Vec<i64>,
    pub(crate) failed: Vec<i64>,
    pub(crate) message: Vec<String>,
    pub(crate) attrs: Vec<String>,
    pub(crate) checksum: Vec<i64>,
    pub(crate) run: Vec<Option<String>>,
    pub(crate) idempotency_key: Vec<Option<String>>,
    /// The `attrs` rows of the records: id, key, canonical value text.
    pub(crate) attr_id: Vec<i64>,
    pub(crate) attr_key: Vec<String>,
    pub(crate) attr_value: Vec<String>,
}

impl Columns {
    pub(crate) fn of(records: &[LogRecord]) -> Columns {
        let mut c = Columns::default();
        for r in records {
            c.id.push(r.id.get() as i64);
            c.recorded_at.push(r.recorded_at);
            c.job.push(r.job.clone());
            c.status.push(r.status.as_str());
            c.started_at.push(r.started_at);
            c.finished_at.push(r.finished_at);
            c.seen.push(r.items_seen as i64);
            c.written.push(r.items_written as i64);
            c.failed.push(r.items_failed as i64);
            c.message.push(r.message.clone());
            c.attrs.push(r.attrs.as_str().to_string());
            c.checksum.push(r.checksum.0 as i64);
            c.run.push(r.run.clone());
            c.idempotency_key.push(r.idempotency_key.clone());
            for (k, v) in synclog_core::query::attr_entries(r.attrs.as_str()) {
                c.attr_id.push(r.id.get() as i64);
                c.attr_key.push(k);
                c.attr_value.push(v);
            }
        }
        c
    }

    /// The arrays of the `attrs` rows.
    pub(crate) fn attr_params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 3] {
        [&self.attr_id, &self.attr_key, &self.attr_value]
    }

    /// Every parameter of the import statement: the columns, then the `attrs` rows.
    pub(crate) fn import_params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        let mut p = self.params().to_vec();
        p.extend(self.attr_params());
        p
    }

    pub(crate) fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 14] {
        [
            &self.id,
            &self.recorded_at,
            &self.job,
            &self.status,
            &self.started_at,
            &self.finished_at,
            &self.seen,
            &self.written,
            &self.failed,
            &self.message,
            &self.attrs,
            &self.checksum,
            &self.run,
            &self.idempotency_key,
        ]
    }
}

/// Decodes a row of `markers_after` (`seq`, `body`).
pub(crate) fn decode_marker(row: &Row, store: &str) -> Result<(i64, PruneMarker)> {
    let e = |err| pg_err(store, "decoding a prune marker of", err);
    let seq: i64 = row.try_get(0).map_err(e)?;
    let body: String = row.try_get(1).map_err(e)?;
    let marker = PruneMarker::decode(&body, &format!("{store} prune marker {seq}"))?;
    Ok((seq, marker))
}

/// The markers of rows of `markers_after`, each decoded or the reason it is not.
pub(crate) fn decode_markers(rows: &[Row], store: &str) -> Vec<Result<PruneMarker>> {
    rows.iter()
        .map(|r| decode_marker(r, store).map(|(_, m)| m))
        .collect()
}
