//! Multicast frame counters made known before frames use them.
//!
//! In the distributed mode another agent may have to take a campaign over
//! from one that died, and must never send a frame counter the dead one
//! used. So a host that runs under a ledger publishes a counter ("frames
//! below this may be used") before it sends any frame at or above the one
//! it published last, in blocks so that a publication is rare. The
//! successor starts at the last counter published. A host without a
//! ledger (the embedded default) publishes nothing: its own store is the
//! only record of the counter.

use super::run::CampaignRun;
use futures_util::future::BoxFuture;

/// How many frame counters one publication covers.
pub const FCNT_BLOCK: u32 = 256;

/// Where reservations are published (an agent: its progress topic).
pub trait FcntLedger: Send + Sync {
    /// Make `until` durable where a successor reads it: `run`'s group may
    /// then use every counter below it. Returns once it is (an error: not
    /// published, nothing may be sent at or above the last one).
    fn reserve<'a>(&'a self, run: &'a CampaignRun, until: u32) -> BoxFuture<'a, Result<(), String>>;
}
