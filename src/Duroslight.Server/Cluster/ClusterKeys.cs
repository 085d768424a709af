using System.Globalization;

namespace Duroslight.Server.Cluster;

/// <summary>
/// The key layout under /duroslight/CLUSTER/ (docs/ARCHITECTURE.md). Node indexes are two digits so that a range
/// read lists them in order.
/// </summary>
public sealed class ClusterKeys(string cluster)
{
    public string Root { get; } = $"/duroslight/{cluster}/";

    public string NodesPrefix => Root + "nodes/";
    public string AlivePrefix => Root + "alive/";
    public string VolumesPrefix => Root + "volumes/";
    public string VolumeNamesPrefix => Root + "volume-names/";
    public string NsidsPrefix => Root + "nsids/";
    public string ReplicasPrefix => Root + "replicas/";
    public string HostsPrefix => Root + "hosts/";
    public string DrainPrefix => Root + "drain/";
    public string MovesPrefix => Root + "moves/";
    public string ReservationsPrefix => Root + "reservations/";
    public string SyncPointsPrefix => Root + "syncpoints/";
    public string Leader => Root + "leader";

    public string Node(int index) => NodesPrefix + Two(index);
    public string Alive(int index) => AlivePrefix + Two(index);
    public string Drain(int index) => DrainPrefix + Two(index);
    public string Volume(Guid id) => VolumesPrefix + id.ToString("D");
    public string VolumeName(string name) => VolumeNamesPrefix + name;
    public string Nsid(uint nsid) => NsidsPrefix + nsid.ToString(CultureInfo.InvariantCulture);
    public string Hosts(int pool) => HostsPrefix + pool.ToString(CultureInfo.InvariantCulture);
    public string Move(Guid id) => MovesPrefix + id.ToString("D");
    public string Reservation(Guid id) => ReservationsPrefix + id.ToString("D");
    public string Replica(Guid id, int node) => ReplicasPrefix + id.ToString("D") + "/" + Two(node);
    public string SyncPoint(Guid id, int node) => SyncPointsPrefix + id.ToString("D") + "/" + Two(node);

    private static string Two(int index) => index.ToString("D2", CultureInfo.InvariantCulture);
}
