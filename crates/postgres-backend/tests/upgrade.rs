//! Schemas of other versions: one the previous release made (schema version 1, a
//! `pg_dump` committed in `tests/fixtures/release-9f44466/postgres`, see its `make.sh`)
//! is upgraded in place when this build opens it, and one of a newer version is refused
//! and left as it is. A server is needed: `SYNCLOG_TEST_POSTGRES_URL`; without it each
//! test prints a notice and returns.

use std::path::Path;

use chrono::{Duration, Utc};
use synclog_core::{
    Durability, Error, ErrorKind, LogRecord, LogStore, LogStoreExt, NewLog, RunScan, Scan, Status,
    VerifyOptions,
};
use synclog_postgres::{PgOptions, PgStore, SCHEMA_VERSION};

mod common;

use common::{drop_schema, raw_client, schema, server};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/release-9f44466/postgres"
);
/// The schema the dump was made from.
const FIXTURE_SCHEMA: &str = "fixture_9f44466";

fn opts(schema: &str) -> PgOptions {
    PgOptions {
        schema: schema.to_string(),
        pool_size: 2,
        ..PgOptions::default()
    }
}

/// A field of `COPY … FROM stdin` text as an SQL literal. COPY's backslash escapes are
/// those of `E''` strings, but for `\v`.
fn copy_literal(field: &str) -> String {
    if field == "\\N" {
        return "NULL".into();
    }
    let mut out = String::from("E'");
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('v') => out.push_str("\\x0b"),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => panic!("a COPY field ends with a backslash: {field:?}"),
            },
            '\'' => out.push_str("''"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Loads the fixture's dump into `schema` (a fresh name written over the dump's own), as
/// psql would: plain SQL as it is, each `COPY … FROM stdin` row as an insert, and psql's
/// `\restrict`/`\unrestrict` (which only guard psql itself) left out.
async fn load_fixture(url: &str, schema: &str) {
    let text = std::fs::read_to_string(Path::new(FIXTURE).join("schema.sql"))
        .unwrap()
        .replace(FIXTURE_SCHEMA, schema);
    assert!(
        text.contains(&format!("CREATE SCHEMA {schema};")),
        "the dump makes its schema"
    );
    let client = raw_client(url).await;
    let mut sql = String::new();
    let mut lines = text.lines();
    let mut rows = 0;
    while let Some(line) = lines.next() {
        if line.starts_with("\\restrict ") || line.starts_with("\\unrestrict ") {
            continue;
        }
        assert!(
            !line.starts_with('\\'),
            "a psql command this loader does not know: {line}"
        );
        if let Some(into) = line
            .strip_prefix("COPY ")
            .and_then(|l| l.strip_suffix(" FROM stdin;"))
        {
            client.batch_execute(&sql).await.unwrap();
            sql.clear();
            for data in lines.by_ref().take_while(|l| *l != "\\.") {
                let values: Vec<String> = data.split('\t').map(copy_literal).collect();
                client
                    .batch_execute(&format!(
                        "INSERT INTO {into} OVERRIDING SYSTEM VALUE VALUES ({})",
                        values.join(", ")
                    ))
                    .await
                    .unwrap();
                rows += 1;
            }
            continue;
        }
        sql.push_str(line);
        sql.push('\n');
    }
    client.batch_execute(&sql).await.unwrap();
    assert_eq!(rows, 12 + 2, "12 logs and 2 meta rows");
}

fn expected() -> Vec<LogRecord> {
    std::fs::read_to_string(Path::new(FIXTURE).join("expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn version(client: &tokio_postgres::Client, schema: &str) -> i64 {
    client
        .query_one(
            &format!("SELECT value FROM {schema}.meta WHERE key = 'schema_version'"),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Everything a schema is made of, with its name written as `S`: tables and their
/// columns, constraints, indexes, functions and triggers, one line each, sorted.
async fn catalog(client: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    let queries = [
        "SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) \
             || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END || ' identity:' || a.attidentity::text \
             || ' #' || a.attnum \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'S')",
        "SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(co.oid) \
         FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname = $1",
        "SELECT 'index ' || indexname || ' ' || indexdef FROM pg_indexes WHERE schemaname = $1",
        "SELECT 'function ' || p.proname || ' ' || pg_get_functiondef(p.oid) \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1",
        "SELECT 'trigger ' || t.tgname || ' ' || pg_get_triggerdef(t.oid) \
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND NOT t.tgisinternal",
    ];
    let mut lines = Vec::new();
    for q in queries {
        for row in client.query(q, &[&schema]).await.unwrap() {
            lines.push(row.get::<_, String>(0).replace(schema, "S"));
        }
    }
    lines.sort();
    lines
}

/// Every row of every table of the schema, as text, sorted.
async fn contents(client: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    let tables: Vec<String> = client
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut lines = Vec::new();
    for t in tables {
        for row in client
            .query(&format!("SELECT t::text FROM {schema}.{t} t"), &[])
            .await
            .unwrap()
        {
            lines.push(format!("{t} {}", row.get::<_, String>(0)));
        }
    }
    lines.sort();
    lines
}

/// The previous release's schema opens with this build: upgraded in place to the current
/// version (the same schema a new store gets), every record read back as that release
/// wrote it (ids, checksums, fields), verified clean, and it takes keyed logs and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_made_by_the_previous_release_is_upgraded_in_place() {
    let Some(url) = server() else { return };
    let (s, fresh) = (schema("upgrade"), schema("fresh"));
    let admin = raw_client(&url).await;
    // --- step: the schema as the previous release left it
    load_fixture(&url, &s).await;
    assert_eq!(version(&admin, &s).await, 1);
    let old_catalog = catalog(&admin, &s).await;
    assert!(
        !old_catalog.iter().any(|l| l.contains("run_key")),
        "{old_catalog:#?}"
    );
    let expected = expected();
    assert_eq!(expected.len(), 12);
    assert!(expected.iter().all(|r| r.is_intact() && r.run.is_none()));

    // --- step: opening upgrades it, to what a new store is made of
    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    assert_eq!(version(&admin, &s).await, SCHEMA_VERSION);
    let new_store = PgStore::connect(&url, opts(&fresh)).await.unwrap();
    let upgraded = catalog(&admin, &s).await;
    for part in [
        "column logs.run_key text identity: #13",
        "column logs.idempotency_key text identity: #14",
        "index logs_by_idempotency_key CREATE UNIQUE INDEX",
        "index logs_by_run ",
        "column runs.first_id bigint not null",
        "index runs_open_by_start ",
        "trigger logs_note_run ",
        "trigger logs_forget_run ",
    ] {
        assert!(
            upgraded.iter().any(|l| l.starts_with(part)),
            "{part}: {upgraded:#?}"
        );
    }
    assert!(
        old_catalog.iter().all(|l| upgraded.contains(l)),
        "nothing of version 1 changed"
    );
    assert_eq!(upgraded, catalog(&admin, &fresh).await);
    new_store.close().await.unwrap();

    // --- step: every record as that release wrote it
    assert_eq!(store.scan(&Scan::all(1000)).await.unwrap(), expected);
    for rec in &expected {
        assert_eq!(store.get(rec.id).await.unwrap().as_ref(), Some(rec));
    }
    let listed = store.id_checksums(None, 1000).await.unwrap();
    assert_eq!(
        listed,
        expected.iter().map(|r| (r.id, r.checksum)).collect::<Vec<_>>()
    );
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean() && report.checked == 12, "{report:?}");
    assert_eq!(store.runs(&RunScan::default()).await.unwrap(), Vec::new());

    // --- step: keyed logs and runs go on from the next id
    let d = Durability::PowerLoss;
    let keyed = NewLog::new("orders", Status::Succeeded).idempotency_key("after-upgrade");
    let first = store.append_report(keyed.clone(), d).await.unwrap();
    assert_eq!((first.record.id.get(), first.repeat), (13, false));
    let started = store
        .start_run(NewLog::new("inventory", Status::Started).run("upgrade-run"), d)
        .await
        .unwrap();
    let progress = store
        .append_with(NewLog::new("inventory", Status::Progress).run("upgrade-run"), d)
        .await
        .unwrap();
    assert_eq!(
        store
            .runs(&RunScan::stale(Utc::now() + Duration::hours(1)))
            .await
            .unwrap()[0]
            .key,
        "upgrade-run"
    );
    let end = store
        .finish_run(
            "upgrade-run",
            NewLog::new("", Status::Succeeded).counts(3, 3, 0),
            d,
        )
        .await
        .unwrap();
    assert_eq!(
        [started.record.id.get(), progress.id.get(), end.record.id.get()],
        [14, 15, 16]
    );
    let again = store.append_report(keyed, d).await.unwrap();
    assert_eq!((again.repeat, again.record.clone()), (true, first.record.clone()));
    let late = store
        .append_with(NewLog::new("inventory", Status::Progress).run("upgrade-run"), d)
        .await;
    assert!(matches!(late, Err(Error::RunFinished { .. })), "{late:?}");
    let plain = store
        .append(NewLog::new("crm-contacts", Status::Skipped))
        .await
        .unwrap();
    assert_eq!(plain.id.get(), 17);
    let runs = store.runs(&RunScan::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].status, runs[0].finished), (Status::Succeeded, true));
    assert_eq!(
        runs[0].record_ids.iter().map(|i| i.get()).collect::<Vec<_>>(),
        [14, 15, 16]
    );
    assert_eq!(
        store.find_idempotent("after-upgrade").await.unwrap(),
        Some(first.record)
    );
    let report = store.verify(VerifyOptions::default()).await.unwrap();
    assert!(report.is_clean() && report.checked == 17, "{report:?}");
    let all = store.scan(&Scan::all(1000)).await.unwrap();
    assert_eq!(all[..12], expected[..], "the old records are untouched");
    store.close().await.unwrap();

    // --- step: opened again, nothing more to do
    let before = (catalog(&admin, &s).await, contents(&admin, &s).await);
    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    assert_eq!(store.scan(&Scan::all(1000)).await.unwrap(), all);
    store.close().await.unwrap();
    assert_eq!((catalog(&admin, &s).await, contents(&admin, &s).await), before);
    drop_schema(&url, &s).await;
    drop_schema(&url, &fresh).await;
}

/// A schema whose version is newer than this build knows is refused at open with
/// `Unsupported`, naming both versions, and is left exactly as it was (here the previous
/// release's tables, so an upgrade would show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_a_newer_version_is_refused_naming_both_and_left_as_it_is() {
    let Some(url) = server() else { return };
    let s = schema("newer");
    let admin = raw_client(&url).await;
    load_fixture(&url, &s).await;
    let newer = SCHEMA_VERSION + 1;
    admin
        .execute(
            &format!("UPDATE {s}.meta SET value = $1 WHERE key = 'schema_version'"),
            &[&newer],
        )
        .await
        .unwrap();
    let before = (catalog(&admin, &s).await, contents(&admin, &s).await);
    for _ in 0..2 {
        let err = PgStore::connect(&url, opts(&s)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("schema version {newer}"))
                && text.contains(&format!("schema version {SCHEMA_VERSION}")),
            "{text}"
        );
        assert_eq!((catalog(&admin, &s).await, contents(&admin, &s).await), before);
    }
    assert_eq!(version(&admin, &s).await, newer);
    drop_schema(&url, &s).await;
}

/// Upgrading the previous release's schema fills version 3's attribute table and per-job
/// aggregates from the old records: attribute filters (compared as canonical JSON text, so
/// `1` is not `1.0`), counts and summaries over them answer as the records say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_indexes_the_old_records_for_queries() {
    use synclog_core::query::{AttrEq, Filter, SummaryBuilder};
    let Some(url) = server() else { return };
    let s = schema("upgrade_q");
    let admin = raw_client(&url).await;
    load_fixture(&url, &s).await;
    let store = PgStore::connect(&url, opts(&s)).await.unwrap();
    let expected = expected();
    // --- step: the side tables were backfilled
    let attrs: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {s}.attrs"), &[])
        .await
        .unwrap()
        .get(0);
    let want: usize = expected
        .iter()
        .map(|r| synclog_core::query::attr_entries(r.attrs.as_str()).len())
        .sum();
    assert_eq!(attrs as usize, want);
    // --- step: every kind of filter answers as the records say
    let filters = [
        Filter::default(),
        Filter::default().attr(AttrEq::parse("source=shopify").unwrap()),
        Filter::default().attr(AttrEq::parse("http_status=429").unwrap()),
        Filter::default().attr(AttrEq::parse("attempt=1").unwrap()),
        Filter::default().attr(AttrEq::parse("attempt=1.0").unwrap()),
        Filter::default().attr(AttrEq::parse("retry_after_s=300.5").unwrap()),
        Filter::default().attr(AttrEq::parse("warehouse=north").unwrap()),
        Filter::job("inventory").attr(AttrEq::parse("warehouse=north").unwrap()),
        Filter::default().statuses([Status::Failed, Status::Partial]),
        Filter::job("orders"),
    ];
    for f in &filters {
        let matching: Vec<LogRecord> = expected.iter().filter(|r| f.matches(r)).cloned().collect();
        let got = store.scan(&Scan::filtered(f.clone(), 100)).await.unwrap();
        assert_eq!(got, matching, "{f:?}");
        assert_eq!(store.count(f).await.unwrap(), matching.len() as u64, "{f:?}");
        let mut b = SummaryBuilder::default();
        matching.iter().for_each(|r| b.add(r));
        assert_eq!(store.summary(f).await.unwrap(), b.finish(), "{f:?}");
    }
    assert_eq!(
        store
            .count(&Filter::default().attr(AttrEq::parse("attempt=1").unwrap()))
            .await
            .unwrap(),
        1
    );
    store.close().await.unwrap();
    drop_schema(&url, &s).await;
}
