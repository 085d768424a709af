using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Wire;

namespace Duroslight.Host;

/// <summary>A command completed with an NVMe error status.</summary>
public class NvmeException : Exception
{
    public NvmeException(NvmeStatus status, string message) : base($"{message}: {status}") => Status = status;

    public NvmeStatus Status { get; }
}

/// <summary>
/// A Fabrics Connect was refused. <see cref="Result"/> is the response DW0: for Connect Invalid Parameters /
/// Invalid Host, IATTR (bit 16: 1 = the offset is in the Connect data, 0 = in the SQE) and IPO (bits 15:0).
/// </summary>
public sealed class NvmeConnectException(NvmeStatus status, ulong result, string message)
    : NvmeException(status, message)
{
    public ulong Result { get; } = result;

    public bool InvalidParameterInData => (Result & (1u << 16)) != 0;

    public ushort InvalidParameterOffset => (ushort)Result;
}

/// <summary>The queue's TCP connection or its NVMe/TCP framing failed; the command's outcome is unknown.</summary>
public sealed class NvmeTransportException(string message, TermReqFes? peerFes = null, Exception? inner = null)
    : IOException(message, inner)
{
    /// <summary>The FES of the C2HTermReq the target sent, when that is how the connection ended.</summary>
    public TermReqFes? PeerFes { get; } = peerFes;
}
