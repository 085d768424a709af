using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Duroslight.Reactor.Interop;

/// <summary>One completion as the shim copies it out of the completion queue.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct Completion
{
    public ulong UserData;
    public int Result;
    public uint Flags;
}

/// <summary>
/// The native shim over liburing (native/duroslight_uring.c). Preparing SQEs and reaping CQEs never block, so
/// they skip the GC transition; only <see cref="Submit"/> may sleep in the kernel.
/// </summary>
internal static unsafe partial class Uring
{
    private const string Library = "duroslight_uring";

    public const uint SetupCoopTaskrun = 1u << 8;
    public const uint SetupTaskrunFlag = 1u << 9;
    public const uint SetupSingleIssuer = 1u << 12;
    public const uint SetupDeferTaskrun = 1u << 13;

    public const uint CqeFlagBuffer = 1u << 0;
    public const uint CqeFlagMore = 1u << 1;
    public const int CqeBufferShift = 16;

    public const int OpSendMsg = 9;
    public const int OpAccept = 13;
    public const int OpAsyncCancel = 14;
    public const int OpRead = 22;
    public const int OpWrite = 23;
    public const int OpSend = 26;
    public const int OpRecv = 27;

    [LibraryImport(Library, EntryPoint = "ds_ring_create")]
    public static partial nint RingCreate(uint entries, uint flags, out int error);

    [LibraryImport(Library, EntryPoint = "ds_ring_destroy")]
    public static partial void RingDestroy(nint ring);

    [LibraryImport(Library, EntryPoint = "ds_opcode_supported")]
    public static partial int OpcodeSupported(nint ring, int opcode);

    [LibraryImport(Library, EntryPoint = "ds_prep_accept"), SuppressGCTransition]
    public static partial int PrepAccept(nint ring, int fd, int multishot, ulong userData);

    [LibraryImport(Library, EntryPoint = "ds_prep_recv"), SuppressGCTransition]
    public static partial int PrepRecv(nint ring, int fd, byte* buffer, uint length, ulong userData);

    /// <summary>A receive into a buffer the kernel picks from provided-buffer group <paramref name="group"/>; multishot: stays armed.</summary>
    [LibraryImport(Library, EntryPoint = "ds_prep_recv_select"), SuppressGCTransition]
    public static partial int PrepRecvSelect(nint ring, int fd, int group, int multishot, ulong userData);

    /// <summary>Cancels the operation submitted with <paramref name="target"/> as its user data.</summary>
    [LibraryImport(Library, EntryPoint = "ds_prep_cancel"), SuppressGCTransition]
    public static partial int PrepCancel(nint ring, ulong target, ulong userData);

    [LibraryImport(Library, EntryPoint = "ds_buf_ring_create")]
    public static partial nint BufRingCreate(nint ring, uint count, uint size, int group, out int error);

    [LibraryImport(Library, EntryPoint = "ds_buf_ring_base"), SuppressGCTransition]
    public static partial byte* BufRingBase(nint bufRing);

    [LibraryImport(Library, EntryPoint = "ds_buf_ring_recycle"), SuppressGCTransition]
    public static partial void BufRingRecycle(nint bufRing, uint bufferId);

    [LibraryImport(Library, EntryPoint = "ds_buf_ring_destroy")]
    public static partial void BufRingDestroy(nint ring, nint bufRing);

    [LibraryImport(Library, EntryPoint = "ds_prep_send"), SuppressGCTransition]
    public static partial int PrepSend(nint ring, int fd, byte* buffer, uint length, ulong userData);

    /// <summary>IORING_OP_SENDMSG of <paramref name="message"/> (a struct msghdr) with MSG_NOSIGNAL.</summary>
    [LibraryImport(Library, EntryPoint = "ds_prep_sendmsg"), SuppressGCTransition]
    public static partial int PrepSendMsg(nint ring, int fd, void* message, ulong userData);

    [LibraryImport(Library, EntryPoint = "ds_prep_read"), SuppressGCTransition]
    public static partial int PrepRead(nint ring, int fd, byte* buffer, uint length, ulong offset, ulong userData);

    [LibraryImport(Library, EntryPoint = "ds_prep_write"), SuppressGCTransition]
    public static partial int PrepWrite(nint ring, int fd, byte* buffer, uint length, ulong offset, ulong userData);

    [LibraryImport(Library, EntryPoint = "ds_prep_read_fixed"), SuppressGCTransition]
    public static partial int PrepReadFixed(nint ring, int fd, byte* buffer, uint length, ulong offset, int slot, ulong userData);

    [LibraryImport(Library, EntryPoint = "ds_prep_write_fixed"), SuppressGCTransition]
    public static partial int PrepWriteFixed(nint ring, int fd, byte* buffer, uint length, ulong offset, int slot, ulong userData);

    /// <summary>An empty table of <paramref name="slots"/> registered buffers (0 or a negative errno): a syscall.</summary>
    [LibraryImport(Library, EntryPoint = "ds_register_buffer_table")]
    public static partial int RegisterBufferTable(nint ring, uint slots);

    /// <summary>Puts a buffer into a slot of the table (length 0 clears it); 0 or a negative errno: a syscall.</summary>
    [LibraryImport(Library, EntryPoint = "ds_register_buffer")]
    public static partial int RegisterBuffer(nint ring, uint slot, byte* buffer, nuint length);

    [LibraryImport(Library, EntryPoint = "ds_prep_fdatasync"), SuppressGCTransition]
    public static partial int PrepDataSync(nint ring, int fd, ulong userData);

    [LibraryImport(Library, EntryPoint = "ds_prep_cancel_fd"), SuppressGCTransition]
    public static partial int PrepCancelFd(nint ring, int fd, ulong userData);

    /// <summary>Whether a polling iteration must call <see cref="Submit"/>: SQEs queued, or completion work flagged for this thread.</summary>
    [LibraryImport(Library, EntryPoint = "ds_needs_enter"), SuppressGCTransition]
    public static partial int NeedsEnter(nint ring);

    /// <summary>Submits and runs pending completion work; with <paramref name="timeoutMicroseconds"/> &gt; 0 waits for a completion or the timeout.</summary>
    [LibraryImport(Library, EntryPoint = "ds_submit")]
    public static partial int Submit(nint ring, long timeoutMicroseconds);

    [LibraryImport(Library, EntryPoint = "ds_reap"), SuppressGCTransition]
    public static partial int Reap(nint ring, Completion* completions, int max);
}
