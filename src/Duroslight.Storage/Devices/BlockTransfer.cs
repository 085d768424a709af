using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using Duroslight.Storage.Volumes;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Devices;

/// <summary>
/// Reads or writes a whole range through an <see cref="IBlockIo"/>, continuing after short transfers, as one
/// <see cref="StorageResult"/>. Hand-written rather than an async method: the runtime's pooled async boxes keep only
/// a couple per thread, so at queue depth 32 most of them would be allocated. Operations are pooled per thread (a
/// shard starts them and its ring completes them on the same thread); a transfer that completes synchronously (the
/// fallback off the reactor) uses no pooled object at all.
/// </summary>
public sealed class BlockTransfer : IValueTaskSource<StorageResult>
{
    [ThreadStatic]
    private static Stack<BlockTransfer>? t_pool;

    private readonly Action _resume;
    private ManualResetValueTaskSourceCore<StorageResult> _core;
    private IBlockIo _io = null!;
    private SafeFileHandle _file = null!;
    private Memory<byte> _buffer;
    private long _offset;
    private int _done;
    private bool _write;
    private ValueTaskAwaiter<int> _awaiter;

    private BlockTransfer() => _resume = Resume;

    /// <summary>Reads all of <paramref name="buffer"/>; bytes past the end of the file read as zeros.</summary>
    public static ValueTask<StorageResult> ReadAsync(IBlockIo io, SafeFileHandle file, Memory<byte> buffer, long offset) =>
        Start(io, file, buffer, offset, write: false);

    public static ValueTask<StorageResult> WriteAsync(IBlockIo io, SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset) =>
        Start(io, file, System.Runtime.InteropServices.MemoryMarshal.AsMemory(buffer), offset, write: true);

    /// <summary>
    /// Through the calling thread's I/O (<see cref="BlockIo.Current"/>): for the GFTL's records, which a completion on
    /// another thread may continue.
    /// </summary>
    public static ValueTask<StorageResult> ReadAsync(SafeFileHandle file, Memory<byte> buffer, long offset) =>
        ReadAsync(BlockIo.Current, file, buffer, offset);

    /// <inheritdoc cref="ReadAsync(SafeFileHandle, Memory{byte}, long)"/>
    public static ValueTask<StorageResult> WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset) =>
        WriteAsync(BlockIo.Current, file, buffer, offset);

    public StorageResult GetResult(short token)
    {
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            _core.Reset();
            Release();
        }
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    private static ValueTask<StorageResult> Start(IBlockIo io, SafeFileHandle file, Memory<byte> buffer, long offset, bool write)
    {
        var transfer = t_pool is { Count: > 0 } pool ? pool.Pop() : new BlockTransfer();
        transfer._io = io;
        transfer._file = file;
        transfer._buffer = buffer;
        transfer._offset = offset;
        transfer._write = write;
        transfer._done = 0;
        var first = Issue(io, file, buffer, offset, write);
        if (first.IsCompleted && transfer.Account(first.Result) is { } done)
        {
            // Finished at once (always so off the reactor): no need to lend the transfer out.
            transfer.Release();
            return new(done);
        }
        var token = transfer._core.Version;
        transfer.Pump(first.IsCompleted ? transfer.IssueRest() : first);
        return new ValueTask<StorageResult>(transfer, token);
    }

    private ValueTask<int> IssueRest() => Issue(_io, _file, _buffer[_done..], _offset + _done, _write);

    private void Release()
    {
        _io = null!;
        _file = null!;
        _buffer = default;
        (t_pool ??= new Stack<BlockTransfer>()).Push(this);
    }

    private static ValueTask<int> Issue(IBlockIo io, SafeFileHandle file, Memory<byte> buffer, long offset, bool write) =>
        write ? io.WriteAsync(file, buffer, offset) : io.ReadAsync(file, buffer, offset);

    /// <summary>Takes results as long as they are ready; parks on the first pending one.</summary>
    private void Pump(ValueTask<int> operation)
    {
        while (true)
        {
            if (!operation.IsCompleted)
            {
                _awaiter = operation.GetAwaiter();
                _awaiter.UnsafeOnCompleted(_resume);
                return;
            }
            if (Account(operation.Result) is { } result)
            {
                _core.SetResult(result);
                return;
            }
            operation = IssueRest();
        }
    }

    private void Resume()
    {
        int n = _awaiter.GetResult();
        _awaiter = default;
        if (Account(n) is { } result) _core.SetResult(result);
        else Pump(IssueRest());
    }

    /// <summary>The outcome once the transfer is over, or null to go on.</summary>
    private StorageResult? Account(int n)
    {
        if (n < 0) return StorageErrors.FromErrno(-n);
        if (n == 0)
        {
            // A write that moves nothing is a device failure; a read at end of file: the rest was never written.
            if (_write) return StorageResult.MediaError;
            _buffer.Span[_done..].Clear();
            return StorageResult.Ok;
        }
        _done += n;
        return _done == _buffer.Length ? StorageResult.Ok : null;
    }
}
