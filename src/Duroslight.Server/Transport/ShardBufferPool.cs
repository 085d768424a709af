using System.Runtime.InteropServices;
using Duroslight.Protocol.Engine;
using Duroslight.Storage.Devices;

namespace Duroslight.Server.Transport;

/// <summary>
/// Command data buffers of one shard: native, 4 KiB-aligned (the kernel reads and writes them directly, O_DIRECT
/// included, and sends read data from them in place), in power-of-two size classes from 4 KiB to 4 MiB (the
/// largest MDTS). Used only by the shard's thread, so it needs no lock; buffers are kept once made, so steady state
/// allocates nothing. A larger request (none comes from the engine, whose transfers MDTS bounds) gets a pinned
/// array, which must not move either.
/// </summary>
internal sealed class ShardBufferPool : IDataBufferPool, IDisposable
{
    private const int MinShift = 12;
    private const int MaxShift = 22;

    private readonly Stack<NativeBuffer>[] _free = new Stack<NativeBuffer>[MaxShift - MinShift + 1];
    private readonly List<NativeBuffer> _all = [];

    public ShardBufferPool()
    {
        for (int i = 0; i < _free.Length; i++) _free[i] = new Stack<NativeBuffer>();
    }

    /// <summary>Native bytes this pool holds (all classes, rented or free).</summary>
    public long Bytes { get; private set; }

    public Memory<byte> Rent(int length)
    {
        int shift = Math.Max(MinShift, 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)length - 1));
        if (shift > MaxShift) return GC.AllocateUninitializedArray<byte>(length, pinned: true);
        if (!_free[shift - MinShift].TryPop(out var buffer))
        {
            buffer = new NativeBuffer(1 << shift);
            _all.Add(buffer);
            Bytes += buffer.Length;
        }
        return buffer.Memory;
    }

    public void Return(Memory<byte> buffer)
    {
        if (MemoryMarshal.TryGetMemoryManager<byte, NativeBuffer>(buffer, out var native))
            _free[System.Numerics.BitOperations.Log2((uint)native.Length) - MinShift].Push(native);
        // A pinned array (oversized request) is left to the GC.
    }

    public void Dispose()
    {
        foreach (var buffer in _all) buffer.Free();
        _all.Clear();
    }
}
