//! imgport's disk image engine.
//!
//! - [`open`] probes a file ([`probe::detect`], by content only) and returns a [`DiskImage`]: virtual size,
//!   positional reads, and an extent map ([`Extent`]) so callers never read holes or zero clusters.
//! - [`write_image`] writes any source in any output format as one sequential stream into a [`Sink`].
//! - [`digest`] and [`compare`] work on virtual contents, independent of the container.
//!
//! One folder per format (`qcow2/`, `vhd/`, `vhdx/`, `vmdk/`); inputs are only ever opened read-only.

pub mod compare;
pub mod digest;
pub mod error;
pub mod extents;
pub mod file;
pub mod guid;
pub mod image;
pub mod info;
pub mod mapping;
pub mod mem;
pub mod open;
pub mod probe;
pub mod qcow2;
pub mod raw;
pub mod scan;
pub mod sink;
pub mod size;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;
pub mod write;

pub use compare::{compare, Comparison};
pub use digest::{digest, plain_sha256};
pub use error::{Error, ErrorKind, Result};
pub use extents::Extents;
pub use image::{CheckReport, DiskImage, Extent, ExtentKind, Finding, FormatInfo, ImageDetails, Mapping};
pub use info::ImageInfo;
pub use mem::MemImage;
pub use open::{open, ExtentFiles, OpenOptions};
pub use probe::Format;
pub use sink::{FileSink, Sink, VecSink};
pub use write::{write_image, Compression, Control, Stamp, Subformat, WriteOptions};
