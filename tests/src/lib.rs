//! Shared test code for cvops: one conformance suite per port, written once against the trait and
//! run against every implementation (the local ones always; the AWS ones when an AWS-compatible
//! endpoint is configured). A suite takes a namespace so that runs never see each other's data.

pub mod conformance;
pub mod events;
pub mod faults;
pub mod moto;
pub mod platform;
pub mod training;
