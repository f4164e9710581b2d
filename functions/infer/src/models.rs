//! The models the endpoint serves: loaded once per container and version, verified against the
//! registry's sha256, kept for the container's life. The production alias is read again at most
//! every `alias_check`; a newly promoted version is loaded and swapped in, while requests already
//! holding the old one finish on it (they hold an `Arc`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cvops_core::ports::{ObjectStore, ObjectStoreError, ObjectStoreExt, Ports, Table, TableError};
use cvops_core::registry::{self, ModelVersion, VersionStatus};
use cvops_inference::Runner;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex as AsyncMutex;

/// Why a model cannot be served. The router maps each case to its HTTP status and code
/// (`crate::error`); the cache knows nothing of HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("there is no model {0}; GET /v1/models lists them")]
    UnknownModel(String),
    #[error("model {model} has no version {version}")]
    UnknownVersion { model: String, version: u32 },
    #[error("model {model} v{version} was rejected; it is never served")]
    RejectedVersion { model: String, version: u32 },
    #[error("model {0} has no production version yet; promote one with `cvops promote {0} VERSION`")]
    NoProduction(String),
    #[error("the registry cannot be read: {0}")]
    Registry(#[from] TableError),
    #[error("model {model} v{version} has no artifact recorded")]
    NoArtifact { model: String, version: u32 },
    #[error("cannot read {key}: {source}")]
    Unreadable { key: String, source: ObjectStoreError },
    #[error("{0} does not match the sha256 the registry recorded; it will not be served")]
    Tampered(String),
    #[error("{0}")]
    Unloadable(String),
}

/// A loaded version with what its answers need.
#[derive(Debug)]
pub struct Served {
    pub record: ModelVersion,
    pub model: Runner,
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
    pub fn new(ports: &Ports, bucket: String, alias_check: std::time::Duration) -> Self {
        Self {
            table: ports.table.clone(),
            objects: ports.objects.clone(),
            bucket,
            alias_check,
            loaded: Mutex::default(),
            production: Mutex::default(),
            loading: AsyncMutex::new(()),
        }
    }

    /// The version to serve: `pinned`, or production.
    pub async fn resolve(&self, model: &str, pinned: Option<u32>) -> Result<Arc<Served>, ModelsError> {
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

    async fn production_version(&self, model: &str) -> Result<u32, ModelsError> {
        if let Some((version, read_at)) = self.production.lock().expect("models poisoned").get(model) {
            if read_at.elapsed() < self.alias_check {
                return Ok(*version);
            }
        }
        match registry::production(self.table.as_ref(), model).await? {
            Some((alias, _)) => {
                self.production.lock().expect("models poisoned").insert(model.to_owned(), (alias.version, Instant::now()));
                Ok(alias.version)
            }
            None if self.exists(model).await? => Err(ModelsError::NoProduction(model.to_owned())),
            None => Err(ModelsError::UnknownModel(model.to_owned())),
        }
    }

    async fn exists(&self, model: &str) -> Result<bool, ModelsError> {
        Ok(registry::models(self.table.as_ref()).await?.iter().any(|m| m == model))
    }

    async fn load(&self, model: &str, version: u32) -> Result<Served, ModelsError> {
        let record = match registry::get_version(self.table.as_ref(), model, version).await? {
            Some(record) if record.status == VersionStatus::Registered => record,
            Some(_) => return Err(ModelsError::RejectedVersion { model: model.to_owned(), version }),
            None if self.exists(model).await? => return Err(ModelsError::UnknownVersion { model: model.to_owned(), version }),
            None => return Err(ModelsError::UnknownModel(model.to_owned())),
        };
        let (Some(artifact), Some(input)) = (&record.artifact, &record.input) else {
            return Err(ModelsError::NoArtifact { model: model.to_owned(), version });
        };
        let started = Instant::now();
        // Exactly the version registered: a later write under the key cannot change what is served.
        let bytes = self
            .objects
            .get_recorded(&self.bucket, &artifact.key, artifact.version_id.as_deref(), 1 << 30)
            .await
            .map_err(|source| ModelsError::Unreadable { key: artifact.key.clone(), source })?;
        if hex::encode(Sha256::digest(&bytes)) != artifact.sha256 {
            return Err(ModelsError::Tampered(artifact.key.clone()));
        }
        let loaded = Runner::load(&bytes, record.task, input, record.labels.len(), record.output_layout)
            .map_err(|e| ModelsError::Unloadable(e.to_string()))?;
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(model, version, load_ms, bytes = bytes.len(), "model loaded (fetched, sha256 checked, optimised)");
        Ok(Served { record, model: loaded })
    }

    pub fn table(&self) -> &dyn Table {
        self.table.as_ref()
    }
}
