using Duroslight.Host;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Tests.Engine;

namespace Duroslight.Fuzz;

/// <summary>
/// The seed corpus, recorded from the host library talking to the engine in memory: each seed is the setup byte of
/// <see cref="ReceivePath.Run"/> followed by the bytes a real HostQueue sent, so the seeds follow the protocol code.
/// Every command of every seed must succeed, else recording throws.
/// </summary>
public static class Seeds
{
    private const string HostNqn = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
    private static readonly Guid HostId = Guid.Parse("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
    private const uint CcEnable = 1 | 6u << 16 | 4u << 20;

    public static IEnumerable<(string Name, byte[] Input)> All()
    {
        yield return ("admin-identify-features", [0, .. AdminStream(headerDigest: true)]);
        yield return ("admin-identify-split3", [2 << 1, .. AdminStream(headerDigest: false)]);
        yield return ("discovery-log", [0, .. DiscoveryStream()]);
        yield return ("io-r2t-incapsule", [1, .. IoStream(hdgst: false, ddgst: false)]);
        yield return ("io-r2t-digests", [1, .. IoStream(hdgst: true, ddgst: true)]);
        yield return ("io-r2t-digests-split61", [1 | 4 << 1, .. IoStream(hdgst: true, ddgst: true)]);
        yield return ("io-r2t-tight-budget", [1 | 16, .. TightBudgetStream()]);
    }

    /// <summary>Admin queue: Connect, CC.EN, Identify (controller, namespace list, namespace), a log page, features, keep-alive.</summary>
    public static byte[] AdminStream(bool headerDigest)
    {
        var s = new Session(new World(), new HostQueueOptions { HeaderDigest = headerDigest });
        s.Connect(0, ConnectData.DynamicCntlid, ReceivePath.Options.SubsystemNqn);
        var page = new byte[4096];
        s.Exec(NvmeCommands.PropertyGet(PropertyOffset.Cap, true));
        s.Exec(NvmeCommands.PropertySet(PropertyOffset.Cc, CcEnable));
        s.Exec(NvmeCommands.Identify(IdentifyCns.Controller), page);
        s.Exec(NvmeCommands.Identify(IdentifyCns.ActiveNamespaceList), page);
        s.Exec(NvmeCommands.Identify(IdentifyCns.Namespace, 1), page);
        s.Exec(NvmeCommands.GetLogPage(LogPageId.SmartHealth, 512), page.AsMemory(0, 512));
        s.Exec(NvmeCommands.SetFeatures(FeatureId.NumberOfQueues, 3 | 3u << 16));
        s.Exec(NvmeCommands.SetFeatures(FeatureId.AsyncEventConfiguration, 1u << 8));
        s.Exec(NvmeCommands.GetFeatures(FeatureId.KeepAliveTimer));
        s.Exec(NvmeCommands.KeepAlive());
        return s.Recorded;
    }

    /// <summary>Discovery controller: Connect, Identify, the discovery log header and then the whole log.</summary>
    private static byte[] DiscoveryStream()
    {
        var s = new Session(new World(), new HostQueueOptions());
        s.Connect(0, ConnectData.DynamicCntlid, TargetOptions.DiscoveryNqn);
        var page = new byte[4096];
        s.Exec(NvmeCommands.PropertySet(PropertyOffset.Cc, CcEnable));
        s.Exec(NvmeCommands.Identify(IdentifyCns.Controller), page);
        s.Exec(NvmeCommands.GetLogPage(LogPageId.Discovery, 1024), page.AsMemory(0, 1024));
        s.Exec(NvmeCommands.GetLogPage(LogPageId.Discovery, 4096), page);
        return s.Recorded;
    }

    /// <summary>
    /// An I/O queue of the controller that <see cref="ReceivePath.Run"/>'s admin setup creates: in-capsule and R2T
    /// writes (several R2Ts per command), reads, flush, write zeroes, deallocate.
    /// </summary>
    private static byte[] IoStream(bool hdgst, bool ddgst)
    {
        var world = new World();
        var admin = new Session(world, new HostQueueOptions());
        // The same admin bytes the fuzz run replays, so this Connect names the CNTLID it will find.
        admin.Replay(AdminStream(headerDigest: false));
        var s = new Session(world, new HostQueueOptions { QueueId = 1, HeaderDigest = hdgst, DataDigest = ddgst, MaxR2T = 1, InCapsuleDataLimit = 1024 });
        s.Connect(1, admin.Cntlid, ReceivePath.Options.SubsystemNqn);
        s.Exec(NvmeCommands.Write(1, 0, 2), Pattern(1024, 1)); // in-capsule
        s.Exec(NvmeCommands.Write(1, 8, 10, fua: true), Pattern(5120, 2)); // R2Ts of 4 KiB + 1 KiB
        s.Exec(NvmeCommands.Read(1, 0, 2), new byte[1024]);
        s.Exec(NvmeCommands.Flush(1));
        s.Exec(NvmeCommands.WriteZeroes(1, 60, 4, deallocate: true));
        var ranges = new byte[32];
        ranges[4] = 2;
        ranges[8] = 70;
        ranges[20] = 1;
        ranges[24] = 90;
        s.Exec(NvmeCommands.DatasetManagement(1, 2), ranges);
        s.Exec(NvmeCommands.Read(1, 8, 10), new byte[5120]);
        return s.Recorded;
    }

    /// <summary>
    /// Three R2T writes at once against an 8 KiB shard budget (the fuzz run's bit 4): the second and third wait for
    /// it, and their R2Ts come as earlier data arrives. Recorded under the same budget, so the replay matches.
    /// </summary>
    private static byte[] TightBudgetStream()
    {
        var world = new World(new HostDataBudget(8192));
        var admin = new Session(world, new HostQueueOptions());
        admin.Replay(AdminStream(headerDigest: false));
        var s = new Session(world, new HostQueueOptions { QueueId = 1, MaxR2T = 1, InCapsuleDataLimit = 1024 });
        s.Connect(1, admin.Cntlid, ReceivePath.Options.SubsystemNqn);
        s.ExecAll(
            (NvmeCommands.Write(1, 0, 10), Pattern(5120, 4)),
            (NvmeCommands.Write(1, 16, 10), Pattern(5120, 5)),
            (NvmeCommands.Write(1, 32, 4), Pattern(2048, 6)),
            (NvmeCommands.Read(1, 16, 10), new byte[5120]));
        if (world.Budget.Waits == 0) throw new InvalidOperationException("no write waited for the budget");
        return s.Recorded;
    }

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        for (int i = 0; i < length; i++) data[i] = (byte)(i * 31 + seed);
        return data;
    }

    /// <summary>A target like <see cref="ReceivePath.Run"/>'s: the same options and namespace.</summary>
    private sealed class World
    {
        public World(HostDataBudget? budget = null)
        {
            Budget = budget ?? HostDataBudget.Unlimited();
            ReceivePath.AddVolume(Target, Storage);
        }

        public Target Target { get; } = new(ReceivePath.Options);
        public MemoryStorage Storage { get; } = new();
        public HostDataBudget Budget { get; }
    }

    /// <summary>One HostQueue wired to one TargetConnection; storage runs against an in-memory volume.</summary>
    private sealed class Session
    {
        private readonly MemoryStorage _storage;
        private readonly HostQueue _host;
        private readonly TargetConnection _conn;
        private readonly MemoryStream _recorded = new();
        private long _now = 1_000;

        public Session(World world, HostQueueOptions options)
        {
            _storage = world.Storage;
            _host = new HostQueue(options);
            _conn = new TargetConnection(world.Target, new ConnectionContext(0, "seed") { HostData = world.Budget }, new TestSignal());
        }

        public byte[] Recorded => _recorded.ToArray();
        public ushort Cntlid => _conn.Controller?.Cntlid ?? throw new InvalidOperationException("not connected");

        public void Replay(byte[] stream)
        {
            _conn.Receive(stream, _now);
            Pump(hostSide: false);
            if (_conn.Controller is null) throw new InvalidOperationException("replayed admin stream did not connect");
        }

        public void Connect(ushort qid, ushort cntlid, string subNqn)
        {
            _host.Start();
            Pump(hostSide: true);
            var data = ConnectData.Create(HostId, cntlid, subNqn, HostNqn);
            Exec(NvmeCommands.Connect(qid, (ushort)(_host.Options.QueueDepth - 1)), data);
        }

        public CompletionEntry Exec(NvmeCommand command, Memory<byte> data = default)
        {
            if (!_host.TrySubmit(command, data, null, out var token)) throw new InvalidOperationException("no free host slot");
            Pump(hostSide: true);
            if (!_host.TryTakeCompletion(out var done) || done != token || done.TransportFailed)
                throw new InvalidOperationException($"{command.Opcode:X2}h did not complete: {_host.FailureReason}");
            var cqe = done.Completion;
            _host.Release(done);
            if (!cqe.Status.IsSuccess) throw new InvalidOperationException($"{command.Opcode:X2}h failed: {cqe.Status}");
            return cqe;
        }

        /// <summary>Submits every command before pumping, so they are in flight together; all must succeed.</summary>
        public void ExecAll(params (NvmeCommand Command, Memory<byte> Data)[] commands)
        {
            foreach (var (command, data) in commands)
                if (!_host.TrySubmit(command, data, null, out _)) throw new InvalidOperationException("no free host slot");
            Pump(hostSide: true);
            for (int i = 0; i < commands.Length; i++)
            {
                if (!_host.TryTakeCompletion(out var done) || done.TransportFailed)
                    throw new InvalidOperationException($"command {i} of {commands.Length} did not complete: {_host.FailureReason}");
                var status = done.Completion.Status;
                _host.Release(done);
                if (!status.IsSuccess) throw new InvalidOperationException($"a command failed: {status}");
            }
        }

        private void Pump(bool hostSide)
        {
            for (int round = 0; round < 10_000; round++)
            {
                bool moved = false;
                var fromHost = hostSide ? _host.PendingOutput : default;
                if (!fromHost.IsEmpty)
                {
                    moved = true;
                    _recorded.Write(fromHost.Span);
                    _conn.Receive(fromHost.Span, _now);
                    _host.ConsumeOutput(fromHost.Length);
                }
                while (_conn.TryTakeStorageRequest(out var r))
                {
                    moved = true;
                    _conn.CompleteStorage(r, _storage.Execute(r));
                }
                _conn.Poll(_now);
                var toHost = _conn.PendingOutput;
                if (!toHost.IsEmpty)
                {
                    moved = true;
                    if (hostSide) _host.Receive(toHost.Span);
                    _conn.ConsumeOutput(toHost.Length);
                }
                if (!moved) return;
            }
            throw new InvalidOperationException("session did not settle");
        }
    }
}
