//! Bad input: one case per validation rule. Each gets a typed error naming the field,
//! writes nothing of its batch, and leaves the store usable.

use chrono::Duration;
use serde_json::{json, Value};
use synclog_core::validate::{
    max_timestamp, MAX_ATTRS_BYTES, MAX_ATTRS_DEPTH, MAX_BATCH, MAX_COUNTER, MAX_JOB_BYTES, MAX_MESSAGE_BYTES,
};
use synclog_core::LogStoreExt;
use synclog_core::{Error, NewLog, Status};

use super::{everything, sample, Ctx};

/// Commits `[good, bad]` and checks: `InvalidInput` naming `field`, nothing written, usable after.
async fn rejects(ctx: Ctx, bad: NewLog, field: &str) {
    rejects_batch(ctx, vec![sample("good", 1), bad], field).await
}

async fn rejects_batch(ctx: Ctx, batch: Vec<NewLog>, field: &str) {
    let (at, store) = ctx.fresh().await;
    let kept = ctx.commit(&*store, vec![sample("before", 0)]).await;
    let err = store.commit(batch, ctx.durability()).await.unwrap_err();
    match &err {
        Error::InvalidInput { field: f, .. } => assert_eq!(*f, field, "{err}"),
        other => panic!("expected InvalidInput for {field}, got {other:?}"),
    }
    assert_eq!(
        everything(&*store).await,
        kept,
        "nothing of the bad batch was written"
    );
    let after = ctx.commit(&*store, vec![sample("after", 2)]).await;
    assert_eq!(
        after[0].id.get(),
        kept[0].id.get() + 1,
        "the store is usable and no id was spent"
    );
    ctx.done(at, store).await;
}

fn base() -> NewLog {
    NewLog::new("job", Status::Succeeded)
}

/// An empty job is rejected.
pub async fn empty_job_is_rejected(ctx: Ctx) {
    rejects(
        ctx,
        NewLog {
            job: String::new(),
            ..base()
        },
        "job",
    )
    .await
}

/// A job longer than `MAX_JOB_BYTES` is rejected.
pub async fn overlong_job_is_rejected(ctx: Ctx) {
    rejects(
        ctx,
        NewLog {
            job: "j".repeat(MAX_JOB_BYTES + 1),
            ..base()
        },
        "job",
    )
    .await
}

/// A NUL byte in the job is rejected.
pub async fn nul_in_job_is_rejected(ctx: Ctx) {
    rejects(
        ctx,
        NewLog {
            job: "a\0b".into(),
            ..base()
        },
        "job",
    )
    .await
}

/// A control character in the job is rejected.
pub async fn control_character_in_job_is_rejected(ctx: Ctx) {
    rejects(
        ctx,
        NewLog {
            job: "a\tb".into(),
            ..base()
        },
        "job",
    )
    .await
}

/// A message longer than `MAX_MESSAGE_BYTES` is rejected.
pub async fn overlong_message_is_rejected(ctx: Ctx) {
    rejects(ctx, base().message("m".repeat(MAX_MESSAGE_BYTES + 1)), "message").await
}

/// A NUL byte in the message is rejected.
pub async fn nul_in_message_is_rejected(ctx: Ctx) {
    rejects(ctx, base().message("x\0y"), "message").await
}

/// Attributes that are not a JSON object are rejected.
pub async fn non_object_attrs_are_rejected(ctx: Ctx) {
    rejects(
        ctx,
        NewLog {
            attrs: json!(["not", "an", "object"]),
            ..base()
        },
        "attrs",
    )
    .await
}

/// Attributes nested deeper than `MAX_ATTRS_DEPTH` are rejected.
pub async fn too_deep_attrs_are_rejected(ctx: Ctx) {
    let mut v = json!(0);
    for _ in 0..=MAX_ATTRS_DEPTH {
        v = json!({ "k": v });
    }
    rejects(ctx, NewLog { attrs: v, ..base() }, "attrs").await
}

/// Attributes larger than `MAX_ATTRS_BYTES` are rejected.
pub async fn too_large_attrs_are_rejected(ctx: Ctx) {
    let attrs: Value = json!({ "blob": "x".repeat(MAX_ATTRS_BYTES) });
    rejects(ctx, NewLog { attrs, ..base() }, "attrs").await
}

/// A counter above `i64::MAX` is rejected.
pub async fn counter_above_i64_max_is_rejected(ctx: Ctx) {
    rejects(ctx, base().counts(0, MAX_COUNTER + 1, 0), "items_written").await
}

/// `finished_at` before `started_at` is rejected.
pub async fn finished_before_started_is_rejected(ctx: Ctx) {
    let log = base();
    let finished = log.started_at - Duration::minutes(5);
    rejects(ctx, log.finished(finished), "finished_at").await
}

/// A timestamp after year 9999 is rejected.
pub async fn timestamp_out_of_range_is_rejected(ctx: Ctx) {
    rejects(
        ctx,
        base().started(max_timestamp() + Duration::days(1)),
        "started_at",
    )
    .await
}

/// A batch of more than `MAX_BATCH` logs is rejected whole.
pub async fn oversized_batch_is_rejected(ctx: Ctx) {
    rejects_batch(ctx, vec![base(); MAX_BATCH + 1], "batch").await
}
