//! The conformance suites. Each is a plain async function that panics on the first broken
//! promise, naming it.

pub mod jobs;
pub mod object_store;
pub mod queue;
pub mod table;

/// Lets time pass for the backend under test: a manual clock moves, a real service is waited for.
pub type PassTime<'a> = &'a (dyn Fn(std::time::Duration) + Sync);
