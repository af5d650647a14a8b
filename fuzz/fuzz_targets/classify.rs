//! The reference classifier (`ioth_common::classify`) on any frame, with the standard fixture
//! tables. Byte 0 picks the rx queue (bits 0-4, modulo 20: beyond the 16 served queues too)
//! and fan-out (bit 5); the rest is the frame.
//! The corpus this grows is replayed through the loaded XDP program by the privileged test
//! `the_fuzz_corpus_through_the_loaded_program` (dataplane/tests/classifier.rs), which must
//! decide every input the same way.
#![no_main]

use ioth_common::{
    NO_SLOT,
    classify::{Decision, Owner, classify, owner},
    fixtures::standard,
    xdp_action,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let queue = u32::from(sel & 0x1f) % 20;
    let tables = standard(sel & 0x20 != 0);
    let d = classify(frame, queue, &tables);
    // The decision agrees with the owner lookup it is built on.
    match owner(frame, &tables) {
        Owner::Endpoint(slot) => {
            assert_eq!(d.slot, slot);
            assert_ne!(d.action, xdp_action::PASS, "an owned frame is never passed");
        }
        Owner::Kernel => assert_eq!(d, Decision::KERNEL),
        Owner::Fanout => assert_ne!(d.action, xdp_action::DROP),
    }
    if d.action == xdp_action::REDIRECT {
        assert_ne!(d.xsk_index, NO_SLOT);
    }
});
