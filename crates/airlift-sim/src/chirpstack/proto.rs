//! ChirpStack's API messages, generated at build time from its published
//! `.proto` files (`host/proto/chirpstack`, see `SOURCE.md` there), with
//! the HTTP integration's JSON mapping from `pbjson`, as ChirpStack builds
//! its own. Nothing here is written by hand.

#![allow(clippy::all, missing_docs)]

pub mod common {
    include!(concat!(env!("OUT_DIR"), "/common.rs"));
    include!(concat!(env!("OUT_DIR"), "/common.serde.rs"));
}

pub mod gw {
    include!(concat!(env!("OUT_DIR"), "/gw.rs"));
    include!(concat!(env!("OUT_DIR"), "/gw.serde.rs"));
}

pub mod api {
    include!(concat!(env!("OUT_DIR"), "/api.rs"));
}

pub mod integration {
    include!(concat!(env!("OUT_DIR"), "/integration.rs"));
    include!(concat!(env!("OUT_DIR"), "/integration.serde.rs"));
}
