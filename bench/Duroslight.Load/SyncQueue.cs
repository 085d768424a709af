using System.Diagnostics;
using System.Net.Sockets;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;

namespace Duroslight.Load;

/// <summary>
/// One I/O queue driven synchronously on its own thread: the host library's sans-IO <see cref="HostQueue"/> over a
/// blocking socket, keeping QD commands in flight (submit, one send for the batch, one receive, reap). No thread
/// pool, locks or tasks per I/O, so one generator core can outrun one target core.
/// </summary>
internal sealed class SyncQueue : IDisposable
{
    private readonly Socket _socket;
    private readonly HostQueue _queue;
    private readonly byte[] _receive = new byte[256 * 1024];
    private readonly long[] _started;

    private SyncQueue(Socket socket, HostQueue queue)
    {
        _socket = socket;
        _queue = queue;
        _started = new long[queue.Options.QueueDepth];
    }

    public LatencyHistogram Latency { get; } = new();

    public long Errors { get; private set; }

    /// <summary>TCP connect, ICReq/ICResp, then Fabrics Connect of <paramref name="qid"/> to the controller <paramref name="cntlid"/>.</summary>
    public static SyncQueue Open(LoadOptions o, NvmeTcpController admin, ushort qid)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        socket.Connect(o.Host, o.Port);
        var queue = new HostQueue(new HostQueueOptions
        {
            QueueId = qid,
            QueueDepth = o.QueueDepth + 1,
            InCapsuleDataLimit = 8192,
        });
        var q = new SyncQueue(socket, queue);
        queue.Start();
        while (queue.State == HostQueueState.AwaitingICResp) q.Exchange();
        if (queue.State != HostQueueState.Ready) throw new IOException($"queue {qid}: {queue.FailureReason}");
        var data = ConnectData.Create(admin.HostId, admin.Cntlid, admin.SubsystemNqn, admin.HostNqn);
        if (!queue.TrySubmit(NvmeCommands.Connect(qid, (ushort)o.QueueDepth), data, null, out var connect)) throw new IOException("no slot");
        while (connect.State != HostCommandState.Completed) q.Exchange();
        if (!connect.Status.IsSuccess) throw new IOException($"Connect of queue {qid} refused: {connect.Status}");
        queue.TryTakeCompletion(out _);
        queue.Release(connect);
        return q;
    }

    /// <summary>Runs until <paramref name="run"/> says stop; latency is recorded only while it is measuring.</summary>
    public void Run(LoadRun run, Func<bool, NvmeCommand> next, Func<bool> isRead, byte[] buffer)
    {
        int outstanding = 0, depth = _queue.Options.QueueDepth - 1;
        while (!run.Stopping || outstanding > 0)
        {
            while (!run.Stopping && outstanding < depth && run.TryIssue())
            {
                bool read = isRead();
                NvmeCommand request = next(read);
                // A Write Zeroes (the trim share) carries no data.
                var data = request.Direction == DataDirection.None ? Memory<byte>.Empty : buffer;
                if (!_queue.TrySubmit(request, data, null, out var command)) break;
                _started[command.Index] = Stopwatch.GetTimestamp();
                outstanding++;
            }
            Exchange();
            while (_queue.TryTakeCompletion(out var done))
            {
                if (run.Measuring) Latency.Record((long)Stopwatch.GetElapsedTime(_started[done.Index]).TotalNanoseconds);
                if (!done.Status.IsSuccess || done.TransportFailed) Errors++;
                _queue.Release(done);
                outstanding--;
            }
            if (_queue.WantsClose) throw new IOException($"queue {_queue.QueueId}: {_queue.FailureReason}");
        }
    }

    public void Dispose()
    {
        _socket.Dispose();
        _queue.Dispose();
    }

    /// <summary>Sends everything pending, then takes one receive's worth of bytes.</summary>
    private void Exchange()
    {
        while (!_queue.PendingOutput.IsEmpty) _queue.ConsumeOutput(_socket.Send(_queue.PendingOutput.Span));
        int n = _socket.Receive(_receive);
        if (n == 0) throw new IOException("target closed the connection");
        _queue.Receive(_receive.AsSpan(0, n));
    }
}
