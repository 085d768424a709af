using System.Runtime.InteropServices;

namespace Duroslight.Reactor;

/// <summary>
/// A <c>struct msghdr</c> and its iovec array in native memory, for gathering sends (IORING_OP_SENDMSG): one per
/// connection, refilled for each send, so a send allocates nothing. The kernel may read it until the send completes,
/// so it is refilled only after that. Owned by one shard's thread.
/// </summary>
public sealed unsafe class SendMessage : IDisposable
{
    /// <summary>Pieces one send gathers at most (well under IOV_MAX).</summary>
    public const int MaxSegments = 64;

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    // struct msghdr of 64-bit Linux: pointers and size_t fields, natural alignment.
    [StructLayout(LayoutKind.Sequential)]
    private struct MessageHeader
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Vectors;
        public nuint VectorCount;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    private MessageHeader* _header;
    private IoVec* _vectors;

    public SendMessage()
    {
        _header = (MessageHeader*)NativeMemory.AllocZeroed((nuint)sizeof(MessageHeader));
        _vectors = (IoVec*)NativeMemory.AllocZeroed((nuint)(sizeof(IoVec) * MaxSegments));
        _header->Vectors = _vectors;
    }

    internal void* Header => _header;

    /// <summary>Sets piece <paramref name="index"/>; its bytes must not move or be freed until the send completes.</summary>
    public void Set(int index, byte* pointer, int length)
    {
        if ((uint)index >= MaxSegments) throw new ArgumentOutOfRangeException(nameof(index));
        _vectors[index].Base = pointer;
        _vectors[index].Length = (nuint)length;
    }

    /// <summary>The next send gathers the first <paramref name="count"/> pieces.</summary>
    public int Count
    {
        get => (int)_header->VectorCount;
        set => _header->VectorCount = (nuint)value;
    }

    public void Dispose()
    {
        NativeMemory.Free(_header);
        NativeMemory.Free(_vectors);
        _header = null;
        _vectors = null;
    }
}
