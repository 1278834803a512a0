//! The distributed mode of seed 002: an RMC core that owns the API and
//! the database, and RMC agents that run campaigns, talking only over
//! Kafka topics in the seed's JSON formats.
//!
//! - `seed`: the messages (ADD, GET, RESP, STOP, progress, metrics);
//! - `translate`: an ADD as this host's objects;
//! - `sealing`: keys sealed with the cluster key between core and agents;
//! - `bus`: topics, client settings, publishing;
//! - `agent`: `airlift agent`;
//! - `rmc_core`: `airlift core`'s side of the bus;
//! - `split`: a campaign split over agents by multicast group.

pub mod agent;
pub mod bus;
pub mod rmc_core;
pub mod sealing;
pub mod seed;
pub mod split;
pub mod translate;
