//! [`Retryable`]: whether trying again can help, the one question every caller of a handler asks
//! of its error (Lambda's retries, SQS redelivery, the local router's attempts).

pub trait Retryable: std::fmt::Display {
    /// True when the same input may succeed later (a throttle, a lost race, a network error);
    /// false when it never will (a malformed request, a model that does not load).
    fn is_retryable(&self) -> bool;
}
