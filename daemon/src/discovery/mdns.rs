//! LAN discovery: DNS-SD service `_zest._udp.local.` over mDNS, announced and browsed only
//! on the interfaces zestd listens on (a loopback listen address sends nothing off the
//! machine). Only the daemon's presence is announced, never what it holds: peers found
//! this way are asked with `have` like any other, and private content still needs the
//! fleet proof of the QUIC handshake.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::peer::{Origin, PeerSet};

pub const SERVICE: &str = "_zest._udp.local.";

pub struct Lan {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Lan {
    /// `None` when listening on loopback: mdns-sd joins its multicast group on every
    /// interface the moment it starts, before it can be narrowed down, so on loopback it is
    /// not started at all and nothing can leave the machine.
    pub fn start(listen: SocketAddr, set: &PeerSet) -> Result<Option<Self>> {
        let ip = listen.ip();
        if ip.is_loopback() {
            tracing::info!("LAN discovery (mDNS) is off: listening on loopback only");
            return Ok(None);
        }
        let daemon = ServiceDaemon::new().context("starting mDNS")?;
        if !ip.is_unspecified() {
            daemon.disable_interface(IfKind::All)?;
            daemon.enable_interface(IfKind::Addr(ip))?;
        }
        let node = set.node_id().to_string();
        let short = node.get(..16).unwrap_or(&node).to_string();
        let host = format!("zest-{short}.local.");
        let props = [("v", "1"), ("node", short.as_str())];
        let ips: Vec<IpAddr> = if ip.is_unspecified() {
            Vec::new()
        } else {
            vec![ip]
        };
        let mut info = ServiceInfo::new(
            SERVICE,
            &format!("zest-{short}"),
            &host,
            &ips[..],
            listen.port(),
            &props[..],
        )
        .context("mDNS service record")?;
        if ip.is_unspecified() {
            info = info.enable_addr_auto();
        }
        let fullname = info.get_fullname().to_string();
        daemon.register(info).context("announcing on mDNS")?;
        let events = daemon.browse(SERVICE).context("browsing mDNS")?;
        let set = set.clone();
        tokio::spawn(async move {
            while let Ok(ev) = events.recv_async().await {
                if let ServiceEvent::ServiceResolved(svc) = ev {
                    if svc.get_property_val_str("node") == Some(short.as_str()) {
                        continue;
                    }
                    for a in svc.get_addresses_v4() {
                        let addr = SocketAddr::from((a, svc.port));
                        tracing::debug!(%addr, name = svc.fullname, "found a peer on the LAN");
                        set.add(addr, Origin::Discovered("lan".into()));
                    }
                }
            }
        });
        tracing::info!(%listen, "announcing on the LAN (mDNS {SERVICE})");
        Ok(Some(Lan { daemon, fullname }))
    }

    pub fn stop(self) {
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}
