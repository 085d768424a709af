using System.Net.Sockets;
using Duroslight.Core.Interop;

namespace Duroslight.Reactor;

/// <summary>
/// A multishot accept on one listening socket, armed on one shard: each accepted descriptor is handed to
/// <paramref name="onAccepted"/> on that shard's thread. The socket is created and bound by .NET (addresses,
/// IPv6) but never used for I/O by it: the ring does all the accepting. Out of descriptors (EMFILE, ENFILE), the
/// pending connection is refused rather than left in the backlog: a reserve descriptor is closed, the connection
/// accepted and closed (the host sees it end), the reserve reopened; errors are reported at most every 5 s.
/// </summary>
public sealed class Acceptor(Shard shard, Socket listener, Action<TcpSocket> onAccepted, Action<int>? onError = null) : IRingHandler, IShardWork
{
    private const byte OpAccept = 1, OpCancel = 2;

    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _token = -1;
    private bool _stopping;
    private bool _armed;
    private int _reserveFd = -1;
    private long _lastReportMs = long.MinValue;

    /// <summary>Connections refused for want of descriptors.</summary>
    public long Refused { get; private set; }

    private int Fd => (int)listener.SafeHandle.DangerousGetHandle();

    /// <summary>Arms the accept on the shard.</summary>
    public void Start() => shard.Post(this);

    /// <summary>Cancels the accept; completes once the ring let go of the socket (then it may be closed).</summary>
    public Task StopAsync()
    {
        shard.Post(new StopWork(this));
        return _stopped.Task;
    }

    void IShardWork.Execute()
    {
        _token = shard.Register(this);
        // Non-blocking so that refusing (a synchronous accept) can never block the shard; the ring does not care.
        listener.Blocking = false;
        _reserveFd = LibC.OpenReserveDescriptor();
        Arm();
    }

    public void OnCompletion(byte op, int result, bool more)
    {
        if (op == OpCancel) return;
        if (result >= 0)
        {
            if (_stopping) LibC.Close(result);
            else onAccepted(new TcpSocket(result));
        }
        else if (result != -LibC.ECANCELED)
        {
            // EMFILE, ENFILE, ENOBUFS...: report and keep accepting; the multishot re-arms below if it ended.
            if (result is -LibC.EMFILE or -LibC.ENFILE) RefuseOne();
            long now = Environment.TickCount64;
            if (_lastReportMs == long.MinValue || now - _lastReportMs >= 5000)
            {
                _lastReportMs = now;
                onError?.Invoke(-result);
            }
        }
        if (more) return;
        _armed = false;
        if (_stopping) Finish();
        else Arm();
    }

    /// <summary>Frees the reserve descriptor to accept and close one pending connection, then takes it back.</summary>
    private void RefuseOne()
    {
        if (_reserveFd >= 0) LibC.Close(_reserveFd);
        if (LibC.AcceptAndClose(Fd)) Refused++;
        _reserveFd = LibC.OpenReserveDescriptor();
    }

    private void Arm()
    {
        shard.SubmitAccept(Fd, _token, OpAccept);
        _armed = true;
    }

    private void Stop()
    {
        _stopping = true;
        if (_token < 0)
        {
            _stopped.TrySetResult();
            return;
        }
        if (_armed) shard.SubmitCancel(Fd, _token, OpCancel);
        else Finish();
    }

    private void Finish()
    {
        if (_reserveFd >= 0) LibC.Close(_reserveFd);
        _reserveFd = -1;
        shard.Unregister(_token);
        _token = -1;
        _stopped.TrySetResult();
    }

    private sealed class StopWork(Acceptor acceptor) : IShardWork
    {
        public void Execute() => acceptor.Stop();
    }
}
