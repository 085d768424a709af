using System.Collections.Frozen;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Server.Metrics;
using Duroslight.Storage.Volumes;

namespace Duroslight.Server.Execution;

/// <summary>
/// The volumes the data path serves and how storage results become NVMe statuses. The control path publishes a
/// new immutable snapshot; the I/O path reads it without a lock. <see cref="ChunkRouter"/> executes requests.
/// </summary>
public sealed class StorageExecutor
{
    private volatile Snapshot _snapshot = new(FrozenDictionary<Guid, IBlockVolume>.Empty, []);

    public IReadOnlyCollection<IBlockVolume> Volumes => _snapshot.All;

    /// <summary>Every volume, for a Flush of all namespaces.</summary>
    internal IBlockVolume[] AllVolumes => _snapshot.All;

    /// <summary>Publishes the current volume set (control path).</summary>
    public void SetVolumes(IEnumerable<IBlockVolume> volumes)
    {
        var byId = volumes.ToFrozenDictionary(static v => v.Id);
        _snapshot = new Snapshot(byId, [.. byId.Values]);
    }

    /// <summary>Per-shard I/O counters every request is recorded in (<see cref="RequestRun"/>); set before the transport starts.</summary>
    public IoMetrics Metrics { get; set; } = new(1);

    public bool TryGetVolume(Guid id, out IBlockVolume volume) => _snapshot.ById.TryGetValue(id, out volume!);

    public static NvmeStatus ToStatus(StorageResult result, StorageOp op) => result switch
    {
        StorageResult.Ok => NvmeStatus.Success,
        StorageResult.OutOfSpace => NvmeStatus.CapacityExceeded,
        StorageResult.OutOfRange => NvmeStatus.LbaOutOfRange,
        StorageResult.WriteProtected => NvmeStatus.NamespaceWriteProtected,
        _ => op == StorageOp.Read ? NvmeStatus.UnrecoveredReadError : NvmeStatus.WriteFault,
    };

    private sealed record Snapshot(FrozenDictionary<Guid, IBlockVolume> ById, IBlockVolume[] All);
}
