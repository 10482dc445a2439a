//! Offline guest inspection: reads the guest inside a disk image through [`imgport_disk::DiskImage`] (any
//! container format) without booting it, mounting it or needing root.
//!
//! - [`reader`]: byte-range views of the virtual disk with a small block cache and a count of bytes read.
//! - [`partition`]: MBR and GPT tables; damage becomes [`Finding`]s.
//! - [`probe`]: filesystem and volume signatures with label, UUID, size and usage.
//! - [`fs`]: file access to ext2/3/4, XFS and FAT behind [`fs::GuestFs`]; [`vfs`] adds mounts and symlinks.
//! - [`linux`]: guest facts from a Linux root; [`inspect()`] puts everything together.

pub mod bytes;
pub mod finding;
pub mod fs;
pub mod inspect;
pub mod linux;
pub mod partition;
pub mod probe;
pub mod reader;
pub mod vfs;

pub use finding::{Finding, Severity};
pub use inspect::{inspect, Inspection};
