use clap::{Parser, Subcommand};

use apprd::config::{Config, LogFormat, Overrides};

/// apprd: OCI Distribution and APPR app-registry APIs over one content-addressed store.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
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
    Check(Overrides),
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("APPRD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(o) => {
            let config = Config::load(&o)?;
            init_logs(config.log_format);
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
