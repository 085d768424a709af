using System.Buffers.Binary;
using Duroslight.Host;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Wire;
using Xunit;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>One PDU cut out of a byte stream by its PLEN.</summary>
internal sealed record RawPdu(byte[] Bytes)
{
    public PduType Type => (PduType)Bytes[0];
    public PduFlags Flags => (PduFlags)Bytes[1];
    public int Hlen => Bytes[2];
    public int Pdo => Bytes[3];
    public int Plen => BinaryPrimitives.ReadInt32LittleEndian(Bytes.AsSpan(4));
    public CompletionEntry Cqe => CompletionEntry.Read(Bytes.AsSpan(8, 16));
    public TermReqFes Fes => (TermReqFes)BinaryPrimitives.ReadUInt16LittleEndian(Bytes.AsSpan(8));
    public uint Fei => BinaryPrimitives.ReadUInt32LittleEndian(Bytes.AsSpan(10));
    public ushort Cccid => BinaryPrimitives.ReadUInt16LittleEndian(Bytes.AsSpan(8));
    public ushort Ttag => BinaryPrimitives.ReadUInt16LittleEndian(Bytes.AsSpan(10));
    public uint DataOffset => BinaryPrimitives.ReadUInt32LittleEndian(Bytes.AsSpan(12));
    public uint DataLength => BinaryPrimitives.ReadUInt32LittleEndian(Bytes.AsSpan(16));
    public uint U32(int off) => BinaryPrimitives.ReadUInt32LittleEndian(Bytes.AsSpan(off));
}

/// <summary>Builds raw host PDUs (through the protocol's own PduWriter) and splits target output into PDUs.</summary>
internal static class RawPdus
{
    public static byte[] ICReq(bool hdgst = false, bool ddgst = false, uint maxR2T = 0, byte hpda = 0)
    {
        var b = new byte[PduLayout.ICReqSize];
        PduWriter.ICReq(b, hpda, hdgst, ddgst, maxR2T);
        return b;
    }

    public static byte[] ICResp(bool hdgst = false, bool ddgst = false, uint maxH2CData = 128 * 1024, byte cpda = 0, ushort pfv = 0)
    {
        var b = new byte[PduLayout.ICRespSize];
        PduWriter.ICResp(b, cpda, hdgst, ddgst, maxH2CData);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(PduLayout.OffPfv), pfv);
        return b;
    }

    public static byte[] CapsuleResp(ushort cid, NvmeStatus status, ulong result = 0, bool hdgst = false)
    {
        var b = new byte[PduLayout.CapsuleRespHeaderSize + 4];
        int n = PduWriter.CapsuleResp(b, new CompletionEntry(result, 1, 0, cid, status), hdgst);
        return b[..n];
    }

    public static byte[] C2HData(ushort cid, uint offset, ReadOnlySpan<byte> data, PduFlags flags = PduFlags.LastPdu,
        bool hdgst = false, bool ddgst = false)
    {
        var buffer = new byte[PduWriter.MaxHeaderBytes + data.Length + 4];
        int n = PduWriter.C2HDataHeader(buffer, cid, offset, data.Length, flags, hdgst, ddgst);
        data.CopyTo(buffer.AsSpan(n));
        n += data.Length;
        if (ddgst) n += PduWriter.DataDigest(buffer.AsSpan(n), data);
        return buffer[..n];
    }

    public static byte[] R2T(ushort cid, ushort ttag, uint offset, uint length, bool hdgst = false)
    {
        var b = new byte[PduLayout.R2THeaderSize + 4];
        int n = PduWriter.R2T(b, cid, ttag, offset, length, hdgst);
        return b[..n];
    }

    /// <summary>A CapsuleCmd; SGL defaults to in-capsule for data, transport data block otherwise.</summary>
    public static byte[] Capsule(NvmeCommand c, ushort cid, ReadOnlySpan<byte> inCapsule = default, byte? sglType = null,
        uint? sglLength = null, bool hdgst = false, bool ddgst = false)
    {
        Span<byte> sqe = stackalloc byte[SubmissionEntry.Size];
        byte type = sglType ?? (inCapsule.Length > 0 ? SglTypes.InCapsuleData : SglTypes.TransportDataBlock);
        SubmissionEntryWriter.Write(sqe, c.Opcode, cid, c.Nsid, type, sglLength ?? (uint)inCapsule.Length,
            c.Cdw10, c.Cdw11, c.Cdw12, c.Cdw13, c.Cdw14, c.Cdw15);
        var buffer = new byte[PduWriter.MaxHeaderBytes + inCapsule.Length + 4];
        int n = PduWriter.CapsuleCmdHeader(buffer, sqe, inCapsule.Length, hdgst, ddgst);
        inCapsule.CopyTo(buffer.AsSpan(n));
        n += inCapsule.Length;
        if (ddgst && inCapsule.Length > 0) n += PduWriter.DataDigest(buffer.AsSpan(n), inCapsule);
        return buffer[..n];
    }

    public static byte[] H2CData(ushort cid, ushort ttag, uint offset, ReadOnlySpan<byte> data, bool last = true,
        bool hdgst = false, bool ddgst = false)
    {
        var buffer = new byte[PduWriter.MaxHeaderBytes + data.Length + 4];
        int n = PduWriter.H2CDataHeader(buffer, cid, ttag, offset, data.Length, last, hdgst, ddgst);
        data.CopyTo(buffer.AsSpan(n));
        n += data.Length;
        if (ddgst) n += PduWriter.DataDigest(buffer.AsSpan(n), data);
        return buffer[..n];
    }

    /// <summary>Splits a byte stream into PDUs; asserts it ends on a PDU boundary.</summary>
    public static List<RawPdu> Split(ReadOnlySpan<byte> stream)
    {
        var list = new List<RawPdu>();
        while (!stream.IsEmpty)
        {
            Assert.True(stream.Length >= PduLayout.CommonHeaderSize, "truncated common header");
            int plen = BinaryPrimitives.ReadInt32LittleEndian(stream[PduLayout.OffPlen..]);
            Assert.InRange(plen, PduLayout.CommonHeaderSize, stream.Length);
            list.Add(new RawPdu(stream[..plen].ToArray()));
            stream = stream[plen..];
        }
        return list;
    }

    /// <summary>A PDU a target may send, with a consistent length for its flags, non-empty data and a correct header digest.</summary>
    public static void AssertWellFormedTargetPdu(RawPdu p)
    {
        Assert.Contains(p.Type, (PduType[])[PduType.ICResp, PduType.C2HTermReq, PduType.CapsuleResp, PduType.C2HData, PduType.R2T]);
        Assert.Equal(PduLayout.HeaderLength(p.Type), p.Hlen);
        int hd = (p.Flags & PduFlags.HeaderDigest) != 0 ? PduLayout.DigestSize : 0;
        int dd = (p.Flags & PduFlags.DataDigest) != 0 ? PduLayout.DigestSize : 0;
        if (hd > 0) Assert.Equal(Crc32C.Compute(p.Bytes.AsSpan(0, p.Hlen)), BinaryPrimitives.ReadUInt32LittleEndian(p.Bytes.AsSpan(p.Hlen)));
        switch (p.Type)
        {
            case PduType.ICResp:
                Assert.Equal(PduLayout.ICRespSize, p.Plen);
                break;
            case PduType.CapsuleResp:
                Assert.Equal(p.Hlen + hd, p.Plen);
                break;
            case PduType.R2T:
                Assert.Equal(p.Hlen + hd, p.Plen);
                Assert.NotEqual(0u, p.DataLength);
                break;
            case PduType.C2HData:
                Assert.NotEqual(0u, p.DataLength);
                Assert.True(p.Pdo >= p.Hlen + hd);
                Assert.Equal(p.Pdo + (int)p.DataLength + dd, p.Plen);
                if (dd > 0) Assert.Equal(Crc32C.Compute(p.Bytes.AsSpan(p.Pdo, (int)p.DataLength)), BinaryPrimitives.ReadUInt32LittleEndian(p.Bytes.AsSpan(p.Plen - 4)));
                break;
            default:
                Assert.InRange(p.Plen, p.Hlen, p.Hlen + PduLayout.TermReqMaxData);
                break;
        }
    }

    /// <summary>Splits without asserting; null when the stream is not a whole number of sane PDUs.</summary>
    public static List<RawPdu>? TrySplit(ReadOnlySpan<byte> stream)
    {
        var list = new List<RawPdu>();
        while (!stream.IsEmpty)
        {
            if (stream.Length < PduLayout.CommonHeaderSize) return null;
            int plen = BinaryPrimitives.ReadInt32LittleEndian(stream[PduLayout.OffPlen..]);
            if (plen < PduLayout.CommonHeaderSize || plen > stream.Length) return null;
            list.Add(new RawPdu(stream[..plen].ToArray()));
            stream = stream[plen..];
        }
        return list;
    }
}

/// <summary>A TargetConnection driven by hand-made bytes: for malformed-PDU and conflict tests.</summary>
internal sealed class RawTarget
{
    private readonly Fabric _fabric;
    private readonly ReadOnlyMemory<byte>[] _segments;
    private int _consumed;

    /// <param name="gatherSegments">When above 0, read data is sent in place and drained with gathering sends of at most this many segments.</param>
    public RawTarget(Fabric fabric, IDataBufferPool? buffers = null, HostDataBudget? budget = null, int gatherSegments = 0)
    {
        _fabric = fabric;
        _segments = new ReadOnlyMemory<byte>[gatherSegments];
        var context = new ConnectionContext(0, "raw")
        {
            Buffers = buffers ?? ArrayDataBufferPool.Instance,
            HostData = budget ?? HostDataBudget.Unlimited(),
            SendReadDataInPlace = gatherSegments > 0,
        };
        Conn = new TargetConnection(fabric.Target, context, Signal);
    }

    public TargetConnection Conn { get; }
    public TestSignal Signal { get; } = new();
    public MemoryStream Output { get; } = new();
    public bool HoldStorage { get; set; }
    public List<StorageRequest> Held { get; } = [];

    /// <summary>Feeds bytes, runs storage, drains output; returns the PDUs produced since the last call.</summary>
    public List<RawPdu> Send(params byte[][] pdus)
    {
        foreach (var p in pdus) Conn.Receive(p, _fabric.Now);
        return Drain();
    }

    public List<RawPdu> Drain()
    {
        while (Conn.TryTakeStorageRequest(out var r))
        {
            if (HoldStorage) Held.Add(r);
            else Conn.CompleteStorage(r, _fabric.Storage.Execute(r));
        }
        Conn.Poll(_fabric.Now);
        if (_segments.Length > 0) SendGathered();
        var pending = Conn.PendingOutput;
        Output.Write(pending.Span);
        Conn.ConsumeOutput(pending.Length);
        var all = Output.ToArray();
        var fresh = RawPdus.Split(all.AsSpan(_consumed));
        _consumed = all.Length;
        return fresh;
    }

    /// <summary>Sends as a gathering driver does: a few segments per send, until nothing is pending.</summary>
    private void SendGathered()
    {
        while (Conn.HasPendingOutput)
        {
            int count = Conn.BeginSend(_segments);
            int sent = 0;
            for (int i = 0; i < count; i++)
            {
                Output.Write(_segments[i].Span);
                sent += _segments[i].Length;
            }
            Conn.EndSend(sent);
        }
    }

    public void CompleteHeld()
    {
        foreach (var r in Held) Conn.CompleteStorage(r, _fabric.Storage.Execute(r));
        Held.Clear();
    }

    /// <summary>ICReq, Connect (admin, or I/O with <paramref name="cntlid"/>); returns the Connect CQE.</summary>
    public CompletionEntry Handshake(ushort qid = 0, ushort cntlid = ConnectData.DynamicCntlid, bool hdgst = false,
        bool ddgst = false, ushort sqsize = 31, byte cattr = 0)
    {
        var icresp = Assert.Single(Send(RawPdus.ICReq(hdgst, ddgst)));
        Assert.Equal(PduType.ICResp, icresp.Type);
        var data = ConnectData.Create(HostIds.Default, cntlid, _fabric.SubNqn, Fabric.HostNqn);
        var resp = Assert.Single(Send(RawPdus.Capsule(NvmeCommands.Connect(qid, sqsize, cattr), 0x100, data, hdgst: hdgst, ddgst: ddgst)));
        return resp.Cqe;
    }
}
