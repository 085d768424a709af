using Duroslight.Host;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Wire;
using Xunit;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>Read/Write (in-capsule and R2T), digests, I/O error statuses, Flush, Write Zeroes, DSM, SQHD, CIDs.</summary>
public class IoTests
{
    private const int BlockSize = 512;

    public static TheoryData<bool, bool> Digests => new() { { false, false }, { true, false }, { false, true }, { true, true } };

    [Theory]
    [MemberData(nameof(Digests))]
    public void Write_then_read_back_in_capsule(bool hdgst, bool ddgst)
    {
        var fabric = new Fabric();
        var ns = fabric.AddVolume();
        var (_, io) = fabric.Controller(new HostQueueOptions { HeaderDigest = hdgst, DataDigest = ddgst });
        var data = Pattern(8 * BlockSize, 1);

        var write = io.Submit(NvmeCommands.Write(1, 10, 8), data);
        Assert.True(write.InCapsule);
        fabric.Pump();
        AssertDone(io, write);
        Assert.Equal(data, fabric.Storage.Volume(ns.VolumeId).AsSpan(10 * BlockSize, data.Length).ToArray());
        Assert.DoesNotContain(RawPdus.Split(io.TargetOutput.ToArray()), p => p.Type == PduType.R2T);

        var back = new byte[data.Length];
        fabric.ExecOk(io, NvmeCommands.Read(1, 10, 8), back);
        Assert.Equal(data, back);
        AssertDigestFlags(io, hdgst, ddgst);
    }

    [Theory]
    [MemberData(nameof(Digests))]
    public void A_128K_write_comes_in_capsule_when_in_capsule_data_allows_it(bool hdgst, bool ddgst)
    {
        // in_capsule_data 128K: one PDU carries command and data, no R2T round trip (bench/README.md).
        var fabric = new Fabric(new TargetOptions { MaxInCapsuleData = 128 * 1024 });
        var ns = fabric.AddVolume();
        var (_, io) = fabric.Controller(new HostQueueOptions { HeaderDigest = hdgst, DataDigest = ddgst, InCapsuleDataLimit = 128 * 1024 });
        var data = Pattern(256 * BlockSize, 3);

        var write = io.Submit(NvmeCommands.Write(1, 20, 256), data);
        Assert.True(write.InCapsule);
        fabric.Pump();
        AssertDone(io, write);
        Assert.Equal(data, fabric.Storage.Volume(ns.VolumeId).AsSpan(20 * BlockSize, data.Length).ToArray());
        Assert.DoesNotContain(RawPdus.Split(io.TargetOutput.ToArray()), p => p.Type == PduType.R2T);
    }

    [Theory]
    [MemberData(nameof(Digests))]
    public void Write_larger_than_MAXH2CDATA_uses_several_R2Ts(bool hdgst, bool ddgst)
    {
        var fabric = new Fabric(new TargetOptions { MaxH2CData = 8192 });
        var ns = fabric.AddVolume();
        var (_, io) = fabric.Controller(new HostQueueOptions { HeaderDigest = hdgst, DataDigest = ddgst });
        var data = Pattern(128 * BlockSize, 2); // 64 KiB: 8 R2Ts of 8 KiB

        var write = io.Submit(NvmeCommands.Write(1, 100, 128), data);
        Assert.False(write.InCapsule);
        fabric.Pump();
        AssertDone(io, write);
        Assert.Equal(data, fabric.Storage.Volume(ns.VolumeId).AsSpan(100 * BlockSize, data.Length).ToArray());

        var r2ts = RawPdus.Split(io.TargetOutput.ToArray()).Where(p => p.Type == PduType.R2T).ToList();
        Assert.Equal(8, r2ts.Count);
        Assert.All(r2ts, r => Assert.Equal(8192u, r.DataLength));
        var h2c = RawPdus.Split(io.HostOutput.ToArray()).Where(p => p.Type == PduType.H2CData).ToList();
        Assert.Equal(8, h2c.Count);
        Assert.All(h2c, p => Assert.True((p.Flags & PduFlags.LastPdu) != 0));

        var back = new byte[data.Length];
        fabric.ExecOk(io, NvmeCommands.Read(1, 100, 128), back);
        Assert.Equal(data, back);
        AssertDigestFlags(io, hdgst, ddgst);
    }

    [Fact]
    public void R2T_data_is_split_at_the_host_pdu_limit_with_LAST_PDU_on_the_last_of_each_R2T()
    {
        var fabric = new Fabric(new TargetOptions { MaxH2CData = 16384 });
        var ns = fabric.AddVolume();
        var (_, io) = fabric.Controller(new HostQueueOptions { MaxH2CDataPdu = 6144, DataDigest = true });
        var data = Pattern(64 * BlockSize, 3); // 32 KiB: two R2Ts of 16 KiB, each as 6 + 6 + 4 KiB
        fabric.ExecOk(io, NvmeCommands.Write(1, 0, 64), data);
        Assert.Equal(data, fabric.Storage.Volume(ns.VolumeId).AsSpan(0, data.Length).ToArray());

        var h2c = RawPdus.Split(io.HostOutput.ToArray()).Where(p => p.Type == PduType.H2CData).ToList();
        Assert.Equal([6144u, 6144u, 4096u, 6144u, 6144u, 4096u], h2c.Select(p => p.DataLength));
        Assert.Equal([0u, 6144u, 12288u, 16384u, 22528u, 28672u], h2c.Select(p => p.DataOffset));
        Assert.Equal([false, false, true, false, false, true], h2c.Select(p => (p.Flags & PduFlags.LastPdu) != 0));
    }

    [Fact]
    public void MaxR2T_above_zero_lets_the_target_issue_several_R2Ts_at_once()
    {
        var fabric = new Fabric(new TargetOptions { MaxH2CData = 4096 });
        var ns = fabric.AddVolume();
        var (_, io) = fabric.Controller(new HostQueueOptions { MaxR2T = 3 });
        io.MaxChunk = 1; // byte-at-a-time delivery must not matter
        var data = Pattern(48 * BlockSize, 4);
        fabric.ExecOk(io, NvmeCommands.Write(1, 7, 48), data);
        Assert.Equal(data, fabric.Storage.Volume(ns.VolumeId).AsSpan(7 * BlockSize, data.Length).ToArray());
        // 24 KiB in 4 KiB R2Ts: the first four go out together (MAXR2T 3 = four outstanding), the rest one by one.
        var types = RawPdus.Split(io.TargetOutput.ToArray()).Select(p => p.Type).ToList();
        Assert.Equal(6, types.Count(t => t == PduType.R2T));
        int firstR2T = types.IndexOf(PduType.R2T);
        Assert.Equal(Enumerable.Repeat(PduType.R2T, 4), types.Skip(firstR2T).Take(4));
    }

    [Fact]
    public void Half_megabyte_write_and_read_with_default_limits()
    {
        var fabric = new Fabric();
        var ns = fabric.AddVolume(1, 4096, 512);
        var (_, io) = fabric.Controller(new HostQueueOptions { HeaderDigest = true, DataDigest = true });
        var data = Pattern(1024 * BlockSize, 5);
        fabric.ExecOk(io, NvmeCommands.Write(1, 1000, 1024), data);
        Assert.Equal(4, RawPdus.Split(io.TargetOutput.ToArray()).Count(p => p.Type == PduType.R2T));
        var back = new byte[data.Length];
        fabric.ExecOk(io, NvmeCommands.Read(1, 1000, 1024), back);
        Assert.Equal(data, back);
        Assert.Equal(data, fabric.Storage.Volume(ns.VolumeId).AsSpan(1000 * BlockSize, data.Length).ToArray());
    }

    [Fact]
    public void Many_outstanding_commands_complete_with_distinct_cids()
    {
        var fabric = new Fabric(new TargetOptions { MaxH2CData = 4096 });
        var ns = fabric.AddVolume();
        var (_, io) = fabric.Controller(new HostQueueOptions { QueueDepth = 24 });
        var writes = new List<(HostCommand Cmd, byte[] Data)>();
        for (int i = 0; i < 24; i++)
        {
            var data = Pattern((i % 3 == 0 ? 32 : 4) * BlockSize, 10 + i); // mix R2T and in-capsule
            writes.Add((io.Submit(NvmeCommands.Write(1, (ulong)i * 32, data.Length / BlockSize), data), data));
        }
        Assert.False(io.Host.TrySubmit(NvmeCommands.Flush(1), default, null, out _)); // queue full
        Assert.Equal(24, writes.Select(w => w.Cmd.Cid).Distinct().Count());
        fabric.Pump();
        var done = io.TakeCompletions();
        Assert.Equal(24, done.Count);
        Assert.All(done, c => Assert.True(c.Status.IsSuccess));
        foreach (var c in done) io.Host.Release(c);

        var buffers = new List<byte[]>();
        for (int i = 0; i < writes.Count; i++)
        {
            buffers.Add(new byte[writes[i].Data.Length]);
            io.Submit(NvmeCommands.Read(1, (ulong)i * 32, buffers[i].Length / BlockSize), buffers[i]);
        }
        fabric.Pump();
        Assert.All(io.TakeCompletions(), c => Assert.True(c.Status.IsSuccess));
        for (int i = 0; i < writes.Count; i++) Assert.Equal(writes[i].Data, buffers[i]);
        Assert.Equal(writes[5].Data, fabric.Storage.Volume(ns.VolumeId).AsSpan(5 * 32 * BlockSize, writes[5].Data.Length).ToArray());
    }

    [Fact]
    public void Cids_change_when_a_slot_is_reused()
    {
        var fabric = new Fabric();
        var (_, io) = fabric.Controller(new HostQueueOptions { QueueDepth = 2 });
        var a = io.Submit(NvmeCommands.Flush(1));
        ushort first = a.Cid;
        fabric.Pump();
        io.Host.Release(Assert.Single(io.TakeCompletions()));
        var b = io.Submit(NvmeCommands.Flush(1));
        Assert.Same(a, b);
        Assert.NotEqual(first, b.Cid);
        fabric.Pump();
        Assert.True(Assert.Single(io.TakeCompletions()).Status.IsSuccess);
    }

    [Fact]
    public void Lba_out_of_range_fails_reads_and_writes_without_moving_data()
    {
        var fabric = new Fabric(new TargetOptions { MaxH2CData = 4096 });
        fabric.AddVolume(1, 100, BlockSize);
        var (_, io) = fabric.Controller();
        Assert.Equal(NvmeStatus.LbaOutOfRange, fabric.Exec(io, NvmeCommands.Read(1, 99, 2), new byte[2 * BlockSize]).Status);
        Assert.Equal(NvmeStatus.LbaOutOfRange, fabric.Exec(io, NvmeCommands.Read(1, 100, 1), new byte[BlockSize]).Status);
        Assert.Equal(NvmeStatus.LbaOutOfRange, fabric.Exec(io, NvmeCommands.Write(1, 98, 4), new byte[4 * BlockSize]).Status);
        Assert.Equal(NvmeStatus.LbaOutOfRange, fabric.Exec(io, NvmeCommands.Write(1, 90, 32), new byte[32 * BlockSize]).Status);
        Assert.Equal(NvmeStatus.LbaOutOfRange, fabric.Exec(io, NvmeCommands.Read(1, ulong.MaxValue, 1), new byte[BlockSize]).Status);
        Assert.DoesNotContain(RawPdus.Split(io.TargetOutput.ToArray()), p => p.Type is PduType.R2T or PduType.C2HData);
        Assert.Empty(fabric.Storage.Log);
    }

    [Fact]
    public void Unknown_nsid_is_InvalidNamespace()
    {
        var fabric = new Fabric();
        var (_, io) = fabric.Controller();
        Assert.Equal(NvmeStatus.InvalidNamespaceOrFormat, fabric.Exec(io, NvmeCommands.Read(9, 0, 1), new byte[BlockSize]).Status);
        Assert.Equal(NvmeStatus.InvalidNamespaceOrFormat, fabric.Exec(io, NvmeCommands.Write(0, 0, 1), new byte[BlockSize]).Status);
        Assert.Equal(NvmeStatus.InvalidNamespaceOrFormat, fabric.Exec(io, NvmeCommands.Flush(9)).Status);
        Assert.Equal(NvmeStatus.InvalidNamespaceOrFormat, fabric.Exec(io, NvmeCommands.WriteZeroes(9, 0, 1)).Status);
        Assert.Equal(NvmeStatus.InvalidNamespaceOrFormat, fabric.Exec(io, NvmeCommands.DatasetManagement(9, 1), new byte[16]).Status);
    }

    [Fact]
    public void Unknown_opcodes_are_InvalidOpcode_on_both_queue_types()
    {
        var fabric = new Fabric();
        var (admin, io) = fabric.Controller();
        Assert.Equal(NvmeStatus.InvalidOpcode, fabric.Exec(io, new NvmeCommand(0x7C, 1)).Status);
        Assert.Equal(NvmeStatus.InvalidOpcode, fabric.Exec(io, new NvmeCommand(AdminOpcode.Identify, 1)).Status); // admin opcode on I/O queue
        Assert.Equal(NvmeStatus.InvalidOpcode, fabric.Exec(admin, new NvmeCommand(0xC0)).Status);
        Assert.Equal(NvmeStatus.InvalidOpcode, fabric.Exec(admin, NvmeCommands.Fabrics(0x7E)).Status);
        Assert.False(io.Closed);
        Assert.False(admin.Closed);
    }

    [Fact]
    public void Transfers_beyond_MDTS_are_InvalidField()
    {
        // MDTS 1 = 8 KiB; in-capsule data up to 8 KiB, so 16 KiB writes go by R2T.
        var fabric = new Fabric(new TargetOptions { Mdts = 1 });
        fabric.AddVolume();
        var (_, io) = fabric.Controller();
        Assert.True(fabric.Exec(io, NvmeCommands.Read(1, 0, 16), new byte[16 * BlockSize]).Status.IsSuccess);
        Assert.Equal(NvmeStatus.InvalidField, fabric.Exec(io, NvmeCommands.Read(1, 0, 17), new byte[17 * BlockSize]).Status);
        Assert.Equal(NvmeStatus.InvalidField, fabric.Exec(io, NvmeCommands.Write(1, 0, 32), new byte[32 * BlockSize]).Status);
        Assert.DoesNotContain(RawPdus.Split(io.TargetOutput.ToArray()), p => p.Type == PduType.R2T);
    }

    [Fact]
    public void Sgl_length_not_matching_the_block_count_is_0Fh()
    {
        var fabric = new Fabric(new TargetOptions { MaxH2CData = 4096 });
        fabric.AddVolume();
        var (_, io) = fabric.Controller();
        Assert.Equal(NvmeStatus.DataSglLengthInvalid, fabric.Exec(io, NvmeCommands.Read(1, 0, 8), new byte[2048]).Status);
        Assert.Equal(NvmeStatus.DataSglLengthInvalid, fabric.Exec(io, NvmeCommands.Write(1, 0, 8), new byte[1024]).Status); // in-capsule
        Assert.Equal(NvmeStatus.DataSglLengthInvalid, fabric.Exec(io, NvmeCommands.Write(1, 0, 8), new byte[16384]).Status); // R2T
        Assert.Equal(NvmeStatus.DataSglLengthInvalid, fabric.Exec(io, NvmeCommands.DatasetManagement(1, 2), new byte[16]).Status);
        Assert.Empty(fabric.Storage.Log);
    }

    [Fact]
    public void Flush_of_one_namespace_and_of_all()
    {
        var fabric = new Fabric();
        var ns = fabric.AddVolume();
        var (_, io) = fabric.Controller();
        fabric.ExecOk(io, NvmeCommands.Flush(1));
        fabric.ExecOk(io, NvmeCommands.Flush(uint.MaxValue));
        Assert.Equal(2, fabric.Storage.Flushes);
        Assert.Equal(ns.VolumeId, fabric.Storage.Log[0].VolumeId);
        Assert.Equal(Guid.Empty, fabric.Storage.Log[1].VolumeId);
    }

    [Fact]
    public void Write_with_FUA_reaches_storage_as_force_unit_access()
    {
        var fabric = new Fabric();
        fabric.AddVolume();
        var (_, io) = fabric.Controller();
        fabric.ExecOk(io, NvmeCommands.Write(1, 0, 1, fua: true), new byte[BlockSize]);
        fabric.ExecOk(io, NvmeCommands.Write(1, 0, 1), new byte[BlockSize]);
        Assert.Equal([true, false], fabric.Storage.Log.Select(r => r.Fua));
    }

    [Fact]
    public void Write_zeroes_clears_exactly_its_range()
    {
        var fabric = new Fabric();
        var ns = fabric.AddVolume();
        var (_, io) = fabric.Controller();
        var data = Pattern(16 * BlockSize, 6);
        fabric.ExecOk(io, NvmeCommands.Write(1, 0, 16), data);
        fabric.ExecOk(io, NvmeCommands.WriteZeroes(1, 4, 8, deallocate: true));
        var volume = fabric.Storage.Volume(ns.VolumeId);
        Assert.Equal(data.AsSpan(0, 4 * BlockSize).ToArray(), volume.AsSpan(0, 4 * BlockSize).ToArray());
        Assert.True(volume.AsSpan(4 * BlockSize, 8 * BlockSize).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(data.AsSpan(12 * BlockSize, 4 * BlockSize).ToArray(), volume.AsSpan(12 * BlockSize, 4 * BlockSize).ToArray());
        var wz = fabric.Storage.Log[^1];
        Assert.Equal(StorageOp.WriteZeroes, wz.Op);
        Assert.True(wz.MayDeallocate);
        Assert.Equal(4L * BlockSize, wz.Offset);
        Assert.Equal(NvmeStatus.LbaOutOfRange, fabric.Exec(io, NvmeCommands.WriteZeroes(1, 4090, 8)).Status);
    }

    [Fact]
    public void Dataset_management_deallocates_its_ranges()
    {
        var fabric = new Fabric();
        var ns = fabric.AddVolume();
        var (_, io) = fabric.Controller();
        fabric.ExecOk(io, NvmeCommands.Write(1, 0, 16), Pattern(16 * BlockSize, 7));
        var ranges = DsmRanges((1, 2), (10, 3), (15, 0));
        fabric.ExecOk(io, NvmeCommands.DatasetManagement(1, 3), ranges);
        var dealloc = fabric.Storage.Log[^1];
        Assert.Equal(StorageOp.Deallocate, dealloc.Op);
        Assert.Equal([new ByteRange(512, 1024), new ByteRange(5120, 1536)], dealloc.Ranges);
        var volume = fabric.Storage.Volume(ns.VolumeId);
        Assert.True(volume.AsSpan(512, 1024).IndexOfAnyExcept((byte)0) < 0);
        Assert.NotEqual(0, volume[0]);

        int before = fabric.Storage.Log.Count;
        fabric.ExecOk(io, NvmeCommands.DatasetManagement(1, 1, deallocate: false), DsmRanges((0, 1)));
        Assert.Equal(before, fabric.Storage.Log.Count); // hints only
        Assert.Equal(NvmeStatus.LbaOutOfRange, fabric.Exec(io, NvmeCommands.DatasetManagement(1, 1), DsmRanges((4095, 2))).Status);
    }

    [Fact]
    public void Dataset_management_accepts_its_ranges_inside_a_whole_page_as_Linux_sends_them()
    {
        var fabric = new Fabric();
        fabric.AddVolume();
        var (_, io) = fabric.Controller();
        var page = new byte[4096];
        DsmRanges((8, 4)).CopyTo(page, 0);
        fabric.ExecOk(io, NvmeCommands.DatasetManagement(1, 1), page);
        var dealloc = fabric.Storage.Log[^1];
        Assert.Equal(StorageOp.Deallocate, dealloc.Op);
        Assert.Equal([new ByteRange(8 * BlockSize, 4 * BlockSize)], dealloc.Ranges);
    }

    [Fact]
    public void Sq_head_advances_per_capsule_modulo_the_queue_size()
    {
        var fabric = new Fabric();
        var admin = fabric.Admin();
        // QueueDepth 4 connects SQSIZE 3: four entries. The Connect itself is entry 0, so its CQE reports SQHD 1.
        var (io, connect) = fabric.Connect(1, admin.Cntlid, options: new HostQueueOptions { QueueDepth = 4 });
        Assert.Equal(1, connect.SqHead);
        var heads = new List<int>();
        for (int i = 0; i < 6; i++) heads.Add(fabric.ExecOk(io, NvmeCommands.Flush(uint.MaxValue)).SqHead);
        Assert.Equal([2, 3, 0, 1, 2, 3], heads);
    }

    [Fact]
    public void Duplicate_cid_is_refused_while_the_original_completes()
    {
        var fabric = new Fabric();
        var ns = fabric.AddVolume();
        var admin = fabric.Admin();
        var raw = new RawTarget(fabric) { HoldStorage = true };
        Assert.True(raw.Handshake(1, admin.Cntlid).Status.IsSuccess);
        fabric.Storage.Volume(ns.VolumeId)[0] = 0x5A;

        Assert.Empty(raw.Send(RawPdus.Capsule(NvmeCommands.Read(1, 0, 1), 7, sglLength: 512)));
        var conflict = Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.Flush(1), 7)));
        Assert.Equal(NvmeStatus.CommandIdConflict, conflict.Cqe.Status);
        Assert.Equal(7, conflict.Cqe.CommandId);

        raw.CompleteHeld();
        var out2 = raw.Drain();
        Assert.Equal([PduType.C2HData, PduType.CapsuleResp], out2.Select(p => p.Type));
        Assert.Equal(0x5A, out2[0].Bytes[out2[0].Pdo]);
        Assert.True(out2[1].Cqe.Status.IsSuccess);
        Assert.Equal(7, out2[1].Cqe.CommandId);
    }

    [Fact]
    public void Bad_H2CData_digest_fails_only_that_command()
    {
        var fabric = new Fabric(new TargetOptions { MaxH2CData = 4096 });
        var ns = fabric.AddVolume();
        var (_, io) = fabric.Controller(new HostQueueOptions { DataDigest = true, HeaderDigest = true });
        io.HostToTargetFilter = CorruptLastByteOf(PduType.H2CData, nth: 1);
        var data = Pattern(32 * BlockSize, 8); // four R2Ts; the second H2CData is damaged
        Assert.Equal(NvmeStatus.TransientTransportError, fabric.Exec(io, NvmeCommands.Write(1, 0, 32), data).Status);
        Assert.Equal(4, RawPdus.Split(io.TargetOutput.ToArray()).Count(p => p.Type == PduType.R2T)); // all data drained first
        Assert.True(fabric.Storage.Volume(ns.VolumeId).AsSpan(0, data.Length).IndexOfAnyExcept((byte)0) < 0);
        Assert.False(io.Closed);

        io.HostToTargetFilter = null;
        fabric.ExecOk(io, NvmeCommands.Write(1, 0, 32), data);
        var back = new byte[data.Length];
        fabric.ExecOk(io, NvmeCommands.Read(1, 0, 32), back);
        Assert.Equal(data, back);
    }

    [Fact]
    public void Bad_in_capsule_data_digest_fails_only_that_command()
    {
        var fabric = new Fabric();
        fabric.AddVolume();
        var (_, io) = fabric.Controller(new HostQueueOptions { DataDigest = true });
        io.HostToTargetFilter = CorruptLastByteOf(PduType.CapsuleCmd, nth: 0);
        Assert.Equal(NvmeStatus.TransientTransportError, fabric.Exec(io, NvmeCommands.Write(1, 0, 2), new byte[1024]).Status);
        io.HostToTargetFilter = null;
        fabric.ExecOk(io, NvmeCommands.Write(1, 0, 2), new byte[1024]);
        Assert.Single(fabric.Storage.Log);
    }

    [Fact]
    public void Without_sq_flow_control_reads_end_with_C2HData_SUCCESS()
    {
        var fabric = new Fabric();
        fabric.AddVolume();
        var admin = fabric.Admin();
        var io = fabric.Io(admin, 1, cattr: 0x4);
        var data = Pattern(4 * BlockSize, 11);
        fabric.ExecOk(io, NvmeCommands.Write(1, 0, 4), data);
        int responsesBefore = RawPdus.Split(io.TargetOutput.ToArray()).Count(p => p.Type == PduType.CapsuleResp);
        var back = new byte[data.Length];
        fabric.ExecOk(io, NvmeCommands.Read(1, 0, 4), back);
        Assert.Equal(data, back);
        var pdus = RawPdus.Split(io.TargetOutput.ToArray());
        Assert.Equal(responsesBefore, pdus.Count(p => p.Type == PduType.CapsuleResp));
        Assert.Equal(PduFlags.LastPdu | PduFlags.Success, pdus[^1].Flags);
    }

    internal static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static byte[] DsmRanges(params (ulong Slba, uint Blocks)[] ranges)
    {
        var b = new byte[ranges.Length * 16];
        for (int i = 0; i < ranges.Length; i++)
        {
            BitConverter.TryWriteBytes(b.AsSpan(i * 16 + 4), ranges[i].Blocks);
            BitConverter.TryWriteBytes(b.AsSpan(i * 16 + 8), ranges[i].Slba);
        }
        return b;
    }

    private static void AssertDone(QueuePair q, HostCommand cmd)
    {
        var done = Assert.Single(q.TakeCompletions());
        Assert.Same(cmd, done);
        Assert.True(done.Status.IsSuccess, done.Status.ToString());
        q.Host.Release(done);
    }

    /// <summary>Every PDU that may carry digests carries exactly the negotiated ones.</summary>
    private static void AssertDigestFlags(QueuePair q, bool hdgst, bool ddgst)
    {
        var all = RawPdus.Split(q.HostOutput.ToArray()).Concat(RawPdus.Split(q.TargetOutput.ToArray()));
        foreach (var p in all.Where(p => PduLayout.MayCarryHeaderDigest(p.Type)))
        {
            Assert.Equal(hdgst, (p.Flags & PduFlags.HeaderDigest) != 0);
            bool hasData = p.Plen > p.Hlen + (hdgst ? 4 : 0);
            if (PduLayout.MayCarryDataDigest(p.Type) && hasData) Assert.Equal(ddgst, (p.Flags & PduFlags.DataDigest) != 0);
        }
    }

    /// <summary>A filter flipping the last byte (the data digest) of the nth PDU of <paramref name="type"/> it sees.</summary>
    internal static Func<byte[], byte[]> CorruptLastByteOf(PduType type, int nth)
    {
        int seen = 0;
        return batch =>
        {
            var copy = batch.ToArray();
            int off = 0;
            foreach (var p in RawPdus.Split(batch))
            {
                if (p.Type == type && seen++ == nth) copy[off + p.Plen - 1] ^= 0xFF;
                off += p.Plen;
            }
            return copy;
        };
    }
}
