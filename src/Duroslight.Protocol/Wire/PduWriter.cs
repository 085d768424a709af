using System.Buffers.Binary;
using Duroslight.Protocol.Nvme;

namespace Duroslight.Protocol.Wire;

/// <summary>
/// Encoders for every NVMe/TCP PDU. Each writes into a caller-provided span and returns the bytes written.
/// Data PDUs are written header-only: the caller appends the data and, when negotiated, its digest.
/// </summary>
public static class PduWriter
{
    /// <summary>Largest header any encoder writes: an ICReq/ICResp, or a CapsuleCmd with digest and padding.</summary>
    public const int MaxHeaderBytes = 256;

    public static void WriteCommonHeader(Span<byte> d, PduType type, PduFlags flags, int hlen, int pdo, int plen)
    {
        d[PduLayout.OffType] = (byte)type;
        d[PduLayout.OffFlags] = (byte)flags;
        d[PduLayout.OffHlen] = (byte)hlen;
        d[PduLayout.OffPdo] = (byte)pdo;
        BinaryPrimitives.WriteInt32LittleEndian(d[PduLayout.OffPlen..], plen);
    }

    public static int ICReq(Span<byte> d, byte hpda, bool headerDigest, bool dataDigest, uint maxR2T) =>
        Initialization(d, PduType.ICReq, hpda, headerDigest, dataDigest, maxR2T);

    public static int ICResp(Span<byte> d, byte cpda, bool headerDigest, bool dataDigest, uint maxH2CData) =>
        Initialization(d, PduType.ICResp, cpda, headerDigest, dataDigest, maxH2CData);

    public static int CapsuleResp(Span<byte> d, in CompletionEntry cqe, bool headerDigest)
    {
        int hlen = PduLayout.CapsuleRespHeaderSize;
        int total = hlen + DigestLength(headerDigest);
        WriteCommonHeader(d, PduType.CapsuleResp, HeaderFlag(headerDigest), hlen, 0, total);
        cqe.WriteTo(d[PduLayout.CommonHeaderSize..]);
        return FinishHeader(d, hlen, headerDigest);
    }

    /// <summary>CapsuleCmd header (SQE) for <paramref name="inCapsuleData"/> bytes of data that the caller appends.</summary>
    public static int CapsuleCmdHeader(Span<byte> d, ReadOnlySpan<byte> sqe, int inCapsuleData, bool headerDigest, bool dataDigest)
    {
        int hlen = PduLayout.CapsuleCmdHeaderSize;
        int headerTotal = hlen + DigestLength(headerDigest);
        bool ddgst = dataDigest && inCapsuleData > 0;
        int plen = headerTotal + inCapsuleData + DigestLength(ddgst);
        var flags = HeaderFlag(headerDigest) | (ddgst ? PduFlags.DataDigest : PduFlags.None);
        WriteCommonHeader(d, PduType.CapsuleCmd, flags, hlen, inCapsuleData > 0 ? headerTotal : 0, plen);
        sqe[..SubmissionEntry.Size].CopyTo(d[PduLayout.CommonHeaderSize..]);
        return FinishHeader(d, hlen, headerDigest);
    }

    /// <summary>C2HData header; <paramref name="dataAlignment"/> is the host's HPDA in bytes ((HPDA+1)*4), or 0.</summary>
    public static int C2HDataHeader(Span<byte> d, ushort cccid, uint dataOffset, int dataLength, PduFlags flags,
        bool headerDigest, bool dataDigest, int dataAlignment = 0) =>
        DataHeader(d, PduType.C2HData, cccid, 0, dataOffset, dataLength, flags, headerDigest, dataDigest, dataAlignment);

    public static int H2CDataHeader(Span<byte> d, ushort cccid, ushort ttag, uint dataOffset, int dataLength, bool last,
        bool headerDigest, bool dataDigest) =>
        DataHeader(d, PduType.H2CData, cccid, ttag, dataOffset, dataLength, last ? PduFlags.LastPdu : PduFlags.None,
            headerDigest, dataDigest, 0);

    public static int R2T(Span<byte> d, ushort cccid, ushort ttag, uint offset, uint length, bool headerDigest)
    {
        int hlen = PduLayout.R2THeaderSize;
        WriteCommonHeader(d, PduType.R2T, HeaderFlag(headerDigest), hlen, 0, hlen + DigestLength(headerDigest));
        WriteTransferFields(d, cccid, ttag, offset, length);
        return FinishHeader(d, hlen, headerDigest);
    }

    /// <summary>H2CTermReq or C2HTermReq carrying up to 128 bytes of the offending PDU header.</summary>
    public static int TermReq(Span<byte> d, PduType type, TermReqFes fes, uint fei, ReadOnlySpan<byte> offendingHeader)
    {
        var copied = offendingHeader.Length > PduLayout.TermReqMaxData
            ? offendingHeader[..PduLayout.TermReqMaxData] : offendingHeader;
        int hlen = PduLayout.TermReqHeaderSize;
        d[..hlen].Clear();
        WriteCommonHeader(d, type, PduFlags.None, hlen, copied.Length > 0 ? hlen : 0, hlen + copied.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(d[PduLayout.OffFes..], (ushort)fes);
        BinaryPrimitives.WriteUInt32LittleEndian(d[PduLayout.OffFei..], fei);
        copied.CopyTo(d[hlen..]);
        return hlen + copied.Length;
    }

    /// <summary>Appends the data digest of <paramref name="data"/> at <paramref name="d"/>.</summary>
    public static int DataDigest(Span<byte> d, ReadOnlySpan<byte> data)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(d, Crc32C.Compute(data));
        return PduLayout.DigestSize;
    }

    public static int DigestLength(bool enabled) => enabled ? PduLayout.DigestSize : 0;

    private static int DataHeader(Span<byte> d, PduType type, ushort cccid, ushort ttag, uint dataOffset, int dataLength,
        PduFlags flags, bool headerDigest, bool dataDigest, int dataAlignment)
    {
        int hlen = PduLayout.DataHeaderSize;
        int pdo = hlen + DigestLength(headerDigest);
        if (dataAlignment > 0) pdo = (pdo + dataAlignment - 1) / dataAlignment * dataAlignment;
        bool ddgst = dataDigest && dataLength > 0;
        int plen = pdo + dataLength + DigestLength(ddgst);
        flags |= HeaderFlag(headerDigest) | (ddgst ? PduFlags.DataDigest : PduFlags.None);
        WriteCommonHeader(d, type, flags, hlen, pdo, plen);
        WriteTransferFields(d, cccid, ttag, dataOffset, (uint)dataLength);
        int written = FinishHeader(d, hlen, headerDigest);
        d[written..pdo].Clear();
        return pdo;
    }

    private static void WriteTransferFields(Span<byte> d, ushort cccid, ushort ttag, uint offset, uint length)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(d[PduLayout.OffCccid..], cccid);
        BinaryPrimitives.WriteUInt16LittleEndian(d[PduLayout.OffTtag..], ttag);
        BinaryPrimitives.WriteUInt32LittleEndian(d[PduLayout.OffDataOffset..], offset);
        BinaryPrimitives.WriteUInt32LittleEndian(d[PduLayout.OffDataLength..], length);
        BinaryPrimitives.WriteUInt32LittleEndian(d[20..], 0);
    }

    private static int FinishHeader(Span<byte> d, int hlen, bool headerDigest)
    {
        if (!headerDigest) return hlen;
        BinaryPrimitives.WriteUInt32LittleEndian(d[hlen..], Crc32C.Compute(d[..hlen]));
        return hlen + PduLayout.DigestSize;
    }

    /// <summary>ICReq and ICResp share one layout: PFV 0, HPDA/CPDA, digest flags, MAXR2T/MAXH2CDATA.</summary>
    private static int Initialization(Span<byte> d, PduType type, byte pda, bool headerDigest, bool dataDigest, uint limit)
    {
        d[..PduLayout.ICReqSize].Clear();
        WriteCommonHeader(d, type, PduFlags.None, PduLayout.ICReqSize, 0, PduLayout.ICReqSize);
        d[PduLayout.OffHpdaOrCpda] = pda;
        d[PduLayout.OffDigest] = DigestByte(headerDigest, dataDigest);
        BinaryPrimitives.WriteUInt32LittleEndian(d[PduLayout.OffMaxR2TOrMaxH2CData..], limit);
        return PduLayout.ICReqSize;
    }

    private static PduFlags HeaderFlag(bool headerDigest) => headerDigest ? PduFlags.HeaderDigest : PduFlags.None;

    private static byte DigestByte(bool headerDigest, bool dataDigest) =>
        (byte)((headerDigest ? 1 : 0) | (dataDigest ? 2 : 0));
}
