//! Creating and upgrading the schema, in one transaction under the store's lock.

use super::*;

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction under the store's lock: made
/// from nothing (the version 1 DDL and every step after it), upgraded in place from an
/// older version (each step in turn; existing rows keep their data and checksums), or left
/// as it is. A newer version is refused with [`Error::Unsupported`] and nothing is changed.
/// PostgreSQL's DDL is transactional: a failure or a crash anywhere leaves the schema as
/// it was.
pub(crate) async fn prepare_schema(
    client: &mut Client,
    sql: &Sql,
    store: &str,
    lock_key: i64,
    deadline: Deadline,
    must_exist: bool,
) -> Result<()> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(|e| pg_err(store, "beginning schema creation on", e))?;
    tx.batch_execute(&format!(
        "{}; SELECT pg_advisory_xact_lock({lock_key})",
        deadline.set_lock_timeout()
    ))
    .await
    .map_err(|e| pg_err(store, "waiting for the store's lock on", e))?;
    let has_meta: bool = tx
        .query_one(&sql.meta_exists, &[&sql.meta_name])
        .await
        .map_err(|e| pg_err(store, "looking for the schema of", e))?
        .get(0);
    if !has_meta && must_exist {
        // Dropping the transaction rolls it back: nothing was created.
        return Err(Error::StoreNotFound {
            store: store.to_string(),
            detail: "the schema holds no synclog store; append to create it".into(),
        });
    }
    let version: Option<i64> = match has_meta {
        false => None,
        true => tx
            .query_opt(&sql.version, &[])
            .await
            .map_err(|e| pg_err(store, "reading the schema version of", e))?
            .map(|r| r.get(0)),
    };
    let from = match version {
        Some(SCHEMA_VERSION) => return Ok(()),
        Some(v) if v > SCHEMA_VERSION => {
            // Dropping the transaction rolls it back: nothing was changed.
            return Err(Error::Unsupported {
                engine: "postgres",
                what: format!(
                    "schema version {v} of {store}: this synclog knows schema version {SCHEMA_VERSION} and \
                     older; upgrade synclog (the schema was not changed)"
                ),
            });
        }
        Some(v) if v >= 1 => v,
        Some(v) => return Err(Error::corrupt(store, format!("unknown schema version {v}"))),
        None => {
            tx.batch_execute(&sql.create_v1)
                .await
                .map_err(|e| pg_err(store, "creating the schema of", e))?;
            1
        }
    };
    for (to, step) in sql.upgrades.iter().filter(|(to, _)| *to > from) {
        tx.batch_execute(step)
            .await
            .map_err(|e| pg_err(store, &format!("upgrading to version {to} the schema of"), e))?;
        if *to == 3 {
            backfill_attrs(&tx, sql, store).await?;
        }
    }
    tx.execute(&sql.set_version, &[&SCHEMA_VERSION])
        .await
        .map_err(|e| pg_err(store, "versioning the schema of", e))?;
    tx.commit()
        .await
        .map_err(|e| pg_err(store, "committing the schema of", e))
}

/// Version 3's attribute table filled from the stored records, a page at a time, inside
/// the upgrade's transaction: the canonical value text is computed here, in Rust, as for
/// every record written later.
pub(crate) async fn backfill_attrs(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &Sql,
    store: &str,
) -> Result<()> {
    const PAGE: i64 = 10_000;
    let mut from = 0i64;
    loop {
        let rows = tx
            .query(&sql.attrs_page, &[&from, &PAGE])
            .await
            .map_err(|e| pg_err(store, "reading attributes to index in", e))?;
        let Some(last) = rows.last() else { return Ok(()) };
        from = last.get::<_, i64>(0) + 1;
        let (mut ids, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            let id: i64 = row.get(0);
            let attrs: String = row.get(1);
            for (k, v) in synclog_core::query::attr_entries(&attrs) {
                ids.push(id);
                keys.push(k);
                values.push(v);
            }
        }
        tx.execute(&sql.attrs_insert, &[&ids, &keys, &values])
            .await
            .map_err(|e| pg_err(store, "indexing attributes in", e))?;
        if (rows.len() as i64) < PAGE {
            return Ok(());
        }
    }
}
