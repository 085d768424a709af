using Duroslight.Protocol.Reservations;
using Etcdserverpb;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static Duroslight.Server.Cluster.EtcdSession;

namespace Duroslight.Server.Cluster;

/// <summary>
/// Reservations of cluster volumes (NVMe Base 2.0, 8.19) live in etcd (docs/ARCHITECTURE.md, "Reservations in a
/// cluster"): the primary stores every change there before it applies, and a node that becomes primary reads the
/// record before its path turns optimized, so hosts see the same registrants and holder after a failover or a drain.
/// </summary>
public sealed partial class ClusterMember
{
    /// <summary>The generation at which this node, as primary, last installed each volume's record from etcd.</summary>
    private readonly Dictionary<Guid, long> _reservationTerms = [];

    /// <summary>
    /// Stores a volume's reservation record (<see cref="ReservationCodec"/>), only while the volume record names this
    /// node as its primary (compared on the record's mod revision, so a node that lost the primary cannot overwrite
    /// what its successor stored). Faults (IOException) otherwise; the command then fails with Internal Error.
    /// </summary>
    public async Task StoreReservationAsync(Guid id, byte[] record)
    {
        for (int attempt = 0; attempt < 20; attempt++)
        {
            try
            {
                var entry = ClusterView.Parse(Keys, await _etcd.RangeAsync(Keys.Volume(id)).ConfigureAwait(false)).Find(id.ToString("D"));
                if (entry is null || entry.Record.Primary != Index)
                    throw new IOException($"volume {id}: this node is not its primary; reservation not stored");
                var txn = new TxnRequest();
                txn.Compare.Add(ModRevisionIs(Keys.Volume(id), entry.ModRevision));
                txn.Success.Add(Put(Keys.Reservation(id), Convert.ToBase64String(record)));
                if ((await _etcd.TxnAsync(txn).ConfigureAwait(false)).Succeeded) return;
            }
            catch (RpcException e)
            {
                throw new IOException($"volume {id}: reservation not stored: etcd {e.Status.Detail}", e);
            }
            await Task.Delay(50).ConfigureAwait(false); // the volume record changed meanwhile (an in-sync change): read it again
        }
        throw new IOException($"volume {id}: reservation not stored: the volume record kept changing");
    }

    /// <summary>
    /// The reservation state this node must install before it serves <paramref name="v"/> as primary: the etcd record
    /// the first time at each generation, null when it installed that generation's already (its own changes since are
    /// in etcd and in its namespace alike). A record that does not parse counts as none, with an error logged.
    /// </summary>
    private async Task<ReservationState?> ReservationToInstallAsync(VolumeRecord v)
    {
        lock (_reservationTerms)
            if (_reservationTerms.TryGetValue(v.Id, out long term) && term == v.Generation) return null;
        var kvs = (await _etcd.RangeAsync(Keys.Reservation(v.Id)).ConfigureAwait(false)).Kvs;
        if (kvs.Count == 0) return ReservationState.Empty;
        try
        {
            return ReservationCodec.Deserialize(Convert.FromBase64String(kvs[0].Value.ToStringUtf8()));
        }
        catch (FormatException e)
        {
            _logger.LogError("volume {Name}: reservation record in etcd ignored: {Message}", v.Name, e.Message);
            return ReservationState.Empty;
        }
    }

    private void ReservationInstalled(VolumeRecord v)
    {
        lock (_reservationTerms) _reservationTerms[v.Id] = v.Generation;
    }

    private void ReservationTermEnded(Guid id)
    {
        lock (_reservationTerms) _reservationTerms.Remove(id);
    }
}
