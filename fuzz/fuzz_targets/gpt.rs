#![no_main]
//! Fuzz the GPT reader (headers at both sector sizes, the backup, the entry array and the layout checks): any input must give a result or an error, never a panic, hang or huge allocation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgport_fuzz::guest::gpt(data);
});
