//! The cloud crate against the local cloud (the emulator, in-process): imports, waits, copies, the import role,
//! retention.

mod ecs;
mod retain;
