//! A real nats-server with JetStream of the test's own, on loopback and a free port, its
//! store in a temporary directory; killed when dropped. Installed by scripts/setup.sh --test.
#![allow(dead_code)]
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const INSTALL: &str = "apt-get install nats-server";

pub struct NatsServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts `nats-server -js` storing in `dir` and waits until it takes connections.
    pub fn start(dir: &Path) -> NatsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = NatsServer {
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts it (again: same port and store).
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        std::fs::create_dir_all(self.dir.join("store")).unwrap();
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.join("store"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("nats-server.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server ({e}); install it: {INSTALL}"));
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log =
                    std::fs::read_to_string(self.dir.join("nats-server.log")).unwrap_or_default();
                panic!("nats-server exited ({status}): {log}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
