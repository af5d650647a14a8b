//! rtnetlink against the kernel, checked with iproute2 (`ip`, `bridge`) as the other side:
//! what `sys::netlink` reads matches what `ip` shows, and what it changes `ip` sees.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use ioth_dataplane::{
    netns::NetNs,
    sys::{
        netlink::{LinkEvent, LinkEvents, NetlinkError, Rtnetlink},
        rx_queues, wait_readable,
    },
    wire::Mac,
};

fn text(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "privileged: needs root (cargo xtask test)"]
fn links_addresses_routes_fdb_and_events_agree_with_iproute2() {
    let ns = NetNs::new("netlink").expect("netns");
    ns.ip(&[
        "link",
        "add",
        "nl0",
        "numrxqueues",
        "3",
        "type",
        "veth",
        "peer",
        "name",
        "nl1",
    ])
    .expect("veth");
    let ip = |args: &[&str]| text(ns.ip(args).expect("ip"));
    let bridge = |args: &[&str]| text(ns.exec("bridge", args).expect("bridge"));

    // Reading: index, name, state, MTU, queues, MAC as `ip` has them.
    let (link, queues) = ns.run(|| {
        let mut nl = Rtnetlink::open().expect("rtnetlink");
        assert!(nl.link("nonesuch").expect("a clean answer").is_none());
        (
            nl.link("nl0").expect("get link").expect("nl0 exists"),
            rx_queues("nl0"),
        )
    });
    let shown = ip(&["-o", "link", "show", "nl0"]);
    assert!(
        shown.starts_with(&format!("{}: nl0@", link.index)),
        "{shown}"
    );
    assert!(!link.up, "a new link is down");
    assert_eq!(link.mtu, 1500);
    assert_eq!(link.num_rx_queues, 3);
    let mac = link.mac.expect("an Ethernet address");
    assert!(shown.contains(&Mac(mac).to_string()), "{shown}");
    // A veth uses one of its queues unless told otherwise: the channel count wins.
    let queues = queues.expect("rx queues");
    let channels = text(ns.exec("ethtool", &["-l", "nl0"]).expect("ethtool -l"));
    let current = channels
        .split("Current hardware settings:")
        .nth(1)
        .and_then(|c| c.lines().find_map(|l| l.trim().strip_prefix("RX:")))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .expect("ethtool's current RX");
    assert_eq!(queues, current, "{channels}");

    // Changing: up, addresses, a default route, an fdb entry — `ip` and `bridge` see them.
    let v4: IpAddr = Ipv4Addr::new(10, 77, 0, 1).into();
    let v6: IpAddr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1).into();
    let gw: IpAddr = Ipv4Addr::new(10, 77, 0, 254).into();
    let endpoint_mac = [0x02, 0x77, 0, 0, 0, 1];
    let index = link.index;
    let dup = ns.run(move || {
        let mut nl = Rtnetlink::open().expect("rtnetlink");
        nl.set_up(index, true).expect("set up");
        nl.add_address(index, v4, 24).expect("add v4");
        nl.add_address(index, v6, 64).expect("add v6");
        nl.add_default_route(gw).expect("default route");
        nl.add_fdb(index, endpoint_mac).expect("fdb add");
        let listed = nl.addresses().expect("addresses");
        assert!(
            listed
                .iter()
                .any(|a| a.index == index && a.addr == v4 && a.prefix == 24)
        );
        assert!(
            listed
                .iter()
                .any(|a| a.index == index && a.addr == v6 && a.prefix == 64)
        );
        assert!(nl.link("nl0").expect("link").expect("nl0").up);
        nl.add_address(index, v4, 24)
    });
    match dup {
        Err(NetlinkError::Refused { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::EEXIST), "{source}");
        }
        other => panic!("adding an address twice: {other:?}"),
    }
    let addrs = ip(&["-o", "addr", "show", "dev", "nl0"]);
    assert!(addrs.contains("inet 10.77.0.1/24"), "{addrs}");
    assert!(addrs.contains("inet6 fd77::1/64"), "{addrs}");
    assert!(ip(&["-o", "link", "show", "nl0"]).contains("UP"));
    let routes = ip(&["route", "show", "default"]);
    assert!(
        routes.contains("default via 10.77.0.254 dev nl0"),
        "{routes}"
    );
    let fdb = bridge(&["fdb", "show", "dev", "nl0"]);
    assert!(
        fdb.lines()
            .any(|l| l.starts_with("02:77:00:00:00:01") && l.contains("self permanent")),
        "{fdb}"
    );

    // Events: an MTU change and a down, from `ip`, arrive as changes of this link.
    let events = ns.spawn(move || {
        let mut ev = LinkEvents::subscribe().expect("subscribe");
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if !wait_readable(&[ev.fd()], 100).expect("poll") {
                continue;
            }
            for e in ev.next_batch().expect("events") {
                if let LinkEvent::Changed(l) = e
                    && l.index == index
                {
                    seen.push((l.up, l.mtu));
                    if !l.up {
                        return seen;
                    }
                }
            }
        }
        seen
    });
    std::thread::sleep(Duration::from_millis(300));
    ip(&["link", "set", "nl0", "mtu", "1400"]);
    ip(&["link", "set", "nl0", "down"]);
    let seen = events.join().expect("event thread");
    assert!(seen.contains(&(true, 1400)), "{seen:?}");
    assert!(seen.contains(&(false, 1400)), "{seen:?}");

    // Removing: the fdb entry and the address go.
    ns.run(move || {
        let mut nl = Rtnetlink::open().expect("rtnetlink");
        nl.del_fdb(index, endpoint_mac).expect("fdb del");
        nl.del_address(index, v4, 24).expect("del v4");
    });
    assert!(!bridge(&["fdb", "show", "dev", "nl0"]).contains("02:77:00:00:00:01"));
    assert!(!ip(&["-o", "addr", "show", "dev", "nl0"]).contains("10.77.0.1"));
    println!("netlink: link {index} read, changed and watched; iproute2 agrees");
}
