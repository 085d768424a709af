using System.Buffers.Binary;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Tests.Engine;
using Duroslight.Protocol.Wire;

namespace Duroslight.Fuzz;

/// <summary>
/// The fuzz target: one TCP connection's host-to-target bytes, from ICReq on, fed to a fresh TargetConnection with an
/// in-memory store. Input byte 0 picks the setup (bit 0: an admin controller already exists, so I/O-queue Connects
/// can name its CNTLID; bits 1-3: how the stream is split into Receive calls; bit 4: a shard budget for R2T'd data
/// of 8 KiB, so writes wait for it); the rest is the stream. Any exception,
/// and any broken invariant (output not whole PDUs, more than one C2HTermReq or one not last, storage or controllers
/// left behind after close), is a finding. Also linked into the Protocol tests, which replay the corpus and every
/// regression input through it.
/// </summary>
public static class ReceivePath
{
    private static readonly int[] ChunkSizes = [int.MaxValue, 1, 3, 8, 61, 512, 4099, 9000];
    private static readonly Lazy<byte[]> AdminSetup = new(() => Seeds.AdminStream(headerDigest: false));

    /// <summary>The options every run and every seed uses: small MDTS and MAXH2CDATA so R2T paths are short.</summary>
    public static TargetOptions Options { get; } = new() { MaxH2CData = 4096, Mdts = 3, AuxSubsystemCount = 1 };

    /// <summary>Namespace 1: 256 blocks of 512 bytes.</summary>
    internal static void AddVolume(Target target, MemoryStorage storage) =>
        storage.AddVolume(target, 1, 256, 512, Guid.Parse("6b3f0c1e-0000-4000-8000-000000000001"));

    public static void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty) return;
        byte setup = input[0];
        var stream = input[1..];
        var world = new World((setup & 16) != 0 ? new HostDataBudget(8192) : HostDataBudget.Unlimited());
        TargetConnection? admin = null;
        if ((setup & 1) != 0)
        {
            admin = world.Open();
            world.Feed(admin, AdminSetup.Value, int.MaxValue);
            if (admin.Controller is null || admin.WantsClose) throw new InvalidOperationException("admin setup failed");
        }
        var conn = world.Open();
        int chunk = ChunkSizes[(setup >> 1) & 7];
        world.Feed(conn, stream, chunk);
        // Time passes (keep-alive and data timeouts), then the peer goes away.
        world.Now += 10 * 60 * 1000;
        conn.Poll(world.Now);
        world.Drain(conn);
        conn.OnTransportClosed();
        world.Drain(conn);
        if (admin is not null)
        {
            admin.OnTransportClosed();
            world.Drain(admin);
        }
        world.CheckClosed(conn);
        if (admin is not null) world.CheckClosed(admin);
        int left = world.Target.ListControllers().Count;
        if (left != 0) throw new InvalidOperationException($"{left} controller(s) left after every connection closed");
        if (world.BudgetReserved != 0) throw new InvalidOperationException($"{world.BudgetReserved} budget bytes left reserved");
    }

    /// <summary>One target, its store and clock, and the output checks.</summary>
    private sealed class World
    {
        private readonly MemoryStorage _storage = new();
        private readonly TestSignal _signal = new();
        private readonly Dictionary<TargetConnection, OutputCheck> _checks = [];

        private readonly HostDataBudget _budget;

        public World(HostDataBudget budget)
        {
            _budget = budget;
            Target = new Target(Options);
            AddVolume(Target, _storage);
        }

        public Target Target { get; }
        public long Now { get; set; } = 1_000;
        public long BudgetReserved => _budget.ReservedBytes;

        public TargetConnection Open()
        {
            var conn = new TargetConnection(Target, new ConnectionContext(0, "fuzz:" + _checks.Count) { HostData = _budget }, _signal);
            _checks.Add(conn, new OutputCheck());
            return conn;
        }

        public void Feed(TargetConnection conn, ReadOnlySpan<byte> stream, int chunk)
        {
            for (int off = 0; off < stream.Length; off += chunk)
            {
                conn.Receive(stream.Slice(off, Math.Min(chunk, stream.Length - off)), Now);
                Now += 7;
                conn.Poll(Now);
                Drain(conn);
            }
            Drain(conn);
        }

        /// <summary>Executes storage requests and takes the output until nothing moves.</summary>
        public void Drain(TargetConnection conn)
        {
            var check = _checks[conn];
            for (int round = 0; round < 10_000; round++)
            {
                bool moved = false;
                while (conn.TryTakeStorageRequest(out var r))
                {
                    moved = true;
                    conn.CompleteStorage(r, _storage.Execute(r));
                }
                var pending = conn.PendingOutput;
                if (!pending.IsEmpty)
                {
                    moved = true;
                    check.Add(pending.Span, conn.WantsClose);
                    conn.ConsumeOutput(pending.Length);
                }
                if (!moved) return;
            }
            throw new InvalidOperationException("connection did not settle");
        }

        public void CheckClosed(TargetConnection conn)
        {
            if (conn.InFlightStorage != 0) throw new InvalidOperationException("storage requests left in flight");
            _checks[conn].CheckEnd();
        }
    }

    /// <summary>Walks the target's output PDU by PDU across Receive calls.</summary>
    private sealed class OutputCheck
    {
        private readonly byte[] _header = new byte[PduLayout.CommonHeaderSize];
        private int _headerFill;
        private long _bodyLeft;
        private bool _terminated;

        public void Add(ReadOnlySpan<byte> data, bool wantsClose)
        {
            while (!data.IsEmpty)
            {
                if (_bodyLeft > 0)
                {
                    int n = (int)Math.Min(_bodyLeft, data.Length);
                    _bodyLeft -= n;
                    data = data[n..];
                    continue;
                }
                int take = Math.Min(_header.Length - _headerFill, data.Length);
                data[..take].CopyTo(_header.AsSpan(_headerFill));
                _headerFill += take;
                data = data[take..];
                if (_headerFill < _header.Length) break;
                _headerFill = 0;
                OnHeader(wantsClose);
            }
        }

        public void CheckEnd()
        {
            if (_headerFill != 0 || _bodyLeft != 0) throw new InvalidOperationException("output ends inside a PDU");
        }

        private void OnHeader(bool wantsClose)
        {
            if (_terminated) throw new InvalidOperationException("output after C2HTermReq");
            var type = (PduType)_header[PduLayout.OffType];
            uint plen = BinaryPrimitives.ReadUInt32LittleEndian(_header.AsSpan(PduLayout.OffPlen));
            if (type is not (PduType.ICResp or PduType.C2HTermReq or PduType.CapsuleResp or PduType.C2HData or PduType.R2T))
                throw new InvalidOperationException($"target sent PDU type {type}");
            if (plen < PduLayout.CommonHeaderSize || plen < _header[PduLayout.OffHlen])
                throw new InvalidOperationException($"PDU length {plen} below its header");
            if (type == PduType.C2HTermReq)
            {
                if (!wantsClose) throw new InvalidOperationException("C2HTermReq without closing");
                _terminated = true;
            }
            _bodyLeft = plen - PduLayout.CommonHeaderSize;
        }
    }
}
