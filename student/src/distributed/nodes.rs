//! Multi-node runs over burn-collective's global level: every machine runs the peers of
//! `train.devices` in one process; the processes meet at the global orchestrator
//! (`train.orchestrator`, hosted by node 0's launcher) and exchange tensors peer-to-peer
//! through each node's tensor data service (a WebSocket server on `train.node_address`'s
//! port). Gradients are summed locally, then across nodes (ring), then handed back to every
//! local peer. Global ranks are `node_rank × devices + local index`.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

use burn_collective::CollectiveConfig;
use burn_communication::Address;

use crate::config::TrainSection;

/// Where this node sits in a multi-node group and how the others reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSetup {
    /// Machines in the group.
    pub nodes: usize,
    /// This machine's index.
    pub node_rank: usize,
    /// `HOST:PORT` of the global orchestrator.
    pub orchestrator: String,
    /// `HOST:PORT` of this node's tensor data service.
    pub node_address: String,
}

impl NodeSetup {
    /// The multi-node setup of `t`, or `None` for a single machine. The default node address
    /// is the local address of the route to the orchestrator with port orchestrator + 1 +
    /// node_rank.
    pub fn from_train(t: &TrainSection) -> std::result::Result<Option<Self>, String> {
        if t.nodes <= 1 {
            return Ok(None);
        }
        validate_nodes(t)?;
        let orchestrator = t.orchestrator.clone().expect("validated");
        let node_address = match &t.node_address {
            Some(a) => a.clone(),
            None => default_node_address(&orchestrator, t.node_rank)?,
        };
        Ok(Some(Self { nodes: t.nodes, node_rank: t.node_rank, orchestrator, node_address }))
    }

    /// The port of this node's tensor data service.
    pub fn data_port(&self) -> u16 {
        split_port(&self.node_address).map(|p| p.1).unwrap_or(0)
    }

    /// Adds the global parameters to a local collective config.
    pub fn collective(&self, local: CollectiveConfig) -> CollectiveConfig {
        local
            .with_num_nodes(self.nodes as u32)
            .with_global_address(ws(&self.orchestrator))
            .with_node_address(ws(&self.node_address))
            .with_data_service_port(self.data_port())
    }
}

/// burn-communication 0.21 only accepts `ws://` URLs (`parse_ws_address` rejects a bare
/// `host:port`).
fn ws(addr: &str) -> Address {
    let url = if addr.starts_with("ws://") { addr.to_string() } else { format!("ws://{addr}") };
    url.parse().expect("Address::from_str is infallible")
}

fn split_port(addr: &str) -> Option<(&str, u16)> {
    let addr = addr.strip_prefix("ws://").unwrap_or(addr);
    let (host, port) = addr.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

fn default_node_address(orchestrator: &str, node_rank: usize) -> std::result::Result<String, String> {
    let (_, port) = split_port(orchestrator).ok_or("train.orchestrator: expected HOST:PORT")?;
    let port = u16::try_from(port as usize + 1 + node_rank).map_err(|_| "train.orchestrator: port too high for the node ports".to_string())?;
    let target: SocketAddr = orchestrator
        .strip_prefix("ws://")
        .unwrap_or(orchestrator)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("train.orchestrator: cannot resolve {orchestrator:?}"))?;
    // No packet is sent: connecting a UDP socket only picks the route (and so the local address).
    let local = UdpSocket::bind(if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })
        .and_then(|s| s.connect(target).and_then(|_| s.local_addr()))
        .map_err(|e| format!("train.node_address: no route to the orchestrator {orchestrator}: {e}; set it explicitly"))?;
    Ok(SocketAddr::new(local.ip(), port).to_string())
}

/// Checks the multi-node keys of `[train]`.
pub fn validate_nodes(t: &TrainSection) -> std::result::Result<(), String> {
    if t.nodes == 0 {
        return Err("train.nodes must be >= 1".into());
    }
    if t.node_rank >= t.nodes {
        return Err(format!("train.node_rank {} must be < train.nodes {}", t.node_rank, t.nodes));
    }
    if t.nodes > 1 {
        match &t.orchestrator {
            None => return Err("train.orchestrator (HOST:PORT) is required when train.nodes > 1".into()),
            Some(o) if split_port(o).is_none() => return Err(format!("train.orchestrator {o:?}: expected HOST:PORT")),
            _ => {}
        }
        if let Some(a) = &t.node_address {
            if split_port(a).is_none() {
                return Err(format!("train.node_address {a:?}: expected HOST:PORT"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(nodes: usize, rank: usize, orch: Option<&str>, addr: Option<&str>) -> TrainSection {
        TrainSection {
            nodes,
            node_rank: rank,
            orchestrator: orch.map(str::to_string),
            node_address: addr.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn single_node_needs_nothing() {
        assert_eq!(NodeSetup::from_train(&section(1, 0, None, None)).unwrap(), None);
    }

    #[test]
    fn node_addresses_default_to_the_route_and_port_plus_rank() {
        let s = NodeSetup::from_train(&section(2, 1, Some("127.0.0.1:29500"), None)).unwrap().unwrap();
        assert_eq!(s.node_address, "127.0.0.1:29502");
        assert_eq!(s.data_port(), 29502);
        let s = NodeSetup::from_train(&section(2, 0, Some("127.0.0.1:29500"), Some("10.0.0.5:4000"))).unwrap().unwrap();
        assert_eq!((s.node_address.as_str(), s.data_port()), ("10.0.0.5:4000", 4000));
    }

    #[test]
    fn bad_keys_are_named() {
        assert!(validate_nodes(&section(2, 2, Some("h:1"), None)).unwrap_err().contains("node_rank"));
        assert!(validate_nodes(&section(2, 0, None, None)).unwrap_err().contains("train.orchestrator"));
        assert!(validate_nodes(&section(2, 0, Some("nohost"), None)).unwrap_err().contains("HOST:PORT"));
        assert!(validate_nodes(&section(0, 0, None, None)).is_err());
    }
}
