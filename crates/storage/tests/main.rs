//! imgport-storage's tests as one binary: the object-store client and the stream uploader against an in-process
//! emulator.

mod emulator;
mod events;
mod stream;
