#![no_main]
//! Fuzz the SQLite reader (header, schema table, table b-trees and records): any input must give a result or an error, never a panic, hang or huge allocation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgport_fuzz::guest::sqlite(data);
});
