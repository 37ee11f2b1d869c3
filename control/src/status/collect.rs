//! Builds the status document from what the node holds: the member snapshot the cascade
//! publishes, the live links, and this node's sessions.

use super::view::{Link, Load, Member, MeshLink, Room, Route, Status};
use crate::cascade::paths;
use crate::node::{MemberSnapshot, Role, Shared};
use sluice_state::membership::MemberState;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub fn status(shared: &Shared) -> Status {
    let sessions = u32::try_from(shared.session_count()).unwrap_or(u32::MAX);
    let draining = shared.draining();
    let rooms = rooms(shared);
    let Some(snapshot) = shared.member_snapshot() else {
        let name = shared.node_name();
        return Status {
            this: name.clone(),
            members: vec![Member {
                name,
                number: None,
                region: shared.config.node.region.clone(),
                state: MemberState::Alive.as_str().to_owned(),
                http: shared.public_url.clone(),
                is_self: true,
                load: Some(Load {
                    sessions,
                    cpu_permille: None,
                    draining,
                    age_ms: None,
                }),
                route: None,
            }],
            links: Vec::new(),
            mesh: Vec::new(),
            rooms,
        };
    };
    let mut links: Vec<Link> = shared
        .cluster()
        .map(|c| c.endpoint.links())
        .unwrap_or_default()
        .iter()
        .map(|l| link(l.peer(), &l.stats()))
        .collect();
    links.sort_by(|a, b| a.peer.cmp(&b.peer));
    let mut status = from_snapshot(&snapshot, &shared.public_url, sessions, draining);
    status.links = links;
    status.rooms = rooms;
    status
}

/// Everything but the live links and the rooms. This node's own sessions and drain
/// state are taken live rather than from its last load sample.
fn from_snapshot(s: &MemberSnapshot, public_url: &str, sessions: u32, draining: bool) -> Status {
    let this_number = s.this.id.0;
    let names: HashMap<u64, String> = std::iter::once(&s.this)
        .chain(s.members.iter().map(|(m, _)| m))
        .map(|m| (m.id.0, display_name(&m.name, m.id.0)))
        .collect();
    let name_of = |n: u64| {
        names
            .get(&n)
            .cloned()
            .unwrap_or_else(|| display_name("", n))
    };
    let routes: HashMap<u64, paths::Route> = s.routes.iter().copied().collect();
    let load_of = |n: u64| {
        s.loads.get(&n).map(|l| Load {
            sessions: l.sessions,
            cpu_permille: Some(l.cpu_permille),
            draining: l.draining,
            age_ms: s
                .report_age
                .get(&n)
                .map(|a: &Duration| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
        })
    };

    let this = Member {
        name: name_of(this_number),
        number: Some(this_number),
        region: s.this.region.clone(),
        state: MemberState::Alive.as_str().to_owned(),
        http: public_url.to_owned(),
        is_self: true,
        load: Some(Load {
            sessions,
            cpu_permille: s.loads.get(&this_number).map(|l| l.cpu_permille),
            draining,
            age_ms: None,
        }),
        route: None,
    };
    let mut members = vec![this];
    members.extend(s.members.iter().map(|(m, state)| Member {
        name: name_of(m.id.0),
        number: Some(m.id.0),
        region: m.region.clone(),
        state: state.as_str().to_owned(),
        http: m.http.trim_end_matches('/').to_owned(),
        is_self: false,
        load: load_of(m.id.0),
        route: Some(match routes.get(&m.id.0) {
            Some(paths::Route::Direct) => Route::Direct,
            Some(paths::Route::Via(r)) => Route::Via { node: name_of(r.0) },
            // No route computed yet counts as none: media cannot go there now.
            Some(paths::Route::Unreachable) | None => Route::Unreachable,
        }),
    }));
    members.sort_by(|a, b| a.name.cmp(&b.name));

    let mut mesh: Vec<MeshLink> = s
        .loads
        .iter()
        .flat_map(|(from, load)| {
            let from = name_of(*from);
            load.links.iter().map(move |q| (from.clone(), q))
        })
        .map(|(from, q)| MeshLink {
            from,
            to: name_of(q.peer.0),
            rtt_ms: q.rtt_ms,
            loss_permille: q.loss_permille,
        })
        .collect();
    mesh.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));

    Status {
        this: name_of(this_number),
        members,
        links: Vec::new(),
        mesh,
        rooms: Vec::new(),
    }
}

/// A member that did not tell its name (it should always) is shown by number.
fn display_name(name: &str, number: u64) -> String {
    if name.is_empty() {
        sluice_state::NodeId(number).to_string()
    } else {
        name.to_owned()
    }
}

fn link(peer: &str, s: &crate::cluster::link::LinkStats) -> Link {
    Link {
        peer: peer.to_owned(),
        rtt_ms: s.rtt.as_secs_f64() * 1000.0,
        min_rtt_ms: s.min_rtt.as_secs_f64() * 1000.0,
        sent_packets: s.sent_packets,
        lost_packets: s.lost_packets,
        loss_permille: s
            .lost_packets
            .saturating_mul(1000)
            .checked_div(s.sent_packets)
            .map_or(0, |p| p.min(1000) as u16),
        cwnd_bytes: s.cwnd,
        tx_bytes: s.udp_tx_bytes,
        rx_bytes: s.udp_rx_bytes,
    }
}

/// This node's sessions by room; `room_publishers` also counts other nodes' publishers
/// the room lists here.
fn rooms(shared: &Shared) -> Vec<Room> {
    let mut by_name: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for p in shared.peers().iter() {
        let counts = by_name.entry(p.room.clone()).or_default();
        match p.role {
            Role::Publisher { .. } => counts.0 += 1,
            Role::Subscriber { .. } => counts.1 += 1,
        }
    }
    let rooms = shared.rooms();
    by_name
        .into_iter()
        .map(|(name, (publishers, subscribers))| Room {
            room_publishers: rooms.publishers(&name).map_or(0, |p| p.len()),
            name,
            publishers,
            subscribers,
        })
        .collect()
}
