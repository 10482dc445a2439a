//! imgport-disk's tests as one binary: hostile input in process (mutation).
//!
//! mutation counts every heap allocation of this process through its global allocator to bound each variant's
//! peak: a test added beside it would count toward that peak while they run in parallel.

mod mutation;
