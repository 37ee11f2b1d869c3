//! The status document as text for a terminal: a members table, a links table (this
//! node's measured links with their routes, then the other nodes' reported ones) and
//! this node's rooms, in plain aligned columns.

use super::view::{Load, Member, Route, Status};
use std::fmt::Write;

pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let alive = s.members.iter().filter(|m| m.state == "alive").count();
    let _ = writeln!(
        out,
        "node {}: {} member{}, {alive} alive",
        s.this,
        s.members.len(),
        if s.members.len() == 1 { "" } else { "s" }
    );

    out.push_str("\nMEMBERS\n");
    out.push_str(&table(
        &[
            "NAME", "REGION", "STATE", "SESSIONS", "CPU", "DRAINING", "HTTP",
        ],
        s.members.iter().map(member_row).collect(),
    ));

    out.push_str("\nLINKS\n");
    let links = link_rows(s);
    if links.is_empty() {
        out.push_str("(none)\n");
    } else {
        out.push_str(&table(
            &["LINK", "RTT", "MIN RTT", "LOSS", "ROUTE", "SOURCE"],
            links,
        ));
    }

    out.push_str("\nROOMS\n");
    if s.rooms.is_empty() {
        out.push_str("(none)\n");
    } else {
        out.push_str(&table(
            &["ROOM", "PUBLISHERS", "SUBSCRIBERS", "ROOM PUBLISHERS"],
            s.rooms
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.publishers.to_string(),
                        r.subscribers.to_string(),
                        r.room_publishers.to_string(),
                    ]
                })
                .collect(),
        ));
    }
    out
}

fn member_row(m: &Member) -> Vec<String> {
    let name = if m.is_self {
        format!("{} (self)", m.name)
    } else {
        m.name.clone()
    };
    let (sessions, cpu, draining) = match &m.load {
        Some(Load {
            sessions,
            cpu_permille,
            draining,
            ..
        }) => (
            sessions.to_string(),
            cpu_permille.map_or_else(|| "-".to_owned(), permille),
            if *draining { "yes" } else { "no" }.to_owned(),
        ),
        None => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
    };
    vec![
        name,
        m.region.clone(),
        m.state.clone(),
        sessions,
        cpu,
        draining,
        if m.http.is_empty() {
            "-".to_owned()
        } else {
            m.http.clone()
        },
    ]
}

/// This node's links as measured, with the route its media takes to each member (also
/// members it has no link to), then every other node's links as reported.
fn link_rows(s: &Status) -> Vec<Vec<String>> {
    let route_to = |peer: &str| {
        s.members
            .iter()
            .find(|m| m.name == peer)
            .and_then(|m| m.route.as_ref())
            .map_or_else(|| "-".to_owned(), route)
    };
    let mut rows: Vec<Vec<String>> = s
        .links
        .iter()
        .map(|l| {
            vec![
                format!("{} -> {}", s.this, l.peer),
                format!("{:.2} ms", l.rtt_ms),
                format!("{:.2} ms", l.min_rtt_ms),
                permille(l.loss_permille),
                route_to(&l.peer),
                "measured".to_owned(),
            ]
        })
        .collect();
    for m in &s.members {
        if !m.is_self && !s.links.iter().any(|l| l.peer == m.name) {
            rows.push(vec![
                format!("{} -> {}", s.this, m.name),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                m.route.as_ref().map_or_else(|| "-".to_owned(), route),
                "no link".to_owned(),
            ]);
        }
    }
    rows.extend(s.mesh.iter().filter(|l| l.from != s.this).map(|l| {
        vec![
            format!("{} -> {}", l.from, l.to),
            format!("{} ms", l.rtt_ms),
            "-".to_owned(),
            permille(l.loss_permille),
            "-".to_owned(),
            "reported".to_owned(),
        ]
    }));
    rows
}

fn route(r: &Route) -> String {
    match r {
        Route::Direct => "direct".to_owned(),
        Route::Via { node } => format!("via {node}"),
        Route::Unreachable => "unreachable".to_owned(),
    }
}

fn permille(p: u16) -> String {
    format!("{:.1}%", f64::from(p) / 10.0)
}

/// Left-aligned columns two spaces apart; the last column is not padded, so no line
/// ends in spaces.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<w$}  ");
            }
        }
        out.push('\n');
    }
    out
}
