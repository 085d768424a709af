using System.Buffers;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// ANA on the engine's paths: the status an I/O command gets on a path that is not accessible (from the command
/// layer's Admit gate), and the ANA log page (from Get Log Page).
/// </summary>
public static class AnaAccess
{
    /// <summary>
    /// The ANA part of the command layer's one gate (IoCommands.Admit), before any data moves: a command to a namespace
    /// whose group is inaccessible on this node (a secondary replica: the primary serves it) gets Asymmetric Access
    /// Inaccessible (SCT 3h, SC 02h, not DNR), which a multipath host answers by retrying on another path; persistent
    /// loss and change get their own path statuses; a primary whose lease fence is down answers as inaccessible
    /// (<see cref="NamespaceInfo.EffectiveAnaState"/>). Flush to every namespace (NSID FFFFFFFFh) does not pass the gate.
    /// </summary>
    public static NvmeStatus Admit(NamespaceInfo ns) => ns.EffectiveAnaState switch
    {
        AnaState.Inaccessible => NvmeStatus.AsymmetricAccessInaccessible,
        AnaState.PersistentLoss => NvmeStatus.AsymmetricAccessPersistentLoss,
        AnaState.Change => NvmeStatus.AsymmetricAccessTransition,
        _ => NvmeStatus.Success,
    };

    /// <summary>
    /// The whole ANA log page in a pooled buffer (the caller returns it) of which <paramref name="length"/> bytes count;
    /// <paramref name="changeCount"/> is its CHGCNT.
    /// </summary>
    public static byte[] BuildLog(Target target, uint cdw10, out int length, out ulong changeCount)
    {
        var table = target.Namespaces;
        changeCount = target.AnaChangeCount;
        bool groupsOnly = AnaLogPage.GroupsOnly(cdw10);
        length = AnaLogPage.Size(table.Length, groupsOnly);
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        buffer.AsSpan(0, length).Clear();
        AnaLogPage.Write(buffer.AsSpan(0, length), changeCount, table, groupsOnly);
        return buffer;
    }
}
