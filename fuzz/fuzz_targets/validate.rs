//! Any bytes into the validator: it must return a verdict, never crash, hang or allocate without
//! bound. libFuzzer aborts on a panic before `catch_unwind` can see it, so a decoder panic that
//! production turns into `corrupt` shows up here as a crash worth reporting upstream.
//!
//!     cargo install cargo-fuzz
//!     cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run validate -- -max_total_time=60 -rss_limit_mb=300
#![no_main]

use cvops_core::validate::{validate, ValidationLimits};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The default limits, but 4 megapixels: a fuzzer-made header may ask for anything.
    let limits = ValidationLimits { max_pixels: 4_000_000, ..ValidationLimits::default() };
    let report = validate(data, &limits);
    assert_eq!(report.bytes, data.len() as u64);
    assert!(report.is_valid() || report.rejection.as_ref().is_some_and(|r| !r.message.is_empty()));
});
