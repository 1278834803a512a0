//! Which campaigns are running, and on which devices: an index so that
//! listing running campaigns, and routing an uplink to its campaigns, cost
//! nothing for campaigns that are over. Keys: `c/{campaign}` and
//! `d/{device}/{campaign}`.
//!
//! The index may only over-approximate: entries are written before a run
//! starts and removed after it ends, and readers check the run itself, so
//! a crash in between leaves an entry a reader skips (and drops), never a
//! running campaign that cannot be found.

use super::{Store, StoreError};

const RUNNING: &str = "running-campaigns";

impl Store {
    /// Index a campaign about to run, with its devices.
    pub fn index_running(&self, campaign_id: &str, devices: impl IntoIterator<Item = String>) -> Result<(), StoreError> {
        let tree = self.db.open_tree(RUNNING)?;
        let mut batch = sled::Batch::default();
        batch.insert(format!("c/{campaign_id}").as_bytes(), &[]);
        for device in devices {
            batch.insert(format!("d/{device}/{campaign_id}").as_bytes(), &[]);
        }
        tree.apply_batch(batch)?;
        Ok(())
    }

    /// Drop a campaign that is over, with its devices, from the index.
    pub fn unindex_running(&self, campaign_id: &str, devices: impl IntoIterator<Item = String>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.remove(format!("c/{campaign_id}").as_bytes());
        for device in devices {
            batch.remove(format!("d/{device}/{campaign_id}").as_bytes());
        }
        self.db.open_tree(RUNNING)?.apply_batch(batch)?;
        Ok(())
    }

    /// Campaigns indexed as running.
    pub fn running_campaigns(&self) -> Result<Vec<String>, StoreError> {
        self.ids_under("c/")
    }

    /// Campaigns indexed as running on `device`.
    pub fn running_campaigns_of(&self, device: &str) -> Result<Vec<String>, StoreError> {
        self.ids_under(&format!("d/{device}/"))
    }

    fn ids_under(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for key in self.db.open_tree(RUNNING)?.scan_prefix(prefix).keys() {
            ids.push(String::from_utf8_lossy(&key?[prefix.len()..]).into_owned());
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn campaigns_are_found_by_device_until_unindexed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.index_running("7", ["a".to_string(), "b".to_string()]).unwrap();
        store.index_running("8", ["b".to_string()]).unwrap();
        assert_eq!(store.running_campaigns().unwrap(), ["7", "8"]);
        assert_eq!(store.running_campaigns_of("b").unwrap(), ["7", "8"]);
        store.unindex_running("7", ["a".to_string(), "b".to_string()]).unwrap();
        assert_eq!(store.running_campaigns().unwrap(), ["8"]);
        assert!(store.running_campaigns_of("a").unwrap().is_empty());
        assert_eq!(store.running_campaigns_of("b").unwrap(), ["8"]);
    }
}
