using System.Buffers.Binary;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Wire;

namespace Duroslight.Host;

/// <summary>PDUs from the target: ICResp, CapsuleResp, C2HData, R2T and C2HTermReq.</summary>
public sealed partial class HostQueue
{
    private const int MinMaxH2CData = 4096;
    private const int OffCqe = PduLayout.CommonHeaderSize;
    private const int OffCqeCid = OffCqe + 12;

    private HostCommand? _receiving;
    private int _receivingLength;
    private PduFlags _receivingFlags;
    private string? _failureDetail;

    HeaderVerdict IPduSink.OnHeader(ReadOnlySpan<byte> header, int dataLength, out Memory<byte> destination, out FramingError error)
    {
        destination = default;
        error = default;
        _receiving = null;
        var type = (PduType)header[PduLayout.OffType];
        return type switch
        {
            PduType.ICResp => OnICResp(header, out error),
            PduType.C2HTermReq => OnTermReq(header),
            PduType.CapsuleResp when State == HostQueueState.Ready => OnCapsuleResp(header, out error),
            PduType.C2HData when State == HostQueueState.Ready => OnC2HDataHeader(header, dataLength, out destination, out error),
            PduType.R2T when State == HostQueueState.Ready => OnR2T(header, out error),
            _ => Fatal(TermReqFes.PduSequenceError, 0, $"{type} before the ICResp", out error),
        };
    }

    HeaderVerdict IPduSink.OnPduComplete(bool dataDigestOk, out FramingError error)
    {
        error = default;
        var cmd = _receiving;
        _receiving = null;
        if (cmd is null) return HeaderVerdict.Accept;
        cmd.BytesTransferred += _receivingLength;
        if (!dataDigestOk) cmd.DataDigestFailed = true;
        // SUCCESS: the command is done and no CapsuleResp follows (SQ flow control disabled).
        if ((_receivingFlags & PduFlags.Success) != 0)
        {
            var status = cmd.DataDigestFailed ? NvmeStatus.DataTransferError : NvmeStatus.Success;
            Complete(cmd, new CompletionEntry(0, 0, QueueId, cmd.Cid, status));
        }
        return HeaderVerdict.Accept;
    }

    /// <summary>Checks what the Linux host checks: PFV 0, CPDA 0 (we never pad), the digests we asked for, MAXH2CDATA.</summary>
    private HeaderVerdict OnICResp(ReadOnlySpan<byte> h, out FramingError error)
    {
        error = default;
        if (State != HostQueueState.AwaitingICResp) return Fatal(TermReqFes.PduSequenceError, 0, "unexpected ICResp", out error);
        ushort pfv = BinaryPrimitives.ReadUInt16LittleEndian(h[PduLayout.OffPfv..]);
        byte cpda = h[PduLayout.OffHpdaOrCpda];
        byte digest = h[PduLayout.OffDigest];
        uint maxH2CData = BinaryPrimitives.ReadUInt32LittleEndian(h[PduLayout.OffMaxR2TOrMaxH2CData..]);
        byte asked = (byte)((Options.HeaderDigest ? DigestHeader : 0) | (Options.DataDigest ? DigestData : 0));
        if (pfv != 0) return Fatal(TermReqFes.UnsupportedParameter, PduLayout.OffPfv, $"ICResp PFV {pfv}", out error);
        if (cpda != 0) return Fatal(TermReqFes.UnsupportedParameter, PduLayout.OffHpdaOrCpda, $"ICResp CPDA {cpda}", out error);
        if (digest != asked)
            return Fatal(TermReqFes.InvalidPduHeaderField, PduLayout.OffDigest, $"ICResp digests {digest} but asked {asked}", out error);
        if (maxH2CData < MinMaxH2CData || maxH2CData % 4 != 0 || maxH2CData > int.MaxValue)
            return Fatal(TermReqFes.InvalidPduHeaderField, PduLayout.OffMaxR2TOrMaxH2CData, $"ICResp MAXH2CDATA {maxH2CData}", out error);
        MaxH2CData = (int)maxH2CData;
        _framer.HeaderDigest = Options.HeaderDigest;
        _framer.DataDigest = Options.DataDigest;
        State = HostQueueState.Ready;
        return HeaderVerdict.Accept;
    }

    private HeaderVerdict OnTermReq(ReadOnlySpan<byte> h)
    {
        var fes = (TermReqFes)BinaryPrimitives.ReadUInt16LittleEndian(h[PduLayout.OffFes..]);
        uint fei = BinaryPrimitives.ReadUInt32LittleEndian(h[PduLayout.OffFei..]);
        PeerTermination = fes;
        _failureDetail = $"target sent C2HTermReq {fes} (FEI {fei})";
        return HeaderVerdict.Close;
    }

    private HeaderVerdict OnCapsuleResp(ReadOnlySpan<byte> h, out FramingError error)
    {
        error = default;
        var cqe = CompletionEntry.Read(h.Slice(OffCqe, CompletionEntry.Size));
        if (!TryFindOutstanding(cqe.CommandId, out var cmd))
            return Fatal(TermReqFes.InvalidPduHeaderField, OffCqeCid, $"CapsuleResp for unknown CID {cqe.CommandId:X4}h", out error);
        // A bad C2H data digest fails the command even if the target reported success (as Linux: data transfer error).
        if (cmd.DataDigestFailed && cqe.Status.IsSuccess) cqe = cqe with { Status = NvmeStatus.DataTransferError };
        Complete(cmd, cqe);
        return HeaderVerdict.Accept;
    }

    private HeaderVerdict OnC2HDataHeader(ReadOnlySpan<byte> h, int dataLength, out Memory<byte> destination, out FramingError error)
    {
        destination = default;
        var flags = (PduFlags)h[PduLayout.OffFlags];
        ushort cccid = BinaryPrimitives.ReadUInt16LittleEndian(h[PduLayout.OffCccid..]);
        uint datao = BinaryPrimitives.ReadUInt32LittleEndian(h[PduLayout.OffDataOffset..]);
        uint datal = BinaryPrimitives.ReadUInt32LittleEndian(h[PduLayout.OffDataLength..]);
        if (!TryFindOutstanding(cccid, out var cmd) || cmd.Direction != DataDirection.ControllerToHost)
            return Fatal(TermReqFes.InvalidPduHeaderField, PduLayout.OffCccid, $"C2HData for CID {cccid:X4}h", out error);
        if (datal == 0 || datal != (uint)dataLength)
            return Fatal(TermReqFes.InvalidPduHeaderField, PduLayout.OffDataLength, $"C2HData DATAL {datal} vs {dataLength} bytes", out error);
        // Data arrives in order and within the buffer the command described.
        if (datao != (uint)cmd.BytesTransferred || datao + (ulong)datal > (ulong)cmd.Data.Length)
            return Fatal(TermReqFes.DataTransferOutOfRange, PduLayout.OffDataOffset, $"C2HData DATAO {datao} DATAL {datal}", out error);
        if ((flags & PduFlags.Success) != 0 && (flags & PduFlags.LastPdu) == 0)
            return Fatal(TermReqFes.InvalidPduHeaderField, PduLayout.OffFlags, "C2HData SUCCESS without LAST_PDU", out error);
        error = default;
        destination = cmd.Data.Slice((int)datao, (int)datal);
        _receiving = cmd;
        _receivingLength = (int)datal;
        _receivingFlags = flags;
        return HeaderVerdict.Accept;
    }

    /// <summary>Answers an R2T at once with H2CData PDUs of at most MAXH2CDATA bytes, LAST_PDU on the final one.</summary>
    private HeaderVerdict OnR2T(ReadOnlySpan<byte> h, out FramingError error)
    {
        ushort cccid = BinaryPrimitives.ReadUInt16LittleEndian(h[PduLayout.OffCccid..]);
        ushort ttag = BinaryPrimitives.ReadUInt16LittleEndian(h[PduLayout.OffTtag..]);
        uint r2to = BinaryPrimitives.ReadUInt32LittleEndian(h[PduLayout.OffDataOffset..]);
        uint r2tl = BinaryPrimitives.ReadUInt32LittleEndian(h[PduLayout.OffDataLength..]);
        if (!TryFindOutstanding(cccid, out var cmd) || cmd.Direction != DataDirection.HostToController || cmd.InCapsule)
            return Fatal(TermReqFes.InvalidPduHeaderField, PduLayout.OffCccid, $"R2T for CID {cccid:X4}h", out error);
        // R2Ts ask for the data in order, each range once.
        if (r2tl == 0 || r2to != (uint)cmd.BytesTransferred || r2to + (ulong)r2tl > (ulong)cmd.Data.Length)
            return Fatal(TermReqFes.DataTransferOutOfRange, PduLayout.OffDataOffset, $"R2T R2TO {r2to} R2TL {r2tl}", out error);
        error = default;
        SendH2CData(cmd, ttag, (int)r2to, (int)r2tl);
        cmd.BytesTransferred = (int)(r2to + r2tl);
        return HeaderVerdict.Accept;
    }

    private void SendH2CData(HostCommand cmd, ushort ttag, int offset, int length)
    {
        int max = Options.MaxH2CDataPdu > 0 ? Math.Min(Options.MaxH2CDataPdu, MaxH2CData) : MaxH2CData;
        int end = offset + length;
        while (offset < end)
        {
            int chunk = Math.Min(max, end - offset);
            var data = cmd.Data.Span.Slice(offset, chunk);
            var span = _out.GetSpan(PduWriter.MaxHeaderBytes + chunk + PduLayout.DigestSize);
            int n = PduWriter.H2CDataHeader(span, cmd.Cid, ttag, (uint)offset, chunk, offset + chunk == end, HeaderDigest, DataDigest);
            data.CopyTo(span[n..]);
            n += chunk;
            if (DataDigest) n += PduWriter.DataDigest(span[n..], data);
            _out.Advance(n);
            offset += chunk;
        }
    }

    private HeaderVerdict Fatal(TermReqFes fes, uint fei, string detail, out FramingError error)
    {
        _failureDetail = detail;
        error = new FramingError(fes, fei);
        return HeaderVerdict.Fatal;
    }
}
