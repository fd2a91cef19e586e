use clap::{Parser, Subcommand};

use apprd::config::{Config, Overrides};

/// apprd: OCI Distribution and APPR app-registry APIs over one content-addressed store.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Shown under `serve --help` and `config check --help`.
const SETTINGS_NOTES: &str = "\
Precedence: flags, then environment, then the config file, then defaults.
`apprd config check` prints the effective settings (secrets masked).

Also read from the environment:
  APPRD_LOG                     log filter [default: info], e.g. apprd=debug,info
  AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
  AWS_WEB_IDENTITY_TOKEN_FILE   S3 endpoint, region and credentials (the AWS chain)
  OTEL_EXPORTER_OTLP_ENDPOINT   export traces over OTLP/HTTP to this collector
  OTEL_SERVICE_NAME             service name in traces [default: apprd]

Endpoints besides the APIs: /healthz (alive), /readyz (storage writable),
/metrics (Prometheus). SIGTERM stops accepting connections and lets in-flight
requests finish within --shutdown-grace-secs.";

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    #[command(after_help = SETTINGS_NOTES)]
    Serve(Overrides),
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective settings (secrets masked) and exit; fails on bad settings.
    #[command(after_help = SETTINGS_NOTES)]
    Check(Overrides),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(o) => {
            let config = Config::load(&o)?;
            let _telemetry = apprd::ops::telemetry::init(config.log_format);
            actix_web::rt::System::new().block_on(apprd::server::run(config))
        }
        Command::Config {
            command: ConfigCommand::Check(o),
        } => {
            let config = Config::load(&o)?;
            print!("{}", config.describe());
            Ok(())
        }
    }
}
