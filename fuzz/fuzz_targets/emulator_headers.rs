#![no_main]
//! Fuzz the emulator's parsing of request headers (virtual-hosted addressing, the admin Host check, signature verifiers, ACS3 coverage): any input must give an answer or an error, never a panic, a stack
//! overflow or a huge allocation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgport_emulator::fuzzing::headers(data);
});
