//! Produces real messages for the fuzz seed corpora and checks they decode.
//! `SLUICE_WRITE_FUZZ_SEEDS=1 cargo test -p sluice-state --test fuzz_seeds` rewrites
//! fuzz/seeds/state_membership and fuzz/seeds/state_room_sync (every room message
//! kind: sync, digest, push, and an epoch's state after a compaction).

use std::time::Duration;

use sluice_state::auth::{ClusterKey, TAG_LEN};
use sluice_state::wire::{Incoming, decode};
use sluice_state::{Node, NodeConfig, NodeId, NodeIdentity};

fn node(id: u64, seeds: Vec<std::net::SocketAddr>) -> Node {
    let addr = format!("127.0.0.{id}:7000").parse().unwrap();
    let mut c = NodeConfig::new(
        NodeIdentity::new(NodeId(id), "seed", addr, addr, 10),
        Box::new(ClusterKey::new(b"k")),
    );
    c.seeds = seeds;
    // Small enough that the run compacts, so epoch state messages appear too.
    c.rooms.compact_after_changes = 6;
    Node::new(c, Duration::ZERO)
}

#[test]
fn real_messages_for_fuzz_seeds() {
    let mut a = node(1, vec![]);
    let mut b = node(2, vec![a.identity().link_addr]);
    let (mut swim, mut rooms): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
    let mut now = Duration::ZERO;
    for step in 0..200 {
        now += Duration::from_millis(10);
        if step == 50 {
            a.join_room(now, "room", "alice").unwrap();
            b.join_room(now, "room", "bob").unwrap();
        }
        if (60..70).contains(&step) {
            a.set_room_metadata(now, "room", "topic", &format!("t{step}"))
                .unwrap();
            b.join_room(now, "room", &format!("guest{step}")).unwrap();
        }
        for (from, to) in [(0, 1), (1, 0)] {
            let (src, dst) = if from == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let mut batch = Vec::new();
            while let Some(t) = src.poll_transmit() {
                batch.push(t.data);
            }
            let _ = to;
            for data in batch {
                let body = data[..data.len() - TAG_LEN].to_vec();
                let push = matches!(decode(&body).unwrap(), Incoming::RoomPush(_));
                match decode(&body).unwrap() {
                    Incoming::Swim(_) => swim.push(body),
                    _ => rooms.push(body),
                }
                if push && step == 65 {
                    // Lost: anti-entropy notices and a sync exchange repairs it.
                    continue;
                }
                dst.handle_datagram(now, &data);
            }
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    assert_eq!(a.room("room").unwrap().participants.len(), 12);
    assert_eq!(a.room("room"), b.room("room"));
    assert!(a.stats().room_compactions + b.stats().room_compactions > 0);
    // Up to three messages of each room kind (sync, digest, push, state).
    let mut kinds = std::collections::BTreeMap::<u8, usize>::new();
    rooms.retain(|m| {
        let n = kinds.entry(m[0]).or_default();
        *n += 1;
        *n <= 3
    });
    assert_eq!(kinds.len(), 4, "room message kinds seen: {kinds:?}");
    assert!(swim.len() > 4, "{}", swim.len());
    if std::env::var_os("SLUICE_WRITE_FUZZ_SEEDS").is_some() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/seeds");
        for (dir, msgs) in [("state_membership", &swim), ("state_room_sync", &rooms)] {
            let _ = std::fs::remove_dir_all(format!("{root}/{dir}"));
            std::fs::create_dir_all(format!("{root}/{dir}")).unwrap();
            for (i, m) in msgs.iter().take(12).enumerate() {
                std::fs::write(format!("{root}/{dir}/seed-{i}"), m).unwrap();
            }
        }
    }
}
