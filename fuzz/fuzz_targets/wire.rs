//! The IP/TCP header parse (`wire::parse_ip`) and checksum completion (`check_l4`) on any
//! frame: no panic; a checksum completed once is valid afterwards and completing again
//! changes nothing; a valid frame is left as it was.
#![no_main]

use ioth_dataplane::{
    link::checksum::{L4Checksum, check_l4},
    wire::{IpParse, parse_ip},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let IpParse::Ip(ip) = parse_ip(data) {
        let _ = ip.src(data);
        let _ = ip.dst(data);
        let _ = ip.tcp(data);
    }
    let mut frame = data.to_vec();
    match check_l4(&mut frame) {
        L4Checksum::Completed => {
            let done = frame.clone();
            assert_eq!(
                check_l4(&mut frame),
                L4Checksum::Valid,
                "completed, then invalid"
            );
            assert_eq!(frame, done, "a valid frame was changed");
        }
        L4Checksum::Valid | L4Checksum::NotL4 | L4Checksum::Invalid => {
            assert_eq!(frame, data, "only a partial checksum may be rewritten");
        }
    }
});
