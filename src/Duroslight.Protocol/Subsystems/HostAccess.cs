using System.Collections.Frozen;

namespace Duroslight.Protocol.Subsystems;

/// <summary>Which host NQNs may connect to a subsystem: everyone, or an explicit list (default-deny).</summary>
public sealed class HostAccess
{
    public static readonly HostAccess AllowAny = new(true, []);

    private HostAccess(bool allowAny, IEnumerable<string> hosts)
    {
        IsAllowAny = allowAny;
        Hosts = hosts.ToFrozenSet(StringComparer.Ordinal);
    }

    public bool IsAllowAny { get; }
    public FrozenSet<string> Hosts { get; }

    public static HostAccess Only(IEnumerable<string> hosts) => new(false, hosts);

    public bool Allows(string hostNqn) => IsAllowAny || Hosts.Contains(hostNqn);
}
