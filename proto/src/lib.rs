//! Generated gRPC types and stubs for zestd's control socket.

#![allow(clippy::all, clippy::pedantic)]

pub mod v1 {
    tonic::include_proto!("zest.v1");
}
