//! imgport-auth's tests as one binary: the credential providers against a local responder, and request signing
//! checked against the official Python SDKs.

mod ecs_sdk_peers;
mod oss_sdk_peers;
mod providers;
mod rpc;
