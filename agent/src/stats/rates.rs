//! Rates between two readings of the same container run.
//!
//! CPU % uses Docker's formula, container CPU time over host CPU time times the number
//! of online CPUs, so 100 % is one full core and the figure matches `docker stats`. When
//! the host counter did not move (possible on very short intervals), it falls back to
//! container CPU time over wall time.

use dockermon_proto::StatsRates;

use super::counters::Reading;

/// Rates from `previous` to `current`, or `None` when they do not describe one run of the
/// container (time or CPU going backwards means the counters restarted).
pub fn rates(previous: &Reading, current: &Reading) -> Option<StatsRates> {
    let interval_ns = current.time_ns - previous.time_ns;
    let (p, c) = (&previous.counters, &current.counters);
    if interval_ns <= 0 || c.cpu_total_ns < p.cpu_total_ns {
        return None;
    }
    let seconds = interval_ns as f64 / 1e9;
    let per_second = |from: u64, to: u64| to.saturating_sub(from) as f64 / seconds;

    let cpu_delta = (c.cpu_total_ns - p.cpu_total_ns) as f64;
    let system_delta = c.cpu_system_ns.saturating_sub(p.cpu_system_ns) as f64;
    let cpu_percent = if system_delta > 0.0 {
        cpu_delta / system_delta * f64::from(c.online_cpus.max(1)) * 100.0
    } else {
        cpu_delta / interval_ns as f64 * 100.0
    };

    Some(StatsRates {
        interval_ns,
        cpu_percent,
        net_rx_bytes_per_s: per_second(p.network.rx_bytes, c.network.rx_bytes),
        net_tx_bytes_per_s: per_second(p.network.tx_bytes, c.network.tx_bytes),
        block_read_bytes_per_s: per_second(p.block_io.read_bytes, c.block_io.read_bytes),
        block_write_bytes_per_s: per_second(p.block_io.write_bytes, c.block_io.write_bytes),
    })
}

#[cfg(test)]
mod tests {
    use dockermon_proto::{BlockIo, NetworkCounters, StatsCounters};

    use super::*;

    fn reading(time_s: f64, cpu_ns: u64, system_ns: u64, rx: u64, write: u64) -> Reading {
        Reading {
            time_ns: (time_s * 1e9) as i64,
            counters: StatsCounters {
                cpu_total_ns: cpu_ns,
                cpu_system_ns: system_ns,
                online_cpus: 2,
                network: NetworkCounters {
                    rx_bytes: rx,
                    ..Default::default()
                },
                block_io: BlockIo {
                    write_bytes: write,
                    ..Default::default()
                },
                ..Default::default()
            },
        }
    }

    #[test]
    fn one_busy_core_of_two_is_one_hundred_percent() {
        // 10 s on a 2-CPU host: the host counted 20 CPU-seconds, the container 10.
        let r = rates(
            &reading(0.0, 0, 0, 0, 0),
            &reading(10.0, 10_000_000_000, 20_000_000_000, 5_000, 1_000_000),
        )
        .unwrap();
        assert!((r.cpu_percent - 100.0).abs() < 1e-9, "{}", r.cpu_percent);
        assert_eq!(r.interval_ns, 10_000_000_000);
        assert!((r.net_rx_bytes_per_s - 500.0).abs() < 1e-9);
        assert!((r.block_write_bytes_per_s - 100_000.0).abs() < 1e-9);
    }

    #[test]
    fn cpu_percent_is_fractional() {
        let r = rates(
            &reading(0.0, 0, 0, 0, 0),
            &reading(1.0, 25_000_000, 2_000_000_000, 0, 0),
        )
        .unwrap();
        assert!((r.cpu_percent - 2.5).abs() < 1e-9, "{}", r.cpu_percent);
    }

    #[test]
    fn wall_clock_fallback_when_the_host_counter_is_still() {
        let r = rates(
            &reading(0.0, 0, 7, 0, 0),
            &reading(2.0, 1_000_000_000, 7, 0, 0),
        )
        .unwrap();
        assert!((r.cpu_percent - 50.0).abs() < 1e-9, "{}", r.cpu_percent);
    }

    #[test]
    fn restarted_counters_give_no_rates() {
        assert_eq!(
            rates(&reading(0.0, 500, 0, 0, 0), &reading(1.0, 100, 10, 0, 0)),
            None
        );
        assert_eq!(
            rates(&reading(5.0, 0, 0, 0, 0), &reading(5.0, 1, 1, 0, 0)),
            None
        );
    }

    #[test]
    fn a_shrinking_counter_reads_as_zero_not_as_a_huge_rate() {
        let r = rates(&reading(0.0, 0, 0, 9_000, 0), &reading(1.0, 1, 10, 10, 0)).unwrap();
        assert_eq!(r.net_rx_bytes_per_s, 0.0);
    }
}
