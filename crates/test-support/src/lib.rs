//! What imgport's test binaries share, as a dev-dependency only: the test peers ([`peers`]: qemu-img, the Python
//! SDKs, s3s-fs), deterministic source disks and qemu-img fixtures ([`images`]), the PRNG behind them ([`rng`]),
//! raw HTTP on both ends ([`responder`] answers clients under test, [`http`] talks to servers under test), a
//! recording and refusing proxy between them ([`recorder`]) and a shaped, faulty network ([`netem`]).
//!
//! Test peers are required, never optional: a missing one fails the test with how to install it.

pub mod http;
pub mod images;
pub mod netem;
pub mod peers;
pub mod recorder;
pub mod responder;
pub mod rng;

pub use rng::Rng;
