//! A real nats-server for tests and benchmarks: started on a free loopback port with a
//! temporary store directory, killed (SIGKILL) and restarted on demand, stopped on drop.
//!
//! The binary is `$CAIRN_NATS_SERVER` if set, else `nats-server` on the `PATH`; `cargo xtask
//! test` finds or installs one (version [`crate::SERVER_VERSION_MIN`] or later) and sets the
//! variable. A missing or old binary is a test failure that says so, never a skipped test.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to accept connections after it was spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The nats-server binary the tests use, checked to be recent enough.
pub fn server_binary() -> PathBuf {
    let binary = std::env::var_os("CAIRN_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"));
    let output = Command::new(&binary)
        .arg("--version")
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run {} ({error}): the JetStream tests need nats-server {} or later; \
             `cargo xtask test` installs one, or set CAIRN_NATS_SERVER",
                binary.display(),
                crate::SERVER_VERSION_MIN
            )
        });
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .last()
        .and_then(crate::ServerVersion::parse)
        .unwrap_or_else(|| panic!("{} --version said {text:?}", binary.display()));
    assert!(
        version >= crate::SERVER_VERSION_MIN,
        "{} is nats-server {version}; the JetStream tests need {} or later",
        binary.display(),
        crate::SERVER_VERSION_MIN
    );
    binary
}

/// A free loopback port (the listener is closed before the port is used).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// How a server is configured.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// `jetstream { sync_interval: always }`: fsync before every acknowledgement.
    pub sync_always: bool,
    /// Cluster membership: (cluster name, this server's route port, every member's route port).
    pub cluster: Option<(String, u16, Vec<u16>)>,
}

/// A running (or killed) nats-server.
pub struct NatsServer {
    binary: PathBuf,
    dir: TempDir,
    name: String,
    port: u16,
    options: ServerOptions,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a single server with default options.
    pub fn start() -> NatsServer {
        NatsServer::start_with("n1", free_port(), ServerOptions::default())
    }

    /// Starts a server named `name` on `port`.
    pub fn start_with(name: &str, port: u16, options: ServerOptions) -> NatsServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut server = NatsServer {
            binary: server_binary(),
            dir,
            name: name.to_owned(),
            port,
            options,
            child: None,
        };
        server.spawn();
        server.wait_ready();
        server
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// Kills the server with SIGKILL: no flush, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server gracefully (SIGTERM: it flushes its files) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the killed server again on the same port and store directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready();
    }

    /// Starts the killed server again without waiting for it to accept connections (a cluster
    /// member waits for its routes).
    pub fn restart_no_wait(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Waits until the server accepts client connections.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "nats-server {} exited with {status} before accepting connections:\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nats-server {} did not accept connections on port {} within {START_TIMEOUT:?}:\n{}",
                self.name,
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.log_path()) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn spawn(&mut self) {
        let config = self.dir.path().join("server.conf");
        std::fs::write(&config, self.config_text()).expect("write the server configuration");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the server log");
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.binary.display()));
        self.child = Some(child);
    }

    fn config_text(&self) -> String {
        let mut text = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\njetstream {{\n  store_dir: {dir}\n{sync}}}\n",
            name = self.name,
            port = self.port,
            dir = quoted(&self.store_dir()),
            sync = if self.options.sync_always {
                "  sync_interval: always\n"
            } else {
                ""
            },
        );
        if let Some((cluster, own, members)) = &self.options.cluster {
            let routes = members
                .iter()
                .filter(|port| *port != own)
                .map(|port| format!("nats-route://127.0.0.1:{port}"))
                .collect::<Vec<_>>()
                .join(", ");
            text.push_str(&format!(
                "cluster {{\n  name: {cluster}\n  listen: 127.0.0.1:{own}\n  routes: [{routes}]\n}}\n"
            ));
        }
        text
    }
}

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A three-server JetStream cluster on loopback.
pub struct NatsCluster {
    /// The members.
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` servers that route to each other.
    pub fn start(size: usize, sync_always: bool) -> NatsCluster {
        let client_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let binary = server_binary();
        let mut servers: Vec<NatsServer> = (0..size)
            .map(|index| {
                let mut server = NatsServer {
                    binary: binary.clone(),
                    dir: tempfile::tempdir().expect("a temporary directory"),
                    name: format!("n{}", index + 1),
                    port: client_ports[index],
                    options: ServerOptions {
                        sync_always,
                        cluster: Some((
                            "cairn-test".into(),
                            route_ports[index],
                            route_ports.clone(),
                        )),
                    },
                    child: None,
                };
                server.spawn();
                server
            })
            .collect();
        for server in &mut servers {
            server.wait_ready();
        }
        NatsCluster { servers }
    }

    /// Every member's client URL, comma-separated (what `--store` takes).
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}
