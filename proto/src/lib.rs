//! zestd's control API: generated gRPC types and stubs, and where the socket lives.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("zest.v1");
}

/// The peer wire protocol's messages (docs/PROTOCOL.md).
pub mod peer {
    include!(concat!(env!("OUT_DIR"), "/zest.peer.v1.rs"));
}

pub mod paths;
