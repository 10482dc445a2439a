#![no_main]
//! Fuzz the btrfs reader: superblock, chunk map, b-trees, subvolumes and (compressed) file extents of a sparse
//! partition the input describes. Any input must give a result or an error, never a panic, a hang or a huge
//! allocation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imgport_fuzz::guest::btrfs(data);
});
