using System.Collections.Frozen;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Server.Metrics;
using Duroslight.Storage.Chunking;
using Duroslight.Storage.Volumes;

namespace Duroslight.Server.Execution;

/// <summary>
/// Executes the engine's storage requests against the volumes. Every data request is cut at 128 KiB chunk
/// boundaries (<see cref="ChunkMap"/>); with one shard every chunk's owner is shard 0, and the io_uring reactor
/// replaces this class with per-shard routing of the same chunks.
/// </summary>
public sealed class StorageExecutor(IoMetrics? metrics = null)
{
    private readonly IoMetrics _metrics = metrics ?? new IoMetrics(1);
    private volatile FrozenDictionary<Guid, IBlockVolume> _volumes = FrozenDictionary<Guid, IBlockVolume>.Empty;

    public IReadOnlyCollection<IBlockVolume> Volumes => _volumes.Values;

    /// <summary>Publishes the current volume set (control path; the I/O path reads the snapshot lock-free).</summary>
    public void SetVolumes(IEnumerable<IBlockVolume> volumes) =>
        _volumes = volumes.ToFrozenDictionary(static v => v.Id);

    public IoMetrics Metrics => _metrics;

    /// <summary>Every storage request passes here once: counted in <see cref="IoMetrics"/> (lock-free, no allocation).</summary>
    public async ValueTask<NvmeStatus> ExecuteAsync(StorageRequest request)
    {
        long start = _metrics.Start(request);
        var status = await ExecuteCoreAsync(request).ConfigureAwait(false);
        _metrics.Record(request, status, start);
        return status;
    }

    private async ValueTask<NvmeStatus> ExecuteCoreAsync(StorageRequest request)
    {
        try
        {
            if (request.Op == StorageOp.Flush) return await FlushAsync(request.VolumeId).ConfigureAwait(false);
            if (!_volumes.TryGetValue(request.VolumeId, out var volume)) return NvmeStatus.InvalidNamespaceOrFormat;
            var result = await ExecuteOnVolumeAsync(volume, request).ConfigureAwait(false);
            return ToStatus(result, request.Op);
        }
        catch (Exception)
        {
            // An unexpected store failure fails this command, never the process.
            return request.Op == StorageOp.Read ? NvmeStatus.UnrecoveredReadError : NvmeStatus.WriteFault;
        }
    }

    private static async ValueTask<StorageResult> ExecuteOnVolumeAsync(IBlockVolume volume, StorageRequest r)
    {
        switch (r.Op)
        {
            case StorageOp.Read:
            case StorageOp.Write:
            case StorageOp.WriteZeroes:
                var result = await PerChunkAsync(volume, r).ConfigureAwait(false);
                if (result == StorageResult.Ok && r.ForceUnitAccess) result = await volume.FlushAsync().ConfigureAwait(false);
                return result;
            case StorageOp.Deallocate:
                for (int i = 0; i < r.RangeCount; i++)
                {
                    var range = r.Ranges[i];
                    var res = await volume.DeallocateAsync(range.Offset, range.Length).ConfigureAwait(false);
                    if (res != StorageResult.Ok) return res;
                }
                return StorageResult.Ok;
            default:
                return StorageResult.MediaError;
        }
    }

    /// <summary>Runs one request chunk by chunk, in order, so no chunk operation crosses a 128 KiB boundary.</summary>
    private static async ValueTask<StorageResult> PerChunkAsync(IBlockVolume volume, StorageRequest r)
    {
        long done = 0;
        foreach (var chunk in ChunkMap.Split(r.Offset, r.Length))
        {
            var result = r.Op switch
            {
                StorageOp.Read => await volume.ReadAsync(chunk.Offset, r.Buffer.Slice((int)done, chunk.Length)).ConfigureAwait(false),
                StorageOp.Write => await volume.WriteAsync(chunk.Offset, r.Buffer.Slice((int)done, chunk.Length)).ConfigureAwait(false),
                _ => await volume.WriteZeroesAsync(chunk.Offset, chunk.Length).ConfigureAwait(false),
            };
            if (result != StorageResult.Ok) return result;
            done += chunk.Length;
        }
        return StorageResult.Ok;
    }

    private async ValueTask<NvmeStatus> FlushAsync(Guid volumeId)
    {
        if (volumeId != Guid.Empty)
        {
            if (!_volumes.TryGetValue(volumeId, out var one)) return NvmeStatus.InvalidNamespaceOrFormat;
            return ToStatus(await one.FlushAsync().ConfigureAwait(false), StorageOp.Flush);
        }
        foreach (var v in _volumes.Values)
        {
            var result = await v.FlushAsync().ConfigureAwait(false);
            if (result != StorageResult.Ok) return ToStatus(result, StorageOp.Flush);
        }
        return NvmeStatus.Success;
    }

    public static NvmeStatus ToStatus(StorageResult result, StorageOp op) => result switch
    {
        StorageResult.Ok => NvmeStatus.Success,
        StorageResult.OutOfSpace => NvmeStatus.CapacityExceeded,
        StorageResult.OutOfRange => NvmeStatus.LbaOutOfRange,
        _ => op == StorageOp.Read ? NvmeStatus.UnrecoveredReadError : NvmeStatus.WriteFault,
    };
}
