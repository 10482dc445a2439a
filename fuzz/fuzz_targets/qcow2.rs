#![no_main]
//! Fuzz the qcow2 parser: any input must yield an image or an error, never a panic, hang or huge allocation.
use imgport_disk::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgport_fuzz::exercise(data, Some(Format::Qcow2));
});
