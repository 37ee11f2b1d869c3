//! The reference handler: the dataplane's [`NullForwarder`] (same driver, no SRTP, no
//! routing, every datagram copied unchanged to its sinks), one per publisher. The null
//! forwarder alone sends every datagram to one sink list; the benchmark has many
//! publishers, each with its own subscribers, so datagrams are first dispatched by
//! source address — the one lookup the router does too (session by 5-tuple).

use sluice_dataplane::engine::{Micros, NullCommand, NullForwarder, Output, PacketHandler};
use std::collections::HashMap;
use std::net::SocketAddr;

#[derive(Debug, Default)]
pub struct SourceFanout {
    routes: HashMap<SocketAddr, NullForwarder>,
    unrouted: u64,
}

#[derive(Debug, Clone)]
pub enum FanoutCommand {
    /// Datagrams from `from` go to `sinks` (replacing any previous list).
    Route {
        from: SocketAddr,
        sinks: Vec<SocketAddr>,
    },
}

impl SourceFanout {
    pub fn new() -> Self {
        Self::default()
    }

    /// Datagrams produced so far.
    pub fn forwarded(&self) -> u64 {
        self.routes.values().map(NullForwarder::forwarded).sum()
    }

    /// Datagrams from unknown sources, dropped.
    pub fn unrouted(&self) -> u64 {
        self.unrouted
    }
}

impl PacketHandler for SourceFanout {
    type Command = FanoutCommand;
    type Handoff = ();

    fn handle_datagram(
        &mut self,
        now: Micros,
        from: SocketAddr,
        buf: &mut [u8],
        out: &mut Output<()>,
    ) {
        match self.routes.get_mut(&from) {
            Some(f) => f.handle_datagram(now, from, buf, out),
            None => self.unrouted += 1,
        }
    }

    fn handle_handoff(&mut self, _now: Micros, _msg: (), _out: &mut Output<()>) {}

    fn handle_command(&mut self, now: Micros, cmd: FanoutCommand, out: &mut Output<()>) {
        match cmd {
            FanoutCommand::Route { from, sinks } => self
                .routes
                .entry(from)
                .or_default()
                .handle_command(now, NullCommand::SetSinks(sinks), out),
        }
    }

    fn handle_timeout(&mut self, _now: Micros, _out: &mut Output<()>) {}

    fn poll_timeout(&self) -> Option<Micros> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fans_out_by_source() {
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        let s: Vec<SocketAddr> = (0..3)
            .map(|i| format!("127.0.0.1:{}", 2000 + i).parse().unwrap())
            .collect();
        let mut f = SourceFanout::new();
        let mut out = Output::default();
        f.handle_command(
            0,
            FanoutCommand::Route {
                from: a,
                sinks: s[..2].to_vec(),
            },
            &mut out,
        );
        f.handle_command(
            0,
            FanoutCommand::Route {
                from: b,
                sinks: s[2..].to_vec(),
            },
            &mut out,
        );
        f.handle_datagram(0, a, &mut [1, 2, 3], &mut out);
        f.handle_datagram(0, b, &mut [4], &mut out);
        f.handle_datagram(0, s[0], &mut [5], &mut out);
        let got: Vec<_> = out.egress.iter().map(|(d, p)| (d, p.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (s[0], vec![1, 2, 3]),
                (s[1], vec![1, 2, 3]),
                (s[2], vec![4])
            ]
        );
        assert_eq!((f.forwarded(), f.unrouted()), (3, 1));
    }
}
