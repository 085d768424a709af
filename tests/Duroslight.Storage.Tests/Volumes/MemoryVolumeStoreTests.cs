using System.Buffers;
using System.Runtime.InteropServices;
using Duroslight.Storage.Volumes;
using Duroslight.Tests.Shared;

namespace Duroslight.Storage.Tests.Volumes;

public sealed class MemoryVolumeStoreTests : VolumeStoreContractTests
{
    protected override IVolumeStore CreateStore() => new MemoryVolumeStore();

    protected override bool Persists => false;

    [Fact]
    public async Task Writes_beyond_the_capacity_fail_with_out_of_space_and_write_nothing()
    {
        using var store = new MemoryVolumeStore(capacityBytes: 2 * Page);
        IBlockVolume volume = store.Open(store.Create("v", MiB).Id);
        await WriteAsync(volume, 0, Pattern(Page, 1));
        await WriteAsync(volume, Page, Pattern(Block, 2));

        // Page 1 is mapped, page 2 is not and there is no room for it: nothing may be written.
        Assert.Equal(StorageResult.OutOfSpace, await volume.WriteAsync((2 * Page) - Block, Pattern(2 * Block, 3)));

        Assert.Equal(2 * Page, volume.AllocatedBytes);
        Assert.True(IsZero(await ReadAsync(volume, (2 * Page) - Block, 2 * Block)));
        await WriteAsync(volume, Page + Block, Pattern(Block, 4)); // mapped pages stay writable when full
    }

    [Fact]
    public async Task Deallocating_and_deleting_give_space_back_to_every_volume()
    {
        using var store = new MemoryVolumeStore(capacityBytes: 2 * Page);
        IBlockVolume first = store.Open(store.Create("a", MiB).Id);
        IBlockVolume second = store.Open(store.Create("b", MiB).Id);
        await WriteAsync(first, 0, Pattern(2 * Page, 1));
        Assert.Equal(StorageResult.OutOfSpace, await second.WriteAsync(0, Pattern(Block, 2)));

        Assert.Equal(StorageResult.Ok, await first.DeallocateAsync(0, Page));
        await WriteAsync(second, 0, Pattern(Block, 3));
        Assert.Equal(StorageResult.OutOfSpace, await second.WriteAsync(Page, Pattern(Block, 4)));

        store.Delete(first.Id);
        Assert.Equal(Page, store.AllocatedBytes);
        await WriteAsync(second, Page, Pattern(Block, 5));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_page_one_volume_gave_back_reads_as_zeros_in_the_next(bool deleteFirst)
    {
        // Pages are native and reused (MemoryPages): the next volume must not see the previous one's bytes.
        using var store = new MemoryVolumeStore();
        IBlockVolume first = store.Open(store.Create("a", MiB).Id);
        IBlockVolume second = store.Open(store.Create("b", MiB).Id);
        await WriteAsync(first, 0, Pattern(Page, 1));
        if (deleteFirst) store.Delete(first.Id);
        else Assert.Equal(StorageResult.Ok, await first.DeallocateAsync(0, Page));

        await WriteAsync(second, Block, Pattern(Block, 2));

        byte[] page = await ReadAsync(second, 0, Page);
        Assert.True(IsZero(page[..Block]));
        Assert.Equal(Pattern(Block, 2), page[Block..(2 * Block)]);
        Assert.True(IsZero(page[(2 * Block)..]));
    }

    [Fact]
    public async Task A_read_within_one_mapped_page_is_lent_from_the_page_itself()
    {
        IBlockVolume volume = NewVolume();
        await WriteAsync(volume, Page, Pattern(Page, 6));

        Assert.True(volume.TryLend(Page + Block, 2 * Block, out ReadOnlyMemory<byte> lent));
        Assert.Equal(Pattern(Page, 6).AsSpan(Block, 2 * Block).ToArray(), lent.ToArray());
        await WriteAsync(volume, Page + Block, Pattern(Block, 7)); // the page's memory, not a copy
        Assert.Equal(Pattern(Block, 7), lent[..Block].ToArray());

        Assert.False(volume.TryLend(0, Block, out _)); // unmapped: read (zeros) instead
        Assert.False(volume.TryLend((2 * Page) - Block, 2 * Block, out _)); // crosses a page
        Assert.False(volume.TryLend(volume.SizeBytes, Block, out _)); // out of range
    }

    [Fact]
    public async Task A_lent_page_given_back_is_reused_only_after_its_lend_is_released()
    {
        // A read's send may still be going out from the page when a deallocate gives it back: another volume must not
        // write its data into it meanwhile, and once released it is recycled (zeroed), not leaked.
        using var store = new MemoryVolumeStore();
        IBlockVolume first = store.Open(store.Create("a", MiB).Id);
        IBlockVolume second = store.Open(store.Create("b", MiB).Id);
        IBlockVolume third = store.Open(store.Create("c", MiB).Id);
        await WriteAsync(first, 0, Pattern(Page, 1));
        Assert.True(first.TryLend(0, Block, out ReadOnlyMemory<byte> lent));

        Assert.Equal(StorageResult.Ok, await first.DeallocateAsync(0, Page));
        Assert.False(first.TryLend(0, Block, out _));
        await WriteAsync(second, 0, Pattern(Page, 2));
        Assert.Equal(Pattern(Page, 1)[..Block], lent.ToArray());

        Assert.True(MemoryMarshal.TryGetMemoryManager(lent, out MemoryManager<byte>? page));
        page.Unpin();
        await WriteAsync(third, Block, Pattern(Block, 3));
        Assert.True(third.TryLend(0, 2 * Block, out ReadOnlyMemory<byte> reused));
        Assert.True(MemoryMarshal.TryGetMemoryManager(reused, out MemoryManager<byte>? again));
        Assert.Same(page, again); // the last page given back is the next one taken
        Assert.True(IsZero(reused[..Block].ToArray()));
        again.Unpin();
    }

    [Fact]
    public async Task Allocated_bytes_count_whole_pages()
    {
        IBlockVolume volume = NewVolume();

        await WriteAsync(volume, Page - Block, Pattern(2 * Block, 1));

        Assert.Equal(2 * Page, volume.AllocatedBytes);
    }

    [Fact]
    public void Io_on_mapped_pages_allocates_nothing()
    {
        IBlockVolume volume = NewVolume();
        byte[] buffer = Pattern(2 * Block, 1);
        long checksum = 0;

        // Each pass: 4 writes, 4 reads and 4 write-zeroes on mapped pages; the warm-up maps them.
        AllocationProbe.AssertNoAllocationPerOp(() =>
        {
            for (int i = 0; i < 1000; i++) checksum += ReadWriteZero(volume, buffer);
        }, opsPerRound: 12_000, what: "memory volume I/O");

        Assert.NotEqual(0, checksum);
    }

    [Fact]
    public void Negative_capacity_and_bad_block_sizes_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryVolumeStore(capacityBytes: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryVolumeStore(blockSize: 1000));
        Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryVolumeStore(blockSize: 256));
    }

    /// <summary>Memory volumes complete synchronously, so the results are read without awaiting.</summary>
    private static long ReadWriteZero(IBlockVolume volume, byte[] buffer)
    {
        long sum = 0;
        for (long offset = Page - Block; offset < 4 * Page; offset += Page)
        {
            sum += (int)volume.WriteAsync(offset, buffer).Result;
            sum += (int)volume.ReadAsync(offset, buffer).Result;
            sum += (int)volume.WriteZeroesAsync(offset + Block, Block).Result;
            sum += buffer[0] + 1;
        }

        return sum;
    }
}
