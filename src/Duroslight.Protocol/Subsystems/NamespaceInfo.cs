namespace Duroslight.Protocol.Subsystems;

/// <summary>
/// One namespace as the protocol sees it. The NGUID (and the UUID descriptor) is the volume UUID.
/// The engine never touches the volume's bytes: it emits storage requests naming <see cref="VolumeId"/>.
/// </summary>
public sealed class NamespaceInfo(uint nsid, Guid volumeId, long blockCount, int blockSize)
{
    public uint Nsid { get; } = nsid;
    public Guid VolumeId { get; } = volumeId;
    public int BlockSize { get; } = blockSize;
    public int BlockShift { get; } = System.Numerics.BitOperations.Log2((uint)blockSize);

    /// <summary>Size in logical blocks (NSZE); grows on resize.</summary>
    public long BlockCount { get; internal set; } = blockCount;

    /// <summary>ANAGRPID: one ANA group per namespace, numbered as the namespace.</summary>
    public uint AnaGroupId => Nsid;

    /// <summary>This node's ANA state for the namespace's group (ANAGRPID = NSID); a lone node is always optimized.</summary>
    public AnaState AnaState { get => _anaState; init => _anaState = value; }

    private volatile AnaState _anaState = AnaState.Optimized;

    internal void ChangeAnaState(AnaState state) => _anaState = state;

    /// <summary>Blocks physically in use (NUSE), supplied by the storage layer.</summary>
    public Func<long>? AllocatedBlocks { get; init; }
}
