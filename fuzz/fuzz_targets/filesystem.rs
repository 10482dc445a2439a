#![no_main]
//! Fuzz the filesystem front ends: the probe of every signature, then the ext4, XFS, FAT or NTFS reader walking the
//! tree. Any input must give a result or an error, never a panic that escapes, a hang or a huge allocation.
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // The readers run the filesystem crates under catch_unwind and report their panics as corruption; the
        // fuzzer's hook would abort on those before they are caught. With the default hook back, a panic that
        // escapes the harness still aborts (libfuzzer-sys does so after its own catch_unwind).
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| {
        imgport_fuzz::guest::filesystem(data);
    }
);
