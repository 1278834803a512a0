//! Runs campaigns in a serving host: one task per running campaign run
//! (one per multicast group) steps
//! the engine at the time it asks for, or soon after answers arrive.
//! Campaigns that were running when the host stopped resume at start.

use super::{CampaignRun, DeviceRun, Engine, EngineError, Network, RunOptions};
use crate::model::Eui;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Answers are let in for a while (campaign time) before the engine steps:
/// one step then handles a batch of them. A step reads every device of the
/// run, so a larger run lets answers in longer (1 ms per device, within
/// these bounds) and the steps' cost per answer stays flat in its size.
const ANSWER_BATCH_MS: std::ops::RangeInclusive<u64> = 2_000..=60_000;

/// How long answers are let in before a run of `devices` steps.
pub fn answer_batch_ms(devices: usize) -> u64 {
    (*ANSWER_BATCH_MS.start() + devices as u64).min(*ANSWER_BATCH_MS.end())
}
/// Wait after a step failed (store or plugin trouble) before trying again.
const STEP_RETRY_MS: u64 = 30_000;

struct Task {
    wake: Arc<Notify>,
    handle: JoinHandle<()>,
}

pub struct Runner<N: Network> {
    pub engine: Arc<Engine<N>>,
    tasks: Mutex<HashMap<String, Task>>,
}

impl<N: Network> Runner<N> {
    pub fn new(engine: Arc<Engine<N>>) -> Self {
        Self { engine, tasks: Mutex::new(HashMap::new()) }
    }

    /// Pick up every campaign the store says is running.
    pub fn resume_all(&self) -> Result<usize, EngineError> {
        self.engine.index_running_runs()?;
        let running = self.engine.running()?;
        for run in &running {
            tracing::info!(campaign = %run.campaign_id, part = run.part, stage = run.stage, "resuming campaign");
            self.spawn(&run.id());
        }
        Ok(running.len())
    }

    /// Take over runs another host ran, from their records as it last
    /// published them: nothing finished is done again; the multicast frame
    /// counter goes on from the last reservation the other host published
    /// (it sent no frame at or above it).
    pub fn adopt(&self, runs: Vec<CampaignRun>, devices: Vec<DeviceRun>) -> Result<(), EngineError> {
        let store = &self.engine.store;
        let mut tx = crate::store::Batch::default();
        for d in &devices {
            tx.put(d);
        }
        store.commit(tx)?;
        for mut run in runs {
            run.next_fcnt = run.next_fcnt.max(run.fcnt_reserved);
            store.put(&run)?;
            let members = devices.iter().filter(|d| d.campaign_id == run.campaign_id && d.part == run.part).map(|d| d.dev_eui.to_string());
            store.index_running(&run.id(), members)?;
            store.flush()?;
            tracing::info!(campaign = %run.campaign_id, part = run.part, stage = run.stage, "taking over a campaign");
            self.spawn(&run.id());
        }
        Ok(())
    }

    /// Start a campaign: a task per run (per multicast group).
    pub async fn start(&self, campaign_id: &str, options: RunOptions) -> Result<Vec<CampaignRun>, EngineError> {
        let runs = self.engine.start(campaign_id, options).await?;
        for run in &runs {
            self.spawn(&run.id());
        }
        Ok(runs)
    }

    /// Stop a campaign: STOPPED is on disk when this returns; the network
    /// side (cancel, teardown downlinks) goes on in the background, so a
    /// slow or hanging network does not hold the caller.
    pub async fn stop(&self, campaign_id: &str) -> Result<(), EngineError> {
        for run in self.engine.mark_stopped(campaign_id).await? {
            self.poke(&run.id());
            let engine = self.engine.clone();
            tokio::spawn(async move {
                if let Err(e) = engine.wind_down(&run).await {
                    tracing::warn!(campaign = %run.campaign_id, part = run.part, error = %e, "winding the stopped campaign down failed");
                }
            });
        }
        Ok(())
    }

    /// An uplink that came through backend instance `via`; the runs it
    /// answered step soon.
    pub async fn on_uplink(&self, via: &str, dev_eui: Eui, fport: u8, payload: Vec<u8>) -> Result<(), EngineError> {
        for run_id in self.engine.on_uplink(Some(via), dev_eui, fport, payload).await? {
            self.poke(&run_id);
        }
        Ok(())
    }

    /// Step a run soon.
    pub fn poke(&self, run_id: &str) {
        if let Some(t) = self.tasks.lock().unwrap().get(run_id) {
            t.wake.notify_one();
        }
    }

    /// Step every run of a campaign soon (its network changed, say).
    pub fn poke_campaign(&self, campaign_id: &str) {
        if let Ok(Some(first)) = self.engine.store.get::<CampaignRun>(campaign_id) {
            for id in first.sibling_ids() {
                self.poke(&id);
            }
        }
    }

    fn spawn(&self, run_id: &str) {
        let mut tasks = self.tasks.lock().unwrap();
        if tasks.get(run_id).is_some_and(|t| !t.handle.is_finished()) {
            return;
        }
        let wake = Arc::new(Notify::new());
        let handle = tokio::spawn(drive(self.engine.clone(), run_id.to_string(), wake.clone()));
        tasks.insert(run_id.to_string(), Task { wake, handle });
    }

    /// Stop every task (the campaigns stay RUNNING in the store).
    pub fn shutdown(&self) {
        for (_, t) in self.tasks.lock().unwrap().drain() {
            t.handle.abort();
        }
    }
}

impl<N: Network> Drop for Runner<N> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn drive<N: Network>(engine: Arc<Engine<N>>, run_id: String, wake: Arc<Notify>) {
    let clock = engine.clock.clone();
    let devices = engine.store.get::<CampaignRun>(&run_id).ok().flatten().map_or(0, |r| r.device_count);
    loop {
        let next = match engine.step(&run_id).await {
            Ok(Some(at)) => at,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(run = %run_id, error = %e, "campaign step failed; trying again later");
                clock.now_unix_ms() + STEP_RETRY_MS
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(clock.real_wait_until(next)) => {}
            _ = wake.notified() => {
                let soon = next.min(clock.now_unix_ms() + answer_batch_ms(devices));
                tokio::time::sleep(clock.real_wait_until(soon)).await;
            }
        }
    }
}
