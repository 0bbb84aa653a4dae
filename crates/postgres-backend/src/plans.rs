//! Every statement the store sends is answered from an index, never a scan of `logs` or
//! `runs`: checked with `EXPLAIN` over a schema of 100,000 logs (40,000 of them in 10,000
//! runs, 10,000 with an idempotency key), the prepared statements under the generic plan
//! PostgreSQL switches to after their fifth run; and each kind of filter (job, status,
//! started, finished, recorded, attribute, run) in scans both ways and in counts, planned
//! with its values as the store sends it, is answered from its own index. A server is needed:
//! `SYNCLOG_TEST_POSTGRES_URL`; without it the test prints a notice and returns.

use synclog_core::query::{AttrEq, Filter, TimeRange};
use synclog_core::{LogId, LogStore, RunScan, Scan, Status};
use tokio_postgres::NoTls;

use crate::filters::runs_query;
use crate::sql::Sql;
use crate::{PgOptions, PgStore};

/// 100,000 logs; each tenth id starts a run of 4 records (started, progress, progress,
/// then a terminal one, or progress for each hundredth run: still running), every log
/// `5 mod 10` has an idempotency key.
fn fill(s: &str) -> String {
    format!(
        "INSERT INTO {s}.logs (id, recorded_at, job, status, started_at, finished_at, items_seen, items_written,
                               items_failed, message, attrs, checksum, run_key, idempotency_key)
         OVERRIDING SYSTEM VALUE
         SELECT g, timestamptz '2025-01-01' + (g || ' seconds')::interval,
                CASE WHEN g % 1000 = 7 THEN 'job-rare' ELSE 'job-' || ((g / 10) % 50) END,
                CASE WHEN g % 1000 = 8 THEN 'skipped'
                     WHEN g % 10 >= 4 THEN 'succeeded'
                     WHEN g % 10 = 0 THEN 'started'
                     WHEN g % 10 IN (1, 2) THEN 'progress'
                     WHEN (g / 10) % 100 = 0 THEN 'progress'
                     ELSE (ARRAY['succeeded', 'failed', 'partial', 'abandoned'])[1 + (g / 10) % 4] END,
                timestamptz '2025-01-01' + ((g / 10) || ' minutes')::interval,
                CASE WHEN g % 10 >= 3 THEN timestamptz '2025-01-01' + ((g / 10 + 1) || ' minutes')::interval END,
                1, 1, 0, 'm', CASE WHEN g % 1000 = 0 THEN '{{\"env\":\"prod\"}}' ELSE '{{}}' END, 0,
                CASE WHEN g % 10 < 4 THEN 'run-' || (g / 10) END,
                CASE WHEN g % 10 = 5 THEN 'ik-' || g END
         FROM generate_series(10, 100009) g;
         INSERT INTO {s}.attrs (key, value, id) SELECT 'env', '\"prod\"', g FROM generate_series(1000, 100009, 1000) g;
         INSERT INTO {s}.attrs (key, value, id) SELECT 'shard', (g % 4)::text, g FROM generate_series(10, 100009) g;
         INSERT INTO {s}.meta (key, value) VALUES ('high_water', 100009)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
         ANALYZE {s}.logs;
         ANALYZE {s}.runs;
         ANALYZE {s}.attrs;"
    )
}

/// The plan of `q`, planned with its values (as the store sends it: unnamed).
async fn explain(client: &tokio_postgres::Client, q: crate::filters::Query) -> Vec<String> {
    let text = format!("EXPLAIN {}", q.text);
    client
        .query(&text, &q.refs())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The plan's lines that scan `logs` or `runs` whole.
fn scans(plan: &[String]) -> Vec<&String> {
    plan.iter()
        .filter(|l| l.contains("Seq Scan on logs") || l.contains("Seq Scan on runs"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_is_answered_from_an_index() {
    let url = match std::env::var("SYNCLOG_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            eprintln!("notice: SYNCLOG_TEST_POSTGRES_URL is not set; skipping this PostgreSQL test");
            return;
        }
    };
    let schema = format!("synclog_plans_{}_{}", std::process::id(), fastrand::u32(..));
    let store = PgStore::connect(
        &url,
        PgOptions {
            schema: schema.clone(),
            pool_size: 1,
            ..PgOptions::default()
        },
    )
    .await
    .unwrap();
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let s = format!("\"{schema}\"");
    client.batch_execute(&fill(&s)).await.unwrap();
    let sql = Sql::new(&schema);
    let mut failures = Vec::new();

    // Runs queries go as unnamed statements: planned with their values.
    let cutoff = chrono::DateTime::parse_from_rfc3339("2025-01-20T00:00:00Z")
        .unwrap()
        .to_utc();
    let id = |i: u64| LogId::new(i);
    let run_scans = [
        RunScan {
            filter: Filter::default()
                .started(TimeRange::since(cutoff - chrono::Duration::hours(12 * 24 + 12)))
                .finished(TimeRange::since(cutoff - chrono::Duration::days(17)))
                .recorded(TimeRange::before(cutoff + chrono::Duration::days(30)))
                .attr(AttrEq::parse("shard=2").unwrap()),
            descending: true,
            ..RunScan::default()
        },
        RunScan {
            filter: Filter::default().run("run-5"),
            ..RunScan::default()
        },
        RunScan::default(),
        RunScan {
            descending: true,
            limit: 50,
            ..RunScan::default()
        },
        RunScan {
            after: id(50_000),
            ..RunScan::default()
        },
        RunScan {
            filter: Filter::job("job-7"),
            ..RunScan::default()
        },
        RunScan {
            filter: Filter::job("job-7"),
            before: id(90_000),
            descending: true,
            limit: 10,
            ..RunScan::default()
        },
        RunScan {
            unfinished: true,
            ..RunScan::default()
        },
        RunScan::stale(cutoff),
        RunScan {
            filter: Filter::status(Status::Failed),
            ..RunScan::default()
        },
        RunScan {
            filter: Filter::job("job-0").statuses([Status::Progress]),
            ..RunScan::default()
        },
    ];
    for scan in &run_scans {
        let (text, params) = runs_query(&sql, scan).unwrap().into_parts();
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN {text}"), &refs)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !scans(&plan).is_empty() {
            failures.push(format!("runs {scan:?}:\n{}", plan.join("\n")));
        }
        assert!(
            !store.runs(scan).await.unwrap().is_empty() || !scan.filter.statuses.is_empty(),
            "{scan:?}"
        );
    }

    // Each filter kind, in scans (both ways) and counts: its own index answers.
    let ts = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    let kinds: Vec<(&str, Filter)> = vec![
        ("logs_by_job", Filter::job("job-rare")),
        ("logs_by_status", Filter::status(Status::Skipped)),
        (
            "logs_by_started",
            Filter::default().started(TimeRange::between(
                ts("2025-01-02T00:00:00Z"),
                ts("2025-01-02T01:00:00Z"),
            )),
        ),
        (
            "logs_by_finished",
            Filter::default().finished(TimeRange::since(ts("2025-01-07T20:00:00Z"))),
        ),
        (
            "logs_by_recorded",
            Filter::default().recorded(TimeRange::before(ts("2025-01-01T00:10:00Z"))),
        ),
        (
            "attrs_pkey",
            Filter::default().attr(AttrEq::parse("env=prod").unwrap()),
        ),
        ("logs_by_run", Filter::default().run("run-5")),
    ];
    for (index, filter) in &kinds {
        for descending in [false, true] {
            let scan = Scan {
                filter: filter.clone(),
                limit: 50,
                descending,
                ..Scan::default()
            };
            let plan = explain(&client, crate::filters::scan_query(&sql, &scan).unwrap()).await;
            if !scans(&plan).is_empty() || !plan.iter().any(|l| l.contains(index)) {
                failures.push(format!("scan by {index} {scan:?}:\n{}", plan.join("\n")));
            }
            assert_eq!(
                store.scan(&scan).await.unwrap().len(),
                50.min(store.count(filter).await.unwrap() as usize)
            );
        }
        let plan = explain(&client, crate::filters::count_query(&sql, filter).unwrap()).await;
        if !scans(&plan).is_empty() {
            failures.push(format!("count by {index}:\n{}", plan.join("\n")));
        }
    }

    // The writer's and the readers' prepared statements, under their generic plans.
    client
        .batch_execute("SET plan_cache_mode = force_generic_plan")
        .await
        .unwrap();
    let one_row = "ARRAY[200000]::bigint[], ARRAY[now()], ARRAY['j'], ARRAY['succeeded'], ARRAY[now()], \
                   ARRAY[NULL::timestamptz], ARRAY[1]::bigint[], ARRAY[1]::bigint[], ARRAY[1]::bigint[], ARRAY['m'], \
                   ARRAY['{}'], ARRAY[1]::bigint[], ARRAY['run-7'], ARRAY['ik-new']";
    let attr_rows = "ARRAY[200000]::bigint[], ARRAY['k'], ARRAY['1']";
    let prepared = [
        (
            "insert",
            sql.insert.clone(),
            format!("{one_row}, 200000, {attr_rows}"),
        ),
        ("import", sql.import.clone(), format!("{one_row}, {attr_rows}")),
        ("next_id", sql.next_id.clone(), String::new()),
        ("last_id", sql.last_id.clone(), String::new()),
        ("get", sql.get.clone(), "5".into()),
        ("page", sql.page.clone(), "500, 1000".into()),
        ("id_checksums", sql.id_checksums.clone(), "500, 1000".into()),
        (
            "checksums_of",
            sql.checksums_of.clone(),
            "ARRAY[5, 6]::bigint[]".into(),
        ),
        (
            "by_idempotency_keys",
            sql.by_idempotency_keys.clone(),
            "ARRAY['ik-55', 'ik-65']".into(),
        ),
        (
            "by_idempotency_key",
            sql.by_idempotency_key.clone(),
            "'ik-55'".into(),
        ),
        (
            "run_ends",
            sql.run_ends.clone(),
            "ARRAY['run-5', 'run-9', 'none']".into(),
        ),
        ("run_records", sql.run_records.clone(), "'run-5'".into()),
    ];
    for (name, text, args) in prepared {
        client
            .batch_execute(&format!("PREPARE plan_{name} AS {text}"))
            .await
            .unwrap();
        let args = if args.is_empty() {
            String::new()
        } else {
            format!("({args})")
        };
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN EXECUTE plan_{name}{args}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !scans(&plan).is_empty() {
            failures.push(format!("{name}:\n{}", plan.join("\n")));
        }
    }
    store.close().await.unwrap();
    client
        .batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
        .await
        .unwrap();
    assert!(
        failures.is_empty(),
        "whole-table scans:\n\n{}",
        failures.join("\n\n")
    );
}
