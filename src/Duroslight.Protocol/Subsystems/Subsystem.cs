namespace Duroslight.Protocol.Subsystems;

/// <summary>
/// An NVM subsystem served by this node: the default one (pool 0) or an aux one (pool N, NQN "&lt;nqn&gt;.aux-N").
/// All share the target's namespaces; each has its own controller-ID pool and host access list.
/// </summary>
public sealed class Subsystem
{
    private volatile HostAccess _access;

    internal Subsystem(string nqn, int poolId, ControllerIdPool pool, HostAccess access, bool isBackend = false)
    {
        IsBackend = isBackend;
        Nqn = nqn;
        PoolId = poolId;
        ControllerIds = pool;
        _access = access;
    }

    public string Nqn { get; }
    public int PoolId { get; }

    /// <summary>
    /// The cluster's node-to-node subsystem (<see cref="TargetOptions.BackendNqn"/>): only cluster nodes' host NQNs
    /// may connect; its I/O skips masking, ANA and reservations (the primary applied them to the host's command).
    /// </summary>
    public bool IsBackend { get; }
    public ControllerIdPool ControllerIds { get; }

    public HostAccess Access
    {
        get => _access;
        internal set => _access = value;
    }
}

/// <summary>A discovery referral to another node's discovery service.</summary>
public sealed record Referral(string TrAddr, string TrSvcId, ushort PortId = 1);

/// <summary>A listener the discovery log advertises: the address hosts must connect to.</summary>
public sealed record ListenerInfo(string TrAddr, string TrSvcId, ushort PortId, bool IsDiscovery)
{
    public bool IsIpv6 => TrAddr.Contains(':');
}
