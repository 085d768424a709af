using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Reactor;

/// <summary>
/// Device I/O through a shard's ring. Each call takes a pooled operation object, so steady state allocates nothing;
/// the completion runs the awaiting continuation inline on the shard's thread. A <see cref="NativeBuffer"/> (the
/// GFTL's record, read and collector buffers) is registered with the ring the first time it carries I/O here, and its
/// I/O goes as READ_FIXED / WRITE_FIXED from then on: the kernel pinned its pages once, instead of pinning (and
/// unpinning) every page of every O_DIRECT transfer.
/// </summary>
internal sealed class RingBlockIo(Shard shard) : IBlockIo, IRegisteredBufferTable
{
    private const byte OpRead = 1, OpWrite = 2, OpSync = 3;

    /// <summary>Registered-buffer slots per ring; a buffer beyond them does plain I/O.</summary>
    internal const int BufferSlots = 1024;

    private readonly Stack<Operation> _free = new();
    private readonly Stack<int> _freeSlots = new();
    private readonly ConcurrentQueue<int> _released = new();
    private int _nextSlot;

    /// <summary>False when the kernel refused the table or a registration (e.g. RLIMIT_MEMLOCK): plain I/O only.</summary>
    private bool _fixed;

    /// <summary>Buffers registered now (the test's view).</summary>
    internal int RegisteredBuffers => _nextSlot - _freeSlots.Count - _released.Count;

    /// <summary>On the shard's thread, once its ring exists.</summary>
    internal void CreateBufferTable() => _fixed = shard.RegisterBufferTable(BufferSlots) == 0;

    /// <summary>A freed buffer's slot: cleared now on the shard's thread, else by the shard's next I/O.</summary>
    public void Release(int slot)
    {
        _released.Enqueue(slot);
        if (shard.IsOnThread)
        {
            ClearReleased();
        }
    }

    private unsafe void ClearReleased()
    {
        while (_released.TryDequeue(out int slot))
        {
            shard.RegisterBuffer(slot, null, 0);
            _freeSlots.Push(slot);
        }
    }

    /// <summary>The registered slot of the buffer <paramref name="buffer"/> lies in (registering it now if it can), or -1.</summary>
    private unsafe int SlotOf(Memory<byte> buffer)
    {
        if (!_fixed || !MemoryMarshal.TryGetMemoryManager<byte, NativeBuffer>(buffer, out NativeBuffer? native))
        {
            return -1;
        }

        if (native.RegisteredWith is not null)
        {
            return native.RegisteredWith == this ? native.RegisteredSlot : -1;
        }

        ClearReleased();
        int slot = _freeSlots.Count > 0 ? _freeSlots.Pop() : _nextSlot < BufferSlots ? _nextSlot++ : -1;
        if (slot < 0)
        {
            return -1;
        }

        if (shard.RegisterBuffer(slot, native.Pointer, native.Length) != 0)
        {
            _fixed = false;
            _freeSlots.Push(slot);
            return -1;
        }

        native.TryRegister(this, slot);
        return slot;
    }

    public ValueTask<int> ReadAsync(SafeFileHandle file, Memory<byte> buffer, long offset) => Take().Start(OpRead, file, buffer, offset);

    public ValueTask<int> WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset) =>
        Take().Start(OpWrite, file, MemoryMarshal.AsMemory(buffer), offset);

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
            int slot = op == OpSync ? -1 : _owner.SlotOf(buffer);
            var pointer = (byte*)_pin.Pointer;
            switch (op)
            {
                case OpRead when slot >= 0: shard.SubmitReadFixed(fd, pointer, buffer.Length, offset, slot, _token, op); break;
                case OpRead: shard.SubmitRead(fd, pointer, buffer.Length, offset, _token, op); break;
                case OpWrite when slot >= 0: shard.SubmitWriteFixed(fd, pointer, buffer.Length, offset, slot, _token, op); break;
                case OpWrite: shard.SubmitWrite(fd, pointer, buffer.Length, offset, _token, op); break;
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
