use super::*;

fn publisher(id: &str) -> PublisherInfo {
    PublisherInfo {
        id: id.to_owned(),
        tracks: vec![],
    }
}

#[test]
fn joins_and_leaves_reach_listeners_after_a_snapshot() {
    let mut rooms = Rooms::default();
    rooms.add_publisher("r", publisher("a"), vec![]);
    let (snapshot, mut rx) = rooms.watch("r");
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].data()["id"], "a");
    rooms.add_publisher("r", publisher("b"), vec![]);
    rooms.remove_publisher("r", "a");
    let e1 = rx.try_recv().unwrap();
    assert_eq!(
        (e1.name(), e1.data()["id"].as_str().unwrap()),
        ("publisher-joined", "b")
    );
    let e2 = rx.try_recv().unwrap();
    assert_eq!(
        (e2.name(), e2.data()["id"].as_str().unwrap()),
        ("publisher-left", "a")
    );
}

#[test]
fn latest_publisher_is_the_most_recent_join() {
    let mut rooms = Rooms::default();
    rooms.add_publisher("r", publisher("a"), vec![]);
    rooms.add_publisher("r", publisher("b"), vec![]);
    assert_eq!(rooms.latest_publisher("r").unwrap().info.id, "b");
    rooms.remove_publisher("r", "b");
    assert_eq!(rooms.latest_publisher("r").unwrap().info.id, "a");
    let ids: Vec<_> = rooms
        .publishers("r")
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["a"]);
}

#[test]
fn a_room_ends_when_nobody_is_left() {
    let mut rooms = Rooms::default();
    rooms.add_publisher("r", publisher("a"), vec![]);
    rooms.add_subscriber("r");
    rooms.remove_publisher("r", "a");
    assert!(rooms.room_exists("r"), "a subscriber keeps the room");
    rooms.remove_subscriber("r");
    assert!(!rooms.room_exists("r"));
    assert!(rooms.publishers("r").is_none());
}
