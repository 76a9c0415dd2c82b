//! Process figures read from `/proc/self` (Linux): resident memory and CPU
//! time. Elsewhere they are absent, never guessed.

/// Clock ticks per second of `/proc/<pid>/stat` times: the kernel's
/// USER_HZ, fixed at 100 by the Linux ABI on every architecture we target.
const USER_HZ: f64 = 100.0;

/// What the process uses now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// Resident set size.
    pub rss_bytes: Option<u64>,
    /// User plus system CPU time since start.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
}

/// The memory this process may use: the cgroup v2 `memory.max` of its own
/// cgroup (or of the root `/sys/fs/cgroup`) when it is a number, else the
/// host's `MemTotal`. `None` off Linux.
pub fn memory_limit_bytes() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        })
        .map(|path| format!("/sys/fs/cgroup{}/memory.max", path.trim_end_matches('/')));
    let cgroup = own
        .into_iter()
        .chain(std::iter::once("/sys/fs/cgroup/memory.max".to_owned()))
        .find_map(|file| parse_memory_max(&std::fs::read_to_string(file).ok()?));
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| parse_mem_total(&m));
    match (cgroup, total) {
        // A limit above the host's memory cannot be reached.
        (Some(c), Some(t)) => Some(c.min(t)),
        (c, t) => c.or(t),
    }
}

/// `memory.max` holds a byte count, or `max` for no limit.
fn parse_memory_max(text: &str) -> Option<u64> {
    text.trim().parse().ok().filter(|v| *v > 0)
}

/// `MemTotal:` of `/proc/meminfo`, in bytes.
fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl ProcessStats {
    pub fn read() -> Self {
        Self {
            rss_bytes: rss_bytes(),
            cpu_seconds: cpu_seconds(),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as u64),
        }
    }
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_rss(&status)
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu(&stat)
}

/// `VmRSS:` of `/proc/self/status`, in bytes.
fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// utime + stime (fields 14 and 15) of `/proc/self/stat`. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted
/// after its closing parenthesis.
fn parse_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); utime is field 14.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        let stat = "4242 (my (odd) proc) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 100";
        assert_eq!(parse_cpu(stat), Some(3.0));
        assert_eq!(
            parse_rss("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2 * 1024 * 1024)
        );
        assert_eq!(parse_rss("Name:\tx\n"), None);
        assert_eq!(parse_memory_max("1073741824\n"), Some(1 << 30));
        assert_eq!(parse_memory_max("max\n"), None);
        assert_eq!(
            parse_mem_total("MemTotal:       16384 kB\nMemFree: 1 kB\n"),
            Some(16 * 1024 * 1024)
        );
    }

    #[test]
    fn reads_this_process_on_linux() {
        if cfg!(target_os = "linux") {
            let s = ProcessStats::read();
            assert!(s.rss_bytes.is_some_and(|b| b > 0));
            assert!(s.cpu_seconds.is_some());
            assert!(memory_limit_bytes().is_some_and(|b| b > 0));
        }
    }
}
