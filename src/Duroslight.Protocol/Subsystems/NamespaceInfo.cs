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

    /// <summary>
    /// A cluster replica's fence (null elsewhere): while it does not hold, an optimized path answers as inaccessible,
    /// in I/O statuses and in the ANA log page alike.
    /// </summary>
    public LeaseFence? Fence { get; init; }

    /// <summary>The state this path reports and admits by: <see cref="AnaState"/>, inaccessible while a primary's fence is down.</summary>
    public AnaState EffectiveAnaState
    {
        get
        {
            var state = _anaState;
            return state == AnaState.Optimized && Fence is { Holds: false } ? AnaState.Inaccessible : state;
        }
    }

    private volatile string? _forwardsOnlyFrom;

    /// <summary>
    /// A cluster replica: the host NQN of the only peer whose forwarded writes (backend subsystem) it applies, the
    /// volume's primary as this node last read etcd; this node's own NQN when it is the primary (no peer connects as
    /// it, so every forward is refused: only a deposed primary would send one). Null: any peer (not a cluster replica).
    /// </summary>
    public string? ForwardsOnlyFrom { get => _forwardsOnlyFrom; set => _forwardsOnlyFrom = value; }

    /// <summary>Blocks physically in use (NUSE), supplied by the storage layer.</summary>
    public Func<long>? AllocatedBlocks { get; init; }

    private volatile HostAccess _hosts = HostAccess.AllowAny;

    /// <summary>
    /// The hosts that may see this namespace (namespace masking), inside the subsystem's own host list: to any other
    /// host it is an inactive NSID. Changed through <see cref="Target.SetNamespaceHosts"/>, which notifies.
    /// </summary>
    public HostAccess Hosts { get => _hosts; init => _hosts = value; }

    /// <summary>Whether a controller of <paramref name="hostNqn"/> sees this namespace as active.</summary>
    public bool IsVisibleTo(string hostNqn) => _hosts.Allows(hostNqn);

    internal void SetHosts(HostAccess hosts) => _hosts = hosts;

    private volatile Reservations.ReservationState _reservation = Reservations.ReservationState.Empty;

    /// <summary>
    /// The namespace's reservation state (NVMe Base 2.0, 8.19), replaced whole by <see cref="Target.Reserve"/>; the I/O
    /// path reads it without a lock.
    /// </summary>
    public Reservations.ReservationState Reservation { get => _reservation; init => _reservation = value; }

    internal void SetReservation(Reservations.ReservationState state) => _reservation = state;

    /// <summary>
    /// Every reservation change is stored (<see cref="Target.ReservationPersistence"/>) before it applies, PTPL or
    /// not: a cluster volume's record lives in etcd, so the node that serves it next (failover, drain) serves the same
    /// registrations and holder, as one subsystem must on every path.
    /// </summary>
    public bool ReservationShared { get; init; }

    /// <summary>
    /// Non-null while a changed reservation record is being stored (PTPL): the reservation commands that came meanwhile,
    /// in order. Under the target's lock.
    /// </summary>
    internal Queue<Target.PendingReservation>? ReservationBacklog;
}
