//! The cross-engine restore check: records exported from any engine import into any other
//! and verify clean there.

use std::sync::Arc;

use synclog_core::{Durability, LogStore, LogStoreExt, VerifyOptions};

use crate::cases::{everything, sample};

/// For every ordered pair of distinct stores in `stores` (each freshly created and empty):
/// fills the source, copies it into the target, and checks the target holds identical
/// records and verifies clean. Stores are filled with disjoint id ranges by appending.
pub async fn check_cross_restore(stores: &[Arc<dyn LogStore>]) {
    for (i, source) in stores.iter().enumerate() {
        let level = strongest(&**source);
        let logs = (0..25)
            .map(|n| sample(&format!("from-{}", source.capabilities().engine), n))
            .collect();
        source.commit(logs, level).await.expect("fill source");
        let exported = everything(&**source).await;
        for (j, target) in stores.iter().enumerate() {
            if i == j {
                continue;
            }
            let report = source
                .copy_to(&**target, 10, strongest(&**target))
                .await
                .unwrap_or_else(|e| panic!("{} -> {}: {e}", source.describe(), target.describe()));
            assert!(report.conflicts.is_empty(), "{report:?}");
            let verified = target.verify(VerifyOptions::default()).await.expect("verify");
            assert!(
                verified.corrupt.is_empty(),
                "{} -> {}: {verified:?}",
                source.describe(),
                target.describe()
            );
            for rec in &exported {
                assert_eq!(target.get(rec.id).await.expect("get").as_ref(), Some(rec));
            }
        }
    }
}

fn strongest(store: &dyn LogStore) -> Durability {
    store.capabilities().strongest_durability()
}
