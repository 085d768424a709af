namespace Duroslight.Protocol.Wire;

/// <summary>
/// Byte offsets and sizes of NVMe/TCP PDUs (NVMe/TCP transport spec 1.0, section 3.6). Every PDU starts with the
/// 8-byte common header: PDU-type, FLAGS, HLEN, PDO, PLEN (32-bit LE).
/// </summary>
public static class PduLayout
{
    public const int CommonHeaderSize = 8;
    public const int DigestSize = 4;

    public const int OffType = 0;
    public const int OffFlags = 1;
    public const int OffHlen = 2;
    public const int OffPdo = 3;
    public const int OffPlen = 4;

    public const int ICReqSize = 128;
    public const int ICRespSize = 128;
    public const int CapsuleCmdHeaderSize = 72;
    public const int CapsuleRespHeaderSize = 24;
    public const int DataHeaderSize = 24;
    public const int R2THeaderSize = 24;
    public const int TermReqHeaderSize = 24;

    /// <summary>A TermReq carries at most this many bytes of the offending PDU header (max TermReq PDU is 152 bytes).</summary>
    public const int TermReqMaxData = 128;

    // ICReq / ICResp.
    public const int OffPfv = 8;
    public const int OffHpdaOrCpda = 10;
    public const int OffDigest = 11;
    public const int OffMaxR2TOrMaxH2CData = 12;

    // H2CData / C2HData / R2T.
    public const int OffCccid = 8;
    public const int OffTtag = 10;
    public const int OffDataOffset = 12;
    public const int OffDataLength = 16;

    // TermReq.
    public const int OffFes = 8;
    public const int OffFei = 10;

    /// <summary>The header length (HLEN) the spec fixes for each PDU type; 0 for unknown types.</summary>
    public static int HeaderLength(PduType type) => type switch
    {
        PduType.ICReq or PduType.ICResp => ICReqSize,
        PduType.CapsuleCmd => CapsuleCmdHeaderSize,
        PduType.CapsuleResp => CapsuleRespHeaderSize,
        PduType.H2CData or PduType.C2HData or PduType.R2T => DataHeaderSize,
        PduType.H2CTermReq or PduType.C2HTermReq => TermReqHeaderSize,
        _ => 0,
    };

    /// <summary>Whether a PDU type may carry a header digest (ICReq/ICResp and TermReqs never do).</summary>
    public static bool MayCarryHeaderDigest(PduType type) =>
        type is PduType.CapsuleCmd or PduType.CapsuleResp or PduType.H2CData or PduType.C2HData or PduType.R2T;

    /// <summary>Whether a PDU type may carry data with a data digest.</summary>
    public static bool MayCarryDataDigest(PduType type) =>
        type is PduType.CapsuleCmd or PduType.H2CData or PduType.C2HData;

    /// <summary>The name of the header field at byte <paramref name="offset"/> of a PDU (what a TermReq's FEI points at), for logs.</summary>
    public static string FieldName(PduType type, uint offset) => (type, offset) switch
    {
        (_, OffType) => "PDU-TYPE",
        (_, OffFlags) => "FLAGS",
        (_, OffHlen) => "HLEN",
        (_, OffPdo) => "PDO",
        (_, OffPlen) => "PLEN",
        (PduType.ICReq, OffPfv) => "PFV",
        (PduType.ICReq, OffHpdaOrCpda) => "HPDA",
        (PduType.ICReq, OffDigest) => "DGST",
        (PduType.ICReq, OffMaxR2TOrMaxH2CData) => "MAXR2T",
        (PduType.H2CData, OffCccid) => "CCCID",
        (PduType.H2CData, OffTtag) => "TTAG",
        (PduType.H2CData, OffDataOffset) => "DATAO",
        (PduType.H2CData, OffDataLength) => "DATAL",
        _ => "byte " + offset.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}
