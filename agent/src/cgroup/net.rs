//! A container's network counters, per interface, from its network namespace as its init
//! process sees it: `/proc/<pid>/net/dev`. Docker reads the same kernel counters (over
//! netlink) and, like this, leaves out the loopback interface.

use std::io;
use std::path::Path;

use dockermon_proto::limits::{MAX_LIST_ENTRIES, MAX_NAME_BYTES, truncate};
use dockermon_proto::{InterfaceCounters, NetworkCounters};

use super::files;

/// Every interface but `lo`, by name, bounded.
pub(super) fn interfaces(net_dev: &Path) -> io::Result<Vec<InterfaceCounters>> {
    let text = files::read(net_dev)?;
    let mut interfaces = Vec::new();
    // Two header lines, then `name: 8 receive fields 8 transmit fields`.
    for line in text.lines().skip(2) {
        let Some((name, fields)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let values: Vec<u64> = fields
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| files::invalid(net_dev, "interface counters", line))?;
        if values.len() < 16 {
            return Err(files::invalid(net_dev, "16 counters", line));
        }
        interfaces.push(InterfaceCounters {
            name: truncate(name.to_owned(), MAX_NAME_BYTES),
            counters: NetworkCounters {
                rx_bytes: values[0],
                rx_packets: values[1],
                rx_errors: values[2],
                rx_dropped: values[3],
                tx_bytes: values[8],
                tx_packets: values[9],
                tx_errors: values[10],
                tx_dropped: values[11],
            },
        });
    }
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    interfaces.truncate(MAX_LIST_ENTRIES);
    Ok(interfaces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_map_to_docker_s_fields_and_lo_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev");
        std::fs::write(
            &path,
            "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo:    5000      50    0    0    0     0          0         0     5000      50    0    0    0     0       0          0\n  \
             eth0: 1266944     908    1    2    0     0          0         0    52300     620    3    4    0     0       0          0\n",
        )
        .unwrap();
        let found = interfaces(&path).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "eth0");
        assert_eq!(
            found[0].counters,
            NetworkCounters {
                rx_bytes: 1_266_944,
                rx_packets: 908,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 52_300,
                tx_packets: 620,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
    }
}
