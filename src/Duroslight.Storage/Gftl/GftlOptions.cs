namespace Duroslight.Storage.Gftl;

/// <summary>One raw device of the set: a block device or a plain file; a missing file is created with <see cref="SizeBytes"/>.</summary>
/// <param name="Thin">
/// A file the store creates stays sparse (the data directory's default device); otherwise its blocks are allocated at
/// creation (<see cref="GftlDevice"/>), as a device's are.
/// </param>
public sealed record GftlDeviceSpec(string Path, long? SizeBytes = null, bool Thin = false);

/// <summary>How a <see cref="GftlStore"/> is laid out and run.</summary>
public sealed record GftlOptions
{
    /// <summary>Holds the store lock only: the catalog and the checkpoint live on the devices (<see cref="DeviceMetadata"/>).</summary>
    public required string DataDirectory { get; init; }

    /// <summary>The devices in set order; the order is recorded in each superblock and checked at start.</summary>
    public required IReadOnlyList<GftlDeviceSpec> Devices { get; init; }

    /// <summary>Reactor shards: each owns one partition (map entries and open segment) of every volume.</summary>
    public int ShardCount { get; init; } = 1;

    /// <summary>
    /// Segment size used when formatting (existing devices keep theirs); null picks one from the device size
    /// (<see cref="GftlLayout.SegmentBytesFor"/>).
    /// </summary>
    public int? SegmentBytes { get; init; }

    public int NodeIndex { get; init; }

    /// <summary>
    /// O_DIRECT (the default, which the durability contract assumes). False puts the page cache in between, for
    /// benchmarks that compare the GFTL's own cost with the buffered sparse-file store.
    /// </summary>
    public bool DirectIo { get; init; } = true;

    /// <summary>Clean segments in the background; tests turn it off to drive GC by hand.</summary>
    public bool BackgroundGc { get; init; } = true;

    /// <summary>Recovery progress as it changes (start-up only), for status and metrics.</summary>
    public Action<GftlRecoveryProgress>? Progress { get; init; }

    /// <summary>Progress and warnings (recovery, refused devices); null to stay quiet.</summary>
    public Action<string>? Log { get; init; }
}
