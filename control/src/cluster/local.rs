//! `sluice cluster`: a local cascade of N nodes on this machine, one process each, for
//! development and demos.
//!
//! The runner makes an ephemeral CA and a certificate per node in a private temporary
//! directory, writes one node configuration per node there, starts `sluice node` for
//! each (this same executable), and prints `node <id> region <region> <url>` per node
//! once it answers HTTP. Node 0 is every other node's seed. SIGINT or SIGTERM stops
//! them all; a node that exits on its own is reported and the others are stopped.
//!
//! Ports, for node `i` (from 0) and base port `P`: HTTP on TCP `P+i`, media on UDP
//! `P+i`, the QUIC link on UDP `P+100+i`, all on 127.0.0.1. Hence at most
//! [`MAX_NODES`] nodes.

use super::ClusterCa;
use crate::config::{NodeConfig, NodeSection};
use anyhow::{Context, bail};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::signal::unix::{Signal, SignalKind, signal};

pub const DEFAULT_BASE_PORT: u16 = 8080;
/// The link ports sit this far above the HTTP and media ports.
pub const LINK_PORT_OFFSET: u16 = 100;
pub const MAX_NODES: usize = LINK_PORT_OFFSET as usize;

/// How long a node may take to answer HTTP after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Run a local cascade of N nodes on this machine, one process and one region each.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// How many nodes (1 to 100).
    #[arg(long, value_name = "N")]
    pub nodes: usize,
    /// Node i serves HTTP on 127.0.0.1:P+i (TCP) and media on UDP P+i; its QUIC link
    /// listens on UDP P+100+i.
    #[arg(long, value_name = "P", default_value_t = DEFAULT_BASE_PORT)]
    pub base_port: u16,
}

/// Where one node of the local cluster lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub name: String,
    pub region: String,
    pub http: SocketAddr,
    pub media: SocketAddr,
    pub link: SocketAddr,
}

impl LocalNode {
    pub fn url(&self) -> String {
        format!("http://{}/", self.http)
    }
}

/// The nodes `--nodes n --base-port base` asks for: `n1`..`nN` in regions
/// `local-1`..`local-N`, ports as the module documentation says.
pub fn plan(n: usize, base: u16) -> anyhow::Result<Vec<LocalNode>> {
    if !(1..=MAX_NODES).contains(&n) {
        bail!("--nodes must be 1 to {MAX_NODES}, not {n}");
    }
    let top = usize::from(base) + usize::from(LINK_PORT_OFFSET) + n - 1;
    if base == 0 || top > usize::from(u16::MAX) {
        bail!(
            "--base-port {base} leaves no room for {n} nodes: ports {base} to {top} must lie in 1..=65535"
        );
    }
    let at = |port: usize| SocketAddr::from((Ipv4Addr::LOCALHOST, port as u16));
    Ok((0..n)
        .map(|i| {
            let p = usize::from(base) + i;
            LocalNode {
                name: format!("n{}", i + 1),
                region: format!("local-{}", i + 1),
                http: at(p),
                media: at(p),
                link: at(p + usize::from(LINK_PORT_OFFSET)),
            }
        })
        .collect())
}

/// Fails, naming the port and its use, when any planned port is taken, so nothing is
/// started half way. (A port can still be taken between this check and the node's own
/// bind; the node then fails and the runner stops the rest.)
pub fn check_ports(nodes: &[LocalNode]) -> anyhow::Result<()> {
    for n in nodes {
        let busy = |what: &str, addr: SocketAddr, e: std::io::Error| {
            anyhow::anyhow!(
                "{what} port {} for node {} is not available ({e}); choose another --base-port",
                addr.port(),
                n.name
            )
        };
        TcpListener::bind(n.http).map_err(|e| busy("HTTP (TCP)", n.http, e))?;
        UdpSocket::bind(n.media).map_err(|e| busy("media (UDP)", n.media, e))?;
        UdpSocket::bind(n.link).map_err(|e| busy("link (UDP)", n.link, e))?;
    }
    Ok(())
}

/// The configuration node `i` runs with; `dir` holds the CA and node certificates.
pub fn node_config(nodes: &[LocalNode], i: usize, dir: &Path) -> anyhow::Result<NodeConfig> {
    let n = nodes.get(i).context("no such node")?;
    let mut c = NodeConfig {
        node: NodeSection {
            id: Some(n.name.clone()),
            region: n.region.clone(),
        },
        ..NodeConfig::default()
    };
    c.http.listen = n.http;
    c.media.bind = n.media;
    // Several nodes share this machine's cores.
    c.media.workers = 1;
    c.media.pin_cores = false;
    c.cluster.listen = Some(n.link);
    if i > 0 {
        c.cluster.seeds = vec![nodes[0].link];
    }
    c.cluster.ca_cert = Some(dir.join("ca.pem"));
    c.cluster.cert = Some(dir.join(format!("{}.pem", n.name)));
    c.cluster.key = Some(dir.join(format!("{}.key", n.name)));
    // The nodes share the terminal; RUST_LOG still overrides this.
    c.log.level = "warn,dtls=error".to_owned();
    c.validate().context("local node configuration")?;
    Ok(c)
}

/// A private directory removed when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::env::temp_dir().join(format!(
            "sluice-cluster-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        // `create`, not `create_all`: an existing path (or a planted link) is refused.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the CA, the node certificates and one `<name>.toml` per node into `dir`.
fn write_files(nodes: &[LocalNode], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let ca = ClusterCa::ephemeral().context("making the ephemeral CA")?;
    ca.save(dir).context("saving the ephemeral CA")?;
    let mut configs = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        ca.issue(&n.name)
            .and_then(|cert| cert.save(dir))
            .with_context(|| format!("issuing the certificate of {}", n.name))?;
        let text = toml::to_string(&node_config(nodes, i, dir)?)
            .context("writing a node configuration")?;
        let path = dir.join(format!("{}.toml", n.name));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        configs.push(path);
    }
    Ok(configs)
}

/// The running node processes, killed and reaped on every way out.
struct Children {
    nodes: Vec<(String, Child)>,
}

impl Children {
    fn spawn(&mut self, exe: &Path, name: &str, config: &Path) -> anyhow::Result<()> {
        let child = Command::new(exe)
            .arg("node")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            // Our stdout is the one line per node; the nodes' logs go to stderr.
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting node {name} ({})", exe.display()))?;
        self.nodes.push((name.to_owned(), child));
        Ok(())
    }

    /// The first node found exited, with its status.
    fn exited(&mut self) -> Option<(String, ExitStatus)> {
        self.nodes
            .iter_mut()
            .find_map(|(name, child)| match child.try_wait() {
                Ok(Some(status)) => Some((name.clone(), status)),
                _ => None,
            })
    }

    /// Kills every node and waits for each, so none outlives the runner.
    async fn stop(&mut self) {
        for (_, child) in &mut self.nodes {
            let _ = child.start_kill();
        }
        for (name, child) in &mut self.nodes {
            if let Err(e) = child.wait().await {
                eprintln!("sluice cluster: waiting for node {name}: {e}");
            }
        }
        self.nodes.clear();
    }
}

/// What ended the cluster.
enum End {
    Signal,
    NodeExited(String, ExitStatus),
}

/// `sluice cluster`: runs until a signal or a node's exit; see the module docs.
pub fn run(args: &ClusterArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice cluster: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_async(args)) {
        Ok(End::Signal) => ExitCode::SUCCESS,
        Ok(End::NodeExited(name, status)) => {
            eprintln!("sluice cluster: node {name} exited ({status}); stopped the others");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("sluice cluster: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_async(args: &ClusterArgs) -> anyhow::Result<End> {
    // Installed first, so a signal during startup still stops (and cleans up) everything.
    let mut signals = Signals::new()?;
    let nodes = plan(args.nodes, args.base_port)?;
    check_ports(&nodes)?;
    let exe = std::env::current_exe().context("locating the sluice executable")?;
    let dir = TempDir::new()?;
    let configs = write_files(&nodes, &dir.0)?;
    let mut children = Children { nodes: Vec::new() };
    let end = tokio::select! {
        r = start_and_watch(&exe, &nodes, &configs, &mut children) => r,
        () = signals.recv() => Ok(End::Signal),
    };
    children.stop().await;
    drop(dir);
    end
}

/// Starts the seed, then the others, prints each node's line once it answers, and
/// returns when a node exits.
async fn start_and_watch(
    exe: &Path,
    nodes: &[LocalNode],
    configs: &[PathBuf],
    children: &mut Children,
) -> anyhow::Result<End> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .context("HTTP client")?;
    // The others announce to the seed once, at start: it must be listening by then.
    let seed_first = [(0..1), (1..nodes.len())];
    for range in seed_first {
        for i in range.clone() {
            children.spawn(exe, &nodes[i].name, &configs[i])?;
        }
        for node in &nodes[range] {
            if let Some(end) = wait_up(&http, node, children).await? {
                return Ok(end);
            }
            println!("node {} region {} {}", node.name, node.region, node.url());
        }
    }
    loop {
        if let Some((name, status)) = children.exited() {
            return Ok(End::NodeExited(name, status));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `GET /cluster` until the node answers; `Some` when a node exited instead.
async fn wait_up(
    http: &reqwest::Client,
    node: &LocalNode,
    children: &mut Children,
) -> anyhow::Result<Option<End>> {
    let url = format!("{}cluster", node.url());
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Some((name, status)) = children.exited() {
            return Ok(Some(End::NodeExited(name, status)));
        }
        if let Ok(r) = http.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(None);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "node {} did not answer {url} within {}s",
                node.name,
                START_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// SIGINT (Ctrl-C) and SIGTERM.
struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_spreads_ports_and_names() {
        let p = plan(3, 18080).unwrap();
        assert_eq!(
            p.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["n1", "n2", "n3"]
        );
        assert_eq!(p[2].region, "local-3");
        assert_eq!(p[2].http.to_string(), "127.0.0.1:18082");
        assert_eq!(p[2].media.to_string(), "127.0.0.1:18082");
        assert_eq!(p[2].link.to_string(), "127.0.0.1:18182");
        assert_eq!(p[0].url(), "http://127.0.0.1:18080/");
    }

    #[test]
    fn plan_refuses_bad_sizes_and_ports() {
        assert!(plan(0, 8080).is_err());
        assert!(plan(MAX_NODES + 1, 8080).is_err());
        assert!(plan(MAX_NODES, 8080).is_ok());
        assert!(plan(1, 0).is_err());
        assert!(plan(2, u16::MAX - LINK_PORT_OFFSET - 1).is_ok());
        assert!(plan(3, u16::MAX - LINK_PORT_OFFSET - 1).is_err());
    }

    #[test]
    fn node_configs_validate_and_round_trip_through_toml() {
        let nodes = plan(3, 18080).unwrap();
        let dir = Path::new("/tmp/x");
        let seed = node_config(&nodes, 0, dir).unwrap();
        assert!(seed.cluster.seeds.is_empty());
        let c = node_config(&nodes, 2, dir).unwrap();
        assert_eq!(c.cluster.seeds, vec![nodes[0].link]);
        assert_eq!(c.node.id.as_deref(), Some("n3"));
        assert_eq!(c.cluster.cert, Some(dir.join("n3.pem")));
        let text = toml::to_string(&c).unwrap();
        let back: NodeConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn a_taken_port_is_named() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        // Ephemeral ports end well below 65535 - 100.
        let nodes = plan(1, port).unwrap();
        let e = check_ports(&nodes).unwrap_err().to_string();
        assert!(e.contains(&format!("HTTP (TCP) port {port}")), "{e}");
        assert!(e.contains("n1"), "{e}");
    }
}
