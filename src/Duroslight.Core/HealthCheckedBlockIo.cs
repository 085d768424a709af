using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using Duroslight.Core.Interop;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Core;

/// <summary>
/// The one place device errors and stalls are counted: every <see cref="IBlockIo"/> the process uses is wrapped in
/// this (<see cref="BlockIo.Instrumented"/>), so the GFTL's many device call sites and the sparse volumes are all
/// seen without each counting. For a handle with a registered <see cref="DeviceHealth"/> it marks the operation in
/// flight, reports its result, and refuses it with ENODEV at once when the device has failed; other files pass
/// straight through. Per operation: one lock-free table lookup, two interlocked counts and, only when the device
/// does not complete at once, a pooled completion source (no allocation once warm).
/// </summary>
public sealed class HealthCheckedBlockIo(IBlockIo inner) : IBlockIo
{
    public IBlockIo Inner => inner;

    public ValueTask<int> ReadAsync(SafeFileHandle file, Memory<byte> buffer, long offset)
    {
        if (!DeviceHealth.TryFind(file, out DeviceHealth health)) return inner.ReadAsync(file, buffer, offset);
        if (health.Failed) return new(-LibC.ENODEV);
        health.Started(Environment.TickCount64);
        return Track(health, inner.ReadAsync(file, buffer, offset));
    }

    public ValueTask<int> WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset)
    {
        if (!DeviceHealth.TryFind(file, out DeviceHealth health)) return inner.WriteAsync(file, buffer, offset);
        if (health.Failed) return new(-LibC.ENODEV);
        health.Started(Environment.TickCount64);
        return Track(health, inner.WriteAsync(file, buffer, offset));
    }

    public ValueTask<int> SyncAsync(SafeFileHandle file)
    {
        if (!DeviceHealth.TryFind(file, out DeviceHealth health)) return inner.SyncAsync(file);
        if (health.Failed) return new(-LibC.ENODEV);
        health.Started(Environment.TickCount64);
        return Track(health, inner.SyncAsync(file));
    }

    private static ValueTask<int> Track(DeviceHealth health, ValueTask<int> operation)
    {
        if (!operation.IsCompleted) return TrackedOperation.Start(health, operation);
        int result = operation.Result;
        health.Finished(result, Environment.TickCount64);
        return new(result);
    }

    /// <summary>Reports a pending operation's result when it arrives. Pooled per thread, as BlockTransfer.</summary>
    private sealed class TrackedOperation : IValueTaskSource<int>
    {
        [ThreadStatic]
        private static Stack<TrackedOperation>? t_pool;

        private readonly Action _resume;
        private ManualResetValueTaskSourceCore<int> _core;
        private ValueTaskAwaiter<int> _awaiter;
        private DeviceHealth _health = null!;

        private TrackedOperation() => _resume = Resume;

        public static ValueTask<int> Start(DeviceHealth health, ValueTask<int> operation)
        {
            var tracked = t_pool is { Count: > 0 } pool ? pool.Pop() : new TrackedOperation();
            tracked._health = health;
            short token = tracked._core.Version;
            tracked._awaiter = operation.GetAwaiter();
            tracked._awaiter.UnsafeOnCompleted(tracked._resume);
            return new ValueTask<int>(tracked, token);
        }

        public int GetResult(short token)
        {
            try
            {
                return _core.GetResult(token);
            }
            finally
            {
                _core.Reset();
                _health = null!;
                (t_pool ??= new Stack<TrackedOperation>()).Push(this);
            }
        }

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);

        private void Resume()
        {
            int result = _awaiter.GetResult();
            _awaiter = default;
            _health.Finished(result, Environment.TickCount64);
            _core.SetResult(result);
        }
    }
}
