using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace Duroslight.Server.Cluster;

/// <summary>
/// The node's connection to etcd: the v3 gRPC API (KV, Lease, Watch) through the generated clients of the
/// dotnet-etcd package over one <see cref="GrpcChannel"/>. A call that finds its endpoint unavailable moves on to
/// the next configured URL. Unary calls carry a deadline, so a stalled etcd never blocks the node's loops for long.
/// </summary>
public sealed class EtcdSession : IDisposable
{
    private static readonly TimeSpan CallDeadline = TimeSpan.FromSeconds(5);
    private readonly IReadOnlyList<string> _urls;
    private readonly object _gate = new();
    private GrpcChannel _channel;
    private int _current;

    public EtcdSession(IReadOnlyList<string> urls)
    {
        if (urls.Count == 0) throw new ArgumentException("no etcd URL", nameof(urls));
        _urls = urls;
        _channel = GrpcChannel.ForAddress(urls[0]);
    }

    public string Endpoint => _urls[_current];

    public Task<RangeResponse> RangeAsync(string prefix, CancellationToken ct = default) =>
        Call(c => new KV.KVClient(c).RangeAsync(new RangeRequest { Key = Bytes(prefix), RangeEnd = PrefixEnd(prefix) }, Options(ct)).ResponseAsync);

    public Task<TxnResponse> TxnAsync(TxnRequest request, CancellationToken ct = default) =>
        Call(c => new KV.KVClient(c).TxnAsync(request, Options(ct)).ResponseAsync);

    public Task<DeleteRangeResponse> DeleteAsync(string key, CancellationToken ct = default) =>
        Call(c => new KV.KVClient(c).DeleteRangeAsync(new DeleteRangeRequest { Key = Bytes(key) }, Options(ct)).ResponseAsync);

    public async Task<long> GrantLeaseAsync(int ttlSeconds, CancellationToken ct = default) =>
        (await Call(c => new Lease.LeaseClient(c).LeaseGrantAsync(new LeaseGrantRequest { TTL = ttlSeconds }, Options(ct)).ResponseAsync).ConfigureAwait(false)).ID;

    public Task RevokeLeaseAsync(long id, CancellationToken ct = default) =>
        Call(c => new Lease.LeaseClient(c).LeaseRevokeAsync(new LeaseRevokeRequest { ID = id }, Options(ct)).ResponseAsync);

    /// <summary>
    /// Renews the lease every sixth of its TTL (at least every 0.5 s apart) until cancelled, so a renewal a little late
    /// on a loaded machine does not let the 5/6-TTL fence (ClusterMember) lapse; returns when etcd says the lease is gone (TTL 0: it
    /// expired, e.g. after a long pause of this process). A broken stream throws (the caller retries). After each
    /// renewal <paramref name="renewed"/> gets the <see cref="System.Diagnostics.Stopwatch"/> timestamp taken before
    /// the request was sent (etcd restarts the TTL no earlier than that) and the TTL etcd granted.
    /// </summary>
    public async Task KeepAliveAsync(long id, int ttlSeconds, Action<long, long> renewed, CancellationToken ct)
    {
        using var call = new Lease.LeaseClient(Channel).LeaseKeepAlive(cancellationToken: ct);
        var period = TimeSpan.FromSeconds(Math.Max(0.5, ttlSeconds / 6.0));
        try
        {
            while (true)
            {
                long sent = System.Diagnostics.Stopwatch.GetTimestamp();
                await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = id }, ct).ConfigureAwait(false);
                if (!await call.ResponseStream.MoveNext(ct).ConfigureAwait(false)) throw new RpcException(new Status(StatusCode.Unavailable, "keep-alive stream ended"));
                long ttl = call.ResponseStream.Current.TTL;
                if (ttl <= 0) return;
                renewed(sent, ttl);
                await Task.Delay(period, ct).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is IOException or HttpRequestException)
        {
            throw StreamBroken(e);
        }
    }

    /// <summary>Calls <paramref name="changed"/> after every batch of events under the prefix, from the revision after <paramref name="afterRevision"/>.</summary>
    public async Task WatchAsync(string prefix, long afterRevision, Action changed, CancellationToken ct)
    {
        using var call = new Watch.WatchClient(Channel).Watch(cancellationToken: ct);
        try
        {
            await call.RequestStream.WriteAsync(new WatchRequest
            {
                CreateRequest = new WatchCreateRequest { Key = Bytes(prefix), RangeEnd = PrefixEnd(prefix), StartRevision = afterRevision + 1 },
            }, ct).ConfigureAwait(false);
            while (await call.ResponseStream.MoveNext(ct).ConfigureAwait(false))
            {
                var response = call.ResponseStream.Current;
                if (response.Events.Count > 0 || response.Canceled || response.CompactRevision > 0) changed();
                if (response.Canceled) return;
            }
        }
        catch (Exception e) when (e is IOException or HttpRequestException)
        {
            throw StreamBroken(e);
        }
    }

    /// <summary>
    /// A stream whose connection to etcd broke (etcd died or restarted) fails a write with the HTTP/2 layer's exception,
    /// not an RpcException: callers see one kind, Unavailable, and retry.
    /// </summary>
    private static RpcException StreamBroken(Exception e) => new(new Status(StatusCode.Unavailable, $"etcd stream broken: {e.Message}", e));

    public void Dispose()
    {
        lock (_gate) _channel.Dispose();
    }

    public static ByteString Bytes(string text) => ByteString.CopyFromUtf8(text);

    /// <summary>The range end that makes a range read or watch cover every key starting with the prefix.</summary>
    public static ByteString PrefixEnd(string prefix)
    {
        byte[] end = System.Text.Encoding.UTF8.GetBytes(prefix);
        end[^1]++;
        return ByteString.CopyFrom(end);
    }

    public static Compare Absent(string key) => new()
    {
        Key = Bytes(key), Target = Compare.Types.CompareTarget.Create, Result = Compare.Types.CompareResult.Equal, CreateRevision = 0,
    };

    public static Compare ModRevisionIs(string key, long revision) => new()
    {
        Key = Bytes(key), Target = Compare.Types.CompareTarget.Mod, Result = Compare.Types.CompareResult.Equal, ModRevision = revision,
    };

    public static Compare LeaseIs(string key, long lease) => new()
    {
        Key = Bytes(key), Target = Compare.Types.CompareTarget.Lease, Result = Compare.Types.CompareResult.Equal, Lease = lease,
    };

    public static RequestOp Put(string key, string value, long lease = 0) =>
        new() { RequestPut = new PutRequest { Key = Bytes(key), Value = Bytes(value), Lease = lease } };

    public static RequestOp Delete(string key) => new() { RequestDeleteRange = new DeleteRangeRequest { Key = Bytes(key) } };

    private GrpcChannel Channel
    {
        get { lock (_gate) return _channel; }
    }

    private static CallOptions Options(CancellationToken ct) => new(deadline: DateTime.UtcNow + CallDeadline, cancellationToken: ct);

    /// <summary>Runs a call on the current endpoint; when it is unavailable, on each other endpoint once.</summary>
    private async Task<T> Call<T>(Func<GrpcChannel, Task<T>> call)
    {
        for (int tried = 1; ; tried++)
        {
            var channel = Channel;
            try
            {
                return await call(channel).ConfigureAwait(false);
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable && tried < _urls.Count)
            {
                Rotate(channel);
            }
        }
    }

    private void Rotate(GrpcChannel failed)
    {
        lock (_gate)
        {
            if (!ReferenceEquals(failed, _channel)) return; // another call moved on already
            _current = (_current + 1) % _urls.Count;
            _channel = GrpcChannel.ForAddress(_urls[_current]);
            failed.Dispose();
        }
    }
}
