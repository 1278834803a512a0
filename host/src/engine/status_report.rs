//! Reading a device's FragSessionStatusAns against what was sent. Stacks
//! fill TS004's two counts their own way (docs/device-stacks.md); only the
//! engine knows M and the highest fragment number sent, so the reading is
//! done here, on the typed facts the device library parses.

use super::run::{CampaignRun, DeviceRun, StageMode};
use lorawan_fuota::coded_order::{position_of, CHOSEN_UP_TO_M};

/// A deficit after more than M heard that a decoder shows about once in
/// 2^14: the report is a fragment number and a loss count.
const IMPLAUSIBLE_DEFICIT: u32 = 14;
/// M from which coded fragments go in order and TS004's lines behave as
/// random ones. Below, LoRaMac-node's last number is told apart exactly:
/// coded numbers skip past the positions sent.
const DENSE_ROWS_FROM_M: u32 = CHOSEN_UP_TO_M + 1;

/// Read a fragment status report against what was sent, which only the
/// engine knows: M and the highest fragment number sent.
///
/// Stacks read TS004's two counts their own way (docs/device-stacks.md).
/// The specification's (and LoRa Basics Modem's) NbFragReceived counts
/// fragments heard and MissingFrag those still needed (never more than it
/// lost), so the two never add up to more than the fragments sent.
/// LoRaMac-node sends the number of the last fragment heard and the
/// uncoded ones lost so far, never lowered. A report naming a sent number
/// past the positions sent (coded numbers skip for M ≤ 64), adding up to
/// more than the highest number sent, or whose MissingFrag grows (still
/// needed never does), is read that way from then on, as long as its
/// NbFragReceived stays a number that was sent. Basics Modem's (the last
/// number less its losses) rarely is: it keeps the count reading, whose
/// MissingFrag is what it still needs.
///
/// Both public stacks stop counting once they rebuilt the file, so a report
/// that stays the same while fragments go out means the device stopped
/// listening: it holds the file, unless it lost every one of them, which
/// the number needed makes as unlikely as 1 in 10^4 at the loss it saw.
/// For firmware the device's image status and version have the last word.
pub(super) fn read(run: &CampaignRun, dev: &mut DeviceRun, received: u32, missing: u32, claims_file: bool) {
    let Some(m) = run.layout.map(|l| l.nb_frag) else { return };
    // No stack rebuilds M fragments from fewer than M (LoRaMac-node's
    // last fragment number is at least M once it has them all).
    if claims_file && received >= m {
        dev.holds_file = true;
    }
    // What was sent is known for an answer to the status round in flight:
    // its request went out after every fragment numbered up to here, and
    // networks send a group's downlinks in order. A late answer, once more
    // fragments are queued, says nothing about those.
    let in_round = run.current().is_some_and(|s| s.mode == StageMode::Multicast) && run.round_sent_ms.is_some();
    if !in_round {
        return;
    }
    // Positions sent (how many fragments went out), and the highest
    // fragment number among them: coded numbers may skip (the library
    // chooses which parity lines to send).
    let highest_sent = run.next_fragment.saturating_sub(1).max(1);
    let highest_number = run.coded_numbers.last().map_or(highest_sent, |n| (*n).max(highest_sent));
    // Heard plus still needed never exceeds the highest number sent
    // (needed ≤ lost), so more than that is a fragment number plus a loss
    // count.
    // Still needed never grows either: a MissingFrag above the last one
    // counts losses (LoRaMac-node counts the lost tail at the first coded).
    let missing_grew = dev.last_report.is_some_and(|(_, m0, _)| missing > m0);
    // A decoder that heard M + j fragments and still lacks k is short of
    // j + k independent rows: about 1 in 2^(j+k) where the lines behave
    // as random. (Not so below: at M = 50 a spec device showed 15.)
    let implausible_as_a_count = m >= DENSE_ROWS_FROM_M && received > m && missing + (received - m) >= IMPLAUSIBLE_DEFICIT;
    // LoRaMac-node's NbFragReceived is a number that was sent; Basics
    // Modem's (the last number less its losses) rarely is once coded
    // numbers skip, and a count past the positions sent never is.
    let sent_number = received <= highest_sent || run.coded_numbers.binary_search(&received).is_ok();
    let past_the_positions = received > highest_sent;
    if dev.stack_known {
        // The profile said which stack it is.
    } else if missing > 0 && sent_number && (past_the_positions || received + missing > highest_number || missing_grew || implausible_as_a_count) {
        dev.counts_losses = true;
    } else if !sent_number {
        // Not LoRaMac-node's reading after all (an earlier report that
        // looked like one was Basics Modem's by chance).
        dev.counts_losses = false;
    }
    // Since which position the report has not changed.
    let unchanged_since = match dev.last_report {
        Some((r0, m0, since)) if (r0, m0) == (received, missing) => since,
        _ => highest_sent,
    };
    dev.last_report = Some((received, missing, unchanged_since));
    let (heard, need, loss, quiet) = if dev.counts_losses {
        // The last fragment's number, as its position among those sent.
        let last = position_of(received, m, &run.coded_numbers);
        let (loss, need) = counting_losses(last, missing, m);
        (last.saturating_sub(missing), need, loss, highest_sent.saturating_sub(last))
    } else {
        // Basics Modem's count is the last number less the losses, which
        // with skipped numbers may pass the positions sent.
        let received = received.min(highest_sent);
        let mut need = if claims_file && received < m { m - received } else { missing };
        if received > m {
            // Having heard more than M fragments, a device that reads the
            // spec's way needs few more; one still missing many is more
            // likely LoRaMac-node, done and frozen. Size rounds for the
            // smaller need; its next report settles which it is.
            need = need.min(counting_losses(received, missing, m).1);
        }
        // The loss it saw when the report first read so.
        (received, need, 1.0 - received as f64 / unchanged_since as f64, highest_sent - unchanged_since)
    };
    let quiet_needed = (1e-4f64).ln() / loss.clamp(0.02, 0.5).ln();
    if !dev.holds_file && missing > 0 && received > 0 && quiet as f64 >= quiet_needed {
        dev.holds_file = true;
    }
    dev.received_fragments = Some(heard);
    dev.missing_fragments = Some(if dev.holds_file { 0 } else { need.max(1) });
}

/// A report read LoRaMac-node's way (`last` is the number of the last
/// fragment heard, `lost` the uncoded ones lost): the loss it saw, and the
/// fragments it still needs once the coded ones it heard are counted.
fn counting_losses(last: u32, lost: u32, m: u32) -> (f64, u32) {
    let loss = lost as f64 / last.clamp(1, m) as f64;
    let coded_heard = last.saturating_sub(m) as f64 * (1.0 - loss);
    (loss, (lost as f64 - coded_heard).ceil().max(1.0) as u32)
}
