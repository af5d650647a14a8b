//! Reading the classifier's counters, and publishing an endpoint's transmit counters for
//! other processes.

use std::fmt;

use aya::maps::{Array, MapData};
use ioth_common::{Counter, EndpointStats, EndpointTx, map_names};

use super::{
    program::Classifier,
    types::{EndpointId, Result, map_err},
};

/// The verdict counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerdictCounters {
    /// Redirected into a socket.
    pub redirect: u64,
    /// Passed to the kernel.
    pub pass: u64,
    /// Dropped (owned, no socket on the queue).
    pub drop: u64,
    /// Aborted (program error).
    pub aborted: u64,
}

impl VerdictCounters {
    /// The counter of one verdict.
    pub fn get(&self, c: Counter) -> u64 {
        match c {
            Counter::Redirect => self.redirect,
            Counter::Pass => self.pass,
            Counter::Drop => self.drop,
            Counter::Aborted => self.aborted,
        }
    }
    /// All frames seen.
    pub fn total(&self) -> u64 {
        self.redirect + self.pass + self.drop + self.aborted
    }
}

/// Writes one endpoint's [`EndpointTx`] counters into the classifier's tx map, for other
/// processes to read. One system call per write: call it a few times a second, not per packet.
pub struct TxPublisher {
    map: Array<MapData, EndpointTx>,
    slot: u32,
}

impl fmt::Debug for TxPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxPublisher")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl TxPublisher {
    /// Stores `value` as the endpoint's counters.
    pub fn publish(&mut self, value: &EndpointTx) -> Result<()> {
        self.map
            .set(self.slot, value, 0)
            .map_err(map_err(map_names::EP_TX, "publish"))
    }
}

impl Classifier {
    /// Verdict counters summed over CPUs.
    pub fn counters(&self) -> Result<VerdictCounters> {
        let mut sum = [0u64; Counter::COUNT as usize];
        for (i, total) in sum.iter_mut().enumerate() {
            let values = self
                .counters
                .get(&(i as u32), 0)
                .map_err(map_err(map_names::COUNTERS, "read"))?;
            *total = values.iter().sum();
        }
        Ok(VerdictCounters {
            redirect: sum[Counter::Redirect as usize],
            pass: sum[Counter::Pass as usize],
            drop: sum[Counter::Drop as usize],
            aborted: sum[Counter::Aborted as usize],
        })
    }

    /// Receive counters of one slot, summed over CPUs.
    pub fn endpoint_stats(&self, slot: u32) -> Result<EndpointStats> {
        let values = self
            .ep_stats
            .get(&slot, 0)
            .map_err(map_err(map_names::EP_STATS, "read"))?;
        Ok(values
            .iter()
            .fold(EndpointStats::default(), |a, v| EndpointStats {
                rx_packets: a.rx_packets + v.rx_packets,
                rx_bytes: a.rx_bytes + v.rx_bytes,
                rx_dropped: a.rx_dropped + v.rx_dropped,
            }))
    }

    /// The transmit counters `slot`'s owner published last.
    pub fn endpoint_tx(&self, slot: u32) -> Result<EndpointTx> {
        self.ep_tx
            .get(&slot, 0)
            .map_err(map_err(map_names::EP_TX, "read"))
    }

    /// A handle through which `id`'s owner publishes its transmit counters (its own map
    /// handle, so the owning thread writes without taking the classifier's lock).
    pub fn tx_publisher(&self, id: EndpointId) -> Result<TxPublisher> {
        let data = MapData::from_id(self.ep_tx_id).map_err(map_err(map_names::EP_TX, "open"))?;
        let map = Array::try_from(aya::maps::Map::Array(data))
            .map_err(map_err(map_names::EP_TX, "open"))?;
        Ok(TxPublisher { map, slot: id.0 })
    }
}
