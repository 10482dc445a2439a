#![no_main]
//! Fuzz the initramfs reader (newc cpio archives, plain or in gzip, xz, zstd or lz4 streams): any input must give a result or an error, never a panic, hang or huge allocation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgport_fuzz::guest::initramfs(data);
});
