//! SDK errors into the ports' errors, keeping the source and whether a retry could help.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Throttling, timeouts, dispatch failures and 5xx are transient; everything else is not.
pub(crate) fn is_retryable<E: ProvideErrorMetadata, R: std::fmt::Debug>(error: &SdkError<E, R>) -> bool {
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(e) => {
            let code = e.err().code().unwrap_or_default();
            code.contains("Throttl")
                || matches!(
                    code,
                    "SlowDown"
                        | "RequestLimitExceeded"
                        | "ProvisionedThroughputExceededException"
                        | "InternalError"
                        | "InternalServerError"
                        | "ServiceUnavailable"
                        | "RequestTimeout"
                        | "TransactionConflictException"
                )
        }
        _ => false,
    }
}

/// "Operation: code: message" with the SDK's error chain flattened for logs.
pub(crate) fn describe<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &str,
    error: &SdkError<E, R>,
) -> String {
    match error {
        SdkError::ServiceError(e) => {
            format!("{operation}: {}: {}", e.err().code().unwrap_or("unknown"), e.err().message().unwrap_or("no message"))
        }
        other => format!("{operation}: {}", aws_smithy_types::error::display::DisplayErrorContext(other)),
    }
}
