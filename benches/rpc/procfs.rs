//! CPU time and memory of a process, from Linux's /proc.

use std::fs;

/// Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on every Linux
/// architecture we run on; the kernel fixes it for user space).
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds of process `pid` (all its threads, dead ones
/// included), or `None` if it is gone. Resolution: 10 ms.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces;
    // the fields after it start with field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?; // field 14
    let stime: u64 = fields.get(12)?.parse().ok()?; // field 15
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// CPU seconds of the calling process.
pub(crate) fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// A `Vm*` line of /proc/<pid>/status, in KiB (`VmHWM`: peak resident set,
/// `VmRSS`: current resident set).
pub(crate) fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// `status_kib` of the calling process.
pub(crate) fn own_kib(key: &str) -> u64 {
    status_kib(std::process::id(), key).unwrap_or(0)
}

/// Busy CPU seconds of the whole machine (all cores) since boot: user,
/// nice, system, irq, softirq and steal of /proc/stat's `cpu` line.
pub(crate) fn machine_busy_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map_while(|t| t.parse().ok())
        .collect();
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| ticks.get(i).copied().unwrap_or(0));
    Some(busy.sum::<u64>() as f64 / TICKS_PER_SECOND)
}

/// The process listening on TCP `port` (the broker, on a local URL), if
/// we may see it.
pub(crate) fn listener_pid(port: u16) -> Option<u32> {
    let suffix = format!(":{port:04X}");
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(table) = fs::read_to_string(table) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local address, state (0A = LISTEN), inode
            if fields.len() > 9 && fields[1].ends_with(&suffix) && fields[3] == "0A" {
                sockets.push(format!("socket:[{}]", fields[9]));
            }
        }
    }
    if sockets.is_empty() {
        return None;
    }
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let fds = fs::read_dir(entry.path().join("fd")).ok()?;
        fds.flatten()
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .any(|link| sockets.iter().any(|s| link.as_os_str() == s.as_str()))
            .then_some(pid)
    })
}

/// Bytes waiting in the kernel on either end of every TCP connection to or
/// from `port` (send queue + receive queue, /proc/net/tcp): 0 once all
/// that was written to the broker has been read by it, and vice versa.
pub(crate) fn tcp_queued_bytes(port: u16) -> u64 {
    let port = format!(":{port:04X}");
    let mut queued = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(table) = fs::read_to_string(table) else {
            continue;
        };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 5 || !(fields[1].ends_with(&port) || fields[2].ends_with(&port)) {
                continue;
            }
            let (tx, rx) = fields[4].split_once(':').unwrap_or(("0", "0"));
            let hex = |q: &str| u64::from_str_radix(q, 16).unwrap_or(0);
            queued += hex(tx) + hex(rx);
        }
    }
    queued
}
