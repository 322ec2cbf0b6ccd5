//! What the generator measures outside its sockets: the server process's CPU time and memory
//! (from /proc), its own CPU time (getrusage), and the merged latency histogram.

use hdrhistogram::Histogram;

/// CPU seconds of a process: the on-CPU nanoseconds of each of its threads from
/// /proc/PID/task/*/schedstat, or, where that is not available, user + system clock ticks from
/// /proc/PID/stat. Ticks are 10 ms: a run that uses half a second of server CPU would be
/// quantised by 2 %. (A thread that exits between two readings takes its time with it from the
/// schedstat sum; the larger of the two figures is used so that such a loss shows as ticks.)
pub fn process_cpu_s(pid: u32) -> anyhow::Result<f64> {
    let ticks = process_cpu_ticks_s(pid)?;
    Ok(match process_cpu_schedstat_s(pid) {
        Some(precise) if precise + 0.02 >= ticks => precise,
        _ => ticks,
    })
}

fn process_cpu_schedstat_s(pid: u32) -> Option<f64> {
    let mut total = 0.0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        total += task_cpu_s(&task.ok()?.path().join("schedstat"))?;
    }
    Some(total)
}

/// The first field of a task's schedstat: nanoseconds on a CPU.
fn task_cpu_s(schedstat: &std::path::Path) -> Option<f64> {
    let stat = std::fs::read_to_string(schedstat).ok()?;
    Some(stat.split_whitespace().next()?.parse::<u64>().ok()? as f64 / 1e9)
}

fn process_cpu_ticks_s(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces and parentheses: fields are counted after the
    // last ')'. utime and stime are fields 14 and 15 of the whole line.
    let after = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow::anyhow!("unreadable /proc/{pid}/stat"))?
        .1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / hz)
}

/// Resident set size of a process in KiB, from /proc/PID/status.
pub fn process_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("bad VmRSS line"))?
        .parse()?)
}

/// The server CPU seconds, when a pid was given.
pub fn server_cpu(pid: Option<u32>, also: &[u32]) -> Option<f64> {
    let mut total = process_cpu_s(pid?).ok()?;
    for &p in also {
        total += process_cpu_s(p).ok()?;
    }
    Some(total)
}

/// CPU seconds this process has used (all threads).
pub fn self_cpu_s() -> f64 {
    // SAFETY: an all-zero rusage is a valid value; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raise this process's open-files soft limit to its hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
        rl.rlim_cur as u64
    }
}

/// Delivery latency in microseconds, 1 us to 60 s, two significant digits (1 % resolution),
/// small enough (about 20 KB) to keep one per receiving connection without sharing.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_cpu_s() -> f64 {
        // SAFETY: an all-zero timespec is valid; clock_gettime fills it.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: a valid clock id and pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    }

    #[test]
    fn schedstat_is_read_in_seconds_of_cpu() {
        // This thread's own schedstat against the clock of its CPU time: same unit, same count.
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let path = format!("/proc/self/task/{tid}/schedstat");
        let start = thread_cpu_s();
        let mut x: u64 = 1;
        while thread_cpu_s() - start < 0.1 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let schedstat = task_cpu_s(std::path::Path::new(&path)).expect("schedstat readable");
        let clock = thread_cpu_s();
        assert!(clock >= 0.1);
        // schedstat is brought up to date at scheduler events, so it may trail by a tick.
        assert!(
            (schedstat - clock).abs() < 0.02,
            "schedstat {schedstat} s, thread clock {clock} s"
        );
        assert!(process_cpu_s(std::process::id()).unwrap() >= 0.09);
    }
}

/// The server's system calls during the run phase, counted by `perf stat` on the kernel's
/// syscall tracepoints (attached to the server's pid; needs root or a low
/// `perf_event_paranoid`): how many sends it made and how many times its event loop turned.
/// Redis, ngircd and lanchat are counted the same way, so the figures compare across servers.
pub struct SyscallCount {
    child: std::process::Child,
    out: std::path::PathBuf,
}

/// The tracepoints counted: every way a server hands bytes to a socket, and every way an event
/// loop waits for readiness.
const SENDS: &[&str] = &["sendto", "sendmsg", "write", "writev"];
const TURNS: &[&str] = &["epoll_wait", "epoll_pwait", "epoll_pwait2"];

/// What [`SyscallCount::stop`] found.
#[derive(Debug, Clone, Copy)]
pub struct Syscalls {
    pub sends: u64,
    pub loop_turns: u64,
}

impl SyscallCount {
    /// Start counting the syscalls of `pid`; `None` (with a warning) when `perf` cannot.
    pub fn start(pid: u32) -> Option<SyscallCount> {
        let out = std::env::temp_dir().join(format!(
            "lanchat-load-perf-{}-{pid}.csv",
            std::process::id()
        ));
        let events: Vec<String> = SENDS
            .iter()
            .chain(TURNS)
            .map(|s| format!("syscalls:sys_enter_{s}"))
            .collect();
        let child = std::process::Command::new("perf")
            .args(["stat", "-x", ",", "-e", &events.join(","), "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(&out)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(child) => Some(SyscallCount { child, out }),
            Err(e) => {
                eprintln!("lanchat-load: --count-syscalls: cannot run perf: {e}");
                None
            }
        }
    }

    /// Stop counting (SIGINT, as perf expects) and read the counts; `None` when perf failed.
    pub fn stop(mut self) -> Option<Syscalls> {
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out).ok();
        let _ = std::fs::remove_file(&self.out);
        let counts = parse_perf_csv(&text?);
        let sum = |names: &[&str]| -> u64 {
            names
                .iter()
                .filter_map(|n| counts.get(&format!("sys_enter_{n}")))
                .sum()
        };
        if counts.is_empty() {
            eprintln!("lanchat-load: --count-syscalls: perf counted nothing (permissions?)");
            return None;
        }
        Some(Syscalls {
            sends: sum(SENDS),
            loop_turns: sum(TURNS),
        })
    }
}

/// `perf stat -x,` lines: `COUNT,UNIT,EVENT,...`; events perf could not count are skipped.
fn parse_perf_csv(text: &str) -> std::collections::HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            let count = f.next()?.trim().parse::<u64>().ok()?;
            let event = f.nth(1)?;
            Some((event.rsplit(':').next()?.to_owned(), count))
        })
        .collect()
}

#[cfg(test)]
mod syscall_tests {
    #[test]
    fn perf_csv_is_read_by_event_name() {
        let text = "# started on Mon\n\n1234,,syscalls:sys_enter_sendto,1000,100.00,,\n\
                    <not supported>,,syscalls:sys_enter_writev,0,100.00,,\n\
                    56,,syscalls:sys_enter_epoll_wait,1000,100.00,,\n";
        let c = super::parse_perf_csv(text);
        assert_eq!(c["sys_enter_sendto"], 1234);
        assert_eq!(c["sys_enter_epoll_wait"], 56);
        assert!(!c.contains_key("sys_enter_writev"));
    }
}
