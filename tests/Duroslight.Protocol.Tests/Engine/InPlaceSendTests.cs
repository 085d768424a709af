using Duroslight.Host;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Wire;
using Duroslight.Tests.Shared;
using Xunit;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>
/// Read data sent in place (from its data buffer, by a gathering send) instead of copied into the output: the host
/// sees the same bytes, and each buffer goes back to its pool only once the stream was sent past it.
/// </summary>
public sealed class InPlaceSendTests
{
    [Theory]
    [InlineData(false, false, 1)]
    [InlineData(false, false, 3)]
    [InlineData(true, true, 2)]
    [InlineData(true, false, 64)]
    public void Reads_sent_in_place_put_the_same_bytes_on_the_wire_as_copied_reads(bool hdgst, bool ddgst, int segments)
    {
        var copied = ReadSession(hdgst, ddgst, gatherSegments: 0, out _);
        var pool = new CountingPool();
        var inPlace = ReadSession(hdgst, ddgst, segments, out _, pool);
        Assert.Equal(copied, inPlace);
        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public void A_read_buffer_stays_rented_until_the_send_covering_it_ends()
    {
        var pool = new CountingPool();
        var fabric = new Fabric();
        fabric.AddVolume();
        var admin = fabric.Admin();
        var raw = new RawTarget(fabric, pool, gatherSegments: 4);
        Assert.True(raw.Handshake(1, admin.Cntlid).Status.IsSuccess);
        raw.Conn.Receive(RawPdus.Capsule(NvmeCommands.Read(1, 0, 8), 7, sglLength: 8 * 512), fabric.Now);
        Assert.True(raw.Conn.TryTakeStorageRequest(out var request));
        raw.Conn.CompleteStorage(request, fabric.Storage.Execute(request));
        Assert.Equal(1, pool.Outstanding); // the slot is free, its buffer now belongs to the output

        var segments = new ReadOnlyMemory<byte>[4];
        int count = raw.Conn.BeginSend(segments);
        Assert.Equal(3, count); // C2HData header, the data in place, CapsuleResp
        Assert.Equal(8 * 512, segments[1].Length);
        raw.Conn.EndSend(segments[0].Length + 100); // a partial send: the data is not all out yet
        Assert.Equal(1, pool.Outstanding);
        Assert.True(raw.Conn.HasPendingOutput);
        count = raw.Conn.BeginSend(segments);
        Assert.Equal(2, count);
        Assert.Equal(8 * 512 - 100, segments[0].Length);
        raw.Conn.EndSend(segments[0].Length);
        Assert.Equal(0, pool.Outstanding);
        Assert.Equal(PduLayout.CapsuleRespHeaderSize, raw.Conn.PendingOutputBytes);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(4)]
    public void Read_data_storage_lent_is_sent_from_its_memory_and_never_given_to_the_pool(int gatherSegments)
    {
        var pool = new CountingPool();
        var fabric = new Fabric();
        fabric.AddVolume();
        var admin = fabric.Admin();
        var raw = new RawTarget(fabric, pool, gatherSegments: gatherSegments);
        Assert.True(raw.Handshake(1, admin.Cntlid).Status.IsSuccess);
        raw.Conn.Receive(RawPdus.Capsule(NvmeCommands.Read(1, 0, 8), 7, sglLength: 8 * 512), fabric.Now);
        Assert.True(raw.Conn.TryTakeStorageRequest(out var request));
        byte[] store = IoTests.Pattern(16 * 512, 5);
        request.LentData = store.AsMemory(512, 8 * 512); // as the memory store's page: no copy into request.Buffer

        raw.Conn.CompleteStorage(request, NvmeStatus.Success);

        Assert.Equal(0, pool.Outstanding); // the slot's own buffer went back at once, unused
        if (gatherSegments == 0)
        {
            var c2h = RawPdus.Split(raw.Conn.PendingOutput.ToArray()).First(p => p.Type == PduType.C2HData);
            Assert.Equal(store.AsSpan(512, 8 * 512).ToArray(), c2h.Bytes.AsSpan(c2h.Pdo, 8 * 512).ToArray());
            return;
        }
        var segments = new ReadOnlyMemory<byte>[4];
        Assert.Equal(3, raw.Conn.BeginSend(segments)); // C2HData header, the lent data in place, CapsuleResp
        Assert.True(System.Runtime.InteropServices.MemoryMarshal.TryGetArray(segments[1], out var lent));
        Assert.Same(store, lent.Array);
        Assert.Equal(512, lent.Offset);
        raw.Conn.EndSend(segments[0].Length + segments[1].Length + segments[2].Length);
        Assert.Equal(0, pool.Outstanding); // nothing foreign was handed to the pool
        Assert.False(raw.Conn.HasPendingOutput);
    }

    [Fact]
    public void Closing_with_unsent_read_data_gives_the_buffers_back()
    {
        var pool = new CountingPool();
        var fabric = new Fabric();
        fabric.AddVolume();
        var admin = fabric.Admin();
        var raw = new RawTarget(fabric, pool, gatherSegments: 4);
        Assert.True(raw.Handshake(1, admin.Cntlid).Status.IsSuccess);
        for (ushort cid = 1; cid <= 3; cid++)
            raw.Conn.Receive(RawPdus.Capsule(NvmeCommands.Read(1, cid, 1), cid, sglLength: 512), fabric.Now);
        while (raw.Conn.TryTakeStorageRequest(out var request)) raw.Conn.CompleteStorage(request, fabric.Storage.Execute(request));
        Assert.Equal(3, pool.Outstanding);
        raw.Conn.OnTransportClosed();
        raw.Conn.Dispose();
        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public void In_place_reads_allocate_nothing_per_command()
    {
        var fabric = new Fabric();
        fabric.AddVolume();
        var admin = fabric.Admin();
        var raw = new RawTarget(fabric, gatherSegments: 8);
        Assert.True(raw.Handshake(1, admin.Cntlid).Status.IsSuccess);
        var read = RawPdus.Capsule(NvmeCommands.Read(1, 0, 8), 9, sglLength: 8 * 512);
        var segments = new ReadOnlyMemory<byte>[8];
        var conn = raw.Conn;
        void Rounds(int n)
        {
            for (int i = 0; i < n; i++)
            {
                conn.Receive(read, fabric.Now);
                while (conn.TryTakeStorageRequest(out var r)) conn.CompleteStorage(r, NvmeStatus.Success);
                while (conn.HasPendingOutput)
                {
                    int count = conn.BeginSend(segments);
                    int sent = 0;
                    for (int s = 0; s < count; s++) sent += segments[s].Length;
                    conn.EndSend(sent);
                }
            }
        }
        AllocationProbe.AssertNoAllocationPerOp(() => Rounds(2_000), opsPerRound: 2_000, what: "an in-place read");
    }

    /// <summary>Connects an I/O queue, writes a pattern, reads it back in several shapes; returns every byte the target sent.</summary>
    private static byte[] ReadSession(bool hdgst, bool ddgst, int gatherSegments, out Fabric fabric, CountingPool? pool = null)
    {
        fabric = new Fabric();
        fabric.AddVolume();
        var admin = fabric.Admin();
        var raw = new RawTarget(fabric, pool, gatherSegments: gatherSegments);
        Assert.True(raw.Handshake(1, admin.Cntlid, hdgst, ddgst).Status.IsSuccess);
        var data = new byte[16 * 512];
        new Random(5).NextBytes(data);
        var r2t = Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.Write(1, 0, 16), 1, sglLength: (uint)data.Length, hdgst: hdgst)));
        Assert.True(Assert.Single(raw.Send(RawPdus.H2CData(1, r2t.Ttag, 0, data, hdgst: hdgst, ddgst: ddgst))).Cqe.Status.IsSuccess);
        // Several reads in one batch, so in-place buffers sit between array bytes; then one alone.
        raw.Send(
            RawPdus.Capsule(NvmeCommands.Read(1, 0, 1), 2, sglLength: 512, hdgst: hdgst),
            RawPdus.Capsule(NvmeCommands.Read(1, 3, 8), 3, sglLength: 8 * 512, hdgst: hdgst),
            RawPdus.Capsule(NvmeCommands.Read(1, 0, 16), 4, sglLength: 16 * 512, hdgst: hdgst));
        raw.Send(RawPdus.Capsule(NvmeCommands.Read(1, 15, 1), 5, sglLength: 512, hdgst: hdgst));
        return raw.Output.ToArray();
    }

    private sealed class CountingPool : IDataBufferPool
    {
        public int Outstanding { get; private set; }

        public Memory<byte> Rent(int length)
        {
            Outstanding++;
            return new byte[length];
        }

        public void Return(Memory<byte> buffer) => Outstanding--;
    }
}
