//! Empty: the XDP program is the `ioth-ebpf` binary (src/main.rs). This lib target only makes
//! cargo rebuild the program when the shared crate `ioth-common` changes.
#![no_std]
