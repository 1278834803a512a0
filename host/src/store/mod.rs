//! The embedded store: one sled tree per object kind, JSON values, plus a
//! content-addressed blob directory for files and plugin components.

mod blobs;

pub use blobs::{BlobWriter, Blobs, TooLarge};

use crate::model::Object;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    #[error("stored {kind} '{id}' is unreadable: {source}")]
    Corrupt { kind: &'static str, id: String, source: serde_json::Error },
    #[error("{kind} '{id}' already exists")]
    AlreadyExists { kind: &'static str, id: String },
    #[error("blob storage: {0}")]
    Io(#[from] std::io::Error),
}

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
        let bytes = serde_json::to_vec(obj).expect("objects serialize");
        self.tree::<T>()?.insert(obj.id(), bytes)?;
        Ok(())
    }

    /// Insert only if no object has this id yet.
    pub fn insert_new<T: Object>(&self, obj: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(obj).expect("objects serialize");
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

    /// Objects whose id starts with `prefix`, in id order.
    pub fn list_prefix<T: Object>(&self, prefix: &str) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for entry in self.tree::<T>()?.scan_prefix(prefix) {
            let (k, v) = entry?;
            out.push(decode(&String::from_utf8_lossy(&k), &v)?);
        }
        Ok(out)
    }

    /// Flush to disk; called after writes that must survive a crash.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// [`Self::flush`] without blocking the async runtime's thread.
    pub async fn flush_async(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

fn decode<T: Object>(id: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { kind: T::KIND, id: id.into(), source })
}
