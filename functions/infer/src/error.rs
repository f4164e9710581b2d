//! Errors as the endpoint answers them: `{"error": {"code", "message"}}` with the right status.
//! The codes are stable; clients branch on them.
//!
//! What a client reads is safe to show anyone: a failure on our side (500, or 503 because the
//! registry or a model artifact cannot be read) answers with its code and a fixed message, and
//! the detail (object keys, backend errors) goes to the log only.

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use cvops_core::reason::{ReasonCode, Rejection};

use crate::models::ModelsError;
use cvops_core::ports::TableError;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    /// What went wrong. For the codes [`ApiError::public_message`] names, the log's detail only.
    pub message: String,
    /// For an undecodable image: the validation reason code (`truncated`, `not_an_image`, ...).
    pub reason: Option<&'static str>,
    /// Sent as `Retry-After` (seconds).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), reason: None, retry_after: None }
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_request", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong credentials; send `Authorization: Bearer <key>` with the key `cvops serve` was started with",
        )
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// More requests in flight than the endpoint takes: 503 `overloaded`, to retry in a second.
    pub fn overloaded(limit: usize) -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("the endpoint is answering {limit} requests already; retry after the Retry-After seconds"),
        );
        error.retry_after = Some(1);
        error
    }

    /// An image refused from its header or by its decoder: 413 `image_too_large` when it is over
    /// the endpoint's pixel limit or decode budget, else 422 `undecodable_image`; both with the
    /// validation reason.
    pub fn rejected_image(rejection: &Rejection) -> Self {
        let (status, code) = match rejection.reason {
            ReasonCode::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "image_too_large"),
            _ => (StatusCode::UNPROCESSABLE_ENTITY, "undecodable_image"),
        };
        // The validator names ingest's variable; the endpoint's budget is its own.
        let message = rejection.message.replace("(CVOPS_MAX_DECODED_BYTES)", "(the endpoint's CVOPS_INFER_MAX_DECODED_BYTES)");
        let mut error = Self::new(status, code, message);
        error.reason = Some(rejection.reason.as_str());
        error
    }

    /// The message a client may see: our own failures get a fixed one, the detail stays in the log.
    pub fn public_message(&self) -> &str {
        match self.code {
            "internal" => "the endpoint failed to answer this request; the error is in the endpoint's log",
            "registry_unavailable" => "the model registry cannot be read right now; retry later",
            "model_unavailable" => "the model version cannot be loaded right now; retry later, or pin another version",
            _ => &self.message,
        }
    }
}

/// The registry cannot be read: answered as the model cache answers it (503 `registry_unavailable`).
impl From<TableError> for ApiError {
    fn from(error: TableError) -> Self {
        ModelsError::Registry(error).into()
    }
}

/// The model cache's errors as the endpoint answers them: what the client asked for and is not
/// there is 404; what is there but cannot be served now is 503 (our side: a fixed message).
impl From<ModelsError> for ApiError {
    fn from(error: ModelsError) -> Self {
        let (status, code) = match &error {
            ModelsError::UnknownModel(_) => (StatusCode::NOT_FOUND, "unknown_model"),
            ModelsError::UnknownVersion { .. } | ModelsError::RejectedVersion { .. } => {
                (StatusCode::NOT_FOUND, "unknown_version")
            }
            ModelsError::NoProduction(_) => (StatusCode::SERVICE_UNAVAILABLE, "no_production_model"),
            ModelsError::Registry(_) => (StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable"),
            ModelsError::NoArtifact { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ModelsError::Unreadable { .. } | ModelsError::Tampered(_) | ModelsError::Unloadable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "model_unavailable")
            }
        };
        Self::new(status, code, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let public = self.public_message();
        if public != self.message {
            tracing::error!(code = self.code, status = self.status.as_u16(), detail = %self.message, "request failed");
        }
        let mut error = json!({"code": self.code, "message": public});
        if let Some(reason) = self.reason {
            error["reason"] = json!(reason);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(error: ApiError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = error.into_response();
        let retry = response.headers().get(RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn backend_failures_answer_with_a_code_and_never_their_detail() {
        let detail = "cannot read models/digits/run-a/model.onnx: s3 GetObject failed: AccessDenied";
        for error in [
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "model_unavailable", detail),
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable", detail),
            ApiError::internal(detail),
        ] {
            let code = error.code;
            let (_, _, answer) = body(error).await;
            let message = answer["error"]["message"].as_str().unwrap();
            assert_eq!(answer["error"]["code"].as_str(), Some(code));
            assert!(!message.contains("models/") && !message.contains("AccessDenied") && !message.is_empty(), "{message}");
        }
        let (_, _, answer) = body(ApiError::not_found("unknown_model", "there is no model cats")).await;
        assert_eq!(answer["error"]["message"].as_str(), Some("there is no model cats"), "a client's own mistake is explained");
    }

    #[tokio::test]
    async fn overload_says_when_to_retry() {
        let (status, retry, answer) = body(ApiError::overloaded(4)).await;
        assert_eq!(
            (status, retry.as_deref(), answer["error"]["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("1"), Some("overloaded"))
        );
    }
}
