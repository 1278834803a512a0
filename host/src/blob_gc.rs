//! Orphan blobs, collected when a host starts (before it serves, so no
//! upload is under way): content no record refers to any more, such as a
//! file whose upload was refused after it streamed to disk, or a payload
//! built for a campaign start that failed.

use crate::engine::CampaignRun;
use crate::model::{PluginRecord, StoredFile};
use crate::store::{Store, StoreError};
use std::collections::HashSet;

/// Every blob a record refers to: files, plugin versions (campaigns pin
/// them by hash), and the payloads and libraries of campaign runs.
fn referenced(store: &Store) -> Result<HashSet<String>, StoreError> {
    let mut keep: HashSet<String> = store.list::<StoredFile>(true)?.into_iter().map(|f| f.id).collect();
    for plugin in store.list::<PluginRecord>(true)? {
        keep.insert(plugin.wasm_sha256);
        keep.extend(plugin.versions.into_iter().map(|v| v.sha256));
    }
    for run in store.list::<CampaignRun>(true)? {
        keep.insert(run.library_sha256);
        keep.extend(run.payload_sha256);
    }
    Ok(keep)
}

/// Remove the blobs no record refers to; how many went.
pub fn collect(store: &Store) -> Result<usize, StoreError> {
    let keep = referenced(store)?;
    let mut removed = 0;
    for hash in store.blobs().list()?.into_iter().filter(|h| !keep.contains(h)) {
        match store.blobs().remove(&hash) {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(blob = %hash, error = %e, "orphan blob not removed"),
        }
    }
    if removed > 0 {
        tracing::info!(removed, "orphan blobs removed");
    }
    Ok(removed)
}
