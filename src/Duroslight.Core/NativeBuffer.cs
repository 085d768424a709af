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

    /// <summary>The table of registered buffers (an io_uring ring's) this buffer is in for fixed I/O, or null.</summary>
    public IRegisteredBufferTable? RegisteredWith { get; private set; }

    /// <summary>The buffer's slot in <see cref="RegisteredWith"/>.</summary>
    public int RegisteredSlot { get; private set; } = -1;

    /// <summary>Records that <paramref name="table"/> registered this buffer in <paramref name="slot"/>; one table at most.</summary>
    public bool TryRegister(IRegisteredBufferTable table, int slot)
    {
        if (RegisteredWith is not null || _pointer == null) return false;
        RegisteredWith = table;
        RegisteredSlot = slot;
        return true;
    }

    /// <summary>Releases the memory (and its registration first); the buffer must no longer be in use.</summary>
    public void Free()
    {
        if (_pointer == null) return;
        if (RegisteredWith is { } table)
        {
            RegisteredWith = null;
            table.Release(RegisteredSlot);
            RegisteredSlot = -1;
        }

        NativeMemory.AlignedFree(_pointer);
        _pointer = null;
    }

    protected override void Dispose(bool disposing) => Free();
}

/// <summary>
/// A table of buffers registered with the kernel for fixed I/O (an io_uring ring's): it pins their pages once instead
/// of on every O_DIRECT read and write. A registered <see cref="NativeBuffer"/> releases its slot when freed.
/// </summary>
public interface IRegisteredBufferTable
{
    /// <summary>Clears <paramref name="slot"/> (from any thread; the table clears it on its own thread).</summary>
    void Release(int slot);
}
