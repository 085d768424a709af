using System.Buffers;
using System.Runtime.InteropServices;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// Where a connection's command data buffers come from. Rent and Return are called on the connection's own
/// thread. The io_uring reactor lends pinned, 4 KiB-aligned native buffers of its shard (the kernel reads and
/// writes them directly); the default is the managed array pool.
/// </summary>
public interface IDataBufferPool
{
    /// <summary>A buffer of at least <paramref name="length"/> bytes (may be longer).</summary>
    Memory<byte> Rent(int length);

    /// <summary>Gives back a buffer from <see cref="Rent"/>, whole.</summary>
    void Return(Memory<byte> buffer);
}

/// <summary>Buffers from <see cref="ArrayPool{T}.Shared"/>: for in-memory drivers and tests.</summary>
public sealed class ArrayDataBufferPool : IDataBufferPool
{
    public static readonly ArrayDataBufferPool Instance = new();

    private ArrayDataBufferPool()
    {
    }

    public Memory<byte> Rent(int length) => ArrayPool<byte>.Shared.Rent(length);

    public void Return(Memory<byte> buffer)
    {
        if (MemoryMarshal.TryGetArray<byte>(buffer, out var segment)) ArrayPool<byte>.Shared.Return(segment.Array!);
    }
}
