//! Reading a broker's CPU time and memory from `/proc/<pid>`.

use std::fs;
use std::io;

/// CPU seconds (user + system) the process has used.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| explain(pid, e))?;
    parse_cpu_ticks(&stat)
        .map(|t| t as f64 / clock_ticks() as f64)
        .ok_or_else(|| bad(pid, "stat"))
}

/// Resident set size in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| explain(pid, e))?;
    parse_rss_kib(&status)
        .map(|k| k * 1024)
        .ok_or_else(|| bad(pid, "status"))
}

/// utime + stime (fields 14 and 15) from a `/proc/PID/stat` line. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted after its closing parenthesis.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // field 3 is the first after ')'
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn explain(pid: u32, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("reading /proc/{pid} (is --broker-pid {pid} a running process?): {e}"),
    )
}

fn bad(pid: u32, file: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected format of /proc/{pid}/{file}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let stat = "42 (my (broker) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn parses_rss() {
        assert_eq!(parse_rss_kib("Name:\tx\nVmRSS:\t   1234 kB\n"), Some(1234));
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
    }
}
