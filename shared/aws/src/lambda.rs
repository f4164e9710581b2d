//! [`Failure`]: a handler's error as the Lambda runtime reports it. The error type says whether a
//! retry can help (`Retryable` or `NonRetryable`), which is what alarms and the failure
//! destinations' readers look at.

use cvops_core::failure::Retryable;
use lambda_runtime::Diagnostic;

#[derive(Debug)]
pub struct Failure<E>(pub E);

impl<E: Retryable> From<Failure<E>> for Diagnostic {
    fn from(Failure(error): Failure<E>) -> Self {
        let error_type = if error.is_retryable() { "Retryable" } else { "NonRetryable" };
        Diagnostic { error_type: error_type.into(), error_message: error.to_string() }
    }
}
