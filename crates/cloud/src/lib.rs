//! Alibaba Cloud ECS custom images, as imgport's import and images commands need them: register an upload
//! (ImportImage) or a snapshot (CreateImage), wait until the image is ready, copy, share, tag and retire it, and
//! check before any upload that ECS may read the bucket (the import role in RAM).
//!
//! - [`ecs`]: the Images API, typed ([`Ecs`]).
//! - [`wait`]: polling an image until it is Available, failed, gone or out of time.
//! - [`role`]: the import role's preflight and its creation as the console does it.
//! - [`advice`]: each error code's cause and fix.
//! - [`model`]: images and tasks as ECS describes them.
//! - [`retain`]: retiring a family's old images (survey, plan, apply), and the tags imgport puts on images.
//!
//! Errors are [`CloudError`] with a stable [`ErrorKind`]. The crate never prints: waits report [`wait::WaitEvent`]s.

pub mod advice;
pub mod ecs;
mod error;
pub mod model;
pub mod retain;
pub mod role;
pub mod wait;

pub use ecs::Ecs;
pub use error::{CloudError, ErrorKind};
pub use retain::{DEPRECATED_AT_TAG, DIGEST_TAG, VERSION_TAG};
