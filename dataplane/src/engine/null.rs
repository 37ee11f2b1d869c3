use super::{Micros, Output, PacketHandler};
use std::net::SocketAddr;

/// The null-forwarder reference: the same drivers, no SRTP, no routing. Every datagram
/// is copied, unchanged, to each configured sink. What the router costs above this is
/// what Sluice itself costs; the rest is the kernel's.
#[derive(Debug, Default)]
pub struct NullForwarder {
    sinks: Vec<SocketAddr>,
    forwarded: u64,
}

#[derive(Debug, Clone)]
pub enum NullCommand {
    /// Replaces the fan-out list.
    SetSinks(Vec<SocketAddr>),
}

impl NullForwarder {
    pub fn new(sinks: Vec<SocketAddr>) -> Self {
        Self {
            sinks,
            forwarded: 0,
        }
    }

    /// Datagrams produced so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded
    }
}

impl PacketHandler for NullForwarder {
    type Command = NullCommand;
    type Handoff = ();

    fn handle_datagram(
        &mut self,
        _now: Micros,
        _from: SocketAddr,
        buf: &mut [u8],
        out: &mut Output<()>,
    ) {
        for &sink in &self.sinks {
            if out.egress.push_copy(sink, buf) {
                self.forwarded += 1;
            }
        }
    }

    fn handle_handoff(&mut self, _now: Micros, _msg: (), _out: &mut Output<()>) {}

    fn handle_command(&mut self, _now: Micros, cmd: NullCommand, _out: &mut Output<()>) {
        match cmd {
            NullCommand::SetSinks(sinks) => self.sinks = sinks,
        }
    }

    fn handle_timeout(&mut self, _now: Micros, _out: &mut Output<()>) {}

    fn poll_timeout(&self) -> Option<Micros> {
        None
    }
}
