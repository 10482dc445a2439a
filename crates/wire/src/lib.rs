//! Wire-level helpers shared by the clients, the uploader and the emulator; nothing here touches the network.
//!
//! - [`crc64`]: CRC-64/XZ, the checksum OSS reports, with combination of parts.
//! - [`hex`], [`hex_upper`], [`hex_decode`]: the one hex encoding.
//! - [`xml_escape`]: text for XML element content and attribute values.
//! - [`unquote`]: an ETag (or other quoted header value) without its quotes.

pub mod crc64;
mod hex;
mod text;

pub use hex::{hex, hex_decode, hex_upper};
pub use text::{unquote, xml_escape};
