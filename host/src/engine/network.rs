//! What the engine needs from a network: provision a multicast group, send
//! unicast and multicast downlinks, end a multicast session. Backend
//! plugins ([`crate::backend::PluginNetwork`]) and the in-process simulator
//! implement it; uplinks come back through [`super::Engine::on_uplink`].
//!
//! Every call names the campaign's backend instance, read afresh on each
//! step, so switching a campaign to another instance takes effect at once.

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
    /// The network does not accept our credentials: nothing will get
    /// through until the instance is fixed.
    #[error("network refused our credentials: {0}")]
    Unauthorized(String),
    /// The instance is configured so that nothing can get through (a
    /// certificate that does not verify, a name that does not resolve, an
    /// endpoint that does not exist) until the operator fixes it.
    #[error("network cannot be reached as configured: {0}")]
    Misconfigured(String),
}

impl NetworkError {
    /// Nothing will get through until the operator changes something:
    /// retrying only hides the reason.
    pub fn needs_operator(&self) -> bool {
        matches!(self, NetworkError::Unauthorized(_) | NetworkError::Misconfigured(_))
    }
}

/// A whole session for a network that runs it itself (a gateway).
#[derive(Debug, Clone)]
pub struct OffloadJob {
    /// Also the handle the network knows it by.
    pub name: String,
    pub devices: Vec<Eui>,
    pub group: MulticastGroup,
    /// The file, or the message's payload.
    pub data: Vec<u8>,
    /// When the network takes the job up, how long its setup of the
    /// devices gets, and when broadcasting starts (never before both).
    pub scheduled_unix_ms: u64,
    pub setup_seconds: u32,
    pub start_unix_ms: u64,
    pub payload: OffloadPayload,
}

/// What an offloaded session delivers, each kind with its own timeout in
/// its own unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadPayload {
    /// A fragmented file: its descriptor, and the multicast session's
    /// timeout exponent (class C lasts 2^t s).
    File { descriptor: u32, session_timeout_exponent: u8 },
    /// A short multicast message on `fport`, repeated for `timeout_minutes`.
    Message { fport: u8, timeout_minutes: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadState {
    Pending,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
pub struct OffloadDevice {
    pub dev_eui: Eui,
    pub percent: f32,
    pub state: OffloadState,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct OffloadStatus {
    /// The network considers the session over.
    pub finished: bool,
    pub devices: Vec<OffloadDevice>,
}

/// Pacing the network imposes.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub multicast_interval_ms: u64,
    pub unicast_interval_ms: u64,
}

impl Pacing {
    /// Wait after a multicast frame of `app_len` bytes to `group`: the
    /// network's pacing, and never less than the band's duty cycle allows
    /// at the group's frequency and data rate.
    pub fn multicast_interval_for(&self, group: &MulticastGroup, app_len: usize) -> u64 {
        let band = super::context::band(group.ism_band);
        let duty = lorawan_fuota::region::duty_cycle_interval_ms(band, group.data_rate, group.frequency, app_len.min(u16::MAX as usize) as u16).unwrap_or(0);
        self.multicast_interval_ms.max(duty)
    }
}

/// What a network can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub unicast: bool,
    pub multicast_class_b: bool,
    pub multicast_class_c: bool,
}

impl Capabilities {
    pub const ALL: Capabilities = Capabilities { unicast: true, multicast_class_b: true, multicast_class_c: true };
}

pub trait Network: Send + Sync + 'static {
    fn pacing(&self, backend: &str) -> impl Future<Output = Result<Pacing, NetworkError>> + Send;

    /// What the network can send; a campaign that needs more is refused
    /// at start.
    fn capabilities(&self, backend: &str) -> impl Future<Output = Result<Capabilities, NetworkError>> + Send;

    /// Make the group and its members known to the network (idempotent),
    /// its frame counter starting at `next_fcnt`.
    fn create_group(&self, backend: &str, group: &MulticastGroup, devices: &[Eui], next_fcnt: u32) -> impl Future<Output = Result<(), NetworkError>> + Send;

    fn send_unicast(&self, backend: &str, dev_eui: Eui, fport: u8, payload: Vec<u8>) -> impl Future<Output = Result<(), NetworkError>> + Send;

    /// Send one multicast frame; the frame counter the network used, when
    /// it picks its own (ChirpStack).
    fn send_multicast(&self, backend: &str, group: &MulticastGroup, fcnt: u32, fport: u8, payload: Vec<u8>) -> impl Future<Output = Result<Option<u32>, NetworkError>> + Send;

    /// The network runs whole sessions itself (a gateway): a campaign on
    /// it is one offloaded stage.
    fn offloads(&self, backend: &str) -> impl Future<Output = Result<bool, NetworkError>> + Send;

    /// Start a session the network runs; returns its handle.
    fn offload_start(&self, backend: &str, job: OffloadJob) -> impl Future<Output = Result<String, NetworkError>> + Send;

    fn offload_poll(&self, backend: &str, handle: &str) -> impl Future<Output = Result<OffloadStatus, NetworkError>> + Send;

    fn offload_cancel(&self, backend: &str, handle: &str) -> impl Future<Output = Result<(), NetworkError>> + Send;

    /// The multicast session is over (campaign finished or out of time):
    /// devices return to class A and the network may drop the group.
    fn end_session(&self, backend: &str, group: &MulticastGroup) -> impl Future<Output = ()> + Send;
}
