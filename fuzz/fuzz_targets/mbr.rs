#![no_main]
//! Fuzz the MBR reader (the boot sector, the chain of extended boot records and the layout checks): any input must give a result or an error, never a panic, hang or huge allocation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgport_fuzz::guest::mbr(data);
});
