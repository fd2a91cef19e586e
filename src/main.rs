use clap::{Parser, Subcommand};

use apprd::config::{Config, Overrides};

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
