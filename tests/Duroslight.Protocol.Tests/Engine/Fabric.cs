using Duroslight.Host;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Xunit;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>
/// One HostQueue wired to one TargetConnection in memory. <see cref="Step"/> moves host bytes to the target (through
/// an optional filter, in chunks of at most <see cref="MaxChunk"/>), executes storage requests, polls, and moves
/// target bytes back. When either side wants to close and has nothing left to send, both see the transport close.
/// </summary>
internal sealed class QueuePair
{
    private readonly Fabric _fabric;

    public QueuePair(Fabric fabric, HostQueueOptions options)
    {
        _fabric = fabric;
        Host = new HostQueue(options);
        Target = new TargetConnection(fabric.Target, new ConnectionContext(0, "127.0.0.1:" + (40000 + fabric.Pairs.Count)), Signal);
    }

    public HostQueue Host { get; }
    public TargetConnection Target { get; }
    public TestSignal Signal { get; } = new();
    public ushort Cntlid { get; set; }

    /// <summary>Applied to each batch of host bytes before the target sees them (fault injection).</summary>
    public Func<byte[], byte[]>? HostToTargetFilter { get; set; }
    public int MaxChunk { get; set; } = int.MaxValue;
    /// <summary>Keep storage requests instead of executing them (see <see cref="Held"/>).</summary>
    public bool HoldStorage { get; set; }
    public List<StorageRequest> Held { get; } = [];
    public MemoryStream TargetOutput { get; } = new();
    public MemoryStream HostOutput { get; } = new();
    public bool Closed { get; private set; }

    public bool Step()
    {
        bool progress = MoveHostToTarget();
        progress |= RunStorage();
        if (!Closed) Target.Poll(_fabric.Now);
        progress |= MoveTargetToHost();
        if (!Closed && (Target.WantsClose || Host.WantsClose) && Target.PendingOutput.IsEmpty && Host.PendingOutput.IsEmpty)
        {
            Closed = true;
            Target.OnTransportClosed();
            Host.OnTransportClosed();
            progress = true;
        }
        return progress;
    }

    public void CompleteHeld(NvmeStatus? status = null)
    {
        foreach (var r in Held) Target.CompleteStorage(r, status ?? _fabric.Storage.Execute(r));
        Held.Clear();
    }

    public HostCommand Submit(NvmeCommand command, Memory<byte> data = default)
    {
        Assert.True(Host.TrySubmit(command, data, null, out var token), "no free host slot");
        return token;
    }

    public List<HostCommand> TakeCompletions()
    {
        var list = new List<HostCommand>();
        while (Host.TryTakeCompletion(out var c)) list.Add(c);
        return list;
    }

    private bool MoveHostToTarget()
    {
        var pending = Host.PendingOutput;
        if (pending.IsEmpty) return false;
        var bytes = pending.ToArray();
        Host.ConsumeOutput(bytes.Length);
        HostOutput.Write(bytes);
        if (HostToTargetFilter is not null) bytes = HostToTargetFilter(bytes);
        if (Closed) return true;
        for (int off = 0; off < bytes.Length; off += MaxChunk)
            Target.Receive(bytes.AsSpan(off, Math.Min(MaxChunk, bytes.Length - off)), _fabric.Now);
        return true;
    }

    private bool RunStorage()
    {
        bool progress = false;
        while (Target.TryTakeStorageRequest(out var r))
        {
            progress = true;
            if (HoldStorage) Held.Add(r);
            else Target.CompleteStorage(r, _fabric.Storage.Execute(r));
        }
        return progress;
    }

    private bool MoveTargetToHost()
    {
        var pending = Target.PendingOutput;
        if (pending.IsEmpty) return false;
        var bytes = pending.ToArray();
        Target.ConsumeOutput(bytes.Length);
        TargetOutput.Write(bytes);
        if (Host.State != HostQueueState.Failed && Host.State != HostQueueState.Idle) Host.Receive(bytes);
        return true;
    }
}

/// <summary>A Target with in-memory volumes and any number of queue pairs; time is <see cref="Now"/>.</summary>
internal sealed class Fabric
{
    public const string HostNqn = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
    public const uint CcEnable = 1 | 6u << 16 | 4u << 20;

    public Fabric(TargetOptions? options = null)
    {
        Target = new Target(options ?? new TargetOptions());
    }

    public Target Target { get; }
    public MemoryStorage Storage { get; } = new();
    public List<QueuePair> Pairs { get; } = [];
    public long Now { get; set; } = 1_000;
    public string SubNqn => Target.Options.SubsystemNqn;

    /// <summary>Adds a namespace with an in-memory volume.</summary>
    public NamespaceInfo AddVolume(uint nsid = 1, long blocks = 4096, int blockSize = 512, Guid? id = null,
        Duroslight.Protocol.Reservations.ReservationState? reservation = null, LeaseFence? fence = null, bool sharedReservation = false) =>
        Storage.AddVolume(Target, nsid, blocks, blockSize, id, reservation, fence, sharedReservation);

    /// <summary>A started pair pumped through ICReq/ICResp.</summary>
    public QueuePair Open(HostQueueOptions? options = null)
    {
        var pair = new QueuePair(this, options ?? new HostQueueOptions());
        Pairs.Add(pair);
        pair.Host.Start();
        Pump();
        return pair;
    }

    /// <summary>Steps every pair until nothing moves.</summary>
    public void Pump()
    {
        for (int round = 0; round < 100_000; round++)
        {
            bool progress = false;
            foreach (var p in Pairs.ToArray()) progress |= p.Step();
            if (!progress) return;
        }
        throw new InvalidOperationException("pump did not settle");
    }

    /// <summary>Submits, pumps, and returns the single completion (its slot already released).</summary>
    public CompletionEntry Exec(QueuePair q, NvmeCommand command, Memory<byte> data = default)
    {
        var token = q.Submit(command, data);
        Pump();
        var done = q.TakeCompletions();
        var mine = Assert.Single(done);
        Assert.Same(token, mine);
        Assert.False(mine.TransportFailed, q.Host.FailureReason);
        var cqe = mine.Completion;
        q.Host.Release(mine);
        return cqe;
    }

    public CompletionEntry ExecOk(QueuePair q, NvmeCommand command, Memory<byte> data = default)
    {
        var cqe = Exec(q, command, data);
        Assert.True(cqe.Status.IsSuccess, $"{command.Opcode:X2}h failed: {cqe.Status}");
        return cqe;
    }

    /// <summary>Opens a queue and sends Connect; returns the pair and the Connect completion.</summary>
    public (QueuePair Pair, CompletionEntry Cqe) Connect(ushort qid = 0, ushort cntlid = ConnectData.DynamicCntlid,
        string? subNqn = null, string hostNqn = HostNqn, HostQueueOptions? options = null, uint katoMs = 0, byte cattr = 0,
        Guid? hostId = null)
    {
        options ??= new HostQueueOptions();
        var pair = Open(options with { QueueId = qid });
        var data = ConnectData.Create(hostId ?? HostIds.Default, cntlid, subNqn ?? SubNqn, hostNqn);
        var cqe = Exec(pair, NvmeCommands.Connect(qid, (ushort)(pair.Host.Options.QueueDepth - 1), cattr, katoMs), data);
        if (cqe.Status.IsSuccess) pair.Cntlid = (ushort)cqe.Result;
        return (pair, cqe);
    }

    /// <summary>An enabled controller's admin queue (Connect + CC.EN).</summary>
    public QueuePair Admin(string? subNqn = null, HostQueueOptions? options = null, uint katoMs = 0, string hostNqn = HostNqn)
    {
        var (pair, cqe) = Connect(0, ConnectData.DynamicCntlid, subNqn, hostNqn, options, katoMs);
        Assert.True(cqe.Status.IsSuccess, $"admin Connect failed: {cqe.Status}");
        ExecOk(pair, NvmeCommands.PropertySet(PropertyOffset.Cc, CcEnable));
        return pair;
    }

    /// <summary>A connected I/O queue of the controller behind <paramref name="admin"/>.</summary>
    public QueuePair Io(QueuePair admin, ushort qid = 1, HostQueueOptions? options = null, byte cattr = 0, string? subNqn = null)
    {
        var (pair, cqe) = Connect(qid, admin.Cntlid, subNqn, HostNqn, options, 0, cattr);
        Assert.True(cqe.Status.IsSuccess, $"I/O Connect failed: {cqe.Status}");
        return pair;
    }

    /// <summary>Admin + one I/O queue with a namespace 1 of 4096 × 512-byte blocks.</summary>
    public (QueuePair Admin, QueuePair Io) Controller(HostQueueOptions? ioOptions = null, HostQueueOptions? adminOptions = null)
    {
        if (Target.GetNamespace(1) is null) AddVolume();
        var admin = Admin(options: adminOptions);
        return (admin, Io(admin, 1, ioOptions));
    }
}

internal static class HostIds
{
    public static readonly Guid Default = Guid.Parse("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
}
