//! Writes that commit together: one engine step's device records, run
//! record and campaign status go into a [`Batch`] and reach the store in
//! one sled transaction, so a crash leaves the step whole or not at all.
//! Reads through the batch see its own writes first.

use super::{decode, encode, Store, StoreError};
use crate::model::Object;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::collections::BTreeMap;

/// Pending writes, by object kind and id.
#[derive(Default)]
pub struct Batch {
    writes: BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>,
}

impl Batch {
    /// Insert or replace when the batch commits.
    pub fn put<T: Object>(&mut self, obj: &T) {
        self.writes.entry(T::KIND).or_default().insert(obj.id(), encode(obj));
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    fn pending<T: Object>(&self) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.writes.get(T::KIND)
    }
}

/// Set to n, the process aborts halfway through writing the n-th batch of
/// more than one write, before it commits: the crash tests' way to kill a
/// server between the writes of one step.
pub const ABORT_IN_BATCH_ENV: &str = "AIRLIFT_TEST_ABORT_IN_BATCH";

/// After how many writes of this batch to abort, if at all.
fn abort_point(writes: usize) -> Option<usize> {
    static NTH: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    static SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let nth = (*NTH.get_or_init(|| std::env::var(ABORT_IN_BATCH_ENV).ok().and_then(|v| v.parse().ok())))?;
    if writes < 2 {
        return None;
    }
    (SEEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == nth).then_some(writes / 2)
}

impl Store {
    /// An object as the batch will leave it.
    pub fn get_in<T: Object>(&self, batch: &Batch, id: &str) -> Result<Option<T>, StoreError> {
        match batch.pending::<T>().and_then(|p| p.get(id)) {
            Some(bytes) => decode(id, bytes).map(Some),
            None => self.get(id),
        }
    }

    /// Objects whose id starts with `prefix`, in id order, as the batch
    /// will leave them.
    pub fn list_prefix_in<T: Object>(&self, batch: &Batch, prefix: &str) -> Result<Vec<T>, StoreError> {
        let Some(pending) = batch.pending::<T>() else { return self.list_prefix(prefix) };
        let mut merged: BTreeMap<String, T> = BTreeMap::new();
        for entry in self.tree::<T>()?.scan_prefix(prefix) {
            let (k, v) = entry?;
            let id = String::from_utf8_lossy(&k).into_owned();
            let obj = decode(&id, &v)?;
            merged.insert(id, obj);
        }
        for (id, bytes) in pending.range(prefix.to_string()..).take_while(|(id, _)| id.starts_with(prefix)) {
            merged.insert(id.clone(), decode(id, bytes)?);
        }
        Ok(merged.into_values().collect())
    }

    /// Write the whole batch atomically (not yet flushed).
    pub fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let kinds: Vec<&'static str> = batch.writes.keys().copied().collect();
        let trees = kinds.iter().map(|k| self.db.open_tree(k)).collect::<Result<Vec<_>, _>>()?;
        let abort_after = abort_point(batch.writes.values().map(BTreeMap::len).sum());
        trees
            .as_slice()
            .transaction(|txs| {
                let mut written = 0;
                for (tx, kind) in txs.iter().zip(&kinds) {
                    for (id, bytes) in &batch.writes[kind] {
                        if abort_after == Some(written) {
                            std::process::abort();
                        }
                        tx.insert(id.as_bytes(), bytes.as_slice())?;
                        written += 1;
                    }
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::Db(e),
                TransactionError::Abort(()) => unreachable!("the transaction never aborts itself"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Note {
        id: String,
        text: String,
        archived: bool,
    }
    crate::model::fleet_object!(Note, "test-notes", |s| s.id.clone());

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Count {
        id: String,
        n: u32,
        archived: bool,
    }
    crate::model::fleet_object!(Count, "test-counts", |s| s.id.clone(), compact = true);

    fn note(id: &str, text: &str) -> Note {
        Note { id: id.into(), text: text.into(), archived: false }
    }

    #[test]
    fn a_batch_reads_its_own_writes_and_commits_across_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put(&note("r/1", "old")).unwrap();
        store.put(&note("r/3", "kept")).unwrap();
        let mut batch = Batch::default();
        batch.put(&note("r/1", "new"));
        batch.put(&note("r/2", "added"));
        batch.put(&note("s/1", "other prefix"));
        batch.put(&Count { id: "run".into(), n: 7, archived: false });
        // Not in the store yet, but visible through the batch.
        assert_eq!(store.get::<Note>("r/1").unwrap(), Some(note("r/1", "old")));
        assert_eq!(store.get_in::<Note>(&batch, "r/1").unwrap(), Some(note("r/1", "new")));
        let texts = |v: Vec<Note>| v.into_iter().map(|n| n.text).collect::<Vec<_>>();
        assert_eq!(texts(store.list_prefix_in(&batch, "r/").unwrap()), ["new", "added", "kept"]);
        store.commit(batch).unwrap();
        assert_eq!(texts(store.list_prefix("r/").unwrap()), ["new", "added", "kept"]);
        assert_eq!(store.get::<Count>("run").unwrap().map(|c| c.n), Some(7));
        assert_eq!(store.get::<Note>("s/1").unwrap(), Some(note("s/1", "other prefix")));
    }
}
