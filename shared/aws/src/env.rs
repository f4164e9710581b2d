//! Reading the names of deployed resources from the environment, once, at cold start.

#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is not set; the function's template must set it")]
pub struct MissingVariable(pub &'static str);

pub fn required(name: &'static str) -> Result<String, MissingVariable> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or(MissingVariable(name))
}

/// Logs as JSON when Lambda's advanced logging asks for it (`AWS_LAMBDA_LOG_FORMAT=JSON`), as
/// text otherwise; the level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`, default info.
pub fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(level.to_lowercase())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).without_time().with_target(false);
    if std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
}
