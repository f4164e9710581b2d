//! `cvops serve`: the inference endpoint's router (the one the infer Lambda runs) on a local
//! address, over the local registry and models bucket (`cvops_platform::endpoint`). An API key is
//! required unless `--no-auth` says otherwise, and `--no-auth` only on a loopback address.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use cvops_platform::endpoint::{LocalEndpoint, DEFAULT_HEADER_TIMEOUT};
use cvops_platform::LocalPlatform;

/// The environment variable the API key is read from (and removed from, once read).
pub const API_KEY_VAR: &str = "CVOPS_API_KEY";

/// Where the endpoint listens and who may call it: shared by `cvops serve` and `cvops up`.
#[derive(Debug, clap::Args)]
pub struct Listen {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Clients send it as `Authorization: Bearer <key>`. Prefer the environment variable: a key on
    /// the command line is visible to every user of the machine.
    #[arg(long, env = "CVOPS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Serve without an API key (only on a loopback address, such as 127.0.0.1).
    #[arg(long, conflicts_with = "api_key")]
    pub no_auth: bool,
    /// Seconds a client has to send a request's headers; a connection that takes longer, or sits
    /// idle that long, is closed.
    #[arg(long, env = "CVOPS_HEADER_TIMEOUT_SECONDS", default_value_t = DEFAULT_HEADER_TIMEOUT.as_secs_f64())]
    pub header_timeout: f64,
}

impl Listen {
    /// The API key to require, refusing to serve without one unless `--no-auth` says so, and
    /// refusing `--no-auth` on an address other machines can reach.
    pub fn api_key(&self) -> anyhow::Result<Option<String>> {
        if self.api_key.is_none() && !self.no_auth {
            bail!("set an API key in CVOPS_API_KEY (or --api-key), or pass --no-auth to serve without one on 127.0.0.1");
        }
        if self.no_auth {
            let reachable: Vec<SocketAddr> = self.resolved()?.into_iter().filter(|a| !a.ip().is_loopback()).collect();
            if let Some(addr) = reachable.first() {
                bail!(
                    "--no-auth serves without a key, so it only listens on a loopback address (127.0.0.1, [::1]); {addr} can be reached from other machines: set CVOPS_API_KEY instead"
                );
            }
        }
        Ok(self.api_key.clone())
    }

    pub fn header_timeout(&self) -> anyhow::Result<Duration> {
        if !(self.header_timeout.is_finite() && self.header_timeout > 0.0) {
            bail!("--header-timeout is {}; give a positive number of seconds", self.header_timeout);
        }
        Ok(Duration::from_secs_f64(self.header_timeout))
    }

    fn resolved(&self) -> anyhow::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> =
            self.addr.to_socket_addrs().with_context(|| format!("{} is not an address to listen on", self.addr))?.collect();
        if addrs.is_empty() {
            bail!("{} resolves to no address", self.addr);
        }
        Ok(addrs)
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
    let header_timeout = args.listen.header_timeout()?;
    let platform = LocalPlatform::open(data_dir)?;
    let endpoint = LocalEndpoint::new(&platform, api_key, Duration::from_secs_f64(args.alias_check.max(0.0)))?
        .with_header_timeout(header_timeout);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(addr: &str, no_auth: bool) -> Listen {
        Listen { addr: addr.into(), api_key: None, no_auth, header_timeout: 10.0 }
    }

    #[test]
    fn no_auth_is_refused_on_an_address_other_machines_reach() {
        for addr in ["0.0.0.0:8080", "[::]:8080"] {
            let refused = listen(addr, true).api_key().unwrap_err().to_string();
            assert!(refused.contains("loopback") && refused.contains("CVOPS_API_KEY"), "{refused}");
        }
        for addr in ["127.0.0.1:8080", "[::1]:0", "localhost:8080"] {
            assert_eq!(listen(addr, true).api_key().unwrap(), None, "{addr}");
        }
        assert!(listen("127.0.0.1:8080", false).api_key().unwrap_err().to_string().contains("CVOPS_API_KEY"));
        let with_key = Listen { api_key: Some("k".into()), ..listen("0.0.0.0:8080", false) };
        assert_eq!(with_key.api_key().unwrap().as_deref(), Some("k"), "a key may serve on any address");
    }
}
