//! What the engine needs from a network: send unicast and multicast
//! downlinks and end a multicast session. Backend plugins (through
//! `plugin::bindings::backend`) and the in-process simulator implement it;
//! uplinks come back through [`super::Engine::on_uplink`].

use crate::model::{Eui, MulticastGroup};
use std::future::Future;

#[derive(Debug, Clone, thiserror::Error)]
pub enum NetworkError {
    /// Worth retrying later (timeout, 5xx…).
    #[error("network unavailable: {0}")]
    Unavailable(String),
    /// Refused; retrying the same request will not help.
    #[error("network refused: {0}")]
    Refused(String),
}

/// Pacing the network imposes.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub multicast_interval_ms: u64,
    pub unicast_interval_ms: u64,
}

pub trait Network: Send + Sync + 'static {
    fn pacing(&self) -> Pacing;

    fn send_unicast(&self, dev_eui: Eui, fport: u8, payload: Vec<u8>) -> impl Future<Output = Result<(), NetworkError>> + Send;

    fn send_multicast(&self, group: &MulticastGroup, fcnt: u32, fport: u8, payload: Vec<u8>) -> impl Future<Output = Result<(), NetworkError>> + Send;

    /// The multicast session is over (campaign finished or out of time):
    /// devices return to class A.
    fn end_session(&self, group: &MulticastGroup) -> impl Future<Output = ()> + Send;
}
