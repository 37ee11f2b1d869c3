//! The `sluice` binary. Signaling, the node runtime and `sluice bench` land with the
//! edge-node issue; until then it only reports its version.

fn main() {
    println!("sluice {}", env!("CARGO_PKG_VERSION"));
}
