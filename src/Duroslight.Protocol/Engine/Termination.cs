using Duroslight.Protocol.Wire;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// A C2HTermReq the target sent: the fatal error status, the byte offset it points at (FEI) and the type of the PDU
/// that caused it (null when its header was not complete).
/// </summary>
public readonly record struct Termination(TermReqFes Fes, uint Fei, PduType? Pdu)
{
    /// <summary>The header field FEI names (e.g. "PDO"), or the byte offset when no name applies.</summary>
    public string Field => PduLayout.FieldName(Pdu ?? (PduType)0xFF, Fei);

    public override string ToString() =>
        $"C2HTermReq FES {(ushort)Fes:X2}h ({Fes}) at {Field} (FEI {Fei}) of a {(Pdu?.ToString() ?? "partial")} PDU";
}
