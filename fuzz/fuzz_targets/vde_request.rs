//! The vde_switch control request parser (`switch::vde::parse_request`) on any bytes a
//! client may send to `DIR/ctl`: a request or an error, never a panic.
#![no_main]

use ioth_dataplane::endpoint::switch::vde::parse_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = parse_request(data) {
        // Whatever was accepted is printable (it ends up in reports and `ioth endpoints`).
        let _ = format!("{r:?}");
    }
});
