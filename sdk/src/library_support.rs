//! Helpers every device library needs: stage specs, downlinks and answers,
//! the device's memory, and the `lorawan-fuota` codecs' errors as the
//! contract's. `lorawan-library`, `multitech-mdot` and the
//! `airlift plugin new` template are built on them.

use crate::device_library::airlift::plugin::types::{Attribute, DeviceContext};
use crate::device_library::exports::airlift::plugin::device_library::*;
use lorawan_fuota::{CodecError, Parsed};

pub fn spec(name: &str, mode: StageMode, retry_limit: u32, answer_timeout_s: u32, required: bool) -> StageSpec {
    StageSpec { name: name.into(), mode, retry_limit, answer_timeout_s, required }
}

pub fn downlink(fport: u8, payload: Vec<u8>) -> Downlink {
    Downlink { fport, payload }
}

pub fn answer(stage: &str, status: AnswerStatus, facts: Vec<Fact>) -> UplinkEvent {
    UplinkEvent::Answer(StageAnswer { stage: stage.into(), status, facts })
}

pub fn remember(key: &str, value: &str) -> UplinkEvent {
    UplinkEvent::Remember(Attribute { key: key.into(), value: value.into() })
}

/// What the library last asked the host to remember under `key`.
pub fn memory<'a>(device: &'a DeviceContext, key: &str) -> Option<&'a str> {
    device.memory.iter().rev().find(|a| a.key == key).map(|a| a.value.as_str())
}

/// Ok when there are no problems (none, or an empty description), else
/// rejected with them.
pub fn verdict(problems: impl Into<Option<String>>) -> AnswerStatus {
    match problems.into() {
        Some(p) if !p.is_empty() => AnswerStatus::Rejected(p),
        _ => AnswerStatus::Ok,
    }
}

/// An answer naming another session than the campaign's (a FragIndex, a
/// McGroupID): stale, or for someone else's request. Noted, never taken
/// as an answer.
pub fn not_ours(field: &str, named: u8, ours: u8) -> UplinkEvent {
    UplinkEvent::Note(format!("answer for {field} {named}, the campaign's is {ours}: not an answer to our request"))
}

/// One half of a two-part stage confirmed (Cleanup: the fragmentation
/// session and the multicast group deleted): remember it, and answer
/// `stage` once the `other` half is remembered too.
pub fn half_confirmed(device: &DeviceContext, stage: &str, done: &str, other: &str) -> Vec<UplinkEvent> {
    let mut events = vec![remember(done, "1")];
    if memory(device, other).is_some() {
        events.push(answer(stage, AnswerStatus::Ok, vec![]));
    }
    events
}

pub fn parse_error(e: CodecError) -> ParseError {
    match e {
        CodecError::Truncated(what) => ParseError::Truncated(what.into()),
        CodecError::UnknownCommand(cid) => ParseError::UnknownCommand(cid),
        other => ParseError::Malformed(other.to_string()),
    }
}

pub fn encode_error(e: CodecError) -> LibraryError {
    LibraryError::Invalid(e.to_string())
}

/// The commands read from an uplink. What follows a bad command is lost
/// (its length is unknown) but what precedes it is kept, with a note;
/// only an uplink with nothing readable is an error.
pub fn readable<T>(parsed: Parsed<T>, events: &mut Vec<UplinkEvent>) -> Result<Vec<T>, ParseError> {
    let Parsed { commands, errors } = parsed;
    let mut errors = errors.into_iter();
    if commands.is_empty() {
        return errors.next().map_or(Ok(commands), |e| Err(parse_error(e)));
    }
    events.extend(errors.map(|e| UplinkEvent::Note(format!("rest of the uplink not understood: {e}"))));
    Ok(commands)
}

/// The campaign's fragmentation session, which a file delivery has.
pub fn frag_session(campaign: &CampaignContext) -> Result<&Fragmentation, LibraryError> {
    campaign.fragmentation.as_ref().ok_or_else(|| LibraryError::Invalid("the campaign has no fragmentation session".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_library::airlift::plugin::types::{LorawanVersion, SessionClass};

    fn device(memory: &[(&str, &str)]) -> DeviceContext {
        let memory = memory.iter().map(|(k, v)| Attribute { key: (*k).into(), value: (*v).into() }).collect();
        DeviceContext { dev_eui: 1, lorawan_version: LorawanVersion::V10, classes: vec![SessionClass::ClassC], firmware_version: None, hardware_version: None, memory, requests_sent: 1 }
    }

    #[test]
    fn no_problem_is_ok_and_any_is_a_rejection() {
        assert!(matches!(verdict(String::new()), AnswerStatus::Ok));
        assert!(matches!(verdict(None), AnswerStatus::Ok));
        assert!(matches!(verdict(Some(String::new())), AnswerStatus::Ok));
        assert!(matches!(verdict("McGroupID error".to_string()), AnswerStatus::Rejected(p) if p == "McGroupID error"));
    }

    #[test]
    fn the_latest_memory_wins_and_a_stage_of_two_halves_answers_once_both_are_in() {
        let d = device(&[("k", "old"), ("k", "new")]);
        assert_eq!(memory(&d, "k"), Some("new"));
        assert_eq!(half_confirmed(&device(&[]), "Cleanup", "a", "b").len(), 1, "only the remember");
        let both = half_confirmed(&device(&[("b", "1")]), "Cleanup", "a", "b");
        assert!(matches!(&both[..], [UplinkEvent::Remember(_), UplinkEvent::Answer(a)] if a.stage == "Cleanup"));
    }

    #[test]
    fn what_precedes_a_bad_command_is_kept_and_nothing_readable_is_an_error() {
        let mut events = vec![];
        let kept = readable(Parsed { commands: vec![1, 2], errors: vec![CodecError::UnknownCommand(0x7f)] }, &mut events).unwrap();
        assert_eq!((kept, events.len()), (vec![1, 2], 1));
        assert!(matches!(readable::<u8>(Parsed { commands: vec![], errors: vec![CodecError::UnknownCommand(0x7f)] }, &mut vec![]), Err(ParseError::UnknownCommand(0x7f))));
        assert!(readable::<u8>(Parsed { commands: vec![], errors: vec![] }, &mut vec![]).unwrap().is_empty());
    }
}
