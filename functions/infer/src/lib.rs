//! The infer function: the production model of each registered model behind one HTTP router.
//!
//! - [`routes`]: the axum router (`/v1/models/{name}/predict`, `/v1/models`, `/healthz`), errors
//!   as `{"error": {"code", "message"}}` with 400, 401, 404, 413, 415, 422 or 503;
//! - [`predict`]: one prediction, a classifier's labels or a detector's boxes;
//! - [`models`]: versions loaded once (sha256 checked against the registry, tract-optimised for
//!   the card's input), the production alias re-read at most every few seconds, a promoted
//!   version swapped in without a restart;
//! - [`feed`]: each request added to its version's hourly monitoring aggregate in memory,
//!   flushed to the table with atomic counter updates on a timer; low-confidence inputs sampled
//!   for review;
//! - [`endpoint`]: the three built together, one way for the Lambda, `cvops serve` and tests;
//! - [`config`]: the body limit, the alias check interval, the local API key.
//!
//! On AWS `main.rs` serves the router through `lambda_http` behind a function URL with AWS_IAM
//! auth; locally `cvops serve` serves the same router with an API key.

pub mod config;
pub mod endpoint;
pub mod error;
pub mod feed;
pub mod models;
pub mod predict;
pub mod routes;

pub use config::InferConfig;
pub use endpoint::Endpoint;
pub use error::ApiError;
pub use feed::Feed;
pub use models::{Models, ModelsError};
pub use routes::router;
