//! `cvops serve`: the inference endpoint's router (the one the infer Lambda runs) on a local
//! address, over the local registry and models bucket. An API key is required unless `--no-auth`
//! says otherwise.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use cvops_infer::{InferConfig, Models};

use crate::platform::{LocalPlatform, MODELS_BUCKET};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Clients send it as `Authorization: Bearer <key>`.
    #[arg(long, env = "CVOPS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Serve without an API key (only on an address no one else can reach).
    #[arg(long, conflicts_with = "api_key")]
    pub no_auth: bool,
    /// Seconds between reads of the production alias: a promotion is served within this time.
    #[arg(long, default_value_t = 2.0)]
    pub alias_check: f64,
}

pub async fn run(data_dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    if args.api_key.is_none() && !args.no_auth {
        bail!("set an API key with --api-key or CVOPS_API_KEY, or pass --no-auth to serve without one");
    }
    let (platform, _) = LocalPlatform::open(data_dir, LocalPlatform::ingest_config_from_env()?)?;
    let mut config = InferConfig::from_lookup(|name| match name {
        "CVOPS_MODELS_BUCKET" => Some(MODELS_BUCKET.to_owned()),
        other => std::env::var(other).ok(),
    })
    .map_err(anyhow::Error::msg)?;
    config.api_key = args.api_key.clone();
    config.alias_check = Duration::from_secs_f64(args.alias_check.max(0.0));
    let models =
        Arc::new(Models::new(platform.table.clone(), platform.objects.clone(), MODELS_BUCKET.into(), config.alias_check));
    let listener = tokio::net::TcpListener::bind(&args.addr).await.with_context(|| format!("cannot listen on {}", args.addr))?;
    println!(
        "serving http://{} (POST /v1/models/{{name}}/predict, GET /v1/models, GET /healthz); Ctrl-C stops",
        listener.local_addr()?
    );
    axum::serve(listener, cvops_infer::router(models, config))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}
