//! The dashboard at `/`: server-rendered HTML (maud), charts as inline SVG, live rows
//! through the browser's own `EventSource` on `/v1/stream`. No third-party JavaScript.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use synclog_core::query::{Summary, TimeRange};
use synclog_core::{Filter, LogRecord, Run, RunScan, Status};

use crate::api::model::{FilterParams, Order, PageParams};
use crate::api::params::{only, parse, PathText, FILTER_KEYS, PAGE_KEYS};
use crate::app::App;
use crate::error::{ApiError, ApiResult};

/// Days shown in each job's chart.
pub const CHART_DAYS: usize = 14;
/// Runs per page of the runs table.
pub const PAGE_RUNS: usize = 50;
/// How long a finished day's counts are kept before they are read again (a prune or a
/// late import may change them).
pub const PAST_DAY_TTL: Duration = Duration::from_secs(600);

/// Per day (of `started_at`), per job: (runs ended, of which failed or abandoned).
type DayCounts = BTreeMap<String, (u64, u64)>;

/// Finished days' counts, kept for [`PAST_DAY_TTL`]: a page costs one summary of today,
/// not one per day shown.
#[derive(Default)]
pub struct ChartCache {
    days: Mutex<HashMap<NaiveDate, (Instant, DayCounts)>>,
}

fn day_counts(s: &Summary) -> DayCounts {
    s.jobs
        .iter()
        .map(|j| {
            let ended: u64 = j
                .counts
                .iter()
                .filter(|(st, _)| st.is_terminal())
                .map(|(_, n)| *n)
                .sum();
            let failed = j.counts.get(&Status::Failed).copied().unwrap_or(0)
                + j.counts.get(&Status::Abandoned).copied().unwrap_or(0);
            (j.job.clone(), (ended, failed))
        })
        .collect()
}

impl ChartCache {
    async fn days(&self, app: &App, today: NaiveDate) -> ApiResult<Vec<(NaiveDate, DayCounts)>> {
        let mut out = Vec::with_capacity(CHART_DAYS);
        for back in (0..CHART_DAYS as u64).rev() {
            let day = today - chrono::Days::new(back);
            let cached = if back == 0 {
                None
            } else {
                self.days.lock().ok().and_then(|d| {
                    d.get(&day)
                        .filter(|(at, _)| at.elapsed() < PAST_DAY_TTL)
                        .map(|(_, c)| c.clone())
                })
            };
            let counts = match cached {
                Some(c) => c,
                None => {
                    let from = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
                    let until = (day + chrono::Days::new(1))
                        .and_hms_opt(0, 0, 0)
                        .map(|t| t.and_utc());
                    // By the day runs started: indexed, and set by the app (a backfill
                    // lands on the days it covers, not on the day it was written).
                    let filter = Filter::default().started(TimeRange { from, until });
                    let c = day_counts(&app.inner.store.summary(&filter).await?);
                    if back > 0 {
                        if let Ok(mut d) = self.days.lock() {
                            d.retain(|k, _| *k > today - chrono::Days::new(CHART_DAYS as u64 + 1));
                            d.insert(day, (Instant::now(), c.clone()));
                        }
                    }
                    c
                }
            };
            out.push((day, counts));
        }
        Ok(out)
    }
}

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:baseline}
header h1{font-size:18px;margin:0} header a{color:#9cc3ff}
main{padding:16px 20px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:10px;margin-bottom:18px}
.tile{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:10px}
.tile h3{margin:0 0 4px;font-size:14px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.tile .meta{color:#5a6475;font-size:12px}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600;background:#e3e7ee}
.s-succeeded{background:#d3f2dc;color:#11632b}.s-failed,.s-abandoned{background:#fbd9d9;color:#8f1717}
.s-partial{background:#fdebc8;color:#7a4b00}.s-started,.s-progress{background:#d8e8fd;color:#12488f}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e7}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eceff3;font-size:13px}
th{background:#eef1f5} tr.stale td{background:#fff4d6} tr.new td{animation:flash 2s}
@keyframes flash{from{background:#d8e8fd}to{background:transparent}}
form.filters{display:flex;gap:8px;align-items:center;margin:8px 0}
.fail{color:#8f1717;font-weight:600} .muted{color:#5a6475} h2{font-size:16px;margin:18px 0 6px}
#live-state{font-size:12px}
"#;

const LIVE_JS: &str = r#"
(function(){
  var table=document.getElementById('runs-body'); var live=document.getElementById('live-body');
  var state=document.getElementById('live-state');
  var src=new EventSource('/v1/stream'+(document.body.dataset.stream||''));
  src.onopen=function(){state.textContent='live';};
  src.onerror=function(){state.textContent='reconnecting…';};
  function cell(tr,text,cls){var td=document.createElement('td');td.textContent=text;if(cls)td.className=cls;tr.appendChild(td);return td;}
  function badge(status){var s=document.createElement('span');s.className='badge s-'+status;s.textContent=status;return s;}
  src.addEventListener('log',function(e){
    var log=JSON.parse(e.data);
    var tr=document.createElement('tr');tr.className='new';tr.dataset.id=log.id;
    cell(tr,String(log.id));cell(tr,log.recorded_at.replace('T',' ').slice(0,19));cell(tr,log.job);
    cell(tr,'').appendChild(badge(log.status));cell(tr,log.run||'');
    cell(tr,log.items_seen+' / '+log.items_written+' / '+log.items_failed);cell(tr,log.message);
    live.insertBefore(tr,live.firstChild);
    while(live.children.length>50){live.removeChild(live.lastChild);}
    document.getElementById('live-empty').hidden=true;
    if(log.run&&table){
      var row=table.querySelector('tr[data-run="'+CSS.escape(log.run)+'"]');
      if(row){var b=row.querySelector('.status');b.textContent='';b.appendChild(badge(log.status));row.classList.add('new');}
      else if(log.status==='started'&&table.dataset.liveRuns==='1'){
        var nr=document.createElement('tr');nr.className='new';nr.dataset.run=log.run;
        var a=document.createElement('a');a.href='/run?key='+encodeURIComponent(log.run);a.textContent=log.run;
        cell(nr,'').appendChild(a);cell(nr,log.job);cell(nr,'','status').appendChild(badge(log.status));
        cell(nr,log.started_at.replace('T',' ').slice(0,19));cell(nr,'');
        cell(nr,log.items_seen+' / '+log.items_written+' / '+log.items_failed);cell(nr,log.message);
        table.insertBefore(nr,table.firstChild);
        var empty=document.getElementById('runs-empty');if(empty){empty.hidden=true;}
      }
    }
  });
})();
"#;

fn layout(title: &str, stream_query: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · synclog" }
                style { (PreEscaped(STYLE)) }
            }
            body data-stream=(stream_query) {
                header {
                    h1 { a href="/" { "synclog" } }
                    span.muted { "runs and their logs" }
                    span #live-state { "connecting…" }
                }
                main { (body) }
                script { (PreEscaped(LIVE_JS)) }
            }
        }
    }
}

fn badge(status: Status) -> Markup {
    html! { span class=(format!("badge s-{}", status.as_str())) { (status.as_str()) } }
}

/// "3m ago", "2h ago", "5d ago".
pub fn age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - then).num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// "850ms", "12.3s", "4m 05s", "2h 10m".
pub fn took(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m {:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h {:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A bar per day: ended runs in grey, failures over them in red.
fn chart(days: &[(NaiveDate, (u64, u64))]) -> Markup {
    let max = days.iter().map(|(_, (n, _))| *n).max().unwrap_or(0).max(1);
    let (w, h, bar) = (CHART_DAYS as u64 * 9, 30u64, 7u64);
    html! {
        svg.chart width=(w) height=(h) viewBox=(format!("0 0 {w} {h}")) role="img"
            aria-label="runs and failures per day" {
            @for (i, (day, (runs, failed))) in days.iter().enumerate() {
                @let x = i as u64 * 9;
                @let rh = runs * h / max;
                @let fh = failed * h / max;
                rect x=(x) y=(h - rh) width=(bar) height=(rh) fill="#b8c2d1" {
                    title { (day) ": " (runs) " runs, " (failed) " failed" }
                }
                @if *failed > 0 {
                    rect x=(x) y=(h - fh) width=(bar) height=(fh.max(1)) fill="#d64545";
                }
            }
        }
    }
}

fn runs_rows(runs: &[Run], cutoff: DateTime<Utc>) -> Markup {
    html! {
        @for r in runs {
            tr.stale[r.is_stale(cutoff)] data-run=(r.key) {
                td { a href=(run_href(&r.key)) { (r.key) } }
                td { (r.job) }
                td.status { (badge(r.status)) @if r.is_stale(cutoff) { " " span.fail { "stale" } } }
                td { (when(r.started_at)) }
                td { @if let Some(ms) = r.duration_ms { (took(ms)) } }
                td { (r.items_seen) " / " (r.items_written) " / " (r.items_failed) }
                td { (r.message) }
            }
        }
    }
}

/// What [`percent`] leaves as it is: `A-Z a-z 0-9 - . _ ~` (RFC 3986's unreserved).
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` as one URL path segment (or query value): every byte but the unreserved ones
/// percent-encoded, so a run key with spaces, `/` or `?` links to itself.
pub fn percent(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// `GET /`: job tiles, stale runs, the runs table (filters, paging), live logs.
pub async fn index(State(app): State<App>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let q = q.unwrap_or_default();
    only(&q, &[FILTER_KEYS, PAGE_KEYS])?;
    let now = Utc::now();
    let fp: FilterParams = parse(&q)?;
    let filter = fp.filter(now)?;
    let pp: PageParams = parse(&q)?;
    let page = PageParams {
        limit: Some(pp.limit.unwrap_or(PAGE_RUNS)),
        order: Some(pp.order.unwrap_or(Order::Desc)),
        ..pp
    }
    .page()?;
    let store = &app.inner.store;
    // The live stream goes on from what the store held before the page read its runs:
    // a run started while the page renders, or before the browser connects, still comes.
    let seen = store.last_id().await?.map_or(0, |id| id.get());
    let summary = store.summary(&Filter::default()).await?;
    let days = app.inner.charts.days(&app, now.date_naive()).await?;
    let cutoff = now - chrono::Duration::hours(24);
    let runs = store
        .runs(&RunScan {
            after: page.after,
            before: page.before,
            filter: filter.clone(),
            limit: page.limit,
            descending: page.descending,
            ..RunScan::default()
        })
        .await?;
    let stale = store
        .runs(&RunScan {
            limit: 20,
            descending: true,
            ..RunScan::stale(cutoff)
        })
        .await?;
    let next = page.next(&q, runs.len(), runs.last().map(|r| r.first_id()));
    // The live rows follow the table's jobs; not its statuses, since a run's status
    // changes as its records come (the live table shows each new log as it is).
    let mut stream_q = form_urlencoded::Serializer::new(String::new());
    for j in &fp.job {
        stream_q.append_pair("job", j);
    }
    stream_q.append_pair("after", &seen.to_string());
    let stream_q = format!("?{}", stream_q.finish());
    // New runs join the table live where the newest runs of the page's jobs are what it
    // shows: the first page, newest first, filtered by job alone (the stream's filter).
    let live_runs = page.descending
        && form_urlencoded::parse(q.as_bytes()).all(|(k, v)| k == "job" || k == "order" || v.is_empty());
    let selected_job = fp.job.first().cloned().unwrap_or_default();
    let selected_status = filter.statuses.first().map(|s| s.as_str()).unwrap_or("");
    let body = html! {
        h2 { "Jobs (" (summary.jobs.len()) ")" }
        div.tiles {
            @for j in &summary.jobs {
                @let per_day: Vec<(NaiveDate, (u64, u64))> = days.iter()
                    .map(|(d, c)| (*d, c.get(&j.job).copied().unwrap_or((0, 0)))).collect();
                div.tile data-job=(j.job) {
                    h3 { a href=(format!("/?job={}", percent(&j.job))) { (j.job) } }
                    div {
                        @if let Some(last) = &j.latest_finished { (badge(last.status)) " " }
                        @else { (badge(j.latest.status)) " " }
                        span.meta { (age(j.latest.recorded_at, now)) }
                    }
                    div.meta {
                        @if j.consecutive_failures > 0 {
                            span.fail { (j.consecutive_failures) " failed in a row" }
                        } @else if let Some(ok) = &j.latest_success {
                            "last success " (age(ok.recorded_at, now))
                        } @else { "no success yet" }
                    }
                    (chart(&per_day))
                }
            }
        }
        @if !stale.is_empty() {
            h2 { "Stale runs: started over 24h ago, never finished (" (stale.len()) ")" }
            table {
                thead { tr { th { "run" } th { "job" } th { "status" } th { "started" } th { "took" } th { "seen / written / failed" } th { "message" } } }
                tbody { (runs_rows(&stale, cutoff)) }
            }
        }
        h2 { "Runs" }
        form.filters method="get" action="/" {
            label { "job " select name="job" {
                option value="" { "any" }
                @for j in &summary.jobs { option value=(j.job) selected[j.job == selected_job] { (j.job) } }
            } }
            label { "status " select name="status" {
                option value="" { "any" }
                @for s in Status::ALL { option value=(s.as_str()) selected[s.as_str() == selected_status] { (s.as_str()) } }
            } }
            button type="submit" { "Filter" }
            a href="/" { "clear" }
        }
        table #runs {
            thead { tr { th { "run" } th { "job" } th { "status" } th { "started" } th { "took" } th { "seen / written / failed" } th { "message" } } }
            tbody #runs-body data-live-runs=(if live_runs { "1" } else { "0" }) { (runs_rows(&runs, cutoff)) }
        }
        @if runs.is_empty() { p.muted #runs-empty { "No runs match." } }
        @if let Some(n) = next { p { a #next href=(format!("/?{n}")) { "Older runs →" } } }
        h2 { "Live: logs as they are committed" }
        table #live {
            thead { tr { th { "id" } th { "recorded" } th { "job" } th { "status" } th { "run" } th { "seen / written / failed" } th { "message" } } }
            tbody #live-body {}
        }
        p.muted #live-empty { "Waiting for new logs…" }
    };
    Ok(layout("Dashboard", &stream_q, body).into_response())
}

/// The dashboard's link to run `key`'s timeline: the key in the query, not the path, so
/// that every key reaches its page. A browser resolves the path segments `.` and `..` even
/// percent-encoded (`%2e%2e`), so `/runs/..` would open the index instead.
pub fn run_href(key: &str) -> String {
    format!("/run?key={}", percent(key))
}

/// `GET /run?key=KEY`: a run's timeline (what the dashboard links to).
pub async fn run_page_by_query(State(app): State<App>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let q = q.unwrap_or_default();
    only(&q, &[&["key"]])?;
    let key = form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "key")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ApiError::bad_request("give the run's key: /run?key=KEY"))?;
    run_page(State(app), PathText(key)).await
}

/// `GET /runs/{key}`: a run's timeline.
pub async fn run_page(State(app): State<App>, PathText(key): PathText) -> ApiResult<Response> {
    let records: Vec<LogRecord> = app.inner.store.run_records(&key).await?;
    let Some(run) = Run::from_records(&key, &records) else {
        return Err(ApiError::not_found(format!("no run {key:?}")));
    };
    let now = Utc::now();
    let stale = run.is_stale(now - chrono::Duration::hours(24));
    // The page shows the run's records so far; the stream goes on after the last.
    let last = records.last().map_or(0, |r| r.id.get());
    let stream_q = format!("?run={}&after={last}", percent(&key));
    let body = html! {
        h2 { "Run " (run.key) }
        p {
            (badge(run.status)) " job " b { (run.job) } ", started " (when(run.started_at))
            @if let Some(f) = run.finished_at { ", ended " (when(f)) }
            @if let Some(ms) = run.duration_ms { " (took " (took(ms)) ")" }
            @if stale { " " span.fail { "stale: started over 24h ago and never finished" } }
        }
        table #timeline {
            thead { tr { th { "id" } th { "recorded" } th { "status" } th { "seen / written / failed" } th { "message" } th { "attributes" } th { "checksum" } } }
            tbody {
                @for r in &records {
                    tr {
                        td { (r.id) } td { (when(r.recorded_at)) } td { (badge(r.status)) }
                        td { (r.items_seen) " / " (r.items_written) " / " (r.items_failed) }
                        td { (r.message) } td { code { (r.attrs.as_str()) } } td { code { (r.checksum) } }
                    }
                }
            }
        }
        h2 { "Live" }
        table #live { tbody #live-body {} }
        p.muted #live-empty { "Waiting for this run's next log…" }
    };
    Ok(layout(&format!("Run {key}"), &stream_q, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        let now = Utc::now();
        assert_eq!(age(now - chrono::Duration::seconds(5), now), "5s ago");
        assert_eq!(age(now - chrono::Duration::minutes(90), now), "1h ago");
        assert_eq!(age(now - chrono::Duration::days(3), now), "3d ago");
        assert_eq!(took(850), "850ms");
        assert_eq!(took(12_345), "12.3s");
        assert_eq!(took(245_000), "4m 05s");
        assert_eq!(took(7_800_000), "2h 10m");
        assert_eq!(percent("run 1/a?b"), "run%201%2Fa%3Fb");
    }
}
