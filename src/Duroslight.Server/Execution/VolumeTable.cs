using System.Collections.Frozen;
using Duroslight.Server.Metrics;
using Duroslight.Storage.Volumes;

namespace Duroslight.Server.Execution;

/// <summary>
/// The volumes the data path serves, each with its channel on every shard (<see cref="IBlockVolume.OpenChannel"/>),
/// and the per-shard I/O counters. The control path publishes a new immutable snapshot (opening the channels there);
/// the I/O path reads it without a lock. <see cref="ChunkRouter"/> runs the requests.
/// </summary>
public sealed class VolumeTable
{
    private readonly object _gate = new();
    private IBlockVolume[] _volumes = [];
    private StorageShard[] _shards = [];
    private volatile Snapshot _snapshot = new(FrozenDictionary<Guid, ServedVolume>.Empty, [], []);

    public IReadOnlyCollection<IBlockVolume> Volumes => _snapshot.Volumes;

    /// <summary>Every volume, for a Flush of all namespaces.</summary>
    internal ServedVolume[] All => _snapshot.All;

    /// <summary>Per-shard I/O counters every request is recorded in (<see cref="RequestFanOut"/>); set before the transport starts.</summary>
    public IoMetrics Metrics { get; set; } = new(1);

    /// <summary>
    /// Wraps each channel as it is opened (a cluster node's replication, <see cref="Replication.Replicator.Wrap"/>);
    /// set before volumes are published.
    /// </summary>
    public Func<IBlockVolume, StorageShard, IVolumeChannel, IVolumeChannel>? WrapChannel { get; set; }

    /// <summary>Publishes the current volume set (control path).</summary>
    public void SetVolumes(IEnumerable<IBlockVolume> volumes)
    {
        lock (_gate)
        {
            _volumes = [.. volumes];
            Publish();
        }
    }

    /// <summary>The shards that serve the volumes, index = shard index (the transport, before it accepts).</summary>
    public void AttachShards(IReadOnlyList<StorageShard> shards)
    {
        lock (_gate)
        {
            _shards = [.. shards];
            Publish();
        }
    }

    internal bool TryGetVolume(Guid id, out ServedVolume volume) => _snapshot.ById.TryGetValue(id, out volume!);

    private void Publish()
    {
        var served = new ServedVolume[_volumes.Length];
        for (int v = 0; v < served.Length; v++)
        {
            var channels = new IVolumeChannel[_shards.Length];
            for (int s = 0; s < channels.Length; s++)
            {
                var channel = _volumes[v].OpenChannel(_shards[s]);
                channels[s] = WrapChannel is { } wrap ? wrap(_volumes[v], _shards[s], channel) : channel;
            }
            served[v] = new ServedVolume(_volumes[v], channels);
        }
        _snapshot = new Snapshot(served.ToFrozenDictionary(static v => v.Volume.Id), served, [.. _volumes]);
    }

    private sealed record Snapshot(FrozenDictionary<Guid, ServedVolume> ById, ServedVolume[] All, IBlockVolume[] Volumes);
}

/// <summary>A volume the data path serves and its channel on each shard (<see cref="Channels"/>[shard index]).</summary>
internal sealed record ServedVolume(IBlockVolume Volume, IVolumeChannel[] Channels)
{
    /// <summary>What places the volume's chunks on shards (<see cref="IBlockVolume.PlacementId"/>).</summary>
    public Guid PlacementId => Volume.PlacementId;
}
