using Duroslight.Core.Interop;
using Duroslight.Reactor.Interop;

namespace Duroslight.Reactor;

/// <summary>Why the reactor cannot run here; the message says what to change.</summary>
public sealed class ReactorUnavailableException(string message) : Exception(message);

/// <summary>One io_uring instance, created on (and used only by) the thread that owns it.</summary>
internal sealed class Ring : IDisposable
{
    // Opcodes the data path needs; a kernel without one of them cannot run the reactor.
    private static readonly (int Opcode, string Name)[] s_required =
    [
        (Uring.OpAccept, "ACCEPT"), (Uring.OpRecv, "RECV"), (Uring.OpSend, "SEND"), (Uring.OpSendMsg, "SENDMSG"), (Uring.OpRead, "READ"),
        (Uring.OpWrite, "WRITE"), (Uring.OpAsyncCancel, "ASYNC_CANCEL"),
    ];

    // Best first: one issuer with deferred task work (6.1+) keeps completions on the shard's own thread;
    // cooperative task running (5.19+) avoids interrupting it; plain rings work everywhere else. The task-run flag
    // tells a polling shard when entering the kernel would produce completions (Uring.NeedsEnter says no otherwise).
    private static readonly uint[] s_setupFlags =
    [
        Uring.SetupSingleIssuer | Uring.SetupDeferTaskrun | Uring.SetupTaskrunFlag,
        Uring.SetupSingleIssuer | Uring.SetupDeferTaskrun,
        Uring.SetupCoopTaskrun | Uring.SetupTaskrunFlag,
        0,
    ];

    private Ring(nint handle, uint flags)
    {
        Handle = handle;
        SetupFlags = flags;
    }

    public nint Handle { get; private set; }

    public uint SetupFlags { get; }

    /// <summary>Creates a ring with the best setup flags the kernel takes, and checks the opcodes the reactor uses.</summary>
    public static Ring Create(uint entries)
    {
        int error = 0;
        foreach (uint flags in s_setupFlags)
        {
            nint handle = Uring.RingCreate(entries, flags, out error);
            if (handle == 0) continue;
            var ring = new Ring(handle, flags);
            ring.CheckOpcodes();
            return ring;
        }
        throw new ReactorUnavailableException(Explain(-error));
    }

    public void Dispose()
    {
        if (Handle == 0) return;
        Uring.RingDestroy(Handle);
        Handle = 0;
    }

    private void CheckOpcodes()
    {
        foreach (var (opcode, name) in s_required)
        {
            if (Uring.OpcodeSupported(Handle, opcode) == 1) continue;
            Dispose();
            throw new ReactorUnavailableException($"io_uring on this kernel ({Environment.OSVersion.Version}) lacks IORING_OP_{name}; Duroslight needs Linux 5.19 or newer");
        }
    }

    private static string Explain(int errno) => errno switch
    {
        LibC.ENOSYS => "io_uring is not available: this kernel was built without it (io_uring_setup: ENOSYS)",
        LibC.EPERM => "io_uring is not allowed: io_uring_setup returned EPERM. Check sysctl kernel.io_uring_disabled (must be 0) and any seccomp profile (Docker's default blocks io_uring; run with a profile that allows it)",
        LibC.ENOMEM => $"io_uring_setup returned ENOMEM: the locked-memory limit is too low (RLIMIT_MEMLOCK soft={LibC.MemlockLimit().Soft} bytes). Raise it (ulimit -l, or LimitMEMLOCK=infinity in the systemd unit)",
        _ => $"io_uring_setup failed with errno {errno}",
    };
}
