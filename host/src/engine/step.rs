//! The stage machine: from the stored state of a run, do what is due and
//! say when to look again. A step decides its network calls (downlinks
//! into an outbox, a group to create, a gateway session to start or
//! poll), writes and flushes the new state, and only then asks the
//! network, without the campaign's lock: a crash at any point re-sends at
//! most one step's downlinks and never reuses an FCnt.

use super::fcnt_ledger::FCNT_BLOCK;
use super::{context, run, status_report};
use super::run::{CampaignRun, DeviceRun, NetworkTrouble, RunStatus, Stage, StageMode};
use super::{Engine, EngineError, Network, NetworkError, OffloadJob, OffloadPayload, OffloadState, OffloadStatus};
use crate::clock::unix_ms_to_gps_seconds;
use crate::model::{CampaignStatus, CampaignType, Device, Eui, MulticastGroup, SessionClass};
use crate::plugin::device_library as lib;
use crate::store::Batch;

/// Longest wait between two retries of one device.
const MAX_BACKOFF_MS: u64 = 30 * 60_000;
/// DataFragments requested from the library per call.
const FRAGMENT_BATCH: u32 = 16;
/// Closed-loop rounds of extra fragments before giving up on the rest.
pub(super) const MAX_EXTRA_ROUNDS: u32 = 12;
/// Margin before the multicast session starts, after its setup stage.
/// Covers device clock error and the last answer's way back.
const SESSION_SETUP_MARGIN_S: u64 = 60;
/// Wait before asking an unavailable network again, doubled after each
/// failure in a row up to the maximum.
const NETWORK_RETRY_MS: u64 = 30_000;
const MAX_NETWORK_RETRY_MS: u64 = 10 * 60_000;
/// Class B beacon period, seconds.
pub(super) const BEACON_PERIOD_S: u64 = 128;
/// What a gateway running a session itself gets for its own unicast setup
/// of the devices before it broadcasts (seed 000's example schedule).
pub(super) const GATEWAY_SETUP_S: u32 = 300;
/// How often a session a gateway runs is polled.
const OFFLOAD_POLL_MS: u64 = 10_000;

/// Count one more failure in a row of the network (shown in progress with
/// since when it lasts); when to ask it again.
fn wait_for_network(run: &mut CampaignRun, now: u64, error: &str) -> u64 {
    let since_ms = run.network_trouble.as_ref().map_or(now, |t| t.since_ms);
    run.network_trouble = Some(NetworkTrouble { error: error.to_string(), since_ms });
    run.network_failures += 1;
    now + NETWORK_RETRY_MS.saturating_mul(1 << (run.network_failures - 1).min(10)).min(MAX_NETWORK_RETRY_MS)
}

/// A downlink a step decided on, sent once the step's state is on disk.
enum Outgoing {
    Unicast { dev_eui: Eui, fport: u8, payload: Vec<u8> },
    /// `fragment`: the DataFragment number it carries, if it is one.
    Multicast { fcnt: u32, fport: u8, payload: Vec<u8>, fragment: Option<u32> },
}

/// What a step asks of the network once its decisions are on disk and
/// the campaign's lock is released.
enum NetworkCall {
    /// Provision the multicast group on the campaign's backend instance.
    CreateGroup { devices: Vec<Eui>, next_fcnt: u32 },
    /// `guarded`: the run as decided, when its multicast frame counters
    /// are published before use ([`super::fcnt_ledger`]).
    Send { outbox: Vec<Outgoing>, guarded: Option<Box<CampaignRun>> },
    OffloadStart(OffloadJob),
    OffloadPoll(String),
}

/// What the network answered a [`NetworkCall`].
enum NetworkAnswer {
    GroupCreated(Result<(), NetworkError>),
    Sent(Unsent),
    Offload(Result<OffloadReply, NetworkError>),
}

enum OffloadReply {
    Started(String),
    Status(OffloadStatus),
}

/// Where a step leaves a campaign.
enum Next {
    /// Step again at this time; None: the campaign is over.
    At(Option<u64>),
    /// The run has just closed; its network side follows, unlocked.
    Closed(CampaignRun),
    /// The run ended (a stop) while the network was being asked, and what
    /// the network did meanwhile must be undone, unlocked.
    Undo(Undo),
}

/// What a network did for a run that ended in the meantime.
enum Undo {
    /// A gateway took a session the stop could not cancel yet.
    CancelOffload { backend: String, handle: String },
    /// A multicast group was made after the stop ended the session.
    EndSession { backend: String, group: MulticastGroup },
}

/// The outcome of a step's locked first part.
enum Decided {
    Done(Next),
    /// Ask the network, then record its answer. `wake`: when to step
    /// again if the answer changes nothing.
    Ask { backend: String, group: MulticastGroup, call: NetworkCall, now: u64, wake: Option<u64> },
}

/// What an unavailable network kept a step from sending.
#[derive(Default)]
struct Unsent {
    error: Option<String>,
    /// Nothing will get through until the operator acts (credentials,
    /// certificate, endpoint): the campaign cannot go on.
    fatal: Option<String>,
    /// Devices the network refused outright (unknown to it, say), with why.
    refused: Vec<(Eui, String)>,
    /// The network refused a multicast frame (its group may be gone).
    group_refused: bool,
    /// The highest multicast frame counter the network says it used.
    network_fcnt: Option<u32>,
    /// A frame counter reservation published for this step's frames.
    fcnt_reserved: Option<u32>,
    unicasts: Vec<Eui>,
    first_fragment: Option<u32>,
    fragments: u32,
    status_request: bool,
}

/// The device holds the file and reports the firmware the campaign
/// installs: whatever happens to the campaign, it is done.
pub(super) fn runs_new_image(run: &CampaignRun, d: &DeviceRun) -> bool {
    d.holds_file && run.target_firmware.is_some_and(|t| d.firmware_version == Some(t))
}

/// Why a device is refused a delta.
pub(super) fn wrong_base(running: u32, base: u32) -> String {
    format!("runs firmware {running:#010x}; the delta is for base {base:#010x}")
}

/// Device memory key prefix of an answer kept for a later stage; its value
/// is empty for ok, else why the device rejected the request.
const EARLY_ANSWER_PREFIX: &str = "airlift.early-answer.";

/// A device enters `stage`: an answer it gave early counts now.
fn take_early_answer(dev: &mut DeviceRun, stage: &Stage) {
    let key = format!("{EARLY_ANSWER_PREFIX}{}", stage.name);
    let Some(at) = dev.memory.iter().position(|(k, _)| *k == key) else { return };
    let (_, rejected) = dev.memory.remove(at);
    dev.answered = true;
    if !rejected.is_empty() && stage.required {
        dev.failed = Some(format!("{}: {rejected}", stage.name));
    }
}

/// Record a device's answer to a stage.
pub(super) fn record_answer(run: &CampaignRun, dev: &mut DeviceRun, answer: lib::StageAnswer) {
    let (mut received, mut missing, mut claims_file) = (None, None, false);
    for fact in &answer.facts {
        match fact {
            lib::Fact::MissingFragments(n) => missing = Some(*n),
            lib::Fact::ReceivedFragments(n) => received = Some(*n),
            lib::Fact::HoldsFile => claims_file = true,
            lib::Fact::FirmwareVersion(v) => {
                dev.firmware_version = Some(*v);
                // Before any fragment, a version other than the delta's base
                // means the device could never apply it.
                let before_fragments = run.stages.iter().position(|s| s.mode == StageMode::Fragments).is_some_and(|f| dev.stage < f);
                if let Some(base) = run.base_firmware.filter(|b| before_fragments && b != v && dev.active()) {
                    let stage = run.stages.get(dev.stage).map_or("", |s| s.name.as_str());
                    dev.failed = Some(format!("{stage}: {}", wrong_base(*v, base)));
                }
            }
            _ => {}
        }
    }
    match (received, missing) {
        (Some(r), Some(m)) => status_report::read(run, dev, r, m, claims_file),
        // A device's own word that it rebuilt the block (FragDataBlockReceivedReq,
        // an image status), not a count.
        _ => {
            if claims_file {
                dev.holds_file = true;
            }
            if let Some(m) = missing {
                dev.missing_fragments = Some(m);
            }
        }
    }
    // Answers to the stage the device is in count; late ones only add
    // facts; early ones (a device that speaks as soon as it can, before
    // the campaign got there) wait for the device to reach their stage.
    let Some(stage) = run.stages.get(dev.stage) else { return };
    let ahead = stage.name != answer.stage && dev.active();
    if let Some(later) = run.stages[dev.stage + 1..].iter().find(|s| s.name == answer.stage).filter(|_| ahead) {
        let verdict = match answer.status {
            lib::AnswerStatus::Ok => String::new(),
            // A device that refuses a required stage ahead is out now.
            lib::AnswerStatus::Rejected(why) if later.required => {
                dev.failed = Some(format!("{}: {why}", later.name));
                return;
            }
            lib::AnswerStatus::Rejected(why) => why,
        };
        let key = format!("{EARLY_ANSWER_PREFIX}{}", answer.stage);
        dev.memory.retain(|(k, _)| *k != key);
        dev.memory.push((key, verdict));
        return;
    }
    if stage.name != answer.stage || dev.answered || !dev.active() {
        return;
    }
    dev.answered = true;
    if let lib::AnswerStatus::Rejected(why) = answer.status {
        if stage.required {
            dev.failed = Some(format!("{}: {why}", stage.name));
        }
    }
}

impl Unsent {
    fn hold(&mut self, out: Outgoing) {
        match out {
            Outgoing::Unicast { dev_eui, .. } => self.unicasts.push(dev_eui),
            Outgoing::Multicast { fragment: Some(n), .. } => {
                self.first_fragment = Some(self.first_fragment.map_or(n, |f| f.min(n)));
                self.fragments += 1;
            }
            Outgoing::Multicast { fragment: None, .. } => self.status_request = true,
        }
    }
}

/// Fragments a session sends up front: M, plus the fixed redundancy if
/// one is set, within the 14-bit fragment numbers of TS004.
pub(super) fn fixed_fragment_count(nb_frag: u32, fixed_redundancy_pct: Option<u32>) -> Result<u32, EngineError> {
    let extra = fixed_redundancy_pct.map_or(0, |pct| (nb_frag as u64 * pct as u64).div_ceil(100));
    let total = nb_frag as u64 + extra;
    if total > lorawan_fuota::fec::MAX_FRAGMENT_NUMBER as u64 {
        return Err(EngineError::Invalid(format!(
            "{} % redundancy on {nb_frag} fragments makes {total}; TS004 numbers at most {} fragments",
            fixed_redundancy_pct.unwrap_or(0),
            lorawan_fuota::fec::MAX_FRAGMENT_NUMBER
        )));
    }
    Ok(total as u32)
}

/// How many fragments' worth of evidence the fleet's loss counts for in a
/// device's estimate (the device's own reports weigh in beside it).
const PRIOR_FRAGMENTS: f64 = 20.0;

/// The loss over every device that reported counts, `sent` fragments each.
fn fleet_loss(devices: &[DeviceRun], sent: f64) -> f64 {
    let heard: Vec<f64> = devices.iter().filter(|d| d.active() && d.answered).filter_map(|d| d.received_fragments).map(f64::from).collect();
    if heard.is_empty() {
        return 0.0;
    }
    (1.0 - heard.iter().sum::<f64>() / (heard.len() as f64 * sent)).clamp(0.0, 0.9)
}

/// The unit of a multicast session's timeout (TS005): class C lasts 2^t
/// seconds, class B 2^t beacon periods.
fn session_timeout_unit_s(class: SessionClass) -> u64 {
    if class == SessionClass::B {
        BEACON_PERIOD_S
    } else {
        1
    }
}

/// Whether the devices' multicast session, started at `start_gps`, has ended.
pub(super) fn session_over(start_gps: u64, timeout: u8, class: SessionClass, now: u64) -> bool {
    start_gps > 0 && unix_ms_to_gps_seconds(now) >= start_gps + session_timeout_unit_s(class) * (1u64 << timeout.min(15))
}

/// The stage whose requests tell devices when the multicast session
/// starts, found by the plan's modes, never by a stage's name: the last
/// unicast stage before the session is waited for or fragments go out, or
/// in a plan that only sets sessions up, its last unicast stage.
pub(super) fn session_setup_stage(stages: &[Stage]) -> Option<usize> {
    let session = stages.iter().position(|s| matches!(s.mode, StageMode::WaitSessionStart | StageMode::Fragments)).unwrap_or(stages.len());
    stages[..session].iter().rposition(|s| s.mode == StageMode::Unicast)
}

/// Requests answered per request sent in a unicast stage that just ended,
/// folded into the rate seen so far. Too few requests say nothing.
fn observed_answer_rate(seen: Option<f64>, devices: &[DeviceRun]) -> Option<f64> {
    // Devices that left the campaign in earlier stages keep their counts.
    let stage = devices.iter().map(|d| d.stage).max().unwrap_or(0);
    let in_stage = || devices.iter().filter(|d| d.stage == stage);
    let sent: u32 = in_stage().map(|d| d.attempts).sum();
    let answered = in_stage().filter(|d| d.answered && d.attempts > 0).count() as f64;
    if sent < 20 {
        return seen;
    }
    let rate = answered / sent as f64;
    Some(seen.map_or(rate, |old| (old + rate) / 2.0))
}

/// How long a device may take to answer a unicast stage's request: the
/// plan's timeout, after the wait for its next uplink (class A devices
/// hear a request only then).
fn answer_timeout_s(stage: &Stage, device: &DeviceRun) -> u32 {
    stage.answer_timeout_s.saturating_add(device.uplink_period_s)
}

/// From the start of the session's setup stage to the session: every
/// request of the retry limit with its backoff (`timeout_s` the slowest
/// device's answer timeout), and a margin.
pub(super) fn setup_window_s(timeout_s: u32, retry_limit: u32) -> u64 {
    let window_ms: u64 = (1..=retry_limit + 1).map(|a| backoff_ms(timeout_s, a)).sum();
    window_ms / 1000 + SESSION_SETUP_MARGIN_S
}

/// Wait after request number `attempt` before the next: doubling from the
/// answer timeout up to 8 timeouts, so a lossy link's many retries still
/// fit the campaign, and never above the maximum.
pub(super) fn backoff_ms(timeout_s: u32, attempt: u32) -> u64 {
    (timeout_s as u64 * 1000).saturating_mul(1 << attempt.saturating_sub(1).min(3)).min(MAX_BACKOFF_MS)
}

impl<N: Network> Engine<N> {
    /// Do what is due for one campaign. Returns when to call again (ms),
    /// or None when the campaign is over.
    ///
    /// Three parts: under the campaign's lock, decide and store; without
    /// it, ask the network; under the lock again, record what it answered.
    /// A slow or hanging network so never keeps uplinks or a stop waiting.
    pub async fn step(&self, run_id: &str) -> Result<Option<u64>, EngineError> {
        let started = std::time::Instant::now();
        let stepped = self.step_timed(run_id).await;
        metrics::histogram!("airlift_engine_step_seconds").record(started.elapsed().as_secs_f64());
        stepped
    }

    #[tracing::instrument(level = "debug", skip(self), fields(campaign = %run_id))]
    async fn step_timed(&self, run_id: &str) -> Result<Option<u64>, EngineError> {
        let decided = {
            let _held = self.lock(run_id).await;
            self.decide(run_id).await?
        };
        let next = match decided {
            Decided::Done(next) => next,
            Decided::Ask { backend, group, call, now, wake } => {
                let answer = self.ask(&backend, &group, call).await;
                let _held = self.lock(run_id).await;
                self.take_answer(run_id, &backend, &group, now, wake, answer).await?
            }
        };
        match next {
            Next::At(at) => Ok(at),
            Next::Closed(run) => {
                self.after_close(&run).await;
                Ok(None)
            }
            Next::Undo(Undo::CancelOffload { backend, handle }) => {
                if let Err(e) = self.network.offload_cancel(&backend, &handle).await {
                    tracing::warn!(run = %run_id, error = %e, "the gateway's session, started as the campaign stopped, could not be cancelled");
                }
                Ok(None)
            }
            Next::Undo(Undo::EndSession { backend, group }) => {
                self.network.end_session(&backend, &group).await;
                Ok(None)
            }
        }
    }

    /// The locked first part of a step: what is due, stored and flushed.
    async fn decide(&self, run_id: &str) -> Result<Decided, EngineError> {
        let Some(mut run) = self.store.get::<CampaignRun>(run_id)? else { return Err(EngineError::NotFound(run_id.into())) };
        if run.status != RunStatus::Running {
            return Ok(Decided::Done(Next::At(None)));
        }
        let now = self.now();
        let mut tx = Batch::default();
        if now >= run.deadline_ms {
            return self.close(run, Some("maximum duration reached; devices back to class A".into()), tx).map(Decided::Done);
        }
        if now < run.next_action_ms {
            return Ok(Decided::Done(Next::At(Some(run.next_action_ms))));
        }
        let Some(stage) = run.current().cloned() else {
            return self.close(run, None, tx).map(Decided::Done);
        };
        let (backend, group) = self.network_of(&run)?;
        if run.group_backend.as_deref() != Some(backend.as_str()) {
            let devices: Vec<Eui> = self.members(&run, &tx)?.iter().map(|d| d.dev_eui).collect();
            let call = NetworkCall::CreateGroup { devices, next_fcnt: run.next_fcnt };
            return Ok(Decided::Ask { backend, group, call, now, wake: Some(now) });
        }
        if stage.mode == StageMode::Offloaded {
            let call = match run.offload_handle.clone() {
                None => NetworkCall::OffloadStart(self.offload_job(&run, &group, now)?),
                Some(handle) => NetworkCall::OffloadPoll(handle),
            };
            return Ok(Decided::Ask { backend, group, call, now, wake: None });
        }
        let mut outbox = Vec::new();
        let wake = match stage.mode {
            StageMode::Unicast | StageMode::DeviceInitiated => self.unicast_stage(&mut run, &group, now, &mut outbox, &mut tx).await?,
            StageMode::WaitSessionStart => {
                let start_ms = crate::clock::gps_seconds_to_unix_ms(run.session_start_gps);
                if now >= start_ms {
                    self.advance(&mut run, now, false, &mut tx)?;
                    Some(now)
                } else {
                    Some(start_ms)
                }
            }
            StageMode::Fragments => self.fragment_stage(&mut run, &backend, &group, now, &mut outbox, &mut tx).await?,
            StageMode::Multicast => self.status_stage(&mut run, &group, now, &mut outbox, &mut tx).await?,
            StageMode::Offloaded => return Err(EngineError::Invalid("an offloaded stage is run by the network".into())),
        };
        let guarded = (self.fcnt_ledger.get().is_some() || run.fcnt_reserved > 0).then(|| Box::new(run.clone()));
        let next = self.settle(run, wake, tx)?;
        Ok(match next {
            Next::At(wake) if !outbox.is_empty() => Decided::Ask { backend, group, call: NetworkCall::Send { outbox, guarded }, now, wake },
            next => Decided::Done(next),
        })
    }

    /// Store a run a stage moved on, with the step's other writes in one
    /// transaction; one a stage failed (too few devices left, a network
    /// that cannot work) is closed properly.
    fn settle(&self, mut run: CampaignRun, wake: Option<u64>, mut tx: Batch) -> Result<Next, EngineError> {
        if run.status == RunStatus::Failed {
            let error = run.error.take();
            run.status = RunStatus::Running;
            return self.close(run, error, tx);
        }
        tx.put(&run);
        self.store.commit(tx)?;
        self.store.flush()?;
        Ok(Next::At(wake.map(|w| w.min(run.deadline_ms))))
    }

    /// The unlocked middle of a step.
    async fn ask(&self, backend: &str, group: &MulticastGroup, call: NetworkCall) -> NetworkAnswer {
        match call {
            NetworkCall::CreateGroup { devices, next_fcnt } => NetworkAnswer::GroupCreated(self.network.create_group(backend, group, &devices, next_fcnt).await),
            NetworkCall::Send { outbox, guarded } => NetworkAnswer::Sent(self.send(backend, group, outbox, guarded.as_deref()).await),
            NetworkCall::OffloadStart(job) => NetworkAnswer::Offload(self.network.offload_start(backend, job).await.map(OffloadReply::Started)),
            NetworkCall::OffloadPoll(handle) => NetworkAnswer::Offload(self.network.offload_poll(backend, &handle).await.map(OffloadReply::Status)),
        }
    }

    /// The locked last part of a step: what the network answered, recorded
    /// in the run as it is now (a stop may have come meanwhile).
    async fn take_answer(&self, run_id: &str, backend: &str, group: &MulticastGroup, now: u64, wake: Option<u64>, answer: NetworkAnswer) -> Result<Next, EngineError> {
        let Some(mut run) = self.store.get::<CampaignRun>(run_id)?.filter(|r| r.status == RunStatus::Running) else {
            // Stopped meanwhile: the stop's wind-down could not see what
            // the network has just done.
            return Ok(match answer {
                NetworkAnswer::Offload(Ok(OffloadReply::Started(handle))) => Next::Undo(Undo::CancelOffload { backend: backend.to_string(), handle }),
                NetworkAnswer::GroupCreated(Ok(())) => Next::Undo(Undo::EndSession { backend: backend.to_string(), group: group.clone() }),
                _ => Next::At(None),
            });
        };
        let mut tx = Batch::default();
        match answer {
            NetworkAnswer::GroupCreated(Ok(())) => {
                run.group_backend = Some(backend.to_string());
                self.settle(run, Some(now), tx)
            }
            NetworkAnswer::GroupCreated(Err(NetworkError::Unavailable(e))) => {
                tracing::warn!(campaign = %run.campaign_id, error = %e, "network unavailable; multicast group not created yet");
                let retry_at = wait_for_network(&mut run, now, &e);
                self.settle(run, Some(retry_at), tx)
            }
            NetworkAnswer::GroupCreated(Err(e)) => self.close(run, Some(format!("creating the multicast group: {e}")), tx),
            NetworkAnswer::Sent(unsent) => self.sent(run, now, wake, unsent, tx),
            NetworkAnswer::Offload(reply) => {
                let wake = self.offload_answered(&mut run, now, reply, &mut tx)?;
                self.settle(run, wake, tx)
            }
        }
    }

    /// Record what became of a step's downlinks.
    fn sent(&self, mut run: CampaignRun, now: u64, wake: Option<u64>, unsent: Unsent, mut tx: Batch) -> Result<Next, EngineError> {
        if let Some(reserved) = unsent.fcnt_reserved {
            run.fcnt_reserved = run.fcnt_reserved.max(reserved);
        }
        if let Some(e) = unsent.fatal {
            return self.close(run, Some(e), tx);
        }
        for (eui, why) in &unsent.refused {
            if let Some(mut dev) = self.store.get_in::<DeviceRun>(&tx, &DeviceRun::key(&run.id(), *eui))? {
                dev.failed = Some(format!("the network refused its downlink: {why}"));
                tx.put(&dev);
            }
        }
        // The network's own frame counter wins where it is ahead, so a later
        // switch of network goes on from it; a refused group is made again.
        let fcnt_ahead = unsent.network_fcnt.is_some_and(|f| f >= run.next_fcnt);
        if let Some(f) = unsent.network_fcnt {
            run.next_fcnt = run.next_fcnt.max(f.saturating_add(1));
        }
        if unsent.group_refused {
            run.group_backend = None;
        }
        if unsent.error.is_some() {
            let retry_at = self.network_down(&mut run, now, unsent, &mut tx)?;
            return self.settle(run, Some(retry_at), tx);
        }
        let recovered = run.network_failures > 0 || run.network_trouble.is_some();
        if !(fcnt_ahead || unsent.group_refused || recovered || !unsent.refused.is_empty() || unsent.fcnt_reserved.is_some()) {
            return Ok(Next::At(wake.map(|w| w.min(run.deadline_ms))));
        }
        run.network_failures = 0;
        run.network_trouble = None;
        self.settle(run, wake, tx)
    }

    /// Send a step's downlinks. A frame the network refuses counts as lost
    /// (stages retry, the closed loop makes up for fragments); once the
    /// network is unavailable the rest of the step waits for it. For a
    /// `guarded` run, a multicast frame whose counter is not covered by a
    /// published reservation waits for one, as for the network.
    async fn send(&self, backend: &str, group: &MulticastGroup, outbox: Vec<Outgoing>, guarded: Option<&CampaignRun>) -> Unsent {
        let mut unsent = Unsent::default();
        for out in outbox {
            if unsent.error.is_some() {
                unsent.hold(out);
                continue;
            }
            if let (Outgoing::Multicast { fcnt, .. }, Some(run)) = (&out, guarded) {
                if *fcnt >= unsent.fcnt_reserved.unwrap_or(run.fcnt_reserved) {
                    let until = fcnt.saturating_add(FCNT_BLOCK);
                    let published = match self.fcnt_ledger.get() {
                        Some(ledger) => ledger.reserve(run, until).await,
                        None => Err("no ledger to publish it on yet".into()),
                    };
                    match published {
                        Ok(()) => unsent.fcnt_reserved = Some(until),
                        Err(e) => {
                            unsent.error = Some(format!("publishing the multicast frame counter: {e}"));
                            unsent.hold(out);
                            continue;
                        }
                    }
                }
            }
            let result = match &out {
                Outgoing::Unicast { dev_eui, fport, payload } => self.network.send_unicast(backend, *dev_eui, *fport, payload.clone()).await.map(|()| None),
                Outgoing::Multicast { fcnt, fport, payload, .. } => self.network.send_multicast(backend, group, *fcnt, *fport, payload.clone()).await,
            };
            match result {
                Ok(network_fcnt) => unsent.network_fcnt = unsent.network_fcnt.max(network_fcnt),
                Err(NetworkError::Unavailable(e)) => {
                    unsent.error = Some(e);
                    unsent.hold(out);
                }
                Err(e) if e.needs_operator() => {
                    unsent.fatal = Some(e.to_string());
                    unsent.error = Some(e.to_string());
                }
                Err(e) => match out {
                    // The network will not take this device's downlinks:
                    // that device fails, the campaign goes on.
                    Outgoing::Unicast { dev_eui, .. } => unsent.refused.push((dev_eui, e.to_string())),
                    // The group may be gone on the network: provision it again.
                    Outgoing::Multicast { .. } => {
                        tracing::warn!(error = %e, "multicast downlink refused; counted as lost, the group is provisioned again");
                        unsent.group_refused = true;
                    }
                },
            }
        }
        unsent
    }

    /// The network could not take a step's downlinks: give back what they
    /// cost (device attempts, fragment numbers, the status round) and try
    /// again after a backoff that grows while the network stays down.
    fn network_down(&self, run: &mut CampaignRun, now: u64, unsent: Unsent, tx: &mut Batch) -> Result<u64, EngineError> {
        let retry_at = wait_for_network(run, now, unsent.error.as_deref().unwrap_or(""));
        tracing::warn!(
            campaign = %run.campaign_id,
            error = unsent.error.as_deref().unwrap_or(""),
            failures = run.network_failures,
            retry_in_s = (retry_at - now) / 1000,
            "network unavailable; the step's downlinks wait"
        );
        for eui in unsent.unicasts {
            if let Some(mut dev) = self.store.get_in::<DeviceRun>(tx, &DeviceRun::key(&run.id(), eui))? {
                dev.attempts = dev.attempts.saturating_sub(1);
                dev.next_retry_ms = retry_at;
                tx.put(&dev);
            }
        }
        if let Some(first) = unsent.first_fragment {
            run.next_fragment = run.next_fragment.min(first);
            let coded_kept = first.saturating_sub(1).saturating_sub(run.layout.map_or(0, |l| l.nb_frag));
            run.coded_numbers.truncate(coded_kept as usize);
            run.fragments_sent = run.fragments_sent.saturating_sub(unsent.fragments);
        }
        if unsent.status_request && run.round_sent_ms.is_some() {
            run.round_sent_ms = None;
            run.round = run.round.saturating_sub(1);
        }
        run.next_action_ms = retry_at;
        Ok(retry_at)
    }

    fn library_context(&self, run: &CampaignRun, group: &MulticastGroup, cancelling: bool) -> Result<lib::CampaignContext, EngineError> {
        Ok(context::campaign(run, context::kind(self.campaign_type(run)?), group, cancelling))
    }

    /// Requests to each device that has not answered, with retries and
    /// backoff; the stage ends when every device answered or gave up.
    async fn unicast_stage(&self, run: &mut CampaignRun, group: &MulticastGroup, now: u64, outbox: &mut Vec<Outgoing>, tx: &mut Batch) -> Result<Option<u64>, EngineError> {
        let stage = run.current().cloned().unwrap();
        let devices = self.members(run, tx)?;
        if session_setup_stage(&run.stages) == Some(run.stage) && run.session_start_gps == 0 {
            // The session starts once every device had all its chances to
            // answer, backoff included: the slowest to uplink sets it.
            let slowest = devices.iter().filter(|d| d.active()).map(|d| answer_timeout_s(&stage, d)).max().unwrap_or(stage.answer_timeout_s);
            let window_s = setup_window_s(slowest, run.retry_limit(&stage));
            run.session_start_gps = (unix_ms_to_gps_seconds(now) + window_s).max(run.scheduled_session_gps.unwrap_or(0));
            if group.session_class == SessionClass::B {
                // Class B sessions start on a beacon period (TS005: a
                // multiple of 128 s); the devices are told this time and
                // fragments go out from it.
                run.session_start_gps = run.session_start_gps.div_ceil(BEACON_PERIOD_S) * BEACON_PERIOD_S;
            }
            let starts_in_s = run.session_start_gps - unix_ms_to_gps_seconds(now);
            let left_s = (run.deadline_ms.saturating_sub(now) / 1000).saturating_sub(starts_in_s).max(1);
            // The session ends before the deadline.
            let unit = session_timeout_unit_s(group.session_class);
            run.session_timeout = (63 - (left_s / unit).max(1).leading_zeros()).min(15) as u8;
        }
        let library = self.library(run).await?;
        let ctx = self.library_context(run, group, false)?;
        // The stage's own answers so far tell the loss best (a required
        // stage's: an optional one counts a device that gave up as done).
        let rate = if stage.required { observed_answer_rate(run.answer_rate, &devices) } else { run.answer_rate };
        let retry_limit = run.retry_limit_at(&stage, rate);
        let mut next_wake = u64::MAX;
        let mut pending = 0;
        // The devices to ask now, with their answer timeout: their
        // requests are built in one batch.
        let mut asking = Vec::new();
        let mut contexts = Vec::new();
        for mut dev in devices {
            if !dev.active() || dev.answered {
                continue;
            }
            let timeout_s = answer_timeout_s(&stage, &dev);
            if stage.mode == StageMode::DeviceInitiated && dev.attempts == 0 && now < run.stage_started_ms + timeout_s as u64 * 1000 {
                // Give the device its chance to speak first.
                pending += 1;
                next_wake = next_wake.min(run.stage_started_ms + timeout_s as u64 * 1000);
                continue;
            }
            if now < dev.next_retry_ms {
                pending += 1;
                next_wake = next_wake.min(dev.next_retry_ms);
                continue;
            }
            if dev.attempts > retry_limit {
                if stage.required {
                    dev.failed = Some(format!("{}: no answer after {} requests", stage.name, dev.attempts));
                } else {
                    dev.answered = true;
                }
                tx.put(&dev);
                continue;
            }
            let device = self.store.get::<Device>(&dev.dev_eui.to_string())?.ok_or_else(|| EngineError::Invalid(format!("device {} is gone", dev.dev_eui)))?;
            contexts.push(context::device(&device, &dev));
            asking.push((dev, timeout_s));
        }
        let built = match self.runtime.device_library(&library).build_requests(stage.name.clone(), contexts, ctx).await {
            Ok(built) => built,
            // The whole batch failed: each device as if its call had.
            Err(e) => asking.iter().map(|_| Err(e.clone())).collect(),
        };
        let ports = Self::ports(run);
        for ((mut dev, timeout_s), built) in asking.into_iter().zip(built) {
            dev.attempts += 1;
            let downlinks = match built {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => {
                    dev.failed = Some(format!("{}: request could not be built: {e:?}", stage.name));
                    tx.put(&dev);
                    continue;
                }
                // A plugin failure is retried like a silent device.
                Err(e) => {
                    tracing::warn!(error = %e, "device library failed building a request");
                    vec![]
                }
            };
            dev.next_retry_ms = now + backoff_ms(timeout_s, dev.attempts);
            tx.put(&dev);
            outbox.extend(downlinks.into_iter().map(|d| Outgoing::Unicast { dev_eui: dev.dev_eui, fport: ports.to_air(d.fport), payload: d.payload }));
            pending += 1;
            next_wake = next_wake.min(dev.next_retry_ms);
        }
        if pending == 0 {
            self.advance(run, now, true, tx)?;
            return Ok(Some(now));
        }
        Ok(Some(next_wake))
    }

    /// Paced multicast DataFragments up to the current target.
    async fn fragment_stage(&self, run: &mut CampaignRun, backend: &str, group: &MulticastGroup, now: u64, outbox: &mut Vec<Outgoing>, tx: &mut Batch) -> Result<Option<u64>, EngineError> {
        let layout = run.layout.ok_or_else(|| EngineError::Invalid("no fragmentation layout".into()))?;
        if run.fragments_target == 0 {
            run.fragments_target = fixed_fragment_count(layout.nb_frag, run.fixed_redundancy_pct)?;
        }
        // Past the session's end no device listens: a fragment would reach
        // no one, and a device's counts would stand still as if it were done.
        if run.next_fragment > run.fragments_target || session_over(run.session_start_gps, run.session_timeout, group.session_class, now) {
            self.advance(run, now, false, tx)?;
            return Ok(Some(now));
        }
        let count = FRAGMENT_BATCH.min(run.fragments_target + 1 - run.next_fragment);
        let first = run.next_fragment;
        let library = self.library(run).await?;
        let data = self.store.blobs().read(run.payload_sha256.as_deref().unwrap_or("")).map_err(|e| EngineError::Invalid(format!("payload: {e}")))?;
        let wit_layout = context::layout_to_wit(&layout);
        let fragments = self
            .runtime
            .device_library(&library)
            .fragments(data, wit_layout, first, count)
            .await?
            .map_err(|e| EngineError::Library(format!("{e:?}")))?;
        let pacing = match self.network.pacing(backend).await {
            Ok(p) => p,
            Err(e) if e.needs_operator() => {
                run.status = RunStatus::Failed;
                run.error = Some(e.to_string());
                return Ok(None);
            }
            Err(e) => {
                tracing::warn!(campaign = %run.campaign_id, error = %e, "network unavailable; fragments wait");
                return Ok(Some(wait_for_network(run, now, &e.to_string())));
            }
        };
        run.next_fragment += count;
        let coded = (first..).zip(&fragments).filter(|(position, _)| *position > layout.nb_frag).map(|(_, f)| f.number);
        run.coded_numbers.extend(coded);
        let downlinks: Vec<_> = fragments.into_iter().map(|f| f.downlink).collect();
        run.fragments_sent += downlinks.len() as u32;
        run.next_action_ms = now + downlinks.iter().map(|d| pacing.multicast_interval_for(group, d.payload.len())).sum::<u64>();
        self.queue_multicast(run, downlinks, Some(first), outbox);
        Ok(Some(run.next_action_ms))
    }

    /// FragSessionStatus by multicast: devices that still miss fragments get
    /// more coded ones sized from what they report (closed loop).
    async fn status_stage(&self, run: &mut CampaignRun, group: &MulticastGroup, now: u64, outbox: &mut Vec<Outgoing>, tx: &mut Batch) -> Result<Option<u64>, EngineError> {
        let stage = run.current().cloned().unwrap();
        let devices = self.members(run, tx)?;
        let waiting = |d: &DeviceRun| d.active() && !d.holds_file && !d.answered;
        let Some(sent_ms) = run.round_sent_ms else {
            // A new round: ask everyone still unsure.
            for mut d in devices.into_iter().filter(|d| d.active() && !d.holds_file) {
                d.answered = false;
                tx.put(&d);
            }
            let library = self.library(run).await?;
            let (name, ctx) = (stage.name.clone(), self.library_context(run, group, false)?);
            let downlinks = self
                .runtime
                .device_library(&library)
                .build_request(name, None, ctx)
                .await?
                .map_err(|e| EngineError::Library(format!("{e:?}")))?;
            run.round_sent_ms = Some(now);
            run.round += 1;
            self.queue_multicast(run, downlinks, None, outbox);
            return Ok(Some(now + stage.answer_timeout_s as u64 * 1000));
        };
        let round_over = now >= sent_ms + stage.answer_timeout_s as u64 * 1000;
        if !round_over && devices.iter().any(waiting) {
            return Ok(Some(sent_ms + stage.answer_timeout_s as u64 * 1000));
        }
        // Devices that answered but still miss fragments, and how many more
        // transmissions each needs given the loss it saw.
        let mut extra_needed = 0u32;
        let mut silent = 0;
        let sent = run.fragments_sent.max(1) as f64;
        let fleet_loss = fleet_loss(&devices, sent);
        for d in devices.iter().filter(|d| d.active() && !d.holds_file) {
            if !d.answered {
                silent += 1;
                continue;
            }
            let missing = d.missing_fragments.unwrap_or(1).max(1);
            // A device's own loss, drawn toward the fleet's: a few fragments
            // lost by an unlucky device say little about its link.
            let lost = sent - d.received_fragments.unwrap_or(0) as f64;
            let loss = ((lost + PRIOR_FRAGMENTS * fleet_loss) / (sent + PRIOR_FRAGMENTS)).clamp(0.0, 0.9);
            extra_needed = extra_needed.max((missing as f64 / (1.0 - loss)).ceil() as u32 + 1);
        }
        let closed_loop = run.fixed_redundancy_pct.is_none();
        if extra_needed > 0 && closed_loop && run.extra_rounds < MAX_EXTRA_ROUNDS && !session_over(run.session_start_gps, run.session_timeout, group.session_class, now) {
            run.extra_rounds += 1;
            run.fragments_target += extra_needed;
            run.round_sent_ms = None;
            // The plan was checked at start: a fragment stage comes first.
            run.stage = run.stages.iter().position(|s| s.mode == StageMode::Fragments).ok_or_else(|| EngineError::Invalid("a status stage without a fragment stage".into()))?;
            tracing::info!(campaign = %run.campaign_id, extra = extra_needed, round = run.extra_rounds, "sending more coded fragments");
            return Ok(Some(now));
        }
        if silent > 0 && run.round <= run.retry_limit(&stage) {
            run.round_sent_ms = None;
            return Ok(Some(now));
        }
        // When a later required stage asks each device for its own verdict
        // (TS006 image status), that verdict is the last word: a device the
        // counts could not confirm goes on and answers it.
        let verified_later = run.stages[run.stage + 1..].iter().any(|s| s.required && s.mode == StageMode::Unicast);
        if verified_later {
            self.advance(run, now, true, tx)?;
            return Ok(Some(now));
        }
        for mut d in devices.into_iter().filter(|d| d.active() && !d.holds_file) {
            d.failed = Some(match d.missing_fragments {
                Some(m) if d.answered => format!("{}: still missing {m} fragments", stage.name),
                _ => format!("{}: no answer after {} rounds", stage.name, run.round),
            });
            tx.put(&d);
        }
        self.advance(run, now, true, tx)?;
        Ok(Some(now))
    }

    /// The whole session, for a network that runs it itself.
    fn offload_job(&self, run: &CampaignRun, group: &MulticastGroup, now: u64) -> Result<OffloadJob, EngineError> {
        let data = self.store.blobs().read(run.payload_sha256.as_deref().unwrap_or("")).map_err(|e| EngineError::Invalid(format!("payload: {e}")))?;
        let message = self.campaign(&run.campaign_id)?.message;
        // The network takes the job up now, sets the devices up for its
        // setup time, and broadcasts at the campaign's own session start
        // (or right after setup).
        let earliest_ms = now + GATEWAY_SETUP_S as u64 * 1000;
        Ok(OffloadJob {
            name: format!("airlift-{}", run.id()),
            devices: self.members(run, &Batch::default())?.iter().filter(|d| d.active()).map(|d| d.dev_eui).collect(),
            group: group.clone(),
            data,
            scheduled_unix_ms: now,
            setup_seconds: GATEWAY_SETUP_S,
            start_unix_ms: run.scheduled_session_gps.map_or(earliest_ms, |gps| crate::clock::gps_seconds_to_unix_ms(gps).max(earliest_ms)),
            payload: match message {
                Some(m) => OffloadPayload::Message { fport: m.message_port, timeout_minutes: m.multicast_session_timeout as u32 },
                None => OffloadPayload::File { descriptor: run.layout.map_or(0, |l| l.descriptor), session_timeout_exponent: run.session_timeout },
            },
        })
    }

    /// A session the network runs itself, once started or polled: record
    /// its handle, or each device's progress and result.
    fn offload_answered(&self, run: &mut CampaignRun, now: u64, reply: Result<OffloadReply, NetworkError>, tx: &mut Batch) -> Result<Option<u64>, EngineError> {
        let stage = run.current().cloned().ok_or_else(|| EngineError::Invalid("no offloaded stage".into()))?;
        let status = match reply {
            Ok(OffloadReply::Started(handle)) => {
                tracing::info!(campaign = %run.campaign_id, %handle, "the gateway runs the session");
                run.offload_handle = Some(handle);
                None
            }
            Ok(OffloadReply::Status(status)) => Some(status),
            Err(NetworkError::Unavailable(e)) => {
                tracing::warn!(campaign = %run.campaign_id, error = %e, "gateway unavailable");
                return Ok(Some(wait_for_network(run, now, &e)));
            }
            Err(e) => {
                run.status = RunStatus::Failed;
                run.error = Some(format!("{}: {e}", stage.name));
                return Ok(None);
            }
        };
        run.network_failures = 0;
        run.network_trouble = None;
        let Some(status) = status else { return Ok(Some(now + OFFLOAD_POLL_MS)) };
        let mut devices = self.members(run, tx)?;
        for o in &status.devices {
            let Some(d) = devices.iter_mut().find(|d| d.dev_eui == o.dev_eui && d.active()) else { continue };
            d.offload_percent = Some(o.percent);
            match o.state {
                OffloadState::Succeeded => (d.holds_file, d.answered) = (true, true),
                OffloadState::Failed => d.failed = Some(format!("{}: {}", stage.name, o.error.as_deref().unwrap_or("failed"))),
                OffloadState::Pending | OffloadState::Running => {}
            }
            tx.put(&*d);
        }
        if !status.finished {
            return Ok(Some(now + OFFLOAD_POLL_MS));
        }
        // Devices the gateway did not report done, when it says it is.
        for d in devices.iter_mut().filter(|d| d.active() && !d.holds_file) {
            d.failed = Some(format!("{}: not completed by the gateway", stage.name));
            tx.put(&*d);
        }
        self.advance(run, now, true, tx)?;
        Ok(Some(now))
    }

    /// Multicast downlinks with the next frame counters. The counters move
    /// with the step's state, so no FCnt is ever used twice.
    /// `first_fragment`: the DataFragment number of the first downlink, when
    /// they are consecutive fragments.
    fn queue_multicast(&self, run: &mut CampaignRun, downlinks: Vec<lib::Downlink>, first_fragment: Option<u32>, outbox: &mut Vec<Outgoing>) {
        let ports = Self::ports(run);
        for (i, d) in downlinks.into_iter().enumerate() {
            let fragment = first_fragment.map(|f| f + i as u32);
            outbox.push(Outgoing::Multicast { fcnt: run.next_fcnt, fport: ports.to_air(d.fport), payload: d.payload, fragment });
            run.next_fcnt += 1;
        }
    }

    /// Whether the campaign can still meet its success threshold, with
    /// `active` devices of this run still in. Thresholds are over all the
    /// campaign's devices: a group that lost many goes on while the others
    /// make up for it, and a group with none left ends.
    fn threshold_reachable(&self, run: &CampaignRun, active: usize, tx: &Batch) -> Result<bool, EngineError> {
        if run.parts <= 1 {
            return Ok(active * 100 >= run.success_threshold as usize * run.device_count);
        }
        if active == 0 {
            return Ok(false);
        }
        let others = self.parts_in(&run.campaign_id, tx)?.into_iter().filter(|p| p.run.part != run.part);
        let in_campaign = active + others.flat_map(|p| p.devices).filter(|d| d.active()).count();
        Ok(in_campaign * 100 >= run.success_threshold as usize * run.campaign_devices())
    }

    /// Move to the next stage if enough devices are still in.
    fn advance(&self, run: &mut CampaignRun, now: u64, check_threshold: bool, tx: &mut Batch) -> Result<(), EngineError> {
        let devices = self.members(run, tx)?;
        let active = devices.iter().filter(|d| d.active()).count();
        if check_threshold && !self.threshold_reachable(run, active, tx)? {
            let name = run.current().map(|s| s.name.clone()).unwrap_or_default();
            run.status = RunStatus::Failed;
            run.error = Some(format!("success threshold not met at {name}: {active} of {} devices", run.device_count));
            return Ok(());
        }
        if run.current().is_some_and(|s| s.mode == StageMode::Unicast && s.required) {
            run.answer_rate = observed_answer_rate(run.answer_rate, &devices);
        }
        run.stage += 1;
        run.stage_started_ms = now;
        run.round = 0;
        run.round_sent_ms = None;
        for mut d in devices.into_iter().filter(|d| d.active()) {
            d.stage = run.stage;
            d.answered = false;
            d.attempts = 0;
            d.next_retry_ms = 0;
            if let Some(stage) = run.stages.get(run.stage) {
                take_early_answer(&mut d, stage);
            }
            tx.put(&d);
        }
        Ok(())
    }

    /// Close the run: decide success per device and for the campaign, and
    /// store it. The network side comes after, without the lock
    /// ([`Self::after_close`]).
    fn close(&self, mut run: CampaignRun, error: Option<String>, mut tx: Batch) -> Result<Next, EngineError> {
        let kind = self.campaign_type(&run)?;
        let mut succeeded = 0;
        for mut d in self.members(&run, &tx)? {
            // A device that got the file (and, for an update, reports the
            // new firmware) succeeded even when the campaign as a whole
            // did not; a setup only counts when every stage ran.
            d.succeeded = d.active()
                && match kind {
                    CampaignType::MulticastSetup => error.is_none(),
                    CampaignType::BinaryTransfer | CampaignType::Message => d.holds_file,
                    CampaignType::FirmwareUpdate => match run.target_firmware {
                        Some(_) => runs_new_image(&run, &d),
                        // Without a version to check, only a campaign that ran through.
                        None => error.is_none() && d.holds_file,
                    },
                };
            if !d.succeeded && d.failed.is_none() {
                d.failed = Some(match (&error, kind, d.firmware_version) {
                    (Some(e), _, _) => e.clone(),
                    (None, CampaignType::FirmwareUpdate, Some(v)) if d.holds_file => format!("reports firmware {v:#x}, expected {:#x}", run.target_firmware.unwrap_or(0)),
                    _ => "did not receive the file".into(),
                });
            }
            succeeded += d.succeeded as usize;
            if let Some(version) = d.firmware_version {
                self.record_firmware(&run.campaign_id, d.dev_eui, version, &mut tx)?;
            }
            tx.put(&d);
        }
        let met = succeeded * 100 >= run.success_threshold as usize * run.device_count;
        run.status = if error.is_none() && met && run.status == RunStatus::Running { RunStatus::Succeeded } else { RunStatus::Failed };
        if run.error.is_none() {
            run.error = error.or_else(|| (!met).then(|| format!("{succeeded} of {} devices succeeded", run.device_count)));
        }
        run.finished_ms = Some(self.now());
        tx.put(&run);
        self.close_campaign_when_done(&run.campaign_id, &mut tx)?;
        self.store.commit(tx)?;
        // Unindexed once the outcome is on disk: the index may only
        // over-approximate.
        self.unindex(&run)?;
        tracing::info!(campaign = %run.campaign_id, part = run.part, status = ?run.status, succeeded, "campaign run finished");
        self.store.flush()?;
        Ok(Next::Closed(run))
    }

    /// Once its last run is over, the campaign's status: over all its
    /// devices. Runs closing at once may both get here; they write the
    /// same outcome.
    fn close_campaign_when_done(&self, campaign_id: &str, tx: &mut Batch) -> Result<(), EngineError> {
        let parts = self.parts_in(campaign_id, tx)?;
        let runs: Vec<&CampaignRun> = parts.iter().map(|p| &p.run).collect();
        let succeeded = parts.iter().flat_map(|p| &p.devices).filter(|d| d.succeeded).count();
        let status = match run::overall_status(&runs, succeeded) {
            RunStatus::Running | RunStatus::Stopping => return Ok(()),
            RunStatus::Stopped => CampaignStatus::Stopped,
            RunStatus::Succeeded => CampaignStatus::Succeeded,
            RunStatus::Failed => CampaignStatus::Failed,
        };
        self.set_campaign_status(campaign_id, status, tx)?;
        tracing::info!(campaign = %campaign_id, status = ?status, succeeded, groups = runs.len(), "campaign finished");
        Ok(())
    }

    /// The inventory follows what a device last reported running, so the
    /// next campaign (a delta from the new version, say) starts from it.
    fn record_firmware(&self, campaign_id: &str, dev_eui: Eui, version: u32, tx: &mut Batch) -> Result<(), EngineError> {
        let Some(mut device) = self.store.get_in::<Device>(tx, &dev_eui.to_string())? else { return Ok(()) };
        let stored = device.firmware.as_deref().and_then(|f| crate::model::parse_firmware_version("firmware", f).ok());
        if stored != Some(version) {
            device.firmware = Some(crate::model::firmware_version_text(version));
            device.firmware_changed = chrono::DateTime::from_timestamp_millis(self.now() as i64);
            device.firmware_changed_by = Some(campaign_id.to_string());
            tx.put(&device);
        }
        Ok(())
    }

    /// A closed run's network side, without the lock: the multicast
    /// session ends, and a failed run's devices drop what they were set up
    /// for. Best effort: the run's outcome is already on disk.
    async fn after_close(&self, run: &CampaignRun) {
        let result = async {
            self.end_session(run).await?;
            if run.status == RunStatus::Failed {
                self.tear_down(run).await?;
            }
            Ok::<_, EngineError>(())
        };
        if let Err(e) = result.await {
            tracing::warn!(campaign = %run.campaign_id, error = %e, "winding the finished campaign down failed");
        }
    }
}
