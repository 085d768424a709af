using System.Buffers;
using Duroslight.Core.Interop;

namespace Duroslight.Storage.Volumes;

/// <summary>
/// The memory store's 128 KiB pages, shared by its volumes: native memory cut from 32 MiB slabs mapped with
/// MADV_HUGEPAGE. On this project's VM huge pages took a fifth to a third off a 128 KiB write's copy; random 4 KiB reads
/// did not measurably change (bench/README.md, "The data path per core"). Native memory never moves, so the kernel may
/// read it directly: reads are sent from a page in place (<see cref="MemoryVolume.TryLend"/>), and a page lent that way
/// is retained until its send is done, so a page a deallocate or delete gave back meanwhile is zeroed and reused only
/// after that (another volume's data never goes out in a read). Slabs are unmapped only when the store is disposed.
/// One race is left: a write still running on a volume being deleted could land in a page another volume has taken
/// since (unlike a managed array, which it would have kept to itself); the server takes a volume out of its tables
/// before deleting it, so only a chunk already queued on a shard can race. The memory held is the store's peak
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
            Page page = _free.Pop();
            page.Reuse();
            return page;
        }
    }

    /// <summary>Gives a page back: it is zeroed for its next user now, or when the last send it was lent to is done.</summary>
    public void Give(Page page)
    {
        if (page.Retire()) Recycle(page);
    }

    /// <summary>Zeroed under the lock: a send's last release may come after the store was disposed (slabs unmapped).</summary>
    private void Recycle(Page page)
    {
        lock (_gate)
        {
            if (_disposed) return;
            new Span<byte>(page.Pointer, PageSize).Clear();
            _free.Push(page);
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
        for (int offset = SlabBytes - PageSize; offset >= 0; offset -= PageSize) _free.Push(new Page(this, slab + offset));
    }

    /// <summary>
    /// One page: its address, a <see cref="Memory{T}"/> over it to lend to a send (made once, not per I/O), and how many
    /// lends hold it. <see cref="Pin"/> / <see cref="Unpin"/> retain and release it (what a send's pin does), so a page
    /// given back while lent is recycled by its last release.
    /// </summary>
    public sealed class Page(MemoryPages owner, byte* pointer) : MemoryManager<byte>
    {
        private const int Retired = 1 << 30;

        /// <summary>Lends holding the page, plus <see cref="Retired"/> once its volume gave it back.</summary>
        private int _state;

        public byte* Pointer { get; } = pointer;

        public override Span<byte> GetSpan() => new(Pointer, PageSize);

        /// <summary>A first lend, refused once the page was given back (its volume no longer holds the range).</summary>
        public bool TryRetain()
        {
            int state = Volatile.Read(ref _state);
            while ((state & Retired) == 0)
            {
                int seen = Interlocked.CompareExchange(ref _state, state + 1, state);
                if (seen == state) return true;
                state = seen;
            }

            return false;
        }

        /// <summary>Another hold on a page already held (a send pinning lent memory).</summary>
        public override MemoryHandle Pin(int elementIndex = 0)
        {
            Interlocked.Increment(ref _state);
            return new(Pointer + elementIndex, pinnable: this);
        }

        public override void Unpin()
        {
            if (Interlocked.Decrement(ref _state) == Retired) owner.Recycle(this);
        }

        /// <summary>Marks the page given back; true when no lend holds it (recycle now).</summary>
        internal bool Retire() => (Interlocked.Or(ref _state, Retired) & ~Retired) == 0;

        internal void Reuse() => Volatile.Write(ref _state, 0);

        protected override void Dispose(bool disposing)
        {
        }
    }
}
