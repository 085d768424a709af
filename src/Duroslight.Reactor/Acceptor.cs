using System.Net.Sockets;
using Duroslight.Reactor.Interop;

namespace Duroslight.Reactor;

/// <summary>
/// A multishot accept on one listening socket, armed on one shard: each accepted descriptor is handed to
/// <paramref name="onAccepted"/> on that shard's thread. The socket is created and bound by .NET (addresses,
/// IPv6) but never used for I/O by it: the ring does all the accepting.
/// </summary>
public sealed class Acceptor(Shard shard, Socket listener, Action<int> onAccepted, Action<int>? onError = null) : IRingHandler, IShardWork
{
    private const byte OpAccept = 1, OpCancel = 2;

    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _token = -1;
    private bool _stopping;
    private bool _armed;

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
        Arm();
    }

    public void OnCompletion(byte op, int result, bool more)
    {
        if (op == OpCancel) return;
        if (result >= 0)
        {
            if (_stopping) Posix.Close(result);
            else onAccepted(result);
        }
        else if (result != -Posix.ECANCELED)
        {
            // EMFILE, ENFILE, ENOBUFS...: report and keep accepting; the multishot re-arms below if it ended.
            onError?.Invoke(-result);
        }
        if (more) return;
        _armed = false;
        if (_stopping) Finish();
        else Arm();
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
        shard.Unregister(_token);
        _token = -1;
        _stopped.TrySetResult();
    }

    private sealed class StopWork(Acceptor acceptor) : IShardWork
    {
        public void Execute() => acceptor.Stop();
    }
}
