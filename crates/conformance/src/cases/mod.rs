//! The cases, one file per area. Each case is a plain async function taking a [`Ctx`];
//! its first doc line says the behaviour it proves. [`all`] lists them with what they need.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use synclog_core::LogStoreExt;

use synclog_core::{Capabilities, Durability, LogId, LogRecord, LogStore, NewLog, Scan, Status};

use crate::harness::{Harness, Location};

pub mod bad_input;
pub mod commit;
pub mod concurrency;
pub mod crash;
pub mod durability;
pub mod model;
pub mod object_safety;
pub mod power;
pub mod query;
pub mod read;
pub mod repair;
pub mod restore;
pub mod retention;
pub mod runs;
pub mod verify;

/// What a case needs beyond the basic contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A child process can open the same storage, and data survives it being killed.
    CrossProcess,
    /// The `corrupt_record` fault hook.
    CorruptHook,
    /// The `remove_record` fault hook.
    RemoveHook,
    /// The `destroy` fault hook.
    DestroyHook,
    /// [`LogStore::checkpoint`].
    Checkpoint,
    /// [`LogStoreExt::repair`] (`Capabilities::repair`).
    Repair,
    /// [`LogStore::apply_prune`] (`Capabilities::prune`).
    Prune,
    /// Another process can write while this one has the store open
    /// (`Capabilities::multi_process`, and a harness that can open from another process).
    SharedProcesses,
    /// A power cut can be simulated: the harness makes locations in a given directory
    /// ([`Harness::create_in`]), a child process can open them, the engine offers
    /// `PowerLoss`, and this machine has FUSE (see [`crate::powercut::available`]).
    PowerCut,
}

/// The context a case runs in: the harness, and what the engine said it supports.
#[derive(Clone)]
pub struct Ctx {
    /// The engine's harness.
    pub harness: Arc<dyn Harness>,
    /// The engine's capabilities, read from a probe store.
    pub caps: Capabilities,
    /// The harness makes locations in a given directory ([`Harness::create_in`]).
    pub files: bool,
}

impl Ctx {
    /// A fresh location and a store opened on it.
    pub async fn fresh(&self) -> (Location, Arc<dyn LogStore>) {
        let at = self.harness.create().await.expect("harness.create");
        let store = self.harness.open(&at).await.expect("harness.open");
        (at, store)
    }

    /// Reopens `at` (the previous handle must be closed).
    pub async fn reopen(&self, at: &Location) -> Arc<dyn LogStore> {
        self.harness.open(at).await.expect("harness.open (reopen)")
    }

    /// The strongest durability the engine offers: what the cases commit at.
    pub fn durability(&self) -> Durability {
        self.caps.strongest_durability()
    }

    /// Commits `logs` at [`Ctx::durability`], expecting success.
    pub async fn commit(&self, store: &dyn LogStore, logs: Vec<NewLog>) -> Vec<LogRecord> {
        store.commit(logs, self.durability()).await.expect("commit")
    }

    /// Releases `at` after the case.
    pub async fn done(&self, at: Location, store: Arc<dyn LogStore>) {
        store.close().await.expect("close");
        drop(store);
        self.harness.cleanup(&at).await.expect("harness.cleanup");
    }
}

/// A realistic log: job `job`, counters from `n`, a message and attributes.
pub fn sample(job: &str, n: u64) -> NewLog {
    let status = Status::ALL[(n % 5) as usize];
    NewLog::new(job, status)
        .counts(n * 3, n * 2, n % 3)
        .message(format!("run {n} of {job}: ünïcode ok"))
        .attr("n", n)
        .attr("tags", serde_json::json!(["a", {"z": 1, "b": [true, null]}]))
}

/// Every record of `store` in id order.
pub async fn everything(store: &dyn LogStore) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let mut scan = Scan::all(500);
    loop {
        let page = store.scan(&scan).await.expect("scan");
        let Some(last) = page.last() else { break };
        assert_pages_advance(scan.after, last.id, false);
        scan.after = Some(last.id);
        out.extend(page);
    }
    out
}

/// Fails unless a page read after (or, `descending`, before) `bound` ended past it: an
/// engine whose bound is inclusive would page forever.
pub fn assert_pages_advance(bound: Option<LogId>, last: LogId, descending: bool) {
    if let Some(bound) = bound {
        let advanced = if descending { last < bound } else { last > bound };
        assert!(
            advanced,
            "paging did not advance: the page {} {bound} ended at {last} (the bounds of a scan are exclusive)",
            if descending { "before" } else { "after" }
        );
    }
}

type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One case of the suite.
pub struct Case {
    /// Its area (the file it is in).
    pub area: &'static str,
    /// Its name (the function).
    pub name: &'static str,
    /// What it needs.
    pub needs: &'static [Need],
    /// Runs it.
    pub run: fn(Ctx) -> CaseFuture,
}

macro_rules! cases {
    ($( $area:ident :: $name:ident $([$($need:ident),*])? ),* $(,)?) => {
        /// Every case of the suite, in order.
        pub fn all() -> Vec<Case> {
            vec![$(Case {
                area: stringify!($area),
                name: stringify!($name),
                needs: &[$($(Need::$need),*)?],
                run: |ctx| Box::pin($area::$name(ctx)),
            }),*]
        }
    };
}

cases! {
    commit::returns_records_in_batch_order_with_increasing_ids,
    commit::records_carry_intact_checksums_and_recorded_at,
    commit::empty_batch_writes_nothing,
    commit::ids_exceed_every_earlier_id,
    commit::commit_after_close_is_closed,
    read::get_of_an_absent_id_is_none,
    read::scan_pages_through_everything_once,
    read::scan_filters_by_job_and_status,
    read::scan_honours_bounds_and_descending_order,
    read::scan_limit_zero_means_default_and_too_large_is_rejected,
    durability::records_survive_a_reopen,
    durability::ids_continue_after_a_reopen,
    durability::every_supported_level_commits_and_others_are_refused,
    durability::sync_hook_succeeds_at_supported_levels,
    durability::checkpoint_is_reported_or_refused_as_unsupported,
    durability::idle_passive_checkpoint_is_not_busy [Checkpoint],
    verify::clean_store_verifies_clean,
    verify::corrupted_record_is_found_by_id [CorruptHook],
    verify::missing_record_is_found [RemoveHook],
    verify::destroyed_storage_reopens_empty_and_clean [DestroyHook],
    restore::import_keeps_ids_and_checksums,
    restore::importing_twice_changes_nothing,
    restore::conflict_is_reported_and_the_stored_record_kept,
    restore::import_into_an_empty_store_verifies_clean,
    restore::appends_after_import_get_larger_ids,
    restore::import_refuses_a_corrupt_record_and_writes_nothing,
    restore::import_refuses_attributes_that_are_not_json_and_writes_nothing,
    repair::repair_replaces_a_damaged_record [Repair, CorruptHook],
    repair::repair_never_replaces_an_intact_record [Repair],
    repair::repair_refuses_a_damaged_offer_and_writes_nothing [Repair],
    bad_input::empty_job_is_rejected,
    bad_input::overlong_job_is_rejected,
    bad_input::nul_in_job_is_rejected,
    bad_input::control_character_in_job_is_rejected,
    bad_input::overlong_message_is_rejected,
    bad_input::nul_in_message_is_rejected,
    bad_input::non_object_attrs_are_rejected,
    bad_input::too_deep_attrs_are_rejected,
    bad_input::too_large_attrs_are_rejected,
    bad_input::counter_above_i64_max_is_rejected,
    bad_input::finished_before_started_is_rejected,
    bad_input::timestamp_out_of_range_is_rejected,
    bad_input::oversized_batch_is_rejected,
    concurrency::concurrent_appenders_lose_and_duplicate_nothing,
    runs::a_run_is_started_progressed_and_finished,
    runs::a_record_after_the_terminal_one_is_refused_and_writes_nothing,
    runs::a_finish_retried_the_same_way_is_a_repeat,
    runs::run_rules_refuse_bad_timelines_naming_the_field,
    runs::a_batch_holds_a_whole_timeline_and_refuses_what_follows_its_end,
    runs::runs_scan_pages_and_filters,
    runs::stale_runs_are_unfinished_runs_started_before_the_cutoff,
    runs::an_idempotency_key_seen_again_returns_the_first_record,
    runs::an_idempotency_key_with_other_content_is_a_conflict,
    runs::many_keys_at_once_answer_as_each_key_alone,
    runs::keys_and_runs_survive_a_reopen,
    runs::imported_records_count_for_keys_and_runs,
    runs::concurrent_appends_of_one_key_store_it_once,
    runs::a_conflicting_import_leaves_no_key_and_no_run,
    object_safety::shared_dyn_store_works_across_tasks,
    query::scans_answer_every_filter_like_the_model,
    query::counts_and_summaries_answer_every_filter_like_the_model,
    query::a_summary_sums_a_runs_counters_once_from_its_terminal_record,
    query::runs_answer_every_filter_like_the_model,
    query::bad_filters_are_refused_naming_the_field,
    query::a_follower_delivers_every_matching_record_once_in_order,
    query::a_follower_that_fell_behind_its_feed_reads_the_store_and_misses_nothing,
    query::a_follower_resumes_from_its_position_after_a_reopen,
    query::a_follower_hands_out_records_imported_above_its_position,
    query::a_follower_refuses_a_bad_filter,
    query::a_follower_sees_records_another_process_commits [SharedProcesses],
    retention::a_prune_by_id_removes_exactly_the_selected_records [Prune],
    retention::each_jobs_newest_record_and_unfinished_runs_are_kept [Prune],
    retention::a_finished_run_goes_whole_or_not_at_all [Prune],
    retention::policy_conditions_combine [Prune],
    retention::a_dry_run_reports_the_plan_and_changes_nothing [Prune],
    retention::nothing_to_prune_and_bad_policies_change_nothing [Prune],
    retention::verify_reports_pruned_ids_as_pruned_and_losses_as_missing [Prune, RemoveHook],
    retention::a_pruned_record_is_never_imported_again [Prune],
    retention::ids_are_never_reused_after_a_prune [Prune],
    retention::markers_survive_a_reopen_and_a_damaged_one_is_refused [Prune],
    retention::the_archive_holds_exactly_what_went [Prune],
    retention::an_archive_that_disagrees_stops_the_prune [Prune],
    retention::an_archive_that_fails_or_reads_back_damaged_stops_the_prune [Prune],
    model::random_operations_match_a_btreemap_model,
    crash::acknowledged_appends_survive_sigkill [CrossProcess],
    crash::what_sync_covered_survives_sigkill [CrossProcess],
    crash::idempotent_appends_retried_after_sigkill_are_stored_once [CrossProcess],
    crash::a_kill_during_the_first_create_leaves_a_store_that_opens [CrossProcess],
    power::what_power_loss_acknowledged_survives_a_power_cut [PowerCut],
    retention::a_prune_killed_at_any_moment_leaves_every_record_present_or_marked [CrossProcess, Prune],
}
