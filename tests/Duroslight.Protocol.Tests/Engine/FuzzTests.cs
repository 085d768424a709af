using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Wire;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;
using Duroslight.Core;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>
/// Bounded fuzzing of TargetConnection (fixed seeds plus FsCheck): random and mutated byte streams in random splits
/// never throw and either keep going or end in exactly one C2HTermReq; a valid stream yields the same bytes however
/// it is split. Valid streams are recorded from a real HostQueue session, so they carry real CIDs, TTAGs and digests.
/// </summary>
public class FuzzTests
{
    /// <summary>Bounded for CI; set DUROSLIGHT_FUZZ_SEEDS for a longer local hunt.</summary>
    private static readonly int FixedSeeds =
        int.TryParse(Environment.GetEnvironmentVariable("DUROSLIGHT_FUZZ_SEEDS"), out int n) && n > 0 ? n : 120;

    private static readonly Lazy<byte[]> AdminStream = new(RecordAdminStream);
    private static readonly Lazy<byte[]> IoStreamDigests = new(() => RecordIoStream(hdgst: true, ddgst: true));
    private static readonly Lazy<byte[]> IoStreamPlain = new(() => RecordIoStream(hdgst: false, ddgst: false));

    private static byte[] Stream(int which) => which switch
    {
        0 => AdminStream.Value,
        1 => IoStreamDigests.Value,
        _ => IoStreamPlain.Value,
    };

    private static readonly Gen<int[]> Chunks = Gen.ArrayOf(Gen.Frequency((3, Gen.Choose(1, 16)), (2, Gen.Choose(17, 400)), (1, Gen.Choose(401, 20000))));

    [Fact]
    public void Valid_streams_are_valid()
    {
        for (int which = 0; which < 3; which++)
        {
            var output = Replay(which, Stream(which), [], executeBetweenChunks: false, out bool closed);
            var pdus = RawPdus.Split(output);
            foreach (var p in pdus) RawPdus.AssertWellFormedTargetPdu(p);
            Assert.False(closed);
            Assert.DoesNotContain(pdus, p => p.Type == PduType.C2HTermReq);
            Assert.All(pdus.Where(p => p.Type == PduType.CapsuleResp), p => Assert.True(p.Cqe.Status.IsSuccess, p.Cqe.Status.ToString()));
            Assert.True(pdus.Count(p => p.Type == PduType.CapsuleResp) >= 8);
        }
        Assert.Contains(RawPdus.Split(Stream(1)), p => p.Type == PduType.H2CData);
    }

    [Fact]
    public void Split_invariance_fixed_seeds()
    {
        for (int seed = 0; seed < FixedSeeds; seed++)
        {
            var rng = new Random(seed);
            int which = seed % 3;
            AssertSplitInvariant(which, RandomChunks(rng));
        }
    }

    [Property(MaxTest = 120)]
    public Property Split_invariance_property()
    {
        var arb = (from which in Gen.Choose(0, 2)
                   from chunks in Chunks
                   select (which, chunks)).ToArbitrary();
        return Prop.ForAll(arb, t =>
        {
            AssertSplitInvariant(t.which, t.chunks);
            return true;
        });
    }

    [Fact]
    public void Mutated_valid_streams_fixed_seeds()
    {
        for (int seed = 0; seed < FixedSeeds; seed++)
        {
            var rng = new Random(1000 + seed);
            int which = seed % 3;
            var mutated = Mutate(Stream(which), rng);
            CheckInvariant(which, mutated, RandomChunks(rng));
        }
    }

    [Property(MaxTest = 120)]
    public Property Mutated_valid_streams_property()
    {
        var edit = from pos in Gen.Choose(0, int.MaxValue) from x in Gen.Choose(1, 255) select (pos, (byte)x);
        var field = from pdu in Gen.Choose(0, 63)
                    from f in Gen.Choose(0, SqeFields.Length - 1)
                    from v in Gen.Frequency((3, Gen.Elements(Interesting)), (1, Gen.Choose(int.MinValue, int.MaxValue).Select(i => (uint)i)))
                    select (pdu, f, v);
        var arb = (from which in Gen.Choose(0, 2)
                   from fields in Gen.ArrayOf(field)
                   from edits in Gen.ArrayOf(edit)
                   from cut in Gen.Frequency((3, Gen.Constant(-1)), (1, Gen.Choose(0, int.MaxValue)))
                   from chunks in Chunks
                   select (which, fields, edits, cut, chunks)).ToArbitrary();
        return Prop.ForAll(arb, t =>
        {
            var stream = Stream(t.which).ToArray();
            foreach (var (pdu, f, v) in t.fields) stream = EditCapsuleField(stream, pdu, f, v);
            foreach (var (pos, x) in t.edits) stream[pos % stream.Length] ^= x;
            if (t.cut >= 0) stream = stream[..(t.cut % stream.Length)];
            CheckInvariant(t.which, stream, t.chunks);
            return true;
        });
    }

    [Fact]
    public void Random_byte_streams_fixed_seeds()
    {
        for (int seed = 0; seed < FixedSeeds; seed++)
        {
            var rng = new Random(5000 + seed);
            var junk = new byte[rng.Next(0, 3000)];
            rng.NextBytes(junk);
            // A valid prefix (ICReq, or part of a session) gets the junk past the first header checks.
            byte[] prefix = (seed % 3) switch
            {
                0 => [],
                1 => RawPdus.ICReq(),
                _ => Stream(seed % 2 + 1)[..rng.Next(0, Stream(seed % 2 + 1).Length)],
            };
            CheckInvariant(seed % 2 + 1, [.. prefix, .. junk], RandomChunks(rng));
        }
    }

    [Property(MaxTest = 120)]
    public Property Random_byte_streams_property()
    {
        var arb = (from prefixKind in Gen.Choose(0, 2)
                   from junk in Gen.ArrayOf(Gen.Choose(0, 255).Select(i => (byte)i))
                   from chunks in Chunks
                   select (prefixKind, junk, chunks)).ToArbitrary();
        return Prop.ForAll(arb, t =>
        {
            byte[] prefix = t.prefixKind switch
            {
                0 => [],
                1 => RawPdus.ICReq(),
                _ => RawPdus.ICReq(hdgst: true, ddgst: true),
            };
            CheckInvariant(0, [.. prefix, .. t.junk], t.chunks);
            return true;
        });
    }

    /// <summary>Whole-stream output equals the output of any chunking (storage runs after all input in both).</summary>
    private static void AssertSplitInvariant(int which, int[] chunks)
    {
        var stream = Stream(which);
        var reference = Replay(which, stream, [], executeBetweenChunks: false, out _);
        var split = Replay(which, stream, chunks, executeBetweenChunks: false, out _);
        Assert.Equal(reference, split);
    }

    /// <summary>Never throws; output is whole PDUs; at most one C2HTermReq, last, and only with WantsClose; then silence.</summary>
    private static void CheckInvariant(int which, byte[] stream, int[] chunks)
    {
        var raw = NewConnection(which, out var fabric);
        Feed(raw, fabric, stream, chunks, executeBetweenChunks: true);
        raw.CompleteHeld();
        var output = raw.Output.ToArray();
        var pdus = RawPdus.TrySplit(output);
        Assert.NotNull(pdus);
        foreach (var p in pdus) RawPdus.AssertWellFormedTargetPdu(p);
        int terms = pdus.Count(p => p.Type == PduType.C2HTermReq);
        Assert.InRange(terms, 0, 1);
        if (terms == 1)
        {
            Assert.Equal(PduType.C2HTermReq, pdus[^1].Type);
            Assert.True(raw.Conn.WantsClose);
            Assert.True(Enum.IsDefined(pdus[^1].Fes));
        }
        if (raw.Conn.WantsClose)
        {
            raw.Conn.Receive(RawPdus.ICReq(), fabric.Now);
            raw.Conn.Poll(fabric.Now + 1_000_000);
            Assert.True(raw.Conn.PendingOutput.IsEmpty);
        }
        raw.Conn.OnTransportClosed();
        Assert.Equal(0, raw.Conn.InFlightStorage);
    }

    private static byte[] Replay(int which, byte[] stream, int[] chunks, bool executeBetweenChunks, out bool closed)
    {
        var raw = NewConnection(which, out var fabric);
        raw.HoldStorage = !executeBetweenChunks;
        Feed(raw, fabric, stream, chunks, executeBetweenChunks);
        raw.CompleteHeld();
        raw.Drain();
        closed = raw.Conn.WantsClose;
        return raw.Output.ToArray();
    }

    private static void Feed(RawTarget raw, Fabric fabric, byte[] stream, int[] chunks, bool executeBetweenChunks)
    {
        int off = 0, i = 0;
        while (off < stream.Length)
        {
            int n = chunks.Length == 0 ? stream.Length : Math.Max(1, chunks[i++ % chunks.Length]);
            n = Math.Min(n, stream.Length - off);
            raw.Conn.Receive(stream.AsSpan(off, n), fabric.Now);
            off += n;
            if (executeBetweenChunks) raw.Drain();
        }
        raw.Drain();
    }

    /// <summary>A fresh target like the recording's: admin controller first (I/O streams embed its CNTLID).</summary>
    private static RawTarget NewConnection(int which, out Fabric fabric)
    {
        fabric = NewFabric();
        if (which != 0) fabric.Admin();
        return new RawTarget(fabric);
    }

    private static Fabric NewFabric()
    {
        var fabric = new Fabric(new TargetOptions { MaxH2CData = 4096, Mdts = 3 });
        fabric.AddVolume(1, 256, 512, Guid.Parse("6b3f0c1e-0000-4000-8000-000000000001"));
        return fabric;
    }

    private static byte[] RecordAdminStream()
    {
        var fabric = NewFabric();
        var (q, cqe) = fabric.Connect(options: new HostQueueOptions { HeaderDigest = true });
        Assert.True(cqe.Status.IsSuccess);
        var page = new byte[4096];
        fabric.ExecOk(q, NvmeCommands.PropertyGet(PropertyOffset.Cap, true));
        fabric.ExecOk(q, NvmeCommands.PropertySet(PropertyOffset.Cc, Fabric.CcEnable));
        fabric.ExecOk(q, NvmeCommands.Identify(IdentifyCns.Controller), page);
        fabric.ExecOk(q, NvmeCommands.Identify(IdentifyCns.ActiveNamespaceList), page);
        fabric.ExecOk(q, NvmeCommands.Identify(IdentifyCns.Namespace, 1), page);
        fabric.ExecOk(q, NvmeCommands.GetLogPage(LogPageId.SmartHealth, 512), page.AsMemory(0, 512));
        fabric.ExecOk(q, NvmeCommands.SetFeatures(FeatureId.NumberOfQueues, 3 | 3u << 16));
        fabric.ExecOk(q, NvmeCommands.SetFeatures(FeatureId.AsyncEventConfiguration, 1u << 8));
        fabric.ExecOk(q, NvmeCommands.GetFeatures(FeatureId.KeepAliveTimer));
        fabric.ExecOk(q, NvmeCommands.KeepAlive());
        return q.HostOutput.ToArray();
    }

    /// <summary>An I/O session with every command in flight at once (storage held), so slots and TTAGs do not depend on timing.</summary>
    private static byte[] RecordIoStream(bool hdgst, bool ddgst)
    {
        var fabric = NewFabric();
        var admin = fabric.Admin();
        var io = fabric.Io(admin, 1, new HostQueueOptions { HeaderDigest = hdgst, DataDigest = ddgst, MaxR2T = 1 });
        io.HoldStorage = true;
        io.Submit(NvmeCommands.Write(1, 0, 4), IoTests.Pattern(2048, 1)); // in-capsule
        io.Submit(NvmeCommands.Write(1, 8, 32), IoTests.Pattern(16384, 2)); // four R2Ts, two at a time
        io.Submit(NvmeCommands.Read(1, 0, 4), new byte[2048]);
        io.Submit(NvmeCommands.Flush(1));
        io.Submit(NvmeCommands.WriteZeroes(1, 60, 4, deallocate: true));
        var ranges = new byte[32];
        ranges[4] = 2;
        ranges[8] = 70;
        ranges[20] = 1;
        ranges[24] = 90;
        io.Submit(NvmeCommands.DatasetManagement(1, 2), ranges);
        io.Submit(NvmeCommands.Write(1, 100, 18), IoTests.Pattern(9216, 3)); // R2Ts of 4 + 4 + 1 KiB
        io.Submit(NvmeCommands.Read(1, 8, 32), new byte[16384]);
        io.Submit(NvmeCommands.Read(1, 200, 2), new byte[1024]);
        fabric.Pump();
        Assert.Equal(9, io.Held.Count); // every command reached storage and waits there
        return io.HostOutput.ToArray();
    }

    private static int[] RandomChunks(Random rng)
    {
        var chunks = new int[rng.Next(1, 12)];
        for (int i = 0; i < chunks.Length; i++) chunks[i] = rng.Next(3) switch { 0 => rng.Next(1, 8), 1 => rng.Next(8, 300), _ => rng.Next(300, 9000) };
        return chunks;
    }

    // SQE offsets (within the capsule PDU, after the 8-byte common header) worth rewriting: opcode, NSID, SGL address,
    // SGL length, SGL type, CDW10..CDW15.
    private static readonly int[] SqeFields = [8 + 0, 8 + 4, 8 + 24, 8 + 32, 8 + 36, 8 + 40, 8 + 44, 8 + 48, 8 + 52, 8 + 56, 8 + 60];
    private static readonly uint[] Interesting = [0, 1, 2, 3, 0xFF, 0x100, 511, 512, 4095, 4096, 8192, 0xFFFF, 0x10000, 0x7FFF_FFFF, 0xFFFF_FFFE, 0xFFFF_FFFF];

    /// <summary>
    /// Rewrites one SQE field of the <paramref name="pduPick"/>-th capsule and re-seals its header digest, so the
    /// edit reaches command handling instead of dying at the digest check.
    /// </summary>
    private static byte[] EditCapsuleField(byte[] stream, int pduPick, int fieldPick, uint value)
    {
        var pdus = RawPdus.Split(stream);
        var capsules = pdus.Where(p => p.Type == PduType.CapsuleCmd).ToList();
        var target = capsules[pduPick % capsules.Count].Bytes;
        int off = SqeFields[fieldPick % SqeFields.Length];
        if (off == 8 + 36) target[off + 3] = (byte)value; // SGL type byte (39)
        else if (off == 8) target[off] = (byte)value; // opcode
        else System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(target.AsSpan(off), value);
        if (((PduFlags)target[1] & PduFlags.HeaderDigest) != 0)
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(target.AsSpan(PduLayout.CapsuleCmdHeaderSize),
                Crc32C.Compute(target.AsSpan(0, PduLayout.CapsuleCmdHeaderSize)));
        return [.. pdus.SelectMany(p => p.Bytes)];
    }

    /// <summary>Byte flips, a dropped or duplicated slice, truncation, or (half the time first) SQE field edits.</summary>
    private static byte[] Mutate(byte[] stream, Random rng)
    {
        if (rng.Next(2) == 0)
        {
            for (int i = rng.Next(1, 4); i > 0; i--)
            {
                uint value = rng.Next(3) == 0 ? (uint)rng.NextInt64(0, 1L << 32) : Interesting[rng.Next(Interesting.Length)];
                stream = EditCapsuleField(stream, rng.Next(64), rng.Next(SqeFields.Length), value);
            }
            if (rng.Next(2) == 0) return stream;
        }
        var s = stream.ToList();
        int edits = rng.Next(1, 6);
        for (int e = 0; e < edits && s.Count > 0; e++)
        {
            int pos = rng.Next(s.Count);
            switch (rng.Next(4))
            {
                case 0:
                    s[pos] ^= (byte)rng.Next(1, 256);
                    break;
                case 1:
                    s.RemoveRange(pos, Math.Min(rng.Next(1, 64), s.Count - pos));
                    break;
                case 2:
                    s.InsertRange(pos, s.GetRange(pos, Math.Min(rng.Next(1, 64), s.Count - pos)));
                    break;
                default:
                    s.RemoveRange(pos, s.Count - pos);
                    break;
            }
        }
        return [.. s];
    }
}
