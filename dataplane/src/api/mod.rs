//! What applications use: sockets on a stack, blocking ([`blocking`]) or with tokio
//! ([`aio`]), and the small echo/discard/source services `ioth serve` and the benchmarks
//! share ([`apps`]). Both socket APIs work over any [`crate::stack::StackOwner`].

pub mod aio;
pub mod apps;
pub mod blocking;
