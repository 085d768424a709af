using System.Runtime.InteropServices;

namespace Duroslight.Core.Interop;

/// <summary>The calls the reactor makes outside its ring: eventfd wake-ups, CPU affinity, limits, thread CPU time, sockets.</summary>
public static unsafe partial class LibC
{
    private const int EfdCloexec = 0x80000;
    private const int IpprotoTcp = 6;
    private const int TcpNodelay = 1;
    private const int RlimitNofile = 7;
    private const int RlimitMemlock = 8;
    private const int SockNonblockCloexec = 0x800 | 0x80000;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int eventfd(uint initval, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint write(int fd, void* buffer, nint count);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setsockopt(int fd, int level, int name, void* value, int length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getpeername(int fd, byte* address, int* length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int shutdown(int fd, int how);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sched_setaffinity(int pid, nint size, ulong* mask);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sched_getaffinity(int pid, nint size, ulong* mask);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getrlimit(int resource, ulong* limits);

    [LibraryImport("libc")]
    private static partial int clock_gettime(int clock, long* timespec);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int accept4(int fd, void* address, void* length, int flags);

    /// <summary>A descriptor held in reserve (/dev/null) so that, out of descriptors, one can be freed to refuse a connection.</summary>
    public static int OpenReserveDescriptor() => open("/dev/null", O_CLOEXEC);

    /// <summary>Accepts one pending connection of a non-blocking listener and closes it at once; false if none was pending.</summary>
    public static bool AcceptAndClose(int listenFd)
    {
        int fd = accept4(listenFd, null, null, SockNonblockCloexec);
        if (fd < 0) return false;
        close(fd);
        return true;
    }

    /// <summary>CPU time the calling thread has used, user and kernel (io_uring's inline work included), in ns.</summary>
    public static long ThreadCpuNanoseconds()
    {
        const int ClockThreadCputimeId = 3;
        var ts = stackalloc long[2];
        return clock_gettime(ClockThreadCputimeId, ts) == 0 ? ts[0] * 1_000_000_000 + ts[1] : 0;
    }

    public static int EventFd()
    {
        // Blocking on purpose: io_uring then waits for the counter (poll) instead of completing with EAGAIN.
        int fd = eventfd(0, EfdCloexec);
        if (fd < 0) throw new InvalidOperationException($"eventfd failed: errno {Marshal.GetLastPInvokeError()}");
        return fd;
    }

    /// <summary>Adds 1 to an eventfd counter (wakes the shard sleeping on it). Blocks only if the counter would overflow.</summary>
    public static void Signal(int eventFd)
    {
        ulong one = 1;
        write(eventFd, &one, sizeof(ulong));
    }

    public static void Close(int fd) => close(fd);

    public static void Shutdown(int fd) => shutdown(fd, 2);

    public static void SetNoDelay(int fd)
    {
        int on = 1;
        setsockopt(fd, IpprotoTcp, TcpNodelay, &on, sizeof(int));
    }

    /// <summary>"address:port" of a connected TCP socket (sockaddr_in / sockaddr_in6), or "?".</summary>
    public static string PeerName(int fd)
    {
        var storage = stackalloc byte[128];
        int length = 128;
        if (getpeername(fd, storage, &length) != 0) return "?";
        var bytes = new ReadOnlySpan<byte>(storage, length);
        ushort family = BitConverter.ToUInt16(bytes);
        int port = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(bytes[2..]);
        System.Net.IPAddress address = family switch
        {
            2 => new System.Net.IPAddress(bytes.Slice(4, 4)),
            10 => new System.Net.IPAddress(bytes.Slice(8, 16), System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(bytes[24..])),
            _ => System.Net.IPAddress.None,
        };
        return family is 2 or 10 ? new System.Net.IPEndPoint(address, port).ToString() : "?";
    }

    /// <summary>Pins the calling thread to one CPU.</summary>
    public static int PinCurrentThread(int cpu)
    {
        var mask = stackalloc ulong[16];
        for (int i = 0; i < 16; i++) mask[i] = 0;
        mask[cpu / 64] |= 1UL << (cpu % 64);
        return sched_setaffinity(0, 16 * sizeof(ulong), mask) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    /// <summary>The CPUs this process may run on (taskset, cgroup cpusets), in order.</summary>
    public static int[] AllowedCpus()
    {
        var mask = stackalloc ulong[16];
        if (sched_getaffinity(0, 16 * sizeof(ulong), mask) != 0) return Enumerable.Range(0, Environment.ProcessorCount).ToArray();
        var cpus = new List<int>();
        for (int cpu = 0; cpu < 16 * 64; cpu++)
            if ((mask[cpu / 64] & (1UL << (cpu % 64))) != 0) cpus.Add(cpu);
        return cpus.ToArray();
    }

    public static (ulong Soft, ulong Hard) OpenFilesLimit() => Limit(RlimitNofile);

    public static (ulong Soft, ulong Hard) MemlockLimit() => Limit(RlimitMemlock);

    private static (ulong Soft, ulong Hard) Limit(int resource)
    {
        var limits = stackalloc ulong[2];
        return getrlimit(resource, limits) == 0 ? (limits[0], limits[1]) : (ulong.MaxValue, ulong.MaxValue);
    }
}
