//! Which campaigns are running, and on which devices: an index so that
//! listing running campaigns, and routing an uplink to its campaigns, cost
//! nothing for campaigns that are over. Keys: `c/{campaign}`, and
//! `d/{device}` holding its running campaigns' ids, so an uplink's route is
//! one point read.
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
        for device in devices {
            tree.update_and_fetch(format!("d/{device}"), |old| Some(with(old, campaign_id)))?;
        }
        tree.insert(format!("c/{campaign_id}"), &[])?;
        Ok(())
    }

    /// Drop a campaign that is over, with its devices, from the index.
    pub fn unindex_running(&self, campaign_id: &str, devices: impl IntoIterator<Item = String>) -> Result<(), StoreError> {
        let tree = self.db.open_tree(RUNNING)?;
        tree.remove(format!("c/{campaign_id}"))?;
        for device in devices {
            tree.update_and_fetch(format!("d/{device}"), |old| without(old, campaign_id))?;
        }
        Ok(())
    }

    /// Campaigns indexed as running.
    pub fn running_campaigns(&self) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for key in self.db.open_tree(RUNNING)?.scan_prefix("c/").keys() {
            ids.push(String::from_utf8_lossy(&key?[2..]).into_owned());
        }
        Ok(ids)
    }

    /// Campaigns indexed as running on `device`: one read, whatever else
    /// runs (an uplink's route).
    pub fn running_campaigns_of(&self, device: &str) -> Result<Vec<String>, StoreError> {
        let value = self.db.open_tree(RUNNING)?.get(format!("d/{device}"))?;
        Ok(ids(value.as_deref()).map(str::to_string).collect())
    }
}

/// A device's value: the ids of its running campaigns, comma-separated.
fn ids(value: Option<&[u8]>) -> impl Iterator<Item = &str> {
    value.and_then(|v| std::str::from_utf8(v).ok()).unwrap_or("").split(',').filter(|id| !id.is_empty())
}

fn with(old: Option<&[u8]>, id: &str) -> Vec<u8> {
    let mut all: Vec<&str> = ids(old).filter(|i| *i != id).collect();
    all.push(id);
    all.join(",").into_bytes()
}

fn without(old: Option<&[u8]>, id: &str) -> Option<Vec<u8>> {
    let rest: Vec<&str> = ids(old).filter(|i| *i != id).collect();
    (!rest.is_empty()).then(|| rest.join(",").into_bytes())
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
