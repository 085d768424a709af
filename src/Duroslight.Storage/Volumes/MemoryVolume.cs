namespace Duroslight.Storage.Volumes;

/// <summary>
/// A sparse volume in memory, for tests and benchmarks: 128 KiB pages (native, from the store's
/// <see cref="MemoryPages"/>) are mapped on first write, unmapped pages read as zeros. Reads and writes into existing pages take no lock; installing or
/// freeing pages and growing the page table take a lock, so a write can never land
/// in a table that a concurrent grow has already copied.
/// </summary>
public sealed unsafe class MemoryVolume : IBlockVolume
{
    public const int PageSize = 128 * 1024;
    private const int PageShift = 17;
    private const int PageMask = PageSize - 1;

    private readonly object _pageGate = new();
    private readonly SpaceBudget _budget;
    private readonly MemoryPages _memory;
    private MemoryPages.Page?[] _pages;
    private long _sizeBytes;
    private long _allocatedPages;
    private volatile bool _closed;

    internal MemoryVolume(VolumeDescriptor descriptor, SpaceBudget budget, MemoryPages memory)
    {
        _memory = memory;
        Id = descriptor.Id;
        BlockSize = descriptor.BlockSize;
        _budget = budget;
        _sizeBytes = descriptor.SizeBytes;
        _pages = new MemoryPages.Page?[PageCount(descriptor.SizeBytes)];
    }

    public Guid Id { get; }

    public int BlockSize { get; }

    public long SizeBytes => Volatile.Read(ref _sizeBytes);

    /// <summary>Allocated pages times the page size.</summary>
    public long AllocatedBytes => Volatile.Read(ref _allocatedPages) * PageSize;

    public ValueTask<StorageResult> ReadAsync(long offset, Memory<byte> destination)
    {
        StorageResult check = CheckRange(offset, destination.Length);
        if (check == StorageResult.Ok)
        {
            Read(offset, destination.Span);
        }

        return new(check);
    }

    /// <summary>
    /// Lends the page memory holding [offset, offset + length) instead of copying it, when the range lies in one mapped
    /// page: the driver sends read data straight from it. The page is retained for the caller, who releases it through
    /// the memory's manager (<see cref="IVolumeChannel.TryLend"/>); a write or deallocate of the range before the send
    /// ends shows in what is sent, but a page given back is reused only once released (<see cref="MemoryPages"/>).
    /// </summary>
    public bool TryLend(long offset, int length, out ReadOnlyMemory<byte> data)
    {
        data = default;
        int inPage = (int)(offset & PageMask);
        if (CheckRange(offset, length) != StorageResult.Ok || length == 0 || inPage + length > PageSize) return false;
        MemoryPages.Page? page = Volatile.Read(ref Volatile.Read(ref _pages)[offset >> PageShift]);
        if (page is null || !page.TryRetain()) return false;
        data = page.Memory.Slice(inPage, length);
        return true;
    }

    /// <summary>All pages the write needs are reserved before any byte is copied, so OutOfSpace writes nothing.</summary>
    public ValueTask<StorageResult> WriteAsync(long offset, ReadOnlyMemory<byte> source)
    {
        StorageResult check = CheckRange(offset, source.Length);
        if (check == StorageResult.Ok && source.Length > 0)
        {
            check = Write(offset, source.Span);
        }

        return new(check);
    }

    /// <summary>Same as deallocate: unmapped pages already read as zeros.</summary>
    public ValueTask<StorageResult> WriteZeroesAsync(long offset, long length) => DeallocateAsync(offset, length);

    /// <summary>Frees the pages the range covers whole and zeroes the parts of the others.</summary>
    public ValueTask<StorageResult> DeallocateAsync(long offset, long length)
    {
        StorageResult check = CheckRange(offset, length);
        if (check == StorageResult.Ok && length > 0)
        {
            Deallocate(offset, length);
        }

        return new(check);
    }

    public ValueTask<StorageResult> FlushAsync() =>
        new(_closed ? StorageResult.MediaError : StorageResult.Ok);

    /// <summary>No-op: the store owns the volume and frees it on Delete or with itself.</summary>
    public void Dispose()
    {
    }

    internal void Grow(long newSizeBytes)
    {
        lock (_pageGate)
        {
            var pages = new MemoryPages.Page?[PageCount(newSizeBytes)];
            Array.Copy(_pages, pages, _pages.Length);
            // Table before size: an I/O that sees the new size is sure to see the new table.
            Volatile.Write(ref _pages, pages);
            Volatile.Write(ref _sizeBytes, newSizeBytes);
        }
    }

    /// <summary>Frees every page and returns its space to the pool; later I/O gets MediaError.</summary>
    internal void Close()
    {
        _closed = true;
        FreePages(0, _pages.Length);
    }

    private StorageResult CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > SizeBytes - length)
        {
            return StorageResult.OutOfRange;
        }

        return _closed ? StorageResult.MediaError : StorageResult.Ok;
    }

    private void Read(long offset, Span<byte> destination)
    {
        MemoryPages.Page?[] pages = Volatile.Read(ref _pages);
        while (!destination.IsEmpty)
        {
            int inPage = (int)(offset & PageMask);
            int count = Math.Min(PageSize - inPage, destination.Length);
            byte* page = PointerOf(Volatile.Read(ref pages[offset >> PageShift]));
            if (page == null)
            {
                destination[..count].Clear();
            }
            else
            {
                new ReadOnlySpan<byte>(page + inPage, count).CopyTo(destination);
            }

            destination = destination[count..];
            offset += count;
        }
    }

    private StorageResult Write(long offset, ReadOnlySpan<byte> source)
    {
        long firstPage = offset >> PageShift;
        long lastPage = (offset + source.Length - 1) >> PageShift;
        if (!AllPagesMapped(firstPage, lastPage) && !TryMapPages(firstPage, lastPage))
        {
            return StorageResult.OutOfSpace;
        }

        MemoryPages.Page?[] pages = Volatile.Read(ref _pages);
        while (!source.IsEmpty)
        {
            int inPage = (int)(offset & PageMask);
            int count = Math.Min(PageSize - inPage, source.Length);
            byte* page = PointerOf(Volatile.Read(ref pages[offset >> PageShift]));
            if (page == null)
            {
                // A deallocate of an overlapping range (a host race) freed it meanwhile: map again.
                return Write(offset, source);
            }

            source[..count].CopyTo(new Span<byte>(page + inPage, count));
            source = source[count..];
            offset += count;
        }

        return StorageResult.Ok;
    }

    private bool AllPagesMapped(long firstPage, long lastPage)
    {
        MemoryPages.Page?[] pages = Volatile.Read(ref _pages);
        for (long i = firstPage; i <= lastPage; i++)
        {
            if (Volatile.Read(ref pages[i]) is null)
            {
                return false;
            }
        }

        return true;
    }

    private bool TryMapPages(long firstPage, long lastPage)
    {
        lock (_pageGate)
        {
            MemoryPages.Page?[] pages = _pages;
            long missing = 0;
            for (long i = firstPage; i <= lastPage; i++)
            {
                missing += pages[i] is null ? 1 : 0;
            }

            if (!_budget.TryReserve(missing * PageSize))
            {
                return false;
            }

            for (long i = firstPage; i <= lastPage; i++)
            {
                if (pages[i] is null)
                {
                    Volatile.Write(ref pages[i], _memory.Take());
                }
            }

            Volatile.Write(ref _allocatedPages, _allocatedPages + missing);
            return true;
        }
    }

    private void Deallocate(long offset, long length)
    {
        long end = offset + length;
        long firstWhole = (offset + PageMask) >> PageShift;
        long endWhole = end >> PageShift;
        if (firstWhole >= endWhole)
        {
            // Inside one page, or straddling a boundary without covering a page whole.
            ZeroInPages(offset, end);
            return;
        }

        ZeroInPages(offset, firstWhole << PageShift);
        FreePages(firstWhole, endWhole);
        ZeroInPages(endWhole << PageShift, end);
    }

    /// <summary>Zeroes [start, end) in the pages that are mapped; the range covers no page whole.</summary>
    private void ZeroInPages(long start, long end)
    {
        MemoryPages.Page?[] pages = Volatile.Read(ref _pages);
        while (start < end)
        {
            int inPage = (int)(start & PageMask);
            int count = (int)Math.Min(PageSize - inPage, end - start);
            byte* page = PointerOf(Volatile.Read(ref pages[start >> PageShift]));
            if (page != null)
            {
                new Span<byte>(page + inPage, count).Clear();
            }

            start += count;
        }
    }

    private void FreePages(long firstPage, long endPage)
    {
        lock (_pageGate)
        {
            MemoryPages.Page?[] pages = _pages;
            long freed = 0;
            for (long i = firstPage; i < endPage; i++)
            {
                if (pages[i] is { } page)
                {
                    Volatile.Write(ref pages[i], null);
                    _memory.Give(page);
                    freed++;
                }
            }

            Volatile.Write(ref _allocatedPages, _allocatedPages - freed);
            _budget.Release(freed * PageSize);
        }
    }

    private static byte* PointerOf(MemoryPages.Page? page) => page is null ? null : page.Pointer;

    private static long PageCount(long sizeBytes) => (sizeBytes + PageMask) >> PageShift;
}
