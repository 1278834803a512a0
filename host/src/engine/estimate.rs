//! How long a campaign will take, before it runs (seed 002's GET/RESP,
//! seed 004's Duration). Each group's run is planned as at start (the
//! device library's stages, the fragment layout at the group's data rate),
//! then each stage is estimated from what the engine will do:
//!
//! - unicast stages: requests to every device, answered after the device's
//!   next uplink; a lost request or answer (each way at the assumed loss)
//!   is asked again with the engine's backoff and retry limit. The stage
//!   lasts until the last device answered or gave up: the expected maximum
//!   over the group's devices, integrated from each device's distribution;
//! - the session starts after the setup stage's whole retry window (the
//!   engine fixes it when that stage starts), on a beacon for class B, and
//!   not before the campaign's own session start;
//! - fragments go out at the network's pacing, never faster than the
//!   band's duty cycle allows for their time on air; fixed redundancy sends
//!   its count, the closed loop sends M and then rounds of extra coded
//!   fragments sized from the worst device's expected losses, each round
//!   followed by a status round.
//!
//! Groups run in parallel: the campaign lasts as long as its slowest group.

use super::run::{CampaignRun, Stage, StageMode};
use super::step::{backoff_ms, fixed_fragment_count, session_setup_stage, setup_window_s, BEACON_PERIOD_S, MAX_EXTRA_ROUNDS};
use super::{Engine, EngineError, Network, Pacing};
use crate::model::{Campaign, Device, MulticastGroup, SessionClass};
use serde::Serialize;
use std::collections::BTreeMap;

/// What the estimate assumes of the links.
#[derive(Debug, Clone, Copy)]
pub struct Assumptions {
    /// Probability that one frame, down or up, is lost.
    pub loss: f64,
}

impl Default for Assumptions {
    fn default() -> Self {
        Self { loss: 0.1 }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageEstimate {
    pub stage_name: String,
    pub seconds: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupEstimate {
    pub mc_group_eui: String,
    pub backend_instance: String,
    pub devices: usize,
    /// DataFragments expected on the air, coded ones included.
    pub fragments: u32,
    /// Wait between two fragments (pacing and duty cycle).
    pub fragment_interval_ms: u64,
    pub stages: Vec<StageEstimate>,
    /// When the multicast session starts, from the run's start.
    pub session_starts_after_s: Option<u64>,
    pub seconds: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DurationEstimate {
    /// The whole campaign: its slowest group.
    pub seconds: u64,
    pub groups: Vec<GroupEstimate>,
}

/// Step lag: a serving host lets answers gather for a moment before it
/// steps (and a simulation looks in every few seconds).
const STEP_LAG_S: f64 = 5.0;

impl<N: Network> Engine<N> {
    /// Estimate a campaign (stored or a draft) without running it: nothing
    /// is written but a message's or update's payload blob.
    pub async fn estimate(&self, campaign: &Campaign, assumptions: Assumptions) -> Result<DurationEstimate, EngineError> {
        let devices = self.campaign_devices(campaign)?;
        let groups = self.partition(campaign, &devices)?;
        let planning = self.planning(campaign, Default::default(), groups.len() as u32, devices.len()).await?;
        let mut estimates = Vec::with_capacity(groups.len());
        for (part, (group, members)) in groups.iter().enumerate() {
            let run = self.plan_part(campaign, &planning, part as u32, group, members).await?;
            estimates.push(self.estimate_run(campaign, &run, group, members, assumptions).await?);
        }
        Ok(DurationEstimate { seconds: estimates.iter().map(|g| g.seconds).max().unwrap_or(0), groups: estimates })
    }

    /// Estimate one planned run of `campaign`.
    pub(super) async fn estimate_run(&self, campaign: &Campaign, run: &CampaignRun, group: &MulticastGroup, members: &[Device], assumptions: Assumptions) -> Result<GroupEstimate, EngineError> {
        let backend = super::backend_of(campaign, group).to_string();
        // A network that cannot say now is taken at the band's pace.
        let pacing = self.network.pacing(&backend).await.unwrap_or(Pacing { multicast_interval_ms: 0, unicast_interval_ms: 0 });
        let mut uplink_periods: BTreeMap<u32, usize> = BTreeMap::new();
        for device in members {
            let profile = self.profile(device.device_profile.as_ref())?;
            *uplink_periods.entry(super::uplink_period_s(device, profile.as_ref())).or_default() += 1;
        }
        let model = GroupModel { run, group, pacing, uplink_periods, loss: assumptions.loss.clamp(0.0, 0.95) };
        Ok(GroupEstimate { backend_instance: backend, ..model.estimate() })
    }
}

/// One group's run, to be estimated.
struct GroupModel<'a> {
    run: &'a CampaignRun,
    group: &'a MulticastGroup,
    pacing: Pacing,
    /// Devices by uplink period (seconds; 0 unknown).
    uplink_periods: BTreeMap<u32, usize>,
    loss: f64,
}

impl GroupModel<'_> {
    fn devices(&self) -> usize {
        self.uplink_periods.values().sum()
    }

    /// Probability that a request and its answer both arrive.
    fn answered(&self) -> f64 {
        (1.0 - self.loss).powi(2)
    }

    fn estimate(&self) -> GroupEstimate {
        let stages = &self.run.stages;
        let setup = session_setup_stage(stages);
        let interval_ms = self.fragment_interval_ms();
        let mut seen_rate: Option<f64> = None;
        let mut clock_s = 0.0;
        let mut session_start_s: Option<f64> = None;
        let mut fragments = 0;
        let mut out = Vec::with_capacity(stages.len());
        for (i, stage) in stages.iter().enumerate() {
            let seconds = match stage.mode {
                StageMode::Unicast | StageMode::DeviceInitiated => {
                    let limit = self.run.retry_limit_at(stage, seen_rate);
                    let took = self.unicast_stage_s(stage, limit, stage.mode == StageMode::DeviceInitiated);
                    if setup == Some(i) {
                        session_start_s = Some(clock_s + self.session_start_after_s(stage, limit));
                    }
                    // The engine learns the answer rate from required
                    // stages with enough requests.
                    if stage.required && self.devices() >= 20 {
                        seen_rate = Some(self.answered());
                    }
                    took
                }
                StageMode::WaitSessionStart => session_start_s.map_or(0.0, |start| (start - clock_s).max(0.0)),
                StageMode::Fragments => {
                    let (count, rounds_s) = self.fragments_and_rounds(stages, interval_ms);
                    fragments = count;
                    // The status rounds between extra fragments are counted
                    // with the status stage.
                    out.push(StageEstimate { stage_name: stage.name.clone(), seconds: (count as u64 * interval_ms).div_ceil(1000) });
                    clock_s += count as f64 * interval_ms as f64 / 1000.0;
                    let status_at = stages.iter().position(|s| s.mode == StageMode::Multicast);
                    if let Some(status) = status_at.map(|i| &stages[i]) {
                        let final_rounds = self.final_status_rounds(status);
                        let round = self.status_round_s(status, interval_ms);
                        out.push(StageEstimate { stage_name: status.name.clone(), seconds: (rounds_s + final_rounds * round).ceil() as u64 });
                        clock_s += rounds_s + final_rounds * round;
                    }
                    continue;
                }
                // Counted with the fragments: its rounds interleave with them.
                StageMode::Multicast => continue,
                StageMode::Offloaded => {
                    let count = self.run.layout.map_or(1, |l| fixed_fragment_count(l.nb_frag, self.run.fixed_redundancy_pct).unwrap_or(l.nb_frag));
                    fragments = count;
                    count as f64 * interval_ms as f64 / 1000.0
                }
            };
            clock_s += seconds;
            out.push(StageEstimate { stage_name: stage.name.clone(), seconds: seconds.ceil() as u64 });
        }
        GroupEstimate {
            session_starts_after_s: session_start_s.map(|s| s.ceil() as u64),
            mc_group_eui: self.run.group.to_string(),
            backend_instance: String::new(),
            devices: self.devices(),
            fragments,
            fragment_interval_ms: interval_ms,
            stages: out,
            seconds: clock_s.ceil() as u64,
        }
    }

    fn fragment_interval_ms(&self) -> u64 {
        // A DataFragment carries its 2-byte index header after the command.
        let len = self.run.layout.map_or(0, |l| l.frag_size as usize + 3);
        self.pacing.multicast_interval_for(self.group, len)
    }

    /// Expected time until the last device of the group answered or gave
    /// up: the integral of P(some device is not done by t).
    fn unicast_stage_s(&self, stage: &Stage, limit: u32, device_initiated: bool) -> f64 {
        let q = self.answered();
        let mut horizon = 0.0f64;
        let per_period: Vec<(DeviceTimes, usize)> = self
            .uplink_periods
            .iter()
            .map(|(period, n)| {
                let times = DeviceTimes::new(stage, *period, limit, device_initiated);
                horizon = horizon.max(times.gave_up_s);
                (times, *n)
            })
            .collect();
        let step = (horizon / 20_000.0).max(1.0);
        let mut expected = 0.0;
        let mut t = 0.0;
        while t < horizon {
            let all_done: f64 = per_period.iter().map(|(d, n)| d.done_by(t, q).powi(*n as i32)).product();
            expected += (1.0 - all_done) * step;
            t += step;
        }
        expected + STEP_LAG_S
    }

    /// From the start of the setup stage to the session's start, as the
    /// engine sets it then: the stage's whole retry window for the slowest
    /// device, a margin, a beacon boundary for class B, and not before the
    /// campaign's own time (taken as reached).
    fn session_start_after_s(&self, stage: &Stage, limit: u32) -> f64 {
        let slowest = self.uplink_periods.keys().max().copied().unwrap_or(0);
        let mut after = setup_window_s(stage.answer_timeout_s.saturating_add(slowest), limit) as f64;
        if self.group.session_class == SessionClass::B {
            after += BEACON_PERIOD_S as f64 / 2.0;
        }
        after
    }

    /// Fragments on the air, and the time of the status rounds between the
    /// closed loop's extra fragments (their fragments included).
    fn fragments_and_rounds(&self, stages: &[Stage], interval_ms: u64) -> (u32, f64) {
        let Some(layout) = self.run.layout else { return (0, 0.0) };
        let m = layout.nb_frag;
        if let Some(pct) = self.run.fixed_redundancy_pct {
            return (fixed_fragment_count(m, Some(pct)).unwrap_or(m), 0.0);
        }
        let Some(status) = stages.iter().find(|s| s.mode == StageMode::Multicast) else { return (m, 0.0) };
        let p = self.loss;
        let n = self.devices().max(1) as f64;
        // How far above the mean the worst of n devices falls (Gaussian tail).
        let z = (2.0 * n.ln()).sqrt();
        let mut sent = m;
        let mut round_s = 0.0;
        let mut deficit = m as f64 * p + z * (m as f64 * p * (1.0 - p)).sqrt();
        let mut rounds = 0;
        while deficit >= 1.0 && rounds < MAX_EXTRA_ROUNDS {
            let extra = (deficit / (1.0 - p)).ceil() as u32 + 1;
            round_s += self.status_round_s(status, interval_ms) + extra as f64 * interval_ms as f64 / 1000.0;
            sent += extra;
            rounds += 1;
            deficit = z * (extra as f64 * p * (1.0 - p)).sqrt() - 1.0;
        }
        (sent, round_s)
    }

    /// One status round: the request on the air, then the answers (all
    /// back, or the round's timeout when some are likely lost).
    fn status_round_s(&self, status: &Stage, interval_ms: u64) -> f64 {
        let n = self.devices().max(1) as f64;
        let period = self.uplink_periods.keys().max().copied().unwrap_or(0).max(1) as f64;
        let all_answer = self.answered().powf(n);
        let latest_answer = 1.0 + (period - 1.0) * n / (n + 1.0);
        let wait = all_answer * latest_answer.min(status.answer_timeout_s as f64) + (1.0 - all_answer) * status.answer_timeout_s as f64;
        interval_ms as f64 / 1000.0 + wait + STEP_LAG_S
    }

    /// Status rounds once the file is out: every device asked until each
    /// answered, at most the stage's retries.
    fn final_status_rounds(&self, status: &Stage) -> f64 {
        let n = self.devices().max(1) as f64;
        let missed = 1.0 - self.answered();
        let rounds = if missed <= 0.0 { 1.0 } else { ((0.5 / n).ln() / missed.ln()).ceil().max(1.0) };
        rounds.min(self.run.retry_limit(status) as f64 + 1.0)
    }
}

/// When one device's requests go out in a unicast stage, and when it is
/// given up on.
struct DeviceTimes {
    /// Time each request is sent, from the stage's start.
    sent_s: Vec<f64>,
    gave_up_s: f64,
    /// Longest wait for an answer after a request arrived (the device's
    /// next uplink).
    answer_within_s: f64,
}

impl DeviceTimes {
    /// A device-initiated stage gives the device its timeout to speak
    /// first; it is not counted on (a device may well wait to be asked).
    fn new(stage: &Stage, uplink_period_s: u32, limit: u32, device_initiated: bool) -> Self {
        let timeout = stage.answer_timeout_s.saturating_add(uplink_period_s);
        let mut sent_s = Vec::new();
        let mut at_ms = if device_initiated { timeout as u64 * 1000 } else { 0 };
        for attempt in 1..=limit + 1 {
            sent_s.push(at_ms as f64 / 1000.0);
            at_ms += backoff_ms(timeout, attempt);
        }
        Self { sent_s, gave_up_s: at_ms as f64 / 1000.0, answer_within_s: uplink_period_s.max(1) as f64 }
    }

    /// P(the device answered or was given up on by `t`), `q` being the
    /// chance a request is answered.
    fn done_by(&self, t: f64, q: f64) -> f64 {
        let arrived_by = |sent: f64| ((t - sent - 1.0) / (self.answer_within_s - 1.0).max(1.0)).clamp(0.0, 1.0);
        let mut done = 0.0;
        // Not answered yet when this request goes out.
        let mut open = 1.0;
        for sent in &self.sent_s {
            done += open * q * arrived_by(*sent);
            open *= 1.0 - q;
        }
        if t >= self.gave_up_s {
            done += open;
        }
        done.min(1.0)
    }
}
