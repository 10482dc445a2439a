#![no_main]
//! Fuzz the emulator's parsing of XML request bodies (CreateBucketConfiguration, Delete, CompleteMultipartUpload): any input must give an answer or an error, never a panic, a stack
//! overflow or a huge allocation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgport_emulator::fuzzing::xml_body(data);
});
