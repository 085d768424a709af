using System.Net.Sockets;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Reactor;

namespace Duroslight.Server.Replication;

/// <summary>
/// This node's controller on a peer node's backend subsystem: the admin queue (the host library's
/// <see cref="NvmeTcpController"/> on the thread pool, which keeps it alive) and one I/O queue per shard
/// (<see cref="PeerQueue"/>, on that shard's ring), so the shard owning a chunk forwards it on its own queue.
/// Connected on the control path; the I/O queues' ICReq and Connect run there too, before the shard takes the
/// socket. The first queue to fail marks the whole link lost (<see cref="Lost"/>): the peer is then dropped from
/// the in-sync set of every volume that forwards to it, and a later volume gets a new link.
/// </summary>
internal sealed class PeerLink
{
    private const int QueueDepth = 128;
    private readonly NvmeTcpController _admin;
    private int _lost;

    private PeerLink(int node, NvmeTcpController admin, PeerQueue[] queues, int timeoutMs)
    {
        Node = node;
        _admin = admin;
        Queues = queues;
        TimeoutMs = timeoutMs;
    }

    public int Node { get; }

    /// <summary>Index = shard index.</summary>
    public PeerQueue[] Queues { get; private set; }

    /// <summary>A queue with commands outstanding and no completion for this long fails (the peer is hung).</summary>
    public int TimeoutMs { get; }

    public bool IsLost => Volatile.Read(ref _lost) != 0;

    /// <summary>Any thread, once: the link failed (the peer died, hung or refused a command).</summary>
    public Action<PeerLink, string>? Lost { get; set; }

    public static async Task<PeerLink> ConnectAsync(int node, string host, int port, string backendNqn, string hostNqn,
        ShardGroup shards, PeerCounters[] counters, int timeoutMs, CancellationToken ct)
    {
        var admin = await NvmeTcpController.ConnectAsync(host, port, backendNqn, hostNqn,
            new NvmeTcpControllerOptions { IoQueues = 0, KeepAliveTimeoutMs = 10_000 }, ct).ConfigureAwait(false);
        var queues = new PeerQueue[shards.Count];
        var link = new PeerLink(node, admin, queues, timeoutMs);
        int opened = 0;
        try
        {
            int inCapsule = HostQueueOptions.InCapsuleLimitFromIoccsz(admin.Identity.IoCommandCapsuleSize16);
            int depth = Math.Min(QueueDepth, (int)(admin.Capabilities & 0xFFFF) + 1);
            for (; opened < queues.Length; opened++)
            {
                ushort qid = (ushort)(opened + 1);
                var (socket, queue) = await Task.Run(() => OpenQueue(host, port, qid, depth, inCapsule, admin), ct).ConfigureAwait(false);
                queues[opened] = new PeerQueue(shards[opened], socket, queue, link, counters[opened]);
            }
        }
        catch
        {
            await admin.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        foreach (var q in queues) q.Shard.Post(new ShardCall(q.Open));
        return link;
    }

    /// <summary>On a shard: one of the queues failed.</summary>
    internal void OnQueueFailed(string reason)
    {
        if (Interlocked.Exchange(ref _lost, 1) != 0) return;
        var lost = Lost;
        if (lost is not null) ThreadPool.UnsafeQueueUserWorkItem(_ => lost(this, reason), null);
    }

    /// <summary>Closes every queue (each on its shard) and the admin queue.</summary>
    public async Task CloseAsync()
    {
        Interlocked.Exchange(ref _lost, 1);
        foreach (var q in Queues) q.Shard.Post(new ShardCall(() => q.Fail("link closed")));
        await _admin.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// An I/O queue's socket, past ICReq/ICResp and the Fabrics Connect, for a shard to drive. Blocking calls (on a
    /// pool thread), so the runtime never registers the descriptor with its own event loop before the ring takes it.
    /// </summary>
    private static (Socket, HostQueue) OpenQueue(string host, int port, ushort qid, int depth, int inCapsule, NvmeTcpController admin)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, ReceiveTimeout = 10_000, SendTimeout = 10_000 };
        var queue = new HostQueue(new HostQueueOptions { QueueId = qid, QueueDepth = depth, InCapsuleDataLimit = inCapsule });
        try
        {
            socket.Connect(host, port);
            queue.Start();
            Exchange(socket, queue, () => queue.State != HostQueueState.AwaitingICResp);
            var data = ConnectData.Create(admin.HostId, admin.Cntlid, admin.SubsystemNqn, admin.HostNqn);
            queue.TrySubmit(NvmeCommands.Connect(qid, (ushort)(depth - 1)), data, null, out _);
            HostCommand? done = null;
            Exchange(socket, queue, () => queue.TryTakeCompletion(out done));
            if (done!.TransportFailed || !done.Status.IsSuccess)
                throw new NvmeConnectException(done.Status, done.Completion.Result, $"Connect of backend queue {qid} refused");
            queue.Release(done);
            return (socket, queue);
        }
        catch
        {
            socket.Dispose();
            queue.Dispose();
            throw;
        }
    }

    /// <summary>Sends what the queue has and feeds it what arrives until <paramref name="until"/> holds (control path).</summary>
    private static void Exchange(Socket socket, HostQueue queue, Func<bool> until)
    {
        var buffer = new byte[4096];
        while (true)
        {
            while (!queue.PendingOutput.IsEmpty)
            {
                int sent = socket.Send(queue.PendingOutput.Span, SocketFlags.None);
                queue.ConsumeOutput(sent);
            }
            if (queue.State == HostQueueState.Failed) throw new NvmeTransportException(queue.FailureReason ?? "backend queue failed");
            if (until()) return;
            int n = socket.Receive(buffer, SocketFlags.None);
            if (n == 0) throw new NvmeTransportException("the peer closed the backend queue");
            queue.Receive(buffer.AsSpan(0, n));
        }
    }

    private sealed class ShardCall(Action action) : IShardWork
    {
        public void Execute() => action();
    }
}
