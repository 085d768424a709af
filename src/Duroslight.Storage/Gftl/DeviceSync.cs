using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using Duroslight.Core;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// fdatasync of every device in turn through the calling thread's I/O, continued without an async box: a flush
/// allocates nothing. Pooled per thread like <see cref="Devices.BlockTransfer"/> (only lent out when a sync is
/// still in flight).
/// </summary>
internal sealed class DeviceSync : IValueTaskSource<StorageResult>
{
    [ThreadStatic]
    private static Stack<DeviceSync>? t_pool;

    private readonly Action _resume;
    private ManualResetValueTaskSourceCore<StorageResult> _completion;
    private IBlockIo _io = null!;
    private GftlDevice[] _devices = [];
    private int _next;
    private ValueTaskAwaiter<int> _awaiter;

    private DeviceSync() => _resume = Resume;

    public static ValueTask<StorageResult> AllAsync(GftlDevice[] devices)
    {
        IBlockIo io = BlockIo.Current;
        for (int i = 0; i < devices.Length; i++)
        {
            ValueTask<int> sync = io.SyncAsync(devices[i].Handle);
            if (!sync.IsCompleted)
            {
                DeviceSync pending = t_pool is { Count: > 0 } pool ? pool.Pop() : new DeviceSync();
                pending._io = io;
                pending._devices = devices;
                pending._next = i + 1;
                short token = pending._completion.Version;
                pending.Park(sync);
                return new(pending, token);
            }

            if (sync.Result < 0)
            {
                return new(StorageErrors.FromErrno(-sync.Result));
            }
        }

        return new(StorageResult.Ok);
    }

    public StorageResult GetResult(short token)
    {
        StorageResult result = _completion.GetResult(token);
        _completion.Reset();
        _io = null!;
        _devices = [];
        (t_pool ??= new Stack<DeviceSync>()).Push(this);
        return result;
    }

    public ValueTaskSourceStatus GetStatus(short token) => _completion.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _completion.OnCompleted(continuation, state, token, flags);

    private void Park(ValueTask<int> sync)
    {
        _awaiter = sync.GetAwaiter();
        _awaiter.UnsafeOnCompleted(_resume);
    }

    /// <summary>A sync is over: the next device's, or the outcome (the first failure, or Ok after the last).</summary>
    private void Resume()
    {
        int result = _awaiter.GetResult();
        _awaiter = default;
        while (result >= 0 && _next < _devices.Length)
        {
            ValueTask<int> sync = _io.SyncAsync(_devices[_next++].Handle);
            if (!sync.IsCompleted)
            {
                Park(sync);
                return;
            }

            result = sync.Result;
        }

        _completion.SetResult(result < 0 ? StorageErrors.FromErrno(-result) : StorageResult.Ok);
    }
}
