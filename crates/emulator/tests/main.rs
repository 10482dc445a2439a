//! imgport-emulator's tests as one binary: the official Python SDKs as clients, and raw HTTP for what they do not
//! reach.

mod ecs_peers;
mod raw_http;
mod sdk_peers;
