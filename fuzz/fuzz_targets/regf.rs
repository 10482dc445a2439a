#![no_main]
//! Fuzz the registry hive reader (base block, keys, subkey lists and values): any input must give a result or an error, never a panic, hang or huge allocation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgport_fuzz::guest::regf(data);
});
