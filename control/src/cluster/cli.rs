//! `sluice ca init` and `sluice ca issue`.

use std::path::PathBuf;

use clap::Subcommand;

use super::ca::{CA_CERT_FILE, CA_KEY_FILE, CaError, ClusterCa, NODE_VALIDITY_DAYS};

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Make a cluster CA: writes DIR/ca.pem (the certificate every node trusts) and
    /// DIR/ca.key (mode 0600; keep it off the nodes). Refuses to overwrite either.
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Issue a node certificate signed by the CA in DIR: writes NAME.pem and NAME.key
    /// (mode 0600) into --out (default: DIR). The certificate names the node
    /// NAME.sluice.internal and serves both ends of a link. Refuses to overwrite.
    Issue {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The node's name: 1-63 ASCII letters, digits and '-'.
        #[arg(long, value_name = "NAME")]
        node: String,
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Validity in days.
        #[arg(long, value_name = "N", default_value_t = NODE_VALIDITY_DAYS)]
        days: i64,
    },
}

/// Runs the command; returns what to print on success.
pub fn run_ca_command(cmd: &CaCommand) -> Result<String, CaError> {
    match cmd {
        CaCommand::Init { dir } => {
            let ca = ClusterCa::generate()?;
            ca.save(dir)?;
            Ok(format!(
                "wrote {} and {}",
                dir.join(CA_CERT_FILE).display(),
                dir.join(CA_KEY_FILE).display()
            ))
        }
        CaCommand::Issue {
            dir,
            node,
            out,
            days,
        } => {
            let ca = ClusterCa::load(dir)?;
            let cert = ca.issue_for_days(node, *days)?;
            let (cert_path, key_path) = cert.save(out.as_deref().unwrap_or(dir))?;
            Ok(format!(
                "wrote {} and {}",
                cert_path.display(),
                key_path.display()
            ))
        }
    }
}
