#![no_main]
//! Fuzz the LVM physical volume reader (label, metadata area header and the volume group text): any input must give a result or an error, never a panic, hang or huge allocation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgport_fuzz::guest::lvm(data);
});
