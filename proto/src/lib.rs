//! zestd's control API: generated gRPC types and stubs, and where the socket lives.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("zest.v1");
}

pub mod paths;
