#![no_main]
//! Fuzz the emulator's parsing of request targets and query strings (OSS addressing and routing, every signature verifier): any input must give an answer or an error, never a panic, a stack
//! overflow or a huge allocation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgport_emulator::fuzzing::query(data);
});
