using Duroslight.Core.Interop;

namespace Duroslight.Reactor;

/// <summary>The reactor's shards: one pinned thread and ring per configured CPU.</summary>
public sealed class ShardGroup : IDisposable
{
    private readonly Shard[] _shards;
    private bool _stopped;

    /// <param name="cpus">One shard per CPU, pinned to it; null or empty: every CPU this process may use.</param>
    /// <param name="pin">False leaves threads unpinned (tests on shared machines).</param>
    public ShardGroup(IReadOnlyList<int>? cpus, PollMode mode, bool pin = true)
    {
        var list = cpus is { Count: > 0 } ? cpus : LibC.AllowedCpus();
        _shards = new Shard[list.Count];
        for (int i = 0; i < _shards.Length; i++) _shards[i] = new Shard(i, pin ? list[i] : -1, mode);
    }

    public int Count => _shards.Length;

    public Shard this[int index] => _shards[index];

    /// <summary>Starts every shard; throws <see cref="ReactorUnavailableException"/> when io_uring cannot run here.</summary>
    public void Start()
    {
        int started = 0;
        try
        {
            for (; started < _shards.Length; started++) _shards[started].Start();
        }
        catch
        {
            for (int i = 0; i < started; i++) _shards[i].Stop();
            _stopped = true;
            throw;
        }
    }

    /// <summary>Stops the loops; connections must have been closed first.</summary>
    public void Dispose()
    {
        if (_stopped) return;
        _stopped = true;
        foreach (var shard in _shards) shard.Stop();
    }

    /// <summary>Start-up limits worth a warning (Seastar-style checks); empty when all is well.</summary>
    public static IEnumerable<string> CheckLimits(int expectedConnections)
    {
        var (soft, _) = LibC.OpenFilesLimit();
        if (soft < (ulong)expectedConnections + 64)
            yield return $"RLIMIT_NOFILE is {soft}: fewer than {expectedConnections} connections fit; raise it (ulimit -n, LimitNOFILE=)";
    }
}
