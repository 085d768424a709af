using System.Buffers;
using System.Runtime.InteropServices;

namespace Duroslight.Core;

/// <summary>
/// A 4 KiB-aligned block of native memory: never moved by the GC, so it can be handed to the kernel (io_uring,
/// O_DIRECT) for as long as an operation runs, and pinning it costs nothing. Owned by one pool or one user;
/// <see cref="Free"/> releases the memory.
/// </summary>
public sealed unsafe class NativeBuffer : MemoryManager<byte>
{
    public const int Alignment = 4096;

    private byte* _pointer;

    public NativeBuffer(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        Length = length;
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)length, Alignment);
        NativeMemory.Clear(_pointer, (nuint)length);
    }

    public int Length { get; }

    public byte* Pointer => _pointer;

    public override Span<byte> GetSpan() => new(_pointer, Length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

    public override void Unpin()
    {
    }

    /// <summary>Releases the memory; the buffer must no longer be in use.</summary>
    public void Free()
    {
        if (_pointer == null) return;
        NativeMemory.AlignedFree(_pointer);
        _pointer = null;
    }

    protected override void Dispose(bool disposing) => Free();
}
