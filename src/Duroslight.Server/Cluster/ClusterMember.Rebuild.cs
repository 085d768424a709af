using Etcdserverpb;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static Duroslight.Server.Cluster.EtcdSession;

namespace Duroslight.Server.Cluster;

public sealed partial class ClusterMember
{
    /// <summary>
    /// The primary's end of a rebuild: <paramref name="node"/> holds every chunk and gets every write, so it joins the
    /// volume's in-sync set (generation bump). A transaction compared on the record's mod revision, retried on conflict
    /// for up to 10 s; only while this node is the primary and the node is still placed there. True once it is in.
    /// </summary>
    public async Task<bool> JoinInSyncAsync(Guid id, int node)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            try
            {
                var entry = ClusterView.Parse(Keys, await _etcd.RangeAsync(Keys.Volume(id)).ConfigureAwait(false)).Find(id.ToString("D"));
                if (entry is null || entry.Record.Primary != Index || !entry.Record.Placement.Contains(node)) return false;
                var r = entry.Record;
                if (r.InSync.Contains(node)) return true;
                var next = r with { InSync = [.. r.InSync, node], Generation = r.Generation + 1 };
                var txn = new TxnRequest();
                txn.Compare.Add(ModRevisionIs(Keys.Volume(id), entry.ModRevision));
                txn.Success.Add(Put(Keys.Volume(id), Json(next)));
                if ((await _etcd.TxnAsync(txn).ConfigureAwait(false)).Succeeded)
                {
                    _logger.LogInformation("volume {Name}: node {Node} rebuilt, back in the in-sync set [{InSync}] (generation {Generation})",
                        r.Name, node, string.Join(',', next.InSync), next.Generation);
                    Signal();
                    return true;
                }
            }
            catch (RpcException e)
            {
                _logger.LogWarning("volume {Id}: adding node {Node} to the in-sync set: etcd {Error}", id, node, e.Status.Detail);
            }
            if (DateTime.UtcNow > deadline) return false;
            await Task.Delay(100).ConfigureAwait(false);
        }
    }
}
