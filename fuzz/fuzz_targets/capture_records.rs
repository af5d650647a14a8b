//! Both ends of the capture protocol on any bytes: the server's request-line parser and the
//! client's record decoder (a stream of records until the end or an error). Never a panic,
//! and no frame larger than the protocol's limit is ever allocated.
#![no_main]

use ioth_dataplane::capture::{Record, protocol::parse_request, stream::read_record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        let _ = parse_request(line);
    }
    let mut r = data;
    for _ in 0..10_000 {
        match read_record(&mut r) {
            Ok(Some(Record::Frame { data: f, .. })) => assert!(f.len() <= 65_536),
            Ok(Some(Record::Dropped(_))) => {}
            Ok(None) | Err(_) => break,
        }
    }
});
