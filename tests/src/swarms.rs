//! Discovery infrastructure the tests start themselves, on loopback or inside network
//! namespaces they create and remove: Debian's opentracker, aquatic's UDP tracker, a local
//! Mainline DHT, and a bridged LAN of namespaces.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use zestd::discovery::bencode::{self, Value};
use zestd::discovery::swarm::SwarmKey;

/// An opentracker process (Debian's build is whitelist-only) on a loopback port.
pub struct Opentracker {
    child: Child,
    pub port: u16,
    /// Its UDP (BEP 15) port; the same swarms as over HTTP.
    pub udp_port: u16,
}

impl Opentracker {
    /// Starts opentracker accepting exactly `keys`.
    pub fn start(dir: &Path, keys: &[SwarmKey]) -> Opentracker {
        std::fs::create_dir_all(dir).expect("tracker dir");
        let whitelist = dir.join("whitelist");
        let text: String = keys.iter().map(|k| format!("{}\n", k.hex())).collect();
        std::fs::write(&whitelist, text).expect("whitelist");
        let port = free_tcp_port();
        let udp_port = crate::harness::free_udp_port();
        let conf = dir.join("opentracker.conf");
        std::fs::write(
            &conf,
            format!(
                "listen.tcp 127.0.0.1:{port}\nlisten.udp 127.0.0.1:{udp_port}\naccess.whitelist {}\n",
                whitelist.display()
            ),
        )
        .expect("tracker config");
        let bin = which("opentracker").unwrap_or_else(|| {
            panic!("opentracker is not installed: scripts/test.sh installs it (apt-get install opentracker)")
        });
        let child = Command::new(bin)
            .arg("-f")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting opentracker");
        let t = Opentracker {
            child,
            port,
            udp_port,
        };
        assert!(
            crate::harness::wait_until(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "opentracker did not start"
        );
        t
    }

    pub fn udp_announce_url(&self) -> String {
        format!("udp://127.0.0.1:{}/announce", self.udp_port)
    }

    pub fn announce_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    /// Announces `n` leechers of `key` that do not exist (nothing answers on their
    /// ports), so the tracker counts a swarm larger than the daemons that really pull:
    /// what a node of a large fleet sees, with only a few of its members in view.
    pub fn announce_phantoms(&self, key: &SwarmKey, n: usize) {
        // Distinct ports: opentracker keeps one peer per address and port, and a port freed
        // by one pick may be handed out again by the next (the likeliest reason a run
        // counted 9 phantoms of 10).
        for (i, port) in free_tcp_ports(n).into_iter().enumerate() {
            let peer_id: String = format!("-PH0001-{i:012}");
            let path = format!(
                "/announce?info_hash={}&peer_id={peer_id}&port={port}&uploaded=0&downloaded=0&left=1000000&compact=1&numwant=0&event=started",
                key.url_encoded()
            );
            let refused = |body: &[u8]| body.windows(14).any(|w| w == b"failure reason");
            // opentracker listens before it has read its whitelist: an announce the moment
            // it starts may be refused as not authorized.
            let mut body = http_get(self.port, &path);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while refused(&body) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                body = http_get(self.port, &path);
            }
            assert!(
                !refused(&body),
                "opentracker refused a phantom announce: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    /// (seeders, leechers) the tracker holds for `key`, from its scrape reply.
    pub fn scrape(&self, key: &SwarmKey) -> (i64, i64) {
        let body = http_get(
            self.port,
            &format!("/scrape?info_hash={}", key.url_encoded()),
        );
        let v = bencode::decode(&body).expect("scrape reply is bencode");
        let Some(Value::Dict(files)) = v.get("files") else {
            return (0, 0);
        };
        match files.get(&key.0[..]) {
            Some(f) => (
                f.get("complete").and_then(Value::int).unwrap_or(0),
                f.get("incomplete").and_then(Value::int).unwrap_or(0),
            ),
            None => (0, 0),
        }
    }
}

impl Drop for Opentracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An aquatic_udp process (the aquatic project's BEP 15 tracker, from crates.io) on a
/// loopback port: a second tracker implementation beside opentracker.
pub struct AquaticUdp {
    child: Child,
    pub port: u16,
}

impl AquaticUdp {
    pub fn start(dir: &Path) -> AquaticUdp {
        std::fs::create_dir_all(dir).expect("tracker dir");
        let port = crate::harness::free_udp_port();
        let conf = dir.join("aquatic_udp.toml");
        std::fs::write(
            &conf,
            format!(
                "socket_workers = 1\nlog_level = \"warn\"\n\n[network]\naddress = \"127.0.0.1:{port}\"\n\n[access_list]\nmode = \"off\"\n"
            ),
        )
        .expect("tracker config");
        let bin = which("aquatic_udp")
            .or_else(|| {
                let home = std::env::var_os("HOME")?;
                let p = Path::new(&home).join(".cargo/bin/aquatic_udp");
                p.exists().then_some(p)
            })
            .unwrap_or_else(|| {
                panic!("aquatic_udp is not installed: scripts/test.sh installs it (cargo install aquatic_udp)")
            });
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting aquatic_udp");
        let t = AquaticUdp { child, port };
        assert!(
            crate::harness::wait_until(Duration::from_secs(10), || t.connect().is_some()),
            "aquatic_udp did not start"
        );
        t
    }

    pub fn announce_url(&self) -> String {
        format!("udp://127.0.0.1:{}/announce", self.port)
    }

    fn socket(&self) -> Option<std::net::UdpSocket> {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        s.connect(("127.0.0.1", self.port)).ok()?;
        Some(s)
    }

    /// A BEP 15 connection id, or None if the tracker does not answer.
    fn connect(&self) -> Option<(std::net::UdpSocket, u64)> {
        let s = self.socket()?;
        let mut req = Vec::with_capacity(16);
        req.extend_from_slice(&0x0417_2710_1980u64.to_be_bytes());
        req.extend_from_slice(&0u32.to_be_bytes());
        req.extend_from_slice(&0x5a45_5354u32.to_be_bytes());
        s.send(&req).ok()?;
        let mut buf = [0u8; 64];
        let n = s.recv(&mut buf).ok()?;
        (n >= 16 && buf[..4] == [0, 0, 0, 0] && buf[4..8] == req[12..16]).then(|| {
            (
                s,
                u64::from_be_bytes(buf[8..16].try_into().unwrap_or([0; 8])),
            )
        })
    }

    /// (seeders, leechers) the tracker holds for `key`, from its BEP 15 scrape reply.
    pub fn scrape(&self, key: &SwarmKey) -> (i64, i64) {
        let Some((s, id)) = self.connect() else {
            return (0, 0);
        };
        let mut req = Vec::with_capacity(36);
        req.extend_from_slice(&id.to_be_bytes());
        req.extend_from_slice(&2u32.to_be_bytes());
        req.extend_from_slice(&0x5343_5250u32.to_be_bytes());
        req.extend_from_slice(&key.0);
        let mut buf = [0u8; 64];
        match s.send(&req).ok().and_then(|_| s.recv(&mut buf).ok()) {
            Some(n) if n >= 20 && buf[..4] == [0, 0, 0, 2] => {
                let word = |i: usize| {
                    i64::from(i32::from_be_bytes(
                        buf[i..i + 4].try_into().unwrap_or([0; 4]),
                    ))
                };
                (word(8), word(16))
            }
            _ => (0, 0),
        }
    }
}

impl Drop for AquaticUdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the tracker");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let at = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP reply");
    all[at + 4..].to_vec()
}

pub fn free_tcp_port() -> u16 {
    free_tcp_ports(1)[0]
}

/// `n` distinct free ports: each stays bound until all are picked, so none is handed out
/// twice, and all are free again on return.
pub fn free_tcp_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("binding a TCP port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// A local Mainline DHT of `n` server nodes on loopback; nothing reaches the public DHT.
///
/// Built by hand rather than with `mainline::Testnet`: a testnet node has no bootstrap
/// list, and a node without one adds every node that asks it anything to its routing
/// table, read-only clients (zestd's nodes) included. Queries then wait out the request
/// timeout on those clients, and every lookup takes 2 s, which the public DHT's well-run
/// nodes do not do. Here each node bootstraps from the others.
pub struct LocalDht {
    pub nodes: Vec<mainline::Dht>,
    pub bootstrap: Vec<String>,
}

impl LocalDht {
    #[allow(deprecated)]
    pub fn start(n: usize) -> LocalDht {
        let ports: Vec<u16> = (0..n).map(|_| crate::harness::free_udp_port()).collect();
        let bootstrap: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let nodes: Vec<mainline::Dht> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let others: Vec<String> = bootstrap
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, a)| a.clone())
                    .collect();
                mainline::Dht::builder()
                    .server_mode()
                    .bind_address(std::net::Ipv4Addr::LOCALHOST)
                    .port(*p)
                    .bootstrap(&others)
                    .build()
                    .expect("a local DHT node")
            })
            .collect();
        // The first node's bootstrap ran before the others were up; it retries.
        for node in &nodes {
            node.bootstrapped();
        }
        LocalDht { nodes, bootstrap }
    }

    /// zestd arguments that join this DHT and no other.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec!["--dht".to_string()];
        for b in &self.bootstrap {
            a.push("--dht-bootstrap".into());
            a.push(b.clone());
        }
        a
    }

    /// The peers the DHT holds for `key`. (The blocking API: these tests are synchronous.)
    #[allow(deprecated)]
    pub fn peers(&self, key: &SwarmKey) -> Vec<std::net::SocketAddrV4> {
        let id = mainline::Id::from_bytes(key.0).expect("20-byte id");
        let mut v: Vec<_> = self.nodes[0].get_peers(id).flatten().collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Runs `ip` with these arguments; panics with its stderr if it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sysctl_here(setting: &str) {
    let _ = Command::new("sysctl").args(["-q", "-w", setting]).status();
}

fn sysctl_in(ns: &str, setting: &str) {
    let _ = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-q", "-w", setting])
        .status();
}

/// A LAN made of network namespaces: one holding a bridge, `hosts` namespaces each with a
/// veth on it, and a veth from the test's own namespace (`gateway`) so daemons in the
/// namespaces can reach the test hub. Everything is removed when dropped.
pub struct NetnsLan {
    tag: String,
    pub hosts: Vec<String>,
    pub host_ips: Vec<String>,
    pub gateway: String,
}

impl NetnsLan {
    pub fn create(hosts: usize) -> NetnsLan {
        // Tests in one process run in parallel: each LAN gets its own names and subnet.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tag = format!("{:x}{n:x}", std::process::id() % 0xffff);
        let subnet = 10 + ((std::process::id() + 37 * n) % 200);
        let bridge_ns = format!("zbr{tag}");
        let mut lan = NetnsLan {
            tag: tag.clone(),
            hosts: Vec::new(),
            host_ips: Vec::new(),
            gateway: format!("10.213.{subnet}.1"),
        };
        lan.remove();
        ip(&["netns", "add", &bridge_ns]);
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"]);
        let plug = |inside: &str, ns: Option<&str>, addr: &str| {
            let outside = format!("{inside}x");
            ip(&[
                "link", "add", inside, "type", "veth", "peer", "name", &outside,
            ]);
            ip(&["link", "set", &outside, "netns", &bridge_ns]);
            ip(&[
                "-n", &bridge_ns, "link", "set", &outside, "master", "br0", "up",
            ]);
            let mut pre: Vec<&str> = Vec::new();
            if let Some(ns) = ns {
                ip(&["link", "set", inside, "netns", ns]);
                pre = vec!["-n", ns];
            }
            let run = |rest: &[&str]| {
                let mut a = pre.clone();
                a.extend_from_slice(rest);
                ip(&a);
            };
            // IPv4 only: IPv6 neighbour discovery would put packets on the wire that no
            // daemon sent, and the tests count packets.
            let sysctl = format!("net.ipv6.conf.{inside}.disable_ipv6=1");
            match ns {
                Some(ns) => sysctl_in(ns, &sysctl),
                None => sysctl_here(&sysctl),
            }
            run(&["addr", "add", &format!("{addr}/24"), "dev", inside]);
            run(&["link", "set", inside, "up"]);
            if ns.is_some() {
                run(&["link", "set", "lo", "up"]);
            }
        };
        plug(&format!("zg{tag}"), None, &lan.gateway.clone());
        for i in 0..hosts {
            let ns = format!("zh{tag}{i}");
            ip(&["netns", "add", &ns]);
            let addr = format!("10.213.{subnet}.{}", i + 2);
            plug(&format!("zv{tag}{i}"), Some(&ns), &addr);
            lan.hosts.push(ns);
            lan.host_ips.push(addr);
        }
        lan
    }

    /// A second link on host `i`, to a namespace of its own holding only a listener: what
    /// host `i` sends on that link (and nowhere else) reaches it. Returns the observer's
    /// namespace and its address.
    pub fn attach_observer(&self, i: usize) -> (String, String) {
        let ns = format!("zo{}", self.tag);
        let link = format!("zo{}", self.tag);
        let peer = format!("zo{}x", self.tag);
        let subnet = self.gateway.split('.').nth(2).unwrap_or("10").to_string();
        let (near, far) = (format!("10.214.{subnet}.1"), format!("10.214.{subnet}.2"));
        let host = &self.hosts[i];
        ip(&["netns", "add", &ns]);
        ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &link, "netns", host]);
        ip(&["link", "set", &peer, "netns", &ns]);
        for (n, dev, addr) in [(host.as_str(), &link, &near), (ns.as_str(), &peer, &far)] {
            sysctl_in(n, &format!("net.ipv6.conf.{dev}.disable_ipv6=1"));
            ip(&["-n", n, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", n, "link", "set", dev, "up"]);
        }
        (ns, far)
    }

    /// The veth of host `i`, as named inside its namespace.
    pub fn veth(&self, i: usize) -> String {
        format!("zv{}{i}", self.tag)
    }

    fn remove(&self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        for i in 0..16 {
            quiet(&["netns", "del", &format!("zh{}{i}", self.tag)]);
        }
        quiet(&["netns", "del", &format!("zbr{}", self.tag)]);
        quiet(&["netns", "del", &format!("zo{}", self.tag)]);
        quiet(&["link", "del", &format!("zg{}", self.tag)]);
    }
}

impl Drop for NetnsLan {
    fn drop(&mut self) {
        self.remove();
    }
}
