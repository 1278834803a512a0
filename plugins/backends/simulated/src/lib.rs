//! Backend for the simulated network server (`airlift sim-lns`).
//!
//! Its API is plain JSON over HTTP, shaped like a small network server's:
//! - `POST {url}/groups`: a multicast group with its session keys and members;
//! - `DELETE {url}/groups/{groupEui}`: end the group's session;
//! - `POST {url}/devices/{devEui}/downlinks`: queue a unicast downlink;
//! - `POST {url}/groups/{groupEui}/downlinks`: send a multicast frame.
//!
//! Requests carry `Authorization: Bearer <token>` (the instance's `token`
//! secret, substituted by the host). Uplinks arrive at the host as
//! `{"uplinks":[{"devEui","fPort","payload"(hex),"time"(unix ms)}]}` with
//! `X-Sim-Signature` = hex SHA-256(body ‖ token), checked here through the
//! host so the token never enters this plugin.

include!("backend.rs");
