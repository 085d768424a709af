using System.Buffers.Binary;
using Duroslight.Host;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Wire;

namespace Duroslight.Bench;

/// <summary>
/// An admin queue and one I/O queue of a <see cref="TargetConnection"/> pair, connected and enabled in memory,
/// with storage requests completed at once: what is left to measure is the engine itself.
/// </summary>
internal sealed class InMemoryQueue
{
    private sealed class NoSignal : IConnectionSignal
    {
        public void Wake() { }
    }

    public const string HostNqn = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001";

    public InMemoryQueue(long volumeBlocks)
    {
        Target = new Target(new TargetOptions());
        Target.AddNamespace(new NamespaceInfo(1, Guid.NewGuid(), volumeBlocks, 4096));
        Admin = new TargetConnection(Target, new ConnectionContext(0, "bench"), new NoSignal());
        Initialise(Admin);
        ushort cntlid = Connect(Admin, qid: 0, cntlid: 0xFFFF);
        Send(Admin, Capsule(SqeBytes(AdminOpcode.Fabrics, 2, 0, SglTypes.TransportDataBlock, 0, cdw10: FabricsType.PropertySet,
            cdw11: PropertyOffset.Cc, cdw12: 1 | 6 << 16 | 4 << 20, fabrics: true), []));
        Io = new TargetConnection(Target, new ConnectionContext(0, "bench"), new NoSignal());
        Initialise(Io);
        Connect(Io, qid: 1, cntlid);
        IoInPlace = new TargetConnection(Target, new ConnectionContext(0, "bench") { SendReadDataInPlace = true }, new NoSignal());
        Initialise(IoInPlace);
        Connect(IoInPlace, qid: 2, cntlid);
    }

    /// <summary>An I/O queue whose read data is sent in place, drained with gathering sends (<see cref="SendGathered"/>).</summary>
    public TargetConnection IoInPlace { get; }

    private static readonly ReadOnlyMemory<byte>[] Segments = new ReadOnlyMemory<byte>[64];

    /// <summary>As <see cref="Send"/>, for <see cref="IoInPlace"/>: the output goes out as gathered segments.</summary>
    public static long SendGathered(TargetConnection c, ReadOnlySpan<byte> bytes)
    {
        c.Receive(bytes, 0);
        while (c.TryTakeStorageRequest(out var r)) c.CompleteStorage(r, NvmeStatus.Success);
        long total = 0;
        while (c.HasPendingOutput)
        {
            int count = c.BeginSend(Segments);
            int sent = 0;
            for (int i = 0; i < count; i++) sent += Segments[i].Length;
            c.EndSend(sent);
            total += sent;
        }
        return total;
    }

    public Target Target { get; }
    public TargetConnection Admin { get; }
    public TargetConnection Io { get; }

    /// <summary>Feeds bytes, completes every storage request successfully, and discards the output.</summary>
    public static int Send(TargetConnection c, ReadOnlySpan<byte> bytes)
    {
        c.Receive(bytes, 0);
        while (c.TryTakeStorageRequest(out var r)) c.CompleteStorage(r, NvmeStatus.Success);
        int n = c.PendingOutput.Length;
        c.ConsumeOutput(n);
        return n;
    }

    public static byte[] SqeBytes(byte opcode, ushort cid, uint nsid, byte sglType, uint sglLength,
        uint cdw10 = 0, uint cdw11 = 0, uint cdw12 = 0, bool fabrics = false)
    {
        var sqe = new byte[SubmissionEntry.Size];
        SubmissionEntryWriter.Write(sqe, opcode, cid, nsid, sglType, sglLength, cdw10, cdw11, cdw12);
        if (fabrics) sqe[4] = (byte)cdw10; // FCTYPE lives at byte 4; CDW10 is reserved for Property Set/Get.
        if (fabrics) BinaryPrimitives.WriteUInt32LittleEndian(sqe.AsSpan(40), cdw10 == FabricsType.PropertySet ? 0 : cdw10);
        return sqe;
    }

    public static byte[] Capsule(byte[] sqe, ReadOnlySpan<byte> data)
    {
        var pdu = new byte[PduLayout.CapsuleCmdHeaderSize + data.Length];
        int n = PduWriter.CapsuleCmdHeader(pdu, sqe, data.Length, false, false);
        data.CopyTo(pdu.AsSpan(n));
        return pdu;
    }

    private static void Initialise(TargetConnection c)
    {
        var icreq = new byte[PduLayout.ICReqSize];
        PduWriter.ICReq(icreq, 0, false, false, 0);
        Send(c, icreq);
    }

    private static ushort Connect(TargetConnection c, ushort qid, ushort cntlid)
    {
        var data = ConnectData.Create(Guid.NewGuid(), cntlid, TargetOptions.DefaultSubsystemNqn, HostNqn);
        var sqe = SqeBytes(AdminOpcode.Fabrics, 1, 0, SglTypes.InCapsuleData, 1024, cdw11: 127, fabrics: true);
        sqe[4] = FabricsType.Connect;
        BinaryPrimitives.WriteUInt32LittleEndian(sqe.AsSpan(40), (uint)qid << 16);
        c.Receive(Capsule(sqe, data), 0);
        var response = c.PendingOutput.Span;
        var cqe = CompletionEntry.Read(response[PduLayout.CommonHeaderSize..]);
        c.ConsumeOutput(response.Length);
        if (!cqe.Status.IsSuccess) throw new InvalidOperationException($"connect failed: {cqe.Status}");
        return (ushort)cqe.Result;
    }
}
