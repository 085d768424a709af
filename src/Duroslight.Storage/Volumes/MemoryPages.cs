using System.Buffers;
using Duroslight.Core.Interop;

namespace Duroslight.Storage.Volumes;

/// <summary>
/// The memory store's 128 KiB pages, shared by its volumes: native memory cut from 32 MiB slabs mapped with
/// MADV_HUGEPAGE. On this project's VM huge pages took a fifth to a third off a 128 KiB write's copy; random 4 KiB reads
/// did not measurably change (bench/README.md, "The data path per core"). Native memory never moves, so the kernel may
/// read it directly. Pages freed by a volume are zeroed and reused, and slabs are unmapped only when the store is disposed
/// (after its I/O stopped), so memory read by a racing I/O stays mapped; but a write still running on a volume being
/// deleted could land in a page another volume has taken since (unlike a managed array, which it would have kept to
/// itself): the server takes a volume out of its tables before deleting it, so only a chunk already queued on a shard
/// can race. The memory held is the store's peak
/// allocation, which its <see cref="SpaceBudget"/> bounds. Thread-safe (volumes map pages under their own locks).
/// </summary>
internal sealed unsafe class MemoryPages : IDisposable
{
    public const int PageSize = MemoryVolume.PageSize;
    private const int SlabBytes = 32 << 20;

    private readonly object _gate = new();
    private readonly Stack<Page> _free = new();
    private readonly List<nint> _slabs = [];
    private bool _disposed;

    /// <summary>A zeroed page.</summary>
    public Page Take()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_free.Count == 0) AddSlab();
            return _free.Pop();
        }
    }

    /// <summary>Gives a page back; it is zeroed for its next user.</summary>
    public void Give(Page page)
    {
        new Span<byte>(page.Pointer, PageSize).Clear();
        lock (_gate)
        {
            if (!_disposed) _free.Push(page);
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (nint slab in _slabs) LibC.UnmapMemory((byte*)slab, SlabBytes);
            _slabs.Clear();
            _free.Clear();
        }
    }

    private void AddSlab()
    {
        byte* slab = LibC.MapHugePageMemory(SlabBytes);
        _slabs.Add((nint)slab);
        // Pushed from the end, so pages are taken in address order (a sequential write fills huge pages in turn).
        for (int offset = SlabBytes - PageSize; offset >= 0; offset -= PageSize) _free.Push(new Page(slab + offset));
    }

    /// <summary>One page: its address, and a <see cref="Memory{T}"/> over it to lend to a send (made once, not per I/O).</summary>
    public sealed class Page(byte* pointer) : MemoryManager<byte>
    {
        public byte* Pointer { get; } = pointer;

        public override Span<byte> GetSpan() => new(Pointer, PageSize);

        public override MemoryHandle Pin(int elementIndex = 0) => new(Pointer + elementIndex);

        public override void Unpin()
        {
        }

        protected override void Dispose(bool disposing)
        {
        }
    }
}
