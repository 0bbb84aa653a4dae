//! Retention that can be proven afterwards: a [`Policy`] chooses what goes, a
//! [`PrunePlan`] says exactly what that is, and every prune leaves a [`PruneMarker`] in the
//! store (in both copies of a guarded pair) so that `verify` reports the pruned ids as
//! pruned, never as lost, and no copy brings them back.
//!
//! What a prune never removes, whatever the policy: the newest record of each job, and
//! any record of a run that has not finished. A finished run goes as a whole or not at
//! all (its records are judged together: every one of them must meet the policy).
//!
//! ```
//! use synclog_core::retention::Policy;
//! let policy = Policy::default().older_than(std::time::Duration::from_secs(90 * 86_400)).keep_last(10);
//! policy.validate()?;
//! assert_eq!(policy.to_string(), "older than 90d, keeping the newest 10 per job");
//! # Ok::<(), synclog_core::Error>(())
//! ```
//!
//! The steps, and what a crash between them leaves:
//! 1. **Plan** ([`plan_prune`]): read what the policy selects; nothing is written.
//! 2. **Archive** (optional): copy the planned records into another store, sync it, read
//!    them back and compare their `(id, checksum)` digest with the plan's. Any failure
//!    stops here with nothing deleted.
//! 3. **Apply** ([`crate::LogStore::apply_prune`]): the engine stores the marker and deletes
//!    the records of its ranges, atomically where the engine has transactions; where it
//!    has not (JSON lines), the marker is made durable first and the deletion follows, so
//!    every record is always either present or covered by a marker. Applying a marker
//!    again finishes what a crash interrupted.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical::Checksum;
use crate::error::{Error, Result};
use crate::query::{Filter, TimeRange};
use crate::record::{IdRange, LogId, LogRecord, Timestamp};
use crate::store::{Durability, LogStore, LogStoreExt, Scan};

/// The records a prune reads per page.
pub const PRUNE_PAGE: usize = 10_000;

/// What a prune removes. Each condition given narrows it (they are ANDed): "older than 90
/// days, keeping the newest 10 per job" removes records that are both older than 90 days
/// and not among their job's newest 10. At least one condition is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Policy {
    /// Records whose `recorded_at` is more than this long before the prune.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "seconds")]
    pub older_than: Option<Duration>,
    /// Records that are not among the newest this many of their job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u64>,
    /// Records whose id is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_id: Option<LogId>,
}

mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_u64(d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

impl Policy {
    /// Also: only records recorded more than `age` ago.
    pub fn older_than(mut self, age: Duration) -> Policy {
        self.older_than = Some(age);
        self
    }

    /// Also: keep the newest `n` records of each job.
    pub fn keep_last(mut self, n: u64) -> Policy {
        self.keep_last = Some(n);
        self
    }

    /// Also: only ids below `id`.
    pub fn before_id(mut self, id: LogId) -> Policy {
        self.before_id = Some(id);
        self
    }

    /// Refuses a policy without a condition, a zero age (shorter than a second) and a zero
    /// count, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.older_than.is_none() && self.keep_last.is_none() && self.before_id.is_none() {
            return Err(Error::invalid(
                "policy",
                "give at least one of older-than, keep-last, before-id",
            ));
        }
        if let Some(age) = self.older_than {
            if age.as_secs() == 0 {
                return Err(Error::invalid("older_than", "must be at least one second"));
            }
            if chrono::Duration::from_std(age).is_err() || age.as_secs() > MAX_AGE_SECS {
                return Err(Error::invalid("older_than", "must be at most 100 years"));
            }
        }
        if self.keep_last == Some(0) {
            return Err(Error::invalid(
                "keep_last",
                "must be at least 1 (the newest record of each job is always kept)",
            ));
        }
        Ok(())
    }

    /// The `recorded_at` below which records are old enough, for a prune at `now`.
    pub fn cutoff(&self, now: Timestamp) -> Option<Timestamp> {
        let age = chrono::Duration::from_std(self.older_than?).ok()?;
        now.checked_sub_signed(age)
    }
}

const MAX_AGE_SECS: u64 = 100 * 365 * 86_400;

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(age) = self.older_than {
            parts.push(format!("older than {}", format_duration(age)));
        }
        if let Some(id) = self.before_id {
            parts.push(format!("below id {id}"));
        }
        if let Some(n) = self.keep_last {
            parts.push(format!("keeping the newest {n} per job"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// A duration such as `30s`, `90m`, `24h`, `7d` or `2w` (at most 100 years).
///
/// Errors: [`Error::InvalidInput`] naming `duration`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || {
        Error::invalid(
            "duration",
            format!("{s:?} is not a duration like 30s, 90m, 24h, 7d or 2w"),
        )
    };
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(unit_at);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs)
        .filter(|t| *t <= MAX_AGE_SECS)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// `d` in the largest unit that divides it (`90d`, `36h`, `45s`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, size) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if s >= size && s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

/// What one prune removed, kept in the store: the proof `verify` reads.
///
/// `digest` is the SHA-256 over the pruned records' `(id, checksum)` pairs in id order
/// (each as the id's 8 big-endian bytes and the checksum's 4), so an archive can be shown
/// to hold exactly what went; `checksum` covers every other field, so a damaged marker is
/// detected rather than trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneMarker {
    /// When the prune was planned.
    #[serde(with = "crate::timefmt")]
    pub at: Timestamp,
    /// The policy it ran.
    pub policy: Policy,
    /// The ids removed, as maximal runs of consecutive ids in ascending order. An id that
    /// was already absent is never inside a range (it stays a loss in `verify`).
    pub ranges: Vec<IdRange>,
    /// How many records were removed (the ids in `ranges`).
    pub count: u64,
    /// SHA-256 of the removed `(id, checksum)` pairs, lowercase hex.
    pub digest: String,
    /// Where they were archived first (a URL without password), if they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// CRC-32C of the marker's other fields (see [`PruneMarker::encode`]).
    pub checksum: Checksum,
}

/// The fields a marker's checksum covers, in a fixed order.
#[derive(Serialize)]
struct MarkerBody<'a> {
    #[serde(with = "crate::timefmt")]
    at: &'a Timestamp,
    policy: &'a Policy,
    ranges: &'a [IdRange],
    count: u64,
    digest: &'a str,
    archive: &'a Option<String>,
}

impl PruneMarker {
    /// A sealed marker (its checksum set).
    pub fn new(
        at: Timestamp,
        policy: Policy,
        ranges: Vec<IdRange>,
        digest: String,
        archive: Option<String>,
    ) -> PruneMarker {
        let count = ranges.iter().map(IdRange::count).sum();
        let mut m = PruneMarker {
            at,
            policy,
            ranges,
            count,
            digest,
            archive,
            checksum: Checksum(0),
        };
        m.checksum = m.compute_checksum();
        m
    }

    fn compute_checksum(&self) -> Checksum {
        let body = MarkerBody {
            at: &self.at,
            policy: &self.policy,
            ranges: &self.ranges,
            count: self.count,
            digest: &self.digest,
            archive: &self.archive,
        };
        let text = serde_json::to_vec(&body).unwrap_or_default();
        Checksum(crc32c::crc32c(&text))
    }

    /// Whether the stored checksum matches the fields and `count` matches the ranges.
    pub fn is_intact(&self) -> bool {
        self.compute_checksum() == self.checksum
            && self.count == self.ranges.iter().map(IdRange::count).sum::<u64>()
            && self.ranges.windows(2).all(|w| w[0].last < w[1].first)
    }

    /// The marker as stored: one line of JSON.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stored marker, checked.
    ///
    /// Errors: [`Error::Corrupt`] when it cannot be decoded or its checksum does not match.
    pub fn decode(text: &str, location: &str) -> Result<PruneMarker> {
        let m: PruneMarker = serde_json::from_str(text).map_err(|e| Error::Corrupt {
            location: location.to_string(),
            detail: format!("a prune marker cannot be decoded: {e}"),
            source: None,
        })?;
        if !m.is_intact() {
            return Err(Error::Corrupt {
                location: location.to_string(),
                detail: format!(
                    "the prune marker of {} ({}) does not match its checksum {}",
                    m.at, m.policy, m.checksum
                ),
                source: None,
            });
        }
        Ok(m)
    }

    /// The largest id it removed.
    pub fn last_id(&self) -> Option<LogId> {
        self.ranges.last().map(|r| r.last)
    }

    /// Whether it removed `id`.
    pub fn covers(&self, id: LogId) -> bool {
        let i = self.ranges.partition_point(|r| r.last < id);
        self.ranges.get(i).is_some_and(|r| r.contains(id))
    }

    /// A short name for messages: its time and the first 12 hex digits of its digest.
    pub fn name(&self) -> String {
        format!(
            "{} {}",
            self.at.format("%Y-%m-%dT%H:%M:%SZ"),
            &self.digest[..self.digest.len().min(12)]
        )
    }
}

/// The ids every marker of a store removed, merged: what imports skip and verify accounts
/// for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    ranges: Vec<IdRange>,
}

impl Pruned {
    /// The union of `markers`' ranges.
    pub fn of<'a>(markers: impl IntoIterator<Item = &'a PruneMarker>) -> Pruned {
        let mut all: Vec<IdRange> = markers
            .into_iter()
            .flat_map(|m| m.ranges.iter().copied())
            .collect();
        all.sort_unstable();
        let mut ranges: Vec<IdRange> = Vec::with_capacity(all.len());
        for r in all {
            match ranges.last_mut() {
                Some(last) if r.first.get() <= last.last.get().saturating_add(1) => {
                    last.last = last.last.max(r.last);
                }
                _ => ranges.push(r),
            }
        }
        Pruned { ranges }
    }

    /// Whether some marker removed `id`.
    pub fn contains(&self, id: LogId) -> bool {
        let i = self.ranges.partition_point(|r| r.last < id);
        self.ranges.get(i).is_some_and(|r| r.contains(id))
    }

    /// The merged ranges, ascending.
    pub fn ranges(&self) -> &[IdRange] {
        &self.ranges
    }

    /// No id was pruned.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The largest pruned id: ids a store assigns must stay above it.
    pub fn last_id(&self) -> Option<LogId> {
        self.ranges.last().map(|r| r.last)
    }

    /// `ranges` without the pruned ids (what is still missing after accounting for prunes).
    pub fn subtract(&self, ranges: &[IdRange]) -> Vec<IdRange> {
        let mut out = Vec::new();
        for r in ranges {
            let mut start = r.first.get();
            let end = r.last.get();
            let i = self.ranges.partition_point(|p| p.last.get() < start);
            for p in &self.ranges[i..] {
                if p.first.get() > end || start > end {
                    break;
                }
                if p.first.get() > start {
                    out.extend(
                        LogId::new(start)
                            .zip(LogId::new(p.first.get() - 1))
                            .and_then(|(a, b)| IdRange::new(a, b)),
                    );
                }
                start = p.last.get().saturating_add(1);
            }
            if start <= end {
                out.extend(
                    LogId::new(start)
                        .zip(LogId::new(end))
                        .and_then(|(a, b)| IdRange::new(a, b)),
                );
            }
        }
        out
    }
}

/// Refuses a marker that does not match its checksum (or whose ranges are not ascending):
/// what engines call before storing one.
///
/// Errors: [`Error::Corrupt`].
pub fn check_marker(marker: &PruneMarker) -> Result<()> {
    if marker.is_intact() {
        Ok(())
    } else {
        Err(Error::Corrupt {
            location: "a prune marker".into(),
            detail: format!(
                "the marker of {} does not match its checksum {}; nothing was pruned",
                marker.at, marker.checksum
            ),
            source: None,
        })
    }
}

/// What a prune removes from one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobPrune {
    /// Records removed.
    pub count: u64,
    /// The smallest id removed.
    pub first: LogId,
    /// The largest id removed.
    pub last: LogId,
}

/// Exactly what a policy selects in a store now (nothing is written to plan it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrunePlan {
    /// The policy.
    pub policy: Policy,
    /// The instant it was planned at (`older_than` counts back from it).
    #[serde(with = "crate::timefmt")]
    pub at: Timestamp,
    /// The ids to remove, as maximal runs of consecutive ids.
    pub ranges: Vec<IdRange>,
    /// How many.
    pub count: u64,
    /// Per job.
    pub jobs: BTreeMap<String, JobPrune>,
    /// SHA-256 over their `(id, checksum)` pairs (see [`PruneMarker`]).
    pub digest: String,
    /// Records the policy selected but kept because they are the newest of their job.
    pub kept_newest: u64,
    /// Records the policy selected but kept because their run has not finished or is not
    /// selected as a whole.
    pub kept_in_runs: u64,
    /// Records the policy selected that are damaged (kept: their checksum cannot be
    /// trusted, so `check --repair` should mend them first).
    pub kept_damaged: u64,
}

impl PrunePlan {
    /// Nothing to remove.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The marker that records this plan, pruned at `self.at`.
    pub fn marker(&self, archive: Option<String>) -> PruneMarker {
        PruneMarker::new(
            self.at,
            self.policy,
            self.ranges.clone(),
            self.digest.clone(),
            archive,
        )
    }
}

/// The running digest of `(id, checksum)` pairs in id order.
#[derive(Debug, Clone, Default)]
pub struct PairDigest(Sha256);

impl PairDigest {
    /// Adds one pair (in ascending id order).
    pub fn add(&mut self, id: LogId, checksum: Checksum) {
        self.0.update(id.get().to_be_bytes());
        self.0.update(checksum.0.to_be_bytes());
    }

    /// The digest, lowercase hex.
    pub fn finish(self) -> String {
        self.0.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `ranges` (ascending) cut into chunks of at most `size` ids each (at least 1), in id
/// order: for engines that delete a prune in several transactions, the first of which
/// stores the marker. Always at least one chunk (empty when there are no ranges).
pub fn chunk_ranges(ranges: &[IdRange], size: u64) -> Vec<Vec<IdRange>> {
    let size = size.max(1);
    let mut out = vec![Vec::new()];
    let mut room = size;
    for r in ranges {
        let (mut first, last) = (r.first, r.last);
        loop {
            if room == 0 {
                out.push(Vec::new());
                room = size;
            }
            let end = LogId::new(first.get().saturating_add(room - 1)).map_or(last, |e| e.min(last));
            if let (Some(chunk), Some(part)) = (out.last_mut(), IdRange::new(first, end)) {
                room -= part.count();
                chunk.push(part);
            }
            match end.next() {
                Some(next) if end < last => first = next,
                _ => break,
            }
        }
    }
    out
}

/// Maximal runs of consecutive ids, from ascending ids.
pub fn ranges_of(ids: impl IntoIterator<Item = LogId>) -> Vec<IdRange> {
    let mut ranges: Vec<IdRange> = Vec::new();
    for id in ids {
        match ranges.last_mut() {
            Some(r) if r.last.get() + 1 == id.get() => r.last = id,
            _ => ranges.push(IdRange::single(id)),
        }
    }
    ranges
}

/// A run whose records have been seen but not yet its terminal one.
#[derive(Default)]
struct OpenRun {
    records: Vec<(LogId, Checksum, String)>,
    all_selected: bool,
}

/// Plans a prune of `store` by `policy` at `now`: reads what the policy selects, keeps
/// the newest record of each job and runs that have not finished (or are not selected as
/// a whole), and returns the plan. Writes nothing.
///
/// Errors: [`Error::InvalidInput`] for a policy [`Policy::validate`] refuses; read errors.
pub async fn plan_prune(store: &dyn LogStore, policy: &Policy, now: Timestamp) -> Result<PrunePlan> {
    policy.validate()?;
    let cutoff = policy.cutoff(now);
    let mut plan = PrunePlan {
        policy: *policy,
        at: now,
        ranges: Vec::new(),
        count: 0,
        jobs: BTreeMap::new(),
        digest: PairDigest::default().finish(),
        kept_newest: 0,
        kept_in_runs: 0,
        kept_damaged: 0,
    };
    // The last id the policy can reach: nothing above it is read.
    let mut end = store.last_id().await?.map(LogId::get);
    if let Some(b) = policy.before_id {
        end = end.map(|e| e.min(b.get().saturating_sub(1)));
    }
    if let Some(cut) = cutoff {
        let newest_old = store
            .scan(&Scan {
                filter: Filter::default().recorded(TimeRange::before(cut)),
                limit: 1,
                descending: true,
                ..Scan::default()
            })
            .await?;
        end = match newest_old.first() {
            Some(r) => end.map(|e| e.min(r.id.get())),
            None => None,
        };
    }
    let Some(end) = end.filter(|&e| e > 0) else {
        return Ok(plan);
    };
    // Each job's newest record, and with keep_last the id below which its records may go.
    let summary = store.summary(&Filter::default()).await?;
    let mut newest: HashMap<String, LogId> = HashMap::with_capacity(summary.jobs.len());
    let mut keep_from: HashMap<String, LogId> = HashMap::new();
    for job in &summary.jobs {
        newest.insert(job.job.clone(), job.latest.id);
        if let Some(n) = policy.keep_last {
            if job.total() > n {
                if let Some(id) = nth_newest(store, &job.job, n).await? {
                    keep_from.insert(job.job.clone(), id);
                }
            }
        }
    }
    let selected = |rec: &LogRecord| -> bool {
        rec.id.get() <= end
            && cutoff.is_none_or(|c| rec.recorded_at < c)
            && (policy.keep_last.is_none() || keep_from.get(&rec.job).is_some_and(|&k| rec.id < k))
    };
    let mut pruned: Vec<(LogId, Checksum, String)> = Vec::new();
    let mut open: HashMap<String, OpenRun> = HashMap::new();
    let mut scan = Scan::all(PRUNE_PAGE);
    loop {
        let page = store.scan(&scan).await?;
        let Some(last) = page.last() else { break };
        scan.after = Some(last.id);
        let full = page.len() == PRUNE_PAGE;
        let mut past_end = false;
        for rec in page {
            if rec.id.get() > end {
                past_end = true;
                break;
            }
            let mut chosen = selected(&rec);
            if chosen && newest.get(&rec.job) == Some(&rec.id) {
                plan.kept_newest += 1;
                chosen = false;
            }
            if chosen && !rec.is_intact() {
                plan.kept_damaged += 1;
                chosen = false;
            }
            match rec.run.clone() {
                None if chosen => pruned.push((rec.id, rec.checksum, rec.job)),
                None => {}
                Some(key) => {
                    let run = open.entry(key.clone()).or_insert_with(|| OpenRun {
                        records: Vec::new(),
                        all_selected: true,
                    });
                    run.all_selected &= chosen;
                    if chosen {
                        run.records.push((rec.id, rec.checksum, rec.job.clone()));
                    } else if selected(&rec) {
                        // Chosen by the policy but kept for its own reason: counted there.
                    }
                    if rec.status.is_terminal() {
                        if let Some(run) = open.remove(&key) {
                            if run.all_selected {
                                pruned.extend(run.records);
                            } else {
                                plan.kept_in_runs += run.records.len() as u64;
                            }
                        }
                    }
                }
            }
        }
        if past_end || !full {
            break;
        }
    }
    plan.kept_in_runs += open.values().map(|r| r.records.len() as u64).sum::<u64>();
    pruned.sort_unstable_by_key(|p| p.0);
    let mut digest = PairDigest::default();
    for (id, checksum, job) in &pruned {
        digest.add(*id, *checksum);
        let entry = plan.jobs.entry(job.clone()).or_insert(JobPrune {
            count: 0,
            first: *id,
            last: *id,
        });
        entry.count += 1;
        entry.last = *id;
    }
    plan.count = pruned.len() as u64;
    plan.digest = digest.finish();
    plan.ranges = ranges_of(pruned.iter().map(|p| p.0));
    Ok(plan)
}

/// The id of job `job`'s `n`-th newest record, if it has that many.
async fn nth_newest(store: &dyn LogStore, job: &str, n: u64) -> Result<Option<LogId>> {
    let mut scan = Scan {
        filter: Filter::default().jobs([job]),
        descending: true,
        limit: Scan::MAX_LIMIT,
        ..Scan::default()
    };
    let mut left = n;
    loop {
        scan.limit = usize::try_from(left)
            .unwrap_or(Scan::MAX_LIMIT)
            .min(Scan::MAX_LIMIT);
        let page = store.scan(&scan).await?;
        let Some(last) = page.last() else { return Ok(None) };
        left -= page.len() as u64;
        if left == 0 {
            return Ok(Some(last.id));
        }
        if page.len() < scan.limit {
            return Ok(None);
        }
        scan.before = Some(last.id);
    }
}

/// What [`crate::LogStore::apply_prune`] did to one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Applied {
    /// Records deleted now (0 when an earlier application already had).
    pub deleted: u64,
    /// The marker was already stored.
    pub already_marked: bool,
}

/// How a prune runs.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Plan and report only; change nothing.
    pub dry_run: bool,
    /// Copy what goes into this store first, sync it and read it back; stop with nothing
    /// deleted if that fails.
    pub archive: Option<std::sync::Arc<dyn LogStore>>,
    /// The durability of the marker and the deletion (and of the archive's sync).
    pub durability: Durability,
}

/// What [`prune`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// What the policy selected.
    pub plan: PrunePlan,
    /// Only planned: nothing changed.
    pub dry_run: bool,
    /// Records the archive received (new ones; a rerun finds them present).
    pub archived: Option<u64>,
    /// The marker stored, when something was pruned.
    pub marker: Option<PruneMarker>,
    /// Records deleted.
    pub deleted: u64,
    /// The store's size before, in bytes, where the engine can tell.
    pub bytes_before: Option<u64>,
    /// Its size after (space given back to the file system where the engine can).
    pub bytes_after: Option<u64>,
}

/// Prunes `store` by `policy`: plans, archives (when asked), then applies the marker.
/// A dry run, or a plan that selects nothing, changes nothing.
///
/// Errors: [`Error::InvalidInput`] for a bad policy or an archive that is the store
/// itself; an archive that fails, holds other records under the pruned ids, or does not
/// read back the same digest stops the prune before anything is deleted
/// ([`Error::Conflict`], [`Error::Corrupt`] or the archive's own error).
pub async fn prune(store: &dyn LogStore, policy: &Policy, options: &PruneOptions) -> Result<PruneReport> {
    policy.validate()?;
    if let Some(archive) = &options.archive {
        if archive.describe() == store.describe() {
            return Err(Error::invalid(
                "archive",
                format!(
                    "{} is the store being pruned; archive into another store",
                    archive.describe()
                ),
            ));
        }
    }
    let plan = plan_prune(store, policy, chrono::Utc::now()).await?;
    let mut report = PruneReport {
        plan,
        dry_run: options.dry_run,
        archived: None,
        marker: None,
        deleted: 0,
        bytes_before: None,
        bytes_after: None,
    };
    if options.dry_run || report.plan.is_empty() {
        return Ok(report);
    }
    report.bytes_before = store.storage_bytes().await?;
    let archive_name = match &options.archive {
        Some(archive) => {
            report.archived = Some(archive_plan(store, &**archive, &report.plan, options.durability).await?);
            Some(archive.describe())
        }
        None => None,
    };
    let marker = report.plan.marker(archive_name);
    let applied = store.apply_prune(&marker, options.durability).await?;
    report.deleted = applied.deleted;
    report.marker = Some(marker);
    report.bytes_after = store.storage_bytes().await?;
    Ok(report)
}

/// Copies the planned records into `archive`, syncs it, reads them back and compares the
/// digest. Returns how many records it inserted.
async fn archive_plan(
    store: &dyn LogStore,
    archive: &dyn LogStore,
    plan: &PrunePlan,
    durability: Durability,
) -> Result<u64> {
    let per_page = archive
        .capabilities()
        .durability
        .into_iter()
        .filter(|&d| d <= durability.min(Durability::Process))
        .max()
        .unwrap_or(durability);
    let mut inserted = 0;
    for range in &plan.ranges {
        let mut scan = Scan {
            after: LogId::new(range.first.get() - 1),
            before: range.last.next(),
            limit: PRUNE_PAGE,
            ..Scan::default()
        };
        loop {
            let page = store.scan(&scan).await?;
            let Some(last) = page.last() else { break };
            scan.after = Some(last.id);
            let full = page.len() == PRUNE_PAGE;
            let done = archive.import(page, per_page).await?;
            if let Some(c) = done.conflicts.first() {
                return Err(Error::Conflict {
                    id: c.id,
                    detail: format!(
                        "the archive {} holds another record under this id (checksum {} there, {} here); nothing was pruned",
                        archive.describe(),
                        c.stored,
                        c.offered
                    ),
                });
            }
            inserted += done.inserted;
            if !full {
                break;
            }
        }
    }
    archive.sync(durability).await?;
    // Read back what the archive now holds under the pruned ids.
    let mut digest = PairDigest::default();
    let mut count = 0u64;
    for range in &plan.ranges {
        let mut scan = Scan {
            after: LogId::new(range.first.get() - 1),
            before: range.last.next(),
            limit: PRUNE_PAGE,
            ..Scan::default()
        };
        loop {
            let page = archive.scan(&scan).await?;
            let Some(last) = page.last() else { break };
            scan.after = Some(last.id);
            let full = page.len() == PRUNE_PAGE;
            for rec in &page {
                if !rec.is_intact() {
                    return Err(Error::Corrupt {
                        location: archive.describe(),
                        detail: format!(
                            "log {} reads back damaged from the archive; nothing was pruned",
                            rec.id
                        ),
                        source: None,
                    });
                }
                digest.add(rec.id, rec.checksum);
                count += 1;
            }
            if !full {
                break;
            }
        }
    }
    let got = digest.finish();
    if count != plan.count || got != plan.digest {
        return Err(Error::Corrupt {
            location: archive.describe(),
            detail: format!(
                "the archive reads back {count} of the {} records to prune (digest {} instead of {}); nothing was pruned",
                plan.count,
                &got[..12],
                &plan.digest[..12]
            ),
            source: None,
        });
    }
    Ok(inserted)
}

/// Retention that runs by itself: `policy` at most once per `every`, in a task beside the
/// store's other work (appends go on while it runs; each deletion is one short engine
/// transaction or file step).
///
/// "At most once per `every`" holds across processes too: a run is skipped while the
/// store's newest prune marker is younger than `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoRetain {
    /// What each run prunes.
    pub policy: Policy,
    /// The least time between two runs.
    pub every: Duration,
}

impl AutoRetain {
    /// The interval when none is given: one hour.
    pub const DEFAULT_EVERY: Duration = Duration::from_secs(3600);

    /// From URL-style parameters: `retain` (an age, as [`parse_duration`]), `retain_keep`
    /// (a count per job) and `retain_every` (an interval, default one hour). `None` when
    /// neither `retain` nor `retain_keep` is given.
    ///
    /// Errors: [`Error::InvalidInput`] naming the parameter.
    pub fn from_params(
        retain: Option<&str>,
        keep: Option<&str>,
        every: Option<&str>,
    ) -> Result<Option<AutoRetain>> {
        let older_than = retain.map(parse_duration).transpose()?;
        let keep_last = keep
            .map(|k| {
                k.parse::<u64>()
                    .map_err(|_| Error::invalid("retain_keep", format!("{k:?} is not a count")))
            })
            .transpose()?;
        if older_than.is_none() && keep_last.is_none() {
            if every.is_some() {
                return Err(Error::invalid(
                    "retain_every",
                    "give retain=AGE or retain_keep=N with it",
                ));
            }
            return Ok(None);
        }
        let policy = Policy {
            older_than,
            keep_last,
            before_id: None,
        };
        policy.validate()?;
        let every = every
            .map(parse_duration)
            .transpose()?
            .unwrap_or(Self::DEFAULT_EVERY);
        Ok(Some(AutoRetain { policy, every }))
    }
}

impl AutoRetain {
    /// Whether a run is due at `now` for a store holding `markers`: none of them (the
    /// newest last) is younger than `every`.
    pub fn is_due(&self, markers: &[PruneMarker], now: Timestamp) -> bool {
        let Ok(every) = chrono::Duration::from_std(self.every) else {
            return true;
        };
        markers.iter().all(|m| now - m.at >= every)
    }
}

/// The task [`spawn_auto_retention`] started; it stops when this is dropped (after the
/// step it is in, if one is running).
#[derive(Debug)]
pub struct AutoRetention {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl AutoRetention {
    /// Stops the task and waits for it to finish the step it is in.
    pub async fn stop(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for AutoRetention {
    fn drop(&mut self) {
        self.stop.take();
    }
}

/// Starts `auto` on `store` in a tokio task: a run at once if one is due, then one every
/// `auto.every`. Each run is [`prune`] at the store's strongest durability; what it did is
/// logged (`info` when it pruned, `warn` when it failed, then it tries again next time).
pub fn spawn_auto_retention(store: std::sync::Arc<dyn LogStore>, auto: AutoRetain) -> AutoRetention {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let options = PruneOptions {
            durability: store.capabilities().strongest_durability(),
            ..PruneOptions::default()
        };
        loop {
            let due = match store.prune_markers().await {
                Ok(markers) => auto.is_due(&markers, chrono::Utc::now()),
                Err(e) if e.kind() == crate::ErrorKind::Closed => return,
                Err(_) => true,
            };
            if due {
                let run = tokio::select! {
                    run = prune(&*store, &auto.policy, &options) => run,
                    _ = &mut rx => return,
                };
                match run {
                    Ok(r) if r.deleted > 0 => tracing::info!(
                        store = %store.describe(), pruned = r.deleted, policy = %auto.policy,
                        "automatic retention pruned logs"
                    ),
                    Ok(_) => {
                        tracing::debug!(store = %store.describe(), policy = %auto.policy, "automatic retention: nothing to prune")
                    }
                    Err(e) if e.kind() == crate::ErrorKind::Closed => return,
                    Err(e) => tracing::warn!(
                        store = %store.describe(), error = %e, policy = %auto.policy,
                        "automatic retention failed; it tries again at the next interval"
                    ),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(auto.every) => {}
                _ = &mut rx => return,
            }
        }
    });
    AutoRetention {
        stop: Some(tx),
        task: Some(task),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn chunks_hold_at_most_their_size_in_id_order() {
        let r = |a: u64, b: u64| IdRange::new(LogId::new(a).unwrap(), LogId::new(b).unwrap()).unwrap();
        assert_eq!(chunk_ranges(&[], 3), vec![Vec::<IdRange>::new()]);
        assert_eq!(
            chunk_ranges(&[r(1, 7), r(9, 9), r(11, 12)], 3),
            vec![
                vec![r(1, 3)],
                vec![r(4, 6)],
                vec![r(7, 7), r(9, 9), r(11, 11)],
                vec![r(12, 12)]
            ]
        );
        assert_eq!(chunk_ranges(&[r(5, 6)], 2), vec![vec![r(5, 6)]]);
        assert_eq!(chunk_ranges(&[r(5, 6)], 0), vec![vec![r(5, 5)], vec![r(6, 6)]]);
        let top = IdRange::new(LogId::new(LogId::MAX.get() - 1).unwrap(), LogId::MAX).unwrap();
        assert_eq!(chunk_ranges(&[top], 5), vec![vec![top]]);
        assert_eq!(
            chunk_ranges(&[top], 1),
            vec![
                vec![IdRange::single(top.first)],
                vec![IdRange::single(LogId::MAX)]
            ]
        );
    }
    use super::*;

    fn id(n: u64) -> LogId {
        LogId::new(n).unwrap()
    }

    #[test]
    fn policies_without_a_condition_or_with_zeros_are_refused() {
        let field = |p: Policy| match p.validate() {
            Err(Error::InvalidInput { field, .. }) => field.to_string(),
            other => panic!("{other:?}"),
        };
        assert_eq!(field(Policy::default()), "policy");
        assert_eq!(field(Policy::default().keep_last(0)), "keep_last");
        assert_eq!(field(Policy::default().older_than(Duration::ZERO)), "older_than");
        assert!(Policy::default().before_id(id(5)).validate().is_ok());
    }

    #[test]
    fn markers_detect_a_changed_field() {
        let m = PruneMarker::new(
            chrono::Utc::now(),
            Policy::default().keep_last(3),
            vec![IdRange::new(id(1), id(4)).unwrap()],
            "ab".repeat(32),
            None,
        );
        assert_eq!(m.count, 4);
        let text = m.encode();
        assert_eq!(PruneMarker::decode(&text, "t").unwrap(), m);
        let tampered = text.replace("\"count\":4", "\"count\":5");
        assert_ne!(tampered, text);
        assert_eq!(
            PruneMarker::decode(&tampered, "t").unwrap_err().kind(),
            crate::ErrorKind::Corrupt
        );
        let moved = text.replace("\"last\":4", "\"last\":9");
        assert_eq!(
            PruneMarker::decode(&moved, "t").unwrap_err().kind(),
            crate::ErrorKind::Corrupt
        );
    }

    #[test]
    fn pruned_ranges_merge_and_subtract_from_gaps() {
        let r = |a, b| IdRange::new(id(a), id(b)).unwrap();
        let m1 = PruneMarker::new(
            chrono::Utc::now(),
            Policy::default().before_id(id(9)),
            vec![r(1, 3), r(6, 8)],
            String::new(),
            None,
        );
        let m2 = PruneMarker::new(
            chrono::Utc::now(),
            Policy::default().before_id(id(9)),
            vec![r(4, 4)],
            String::new(),
            None,
        );
        let p = Pruned::of([&m1, &m2]);
        assert_eq!(p.ranges(), &[r(1, 4), r(6, 8)]);
        assert!(p.contains(id(4)) && !p.contains(id(5)) && p.contains(id(8)));
        assert_eq!(p.subtract(&[r(2, 10)]), vec![r(5, 5), r(9, 10)]);
        assert_eq!(p.subtract(&[r(5, 5)]), vec![r(5, 5)]);
        assert_eq!(p.subtract(&[r(1, 4)]), vec![]);
        assert_eq!(p.last_id(), Some(id(8)));
    }

    #[test]
    fn ranges_break_at_every_absent_id() {
        let ids = [1, 2, 3, 5, 7, 8].map(id);
        assert_eq!(
            ranges_of(ids),
            vec![
                IdRange::new(id(1), id(3)).unwrap(),
                IdRange::single(id(5)),
                IdRange::new(id(7), id(8)).unwrap()
            ]
        );
    }

    #[test]
    fn automatic_retention_runs_at_most_once_per_interval_and_reads_its_parameters() {
        let auto = AutoRetain::from_params(Some("90d"), Some("10"), Some("6h"))
            .unwrap()
            .unwrap();
        assert_eq!(
            auto.policy,
            Policy::default()
                .older_than(Duration::from_secs(90 * 86_400))
                .keep_last(10)
        );
        assert_eq!(auto.every, Duration::from_secs(6 * 3600));
        let now = chrono::Utc::now();
        let marker = |hours_ago| {
            PruneMarker::new(
                now - chrono::Duration::hours(hours_ago),
                auto.policy,
                Vec::new(),
                String::new(),
                None,
            )
        };
        assert!(auto.is_due(&[], now));
        assert!(auto.is_due(&[marker(7)], now));
        assert!(!auto.is_due(&[marker(7), marker(5)], now));
        assert_eq!(AutoRetain::from_params(None, None, None).unwrap(), None);
        assert_eq!(
            AutoRetain::from_params(None, Some("5"), None)
                .unwrap()
                .unwrap()
                .every,
            AutoRetain::DEFAULT_EVERY
        );
        for (r, k, e) in [
            (Some("0d"), None, None),
            (None, Some("0"), None),
            (None, Some("x"), None),
            (None, None, Some("1h")),
            (Some("90d"), None, Some("soon")),
        ] {
            assert_eq!(
                AutoRetain::from_params(r, k, e).unwrap_err().kind(),
                crate::ErrorKind::InvalidInput
            );
        }
    }

    #[test]
    fn durations_parse_and_print_in_their_units() {
        assert_eq!(parse_duration("90d").unwrap(), Duration::from_secs(90 * 86_400));
        assert_eq!(format_duration(Duration::from_secs(90 * 86_400)), "90d");
        assert_eq!(format_duration(Duration::from_secs(14 * 86_400)), "2w");
        assert_eq!(format_duration(Duration::from_secs(36 * 3600)), "36h");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        for bad in ["", "d", "5y", "-3d", "1.5h", "99999999999w"] {
            assert_eq!(
                parse_duration(bad).unwrap_err().kind(),
                crate::ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }
}
