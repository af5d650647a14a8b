//! The loaded XDP classifier against its reference (`ioth_common::classify`), through
//! BPF_PROG_TEST_RUN: every decision-table fixture, then a million random and mutated frames.
//!
//! Privileged: run by `cargo xtask test` as root (`--ignored`).

use std::{
    collections::HashSet,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, OwnedFd},
};

use ioth_common::{
    FANOUT_SLOT, MAX_QUEUES, NO_SLOT,
    classify::{Decision, classify},
    fixtures::{self, MapTables},
    xdp_action, xsk_index,
};
use ioth_dataplane::{Classifier, EndpointAddrs, LoadOptions, netns::NetNs};
use rand::{Rng, SeedableRng, rngs::SmallRng};

/// Queues of the test device: more than MAX_QUEUES, so the out-of-range row is reachable.
const DEVICE_QUEUES: u32 = MAX_QUEUES + 4;

/// An unbound AF_XDP socket: enough for the XskMap to hold an entry, so that
/// bpf_redirect_map() succeeds in BPF_PROG_TEST_RUN (which never delivers the frame).
fn xdp_socket() -> OwnedFd {
    let s = socket2::Socket::new(
        socket2::Domain::from(libc::AF_XDP),
        socket2::Type::RAW,
        None,
    )
    .expect("socket(AF_XDP)");
    s.into()
}

/// A namespace with a dummy-free multi-queue veth whose ifindex makes queues > 0 valid in
/// BPF_PROG_TEST_RUN. The calling thread stays inside while the guard lives.
struct Device {
    _guard: ioth_dataplane::netns::NsGuard,
    _ns: NetNs,
    ifindex: u32,
}

fn device(tag: &str) -> Device {
    let ns = NetNs::new(tag).expect("netns");
    let q = DEVICE_QUEUES.to_string();
    ns.ip(&[
        "link",
        "add",
        "dut",
        "numrxqueues",
        &q,
        "numtxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        "dut-peer",
    ])
    .expect("veth");
    ns.ip(&["link", "set", "dut", "up"]).expect("up");
    ns.ip(&["link", "set", "dut-peer", "up"]).expect("up");
    let guard = ns.enter().expect("enter netns");
    let ifindex = nix::net::if_::if_nametoindex("dut").expect("ifindex");
    Device {
        _guard: guard,
        _ns: ns,
        ifindex,
    }
}

/// Mirrors `tables` into the classifier: endpoints (slots are handed out in order, so they
/// match when `tables` uses slots 1..=n densely) and sockets.
fn install(c: &mut Classifier, tables: &MapTables, sockets: &mut Vec<OwnedFd>) {
    let mut slots: Vec<u32> = tables
        .mac
        .values()
        .chain(tables.ipv4.values())
        .chain(tables.ipv6.values())
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    slots.sort_unstable();
    for slot in slots {
        let addrs = EndpointAddrs {
            mac: tables
                .mac
                .iter()
                .find(|(_, s)| **s == slot)
                .map(|(m, _)| *m),
            ipv4: tables
                .ipv4
                .iter()
                .filter(|(_, s)| **s == slot)
                .map(|(a, _)| Ipv4Addr::from(*a))
                .collect(),
            ipv6: tables
                .ipv6
                .iter()
                .filter(|(_, s)| **s == slot)
                .map(|(a, _)| Ipv6Addr::from(*a))
                .collect(),
            thread: slot,
            ..Default::default()
        };
        let id = c.add_endpoint(&addrs).expect("add endpoint");
        assert_eq!(id.0, slot, "slots are handed out densely from 1");
    }
    for &index in &tables.sockets {
        let s = xdp_socket();
        let (queue, slot) = (
            index / ioth_common::SLOTS_PER_QUEUE,
            index % ioth_common::SLOTS_PER_QUEUE,
        );
        c.set_socket(queue, slot, s.as_raw_fd())
            .expect("set socket");
        sockets.push(s);
    }
    c.set_fanout(tables.fanout).expect("fanout");
}

fn run(c: &Classifier, dev: &Device, frame: &[u8], queue: u32) -> Decision {
    let d = c.test_run(frame, dev.ifindex, queue).expect("test run");
    Decision {
        action: d.action,
        slot: d.slot,
        xsk_index: d.xsk_index,
    }
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn every_decision_table_row_through_the_loaded_program() {
    let dev = device("fixtures");
    let mut checked = 0;
    for fanout in [false, true] {
        let tables = fixtures::standard(fanout);
        let mut c = Classifier::load(LoadOptions {
            trace: true,
            ..LoadOptions::default()
        })
        .expect("load classifier");
        let mut sockets = Vec::new();
        install(&mut c, &tables, &mut sockets);
        for case in fixtures::cases().into_iter().filter(|c| c.fanout == fanout) {
            if case.frame.len() < ioth_common::wire::ETH_HLEN {
                // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header.
                continue;
            }
            let got = run(&c, &dev, &case.frame, case.queue);
            assert_eq!(got, case.expect, "fixture {:?}", case.name);
            checked += 1;
        }
        let counters = c.counters().expect("counters");
        assert_eq!(counters.aborted, 0);
    }
    println!("fixtures checked through the loaded program: {checked}");
    assert!(checked >= 40, "too few fixtures ran: {checked}");
}

/// Random tables with pools of addresses that random frames are likely to hit.
struct Pools {
    macs: Vec<[u8; 6]>,
    v4: Vec<[u8; 4]>,
    v6: Vec<[u8; 16]>,
}

fn random_tables(rng: &mut SmallRng) -> (MapTables, Pools) {
    let mut t = MapTables::default();
    let endpoints = rng.random_range(1..=8u32);
    let mut pools = Pools {
        macs: vec![
            fixtures::HOST_MAC,
            [0xff; 6],
            [0x33, 0x33, 0, 0, 0, 1],
            [0x01, 0, 0x5e, 0, 0, 0xfb],
        ],
        v4: vec![fixtures::HOST_IPV4, [255; 4], [224, 0, 0, 251]],
        v6: vec![fixtures::HOST_IPV6],
    };
    for slot in 1..=endpoints {
        let s = slot as u8;
        let ep_v4 = [10, 99, 0, 10 + s];
        let mut ep_v6 = fixtures::HOST_IPV6;
        ep_v6[15] = 0x10 + s;
        let mac = [0x02, 0x49, 0x4f, 0, 0, s];
        let has_mac = rng.random_bool(0.6);
        if has_mac {
            t.mac.insert(mac, slot);
        }
        // Every endpoint owns at least one IP, so each slot is reachable by IP lookups too.
        t.ipv4.insert(ep_v4, slot);
        if rng.random_bool(0.7) {
            t.ipv6.insert(ep_v6, slot);
        }
        pools.macs.push(mac);
        pools.v4.push(ep_v4);
        pools.v6.push(ep_v6);
        let (_, sn_mac) = fixtures::solicited_node(ep_v6);
        pools.macs.push(sn_mac);
        for q in 0..DEVICE_QUEUES.min(MAX_QUEUES) {
            if rng.random_bool(0.8) {
                t.sockets.insert(xsk_index(q, slot));
            }
        }
    }
    for q in 0..MAX_QUEUES {
        if rng.random_bool(0.5) {
            t.sockets.insert(xsk_index(q, FANOUT_SLOT));
        }
    }
    t.fanout = rng.random_bool(0.5);
    (t, pools)
}

fn pick<T: Copy>(rng: &mut SmallRng, v: &[T]) -> T {
    v[rng.random_range(0..v.len())]
}

/// A frame built field by field from the pools, with each field sometimes made hostile.
fn structured_frame(rng: &mut SmallRng, p: &Pools) -> Vec<u8> {
    use fixtures::*;
    use ioth_common::wire::*;
    let random_mac = |rng: &mut SmallRng| {
        let mut m = [0u8; 6];
        rng.fill(&mut m);
        m
    };
    let dst = if rng.random_bool(0.9) {
        pick(rng, &p.macs)
    } else {
        random_mac(rng)
    };
    let v4 = |rng: &mut SmallRng| {
        if rng.random_bool(0.85) {
            pick(rng, &p.v4)
        } else {
            rng.random()
        }
    };
    let v6 = |rng: &mut SmallRng| -> [u8; 16] {
        match rng.random_range(0..10) {
            0 => rng.random(),
            1 => fixtures::solicited_node(pick(rng, &p.v6)).0,
            _ => pick(rng, &p.v6),
        }
    };
    let kind = rng.random_range(0..6);
    let mut payload = match kind {
        0 => {
            let mut ip = ipv4(PEER_IPV4, v4(rng), 17, &udp(1, 7, &[0u8; 18]));
            if rng.random_bool(0.2) {
                ip[0] = rng.random();
            }
            ip
        }
        1 => {
            let wild: u8 = rng.random();
            let next = pick(rng, &[17u8, 58, 0, 43, 44, 60, wild]);
            let body = if next == 58 {
                let code = if rng.random_bool(0.9) {
                    0
                } else {
                    rng.random()
                };
                let mut icmp = ns(v6(rng), code);
                if rng.random_bool(0.2) {
                    let wild: u8 = rng.random();
                    icmp[0] = pick(rng, &[133u8, 134, 136, 128, wild]);
                }
                icmp
            } else {
                let mut b = vec![58u8, 0, 1, 4, 0, 0, 0, 0];
                b.extend_from_slice(&ns(v6(rng), 0));
                b
            };
            let mut ip = ipv6(PEER_IPV6, v6(rng), next, &body);
            if rng.random_bool(0.1) {
                ip[0] = rng.random();
            }
            ip
        }
        2 => {
            let mut a = arp(rng.random_range(0..4), PEER_MAC, PEER_IPV4, [0; 6], v4(rng));
            if rng.random_bool(0.3) {
                let i = rng.random_range(0..6);
                a[i] = rng.random();
            }
            a
        }
        _ => {
            let len = rng.random_range(0..80);
            (0..len).map(|_| rng.random()).collect()
        }
    };
    let ethertype = match kind {
        0 => ETH_P_IPV4,
        1 => ETH_P_IPV6,
        2 => ETH_P_ARP,
        _ => {
            let wild: u16 = rng.random();
            pick(rng, &[ETH_P_IPV4, ETH_P_IPV6, ETH_P_ARP, ETH_P_8021Q, wild])
        }
    };
    // Random padding up to a minimum frame or beyond, sometimes up to the test-run maximum.
    if rng.random_bool(0.05) {
        let to = rng.random_range(payload.len()..3500);
        payload.resize(to, 0xa5);
    } else if rng.random_bool(0.5) {
        payload.resize(payload.len().max(46), 0);
    }
    let mut frame = if rng.random_bool(0.15) {
        eth_vlan(dst, PEER_MAC, rng.random(), ethertype, &payload)
    } else {
        eth(dst, PEER_MAC, ethertype, &payload)
    };
    if rng.random_bool(0.3) {
        let cut = rng.random_range(ETH_HLEN..=frame.len());
        frame.truncate(cut);
    }
    if rng.random_bool(0.05) {
        let i = rng.random_range(0..frame.len());
        frame[i] ^= 1 << rng.random_range(0..8);
    }
    frame
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn a_million_random_and_mutated_frames_agree_with_the_reference() {
    const FRAMES: u64 = 1_000_000;
    const TABLE_SETS: u64 = 4;
    let dev = device("diff");
    let seed = std::env::var("IOTH_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0107_5eed_u64);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut total = 0u64;
    let mut by_action = [0u64; 5];
    let mut truncations = 0u64;
    for set in 0..TABLE_SETS {
        let (tables, pools) = random_tables(&mut rng);
        let mut c = Classifier::load(LoadOptions {
            trace: true,
            ..LoadOptions::default()
        })
        .expect("load classifier");
        let mut sockets = Vec::new();
        install(&mut c, &tables, &mut sockets);
        let mut check = |frame: &[u8], queue: u32, c: &Classifier| {
            let want = classify(frame, queue, &tables);
            let got = run(c, &dev, frame, queue);
            assert_eq!(
                got, want,
                "seed {seed:#x}, table set {set}, queue {queue}, frame {frame:02x?}"
            );
            by_action[want.action as usize] += 1;
        };
        let mut n = 0u64;
        // Every fixture truncated at every length, on a few queues.
        for case in fixtures::cases() {
            for len in ioth_common::wire::ETH_HLEN..=case.frame.len() {
                for queue in [0, 1] {
                    check(&case.frame[..len], queue, &c);
                    n += 1;
                    truncations += 1;
                }
            }
        }
        // Structured random frames, on random queues (including beyond MAX_QUEUES).
        let per_set = FRAMES / TABLE_SETS;
        while n < per_set {
            let frame = if rng.random_bool(0.03) {
                let len = rng.random_range(14..200);
                (0..len).map(|_| rng.random()).collect()
            } else {
                structured_frame(&mut rng, &pools)
            };
            let queue = if rng.random_bool(0.9) {
                rng.random_range(0..2)
            } else {
                rng.random_range(0..DEVICE_QUEUES)
            };
            check(&frame, queue, &c);
            n += 1;
        }
        let counters = c.counters().expect("counters");
        assert_eq!(counters.total(), n, "every frame counted once");
        assert_eq!(counters.aborted, 0, "no frame aborted");
        total += n;
        drop(sockets);
    }
    println!(
        "differential: {total} frames agreed (seed {seed:#x}; {truncations} truncations; \
         pass {}, drop {}, redirect {})",
        by_action[xdp_action::PASS as usize],
        by_action[xdp_action::DROP as usize],
        by_action[xdp_action::REDIRECT as usize],
    );
    assert!(total >= FRAMES);
    // The mix must exercise every verdict, or the test proves little.
    for a in [xdp_action::PASS, xdp_action::DROP, xdp_action::REDIRECT] {
        assert!(by_action[a as usize] > 1000, "verdict {a} barely exercised");
    }
    let _ = NO_SLOT;
}

/// The inputs the `classify` fuzz target found (its corpus, grown by `cargo xtask fuzz` and by
/// the fuzz step of `cargo xtask test`) and those that once crashed it (committed).
fn fuzz_inputs() -> Vec<(String, Vec<u8>)> {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut v = Vec::new();
    for dir in ["corpus/classify", "regressions/classify"] {
        for e in std::fs::read_dir(fuzz.join(dir))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(b) = std::fs::read(e.path()) {
                v.push((e.path().display().to_string(), b));
            }
        }
    }
    v
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn the_fuzz_corpus_through_the_loaded_program() {
    // Each input as the fuzz target reads it: byte 0 picks the queue (bits 0-4, modulo 20)
    // and fan-out (bit 5); the rest is the frame. The fixtures come too, so the test has
    // something to check before any fuzzing has run.
    let mut inputs = fuzz_inputs();
    let corpus = inputs.len();
    for c in fixtures::cases() {
        let sel = (c.queue as u8 % 20) | if c.fanout { 0x20 } else { 0 };
        let mut b = vec![sel];
        b.extend_from_slice(&c.frame);
        inputs.push((c.name.clone(), b));
    }
    let dev = device("fuzzcorpus");
    let mut checked = 0;
    for fanout in [false, true] {
        let tables = fixtures::standard(fanout);
        // The trace map gives the slot and index the program chose, not only its action.
        let mut c = Classifier::load(LoadOptions {
            trace: true,
            ..LoadOptions::default()
        })
        .expect("load classifier");
        let mut sockets = Vec::new();
        install(&mut c, &tables, &mut sockets);
        for (name, input) in &inputs {
            let Some((&sel, frame)) = input.split_first() else {
                continue;
            };
            if (sel & 0x20 != 0) != fanout || frame.len() < ioth_common::wire::ETH_HLEN {
                continue;
            }
            let queue = u32::from(sel & 0x1f) % 20;
            let want = classify(frame, queue, &tables);
            assert_eq!(run(&c, &dev, frame, queue), want, "{name}");
            checked += 1;
        }
    }
    println!("fuzz corpus through the loaded program: {checked} inputs ({corpus} from the corpus)");
    assert!(checked >= 40, "too few inputs: {checked}");
}
