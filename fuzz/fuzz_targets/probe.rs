#![no_main]
//! Fuzz the probe parser: any input must yield an image or an error, never a panic, hang or huge allocation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgport_fuzz::exercise(data, None);
});
