//! What operators type: MACs (`--mac`), VXLAN and vxvde specs (`--vxlan`, `--vxvde`) and
//! interface names (`--iface`, which become paths). Never a panic; a name accepted is a
//! valid interface name; a MAC printed parses back to itself.
#![no_main]

use std::str::FromStr as _;

use ioth_dataplane::{
    endpoint::switch::vxlan::VxlanSpec,
    sys::{parse_ifname, valid_ifname},
    wire::Mac,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = s.parse::<Mac>() {
        assert_eq!(m.to_string().parse::<Mac>().ok(), Some(m));
    }
    let _ = VxlanSpec::from_str(s);
    let _ = VxlanSpec::vxvde(s);
    if let Ok(name) = parse_ifname(s) {
        assert!(valid_ifname(&name));
        assert!(!name.contains('/') && name != "." && name != "..");
    }
});
