//! imgport's end-to-end tests as one binary (one link step instead of one per file): each module drives the
//! imgport binary, often beside the libraries, against real peers. Tests that only call a library live in that
//! crate's `tests/`. Tests here share one process: they change the environment, the working folder or signal
//! handling only in the children they start.

mod common;

mod auth;
mod cli;
mod container;
mod convert;
mod emulator;
mod guest_facts;
mod hostile;
mod import;
mod inspect;
mod network;
mod packer;
mod pipeline;
mod pipeline_shared;
mod qcow2;
mod raw;
mod retain;
mod roundtrip;
mod scheduling;
mod upload;
mod validate;
mod vhd;
mod vhdx;
mod virt_inspector;
mod vmdk;
