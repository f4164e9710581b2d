//! The infer function: the production model of each registered model behind one HTTP router.
//!
//! - [`routes`]: the axum router (`/v1/models/{name}/predict`, `/v1/models`, `/healthz`), errors
//!   as `{"error": {"code", "message"}}` with 400, 401, 404, 413, 415, 422 or 503;
//! - [`models`]: versions loaded once (sha256 checked against the registry, tract-optimised for
//!   the card's input), the production alias re-read at most every few seconds, a promoted
//!   version swapped in without a restart;
//! - [`config`]: the body limit, the alias check interval, the local API key.
//!
//! On AWS `main.rs` serves the router through `lambda_http` behind a function URL with AWS_IAM
//! auth; locally `cvops serve` serves the same router with an API key.

pub mod config;
pub mod error;
pub mod models;
pub mod routes;

pub use config::InferConfig;
pub use error::ApiError;
pub use models::Models;
pub use routes::router;
