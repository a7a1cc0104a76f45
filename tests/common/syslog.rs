//! Syslog test helpers: alerts from replaying the committed captures, and a real rsyslogd
//! of the test's own on loopback (shared by syslog_rsyslog.rs and sockets.rs, each using a
//! part of it).
#![allow(dead_code)]
use egresswatch::alert::Alert;
use egresswatch::config::Config;
use egresswatch::pipeline::{self, ReplayOptions};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
pub const INSTALL: &str = "apt-get install rsyslog rsyslog-gnutls";
/// Bound on waiting for rsyslog to write what it got (not a performance threshold).
pub const PATIENCE: Duration = Duration::from_secs(60);

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn replay_alerts(pcap: &str, config: Option<&str>) -> Vec<Alert> {
    let config = match config {
        Some(c) => Config::load(&repo(c)).unwrap(),
        None => Config::default(),
    };
    let report = pipeline::replay(
        &config,
        &[repo(pcap)],
        &ReplayOptions::default(),
        &mut |_| Ok(()),
    )
    .unwrap();
    report.alerts
}

pub use crate::common::{free_tcp_port, free_udp_port};

pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Test certificates: a CA, a server certificate for 127.0.0.1 and localhost, a client one.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn make_pki(dir: &Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "egresswatch test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], "localhost");
    let (client_pem, client_key) = leaf(vec!["sensor.test".into()], "sensor.test");
    let pki = Pki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.server_cert, server_pem).unwrap();
    std::fs::write(&pki.server_key, server_key).unwrap();
    std::fs::write(&pki.client_cert, client_pem).unwrap();
    std::fs::write(&pki.client_key, client_key).unwrap();
    pki
}

#[derive(Clone, Copy, PartialEq)]
pub enum Input {
    Udp,
    Tcp,
    /// TLS, anonymous client.
    Tls,
    /// TLS, the client must present a certificate the CA signed.
    MutualTls,
}

/// An rsyslogd of our own: inputs on loopback, each writing the raw messages to `NAME.log`.
pub struct Rsyslog {
    dir: PathBuf,
    conf: PathBuf,
    inputs: Vec<(String, Input, u16)>,
    child: Option<Child>,
}

impl Rsyslog {
    /// Inputs on free ports.
    pub fn start(dir: &Path, pki: Option<&Pki>, inputs: &[(&str, Input)]) -> Rsyslog {
        let inputs: Vec<(&str, Input, u16)> = inputs
            .iter()
            .map(|&(name, kind)| {
                let port = if kind == Input::Udp {
                    free_udp_port()
                } else {
                    free_tcp_port()
                };
                (name, kind, port)
            })
            .collect();
        Rsyslog::start_on(dir, pki, &inputs)
    }

    /// Inputs on the ports given (a collector that comes up where the sensor already sends).
    pub fn start_on(dir: &Path, pki: Option<&Pki>, inputs: &[(&str, Input, u16)]) -> Rsyslog {
        let rsyslogd = Path::new("/usr/sbin/rsyslogd");
        assert!(
            rsyslogd.exists(),
            "rsyslogd not found; install it: {INSTALL}"
        );
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let inputs: Vec<(String, Input, u16)> = inputs
            .iter()
            .map(|&(name, kind, port)| (name.to_string(), kind, port))
            .collect();
        let mut conf = format!(
            "global(workDirectory=\"{}\" maxMessageSize=\"64k\"",
            work.display()
        );
        if let Some(p) = pki {
            assert!(
                Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so").exists()
                    || Command::new("dpkg")
                        .args(["-s", "rsyslog-gnutls"])
                        .output()
                        .is_ok_and(|o| o.status.success()),
                "rsyslog's GnuTLS driver is missing; install it: {INSTALL}"
            );
            conf.push_str(&format!(
                " defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" \
                 defaultNetstreamDriverKeyFile=\"{}\"",
                p.ca.display(),
                p.server_cert.display(),
                p.server_key.display()
            ));
        }
        conf.push_str(")\n");
        conf.push_str("template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n");
        if inputs.iter().any(|i| i.1 == Input::Udp) {
            conf.push_str("module(load=\"imudp\")\n");
        }
        if inputs.iter().any(|i| i.1 != Input::Udp) {
            conf.push_str("module(load=\"imtcp\")\n");
        }
        for (name, kind, port) in &inputs {
            let extra = match kind {
                Input::Udp | Input::Tcp => "",
                Input::Tls => {
                    " streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\""
                }
                Input::MutualTls => {
                    " streamDriver.name=\"gtls\" streamDriver.mode=\"1\" \
                     streamDriver.authMode=\"x509/certvalid\""
                }
            };
            let module = if *kind == Input::Udp {
                "imudp"
            } else {
                "imtcp"
            };
            conf.push_str(&format!(
                "input(type=\"{module}\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"{name}\"{extra})\n\
                 ruleset(name=\"{name}\") {{ action(type=\"omfile\" file=\"{}\" template=\"raw\") }}\n",
                dir.join(format!("{name}.log")).display()
            ));
        }
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut r = Rsyslog {
            dir: dir.to_path_buf(),
            conf: conf_path,
            inputs,
            child: None,
        };
        r.restart();
        r
    }

    pub fn port(&self, name: &str) -> u16 {
        self.inputs.iter().find(|i| i.0 == name).unwrap().2
    }

    pub fn url(&self, name: &str) -> String {
        let (_, kind, port) = self.inputs.iter().find(|i| i.0 == name).unwrap();
        let scheme = match kind {
            Input::Udp => "udp",
            Input::Tcp => "tcp",
            Input::Tls | Input::MutualTls => "tls",
        };
        format!("{scheme}://127.0.0.1:{port}")
    }

    /// Starts rsyslogd (again, same ports) and waits until every input takes messages.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new("/usr/sbin/rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&self.conf)
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("rsyslogd.stderr")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start rsyslogd ({e}); install it: {INSTALL}"));
        self.child = Some(child);
        for (name, kind, port) in self.inputs.clone() {
            match kind {
                Input::Udp => {
                    // UDP gives no sign of a listener: send probes until one is written.
                    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                    let log = self.dir.join(format!("{name}.log"));
                    wait_for("rsyslog's UDP input", || {
                        self.check_alive();
                        let _ = sock.send_to(b"<13>1 - - probe - - - probe", ("127.0.0.1", port));
                        std::fs::read_to_string(&log).is_ok_and(|s| s.contains(" probe "))
                    });
                }
                _ => wait_for("rsyslog's TCP input", || {
                    self.check_alive();
                    TcpStream::connect(("127.0.0.1", port)).is_ok()
                }),
            }
        }
    }

    pub fn check_alive(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            let err = std::fs::read_to_string(self.dir.join("rsyslogd.stderr")).unwrap_or_default();
            panic!("rsyslogd exited ({status}): {err}");
        }
    }

    /// SIGKILL, as a crash or an abrupt stop would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Messages written for one input, without the readiness probes.
    pub fn messages(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(format!("{name}.log")))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains(" probe "))
            .map(str::to_string)
            .collect()
    }

    pub fn wait_messages(&self, name: &str, n: usize) -> Vec<String> {
        wait_for(&format!("{n} messages on input {name}"), || {
            self.messages(name).len() >= n
        });
        self.messages(name)
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill();
        // Kept after a failure: rsyslogd.stderr and the logs explain it.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
