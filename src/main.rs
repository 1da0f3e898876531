//! The `storgate` command line: parses arguments and hands each subcommand
//! to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use storgate::config;
use storgate::daemon::{self, MountArgs};

#[derive(Parser)]
#[command(
    name = "storgate",
    version,
    about = "One POSIX tree over local directories and S3 buckets, with workflows"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount the configured buckets at MOUNTPOINT.
    Mount {
        /// Config file (default: $STORGATE_CONFIG, else /etc/storgate/storgate.json).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Mount only this bucket, at the mount root.
        #[arg(long)]
        bucket: Option<String>,
        /// Stay in the foreground (for systemd); log to stderr.
        #[arg(short = 'f', long)]
        foreground: bool,
        /// Mount options (comma-separated): allow_other, ro, uid=N, gid=N,
        /// no_passthrough (serve reads and writes in the daemon), lazy_origins
        /// (mount even if an S3 endpoint fails its check at start: the origin
        /// is logged as degraded and its calls fail until it answers; without
        /// it, mount exits non-zero naming the endpoint).
        #[arg(short = 'o', value_name = "OPTS")]
        options: Vec<String>,
        mountpoint: PathBuf,
    },
    /// Validate the configuration and print a summary.
    Check {
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// Batch scans: run one now.
    Batch {
        #[command(subcommand)]
        command: BatchCommand,
    },
    /// Workflows: run one on given items.
    Workflow {
        #[command(subcommand)]
        command: WorkflowCommand,
    },
}

#[derive(Subcommand)]
enum BatchCommand {
    /// Run the onBatch scan INDEX of BUCKET (all its enabled scans without
    /// INDEX) now, in the foreground.
    Run {
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        bucket: String,
        index: Option<usize>,
    },
}

#[derive(Subcommand)]
enum WorkflowCommand {
    /// Run WORKFLOW of BUCKET on the items at bucket paths PATH… now.
    Run {
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
        /// Print the rendered savePath of every task; write nothing.
        #[arg(long)]
        dry_run: bool,
        bucket: String,
        workflow: String,
        #[arg(required = true)]
        paths: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Mount {
            config: cfg,
            bucket,
            foreground,
            options,
            mountpoint,
        } => daemon::run_mount(MountArgs {
            config: config::resolve_config_path(cfg.as_deref()),
            bucket,
            foreground,
            options,
            mountpoint,
        }),
        Command::Check { config: cfg } => {
            config::check_command(&config::resolve_config_path(cfg.as_deref()))
        }
        Command::Batch {
            command:
                BatchCommand::Run {
                    config: cfg,
                    bucket,
                    index,
                },
        } => storgate::cli::batch_run::run_command(
            &config::resolve_config_path(cfg.as_deref()),
            &bucket,
            index,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ),
        Command::Workflow {
            command:
                WorkflowCommand::Run {
                    config: cfg,
                    dry_run,
                    bucket,
                    workflow,
                    paths,
                },
        } => storgate::cli::workflow_run::run_command(
            &config::resolve_config_path(cfg.as_deref()),
            dry_run,
            &bucket,
            &workflow,
            &paths,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        ),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
