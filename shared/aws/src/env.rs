//! The functions' logging, set up once at cold start. (Configuration is read with
//! `cvops_core::config`.)

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
