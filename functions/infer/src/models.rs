//! The models the endpoint serves: loaded once per container and version, verified against the
//! registry's sha256, kept for the container's life. The production alias is read again at most
//! every `alias_check`; a newly promoted version is loaded and swapped in, while requests already
//! holding the old one finish on it (they hold an `Arc`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::http::StatusCode;
use cvops_core::ports::{ObjectStore, ObjectStoreExt, Table};
use cvops_core::registry::{self, ModelVersion, VersionStatus};
use cvops_inference::LoadedModel;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex as AsyncMutex;

use crate::error::ApiError;

/// A loaded version with what its answers need.
#[derive(Debug)]
pub struct Served {
    pub record: ModelVersion,
    pub model: LoadedModel,
}

#[derive(Debug)]
pub struct Models {
    table: Arc<dyn Table>,
    objects: Arc<dyn ObjectStore>,
    bucket: String,
    alias_check: std::time::Duration,
    loaded: Mutex<HashMap<(String, u32), Arc<Served>>>,
    /// Per model: the production version last read, and when.
    production: Mutex<HashMap<String, (u32, Instant)>>,
    /// One load at a time, so a burst of cold requests loads a version once.
    loading: AsyncMutex<()>,
}

impl Models {
    pub fn new(table: Arc<dyn Table>, objects: Arc<dyn ObjectStore>, bucket: String, alias_check: std::time::Duration) -> Self {
        Self {
            table,
            objects,
            bucket,
            alias_check,
            loaded: Mutex::default(),
            production: Mutex::default(),
            loading: AsyncMutex::new(()),
        }
    }

    fn table_error(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "registry_unavailable", format!("the registry cannot be read: {e}"))
    }

    /// The version to serve: `pinned`, or production.
    pub async fn resolve(&self, model: &str, pinned: Option<u32>) -> Result<Arc<Served>, ApiError> {
        let version = match pinned {
            Some(version) => version,
            None => self.production_version(model).await?,
        };
        if let Some(served) = self.loaded.lock().expect("models poisoned").get(&(model.to_owned(), version)) {
            return Ok(served.clone());
        }
        let _one_at_a_time = self.loading.lock().await;
        if let Some(served) = self.loaded.lock().expect("models poisoned").get(&(model.to_owned(), version)) {
            return Ok(served.clone());
        }
        let served = Arc::new(self.load(model, version).await?);
        self.loaded.lock().expect("models poisoned").insert((model.to_owned(), version), served.clone());
        Ok(served)
    }

    async fn production_version(&self, model: &str) -> Result<u32, ApiError> {
        if let Some((version, read_at)) = self.production.lock().expect("models poisoned").get(model) {
            if read_at.elapsed() < self.alias_check {
                return Ok(*version);
            }
        }
        match registry::production(self.table.as_ref(), model).await.map_err(Self::table_error)? {
            Some((alias, _)) => {
                self.production.lock().expect("models poisoned").insert(model.to_owned(), (alias.version, Instant::now()));
                Ok(alias.version)
            }
            None if self.exists(model).await? => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_production_model",
                format!("model {model} has no production version yet; promote one with `cvops promote {model} VERSION`"),
            )),
            None => Err(ApiError::not_found("unknown_model", format!("there is no model {model}; GET /v1/models lists them"))),
        }
    }

    async fn exists(&self, model: &str) -> Result<bool, ApiError> {
        Ok(registry::models(self.table.as_ref()).await.map_err(Self::table_error)?.iter().any(|m| m == model))
    }

    async fn load(&self, model: &str, version: u32) -> Result<Served, ApiError> {
        let record = registry::get_version(self.table.as_ref(), model, version).await.map_err(Self::table_error)?;
        let record = match record {
            Some(record) if record.status == VersionStatus::Registered => record,
            Some(_) => {
                return Err(ApiError::not_found(
                    "unknown_version",
                    format!("model {model} v{version} was rejected; it is never served"),
                ))
            }
            None if self.exists(model).await? => {
                return Err(ApiError::not_found("unknown_version", format!("model {model} has no version {version}")))
            }
            None => {
                return Err(ApiError::not_found("unknown_model", format!("there is no model {model}; GET /v1/models lists them")))
            }
        };
        let (Some(artifact), Some(input)) = (&record.artifact, &record.input) else {
            return Err(ApiError::internal(format!("model {model} v{version} has no artifact recorded")));
        };
        let started = Instant::now();
        // Exactly the version registered: a later write under the key cannot change what is served.
        let bytes = self
            .objects
            .get_recorded(&self.bucket, &artifact.key, artifact.version_id.as_deref(), 1 << 30)
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "model_unavailable", format!("cannot read {}: {e}", artifact.key))
            })?;
        if hex::encode(Sha256::digest(&bytes)) != artifact.sha256 {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "model_unavailable",
                format!("{} does not match the sha256 the registry recorded; it will not be served", artifact.key),
            ));
        }
        let loaded = LoadedModel::load(&bytes, input, record.labels.len())
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "model_unavailable", e.to_string()))?;
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(model, version, load_ms, bytes = bytes.len(), "model loaded (fetched, sha256 checked, optimised)");
        Ok(Served { record, model: loaded })
    }

    pub fn table(&self) -> &dyn Table {
        self.table.as_ref()
    }
}
