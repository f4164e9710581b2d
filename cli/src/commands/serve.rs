//! `cvops serve`: the inference endpoint's router (the one the infer Lambda runs) on a local
//! address, over the local registry and models bucket. An API key is required unless `--no-auth`
//! says otherwise.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use cvops_infer::{Feed, InferConfig, Models};

use crate::platform::{LocalPlatform, MODELS_BUCKET, STORE_BUCKET};

/// Where the endpoint listens and who may call it: shared by `cvops serve` and `cvops up`.
#[derive(Debug, clap::Args)]
pub struct Listen {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Clients send it as `Authorization: Bearer <key>`.
    #[arg(long, env = "CVOPS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Serve without an API key (only on an address no one else can reach).
    #[arg(long, conflicts_with = "api_key")]
    pub no_auth: bool,
}

impl Listen {
    /// The API key to require, refusing to serve without one unless `--no-auth` says so.
    pub fn api_key(&self) -> anyhow::Result<Option<String>> {
        if self.api_key.is_none() && !self.no_auth {
            bail!("set an API key with --api-key or CVOPS_API_KEY, or pass --no-auth to serve without one");
        }
        Ok(self.api_key.clone())
    }

    pub async fn bind(&self) -> anyhow::Result<tokio::net::TcpListener> {
        tokio::net::TcpListener::bind(&self.addr).await.with_context(|| format!("cannot listen on {}", self.addr))
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub listen: Listen,
    /// Seconds between reads of the production alias: a promotion is served within this time.
    #[arg(long, default_value_t = 2.0)]
    pub alias_check: f64,
}

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let api_key = args.listen.api_key()?;
    let (platform, _) = LocalPlatform::open(data_dir, LocalPlatform::ingest_config_from_env()?)?;
    let endpoint = Endpoint::new(&platform, api_key, Duration::from_secs_f64(args.alias_check.max(0.0)))?;
    let listener = args.listen.bind().await?;
    println!(
        "serving http://{} (POST /v1/models/{{name}}/predict, GET /v1/models, GET /healthz); Ctrl-C stops",
        listener.local_addr()?
    );
    endpoint
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

/// The endpoint over the local platform: the router the infer Lambda runs, and its monitoring
/// feed into the local table.
pub struct Endpoint {
    pub router: axum::Router,
    pub feed: Arc<Feed>,
    flush_every: Duration,
}

impl Endpoint {
    pub fn new(platform: &LocalPlatform, api_key: Option<String>, alias_check: Duration) -> anyhow::Result<Self> {
        let mut config = InferConfig::from_lookup(|name| match name {
            "CVOPS_MODELS_BUCKET" => Some(MODELS_BUCKET.to_owned()),
            "CVOPS_STORE_BUCKET" => Some(STORE_BUCKET.to_owned()),
            other => std::env::var(other).ok(),
        })
        .map_err(anyhow::Error::msg)?;
        config.api_key = api_key;
        config.alias_check = alias_check;
        let models =
            Arc::new(Models::new(platform.table.clone(), platform.objects.clone(), MODELS_BUCKET.into(), config.alias_check));
        let feed = Arc::new(Feed::new(
            platform.table.clone(),
            platform.objects.clone(),
            platform.clock.clone(),
            config.review_bucket.clone(),
            config.review_sample_every,
        ));
        let flush_every = config.monitor_flush;
        let fed = config.monitoring.then(|| feed.clone());
        Ok(Self { router: cvops_infer::router(models, config, fed), feed, flush_every })
    }

    /// Serves until `shutdown` completes, then writes the last monitoring counters.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let flusher = self.feed.spawn_flusher(self.flush_every);
        axum::serve(listener, self.router).with_graceful_shutdown(shutdown).await?;
        flusher.abort();
        self.feed.flush().await.context("writing the last monitoring counters")?;
        Ok(())
    }
}
