using System.Buffers;
using System.Threading.Tasks.Sources;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Reactor;

/// <summary>
/// Device I/O through a shard's ring. Each call takes a pooled operation object, so steady state allocates nothing;
/// the completion runs the awaiting continuation inline on the shard's thread.
/// </summary>
internal sealed class RingBlockIo(Shard shard) : IBlockIo
{
    private const byte OpRead = 1, OpWrite = 2, OpSync = 3;

    private readonly Stack<Operation> _free = new();

    public ValueTask<int> ReadAsync(SafeFileHandle file, Memory<byte> buffer, long offset) => Take().Start(OpRead, file, buffer, offset);

    public ValueTask<int> WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset) =>
        Take().Start(OpWrite, file, System.Runtime.InteropServices.MemoryMarshal.AsMemory(buffer), offset);

    public ValueTask<int> SyncAsync(SafeFileHandle file) => Take().Start(OpSync, file, default, 0);

    private Operation Take()
    {
        if (!shard.IsOnThread) throw new InvalidOperationException("ring I/O must be submitted from its shard's thread");
        return _free.TryPop(out var op) ? op : new Operation(this);
    }

    private sealed unsafe class Operation : IValueTaskSource<int>, IRingHandler
    {
        private readonly RingBlockIo _owner;
        private readonly int _token;
        private ManualResetValueTaskSourceCore<int> _core;
        private MemoryHandle _pin;
        private SafeFileHandle? _file;

        public Operation(RingBlockIo owner)
        {
            _owner = owner;
            _token = owner.Shard.Register(this);
        }

        public ValueTask<int> Start(byte op, SafeFileHandle file, Memory<byte> buffer, long offset)
        {
            bool added = false;
            try
            {
                // Keeps the descriptor open (and unrecycled) until the kernel is done with it.
                file.DangerousAddRef(ref added);
            }
            catch (ObjectDisposedException)
            {
                _owner._free.Push(this);
                return new ValueTask<int>(-9); // EBADF: the volume was closed under this I/O
            }
            _file = file;
            _pin = buffer.Pin();
            int fd = (int)file.DangerousGetHandle();
            var shard = _owner.Shard;
            switch (op)
            {
                case OpRead: shard.SubmitRead(fd, (byte*)_pin.Pointer, buffer.Length, offset, _token, op); break;
                case OpWrite: shard.SubmitWrite(fd, (byte*)_pin.Pointer, buffer.Length, offset, _token, op); break;
                default: shard.SubmitDataSync(fd, _token, op); break;
            }
            return new ValueTask<int>(this, _core.Version);
        }

        public void OnCompletion(byte op, int result, bool more)
        {
            _pin.Dispose();
            _file!.DangerousRelease();
            _file = null;
            _core.SetResult(result);
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
                _owner._free.Push(this);
            }
        }

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }

    private Shard Shard => shard;
}
