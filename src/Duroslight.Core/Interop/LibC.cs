using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Core.Interop;

/// <summary>
/// The Linux libc calls .NET does not expose, for every layer: files (hole punching, fdatasync, O_DIRECT,
/// allocated-block counts, fsync of a directory) and the reactor's threads and sockets (eventfd, affinity, limits,
/// socket options). Errno values and flags are the Linux generic ones (x86-64 and arm64 agree).
/// </summary>
public static unsafe partial class LibC
{
    public const int EPERM = 1;
    public const int EINTR = 4;
    public const int EIO = 5;
    public const int EBADF = 9;
    public const int EAGAIN = 11;
    public const int ENOMEM = 12;
    public const int ENODEV = 19;
    public const int EINVAL = 22;
    public const int ENFILE = 23;
    public const int EMFILE = 24;
    public const int ENOSPC = 28;
    public const int ENOSYS = 38;
    public const int EOPNOTSUPP = 95;
    public const int ENOBUFS = 105;
    public const int EDQUOT = 122;
    public const int ECANCELED = 125;

    public const int FALLOC_FL_KEEP_SIZE = 0x01;
    public const int FALLOC_FL_PUNCH_HOLE = 0x02;
    public const int FALLOC_FL_ZERO_RANGE = 0x10;

    private const int O_RDONLY = 0;
    private const int O_CLOEXEC = 0x80000;
    private const int AT_EMPTY_PATH = 0x1000;
    private const uint STATX_BLOCKS = 0x400;

    // struct statx has one layout on every architecture, unlike struct stat; stx_blocks sits at byte 48.
    private const int StatxBufferSize = 256;
    private const int StatxBlocksOffset = 48;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(SafeFileHandle fd, int mode, long offset, long length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fdatasync(SafeFileHandle fd);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int fsync(SafeFileHandle fd);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int fsyncDescriptor(int fd);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial long lseek(SafeFileHandle fd, long offset, int whence);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(SafeFileHandle fd, int cmd, int arg);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int statx(SafeFileHandle dirfd, byte* path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", SetLastError = true)]
    private static partial void* mmap(void* addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int munmap(void* addr, nuint length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int madvise(void* addr, nuint length, int advice);

    private const int PROT_READ = 1, PROT_WRITE = 2, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20, MADV_HUGEPAGE = 14;
    private const nuint HugePageSize = 2 << 20;

    /// <summary>
    /// Anonymous zeroed memory of <paramref name="length"/> bytes (a multiple of 2 MiB), 2 MiB-aligned and advised
    /// MADV_HUGEPAGE, so the kernel backs it with transparent huge pages where it can (one TLB entry per 2 MiB instead
    /// of 512). Free it with <see cref="UnmapMemory"/>.
    /// </summary>
    public static byte* MapHugePageMemory(nuint length)
    {
        // Over-map by one huge page and trim both ends: mmap only promises 4 KiB alignment.
        byte* raw = (byte*)mmap(null, length + HugePageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == (byte*)-1) throw new OutOfMemoryException($"mmap of {length} bytes failed: errno {Marshal.GetLastPInvokeError()}");
        byte* start = (byte*)(((nuint)raw + HugePageSize - 1) & ~(HugePageSize - 1));
        if (start > raw) munmap(raw, (nuint)(start - raw));
        nuint tail = (nuint)(raw + length + HugePageSize - (start + length));
        if (tail > 0) munmap(start + length, tail);
        madvise(start, length, MADV_HUGEPAGE); // a hint: without THP the memory is ordinary pages
        return start;
    }

    public static void UnmapMemory(byte* start, nuint length) => munmap(start, length);

    private const int F_GETFL = 3;
    private const int F_SETFL = 4;

    // O_DIRECT's value differs between architectures (040000 on x86, 0200000 on Arm).
    private static readonly int O_DIRECT = RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x10000 : 0x4000;

    /// <summary>
    /// Turns on O_DIRECT for an open file (.NET's File.OpenHandle has no flag for it). Returns 0 or the errno:
    /// EINVAL where the filesystem cannot do direct I/O (tmpfs).
    /// </summary>
    public static int EnableDirectIo(SafeFileHandle fd)
    {
        int flags = fcntl(fd, F_GETFL, 0);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_DIRECT) != 0) return Marshal.GetLastPInvokeError();
        return 0;
    }

    /// <summary>fallocate(2), retried on EINTR. Returns 0 or the errno.</summary>
    public static int Fallocate(SafeFileHandle fd, int mode, long offset, long length)
    {
        while (fallocate(fd, mode, offset, length) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR)
            {
                return errno;
            }
        }

        return 0;
    }

    /// <summary>fdatasync(2), retried on EINTR. Returns 0 or the errno.</summary>
    public static int DataSync(SafeFileHandle fd)
    {
        while (fdatasync(fd) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno != EINTR)
            {
                return errno;
            }
        }

        return 0;
    }

    /// <summary>fsync(2) of a file: used where the file size changed (create, grow).</summary>
    public static void SyncOrThrow(SafeFileHandle fd, string path)
    {
        if (fsync(fd) != 0)
        {
            throw IoError(Marshal.GetLastPInvokeError(), "fsync", path);
        }
    }

    /// <summary>
    /// fsync(2) of a directory so a rename or unlink inside it survives a crash.
    /// .NET cannot open directories as file handles, hence the raw descriptor.
    /// </summary>
    public static void SyncDirectoryOrThrow(string path)
    {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
        {
            throw IoError(Marshal.GetLastPInvokeError(), "open", path);
        }

        int result = fsyncDescriptor(fd);
        int errno = Marshal.GetLastPInvokeError();
        close(fd);
        if (result != 0)
        {
            throw IoError(errno, "fsync", path);
        }
    }

    /// <summary>
    /// The size of an open file or block device: lseek to the end, because fstat reports 0 bytes for block devices.
    /// </summary>
    public static long SizeOf(SafeFileHandle fd)
    {
        const int SEEK_END = 2;
        long size = lseek(fd, 0, SEEK_END);
        return size >= 0 ? size : throw new IOException($"lseek failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
    }

    /// <summary>Bytes the filesystem has allocated to the file (st_blocks * 512): holes do not count.</summary>
    public static bool TryGetAllocatedBytes(SafeFileHandle fd, out long allocatedBytes)
    {
        byte* buffer = stackalloc byte[StatxBufferSize];
        byte emptyPath = 0;
        if (statx(fd, &emptyPath, AT_EMPTY_PATH, STATX_BLOCKS, buffer) != 0 ||
            (*(uint*)buffer & STATX_BLOCKS) == 0)
        {
            allocatedBytes = 0;
            return false;
        }

        allocatedBytes = (long)(*(ulong*)(buffer + StatxBlocksOffset) * 512);
        return true;
    }

    private static IOException IoError(int errno, string call, string path) =>
        new($"{call} failed on '{path}': {Marshal.GetPInvokeErrorMessage(errno)}", errno);
}
