using System.Buffers;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// ANA on the engine's paths: the status an I/O command gets on a path that is not accessible, and the ANA log page.
/// The engine calls these from one hook each (ExecuteIo, GetLogPage), so the cluster's states stay out of the engine.
/// </summary>
public static class AnaAccess
{
    /// <summary>
    /// Null when the command may run on this path. A command to a namespace whose group is inaccessible (a secondary
    /// replica: the primary serves it) gets Asymmetric Access Inaccessible (SCT 3h, SC 02h), which a multipath host
    /// answers by retrying on another path; persistent loss and change get their own path statuses. Flush to every
    /// namespace (NSID FFFFFFFFh) and unknown NSIDs pass, for the command's own checks.
    /// </summary>
    public static NvmeStatus? Refuse(Target target, uint nsid)
    {
        if (nsid == uint.MaxValue) return null;
        return target.GetNamespace(nsid)?.AnaState switch
        {
            AnaState.Inaccessible => NvmeStatus.AsymmetricAccessInaccessible,
            AnaState.PersistentLoss => NvmeStatus.AsymmetricAccessPersistentLoss,
            AnaState.Change => NvmeStatus.AsymmetricAccessTransition,
            _ => null,
        };
    }

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
