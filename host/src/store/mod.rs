//! The embedded store: one sled tree per object kind, JSON values, plus a
//! content-addressed blob directory for files and plugin components.

mod batch;
mod blobs;
mod running_index;

pub use batch::{Batch, ABORT_IN_BATCH_ENV};
pub use blobs::{BlobWriter, Blobs, TooLarge};

use crate::model::Object;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    #[error("stored {kind} '{id}' is unreadable: {reason}")]
    Corrupt { kind: &'static str, id: String, reason: String },
    #[error("{kind} '{id}' already exists")]
    AlreadyExists { kind: &'static str, id: String },
    #[error("blob storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("the data directory {0} is in use by another process")]
    InUse(PathBuf),
}

/// How long opening waits for a previous owner of the data directory to let
/// go of it.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Wait until sled's lock file (`dir/db/db`) is free. sled's background
/// threads keep the lock for a moment after the last handle is dropped
/// (spacejam/sled#1234), and sled itself fails at once on a held lock.
fn wait_for_lock(db_file: &Path) -> Result<(), StoreError> {
    let Ok(file) = std::fs::File::open(db_file) else { return Ok(()) }; // a new store
    let until = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()), // released when `file` is dropped
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < until => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::InUse(db_file.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
    }
}

/// The tree of the last uplink frame counter per network instance and device.
const FRAME_COUNTERS: &str = "uplink-frame-counters";

/// Handle to the data directory's database and blobs. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    blobs: Blobs,
    dir: PathBuf,
}

impl Store {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        wait_for_lock(&dir.join("db").join("db"))?;
        let db = sled::Config::new().path(dir.join("db")).open()?;
        Ok(Self { db, blobs: Blobs::open(&dir.join("blobs"))?, dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    fn tree<T: Object>(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(T::KIND)?)
    }

    /// A fresh unique id for objects that have no natural key.
    pub fn new_id(&self) -> String {
        // sled ids are monotonic across restarts; +1 so ids start at 1.
        (self.db.generate_id().expect("sled id generation") + 1).to_string()
    }

    pub fn get<T: Object>(&self, id: &str) -> Result<Option<T>, StoreError> {
        match self.tree::<T>()?.get(id)? {
            Some(bytes) => decode::<T>(id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Insert or replace.
    pub fn put<T: Object>(&self, obj: &T) -> Result<(), StoreError> {
        let bytes = encode(obj);
        self.tree::<T>()?.insert(obj.id(), bytes)?;
        Ok(())
    }

    /// Insert only if no object has this id yet.
    pub fn insert_new<T: Object>(&self, obj: &T) -> Result<(), StoreError> {
        let bytes = encode(obj);
        match self.tree::<T>()?.compare_and_swap(obj.id(), None as Option<&[u8]>, Some(bytes))? {
            Ok(()) => Ok(()),
            Err(_) => Err(StoreError::AlreadyExists { kind: T::KIND, id: obj.id() }),
        }
    }

    /// Every object of a kind, archived ones only when asked for.
    pub fn list<T: Object>(&self, include_archived: bool) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for entry in self.tree::<T>()?.iter() {
            let (k, v) = entry?;
            let obj: T = decode(&String::from_utf8_lossy(&k), &v)?;
            if include_archived || !obj.archived() {
                out.push(obj);
            }
        }
        Ok(out)
    }

    /// At most `limit` objects of a kind whose id comes after `after` (in
    /// the store's id order), archived ones only when asked for, and the id
    /// to ask after for the next page when there may be more.
    pub fn list_page<T: Object>(&self, include_archived: bool, after: Option<&str>, limit: usize) -> Result<(Vec<T>, Option<String>), StoreError> {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.as_bytes().to_vec()));
        let mut out = Vec::new();
        for entry in self.tree::<T>()?.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (k, v) = entry?;
            let obj: T = decode(&String::from_utf8_lossy(&k), &v)?;
            if !include_archived && obj.archived() {
                continue;
            }
            if out.len() == limit {
                // Another object follows: the page ends at the last one taken.
                let next = out.last().map(T::id);
                return Ok((out, next));
            }
            out.push(obj);
        }
        Ok((out, None))
    }

    /// Objects whose id starts with `prefix`, in id order.
    pub fn list_prefix<T: Object>(&self, prefix: &str) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for entry in self.tree::<T>()?.scan_prefix(prefix) {
            let (k, v) = entry?;
            out.push(decode(&String::from_utf8_lossy(&k), &v)?);
        }
        Ok(out)
    }

    /// Whether a frame with counter `fcnt` in `scope` (a network instance
    /// and a device) is new: above every counter recorded there. A frame
    /// that is not is a replay.
    pub fn frame_counter_is_new(&self, scope: &str, fcnt: u32) -> Result<bool, StoreError> {
        let last = self.db.open_tree(FRAME_COUNTERS)?.get(scope)?.and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes));
        Ok(last.is_none_or(|last| fcnt > last))
    }

    /// Record that the frame with counter `fcnt` in `scope` was taken.
    /// Written after what the frame changed, so a crash that loses one
    /// loses the other first: the network's retry is then taken again,
    /// never dropped as a replay of a frame that left no trace.
    pub fn record_frame_counter(&self, scope: &str, fcnt: u32) -> Result<(), StoreError> {
        let decode = |v: &[u8]| v.try_into().ok().map(u32::from_be_bytes);
        self.db.open_tree(FRAME_COUNTERS)?.fetch_and_update(scope, |old| match old.and_then(decode) {
            Some(last) if last >= fcnt => old.map(|o| o.to_vec()),
            _ => Some(fcnt.to_be_bytes().to_vec()),
        })?;
        Ok(())
    }

    /// Forget a scope's frame counter, as after the device rejoined and its
    /// counters restarted.
    pub fn forget_frame_counter(&self, scope: &str) -> Result<(), StoreError> {
        self.db.open_tree(FRAME_COUNTERS)?.remove(scope)?;
        Ok(())
    }

    /// Flush to disk; called after writes that must survive a crash.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// [`Self::flush`] without blocking the async runtime's thread.
    /// (sled's own `flush_async` can wait for ever under concurrent
    /// writers: the load benchmark hung after ~1,400 creates from 8
    /// clients. A blocking flush on the blocking pool does not.)
    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    pub async fn flush_async(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush()).await.map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        Ok(())
    }
}

/// The first byte of a compact record (JSON never starts with it).
const COMPACT_TAG: u8 = 0;

/// An object as stored: JSON, or for a [`Object::COMPACT`] kind a tag and
/// postcard's binary form (a fraction of the bytes and of the time to read).
fn encode<T: Object>(obj: &T) -> Vec<u8> {
    if T::COMPACT {
        postcard::to_extend(obj, vec![COMPACT_TAG]).expect("objects serialize")
    } else {
        serde_json::to_vec(obj).expect("objects serialize")
    }
}

/// A stored object, compact or JSON (a compact kind's records written as
/// JSON before still read).
fn decode<T: Object>(id: &str, bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { kind: T::KIND, id: id.into(), reason };
    if let Some((&COMPACT_TAG, compact)) = bytes.split_first() {
        return postcard::from_bytes(compact).map_err(|e| corrupt(e.to_string()));
    }
    serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Tally {
        id: String,
        count: u32,
        note: Option<String>,
        archived: bool,
    }
    crate::model::fleet_object!(Tally, "test-tallies", |s| s.id.clone(), compact = true);

    #[test]
    fn a_compact_kind_is_stored_small_and_its_json_records_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tally = Tally { id: "a".into(), count: 70_000, note: Some("seen".into()), archived: false };
        store.put(&tally).unwrap();
        let raw = store.tree::<Tally>().unwrap().get("a").unwrap().unwrap();
        let json = serde_json::to_vec(&tally).unwrap();
        assert_eq!(raw[0], COMPACT_TAG);
        assert!(raw.len() * 3 < json.len(), "{} bytes compact, {} as JSON", raw.len(), json.len());
        assert_eq!(store.get::<Tally>("a").unwrap(), Some(tally.clone()));
        // One written as JSON (before the kind was compact) reads as it was.
        let old = Tally { id: "b".into(), count: 1, note: None, archived: false };
        store.tree::<Tally>().unwrap().insert("b", serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(store.list::<Tally>(false).unwrap(), vec![tally, old]);
        // Bytes that are neither are refused by type, not by a panic.
        store.tree::<Tally>().unwrap().insert("c", vec![COMPACT_TAG, 0xff]).unwrap();
        assert!(matches!(store.get::<Tally>("c"), Err(StoreError::Corrupt { kind: "test-tallies", .. })));
    }

    #[test]
    fn opening_waits_for_the_previous_owner_and_names_a_directory_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        // A second owner is refused by type, with the directory named.
        match Store::open(dir.path()) {
            Err(StoreError::InUse(path)) => assert!(path.starts_with(dir.path())),
            other => panic!("expected InUse, got {:?}", other.map(|_| ())),
        }
        // One that comes while the first is letting go gets the store.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(first);
        });
        let second = Store::open(dir.path());
        releaser.join().unwrap();
        assert!(second.is_ok(), "{:?}", second.err());
    }

    #[test]
    fn a_frame_counter_must_rise_and_restarts_when_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.frame_counter_is_new("i/d", 5).unwrap());
        store.record_frame_counter("i/d", 5).unwrap();
        assert!(!store.frame_counter_is_new("i/d", 5).unwrap(), "the same counter again is a replay");
        assert!(!store.frame_counter_is_new("i/d", 3).unwrap(), "an older counter is a replay");
        assert!(store.frame_counter_is_new("other/d", 3).unwrap(), "scopes are apart");
        store.record_frame_counter("i/d", 4).unwrap();
        assert!(store.frame_counter_is_new("i/d", 6).unwrap(), "recording an older counter does not lower it");
        assert!(!store.frame_counter_is_new("i/d", 5).unwrap());
        store.forget_frame_counter("i/d").unwrap();
        assert!(store.frame_counter_is_new("i/d", 0).unwrap(), "after a rejoin the counters restart");
    }
}
