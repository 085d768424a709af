namespace Duroslight.Protocol.Wire;

/// <summary>NVMe/TCP PDU types (NVMe/TCP transport spec, "PDU Type").</summary>
public enum PduType : byte
{
    ICReq = 0x00,
    ICResp = 0x01,
    H2CTermReq = 0x02,
    C2HTermReq = 0x03,
    CapsuleCmd = 0x04,
    CapsuleResp = 0x05,
    H2CData = 0x06,
    C2HData = 0x07,
    R2T = 0x09,
}

/// <summary>PDU header FLAGS byte.</summary>
[Flags]
public enum PduFlags : byte
{
    None = 0,
    HeaderDigest = 0x01,
    DataDigest = 0x02,
    /// <summary>Last H2CData/C2HData PDU of a transfer.</summary>
    LastPdu = 0x04,
    /// <summary>C2HData only: the command succeeded and no CapsuleResp follows (allowed only without SQ flow control).</summary>
    Success = 0x08,
}

/// <summary>Fatal Error Status of a TermReq PDU.</summary>
public enum TermReqFes : ushort
{
    InvalidPduHeaderField = 0x01,
    PduSequenceError = 0x02,
    HeaderDigestError = 0x03,
    DataTransferOutOfRange = 0x04,
    DataTransferLimitExceeded = 0x05,
    UnsupportedParameter = 0x06,
}
