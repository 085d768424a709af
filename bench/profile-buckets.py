#!/usr/bin/env python3
"""bench/profile-buckets.py PERF.DATA [THREAD]: where a profile's samples go, in the buckets of bench/README.md's
QD1 breakdown. Reads `perf script` of a call-graph profile (bench/io-cost.sh PROFILE=DIR writes one; the JIT map
must still be in /tmp for managed frames to have names, and W^X off: DOTNET_EnableWriteXorExecute=0) and gives each sample the first
bucket below whose pattern matches any frame of its stack, so a sample counts once. THREAD (e.g. shard-0) keeps
only that thread's samples."""
import re
import subprocess
import sys
from collections import Counter

# Order matters: a send that wakes the host is "send", not "wake-up"; the idle spin's clock read is "clock".
BUCKETS = [
    ("clock reads (vDSO clock_gettime)", r"clock_gettime|__vdso|SystemNative_GetTimestamp|GetLowResolutionTimestamp"),
    ("idle spin (polling loop without work, user space)", None),
    ("sleep and wake-up (io_uring wait, scheduler)", r"io_cqring_wait|schedule_hrtimeout|__schedule|sched_yield"),
    ("TCP send (loopback: includes delivery to the host)", r"io_send|io_sendmsg|tcp_sendmsg|sock_sendmsg"),
    ("TCP receive (copy out of the socket)", r"io_recv|tcp_recvmsg|sock_recvmsg"),
    ("poll arm and wake (receives that found no data)", r"io_arm_poll_handler|__io_arm_poll|io_poll_task_func|io_poll_wake|io_poll_add"),
    ("io_uring enter itself (submit, task work, CQEs)", r"io_uring_enter|io_submit_sqes|io_run_local_work|io_req_|entry_SYSCALL|do_syscall"),
    ("interrupts and softirqs", r"asm_sysvec|irq_exit|__do_softirq|net_rx_action|asm_common_interrupt"),
    ("memory copies in user space (memmove)", r"__memmove|__memcpy|memmove|memcpy"),
    ("ring access (liburing, shim: reap, prep)", r"liburing|duroslight_uring|ds_reap|ds_prep|ds_submit|io_uring_peek"),
    ("managed code (engine, reactor, store)", r"\[unknown\]|memfd:doublemapper|perf-\d+\.map|Duroslight|System\."),
]

# A sample inside none of these is the polling loop itself (reap that found nothing, flag check, loop overhead;
# RunWork and SendBatches run on every iteration, so only what they call, ::Execute and ::SendBatch, is work).
WORK = r"Shard::Dispatch|::Execute\(|::SendBatch\(|::OnTick\(|OnReceived|OnCompletion|entry_SYSCALL|\[k\]|kallsyms"


def main():
    data = sys.argv[1]
    thread = sys.argv[2] if len(sys.argv) > 2 else None
    out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,ip,sym,dso"], capture_output=True, text=True).stdout
    counts, total = Counter(), 0
    for sample in out.split("\n\n"):
        lines = [l for l in sample.strip().split("\n") if l.strip()]
        if not lines or (thread and not lines[0].strip().startswith(thread)):
            continue
        stack = "\n".join(lines[1:]) or lines[0]
        total += 1
        for name, pattern in BUCKETS:
            if pattern is None and not re.search(WORK, stack) or pattern and re.search(pattern, stack):
                counts[name] += 1
                break
        else:
            counts["other (kernel and runtime)"] += 1
    print(f"{total} samples" + (f" of {thread}" if thread else ""))
    for name, n in counts.most_common():
        print(f"{100.0 * n / max(total, 1):5.1f}%  {name}")


if __name__ == "__main__":
    main()
